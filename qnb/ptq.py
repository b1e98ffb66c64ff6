"""Eager post-training static quantization (PTQ) with `torch.ao.quantization`, with guards.

`quantize_static(model, calib, engine="x86")` runs the whole recipe on a copy of `model`:
validate the engine, set it together with a matching qconfig, fuse conv-bn(-relu) and
linear-relu in eval mode, prepare, calibrate on `calib` with a progress bar, convert, and run
one calibration batch through the int8 model. It returns the int8 model and a `PTQReport` of
which modules were quantized, which stayed float, and why.

Mistakes that eager PTQ otherwise turns into silent garbage or an obscure kernel error fail
here with a message that says what to change: a model in train mode, no QuantStub or one that
forward never calls, observers that saw no data, float ops (`+`, `torch.cat`, ...) on quantized
tensors (use `FloatFunctional`), preparing or converting twice, an int8 model run under another
engine than it was built for, and CUDA tensors (quantized inference here is CPU-only).

Also here: `layer_errors` (SQNR of each int8 layer's output against the float model's),
`plot_layer_errors`, and two ways to save and reload an int8 model: TorchScript
(`save_torchscript` / `load_torchscript`) and its state dict loaded into the same recipe rebuilt
(`save_state_dict` / `load_int8`).

Note: the quantized engine is process-wide state (`torch.backends.quantized.engine`).
`quantize_static`, `load_torchscript` and `load_int8` set it to the model's engine and leave it
set, since the int8 model only runs correctly under that engine.
"""

from __future__ import annotations

import contextlib
import copy
import linecache
import os
import re
import traceback
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.ao.nn.intrinsic import _FusedModule
from torch.ao.nn.quantized import DeQuantize, FloatFunctional, QFunctional, Quantize
from torch.ao.quantization import QConfig, QuantStub, convert, get_default_qconfig, prepare
from torch.ao.quantization.fake_quantize import FakeQuantizeBase
from torch.ao.quantization.observer import (
    HistogramObserver,
    MinMaxObserver,
    ObserverBase,
    PerChannelMinMaxObserver,
)
from torch.ao.quantization.quantization_mappings import (
    get_default_dynamic_quant_module_mappings,
    get_default_static_quant_module_mappings,
)

from qnb import affine, env, estimators, models, simulate
from qnb.calibration import batch_inputs, calibrate
from qnb.checks import check_bool as _check_bool
from qnb.checks import check_int as _check_int

__all__ = [
    "ENGINES",
    "EngineMismatchError",
    "QuantizedTensorError",
    "ModuleStatus",
    "PTQReport",
    "check_engine_name",
    "qconfig_for",
    "quantize_static",
    "check_engine",
    "layer_errors",
    "plot_layer_errors",
    "save_torchscript",
    "load_torchscript",
    "save_state_dict",
    "load_int8",
]

ENGINES = ("x86", "fbgemm", "qnnpack", "onednn")
CPU_ONLY = "quantized inference here is CPU-only"
_TORCH_DIR = os.path.dirname(torch.__file__)
_STATIC = get_default_static_quant_module_mappings()
_QUANTIZED_TYPES = (
    set(_STATIC.values())
    | set(get_default_dynamic_quant_module_mappings().values())
    | {Quantize, DeQuantize, QFunctional}
)
_CAT_WARNING = "All inputs of this cat operator must share the same quantization parameters"
_FLOAT_FUNCTIONAL_HINT = (
    "quantized tensors only go through quantized ops: use torch.ao.nn.quantized.FloatFunctional "
    "(create self.ff = FloatFunctional() in __init__, then call self.ff.add(a, b), "
    "self.ff.cat([a, b]), self.ff.mul(a, b) or self.ff.add_scalar(x, c) in forward; one "
    "FloatFunctional per op), or dequantize around the op with a DeQuantStub and a QuantStub"
)
_SAVE_FORMAT = "qnb-int8-state-dict"


class EngineMismatchError(RuntimeError):
    """An int8 model ran under another quantized engine than the one it was built for."""


class QuantizedTensorError(RuntimeError):
    """The int8 model met a tensor of the wrong kind: a float op or float module on a quantized
    tensor, or an int8 module on a float tensor."""


# --- validation ----------------------------------------------------------------------------


check_engine_name = env.check_engine  # `engine` if this PyTorch supports it, else ValueError


def _is_cuda(t: torch.Tensor) -> bool:
    return t.is_cuda


def _check_cpu_model(model: nn.Module) -> None:
    tensors = [*model.named_parameters(), *model.named_buffers()]
    on_cuda = [name for name, t in tensors if _is_cuda(t)]
    if on_cuda:
        shown = ", ".join(on_cuda[:5]) + (", ..." if len(on_cuda) > 5 else "")
        raise ValueError(
            f"{CPU_ONLY}: the model has {len(on_cuda)} parameters/buffers on CUDA ({shown}); "
            "move it with model.cpu() first"
        )


def _check_cpu_input(x: object, what: str) -> None:
    if isinstance(x, torch.Tensor) and _is_cuda(x):
        raise ValueError(f"{CPU_ONLY}: {what} is a CUDA tensor; move it with .cpu() first")


def _is_quantized(module: nn.Module) -> bool:
    return type(module) in _QUANTIZED_TYPES


def _check_float_model(model: nn.Module, what: str = "model") -> None:
    """Refuse models that already hold observers/fake-quant (prepared) or int8 modules."""
    names = [n or "(root)" for n, m in model.named_modules() if _is_quantized(m)]
    if names:
        raise ValueError(
            f"{what} is already converted (int8 modules: {', '.join(names[:4])}): converting "
            "twice is not possible; start from the float model"
        )
    names = [n for n, m in model.named_modules() if isinstance(m, ObserverBase | FakeQuantizeBase)]
    if names:
        raise ValueError(
            f"{what} is already prepared (observers at: {', '.join(names[:4])}): preparing twice "
            "stacks observers; start from the float model"
        )


def _check_eval(model: nn.Module) -> None:
    training = [n or "(root)" for n, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            f"model is in train mode ({', '.join(training[:4])}): call model.eval() first: PTQ "
            "folds batch norm with its running statistics and calibrates with dropout off"
        )


def _check_quant_stub(model: nn.Module) -> None:
    if not any(isinstance(m, QuantStub) for m in model.modules()):
        raise ValueError(
            f"model {type(model).__name__} has no QuantStub: eager-mode PTQ quantizes only "
            "between a QuantStub and a DeQuantStub; add self.quant = QuantStub() and "
            "self.dequant = DeQuantStub() in __init__ (torch.ao.quantization) and call "
            "x = self.quant(x) at the start of forward and self.dequant(x) at the end"
        )


def _check_act_method(act_method: object) -> str | None:
    if act_method is not None and act_method not in estimators.METHODS:
        raise ValueError(
            f"act_method must be None (the engine's default, torch's HistogramObserver) or one of "
            f"{', '.join(estimators.METHODS)}; got {act_method!r}"
        )
    return act_method


def _check_int8_model(model: object, what: str = "model") -> nn.Module:
    model = models._check_model(model)
    if not any(_is_quantized(m) for m in model.modules()):
        raise ValueError(
            f"{what} must be an int8 model (from quantize_static or load_int8); "
            f"{type(model).__name__} has no quantized modules"
        )
    return model


# --- qconfig and the recipe ------------------------------------------------------------------


def qconfig_for(
    engine: str = "x86",
    *,
    per_channel: bool = True,
    act_method: str | None = None,
    reduce_range: bool | None = None,
) -> QConfig:
    """The qconfig `quantize_static` uses: `get_default_qconfig(engine)` as the baseline.

    Weights: signed int8, symmetric, per output channel (or per tensor with
    `per_channel=False`) on every engine. Activations: unsigned 8-bit, with torch's
    HistogramObserver (`act_method=None`) or a `qnb.estimators` method. `reduce_range=None`
    takes the engine's default (7-bit activations on x86/fbgemm, which keeps their int16
    accumulation from overflowing on CPUs without VNNI).
    """
    engine = check_engine_name(engine)
    _check_bool("per_channel", per_channel)
    _check_act_method(act_method)
    if reduce_range is None:
        reduce_range = bool(get_default_qconfig(engine).activation().reduce_range)
    _check_bool("reduce_range", reduce_range)
    if act_method is None:
        activation = HistogramObserver.with_args(reduce_range=reduce_range)
    else:
        activation = estimators.observer_factory(act_method, 8, reduce_range=reduce_range)
    if per_channel:
        weight = PerChannelMinMaxObserver.with_args(
            dtype=torch.qint8, qscheme=torch.per_channel_symmetric
        )
    else:
        weight = MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    return QConfig(activation=activation, weight=weight)


def _describe(qconfig: QConfig, reduce_range: bool) -> str:
    act, weight = qconfig.activation(), qconfig.weight()
    return (
        f"activations: {type(act).__name__} ({act.dtype}, {act.qscheme}, "
        f"reduce_range={reduce_range}); weights: {type(weight).__name__} "
        f"({weight.dtype}, {weight.qscheme})"
    )


def _fuse_groups(model: nn.Module) -> list[list[str]]:
    if any(isinstance(m, _FusedModule) for m in model.modules()):
        return []
    return model.fuse_groups() if hasattr(model, "fuse_groups") else []


@contextlib.contextmanager
def engine_for_building(engine: str):
    """Set the process-wide quantized engine for building an int8 model. It stays set when
    the block succeeds (the model needs it); the previous one comes back if the block fails."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    except BaseException:
        torch.backends.quantized.engine = previous
        raise


def _engine_hook(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook of every int8 model built here: right engine, CPU input."""
    check_engine(module)
    for i, arg in enumerate(args):
        _check_cpu_input(arg, f"input {i} of the int8 model")


def _finish(int8: nn.Module, engine: str, recipe: dict) -> nn.Module:
    int8.qnb_engine = engine
    int8.qnb_recipe = dict(recipe)
    int8.register_forward_pre_hook(_engine_hook)
    return int8


def check_engine(model: nn.Module) -> str:
    """The engine `model` was built for; EngineMismatchError if another one is set now."""
    built = getattr(model, "qnb_engine", None)
    if built is None:
        raise ValueError(
            f"{type(model).__name__} records no engine: it was not built by qnb.ptq "
            "(quantize_static, load_int8 or load_torchscript)"
        )
    current = torch.backends.quantized.engine
    if current != built:
        raise EngineMismatchError(
            f"this int8 model was built for engine {built!r} but the current engine is "
            f"{current!r}: set torch.backends.quantized.engine = {built!r} (its weights are "
            "packed for one engine), or quantize again for the engine you want"
        )
    return built


# --- the report -----------------------------------------------------------------------------


@dataclass
class ModuleStatus:
    """What became of one module of the float model."""

    name: str
    float_type: str
    int8_type: str
    status: str  # "quantized", "fused" (folded into another module) or "float"
    reason: str


@dataclass
class PTQReport:
    """What `quantize_static` did: engine, qconfig, calibration, and one row per module."""

    engine: str
    qconfig: str
    per_channel: bool
    reduce_range: bool
    act_method: str
    calibration_batches: int
    modules: list[ModuleStatus] = field(default_factory=list)

    def names(self, status: str) -> list[str]:
        """Names of the modules with `status` ("quantized", "fused" or "float")."""
        return [m.name for m in self.modules if m.status == status]

    def table(self):
        """The module rows as a pandas DataFrame."""
        import pandas as pd

        columns = ["name", "float_type", "int8_type", "status", "reason"]
        return pd.DataFrame([vars(m) for m in self.modules], columns=columns)

    def __str__(self) -> str:
        counts = ", ".join(
            f"{len(self.names(s))} {s}" for s in ("quantized", "fused", "float") if self.names(s)
        )
        head = [
            f"engine {self.engine}, {self.calibration_batches} calibration batches, "
            f"act_method {self.act_method}",
            self.qconfig,
            f"modules: {counts}",
        ]
        width = max((len(m.name) for m in self.modules), default=4)
        rows = [
            f"  {m.name:<{width}}  {m.status:<9}  {m.float_type} -> {m.int8_type}: {m.reason}"
            for m in self.modules
        ]
        return "\n".join(head + rows)


def _units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules PTQ treats as one unit: leaves, fused modules and FloatFunctionals."""
    found: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, module: nn.Module) -> None:
        children = list(module.named_children())
        if not children or isinstance(module, _FusedModule | FloatFunctional | QFunctional):
            found.append((prefix, module))
            return
        for name, child in children:
            walk(f"{prefix}.{name}" if prefix else name, child)

    walk("", model)
    return found


def _quantized_reason(module: nn.Module) -> str:
    if isinstance(module, Quantize):
        return f"quantizes the float input to {module.dtype}"
    if isinstance(module, DeQuantize):
        return "turns quantized tensors back into float"
    if isinstance(module, QFunctional):
        return "int8 add/mul/cat with its own output scale"
    weight = getattr(module, "weight", None)
    if callable(weight):
        w = weight()
        granularity = "per-channel" if w.qscheme() in _PER_CHANNEL else "per-tensor"
        return f"int8 weights ({granularity}), quint8 output"
    return "int8 kernel, quint8 output"


_PER_CHANNEL = (torch.per_channel_affine, torch.per_channel_symmetric)


def _float_reason(name: str, qconfigs: dict, seen: dict) -> str:
    kind = seen.get(name)
    if name in qconfigs and qconfigs[name] is None:
        where = "" if kind is None else f" (receives {kind} tensors)"
        return f"qconfig is None: kept in float{where}"
    if kind is None:
        return "not called in forward"
    if kind == "quantized":
        return "no int8 version needed: works on quantized tensors directly"
    return "runs on float tensors (outside the QuantStub ... DeQuantStub region)"


def _module_rows(
    model: nn.Module, int8: nn.Module, groups: list[list[str]], qconfigs: dict, seen: dict
) -> list[ModuleStatus]:
    converted = dict(int8.named_modules())
    head_of = {member: group[0] for group in groups for member in group[1:]}
    rows = []
    for name, module in _units(model):
        new = converted.get(name)
        row = ModuleStatus(name, type(module).__name__, new._get_name() if new else "-", "", "")
        if name in head_of:
            head = converted.get(head_of[name])
            into = f"{head_of[name]} ({head._get_name()})" if head else head_of[name]
            batch_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
            row.status = "fused"
            row.reason = f"{'batch norm folded' if batch_norm else 'fused'} into {into}"
        elif new is not None and _is_quantized(new):
            row.status, row.reason = "quantized", _quantized_reason(new)
        else:
            row.status, row.reason = "float", _float_reason(name, qconfigs, seen)
        rows.append(row)
    return rows


# --- guards around calibration and the first int8 run -------------------------------------


def _observers(model: nn.Module) -> list[tuple[str, nn.Module, ObserverBase]]:
    return [
        (name, m, m.activation_post_process)
        for name, m in model.named_modules()
        if isinstance(getattr(m, "activation_post_process", None), ObserverBase)
    ]


def _saw_nothing(observer: ObserverBase) -> bool:
    low = getattr(observer, "min_val", None)
    return isinstance(low, torch.Tensor) and (low.numel() == 0 or not torch.isfinite(low).all())


def _check_observed(prepared: nn.Module) -> None:
    """After calibration: every QuantStub was called and every observer saw data (a
    FloatFunctional never called is left float instead: `_keep_unused_float`)."""
    empty = [(n, m) for n, m, obs in _observers(prepared) if _saw_nothing(obs)]
    stubs = [n for n, m in empty if isinstance(m, QuantStub)]
    if stubs:
        raise estimators.NotCalibratedError(
            f"QuantStub {', '.join(repr(s) for s in stubs)} is defined but was never called in "
            "forward, so no tensor was quantized there: call x = self.quant(x) at the start of "
            "forward (before the first layer to quantize)"
        )
    empty = [(n, m) for n, m in empty if not isinstance(m, FloatFunctional)]
    if empty:
        names = ", ".join(f"{n!r} ({type(m).__name__})" for n, m in empty)
        raise estimators.NotCalibratedError(
            f"the observers of {names} saw no data during calibration: their forward never ran "
            "(a branch these inputs never take, or a module forward does not use?); calibrate "
            "with data that reaches them, remove them if unused, or set their .qconfig = None "
            "to keep them in float"
        )


def _keep_unused_float(prepared: nn.Module) -> list[str]:
    """Leave float the FloatFunctionals calibration never called (torchvision's MobileNetV2
    defines `skip_add` in every block and calls it only in the residual ones): with no data
    their output scale would be a guess. Left float, they cannot silently run with it.
    Returns their names."""
    names = []
    for name, module, observer in _observers(prepared):
        if isinstance(module, FloatFunctional) and _saw_nothing(observer):
            module.qconfig = None
            module.activation_post_process = nn.Identity()
            names.append(name)
    return names


def _user_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost traceback frame outside torch and this module: where the user's code was."""
    here = os.path.abspath(__file__)
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        path = os.path.abspath(frame.filename)
        if not path.startswith(_TORCH_DIR) and path != here:
            return frame
    return None


def _place(exc: BaseException) -> str:
    frame = _user_frame(exc)
    if frame is None:
        return "an unknown place"
    line = (frame.line or linecache.getline(frame.filename, frame.lineno)).strip()
    return f"{frame.filename}:{frame.lineno} in {frame.name}(): `{line}`"


def _explain(exc: BaseException, name: str | None, module: nn.Module | None) -> str:
    """A message for an exception raised while the int8 model ran a batch that the float one ran."""
    message = " ".join(str(exc).split())
    op = re.search(r"Could not run '([^']+)'", message)
    if name:
        where = f"module {name!r} ({type(module).__name__})"
    else:
        where = f"{type(module).__name__}.forward" if module is not None else "the model's forward"
    place = _place(exc)
    if _CAT_WARNING in message:
        return (
            f"torch.cat joins quantized tensors with different scales in {where}, at {place}: it "
            "silently requantizes them all to the first one's scale; " + _FLOAT_FUNCTIONAL_HINT
        )
    if op and "'CPU' backend" in message and op.group(1).startswith("quantized::"):
        return (
            f"int8 {where} received a float tensor, at {place}: quantize its input first (a "
            "QuantStub called before it in forward), or keep it float with .qconfig = None"
        )
    builtin = module is not None and type(module).__module__.startswith("torch.")
    if name and builtin and not _is_quantized(module):
        return (
            f"float {where} received a quantized tensor, at {place}: it has no int8 version "
            "(or its qconfig is None); put a DeQuantStub before it and a QuantStub after it "
            f"(original error: {message[:200]})"
        )
    op_name = f" ({op.group(1)})" if op else ""
    return (
        f"a float operation{op_name} ran on a quantized tensor in {where}, at {place}; "
        f"{_FLOAT_FUNCTIONAL_HINT} (original error: {message[:200]})"
    )


def _first_int8_run(int8: nn.Module, x: torch.Tensor) -> dict[str, str]:
    """Run one batch through the int8 model; return each unit's input kind ("quantized"/"float").

    The same batch ran through the float model during calibration, so a failure here comes from
    quantization: it is re-raised as a QuantizedTensorError that says where and what to do.
    """
    units = dict(_units(int8))
    seen: dict[str, str] = {}
    stack: list[str] = []

    def enter(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            stack.append(name)
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            if name in units and first is not None:
                seen.setdefault(name, "quantized" if first.is_quantized else "float")

        return hook

    def leave(module: nn.Module, args: tuple, output: object) -> None:
        stack.pop()

    handles = []
    for name, module in int8.named_modules():
        handles.append(module.register_forward_pre_hook(enter(name)))
        handles.append(module.register_forward_hook(leave))
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.filterwarnings("error", message=_CAT_WARNING)
            int8(x)
    except Exception as exc:
        named = dict(int8.named_modules())
        name = stack[-1] if stack else None
        module = named.get(name) if name is not None else None
        raise QuantizedTensorError(_explain(exc, name, module)) from exc
    finally:
        for handle in handles:
            handle.remove()
    return seen


# --- the pipeline ---------------------------------------------------------------------------


def quantize_static(
    model: nn.Module,
    calib: Iterable,
    *,
    engine: str = "x86",
    num_batches: int | None = None,
    per_channel: bool = True,
    act_method: str | None = None,
    reduce_range: bool | None = None,
) -> tuple[nn.Module, PTQReport]:
    """An int8 copy of the eval-mode float `model`, and a report of what was quantized.

    `calib`: a DataLoader or any iterable of batches (input tensors or `(input, target)`
    pairs); its first `num_batches` (all if None) calibrate the activation observers.
    `engine`: the quantized engine (`x86`, `fbgemm`, `qnnpack`, `onednn`; those this PyTorch
    supports); it is set process-wide, as the int8 model needs. `per_channel`, `act_method`,
    `reduce_range`: see `qconfig_for`. Modules whose `.qconfig` is None stay float.
    The caller's model is not changed. The int8 model records its engine (`qnb_engine`) and
    refuses to run under another one, or on CUDA tensors.
    """
    model = models._check_model(model)
    engine = check_engine_name(engine)
    if num_batches is not None:
        num_batches = _check_int("num_batches", num_batches, 1)
    qconfig = qconfig_for(
        engine, per_channel=per_channel, act_method=act_method, reduce_range=reduce_range
    )
    reduce_range = bool(qconfig.activation().reduce_range)
    _check_float_model(model)
    _check_eval(model)
    _check_cpu_model(model)
    _check_quant_stub(model)
    with engine_for_building(engine):
        prepared = simulate.fused(model)
        prepared.qconfig = qconfig
        prepare(prepared, inplace=True)
        first: list[torch.Tensor] = []

        def keep_first(module: nn.Module, args: tuple) -> None:
            _check_cpu_input(args[0], "a calibration batch")
            if not first:
                first.append(args[0])

        handle = prepared.register_forward_pre_hook(keep_first)
        try:
            batches = calibrate(prepared, calib, num_batches, desc=f"calibrating ({engine})")
        finally:
            handle.remove()
        _check_observed(prepared)
        qconfigs = {n: getattr(m, "qconfig", None) for n, m in prepared.named_modules()}
        unused = _keep_unused_float(prepared)
        int8 = convert(prepared, inplace=True)
        seen = _first_int8_run(int8, first[0])
    recipe = {
        "engine": engine,
        "per_channel": per_channel,
        "act_method": act_method,
        "reduce_range": reduce_range,
        "unused_float": unused,
    }
    report = PTQReport(
        engine=engine,
        qconfig=_describe(qconfig, reduce_range),
        per_channel=per_channel,
        reduce_range=reduce_range,
        act_method=act_method or "histogram (torch default)",
        calibration_batches=batches,
        modules=_module_rows(model, int8, _fuse_groups(model), qconfigs, seen),
    )
    return _finish(int8, engine, recipe), report


# --- per-layer error ------------------------------------------------------------------------


def _capture(model: nn.Module, names: list[str], outputs: dict) -> list:
    """Forward hooks that store each named module's output (a FloatFunctional's: its
    `activation_post_process`, which every add/cat/mul passes through)."""
    modules = dict(model.named_modules())
    handles = []
    for name in names:
        module = modules.get(name)
        if module is None:
            continue
        if isinstance(module, FloatFunctional | QFunctional):
            module = module.activation_post_process

        def hook(_m: nn.Module, _args: tuple, out: object, name: str = name) -> None:
            if isinstance(out, torch.Tensor):
                out = out.dequantize() if out.is_quantized else out
                outputs.setdefault(name, []).append(out.detach().reshape(-1))

        handles.append(module.register_forward_hook(hook))
    return handles


def layer_errors(float_model: nn.Module, int8_model: nn.Module, batch: object):
    """SQNR (dB) and MSE of each int8 layer's output against the float model's, worst first.

    `float_model` is the float model the int8 one was quantized from (fused here, as PTQ
    fused it, so that e.g. `conv1` means conv-bn-relu in both); `batch` is an input tensor or
    an `(input, target)` pair. One row per quantized module that ran (`quant`: the input's
    rounding error; the last layer's row is the model output's). Outputs are matched by name
    with forward hooks: torch.ao's numeric suite (`compare_model_outputs`) logs fused
    ConvReLU2d outputs twice and skips LinearReLU in this PyTorch, so it is not used.
    Returns a pandas DataFrame with columns layer, int8_type, sqnr_db, mse.
    """
    import pandas as pd

    float_model = models._check_model(float_model)
    int8_model = _check_int8_model(int8_model, "int8_model")
    _check_float_model(float_model, "float_model")
    x = batch_inputs(batch)
    _check_cpu_input(x, "batch")
    reference = simulate.fused(float_model)
    names = [
        n
        for n, m in int8_model.named_modules()
        if _is_quantized(m) and not isinstance(m, DeQuantize)
    ]
    float_out: dict[str, list] = {}
    int8_out: dict[str, list] = {}
    handles = _capture(reference, names, float_out) + _capture(int8_model, names, int8_out)
    try:
        with torch.inference_mode():
            reference(x)
            int8_model(x)
    finally:
        for handle in handles:
            handle.remove()
    if not float_out:
        raise ValueError(
            "float_model has none of int8_model's quantized layers "
            f"({', '.join(names[:4])}): pass the float model it was quantized from"
        )
    kinds = dict(int8_model.named_modules())
    rows = []
    for name in names:
        if name not in float_out or name not in int8_out:
            continue
        ref, got = torch.cat(float_out[name]).numpy(), torch.cat(int8_out[name]).numpy()
        if ref.shape != got.shape:
            continue
        sqnr = affine.sqnr_db(ref, got)
        mse = float(np.mean((ref.astype(np.float64) - got) ** 2))
        rows.append(
            {"layer": name, "int8_type": kinds[name]._get_name(), "sqnr_db": sqnr, "mse": mse}
        )
    df = pd.DataFrame(rows, columns=["layer", "int8_type", "sqnr_db", "mse"])
    return df.sort_values("sqnr_db", kind="stable").reset_index(drop=True)


def plot_layer_errors(df, ax=None, top: int | None = None):
    """A horizontal bar chart of `layer_errors`' SQNR per layer, worst at the top."""
    missing = {"layer", "sqnr_db"} - set(getattr(df, "columns", []))
    if missing:
        raise ValueError(f"df must be a layer_errors() DataFrame; it lacks {sorted(missing)}")
    if top is not None:
        df = df.head(_check_int("top", top, 1))
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 0.3 * len(df) + 1.2))
    ax.barh(df["layer"][::-1], df["sqnr_db"][::-1], color="tab:blue")
    ax.set_xlabel("SQNR of the int8 output vs float (dB, higher is better)")
    ax.set_title("Per-layer quantization error (worst at the top)")
    ax.grid(axis="x", alpha=0.3)
    return ax


# --- save and reload ------------------------------------------------------------------------


def _check_path(path: object, name: str = "path") -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def _check_file(path: object) -> Path:
    path = _check_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    return path


def save_torchscript(int8_model: nn.Module, path: str | os.PathLike, example: object) -> Path:
    """Trace the int8 model on `example` (an input tensor or `(input, target)` batch) and save
    it as TorchScript at `path`, with its engine. Reload with `load_torchscript`."""
    int8_model = _check_int8_model(int8_model, "int8_model")
    path = _check_path(path)
    engine = check_engine(int8_model)
    x = batch_inputs(example)
    _check_cpu_input(x, "example")
    with warnings.catch_warnings(), torch.no_grad():
        # torch's own quantized modules read their scale as a Python number while traced
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python")
        traced = torch.jit.trace(int8_model.eval(), x)
    torch.jit.save(traced, str(path), _extra_files={"qnb_engine": engine})
    return path


def _saved_engine(path: Path) -> str | None:
    """The engine stored in a TorchScript archive by `save_torchscript`, if any."""
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith("/extra/qnb_engine"):
                    return archive.read(member).decode() or None
    except zipfile.BadZipFile:
        raise ValueError(f"{str(path)!r} is not a TorchScript archive") from None
    return None


def load_torchscript(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """A TorchScript int8 model saved by `save_torchscript`. The quantized engine is set to the
    one it was built for before loading (its weights are packed for that engine on load)."""
    path = _check_file(path)
    engine = _saved_engine(path)
    if engine is not None:
        torch.backends.quantized.engine = check_engine_name(engine)
    module = torch.jit.load(str(path), map_location="cpu")
    module.qnb_engine = engine or torch.backends.quantized.engine
    return module


def save_state_dict(int8_model: nn.Module, path: str | os.PathLike) -> Path:
    """Save the int8 model's state dict with its recipe (engine, qconfig choices) at `path`.
    Reload with `load_int8`, which rebuilds the same recipe around the same float model."""
    int8_model = _check_int8_model(int8_model, "int8_model")
    path = _check_path(path)
    recipe = getattr(int8_model, "qnb_recipe", None)
    if recipe is None:
        raise ValueError("int8_model records no recipe: it was not built by quantize_static")
    payload = {"format": _SAVE_FORMAT, "recipe": recipe, "state_dict": int8_model.state_dict()}
    torch.save(payload, path)
    return path


def _float_model(name_or_builder: object) -> nn.Module:
    if isinstance(name_or_builder, str):
        return models.build(name_or_builder)
    if isinstance(name_or_builder, nn.Module):
        return copy.deepcopy(name_or_builder)
    if callable(name_or_builder):
        return models._check_model(name_or_builder())
    raise TypeError(
        "name_or_builder must be a model name, a float nn.Module or a function returning one, "
        f"got {type(name_or_builder).__name__}"
    )


def load_int8(
    name_or_builder: str | nn.Module | Callable[[], nn.Module],
    path: str | os.PathLike,
    *,
    engine: str | None = None,
) -> nn.Module:
    """An int8 model rebuilt from `save_state_dict`'s file: the float model (a `qnb.models`
    name, a float model, or a function building one) goes through the saved recipe (fuse,
    qconfig, prepare, convert; no calibration: scales and zero points come from the file),
    then the state dict is loaded. `engine` must match the saved one if given.
    """
    path = _check_file(path)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != _SAVE_FORMAT:
        raise ValueError(f"{str(path)!r} was not written by qnb.ptq.save_state_dict")
    recipe = saved["recipe"]
    built = check_engine_name(recipe["engine"])
    if engine is not None and check_engine_name(engine) != built:
        raise ValueError(
            f"engine={engine!r}, but {str(path)!r} holds a model built for {built!r}: int8 "
            f"weights and scales are engine-specific; load with engine={built!r} or None, or "
            "quantize the float model again for the other engine"
        )
    model = _float_model(name_or_builder).eval()
    _check_float_model(model)
    qconfig = qconfig_for(
        built, per_channel=recipe["per_channel"], reduce_range=recipe["reduce_range"]
    )
    # scales come from the file: plain min/max observers that see nothing are enough
    qconfig = QConfig(
        activation=MinMaxObserver.with_args(dtype=torch.quint8), weight=qconfig.weight
    )
    with engine_for_building(built):
        int8 = simulate.fused(model)
        int8.qconfig = qconfig
        for name in recipe.get("unused_float", []):
            int8.get_submodule(name).qconfig = None  # left float by quantize_static
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="must run observer before calling")
            prepare(int8, inplace=True)
            convert(int8, inplace=True)
        try:
            int8.load_state_dict(saved["state_dict"])
        except (RuntimeError, KeyError) as exc:
            raise ValueError(
                f"the state dict in {str(path)!r} does not fit the rebuilt recipe: build the same "
                f"float model (same layers, same per-module qconfig) ({exc})"
            ) from exc
    return _finish(int8, built, recipe)
