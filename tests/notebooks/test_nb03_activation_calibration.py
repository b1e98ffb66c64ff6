"""Notebook 03 (activation_calibration) run by papermill with other parameters, and the committed
notebook's records; both checked."""

from __future__ import annotations

import pytest

from tests.notebooks.runs import NOTEBOOKS, run

NOTEBOOK = "03_activation_calibration.ipynb"
METHODS = ("minmax", "moving_average", "histogram", "percentile", "mse", "entropy",
           "entropy_signed")


def test_03_plain_model_one_seed_six_bits(tmp_path):
    """The plain CNN, one seed, one activation width (6 bits), a short curve, every cell twice:
    the estimator is chosen on validation and only the reported ones reach the test images; the
    8-bit claims are skipped, none fails."""
    from qnb import models

    records = run(
        tmp_path,
        NOTEBOOK,
        twice=True,
        model_name="plain_cnn",
        seeds=[1],
        act_bit_widths=[6],
        calib_images=64,
        calib_sizes=[16, 64],
        calib_seeds=[0],
        curve_methods=["minmax", "mse"],
        percentile=99.9,
    )
    assert records["claims_failed"] == 0
    assert records["claims_skipped"] >= 2  # the sentences about 8-bit activations
    assert records["model"] == "plain_cnn" and records["test_images"] == 10000
    pred, labels = models.predict(models.pretrained("plain_cnn", seed=1))
    fp32 = float((pred == labels).float().mean())
    assert records["fp32_acc_min"] == records["fp32_acc"] == records["fp32_acc_max"]
    assert records["fp32_acc"] == pytest.approx(fp32, abs=1e-6)
    chosen = records["chosen_a6"]
    assert chosen in METHODS
    # the choice is the best validation accuracy of all seven estimators
    assert records[f"val_acc_{chosen}_a6"] == max(records[f"val_acc_{m}_a6"] for m in METHODS)
    tested = {"minmax", chosen, "entropy", "entropy_signed"}
    for method in METHODS:
        assert (f"acc_{method}_a6" in records) == (method in tested), method
    # 6-bit activations (8-bit per-channel weights) of the plain CNN stay within 2 points of fp32
    assert records["acc_minmax_a6"] == pytest.approx(fp32, abs=0.02)
    assert records[f"acc_{chosen}_a6"] == pytest.approx(fp32, abs=0.02)
    assert {f"acc_calib{n}_{m}_a6" for n in (16, 64) for m in ("minmax", "mse")} <= set(records)
    assert "acc_minmax_a8" not in records and "acc_calib512_mse_a4" not in records
    # family: 4 verdicts at 6 bits at most, 2 largest-vs-smallest and 2 mse-vs-minmax in the curve
    assert 3 + 2 + 2 <= records["verdicts"] <= 4 + 2 + 2


def test_03_defaults_hold_their_claims():
    """The committed notebook (default parameters, three seeds): its claims checked, none
    failed; the choice made on validation, the reported accuracies over the seeds."""
    from qnb import read_records

    records = read_records(NOTEBOOKS / NOTEBOOK)
    assert records["claims_checked"] >= 10 and records["claims_failed"] == 0
    assert "claims_skipped" in records
    assert records["test_images"] == 10000 and records["model"] == "depthwise_cnn"
    for name, value in records.items():
        if f"{name}_min" in records:
            lo, hi = records[f"{name}_min"], records[f"{name}_max"]
            assert lo - 1e-9 <= value <= hi + 1e-9, name  # a mean of equal values may round
    for bits in (8, 4):
        chosen = records[f"chosen_a{bits}"]
        assert records[f"val_acc_{chosen}_a{bits}"] == max(
            records[f"val_acc_{m}_a{bits}"] for m in METHODS)
        assert f"acc_{chosen}_a{bits}" in records
