"""Notebook 10 (cpu_deployment) run by papermill with other parameters; its records checked."""

from __future__ import annotations

import pytest

from qnb import env, read_records
from tests.notebooks.runs import NOTEBOOKS, run, speedups_with_iqr


def edge_shares(records: dict, batches: list[int]) -> None:
    """The quantize/dequantize edges' share of int8's time (section 8): a fraction with its IQR
    (1 - core time / full time per round, so it may dip below 0 when the edges cost ~nothing)."""
    for b in batches:
        name = f"edge_qdq_share_b{b}"
        value, p25, p75 = (records[name + s] for s in ("", "_p25", "_p75"))
        assert -1 < p25 <= value <= p75 < 1, (name, value, p25, p75)


SMALL_10 = dict(
    thread_counts=[1],
    cnn_batches=[4, 64],
    vision_models=["mobilenet_v2"],
    vision_batches=[2],
    calib_batches=1,
    warmup=1,
    repeats=2,
    pt2e_model="mobilenet_v2",
    pt2e_batch=2,
)


def test_10_one_engine_small_batches(tmp_path):
    records = run(tmp_path, "10_cpu_deployment.ipynb", twice=True, engines=["x86"], **SMALL_10)
    assert records["claims_failed"] == 0
    assert records["engine"] == "x86" and records["pt2e_model"] == "mobilenet_v2"
    speedups_with_iqr(records, ["speedup_pt2e_b2", "pt2e_vs_eager_int8_b2"])
    assert records["artifact_identical"] is True
    assert records["pt2e_artifact_identical"] is True
    assert 3.0 < records["size_ratio_mobilenet_v2"] < 4.0
    assert 3.5 < records["size_ratio_plain_cnn"] < 4.0
    # the unit of this CPU's widest int8 instructions, and its peak (AMX 32, VNNI 4, AVX2 4/3)
    assert records["int8_unit"] == env.int8_unit() and records["int8_unit"] is not None
    assert records["int8_peak_ratio"] == pytest.approx(env.INT8_UNITS[env.int8_unit()][0])
    assert records["test_images"] == 10000
    assert records["fp32_acc"] == pytest.approx(0.9244)  # seed 0's shipped plain CNN
    assert abs(records["int8_acc_x86"] - records["fp32_acc"]) <= 0.005
    assert "speedup_resnet18_b8" not in records and "speedup_cnn_b256" not in records
    assert "speedup_cnn_b256_again" not in records  # only measured at batch 256, all cores
    assert records["claims_checked"] >= 5
    edge_shares(records, [4, 64])
    assert "edge_qdq_share_b1" not in records


def test_10_committed_run_measures_05s_setting_twice():
    """The committed notebook: the plain CNN at batch 256 on all cores (notebook 05's setting)
    measured twice with the same call, both speedups recorded with their IQR."""
    records = read_records(NOTEBOOKS / "10_cpu_deployment.ipynb")
    assert records["claims_failed"] == 0 and "claims_skipped" in records
    assert records["int8_unit"] in env.INT8_UNITS and records["test_images"] == 10000
    speedups_with_iqr(records, ["speedup_cnn_b256", "speedup_cnn_b256_again"])
    edge_shares(records, [1, 256])


def test_10_on_an_arm_engine_list_skips_the_x86_sections(tmp_path, monkeypatch):
    """QNB_ENGINES=qnnpack (an ARM build of torch): pt2e and the int8 units are skipped,
    recorded as None."""
    monkeypatch.setenv("QNB_ENGINES", "qnnpack")
    records = run(tmp_path, "10_cpu_deployment.ipynb", **SMALL_10)
    assert records["claims_failed"] == 0
    assert records["engine"] == "qnnpack"
    assert records["pt2e_model"] is None and records["int8_peak_ratio"] is None
    assert records["int8_unit"] is None
    for suffix in ("", "_p25", "_p75"):
        assert records[f"speedup_pt2e_b2{suffix}"] is None
    assert records["pt2e_artifact_identical"] is None
    assert records["artifact_identical"] is True
