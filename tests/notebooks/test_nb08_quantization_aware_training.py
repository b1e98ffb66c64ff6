"""Notebook 08 (quantization_aware_training)
run by papermill with other parameters; its records checked."""

from __future__ import annotations

import pytest

from tests.notebooks.runs import run


def test_08_one_other_seed_records_its_claims(tmp_path):
    """Issue 13's acceptance run: seeds [3] (a model trained here on first use) executes and
    records claims_failed, whatever it is; a W8A8 rung converts to int8."""
    records = run(
        tmp_path,
        "08_quantization_aware_training.ipynb",
        seeds=[3],
        ladder=[[8, 8], [2, 2]],
        train_limit=512,
        calib_images=64,
    )
    assert records["seeds"] == 1
    assert records["claims_failed"] in range(records["claims_checked"] + 1)
    assert records["claims_checked"] >= 1
    assert records["qat_acc_w8a8"] == pytest.approx(records["fp32_acc"], abs=0.02)
    for name in ("fp32_acc", "ptq_acc_w2a2", "qat_acc_w2a2"):
        assert records[f"{name}_min"] == records[name] == records[f"{name}_max"]  # one seed


def test_08_depthwise_short_ladder(tmp_path):
    records = run(
        tmp_path,
        "08_quantization_aware_training.ipynb",
        twice=True,
        seeds=[0, 1],
        model_names=["depthwise_cnn"],
        ladder=[[3, 3]],
        train_limit=512,
        calib_images=64,
    )
    assert records["model"] == "depthwise_cnn"
    assert records["ptq_acc_w3a3_min"] <= records["ptq_acc_w3a3"] <= records["ptq_acc_w3a3_max"]
    assert records["qat_acc_w3a3_min"] <= records["qat_acc_w3a3"] <= records["qat_acc_w3a3_max"]
