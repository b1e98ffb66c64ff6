"""Notebook 09 (mixed_precision) run by papermill with other parameters; its records checked."""

from __future__ import annotations

from tests.notebooks.runs import NOTEBOOKS, run


def test_09_depthwise_three_bit_budget(tmp_path):
    """The allocation respects its budget; accuracies are recorded with their seed range (their
    order is not tested: a few digits either way is noise on 1,000 test digits)."""
    records = run(
        tmp_path,
        "09_mixed_precision.ipynb",
        twice=True,
        seeds=[1],
        model_name="depthwise_cnn",
        choices=[2, 4, 8],
        budget_bits=3,
        calib_images=64,
        pareto_budgets=[3, 5],
        grid_bits=[3],
    )
    assert records["model"] == "depthwise_cnn" and records["budget_bits"] == 3
    assert records["budget_bytes"] == records["uniform3_size_bytes"]
    assert records["mixed_size_bytes"] <= records["budget_bytes"]
    assert records["mixed_b5_size_bytes"] <= records["uniform5_size_bytes"]
    allocation = dict(item.split(":") for item in records["allocation"].split(", "))
    assert len(allocation) == 8 and set(allocation.values()) <= {"2", "4", "8"}
    sizes = [records[f"uniform{b}_size_bytes"] for b in range(2, 9)]
    assert sizes == sorted(sizes)
    for name, value in records.items():
        if name.endswith("_acc"):
            assert 0 <= value <= 1, name
            assert records[f"{name}_min"] == records[f"{name}_max"] == value  # one seed
    assert "mixed_b4_acc" not in records and "mixed_b3_acc" in records
    assert records["uniform3_best_grid_rule"] in ("minmax", "narrow", "mse")
    assert "uniform2_best_grid_acc" not in records
    assert "pareto_front" not in records  # decided by a few digits: not a result


def test_09_defaults_hold_their_claims():
    """The committed notebook (default parameters) checked its claims and none failed."""
    from qnb import read_records

    records = read_records(NOTEBOOKS / "09_mixed_precision.ipynb")
    assert records["claims_checked"] >= 5 and records["claims_failed"] == 0
    for name in ("uniform4_acc", "mixed_acc"):
        lo, hi = records[f"{name}_min"], records[f"{name}_max"]
        assert lo - 1e-9 <= records[name] <= hi + 1e-9, name
