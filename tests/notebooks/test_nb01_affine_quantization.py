"""Notebook 01 (affine_quantization) run by papermill with other parameters; its records checked."""

from __future__ import annotations

import pytest

from tests.notebooks.runs import run


def test_01_other_bit_widths(tmp_path):
    records = run(
        tmp_path,
        "01_affine_quantization.ipynb",
        twice=True,
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
    assert records["db_per_bit_uniform"] == pytest.approx(6.02, abs=0.1)  # measured: 8 -> 16 bits
    assert records["claims_checked"] >= 8  # every claim is checked on other parameters too
