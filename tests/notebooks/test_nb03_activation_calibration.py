"""Notebook 03 (activation_calibration)
run by papermill with other parameters; its records checked."""

from __future__ import annotations

import pytest

from tests.notebooks.runs import run


def test_03_plain_model_other_settings(tmp_path):
    records = run(
        tmp_path,
        "03_activation_calibration.ipynb",
        twice=True,
        model_name="plain_cnn",
        seeds=[0],
        act_bit_widths=[8, 6],
        calib_images=128,
        calib_sizes=[16, 64],
        calib_seeds=[0],
        curve_methods=["mse"],
        percentile=99.9,
    )
    assert records["model"] == "plain_cnn"
    for method in ("minmax", "histogram", "mse"):
        assert records[f"acc_{method}_a8"] == pytest.approx(records["fp32_acc"], abs=0.01)
    assert {"acc_calib16_mse_a6", "acc_calib64_mse_a6"} <= set(records)
    assert records["chosen_a6"] in (
        "minmax",
        "moving_average",
        "histogram",
        "percentile",
        "mse",
        "entropy",
    )
    assert records["acc_mse_a8_min"] <= records["acc_mse_a8"] <= records["acc_mse_a8_max"]
    assert records["claims_checked"] >= 4
