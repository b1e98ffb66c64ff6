"""Notebook 09 (mixed_precision) run by papermill with other parameters; its records checked."""

from __future__ import annotations

from qnb.stats import LABELS
from tests.notebooks.runs import NOTEBOOKS, run


def _labelled(text: str) -> bool:
    """A verdict's text is one of the stats labels, with the winner's name in front of two."""
    return any(text == label or text.endswith(f" {label}") for label in LABELS)


def test_09_depthwise_three_bit_budget(tmp_path):
    """The small MobileNetV2 (15 quantizable layers: too many combinations for the brute force),
    one seed, a 3-bit budget with choices 2/4/8, every cell run twice. The allocation respects
    its budget, the sizes follow the size model, the verdicts carry the stats labels, and no
    fact claim fails (the sentences about the plain CNN are skipped, not passed)."""
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
    assert records["claims_failed"] == 0
    assert records["claims_skipped"] >= 1  # the plain CNN's allocation sentences
    assert records["test_images"] == 10000
    assert records["budget_bytes"] == records["uniform3_size_bytes"]
    assert records["mixed_size_bytes"] <= records["budget_bytes"]
    assert records["mixed_b5_size_bytes"] <= records["uniform5_size_bytes"]
    allocation = dict(item.split(":") for item in records["allocation"].split(", "))
    assert len(allocation) == 15 and set(allocation.values()) <= {"2", "4", "8"}
    assert list(allocation)[:2] == ["stem", "block1.expand"]  # forward order, float names
    sizes = [records[f"uniform{b}_size_bytes"] for b in range(2, 9)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 7
    for name, value in records.items():
        if name.endswith("_acc"):
            assert records[f"{name}_min"] == records[f"{name}_max"] == value, name  # one seed
    assert records["fp32_acc"] > records["uniform2_acc"]
    assert "mixed_b4_acc" not in records and "mixed_b3_acc" in records
    assert records["uniform3_best_grid_rule"] in ("minmax", "narrow", "mse")
    assert "uniform2_best_grid_acc" not in records
    verdicts = {k: v for k, v in records.items() if k.startswith("verdict_")}
    assert set(verdicts) == {"verdict_mixed_b3_vs_uniform3",
                             "verdict_mixed_b3_vs_uniform3_best_grid"}
    assert all(_labelled(v) for v in verdicts.values()), verdicts
    assert abs(records["mixed_predicted_sqnr_db"] - records["mixed_measured_sqnr_db"]) < 2
    assert "pareto_front" not in records  # which points sit on it is not a result


def test_09_defaults_hold_their_claims():
    """The committed notebook (default parameters) checked its claims and none failed."""
    from qnb import read_records

    records = read_records(NOTEBOOKS / "09_mixed_precision.ipynb")
    assert records["claims_checked"] >= 10 and records["claims_failed"] == 0
    assert records["claims_skipped"] == 0  # the defaults run every branch
    assert records["test_images"] == 10000
    for name in ("fp32_acc", "uniform4_acc", "mixed_acc"):
        lo, hi = records[f"{name}_min"], records[f"{name}_max"]
        assert lo - 1e-9 <= records[name] <= hi + 1e-9, name
    verdicts = {k: v for k, v in records.items() if k.startswith("verdict_")}
    assert len(verdicts) == 6 and all(_labelled(v) for v in verdicts.values()), verdicts
    assert records["mixed_size_bytes"] <= records["budget_bytes"]
