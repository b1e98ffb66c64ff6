"""Notebook 08 (quantization_aware_training): the committed run's records, and papermill runs
with other parameters (every cell twice in one of them); their records checked. Every run uses
shipped weights (seeds 0-2): nothing trains a model from scratch."""

from __future__ import annotations

from qnb import stats
from tests.notebooks.runs import NOTEBOOKS, run

NOTEBOOK = "08_quantization_aware_training.ipynb"


def test_08_defaults_hold_their_claims():
    """The committed notebook (plain CNN, 3 seeds, W4A4 and W3A3): its fact claims held, each
    rung chose its PTQ scale rule and QAT rate among the candidates, and W8A8 QAT converted to
    an int8 model that predicts what the fake-quantized one does."""
    from qnb import read_records

    records = read_records(NOTEBOOKS / NOTEBOOK)
    assert records["claims_checked"] >= 10 and records["claims_failed"] == 0
    assert "claims_skipped" in records and "claims_timing_failed" in records
    assert records["test_images"] == 10000 and records["seeds"] == 3
    assert records["model"] == "plain_cnn" and records["qat_steps"] == 32
    assert 0.90 <= records["fp32_acc_min"] and records["fp32_acc_max"] <= 0.95
    for bits in ("w4a4", "w3a3"):
        for name in ("fp32_acc", f"ptq_acc_{bits}", f"qat_acc_{bits}"):
            lo, hi = records[f"{name}_min"], records[f"{name}_max"]
            assert lo - 1e-9 <= records[name] <= hi + 1e-9, name
        # quantization costs accuracy here: both methods below fp32's worst seed on every seed
        for method in ("ptq", "qat"):
            assert records[f"{method}_acc_{bits}_max"] < records["fp32_acc_min"], (method, bits)
        assert records[f"ptq_scale_rule_{bits}"] in ("minmax", "narrow", "mse")
        assert records[f"qat_lr_{bits}"] in (3e-4, 1e-3, 3e-3)
        assert records[f"verdict_{bits}"].removeprefix("QAT ").removeprefix("PTQ ") in stats.LABELS
    assert records["qat_acc_w3a3"] < records["qat_acc_w4a4"]
    assert records["qat_int8_differ"] <= 10
    assert abs(records["qat_int8_acc_w8a8"] - records["qat_fake_quant_acc_w8a8"]) <= 0.001
    assert abs(records["qat_int8_acc_w8a8"] - records["fp32_acc_max"]) <= 0.01


def test_08_one_seed_plain_short_budget(tmp_path):
    """One seed, one rung, a 16-step budget and two candidates per method: every cell runs;
    the claims that need two seeds are skipped, the others hold."""
    records = run(
        tmp_path,
        NOTEBOOK,
        seeds=[1],
        ladder=[[3, 3]],
        train_limit=1024,
        lr_candidates=[1e-3, 3e-3],
        scale_rules=["minmax", "mse"],
        calib_images=64,
        val_images=500,
    )
    assert records["claims_failed"] == 0 and records["claims_skipped"] >= 3
    assert records["seeds"] == 1 and records["qat_steps"] == 16
    assert records["test_images"] == 10000
    for name in ("fp32_acc", "ptq_acc_w3a3", "qat_acc_w3a3"):
        assert records[f"{name}_min"] == records[name] == records[f"{name}_max"]  # one seed
    assert records["qat_acc_w3a3"] < records["fp32_acc"] and records["ptq_acc_w3a3"] < records[
        "fp32_acc"]
    assert records["qat_lr_w3a3"] in (1e-3, 3e-3)
    assert records["ptq_scale_rule_w3a3"] in ("minmax", "mse")
    assert "ptq_acc_w4a4" not in records
    assert records["qat_int8_differ"] <= 10


def test_08_depthwise_two_seeds_twice(tmp_path):
    """The depthwise model at W4A4 on two seeds, every cell run twice (a re-run replaces the
    verdicts and claims, it does not add to them)."""
    records = run(
        tmp_path,
        NOTEBOOK,
        twice=True,
        seeds=[0, 2],
        model_names=["depthwise_cnn"],
        ladder=[[4, 4]],
        train_limit=1024,
        lr_candidates=[1e-3],
        scale_rules=["mse"],
        calib_images=64,
        val_images=500,
    )
    assert records["claims_failed"] == 0
    assert records["model"] == "depthwise_cnn" and records["seeds"] == 2
    for name in ("fp32_acc", "ptq_acc_w4a4", "qat_acc_w4a4"):
        assert records[f"{name}_min"] <= records[name] <= records[f"{name}_max"]
        assert records[f"{name}_min"] < records[f"{name}_max"]  # two models, two accuracies
    assert records["verdict_w4a4"].removeprefix("QAT ").removeprefix("PTQ ") in stats.LABELS
    assert records["qat_lr_w4a4"] == 1e-3 and records["ptq_scale_rule_w4a4"] == "mse"
    assert records["qat_int8_differ"] < 100  # under 1%, as the notebook claims
