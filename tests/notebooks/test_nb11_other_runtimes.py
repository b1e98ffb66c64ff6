"""Notebook 11 (other_runtimes) run by papermill with other parameters; its records checked."""

from __future__ import annotations

import pytest

from qnb import stats
from tests.notebooks.runs import run

VERDICTS = {f"{w} {label}" for label in (stats.EVERY_SEED, stats.SOME_SEEDS)
            for w in ("pytorch int8", "onnxruntime int8", "openvino int8")}
VERDICTS |= {stats.DEPENDS, stats.NO_DIFFERENCE, stats.NOT_RESOLVED}
VERDICTS_ET = {f"{w} {label}" for label in (stats.EVERY_SEED, stats.SOME_SEEDS)
               for w in ("pytorch int8", "executorch int8")}
VERDICTS_ET |= {stats.DEPENDS, stats.NO_DIFFERENCE, stats.NOT_RESOLVED}


def test_11_one_seed_mobilenet_small_batch(tmp_path):
    """Notebook 11 on one other seed, two calibration methods, MobileNetV2 at batch 2 and one
    thread, ExecuTorch on the small MobileNetV2 only: the accuracy and agreement records on the
    10,000 test images, the TensorRT form's structure, ResNet-18's speedups absent, ExecuTorch's
    records for the MobileNetV2 and none for the plain CNN."""
    records = run(
        tmp_path,
        "11_other_runtimes.ipynb",
        twice=True,
        seeds=[1],
        calib_images=128,
        calib_methods=["minmax", "percentile"],
        vision_models=["mobilenet_v2"],
        batches=[2],
        calib_batches=1,
        threads=1,
        warmup=1,
        repeats=3,
        executorch_models=["depthwise_cnn"],
    )
    # committed-run claims (4 of sections 3, 2 of section 7), the two-model ones of section 7,
    # and the batch-8 timing claim
    assert records["claims_failed"] == 0 and records["claims_skipped"] >= 10
    assert records["threads"] == 1 and records["calibration_method"] in ("minmax", "percentile")
    assert records["test_images"] == 10000
    assert records["fp32_acc"] == pytest.approx(0.9227)  # seed 1's shipped plain CNN
    for name in ("fp32_acc", "acc_pytorch_int8", "acc_ort_int8", "acc_openvino_int8",
                 "agreement_ort"):
        assert records[f"{name}_min"] == records[name] == records[f"{name}_max"], name  # one seed
    for name in ("acc_pytorch_int8", "acc_ort_int8", "acc_openvino_int8"):
        assert abs(records[name] - records["fp32_acc"]) <= 0.005, name
    assert records["agreement_ort"] >= 0.98 and records["agreement_openvino"] >= 0.98
    assert records["verdict_ort"] in VERDICTS and records["verdict_openvino"] in VERDICTS
    assert records["qdq_code_mismatches"] < 125  # of 12,544,000 codes: < 1 in 100,000
    assert records["trt_int32_dequantize"] == 0  # the TensorRT form: no quantized bias
    for suffix in ("", "_p25", "_p75"):  # ResNet-18 at batch 8 was not timed
        assert records[f"speedup_ort_int8_b8{suffix}"] is None
        assert records[f"speedup_openvino_int8_b8{suffix}"] is None
    assert records["fastest_int8_runtime"] is None
    assert records["claims_checked"] >= 10
    if records["executorch"] is None:
        pytest.skip("executorch is not installed: notebook 11 ran without its section 7")
    for name in ("acc_executorch_int8_depthwise", "agreement_executorch_depthwise"):
        assert records[f"{name}_min"] == records[name] == records[f"{name}_max"], name  # one seed
    assert abs(records["acc_executorch_int8_depthwise"] - 0.9109) <= 0.005  # seed 1's fp32
    assert records["agreement_executorch_depthwise"] >= 0.97  # against PyTorch's eager int8
    assert records["verdict_executorch_depthwise"] in VERDICTS_ET
    assert 1 < records["size_ratio_executorch_depthwise"] < 4  # int8 weights: a quarter
    for suffix in ("", "_p25", "_p75"):  # batch 8 was not timed; the plain CNN did not run
        assert records[f"speedup_executorch_int8_b8_depthwise{suffix}"] is None
        assert records[f"speedup_executorch_int8_b8{suffix}"] is None
    for name in ("acc_executorch_int8", "agreement_executorch", "size_ratio_executorch"):
        assert records[name] is None, name


def test_11_committed_run_holds_its_claims():
    """The committed notebook: its fact claims held, and its records say what the text says."""
    from qnb import read_records
    from tests.notebooks.runs import NOTEBOOKS

    records = read_records(NOTEBOOKS / "11_other_runtimes.ipynb")
    assert records["claims_failed"] == 0 and "claims_skipped" in records
    assert records["test_images"] == 10000 and records["trt_int32_dequantize"] == 0
    assert 0.918 <= records["fp32_acc"] <= 0.925  # 92.44 / 92.27 / 91.98%: mean 92.23%
    assert records["agreement_ort_min"] >= 0.98 and records["agreement_openvino_min"] >= 0.98
    for short in ("ort", "openvino"):
        value, p25, p75 = (records[f"speedup_{short}_int8_b8{s}"] for s in ("", "_p25", "_p75"))
        assert 0 < p25 <= value <= p75
    # section 7, ExecuTorch with XNNPACK (plain CNN; _depthwise: the small MobileNetV2)
    assert records["executorch"] == "1.5.1"
    for suffix, fp32 in (("", 0.9223), ("_depthwise", 0.9129)):  # fp32 means over seeds 0-2
        assert abs(records[f"acc_executorch_int8{suffix}"] - fp32) <= 0.005, suffix
        assert records[f"agreement_executorch{suffix}_min"] >= 0.98, suffix
        assert records[f"verdict_executorch{suffix}"] == stats.NOT_RESOLVED, suffix
        value, p25, p75 = (records[f"speedup_executorch_int8_b8{suffix}{s}"]
                           for s in ("", "_p25", "_p75"))
        assert 0 < p25 <= value <= p75, suffix
    assert 3.5 < records["size_ratio_executorch"] < 4
    assert 1 < records["size_ratio_executorch_depthwise"] < 2.5
    assert records["agreement_executorch_depthwise"] < records["agreement_executorch"]
