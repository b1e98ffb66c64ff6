"""qnb.runtimes: ONNX export, ONNX Runtime QDQ quantization, ONNX Runtime and OpenVINO runs,
QuantizeLinear's codes, OpenVINO's telemetry opt-out. No speed is asserted anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from qnb import bench, data, env, models, ptq, runtimes, simulate
from tests.conftest import REPO

env.hide_deprecation_warnings()


@pytest.fixture(scope="module")
def cnn():
    return simulate.fused_copy(models.build("plain_cnn", seed=0))


@pytest.fixture(scope="module")
def calib():
    return [batch[0] for batch in data.calibration_loader(64, 32)]


@pytest.fixture(scope="module")
def files(cnn, calib, tmp_path_factory):
    folder = tmp_path_factory.mktemp("runtimes")
    fp32 = runtimes.export_onnx(cnn, calib[0], folder / "cnn.onnx")
    int8 = runtimes.quantize_qdq(fp32, folder / "cnn_int8.onnx", calib)
    return {"folder": folder, "fp32": fp32, "int8": int8}


# --- export ----------------------------------------------------------------------------------


def test_export_is_one_file_and_runs_any_batch_in_onnxruntime(cnn, files):
    assert not list(files["folder"].glob("*.data")), "weights must live in the .onnx file"
    session = runtimes.onnxruntime_model(files["fp32"], threads=1)
    for batch in (1, 5):
        x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = cnn(x)
        assert torch.allclose(session(x), want, atol=1e-4), batch


def test_export_of_pytorch_int8_names_the_int8_modules(cnn, calib, tmp_path):
    int8 = ptq.quantize_static(cnn, calib, engine=env.default_engine())[0].eval()
    with pytest.raises(runtimes.ExportError) as error:
        runtimes.export_onnx(int8, calib[0], tmp_path / "int8.onnx")
    message = str(error.value)
    assert "conv1 (quantized ConvReLU2d)" in message
    assert "quantize_qdq" in message  # what to do instead
    assert "Conv2dPackedParamsBase" in message  # the operator the exporter stopped at


def test_export_of_an_unknown_operator_names_it(tmp_path):
    @torch.library.custom_op("qnbtest::mystery", mutates_args=())
    def mystery(x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @mystery.register_fake
    def _(x):
        return torch.empty_like(x)

    class Mystery(torch.nn.Module):
        def forward(self, x):
            return mystery(x) + 1

    with pytest.raises(runtimes.ExportError, match=r"operator qnbtest\.mystery\.default"):
        runtimes.export_onnx(Mystery().eval(), torch.randn(2, 3), tmp_path / "m.onnx")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"path": "model.pt"}, ValueError, r"path must name an \.onnx file, got 'model\.pt'"),
        ({"example": torch.zeros(2, 1, 28, 28, dtype=torch.int64)}, TypeError,
         "example must be a float torch.Tensor, got dtype torch.int64"),
        ({"example": torch.zeros(28, dtype=torch.float32)}, ValueError, "leading batch dim"),
        ({"example": torch.full((2, 1, 28, 28), float("nan"))}, ValueError, "NaN or inf"),
        ({"example": [1, 2]}, TypeError, "example must be a float torch.Tensor, got list"),
        ({"dynamic_batch": "yes"}, TypeError, "dynamic_batch must be True or False"),
    ],
)
def test_export_refuses_bad_input(cnn, tmp_path, kwargs, error, message):
    args = {"example": torch.randn(2, 1, 28, 28), "path": tmp_path / "m.onnx"} | kwargs
    args.setdefault("dynamic_batch", True)
    with pytest.raises(error, match=message):
        runtimes.export_onnx(cnn, args["example"], args["path"],
                             dynamic_batch=args["dynamic_batch"])


def test_export_refuses_a_model_in_train_mode(tmp_path):
    with pytest.raises(ValueError, match=r"train mode .*call model\.eval\(\)"):
        runtimes.export_onnx(models.build("plain_cnn", seed=0).train(), torch.randn(2, 1, 28, 28),
                             tmp_path / "m.onnx")


# --- QDQ quantization ------------------------------------------------------------------------


def test_qdq_model_has_per_channel_int8_weights_and_uint8_activations(files):
    params = runtimes.quant_params(files["int8"])
    scale, zero_point = params["conv2.0.weight_quantized"]
    assert scale.shape == (32,) and zero_point.dtype == np.int8 and not zero_point.any()
    input_scale, input_zp = params["x"]
    assert input_scale.shape == () and input_zp.dtype == np.uint8
    ops = set(runtimes.node_table(files["int8"]).op)
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops


def test_per_tensor_and_symmetric_activation_options(files, calib, tmp_path):
    flat = runtimes.quantize_qdq(files["fp32"], tmp_path / "t.onnx", calib, per_channel=False,
                                 method="percentile", num_batches=1)
    assert runtimes.quant_params(flat)["conv2.0.weight_quantized"][0].shape == ()
    sym = runtimes.quantize_qdq(files["fp32"], tmp_path / "s.onnx", calib,
                                activations="int8_symmetric", method="entropy")
    for _, zero_point in runtimes.quant_params(sym).values():
        assert zero_point.dtype in (np.int8, np.int32) and not np.any(zero_point)


def test_the_tensorrt_form_has_no_int32_dequantize_and_symmetric_int8_pairs(files, calib,
                                                                          tmp_path):
    """TensorRT's parser takes DequantizeLinear only on int8/fp8/int4: no quantized bias."""
    default = runtimes.qdq_structure(
        runtimes.quantize_qdq(files["fp32"], tmp_path / "d.onnx", calib,
                              activations="int8_symmetric"))
    assert default["dq_inputs"]["int32"] == 2  # the biases of conv1 and conv2 (fc's stay float)
    trt = runtimes.qdq_structure(
        runtimes.quantize_qdq(files["fp32"], tmp_path / "trt.onnx", calib,
                              activations="int8_symmetric", quantize_bias=False))
    assert set(trt["dq_inputs"]) == {"int8"} and set(trt["code_types"]) == {"int8"}
    assert trt["nonzero_zero_points"] == 0 and trt["unpaired"] == 0
    assert trt["weights"] == trt["per_channel_weights"] == 4
    assert trt["ops"]["QuantizeLinear"] + 4 == trt["ops"]["DequantizeLinear"]  # + the weights
    assert runtimes.qdq_structure(files["int8"])["code_types"].get("uint8", 0) > 0
    with pytest.raises(TypeError, match="quantize_bias must be True or False"):
        runtimes.quantize_qdq(files["fp32"], tmp_path / "x.onnx", calib, quantize_bias=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"method": "kl"}, ValueError, "method must be one of 'minmax', 'entropy', 'percentile'"),
        ({"activations": "int4"}, ValueError, "activations must be one of 'uint8'"),
        ({"per_channel": 1}, TypeError, "per_channel must be True or False"),
        ({"num_batches": 0}, ValueError, "num_batches must be an int >= 1, got 0"),
        ({"calib": torch.randn(4, 1, 28, 28)}, TypeError, "calib must be a DataLoader"),
        ({"calib": []}, ValueError, "calib yielded no batches"),
        ({"out_path": "x.onnx.tmp"}, ValueError, "out_path must name an .onnx file"),
    ],
)
def test_quantize_refuses_bad_input(files, calib, tmp_path, kwargs, error, message):
    args = {"calib": calib, "out_path": tmp_path / "q.onnx"} | kwargs
    calib_arg, out = args.pop("calib"), args.pop("out_path")
    with pytest.raises(error, match=message):
        runtimes.quantize_qdq(files["fp32"], out, calib_arg, **args)


def test_quantize_names_a_missing_model_file(calib, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"fp32_path='.*nowhere\.onnx' is not a file"):
        runtimes.quantize_qdq(tmp_path / "nowhere.onnx", tmp_path / "q.onnx", calib)


def test_quant_params_refuses_a_float_model(files):
    with pytest.raises(ValueError, match="not a QDQ model"):
        runtimes.quant_params(files["fp32"])


# --- running ---------------------------------------------------------------------------------


def test_both_runtimes_run_the_qdq_model_as_int8_and_agree(files):
    assert runtimes.onnxruntime_kernels(files["int8"])["QLinearConv"] == 2
    ort = runtimes.onnxruntime_model(files["int8"])
    ov = runtimes.openvino_model(files["int8"], threads=1)
    precisions = runtimes.openvino_precisions(ov)
    assert precisions[("Convolution", "u8")] == 2
    x = data.tensors(train=False)[0][:200]
    a, b = ort(x), ov(x)
    step = float(a.max() - a.min()) / 255
    assert (a.argmax(1) == b.argmax(1)).float().mean() >= 0.98
    assert float((a - b).abs().max()) < 8 * step  # a few output codes at most


def test_openvino_fp32_runs_in_float32_not_bfloat16(cnn, files):
    ov = runtimes.openvino_model(files["fp32"], batch=4)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = cnn(x)
    assert torch.allclose(ov(x), want, atol=1e-4)  # bfloat16 would be ~1e-2 off
    assert ov.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"


def test_runtime_models_time_in_bench_with_their_file_size(cnn, files):
    ort = runtimes.onnxruntime_model(files["int8"], threads=1)
    result = bench.compare({"fp32": cnn, "ort": ort}, torch.randn(2, 1, 28, 28), threads=1,
                           warmup=1, repeats=2, inner=1)
    assert result.table().at["ort", "size_bytes"] >= bench.size_on_disk(files["int8"])
    speedup = result.paired("ort")
    assert speedup.p25 <= speedup.value <= speedup.p75
    assert len(result.table()) == 2 and result.baseline == "fp32"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda f: runtimes.onnxruntime_model(f, threads=0), ValueError, "threads must be an int"),
        (lambda f: runtimes.openvino_model(f, threads=10_000), ValueError, "threads must be"),
        (lambda f: runtimes.openvino_model(f, batch=0), ValueError, "batch must be an int >= 1"),
        (lambda f: runtimes.onnxruntime_model(f.with_name("gone.onnx")), FileNotFoundError,
         "gone.onnx"),
        (lambda f: runtimes.openvino_precisions(torch.nn.Linear(2, 2)), TypeError,
         "must come from openvino_model"),
        (lambda f: runtimes.node_table(f, contains="no such node"), ValueError, "no node"),
    ],
)
def test_running_refuses_bad_input(files, call, error, message):
    with pytest.raises(error, match=message):
        call(files["int8"])


def test_a_missing_runtime_says_what_to_install(files, monkeypatch):
    real = runtimes.importlib.import_module

    def without_openvino(name, *args):
        if name == "openvino":
            raise ModuleNotFoundError("No module named 'openvino'")
        return real(name, *args)

    monkeypatch.setattr(runtimes.importlib, "import_module", without_openvino)
    with pytest.raises(ImportError, match=r"openvino is not installed .*requirements\.lock"):
        runtimes.openvino_model(files["int8"])


# --- QuantizeLinear --------------------------------------------------------------------------


def test_quantize_linear_divides_where_torch_multiplies():
    """qnb.affine's worked tie: x / s = 127.49999 (127), x * (1 / s) = 127.5 (128, torch)."""
    s, x = np.float32(0.00214854861), np.float32(0.273939937)
    assert runtimes.quantize_linear([x], float(s), 0)[0] == 127
    torch_code = torch.quantize_per_tensor(torch.tensor([x]), float(s), 0, torch.quint8)
    assert torch_code.int_repr()[0] == 128
    assert list(runtimes.quantize_linear([0.5, 1.5, 2.5, -9.0, 1e6], 1.0, 3)) == [3, 5, 5, 0, 255]


@pytest.mark.parametrize(
    ("x", "scale", "zero_point", "error", "message"),
    [
        ([1.0], 0.0, 0, ValueError, "scale must be a finite number > 0, got 0.0"),
        ([1.0], 0.1, 256, ValueError, r"zero_point must be an int in 0\.\.255, got 256"),
        ([float("nan")], 0.1, 0, ValueError, "NaN or inf"),
        ([], 0.1, 0, ValueError, "at least one value"),
    ],
)
def test_quantize_linear_refuses_bad_input(x, scale, zero_point, error, message):
    with pytest.raises(error, match=message):
        runtimes.quantize_linear(x, scale, zero_point)


# --- OpenVINO's telemetry ----------------------------------------------------------------------

_OFFLINE_RUN = textwrap.dedent(
    """
    import json, socket, sys, urllib.request
    attempts = []
    def refuse(*args, **kwargs):
        attempts.append(repr(args)[:200])
        raise OSError("no network in this test")
    socket.socket.connect = refuse
    socket.create_connection = refuse
    urllib.request.urlopen = refuse
    import numpy as np, torch
    from qnb import runtimes
    status = runtimes.openvino_telemetry_opt_out()
    model = runtimes.openvino_model(sys.argv[1], threads=1)
    model(torch.zeros(2, 1, 28, 28))
    import openvino_telemetry  # a second look: the package is there and stayed silent
    print(json.dumps({"status": status, "attempts": attempts}))
    """
)


def _offline(files, home) -> dict:
    environment = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD")}
    environment["HOME"] = str(home)
    done = subprocess.run([sys.executable, "-c", _OFFLINE_RUN, str(files["int8"])], cwd=REPO,
                          env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_openvino_runs_offline_and_records_the_opt_out(files, tmp_path):
    ran = _offline(files, tmp_path)
    assert ran["attempts"] == []
    assert (tmp_path / "intel" / "openvino_telemetry").read_text() == "0"
    assert ran["status"].startswith(("declined now", "declined ("))
    again = _offline(files, tmp_path)  # a second run finds the opt-out and leaves it
    assert again["status"].startswith("declined (") and again["attempts"] == []


def test_an_earlier_opt_in_is_left_alone_and_still_nothing_is_sent(files, tmp_path):
    (tmp_path / "intel").mkdir()
    (tmp_path / "intel" / "openvino_telemetry").write_text("1")
    ran = _offline(files, tmp_path)
    assert ran["status"].startswith("opted in earlier") and ran["attempts"] == []
    assert (tmp_path / "intel" / "openvino_telemetry").read_text() == "1"
