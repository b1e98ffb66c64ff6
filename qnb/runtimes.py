"""Other runtimes: a PyTorch model exported to ONNX, quantized to a QDQ int8 ONNX model with
ONNX Runtime, and run by ONNX Runtime (CPU execution provider) and OpenVINO (CPU plugin) as
`nn.Module`s that `qnb.bench` times like any other model (notebook 11, other_runtimes).

- `export_onnx(model, example, path)`: `torch.onnx.export` with the dynamo exporter (it
  captures the model with `torch.export`, the path PyTorch develops; the TorchScript-based
  exporter is deprecated), the batch dimension dynamic, weights inside the one `.onnx` file. A
  model that does not export fails with `ExportError` naming the operator (or the int8 modules)
  that stopped it.
- `quantize_qdq(fp32_path, out_path, calib, method=...)`: ONNX Runtime's `quantize_static` in
  QDQ format (a `QuantizeLinear` -> `DequantizeLinear` pair on every quantized tensor): uint8
  asymmetric activations, int8 symmetric weights, per channel by default, after ONNX Runtime's
  `quant_pre_process` (shape inference and graph optimization). The activation ranges come from
  a calibration data reader over the workbook's calibration batches with `method` "minmax",
  "entropy" or "percentile" (ONNX Runtime's `CalibrationMethod`).
- `onnxruntime_model(path, threads=...)` and `openvino_model(path, threads=..., batch=...)`:
  an inference session / compiled model wrapped in a `RuntimeModel`. OpenVINO reads the QDQ
  model itself (its ONNX frontend turns each Q/DQ pair into a FakeQuantize, and its
  low-precision transformations run the convolutions and matmuls in int8); NNCF is not used.
  Both run with a stated number of threads and no thread pool spinning while idle, OpenVINO
  with the latency hint, one stream and f32 inference precision (on CPUs with AVX-512 BF16 its
  default would run "fp32" models in bfloat16).
- `quantize_linear(x, scale, zero_point)`: ONNX's `QuantizeLinear` run by ONNX Runtime on one
  tensor, to compare its codes with torch's (`QuantizeLinear` divides by the scale; torch
  multiplies by a float32 reciprocal, see `qnb.affine`).
- `openvino_telemetry_opt_out()`: OpenVINO ships `openvino_telemetry`, which its model
  converter (`openvino.convert_model`, `ovc`) uses to send usage data to Google Analytics unless
  the user declined. This module never calls the converter (it reads ONNX files with
  `Core.read_model`, which sends nothing), and before it first imports openvino it records the
  opt-out the supported way: the consent file `~/intel/openvino_telemetry` holding "0", which
  is what `opt_in_out --opt_out` writes (written here with openvino_telemetry's own writer,
  without the opt-out event that `opt_in_out` itself sends). An earlier explicit choice in that
  file is left as it is.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import itertools
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qnb import checks
from qnb.calibration import batch_inputs

__all__ = [
    "ACTIVATIONS",
    "CALIBRATION_METHODS",
    "ExportError",
    "RuntimeModel",
    "export_onnx",
    "node_table",
    "onnxruntime_kernels",
    "onnxruntime_model",
    "openvino_model",
    "openvino_precisions",
    "openvino_telemetry_opt_out",
    "qdq_structure",
    "quant_params",
    "quantize_linear",
    "quantize_qdq",
]

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
ACTIVATIONS = ("uint8", "int8_symmetric")
_PACKAGES = {  # import name -> (distribution, what it is for)
    "onnx": ("onnx", "reading and writing ONNX models"),
    "onnxruntime": ("onnxruntime", "ONNX Runtime"),
    "onnxscript": ("onnxscript", "torch.onnx's dynamo exporter"),
    "openvino": ("openvino", "OpenVINO"),
}


class ExportError(RuntimeError):
    """A model that `torch.onnx.export` could not export; the message names the operator."""


def _need(name: str):
    """Import the runtime package `name`, or say it is missing and how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        dist, what = _PACKAGES[name]
        raise ImportError(
            f"{dist} is not installed ({what}, needed here): install the workbook's pinned "
            f"environment (`make setup`, or `pip install -r requirements.lock`); import said: {exc}"
        ) from exc


# --- OpenVINO's telemetry --------------------------------------------------------------------


def openvino_telemetry_opt_out() -> str:
    """Record the opt-out of OpenVINO's telemetry in its consent file, if no choice is recorded
    there yet; return what the consent file says now (see the module docstring)."""
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:
        return "openvino_telemetry is not installed: nothing can send usage data"
    checker = OptInChecker()
    if checker.consent_file_base_dir() is None:
        return "no home folder for the consent file; nothing here calls OpenVINO's converter"
    path = Path(checker.consent_file())
    shown = str(path).replace(os.path.expanduser("~"), "~", 1)
    if path.is_file():
        content = path.read_text().strip()
        if content == "0":
            return f"declined ({shown} holds 0, as `opt_in_out --opt_out` leaves it)"
        if content == "1":
            return (
                f"opted in earlier ({shown} holds 1; left as it is). This workbook never calls "
                "OpenVINO's converter, the part that sends; run `opt_in_out --opt_out` to decline"
            )
    if not checker.update_result(ConsentCheckResult.DECLINED):
        return f"could not write {shown}; nothing here calls OpenVINO's converter"
    return f"declined now: wrote 0 to {shown}, as `opt_in_out --opt_out` does"


def _openvino():
    openvino_telemetry_opt_out()
    return _need("openvino")


# --- export ----------------------------------------------------------------------------------


def _check_onnx_path(path: object, name: str = "path", exists: bool = False) -> Path:
    path = checks.check_file(path, name) if exists else checks.check_path(path, name)
    if path.suffix != ".onnx":
        raise ValueError(f"{name} must name an .onnx file, got {str(path)!r}")
    return path


def _check_example(example: object) -> torch.Tensor:
    checks.check_float_tensor("example", example)
    if example.dim() < 2:
        raise ValueError(
            f"example must be a batch with a leading batch dim, got shape {tuple(example.shape)}"
        )
    return example


_OVERLOAD = re.compile(r"OpOverload\(op='([\w.]+)', overload='(\w+)'\)")  # dynamo exporter
_TARGET = re.compile(r"target=torch\.ops\.([\w.]+)")
_OPERATOR = re.compile(
    r"\b(?:aten|quantized|prims|quantized_decomposed|torch\.classes\.quantized)(?:::|\.)\w+"
    r"(?:\.\w+)?"
)


def _int8_modules(model: nn.Module) -> list[str]:
    """The modules of `model` that run PyTorch's quantized:: operators (not their packed
    parameters), as "name (quantized Type)"."""
    return [
        f"{name or '<root>'} (quantized {type(m).__name__})"
        for name, m in model.named_modules()
        if ".quantized" in type(m).__module__ and not name.endswith("_packed_params")
    ]


def _export_error(model: nn.Module, exc: Exception) -> ExportError:
    text = str(exc)
    summary = re.search(r"## Exception summary\s*(.+?)(?:\n\n|\(Refer|$)", text, re.S)
    said = re.sub(r"\x1b\[[0-9;]*m", "", (summary.group(1) if summary else text)).strip()
    said = " ".join(said.split())[:400]
    operators = [f"{op}.{overload}" for op, overload in _OVERLOAD.findall(text)]
    operators += _TARGET.findall(text) + _OPERATOR.findall(text)
    operators = list(dict.fromkeys(operators))
    int8 = _int8_modules(model)
    if int8:
        shown = ", ".join(int8[:4]) + (f" and {len(int8) - 4} more" if len(int8) > 4 else "")
        stopped = f" (the exporter stopped at {operators[0]})" if operators else ""
        what = (
            f"it holds PyTorch int8 modules, whose quantized:: operators (packed int8 weights) "
            f"ONNX cannot express: {shown}{stopped}. Export the float model and quantize the "
            "ONNX model instead (qnb.runtimes.quantize_qdq)"
        )
    elif operators:
        what = f"operator {', '.join(operators[:3])} has no ONNX translation here"
    else:
        what = "the exporter named no operator (see its message)"
    return ExportError(
        f"{type(model).__name__} could not be exported to ONNX: {what}. torch.onnx said: {said}"
    )


def export_onnx(
    model: nn.Module, example: torch.Tensor, path: str | os.PathLike, *, dynamic_batch: bool = True
) -> Path:
    """Export the eval-mode float `model` to the ONNX file `path` (opset 18+), traced on
    `example`, with torch.onnx's dynamo exporter; the batch dim is dynamic unless
    `dynamic_batch=False`. The weights are stored in the file itself. Returns `path`.

    Taught in notebook 11 (other_runtimes)."""
    checks.check_eval_model(model, why="export would capture train-mode batch norm and dropout")
    example = _check_example(example)
    path = _check_onnx_path(path)
    checks.check_bool("dynamic_batch", dynamic_batch)
    _need("onnxscript")
    path.parent.mkdir(parents=True, exist_ok=True)
    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=True,
                dynamic_shapes=shapes,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:
        raise _export_error(model, exc) from exc
    return path


# --- quantization ----------------------------------------------------------------------------


def _input_name(path: Path) -> str:
    onnx = _need("onnx")
    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"{path.name} has {len(inputs)} inputs ({inputs}); expected one")
    return inputs[0]


class _Reader:
    """ONNX Runtime's CalibrationDataReader over the input tensors of `calib`."""

    def __init__(self, calib: Iterable, name: str, num_batches: int | None) -> None:
        batches = iter(calib)
        first = next(batches, None)
        if first is None:
            raise ValueError("calib yielded no batches: calibration needs at least one batch")
        self.batches = itertools.chain([first], batches)
        self.name, self.left, self.seen = name, num_batches, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.left is not None and self.seen >= self.left:
            return None
        batch = next(self.batches, None)
        if batch is None:
            return None
        self.seen += 1
        return {self.name: batch_inputs(batch).detach().cpu().numpy().astype(np.float32)}

    def rewind(self) -> None:  # quantize_static does not rewind; present for the protocol
        return None


def quantize_qdq(
    fp32_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calib: Iterable,
    *,
    method: str = "minmax",
    per_channel: bool = True,
    activations: str = "uint8",
    quantize_bias: bool = True,
    num_batches: int | None = None,
) -> Path:
    """Quantize the float ONNX model at `fp32_path` to a QDQ int8 model at `out_path` with
    ONNX Runtime's `quantize_static`: uint8 activations calibrated on `calib` (a DataLoader or
    any iterable of batches, up to `num_batches` of them) by `method` ("minmax", "entropy" or
    "percentile" at 99.999%), int8 symmetric weights, per output channel unless
    `per_channel=False`. `activations="int8_symmetric"` quantizes activations to int8 with
    zero point 0 instead, the form TensorRT's explicit quantization accepts (its Q/DQ layers
    are symmetric); ONNX Runtime's x86 kernels prefer uint8 activations. `quantize_bias=False`
    keeps every bias float32, with no int32 `DequantizeLinear` (onnxruntime's `QuantizeBias`
    extra option): TensorRT's ONNX parser takes `DequantizeLinear` only on int8/fp8/int4
    inputs, so its form is `activations="int8_symmetric", quantize_bias=False`.
    `quant_pre_process` runs first. Returns `out_path`.

    Taught in notebook 11 (other_runtimes)."""
    fp32_path = _check_onnx_path(fp32_path, "fp32_path", exists=True)
    out_path = _check_onnx_path(out_path, "out_path")
    checks.check_calib(calib)
    method = checks.check_choice("method", method, CALIBRATION_METHODS)
    checks.check_bool("per_channel", per_channel)
    activations = checks.check_choice("activations", activations, ACTIVATIONS)
    checks.check_bool("quantize_bias", quantize_bias)
    if num_batches is not None:
        num_batches = checks.check_int("num_batches", num_batches, 1)
    _need("onnxruntime")
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    reader = _Reader(calib, _input_name(fp32_path), num_batches)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qnb-qdq-") as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet):  # entropy/percentile print their progress
            quant_pre_process(str(fp32_path), str(pre))
            quantize_static(
                str(pre),
                str(out_path),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[method],
                extra_options={
                    "ActivationSymmetric": activations == "int8_symmetric",
                    "QuantizeBias": quantize_bias,
                },
            )
    return out_path


# --- running ---------------------------------------------------------------------------------


class RuntimeModel(nn.Module):
    """A model run by another runtime, callable like a torch module (tensor in, tensor out) so
    that `qnb.bench.compare` times it beside PyTorch's models. It holds the bytes of its file
    as a buffer, so `qnb.bench.serialized_size` reports the size of the artifact."""

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        path: Path,
        runtime: str,
        threads: int,
        details: str = "",
    ) -> None:
        super().__init__()
        self._run = run
        self.path, self.runtime, self.threads, self.details = path, runtime, threads, details
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8).copy()
        self.register_buffer("artifact", torch.from_numpy(data))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(np.asarray(self._run(array)))

    def extra_repr(self) -> str:
        return f"{self.runtime}, {self.path.name}, {self.threads} thread(s){self.details}"


def _check_threads(threads: object) -> int:
    cores = os.cpu_count() or 1
    return cores if threads is None else checks.check_int("threads", threads, 1, cores)


def _session_options(ort, threads: int, level=None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = level or ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle threads do not spin: the models timed round-robin beside it get the cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def onnxruntime_model(path: str | os.PathLike, *, threads: int | None = None) -> RuntimeModel:
    """The ONNX model at `path` in an ONNX Runtime session on the CPU execution provider, with
    `threads` intra-op threads (None: all cores), one inter-op thread, all graph optimizations
    (a QDQ model's Q/DQ pairs around a Conv fuse into int8 `QLinearConv` kernels).

    Taught in notebook 11 (other_runtimes)."""
    path = _check_onnx_path(path, exists=True)
    threads = _check_threads(threads)
    ort = _need("onnxruntime")
    ort.disable_telemetry_events()  # Windows builds log ETW events; a no-op elsewhere
    if "CPUExecutionProvider" not in ort.get_available_providers():
        available = ", ".join(ort.get_available_providers())
        raise RuntimeError(f"this onnxruntime has no CPUExecutionProvider, only: {available}")
    session = ort.InferenceSession(
        str(path), _session_options(ort, threads), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return RuntimeModel(run, path, "onnxruntime", threads, ", CPUExecutionProvider")


def openvino_model(
    path: str | os.PathLike, *, threads: int | None = None, batch: int | None = None
) -> RuntimeModel:
    """The ONNX model at `path` read by OpenVINO (`Core.read_model`, no converter) and compiled
    for its CPU plugin with `threads` inference threads (None: all cores), the LATENCY hint, one
    stream and f32 inference precision; `batch` fixes the batch dim (None: keep the model's).

    Taught in notebook 11 (other_runtimes)."""
    path = _check_onnx_path(path, exists=True)
    threads = _check_threads(threads)
    if batch is not None:
        batch = checks.check_int("batch", batch, 1)
    ov = _openvino()
    core = ov.Core()
    model = core.read_model(str(path))
    if batch is not None:
        shape = model.input(0).get_partial_shape()
        shape[0] = batch
        model.reshape({model.input(0): shape})
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_PRECISION_HINT": "f32",
    }
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        return request.infer({0: x})[compiled.output(0)].copy()

    shown = f", batch {batch}" if batch is not None else ""
    runner = RuntimeModel(run, path, "openvino", threads, f", CPU plugin, f32 precision{shown}")
    runner.compiled = compiled
    return runner


def openvino_precisions(model: RuntimeModel) -> Counter:
    """How many of the compiled OpenVINO model's layers run at each precision, per layer type:
    `Counter({("Convolution", "u8"): 20, ...})` (u8/i8: int8 kernels)."""
    compiled = getattr(model, "compiled", None)
    if not isinstance(model, RuntimeModel) or compiled is None:
        raise TypeError(f"model must come from openvino_model, got {type(model).__name__}")
    counts: Counter = Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        counts[(info["layerType"].astype(str), info["runtimePrecision"].astype(str))] += 1
    return counts


def onnxruntime_kernels(path: str | os.PathLike) -> Counter:
    """The op types ONNX Runtime runs for the model at `path` after its graph optimizations
    (for a QDQ model: `QLinearConv`, `QLinearMatMul`, ... where Q/DQ pairs fused)."""
    path = _check_onnx_path(path, exists=True)
    ort, onnx = _need("onnxruntime"), _need("onnx")
    with tempfile.TemporaryDirectory(prefix="qnb-ort-") as tmp:
        options = _session_options(ort, 1, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
    return Counter(node.op_type for node in optimized.graph.node)


def node_table(path: str | os.PathLike, contains: str | None = None):
    """The nodes of the ONNX model at `path` as a DataFrame (op type, name, inputs, outputs),
    optionally only those whose name, inputs or outputs contain `contains`."""
    import pandas as pd

    path = _check_onnx_path(path, exists=True)
    onnx = _need("onnx")
    rows = []
    for node in onnx.load(str(path)).graph.node:
        names = [node.name, *node.input, *node.output]
        if contains is None or any(contains in n for n in names):
            rows.append(
                {
                    "op": node.op_type,
                    "name": node.name,
                    "inputs": ", ".join(node.input),
                    "outputs": ", ".join(node.output),
                }
            )
    if not rows:
        raise ValueError(f"no node of {path.name} matches contains={contains!r}")
    return pd.DataFrame(rows)


def quantize_linear(x: object, scale: float, zero_point: int) -> np.ndarray:
    """uint8 codes of `x` by ONNX's `QuantizeLinear` (saturate(round(x / scale) + zero_point),
    ties to even), run by ONNX Runtime on one tensor at one float32 `scale`.

    Taught in notebook 11 (other_runtimes)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.size == 0:
        raise ValueError("x must hold at least one value, got an empty array")
    if not np.isfinite(x).all():
        raise ValueError("x holds NaN or inf; QuantizeLinear of those is saturation, not a code")
    scale = checks.check_positive("scale", scale)
    zero_point = checks.check_int("zero_point", zero_point, 0, 255)
    _need("onnx")
    ort = _need("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "scale", "zero_point"], ["q"])],
        "quantize_linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("q", TensorProto.UINT8, list(x.shape))],
        [
            helper.make_tensor("scale", TensorProto.FLOAT, [], [np.float32(scale)]),
            helper.make_tensor("zero_point", TensorProto.UINT8, [], [zero_point]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"x": x})[0]


def qdq_structure(path: str | os.PathLike) -> dict[str, object]:
    """What the Q/DQ nodes of the ONNX model at `path` hold, to check a form a runtime needs:
    `ops` (op type -> count), `dq_inputs` (the code type going into each DequantizeLinear ->
    count: int32 ones are quantized biases), `code_types` (the zero points' types -> count),
    `nonzero_zero_points` (how many zero points, per channel counted singly, are not 0),
    `per_channel_weights` (weights dequantized with one scale per output channel),
    `weights` (weights stored quantized), and `unpaired` (activation QuantizeLinear nodes
    whose output goes anywhere but a DequantizeLinear of the same scale and zero point).

    Taught in notebook 11 (other_runtimes)."""
    from collections import Counter

    path = _check_onnx_path(path, exists=True)
    onnx = _need("onnx")
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    dq_inputs, code_types = Counter(), Counter()
    nonzero = per_channel = weights = unpaired = 0
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zero_point = constants[node.input[2]]
        code_types[str(zero_point.dtype)] += 1
        nonzero += int(np.count_nonzero(zero_point))
        if node.op_type == "DequantizeLinear":
            source = node.input[0]
            code = constants[source].dtype if source in constants else zero_point.dtype
            dq_inputs[str(code)] += 1
            if source in constants and str(code) == "int8":
                weights += 1
                per_channel += int(np.ndim(constants[node.input[1]]) == 1)
        else:
            after = consumers.get(node.output[0], [])
            if not after or any(
                n.op_type != "DequantizeLinear" or list(n.input[1:3]) != list(node.input[1:3])
                for n in after
            ):
                unpaired += 1
    return {
        "ops": dict(Counter(n.op_type for n in graph.node)),
        "dq_inputs": dict(dq_inputs),
        "code_types": dict(code_types),
        "nonzero_zero_points": nonzero,
        "weights": weights,
        "per_channel_weights": per_channel,
        "unpaired": unpaired,
    }


def quant_params(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The scale and zero point of every tensor the QDQ model at `path` quantizes, by the name
    of the tensor going into its `QuantizeLinear` (activations) or `DequantizeLinear` (weights
    stored as int8): `{tensor: (scale, zero_point)}`, arrays (one value per channel for
    per-channel weights; the zero point's dtype is the code type, uint8 or int8).

    Taught in notebook 11 (other_runtimes)."""
    path = _check_onnx_path(path, exists=True)
    onnx = _need("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(path))
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        source = node.input[0]
        if node.op_type == "DequantizeLinear" and source not in constants:
            continue  # the DequantizeLinear of an activation: its QuantizeLinear names it
        found[source] = (constants[node.input[1]], constants[node.input[2]])
    if not found:
        raise ValueError(f"{path.name} holds no QuantizeLinear/DequantizeLinear: not a QDQ model")
    return found
