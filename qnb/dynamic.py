"""Dynamic and weight-only quantization: int8 weights ahead of time, activations in float or
quantized on the fly, no calibration.

- `quantize_dynamic`: PyTorch's eager `torch.ao.quantization.quantize_dynamic`, which swaps
  `nn.LSTM` / `nn.Linear` (and GRU, the RNN cells) for versions with int8 (or float16) weights
  that quantize each activation batch at run time. Requested module types it cannot convert
  (`nn.Conv2d`, `nn.RNN`, ...) stay float, with a `NotConvertedWarning`.
- `reduces_range(engine)` / `activation_qparams(x, engine)`: the scale and zero point a
  dynamic int8 kernel picks for one call's input `x`, at run time, from that input's own min
  and max (widened to include 0). On x86, fbgemm and onednn the dynamic modules ask for
  `reduce_range=True` (`nn.quantized.dynamic.Linear` calls `linear_dynamic(...,
  reduce_range=True)`, the dynamic LSTM builds its cells with it), so activations get 7 bits,
  0..127; qnnpack ignores `reduce_range` and uses 0..255. The dynamic LSTM (CPU) projects the
  whole input sequence in one call (one range over all time steps and the batch) and the
  hidden state in one call per time step (one range per step). Measured on torch 2.14.1
  (notebook 06 reproduces the calls, tests/unit/test_dynamic.py pins them): a dynamic
  Linear's output is `acc * (s_x * s_w) + bias` (the multiplier in float32) with the int32
  accumulator `acc` of the quantized input and weights: bit for bit on x86/fbgemm (as one
  fused multiply-add) and qnnpack (a float32 multiply, then the add); onednn rounds in
  another order (within 1e-6 here).
- `quantize_weight_only`: torchao's `quantize_` on the `nn.Linear` layers, which keeps the
  module and replaces its weight by a torchao tensor subclass holding `bits`-wide integers and
  scales (per output channel or per group of `group_size` inputs); the matmul runs in float on
  the dequantized weight (fast kernels come with `torch.compile`). Other layers (an LSTM) stay
  float.

Both work on a copy and return `(model, report)`: the report has one `ModuleReport` per layer
with weights, saying what it became (`pandas.DataFrame(report)` shows it as a table).
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.ao.quantization import quantize_dynamic as _torch_quantize_dynamic
from torch.ao.quantization.quantization_mappings import (
    get_default_dynamic_quant_module_mappings,
)

from qnb import checks

__all__ = [
    "NotConvertedWarning",
    "ModuleReport",
    "DYNAMIC_DTYPES",
    "quantize_dynamic",
    "reduces_range",
    "activation_qparams",
    "quantize_weight_only",
    "quantize_int8_dynamic_activation",
    "quantize_int4_packed",
]

# dtype of the weights -> word used in messages; float16 weights need the fbgemm kernels.
DYNAMIC_DTYPES = {torch.qint8: "int8", torch.float16: "float16"}
_FP16_ENGINES = ("x86", "fbgemm")
WEIGHT_ONLY_BITS = (2, 8)  # bits in 2..8: int8 via Int8WeightOnlyConfig, below via Intx


class NotConvertedWarning(UserWarning):
    """A module type asked for was not quantized (no quantized version, or no such module)."""


@dataclass
class ModuleReport:
    """What one layer with weights became: `quantized` names its quantized module (dynamic) or
    weight tensor type (weight-only), None if it stayed float; `note` says why."""

    name: str
    kind: str
    quantized: str | None
    weight: str
    note: str = ""


# --- validation ----------------------------------------------------------------------------


def _check_types(types: object) -> tuple[type[nn.Module], ...]:
    allowed = "an nn.Module subclass or a non-empty tuple of them, e.g. (nn.LSTM, nn.Linear)"
    items = (types,) if isinstance(types, type) else types
    if not isinstance(items, Iterable) or isinstance(items, str | bytes):
        raise TypeError(f"types must be {allowed}, got {types!r}")
    items = tuple(items)
    if not items:
        raise ValueError(f"types must be {allowed}, got an empty {type(types).__name__}")
    for t in items:
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise TypeError(f"types must be {allowed}, got {t!r} in {types!r}")
    return tuple(dict.fromkeys(items))  # without repeats, in order


def _check_dtype(dtype: object) -> torch.dtype:
    if not any(dtype is d for d in DYNAMIC_DTYPES):
        raise ValueError(
            f"dtype must be one of {', '.join(map(str, DYNAMIC_DTYPES))}, got {dtype!r}"
        )
    return dtype


def _check_engine(engine: object, dtype: torch.dtype) -> str:
    engine = checks.check_engine(engine)
    if dtype == torch.float16 and engine not in _FP16_ENGINES:
        raise ValueError(
            f"engine {engine!r} has no float16 dynamic kernels; with dtype=torch.float16 "
            f"engine must be one of {', '.join(repr(e) for e in _FP16_ENGINES)}"
        )
    return engine


def _check_group_size(group_size: object, linears: list[tuple[str, nn.Linear]]) -> int | None:
    if group_size is None:
        return None
    group_size = checks.check_int("group_size", group_size, 1)
    bad = [(n, m.in_features) for n, m in linears if m.in_features % group_size]
    if bad:
        layers = ", ".join(f"{n!r} (in_features={k})" for n, k in bad)
        common = math.gcd(*(m.in_features for _, m in linears))
        fits = [d for d in range(1, common + 1) if common % d == 0]
        raise ValueError(
            f"group_size must divide the in_features of every Linear layer, got {group_size}, "
            f"which does not divide {layers}; sizes that fit: {fits} (or None: per channel)"
        )
    return group_size


def _already_quantized(model: nn.Module) -> str | None:
    """The name and kind of the first quantized layer of `model`, if any."""
    for name, module in model.named_modules():
        if type(module).__module__.startswith("torch.ao.nn.quantized"):
            return f"{name!r} is a {module._get_name()}"
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and _is_torchao_tensor(weight):
            return f"{name!r} has a weight of type {type(weight).__name__}"
    return None


def _check_not_quantized(model: nn.Module) -> None:
    found = _already_quantized(model)
    if found:
        raise ValueError(f"model must be a float model, got one already quantized ({found})")


# --- reports -------------------------------------------------------------------------------


def _weighted_layers(model: nn.Module, types: tuple[type, ...] = ()) -> list[tuple[str, nn.Module]]:
    """Layers with their own parameters (or of `types`), outermost first, none inside another."""
    layers: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(f"{outer}.") for outer, _ in layers):
            continue
        if isinstance(module, types) or any(True for _ in module.parameters(recurse=False)):
            layers.append((name, module))
    return layers


def _float_dtype(module: nn.Module) -> str:
    param = next(module.parameters(recurse=False), None)
    return str(param.dtype).removeprefix("torch.") if param is not None else "-"


def _warn(message: str, stacklevel: int = 3) -> None:
    """A NotConvertedWarning; stacklevel 3 points at the caller of the function calling this."""
    warnings.warn(message, NotConvertedWarning, stacklevel=stacklevel)


# --- dynamic quantization ------------------------------------------------------------------


def _dynamic_mapping() -> dict[type, type]:
    """Float module type -> its dynamic quantized type, as `quantize_dynamic` swaps them.
    (Embedding/EmbeddingBag need float-qparams weight-only qconfigs, not these dtypes.)"""
    mapping = get_default_dynamic_quant_module_mappings()
    return {k: v for k, v in mapping.items() if k not in (nn.Embedding, nn.EmbeddingBag)}


def quantize_dynamic(
    model: nn.Module,
    types: type[nn.Module] | Iterable[type[nn.Module]] = (nn.LSTM, nn.Linear),
    dtype: torch.dtype = torch.qint8,
    engine: str | None = None,
) -> tuple[nn.Module, list[ModuleReport]]:
    """A dynamically quantized eval-mode copy of `model`, and a report per layer.

    Every module whose type is one of `types` (exactly: quantize_dynamic does not match
    subclasses) and has a dynamic version (`nn.LSTM`, `nn.GRU`, `nn.Linear`, the RNN cells)
    gets `dtype` weights (`torch.qint8`, or `torch.float16` on x86/fbgemm); with int8 weights
    it also quantizes its inputs on the fly at run time. `engine` must be a quantized engine of
    this machine (None: this machine's, see `qnb.env.default_engine`); it is set as
    `torch.backends.quantized.engine` (and stays set: the model runs on it). Requested types
    that have no dynamic version or match no module raise a `NotConvertedWarning`.

    Taught in notebook 06 (dynamic_and_weight_only)."""
    model = checks.check_model(model)
    types = _check_types(types)
    dtype = _check_dtype(dtype)
    engine = _check_engine(engine, dtype)
    _check_not_quantized(model)
    torch.backends.quantized.engine = engine
    original = copy.deepcopy(model).eval()
    converted = _torch_quantize_dynamic(original, set(types), dtype=dtype)  # on its own copy
    report = _dynamic_report(original, converted, types, DYNAMIC_DTYPES[dtype])
    _warn_not_converted(original, report, types, DYNAMIC_DTYPES[dtype])
    return converted, report


def _dynamic_report(
    original: nn.Module, converted: nn.Module, types: tuple[type, ...], word: str
) -> list[ModuleReport]:
    mapping = _dynamic_mapping()
    report = []
    for name, module in _weighted_layers(original, types):
        kind = type(module).__name__
        new = converted.get_submodule(name)
        if type(new) is not type(module):
            report.append(ModuleReport(name, kind, new._get_name(), word))
            continue
        if not isinstance(module, types):
            note = "not requested"
        elif type(module) not in types:
            note = f"{kind} subclasses a requested type; quantize_dynamic matches exact types"
        elif type(module) not in mapping:
            note = f"quantize_dynamic has no dynamic {word} version of {kind}"
        else:
            note = "not converted"
        report.append(ModuleReport(name, kind, None, _float_dtype(module), note))
    return report


def _warn_not_converted(
    original: nn.Module, report: list[ModuleReport], types: tuple[type, ...], word: str
) -> None:
    mapping = _dynamic_mapping()
    stayed = {r.name for r in report if r.quantized is None}
    for t in types:
        matches = [n for n, m in original.named_modules() if n and isinstance(m, t)]
        left = [n for n in matches if n in stayed]
        name = t.__name__
        if t not in mapping:
            _warn(
                f"quantize_dynamic has no dynamic {word} version of {name}; "
                f"{len(left)} {name} module{'s' * (len(left) != 1)} stayed float",
                stacklevel=4,
            )
        elif not matches:
            _warn(
                f"types has {name}, but the model has no {name} module: nothing to convert",
                stacklevel=4,
            )
        elif left:
            _warn(
                f"{len(left)} {name} module{'s' * (len(left) != 1)} stayed float ({left}): "
                f"quantize_dynamic converts exact {name} modules, not subclasses",
                stacklevel=4,
            )


# --- what a dynamic kernel does with its input --------------------------------------------

# engines whose dynamic int8 kernels honour reduce_range=True (qnnpack ignores it, with a warning)
_REDUCE_RANGE_ENGINES = ("x86", "fbgemm", "onednn")


def reduces_range(engine: str | None = None) -> bool:
    """True if the dynamic int8 kernels of `engine` (None: this machine's) quantize activations
    to 7 bits, 0..127 (x86, fbgemm, onednn); False for qnnpack, which uses 0..255.

    Taught in notebook 06 (dynamic_and_weight_only)."""
    return checks.check_engine(engine) in _REDUCE_RANGE_ENGINES


def activation_qparams(x: torch.Tensor, engine: str | None = None) -> tuple[float, int, int]:
    """`(scale, zero_point, qmax)` a dynamic int8 kernel of `engine` (None: this machine's)
    picks for one call's float input `x`: unsigned 0..qmax (127 or 255, see `reduces_range`),
    from min(x) and max(x) widened to include 0, as `torch._choose_qparams_per_tensor` does.

    Taught in notebook 06 (dynamic_and_weight_only)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(
            f"x must be a float tensor (one call's input), got {type(x).__name__}"
            + (f" of dtype {x.dtype}" if isinstance(x, torch.Tensor) else "")
        )
    if x.numel() == 0 or not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"x must be a non-empty tensor of finite values, got shape {tuple(x.shape)}"
            + ("" if x.numel() == 0 else " with NaN or inf")
        )
    engine = checks.check_engine(engine)
    reduce = reduces_range(engine)
    saved = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine  # with qnnpack set, torch ignores reduce_range
    try:
        scale, zero_point = torch._choose_qparams_per_tensor(x.detach().float(), reduce)
    finally:
        torch.backends.quantized.engine = saved
    return float(scale), int(zero_point), 127 if reduce else 255


# --- weight-only quantization with torchao ------------------------------------------------


def _is_torchao_tensor(tensor: torch.Tensor) -> bool:
    return any(c.__module__.startswith("torchao.") for c in type(tensor).__mro__)


def _weight_only_config(bits: int, group_size: int | None):
    """torchao's config for `bits`-wide symmetric weights, per output channel or per group."""
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerAxis, PerGroup, PerRow

    if bits == 8:  # set_inductor_config=False: leave torch._inductor's global config alone
        granularity = PerRow() if group_size is None else PerGroup(group_size)
        return Int8WeightOnlyConfig(granularity=granularity, set_inductor_config=False)
    granularity = PerAxis(0) if group_size is None else PerGroup(group_size)
    return IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{bits}"), granularity=granularity)


def _is_linear(module: nn.Module, name: str = "") -> bool:
    return isinstance(module, nn.Linear)


def _import_torchao_quantize():
    """torchao's `quantize_`, imported without the log line torch prints when torchao
    registers its enums (a timestamped warning that would land in notebook outputs)."""
    pytree_log = logging.getLogger("torch.utils._pytree")
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        from torchao.quantization import quantize_
    finally:
        pytree_log.setLevel(level)
    return quantize_


def quantize_weight_only(
    model: nn.Module, bits: int = 8, group_size: int | None = None
) -> tuple[nn.Module, list[ModuleReport]]:
    """An eval-mode copy of `model` whose `nn.Linear` weights torchao's `quantize_` stores as
    `bits`-wide symmetric integers (2..8), and a report per layer.

    One scale per output channel (`group_size=None`) or per group of `group_size` inputs,
    which must divide every Linear's `in_features`. bits=8 uses torchao's
    `Int8WeightOnlyConfig` (an `Int8Tensor` weight), fewer bits `IntxWeightOnlyConfig` (an
    `IntxUnpackedToInt8Tensor`: one int8 per value, so int4 saves no space over int8 on disk).
    Activations stay float. Other layers (an LSTM, convolutions) stay float and are reported.

    Taught in notebook 06 (dynamic_and_weight_only).
    """
    model = checks.check_model(model)
    bits = checks.check_int("bits", bits, *WEIGHT_ONLY_BITS)
    config = lambda group: _weight_only_config(bits, group)  # noqa: E731
    return _torchao(model, config, group_size, f"int{bits}", "weight-only quantization")


def quantize_int8_dynamic_activation(model: nn.Module) -> tuple[nn.Module, list[ModuleReport]]:
    """An eval-mode copy of `model` with torchao's `Int8DynamicActivationInt8WeightConfig` on
    its `nn.Linear` layers: int8 weights per output channel, and each call's input quantized
    to int8 per token (row) on the fly, so the matmul can run on int8 kernels (with
    `torch.compile`; in eager mode torchao runs it with reference ops). A report per layer.

    Taught in notebook 12 (llm_weight_quantization)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig

    model = checks.check_model(model)
    config = lambda _group: Int8DynamicActivationInt8WeightConfig(  # noqa: E731
        set_inductor_config=False
    )
    return _torchao(model, config, None, "int8 (activations int8, dynamic)")


def quantize_int4_packed(
    model: nn.Module, group_size: int = 128
) -> tuple[nn.Module, list[ModuleReport]]:
    """An eval-mode copy of `model` whose `nn.Linear` weights are int4 in groups of
    `group_size` inputs, packed two per byte for torchao's CPU kernels, and a report per layer.

    torchao 0.18's one packed int4 layout for CPUs is `Int8DynamicActivationIntxWeightConfig`
    with `intx_packing_format="opaque_torchao_auto"` (int8 activations per token, dynamic); it
    needs torchao's CPU kernel library, which is not in every build (its other int4 layouts
    need CUDA). Raises `RuntimeError` saying so where the library is missing; fall back to
    `quantize_weight_only(model, 4, group_size)` (one byte per int4 value) there.

    Taught in notebook 12 (llm_weight_quantization)."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig
    from torchao.quantization.granularity import PerGroup

    model = checks.check_model(model)
    checks.check_int("group_size", group_size, 1)

    def config(group):
        return Int8DynamicActivationIntxWeightConfig(
            weight_dtype=torch.int4, weight_granularity=PerGroup(group),
            intx_packing_format="opaque_torchao_auto",
        )

    try:
        return _torchao(model, config, group_size, "int4 packed (activations int8, dynamic)")
    except AssertionError as exc:  # torchao asserts that its kernel library is loaded
        raise RuntimeError(
            f"torchao {_torchao_version()} has no packed int4 CPU kernels in this build "
            f"({exc}); use quantize_weight_only(model, 4, group_size) instead (int4 values "
            "stored one per byte)"
        ) from None


def _torchao_version() -> str:
    from importlib.metadata import version

    return version("torchao")


def _torchao(model: nn.Module, config, group_size: int | None, word: str,
             scope: str = "torchao quantization") -> tuple[nn.Module, list[ModuleReport]]:
    """torchao's `quantize_` with `config(group_size)` on a copy's Linear layers, and the
    report of what every layer with weights became (`scope` names the method in messages)."""
    _check_not_quantized(model)
    linears = [(n, m) for n, m in model.named_modules() if _is_linear(m)]
    group_size = _check_group_size(group_size, linears)
    quantize_ = _import_torchao_quantize()

    result = copy.deepcopy(model).eval()
    if linears:
        quantize_(result, config(group_size), filter_fn=_is_linear)
    else:
        _warn(f"the model has no nn.Linear module: {scope} changed nothing", 4)
    grouping = "per channel" if group_size is None else f"groups of {group_size} inputs"
    report = []
    for name, module in _weighted_layers(result, (nn.Linear,)):
        kind = type(module).__name__
        weight = getattr(module, "weight", None)
        if isinstance(module, nn.Linear) and _is_torchao_tensor(weight):
            report.append(ModuleReport(name, kind, type(weight).__name__, word, grouping))
        elif isinstance(module, nn.Linear):
            report.append(ModuleReport(name, kind, None, _float_dtype(module), "not converted"))
            _warn(f"torchao left Linear {name!r} float", 4)
        else:
            note = f"{scope} covers nn.Linear only; {kind} stays float"
            report.append(ModuleReport(name, kind, None, _float_dtype(module), note))
    return result, report
