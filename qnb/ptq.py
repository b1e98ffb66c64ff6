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

Also here: `layer_errors` (SQNR of each int8 layer's output against the float model's) and
`plot_layer_errors`. Saving and reloading int8 models lives in `qnb.deploy`; the eager plumbing
shared with QAT (engines, fusion, model checks, the first int8 run) in `qnb.eager`.

Note: the quantized engine is process-wide state (`torch.backends.quantized.engine`).
`quantize_static` sets it to the model's engine and leaves it set, since the int8 model only"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.ao.nn.quantized import DeQuantize, FloatFunctional, QFunctional, Quantize
from torch.ao.quantization import QConfig, QuantStub, convert, get_default_qconfig, prepare
from torch.ao.quantization.observer import (
    HistogramObserver,
    MinMaxObserver,
    ObserverBase,
    PerChannelMinMaxObserver,
)

from qnb import affine, checks, eager, estimators, hooks, simulate
from qnb.calibration import batch_inputs, calibrate
from qnb.eager import EngineMismatchError, QuantizedTensorError  # noqa: F401 (ptq.X works too)

__all__ = [
    "ENGINES",
    "ModuleStatus",
    "PTQReport",
    "qconfig_for",
    "quantize_static",
    "layer_errors",
    "plot_layer_errors",
]

ENGINES = ("x86", "fbgemm", "qnnpack", "onednn")


def _check_act_method(act_method: object) -> str | None:
    if act_method is not None and act_method not in estimators.METHODS:
        raise ValueError(
            f"act_method must be None (the engine's default, torch's HistogramObserver) or one of "
            f"{', '.join(estimators.METHODS)}; got {act_method!r}"
        )
    return act_method


# --- qconfig and the recipe ------------------------------------------------------------------


def qconfig_for(
    engine: str | None = None,
    *,
    per_channel: bool = True,
    act_method: str | None = None,
    reduce_range: bool | None = None,
) -> QConfig:
    """The qconfig `quantize_static` uses: `get_default_qconfig(engine)` as the baseline.

    Weights: signed int8, symmetric, per output channel (or per tensor with
    `per_channel=False`) on every engine. Activations: unsigned 8-bit, with torch's
    HistogramObserver (`act_method=None`) or a `qnb.estimators` method. `reduce_range=None`
    takes the engine's default from `get_default_qconfig`: 7-bit activations (0..127) on
    x86/fbgemm on every CPU, VNNI or not (so the int16 pair sums of `vpmaddubsw` cannot
    saturate, which matters only without VNNI), 0..255 on onednn/qnnpack. `engine=None`: this
    machine's engine.

    Taught in notebook 05 (static_ptq)."""
    engine = checks.check_engine(engine)
    checks.check_bool("per_channel", per_channel)
    _check_act_method(act_method)
    if reduce_range is None:
        reduce_range = bool(get_default_qconfig(engine).activation().reduce_range)
    checks.check_bool("reduce_range", reduce_range)
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
    for name, module in eager.quantization_units(model):
        new = converted.get(name)
        row = ModuleStatus(name, type(module).__name__, new._get_name() if new else "-", "", "")
        if name in head_of:
            head = converted.get(head_of[name])
            into = f"{head_of[name]} ({head._get_name()})" if head else head_of[name]
            batch_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
            row.status = "fused"
            row.reason = f"{'batch norm folded' if batch_norm else 'fused'} into {into}"
        elif new is not None and eager.is_quantized(new):
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


# --- the pipeline ---------------------------------------------------------------------------


def quantize_static(
    model: nn.Module,
    calib: Iterable,
    *,
    engine: str | None = None,
    num_batches: int | None = None,
    per_channel: bool = True,
    act_method: str | None = None,
    reduce_range: bool | None = None,
) -> tuple[nn.Module, PTQReport]:
    """An int8 copy of the eval-mode float `model`, and a report of what was quantized.

    `calib`: a DataLoader or any iterable of batches (input tensors or `(input, target)`
    pairs); its first `num_batches` (all if None) calibrate the activation observers.
    `engine`: the quantized engine (`x86`, `fbgemm`, `qnnpack`, `onednn`; those this PyTorch
    supports; None: this machine's, see `qnb.env.default_engine`); it is set process-wide, as
    the int8 model needs. `per_channel`, `act_method`,
    `reduce_range`: see `qconfig_for`. Modules whose `.qconfig` is None stay float.
    The caller's model is not changed. The int8 model records its engine (`qnb_engine`) and
    refuses to run under another one, or on CUDA tensors.

    Taught in notebook 05 (static_ptq).
    """
    model = eager.check_float_model(model)
    engine = checks.check_engine(engine)
    if num_batches is not None:
        num_batches = checks.check_int("num_batches", num_batches, 1)
    qconfig = qconfig_for(
        engine, per_channel=per_channel, act_method=act_method, reduce_range=reduce_range
    )
    reduce_range = bool(qconfig.activation().reduce_range)
    checks.check_eval_model(
        model, why="PTQ folds batch norm with its running statistics and calibrates with "
        "dropout off"
    )
    eager.check_cpu_model(model)
    eager.check_quant_stub(model)
    with eager.engine_for_building(engine):
        prepared = simulate.fused_copy(model)
        prepared.qconfig = qconfig
        prepare(prepared, inplace=True)
        first: list[torch.Tensor] = []

        def keep_first(module: nn.Module, args: tuple) -> None:
            eager.check_cpu_input(args[0], "a calibration batch")
            if not first:
                first.append(args[0])

        with hooks.attached(pre=[(prepared, keep_first)]):
            batches = calibrate(prepared, calib, num_batches, desc=f"calibrating ({engine})")
        _check_observed(prepared)
        qconfigs = {n: getattr(m, "qconfig", None) for n, m in prepared.named_modules()}
        unused = _keep_unused_float(prepared)
        int8 = convert(prepared, inplace=True)
        seen = eager.first_int8_run(int8, first[0])
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
        modules=_module_rows(model, int8, eager.fuse_groups(model), qconfigs, seen),
    )
    return eager.mark_int8(int8, engine, recipe), report


# --- per-layer error ------------------------------------------------------------------------


def _capture(model: nn.Module, names: list[str], outputs: dict) -> list:
    """(module, forward hook) pairs that store each named module's output in `outputs` (a
    FloatFunctional's: its `activation_post_process`, which every add/cat/mul passes
    through)."""
    modules = dict(model.named_modules())
    pairs = []
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

        pairs.append((module, hook))
    return pairs


def layer_errors(float_model: nn.Module, int8_model: nn.Module, batch: object):
    """SQNR (dB) and MSE of each int8 layer's output against the float model's, worst first.

    `float_model` is the float model the int8 one was quantized from (fused here, as PTQ
    fused it, so that e.g. `conv1` means conv-bn-relu in both); `batch` is an input tensor or
    an `(input, target)` pair. One row per quantized module that ran (`quant`: the input's
    rounding error; the last layer's row is the model output's). Outputs are matched by name
    with forward hooks: torch.ao's numeric suite (`compare_model_outputs`) logs fused
    ConvReLU2d outputs twice and skips LinearReLU in this PyTorch, so it is not used.
    Returns a pandas DataFrame with columns layer, int8_type, sqnr_db, mse.

    Taught in notebook 05 (static_ptq).
    """
    import pandas as pd

    float_model = eager.check_float_model(float_model, "float_model")
    int8_model = eager.check_int8_model(int8_model, "int8_model")
    x = batch_inputs(batch)
    eager.check_cpu_input(x, "batch")
    reference = simulate.fused_copy(float_model)
    names = [
        n
        for n, m in int8_model.named_modules()
        if eager.is_quantized(m) and not isinstance(m, DeQuantize)
    ]
    float_out: dict[str, list] = {}
    int8_out: dict[str, list] = {}
    with hooks.attached(_capture(reference, names, float_out)
                        + _capture(int8_model, names, int8_out)):
        hooks.run(reference, [x], inference=True)
        hooks.run(int8_model, [x], inference=True)
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
    """A horizontal bar chart of `layer_errors`' SQNR per layer, worst at the top.

    Taught in notebook 05 (static_ptq)."""
    missing = {"layer", "sqnr_db"} - set(getattr(df, "columns", []))
    if missing:
        raise ValueError(f"df must be a layer_errors() DataFrame; it lacks {sorted(missing)}")
    if top is not None:
        df = df.head(checks.check_int("top", top, 1))
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 0.3 * len(df) + 1.2))
    ax.barh(df["layer"][::-1], df["sqnr_db"][::-1], color="tab:blue")
    ax.set_xlabel("SQNR of the int8 output vs float (dB, higher is better)")
    ax.set_title("Per-layer quantization error (worst at the top)")
    ax.grid(axis="x", alpha=0.3)
    return ax
