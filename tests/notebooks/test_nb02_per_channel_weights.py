"""Notebook 02 (per_channel_weights) run by papermill with other parameters; its records checked."""

from __future__ import annotations

from tests.notebooks.runs import NOTEBOOKS, run


def test_02_plain_model_other_bits(tmp_path):
    """The plain CNN alone (two seeds, other widths, its own layers inspected): every cell runs
    twice, the depthwise sentences are skipped (not silently dropped), no fact claim fails."""
    records = run(
        tmp_path,
        "02_per_channel_weights.ipynb",
        twice=True,
        seeds=[1, 2],
        model_names=["plain_cnn"],
        focus_model="plain_cnn",
        bit_widths=[8, 5, 2],
        sqnr_bits=3,
        rule_bits=[3],
    )
    assert records["claims_failed"] == 0
    assert records["claims_checked"] >= 11
    assert records["claims_skipped"] >= 5  # the MobileNetV2's sentences, declared as not checked
    assert records["test_images"] == 10000
    assert records["fp32_acc"] == records["fp32_acc_plain_cnn"]  # the first of model_names
    assert "acc_depthwise_cnn_per_tensor_w8" not in records
    # 8-bit weights keep the float accuracy (within 0.3 points on each seed's model)...
    for granularity in ("per_tensor", "per_channel"):
        assert abs(records[f"acc_plain_cnn_{granularity}_w8"] - records["fp32_acc"]) < 0.003
    # ...and the two granularities disagree on so few images that a tenth of a point resolves
    assert 0 < records["min_detectable_diff"] < 0.002
    # at 2 bits per-channel keeps far more than per-tensor on every seed
    assert records["acc_plain_cnn_per_channel_w2_min"] > records["acc_plain_cnn_per_tensor_w2_max"]
    assert records["verdict_plain_cnn_w2"] == "per-channel better on every seed"
    # at 3 bits the scale chosen on validation brings per-tensor back near float (section 4)
    assert records["fp32_acc"] - records["acc_plain_cnn_per_tensor_chosen_w3_min"] < 0.06
    assert all(v > 0 for k, v in records.items() if k.startswith("sqnr_gain_db_"))


def test_02_defaults_hold_their_claims():
    """The committed notebook (default parameters, three seeds) checked its claims, none failed."""
    from qnb import read_records

    records = read_records(NOTEBOOKS / "02_per_channel_weights.ipynb")
    assert records["claims_checked"] >= 24
    assert records["claims_failed"] == 0
    assert records["claims_skipped"] == 0  # with the defaults every branch runs
    assert records["test_images"] == 10000
    for name, value in records.items():
        if f"{name}_min" in records:
            lo, hi = records[f"{name}_min"], records[f"{name}_max"]
            assert lo - 1e-9 <= value <= hi + 1e-9, name  # a mean of equal values may round
    # the resolvable difference stated before the first verdict: a fraction, about 0.1 points
    assert 0 < records["min_detectable_diff"] < 0.002
    # the MobileNetV2's effect: per-tensor 8-bit weights lose to per-channel on every seed
    assert (
        records["acc_depthwise_cnn_per_channel_w8_min"]
        > records["acc_depthwise_cnn_per_tensor_w8_max"] + 0.1
    )
    for bits in (8, 6, 4):
        assert records[f"verdict_depthwise_cnn_w{bits}"] == "per-channel better on every seed"
