"""Notebook 05 (static_ptq): the committed run's records, and papermill runs with other
parameters (every cell twice in one of them); their records checked."""

from __future__ import annotations

import pytest

from qnb import env
from tests.notebooks.runs import NOTEBOOKS, run, speedups_with_iqr

ENGINES = ("x86", "qnnpack", "onednn", "fbgemm")  # the committed run's engines (an x86 CPU)


def per_engine(records: dict, prefix: str) -> set[str]:
    names = (n.removeprefix(prefix) for n in records if n.startswith(prefix))
    suffixes = ("p25", "p75", "min", "max")
    return {n for n in names
            if n and n not in suffixes and not n.endswith(tuple(f"_{s}" for s in suffixes))}


def test_05_defaults_hold_their_claims():
    """The committed notebook (this machine's engine, plain CNN, 3 seeds, every engine): its
    fact claims held, int8 stays near fp32 on the 10,000 test images and is about 4x smaller."""
    from qnb import read_records

    records = read_records(NOTEBOOKS / "05_static_ptq.ipynb")
    assert records["claims_checked"] >= 10 and records["claims_failed"] == 0
    assert "claims_skipped" in records and "claims_timing_failed" in records
    assert records["test_images"] == 10000 and records["seeds"] == 3
    assert records["engine"] == "x86" and records["model"] == "plain_cnn"
    for name in ["fp32_acc", "int8_acc", *(f"int8_acc_{e}" for e in ENGINES)]:
        assert records[f"{name}_min"] - 1e-9 <= records[name] <= records[f"{name}_max"] + 1e-9
    assert 0.88 <= records["fp32_acc_min"] and records["fp32_acc_max"] <= 0.95
    for e in ENGINES:
        assert abs(records[f"int8_acc_{e}"] - records["fp32_acc"]) <= 0.01, e
    assert records["size_ratio"] >= 3.8
    assert per_engine(records, "speedup_b256_") == set(ENGINES)
    assert per_engine(records, "int8_acc_") == {*ENGINES, "pt2e"}  # pt2e: a route, not an engine
    # section 6: pt2e beside eager x86, paired over the same seeds and images
    assert records["int8_acc_pt2e_min"] <= records["int8_acc_pt2e"] <= records["int8_acc_pt2e_max"]
    assert abs(records["int8_acc_pt2e"] - records["fp32_acc"]) <= 0.005
    assert records["pt2e_agreement_min"] >= 0.985 and records["pt2e_verdict"] == "not resolved"
    speedups_with_iqr(records, ["speedup_b1", "speedup_b256"])
    speedups_with_iqr(records, [f"speedup_b256_{e}" for e in ENGINES])
    assert records["speedup_b256"] == records["speedup_b256_x86"]


def test_05_one_seed_one_engine_every_cell_twice(tmp_path):
    """The smallest run that reaches every cell, each cell run twice in a row: one seed, the
    machine's engine alone (the claims about other engines are skipped, not failed)."""
    engine = env.default_engine()
    records = run(tmp_path, "05_static_ptq.ipynb", twice=True, seeds=[1], engines=[engine],
                  calib_batches=2, repeats=3)
    assert records["claims_failed"] == 0
    assert records["engine"] == engine and records["seeds"] == 1
    assert records["test_images"] == 10000
    assert records["fp32_acc_min"] == records["fp32_acc"] == records["fp32_acc_max"]
    assert records["int8_acc"] == pytest.approx(records["fp32_acc"], abs=0.01)
    assert per_engine(records, "speedup_b256_") == {engine}
    assert records["claims_skipped"] >= 1  # the x86-vs-qnnpack sentence, at least
    speedups_with_iqr(records, ["speedup_b1", "speedup_b256", f"speedup_b256_{engine}"])


def test_05_on_an_arm_engine_list_runs_to_the_end(tmp_path, monkeypatch):
    """QNB_ENGINES=qnnpack: the engines an ARM build of torch reports, on the
    depthwise model (a small MobileNetV2 with residual adds)."""
    monkeypatch.setenv("QNB_ENGINES", "qnnpack")
    records = run(tmp_path, "05_static_ptq.ipynb", seeds=[2], model_name="depthwise_cnn",
                  calib_batches=2, repeats=3)
    assert records["claims_failed"] == 0
    assert records["engine"] == "qnnpack" and records["model"] == "depthwise_cnn"
    assert per_engine(records, "speedup_b256_") == {"qnnpack"}
    assert records["int8_acc"] == pytest.approx(records["fp32_acc"], abs=0.02)
    assert records["claims_skipped"] >= 3  # x86 and onednn speed, x86 vs qnnpack
    assert records["int8_acc_pt2e"] is None and records["pt2e_verdict"] is None  # x86 only
