"""Notebook 11 (other_runtimes) run by papermill with other parameters; its records checked."""

from __future__ import annotations

from tests.notebooks.runs import run


def test_11_one_seed_mobilenet_small_batch(tmp_path):
    """Notebook 11 on one other seed, two calibration methods, MobileNetV2 at batch 2 and one
    thread, no compiled paths: the accuracy and agreement records, ResNet-18's speedups absent."""
    records = run(
        tmp_path,
        "11_other_runtimes.ipynb",
        twice=True,
        seeds=[1],
        calib_images=128,
        calib_methods=["minmax", "percentile"],
        vision_models=["mobilenet_v2"],
        batches=[2],
        compiled_batches=[],
        calib_batches=1,
        threads=1,
        warmup=1,
        repeats=3,
    )
    assert records["threads"] == 1 and records["calibration_method"] in ("minmax", "percentile")
    for name in ("acc_pytorch_int8", "acc_ort_int8", "acc_openvino_int8", "agreement_ort"):
        assert records[f"{name}_min"] == records[name] == records[f"{name}_max"], name  # one seed
    # Fashion-MNIST: the plain CNN's fp32 test accuracy is 92-93%; int8 keeps it within a point
    assert records["acc_ort_int8"] >= 0.91 and records["acc_openvino_int8"] >= 0.91
    assert abs(records["acc_ort_int8"] - records["acc_pytorch_int8"]) <= 0.01
    assert records["agreement_ort"] >= 0.98 and records["agreement_openvino"] >= 0.98
    assert isinstance(records["qdq_code_mismatches"], int) and records["qdq_code_mismatches"] >= 0
    for suffix in ("", "_p25", "_p75"):  # ResNet-18 at batch 8 was not timed
        assert records[f"speedup_ort_int8_b8{suffix}"] is None
        assert records[f"speedup_openvino_int8_b8{suffix}"] is None
    assert records["fastest_int8_runtime"] is None
    assert records["claims_checked"] >= 12
