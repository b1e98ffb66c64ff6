"""Notebook 05 (static_ptq) run by papermill with other parameters; its records checked."""

from __future__ import annotations

import pytest

from qnb import env
from tests.notebooks.runs import quiet, run, speedups_with_iqr


def test_05_defaults_keep_accuracy_and_shrink_4x(tmp_path):
    """The issue's bar for the default run (this machine's engine, plain CNN, 3 seeds)."""
    records = run(tmp_path, "05_static_ptq.ipynb", twice=True)
    assert records["engine"] == env.default_engine() and records["model"] == "plain_cnn"
    assert records["seeds"] == 3
    for name in ("fp32_acc", "int8_acc"):
        assert records[f"{name}_min"] - 1e-6 <= records[name] <= records[f"{name}_max"] + 1e-6
    assert abs(records["int8_acc"] - records["fp32_acc"]) <= 0.005
    assert records["size_ratio"] >= 3.8
    engines = [n.removeprefix("speedup_b256_") for n in records if n.startswith("speedup_b256_")]
    engines = [e for e in engines if e not in ("p25", "p75") and not e.endswith(("_p25", "_p75"))]
    assert set(engines) == set(env.quantized_engines())
    speedups_with_iqr(records, ["speedup_b1", "speedup_b256"])
    speedups_with_iqr(records, [f"speedup_b256_{e}" for e in engines])
    assert records["speedup_b256"] == records[f"speedup_b256_{records['engine']}"]
    assert records["claims_checked"] >= 8
    if quiet():
        assert records["claims_failed"] == 0


@pytest.mark.parametrize("engine", ["qnnpack", "onednn"])
def test_05_other_engines(tmp_path, engine):
    records = run(
        tmp_path, "05_static_ptq.ipynb", engine=engine, engines=[engine], seeds=[1], repeats=3
    )
    assert records["engine"] == engine and records["seeds"] == 1
    assert records["int8_acc"] == pytest.approx(records["fp32_acc"], abs=0.01)
    assert records[f"int8_acc_{engine}"] == records["int8_acc"]
    assert records["int8_acc_min"] == records["int8_acc"] == records["int8_acc_max"]
    assert "int8_acc_x86" not in records
    speedups_with_iqr(records, ["speedup_b1", "speedup_b256", f"speedup_b256_{engine}"])
    assert records["claims_checked"] >= 5


def test_05_on_an_arm_engine_list_runs_to_the_end(tmp_path, monkeypatch):
    """QNB_ENGINES=qnnpack: the engines an ARM build of torch reports (issue 20)."""
    monkeypatch.setenv("QNB_ENGINES", "qnnpack")
    records = run(tmp_path, "05_static_ptq.ipynb", seeds=[0], repeats=3)
    assert records["engine"] == "qnnpack"
    per_engine = {n for n in records if n.startswith("speedup_b256_")} - {
        "speedup_b256_p25",
        "speedup_b256_p75",
    }
    assert per_engine == {f"speedup_b256_qnnpack{s}" for s in ("", "_p25", "_p75")}
    assert "claims_failed" in records
