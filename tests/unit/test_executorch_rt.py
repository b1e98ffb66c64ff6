"""qnb.executorch_rt: pt2e with XNNPACKQuantizer, lowering to XNNPACK, the .pte run by
ExecuTorch's runtime, and its errors. No speed is asserted anywhere."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
import torch

from qnb import data, executorch_rt, models, simulate

HAVE_EXECUTORCH = importlib.util.find_spec("executorch") is not None
needs_executorch = pytest.mark.skipif(
    not HAVE_EXECUTORCH,
    reason="executorch is not installed (the lock pins it: wheels for Linux x86-64 "
    "and aarch64, macOS arm64, Windows x86-64)",
)
MAX_BATCH = 256


@pytest.fixture(scope="module")
def cnn():
    return simulate.fused_copy(models.pretrained("plain_cnn", seed=0))


@pytest.fixture(scope="module")
def calib():
    return [batch[0] for batch in data.calibration_loader(64, 32)]


@pytest.fixture(scope="module")
def images():
    return data.tensors(train=False)[0][:MAX_BATCH]


@pytest.fixture(scope="module")
def built(cnn, calib, tmp_path_factory):
    folder = tmp_path_factory.mktemp("executorch")
    int8_graph = executorch_rt.quantize_xnnpack(cnn, calib[0], calib)
    int8 = executorch_rt.export_pte(
        int8_graph, calib[0], folder / "cnn_int8.pte", max_batch=MAX_BATCH
    )
    fp32 = executorch_rt.export_pte(cnn, calib[0], folder / "cnn_fp32.pte", max_batch=MAX_BATCH)
    return {
        "folder": folder,
        "graph": int8_graph,
        "int8": int8,
        "fp32": fp32,
        "int8_model": executorch_rt.executorch_model(int8, threads=1),
        "fp32_model": executorch_rt.executorch_model(fp32, threads=1),
    }


def _output_scale(graph: torch.fx.GraphModule) -> float:
    """The scale of the last dequantize op: the step of the int8 logits."""
    output = next(n for n in graph.graph.nodes if n.op == "output")
    last = output.args[0][0]
    assert "dequantize_per_tensor" in str(last.target), last.target
    return float(last.args[1])


# --- what runs -------------------------------------------------------------------------------


@needs_executorch
def test_available_names_the_xnnpack_backend():
    ok, why = executorch_rt.available()
    assert ok, why
    assert "XnnpackBackend" in why


@needs_executorch
def test_fp32_pte_matches_the_float_model_on_any_batch(cnn, built, images):
    for batch in (1, 7, MAX_BATCH):
        with torch.no_grad():
            want = cnn(images[:batch])
        got = built["fp32_model"](images[:batch])
        assert got.shape == want.shape
        # fp32 throughout, other kernels: only the summation order differs
        assert torch.allclose(got, want, atol=1e-3, rtol=1e-4), batch


@needs_executorch
def test_int8_pte_agrees_with_the_pt2e_graph_to_one_output_step(built, images):
    # The .pte runs XNNPACK's int8 kernels (int32 accumulators, a fixed-point requantization);
    # the pt2e graph runs float ops between quantize/dequantize ops. At each of the plain CNN's
    # four requantizations a value near a rounding tie can land one code apart, and such a
    # difference reaches the logits as at most a step or two of the output's int8 grid
    # (measured: at most one step on these 256 images). A misread scale or zero point would
    # move many logits by many steps.
    with torch.no_grad():
        want = built["graph"](images)
    got = built["int8_model"](images)
    steps = ((got - want).abs() / _output_scale(built["graph"])).round()
    assert steps.max() <= 2, steps.max()
    assert (steps > 0).float().mean() < 0.1
    assert (got.argmax(1) == want.argmax(1)).float().mean() >= 0.99


@needs_executorch
def test_int8_pte_keeps_accuracy_and_is_smaller(cnn, built, images):
    labels = data.tensors(train=False)[1][:MAX_BATCH]
    with torch.no_grad():
        fp32_correct = (cnn(images).argmax(1) == labels).sum()
    int8_correct = (built["int8_model"](images).argmax(1) == labels).sum()
    assert abs(int(int8_correct) - int(fp32_correct)) <= 3  # 256 images, 1.2 points
    fp32_size, int8_size = built["fp32"].stat().st_size, built["int8"].stat().st_size
    # int8 weights are a quarter of float32's; scales, biases and the program add a little
    assert 3 * int8_size < fp32_size, (int8_size, fp32_size)


@needs_executorch
def test_planned_input_is_the_largest_batch(built):
    assert executorch_rt.planned_input(built["int8"]) == (MAX_BATCH, 1, 28, 28)
    assert built["int8_model"].artifact.numel() == built["int8"].stat().st_size


# --- bad input -------------------------------------------------------------------------------


@needs_executorch
def test_run_refuses_a_wrong_shape_and_a_batch_above_the_plan(built, images):
    with pytest.raises(ValueError, match=r"samples of shape \(1, 28, 28\)"):
        built["int8_model"](torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"samples of shape"):
        built["int8_model"](torch.zeros(1, 28, 28))
    with pytest.raises(ValueError, match=rf"batch of {MAX_BATCH + 1}.*1 to {MAX_BATCH}"):
        built["int8_model"](torch.zeros(MAX_BATCH + 1, 1, 28, 28))


@needs_executorch
def test_bad_arguments_name_themselves(cnn, calib, built, tmp_path):
    with pytest.raises(ValueError, match=r"\.pte"):
        executorch_rt.export_pte(cnn, calib[0], tmp_path / "cnn.onnx")
    with pytest.raises(FileNotFoundError, match="missing.pte"):
        executorch_rt.executorch_model(tmp_path / "missing.pte")
    with pytest.raises(ValueError, match="max_batch"):
        executorch_rt.export_pte(cnn, calib[0], tmp_path / "a.pte", max_batch=1)
    with pytest.raises(TypeError, match="example"):
        executorch_rt.export_pte(
            cnn, torch.zeros(1, 1, 28, 28, dtype=torch.int64), tmp_path / "b.pte"
        )
    with pytest.raises(ValueError, match="leading batch dim"):
        executorch_rt.quantize_xnnpack(cnn, torch.zeros(28), calib)
    with pytest.raises(TypeError, match="calib"):
        executorch_rt.quantize_xnnpack(cnn, calib[0], calib[0])
    with pytest.raises(ValueError, match=r"calib batch has shape \(4, 1, 14, 14\)"):
        executorch_rt.quantize_xnnpack(cnn, calib[0], [torch.zeros(4, 1, 14, 14)])
    with pytest.raises(TypeError, match="is_per_channel"):
        executorch_rt.xnnpack_quantizer(is_per_channel="yes")
    with pytest.raises(ValueError, match="threads"):
        executorch_rt.executorch_model(built["int8"], threads=0)


@needs_executorch
def test_train_mode_model_is_refused(calib, tmp_path):
    model = models.build("plain_cnn", seed=0).train()
    with pytest.raises(ValueError, match=r"train mode.*eval\(\)"):
        executorch_rt.quantize_xnnpack(model, calib[0], calib)
    with pytest.raises(ValueError, match="train mode"):
        executorch_rt.export_pte(model, calib[0], tmp_path / "t.pte")


@needs_executorch
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to ask for another count")
def test_thread_pool_is_not_resized_under_loaded_programs(built):
    with pytest.raises(ValueError, match=r"threads=2.*already has 1 thread"):
        executorch_rt.executorch_model(built["int8"], threads=2)
    assert built["int8_model"](torch.zeros(1, 1, 28, 28)).shape == (1, 10)  # still runs


def test_missing_executorch_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "executorch.runtime", None)  # import raises ImportError
    ok, why = executorch_rt.available()
    assert not ok
    assert "executorch is not installed" in why and "requirements.lock" in why
    monkeypatch.setitem(
        sys.modules, "executorch.backends.xnnpack.quantizer.xnnpack_quantizer", None
    )
    with pytest.raises(ImportError, match=r"pip install executorch==1.5.1"):
        executorch_rt.xnnpack_quantizer()
