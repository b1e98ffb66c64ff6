"""Notebooks run by papermill with non-default parameters, and their records checked.

nbval (`make nbval`) runs every notebook with its defaults; these runs change the knobs a
batch user would change (the other model, other bit widths) and assert what the recorded
metrics must satisfy, with tolerances for a 1,000-digit test set.
"""

from __future__ import annotations

import pytest

from qnb import runner
from tests.conftest import REPO

NOTEBOOKS = REPO / "notebooks"


def run(tmp_path, name: str, **parameters) -> dict:
    result = runner.execute(NOTEBOOKS / name, tmp_path / name, parameters=parameters, timeout=900)
    assert result.status == "ok", result.error
    return result.records


def test_01_other_bit_widths(tmp_path):
    records = run(
        tmp_path,
        "01_affine_quantization.ipynb",
        bit_widths=[3, 8, 16],
        compare_bits=4,
        n_samples=20_000,
        seed=3,
    )
    assert records["worked_example_q"] == 40
    assert records["torch_mismatches"] == 0
    assert records["sqnr_db_uniform_8bit"] == pytest.approx(48.1, abs=0.3)  # 20 log10(255)
    assert records["sqnr_db_uniform_16bit"] == pytest.approx(96.3, abs=0.3)
    assert records["sqnr_relu_asymmetric_db"] > records["sqnr_relu_symmetric_db"] + 3
    assert "sqnr_db_uniform_4bit" not in records


def test_02_plain_model_other_bits(tmp_path):
    records = run(
        tmp_path,
        "02_per_channel_weights.ipynb",
        model_names=["plain_cnn"],
        focus_model="plain_cnn",
        bit_widths=[8, 5, 3],
        sqnr_bits=3,
    )
    fp32 = records["fp32_acc_plain_cnn"]
    assert fp32 >= 0.97
    for granularity in ("per_tensor", "per_channel"):
        assert records[f"acc_plain_cnn_{granularity}_w8"] == pytest.approx(fp32, abs=0.01)
    assert records["acc_plain_cnn_per_channel_w3"] >= records["acc_plain_cnn_per_tensor_w3"] - 0.01
    assert all(v > 0 for k, v in records.items() if k.startswith("sqnr_gain_db_"))
    assert "acc_depthwise_cnn_per_tensor_w8" not in records


def test_03_plain_model_other_settings(tmp_path):
    records = run(
        tmp_path,
        "03_activation_calibration.ipynb",
        model_name="plain_cnn",
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
