"""Notebook 06 (dynamic_and_weight_only): the committed run's records, and a papermill run
with other parameters (every cell twice); their records checked."""

from __future__ import annotations

import pytest

from tests.notebooks.runs import NOTEBOOKS, run


def test_06_defaults_hold_their_claims():
    """The committed notebook (x86, the shipped LSTM): its fact claims held; dynamic int8 took
    7-bit activations and was reproduced by hand bit for bit."""
    from qnb import read_records, stats

    records = read_records(NOTEBOOKS / "06_dynamic_and_weight_only.ipynb")
    assert records["claims_checked"] >= 20 and records["claims_failed"] == 0
    assert records["claims_skipped"] == 0 and "claims_timing_failed" in records
    assert records["engine"] == "x86" and records["test_images"] == 10000
    assert records["fp32_acc"] == pytest.approx(0.8927, abs=5e-4)  # the shipped LSTM, seed 0
    assert records["fp32_acc_min"] <= records["fp32_acc"] <= records["fp32_acc_max"]
    for name in ("dynamic_int8", "weight_only_int8", "weight_only_int4"):
        assert records[f"verdict_{name}"] in stats.LABELS  # no winner: neither side better
    # torch's dynamic Conv2d requantizes onto the input's grid: far below fp32's 92.44%
    assert records["dynamic_conv_verdict"] == "fp32 " + stats.EVERY_SEED
    assert records["acc_plain_cnn_dynamic_conv"] < 0.85
    assert records["dynamic_act_levels"] == 128  # reduce_range on x86
    assert records["dynamic_fc_by_hand_max_diff"] == 0 and records["lstm_by_hand_max_diff"] == 0
    assert records["size_ratio_dynamic_int8"] > 3
    assert records["acc_dynamic_int8"] == pytest.approx(records["fp32_acc"], abs=0.01)


def test_06_other_engine_and_bits(tmp_path):
    """qnnpack (the ARM engine): 8-bit dynamic activations, the fc call still reproduced by
    hand; weight-only at 2 bits per channel; every cell run twice."""
    records = run(
        tmp_path,
        "06_dynamic_and_weight_only.ipynb",
        twice=True,
        engine="qnnpack",
        weight_only_bits=[8, 2],
        group_size=None,
        repeats=3,
    )
    assert records["claims_failed"] == 0
    assert records["claims_skipped"] == 3  # the three verdicts of the default parameters
    assert records["engine"] == "qnnpack" and records["test_images"] == 10000
    assert records["dynamic_act_levels"] == 256  # qnnpack ignores reduce_range
    assert records["dynamic_fc_by_hand_max_diff"] == 0
    assert records["acc_dynamic_int8"] == pytest.approx(records["fp32_acc"], abs=0.01)
    assert records["size_ratio_dynamic_int8"] > 3
    assert (
        records["speedup_b256_dynamic_int8_p25"]
        <= records["speedup_b256_dynamic_int8"]
        <= records["speedup_b256_dynamic_int8_p75"]
    )
    assert {"verdict_weight_only_int8", "verdict_weight_only_int2"} <= set(records)
    assert records["acc_weight_only_int2"] < records["acc_weight_only_int8"]
