"""Notebook 04 (integer_arithmetic) run by papermill with other parameters; its records checked."""

from __future__ import annotations

from tests.notebooks.runs import run


def test_04_fewer_digits_other_seed(tmp_path):
    records = run(
        tmp_path,
        "04_integer_arithmetic.ipynb",
        twice=True,
        test_images=200,
        n_accumulators=50_000,
        seed=1,
    )
    assert records["test_images"] == 200
    assert records["integer_model_mismatches"] == 0
    assert records["claims_failed"] == 0 and records["claims_checked"] >= 5
    assert 0 <= records["conv_order_mismatches"] <= records["conv_outputs"] * 1e-5
    assert 0 <= records["fixed_point_mismatches"] <= 200 * 10
    assert records["saturating_pairs_7bit"] == 0 < records["saturating_pairs_8bit"]
    assert records["bn_fold_max_weight_diff"] < 1e-6


def test_04_on_qnnpack_follows_the_engine(tmp_path, monkeypatch):
    """With only qnnpack (an ARM build of torch), the integer reference rounds the bias to int32
    and still equals torch's codes."""
    monkeypatch.setenv("QNB_ENGINES", "qnnpack")
    records = run(tmp_path, "04_integer_arithmetic.ipynb", test_images=200, n_accumulators=20_000)
    assert records["engine"] == "qnnpack"
    assert records["integer_model_mismatches"] == 0
    assert records["claims_failed"] == 0
