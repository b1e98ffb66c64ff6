"""Notebook 07 (advanced_ptq) run by papermill with other parameters; its records checked."""

from __future__ import annotations

import ast

import pytest

from tests.notebooks.runs import NOTEBOOKS, run

NOTEBOOK = "07_advanced_ptq.ipynb"


def parameters(name: str) -> dict:
    """The literal values assigned in a notebook's parameters cell."""
    from qnb import notebook

    (cell,) = notebook.parameters_cells(notebook.read(NOTEBOOKS / name))
    found = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


def test_07_plain_model_one_seed_with_qat(tmp_path):
    """Notebook 07 on the other model (no inverted residual blocks: the pair claims are skipped)
    and one seed, with QAT switched on, every cell twice: every record of both sections, the
    float accuracy that of the shipped model, no failed claim."""
    from qnb import models

    records = run(
        tmp_path,
        "07_advanced_ptq.ipynb",
        twice=True,
        seeds=[1],
        model_name="plain_cnn",
        cle_bits=[6],
        ladder_bits=[3],
        calib_images=64,
        adaround_iterations=20,
        qat_train_limit=128,
    )
    assert records["claims_failed"] == 0
    assert records["claims_skipped"] >= 2  # the inverted-residual pair claims
    assert records["test_images"] == 10000
    assert records["verdicts"] == 4 + 4  # four in the CLE section, four on the one rung
    pred, labels = models.predict(models.pretrained("plain_cnn", seed=1))
    fp32 = float((pred == labels).float().mean())
    assert records["fp32_acc"] == pytest.approx(fp32, abs=1e-6)
    assert records["acc_fp32"] == records["fp32_acc"]
    for name in ("per_tensor_rtn", "per_tensor_cle", "per_tensor_cle_bc", "rtn"):
        key = f"acc_w6a8_{name}"
        assert records[f"{key}_min"] == records[key] == records[f"{key}_max"]  # one seed
    for name in ("rtn", "bc", "adaround", "qat"):
        assert f"acc_w3a8_{name}" in records
    assert "acc_w8a8_rtn" not in records and "acc_w4a8_adaround" not in records
    # 6-bit per-channel weights with 8-bit activations stay within 2 points of float
    assert records["acc_w6a8_rtn"] == pytest.approx(fp32, abs=0.02)


def test_07_committed_notebook_holds_its_claims():
    """The committed notebook (default parameters, three seeds) checked its claims, none failed,
    and its QAT budget, where it cites one, is notebook 08's."""
    from qnb import read_records

    records = read_records(NOTEBOOKS / NOTEBOOK)
    assert records["claims_failed"] == 0 and records["claims_checked"] >= 30
    assert "claims_skipped" in records
    assert records["test_images"] == 10000 and records["seeds"] == 3
    assert records["fp32_acc"] == records["acc_fp32"]
    for name, value in records.items():
        if f"{name}_min" in records:
            assert records[f"{name}_min"] - 1e-9 <= value <= records[f"{name}_max"] + 1e-9, name
    mine, theirs = parameters(NOTEBOOK), parameters("08_quantization_aware_training.ipynb")
    # 07's text says that switching QAT on (qat_train_limit = 2,048, qat_epochs = 1) runs
    # notebook 08's fine-tuning budget: 08's parameters must still say so
    assert (theirs["train_limit"], theirs["epochs"]) == (2048, mine["qat_epochs"])
