"""Notebook 07 (advanced_ptq) run by papermill with other parameters; its records checked."""

from __future__ import annotations

import pytest

from tests.notebooks.runs import run


def test_07_plain_model_one_seed_small_ladder(tmp_path):
    """Notebook 07 on the other model and a seed of its own, with a short ladder: every record
    of the ladder is there, 8-bit round-to-nearest stays at fp32, claims are counted."""
    records = run(
        tmp_path,
        "07_advanced_ptq.ipynb",
        twice=True,
        seeds=[1],
        model_name="plain_cnn",
        ladder_bits=[8, 3],
        adaround_bits=[3],
        cle_bits=[3],
        calib_images=64,
        adaround_iterations=30,
        qat_train_limit=128,
    )
    assert records["model"] == "plain_cnn" and records["seeds"] == 1
    for technique in ("rtn", "cle", "bc", "adaround", "qat"):
        name = f"acc_w3a8_{technique}"
        assert records[f"{name}_min"] == records[name] == records[f"{name}_max"]  # one seed
        assert 0.1 <= records[name] <= 1.0
    assert "acc_w8a8_adaround" not in records
    assert records["acc_w8a8_rtn"] == pytest.approx(records["acc_fp32"], abs=0.02)
    assert records["seconds_adaround"] > 0
    assert records["claims_failed"] in range(records["claims_checked"] + 1)
    assert records["claims_checked"] >= 8
