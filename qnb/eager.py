"""The eager `torch.ao.quantization` plumbing (the base layer) that PTQ, QAT, mixed precision
and deployment share: which engine an int8 model is built for and runs under, fusion groups,
the checks a float or int8 model must pass, and the first int8 run that turns an obscure kernel
error into a message that says where and what to change.

Note: the quantized engine is process-wide state (`torch.backends.quantized.engine`).
`engine_for_building` sets it and leaves it set, since an int8 model only runs correctly under
the engine its weights were packed for; `mark_int8` makes the model refuse any other."""

from __future__ import annotations

import contextlib
import linecache
import os
import re
import traceback
import warnings

import torch
from torch import nn
from torch.ao.nn.intrinsic import _FusedModule
from torch.ao.nn.quantized import DeQuantize, FloatFunctional, QFunctional, Quantize
from torch.ao.quantization import QuantStub, fuse_modules, fuse_modules_qat
from torch.ao.quantization.fake_quantize import FakeQuantizeBase
from torch.ao.quantization.observer import ObserverBase
from torch.ao.quantization.quantization_mappings import (
    get_default_dynamic_quant_module_mappings,
    get_default_static_quant_module_mappings,
)

from qnb import checks, hooks

__all__ = [
    "CPU_ONLY",
    "EngineMismatchError",
    "QuantizedTensorError",
    "check_cpu_input",
    "check_cpu_model",
    "check_float_model",
    "check_int8_model",
    "check_quant_stub",
    "engine_for_building",
    "engine_of",
    "first_int8_run",
    "fuse",
    "fuse_groups",
    "is_fused",
    "is_quantized",
    "mark_int8",
    "quantization_units",
]

CPU_ONLY = "quantized inference here is CPU-only"
_TORCH_DIR = os.path.dirname(torch.__file__)
_QUANTIZED_TYPES = (
    set(get_default_static_quant_module_mappings().values())
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


class EngineMismatchError(RuntimeError):
    """An int8 model ran under another quantized engine than the one it was built for."""


class QuantizedTensorError(RuntimeError):
    """The int8 model met a tensor of the wrong kind: a float op or float module on a quantized
    tensor, or an int8 module on a float tensor."""


# --- checks on models and inputs -----------------------------------------------------------


def is_quantized(module: nn.Module) -> bool:
    """True for torch's int8 modules (static and dynamic), Quantize/DeQuantize, QFunctional."""
    return type(module) in _QUANTIZED_TYPES


def _is_cuda(t: torch.Tensor) -> bool:  # one place, so tests can pretend a tensor is on CUDA
    return t.is_cuda


def check_cpu_model(model: nn.Module) -> nn.Module:
    """`model` if none of its parameters and buffers is on CUDA."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    on_cuda = [name for name, t in tensors if _is_cuda(t)]
    if on_cuda:
        shown = ", ".join(on_cuda[:5]) + (", ..." if len(on_cuda) > 5 else "")
        raise ValueError(
            f"{CPU_ONLY}: the model has {len(on_cuda)} parameters/buffers on CUDA ({shown}); "
            "move it with model.cpu() first"
        )
    return model


def check_cpu_input(x: object, what: str) -> None:
    """Refuse a CUDA tensor (`what` names it in the message)."""
    if isinstance(x, torch.Tensor) and _is_cuda(x):
        raise ValueError(f"{CPU_ONLY}: {what} is a CUDA tensor; move it with .cpu() first")


def check_float_model(model: object, what: str = "model") -> nn.Module:
    """`model` if it is a float model: no observers/fake-quant (prepared), no int8 modules."""
    model = checks.check_model(model, what)
    names = [n or "(root)" for n, m in model.named_modules() if is_quantized(m)]
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
    return model


def check_quant_stub(model: nn.Module, also: str = "") -> nn.Module:
    """`model` if it holds a QuantStub (eager mode quantizes between QuantStub and DeQuantStub);
    `also` is appended to the message (another way out, for example)."""
    if not any(isinstance(m, QuantStub) for m in model.modules()):
        raise ValueError(
            f"model {type(model).__name__} has no QuantStub: eager-mode PTQ quantizes only "
            "between a QuantStub and a DeQuantStub; add self.quant = QuantStub() and "
            "self.dequant = DeQuantStub() in __init__ (torch.ao.quantization) and call "
            f"x = self.quant(x) at the start of forward and self.dequant(x) at the end{also}"
        )
    return model


def check_int8_model(model: object, what: str = "model") -> nn.Module:
    """`model` if it holds int8 modules (built by quantize_static, qat, or loaded)."""
    model = checks.check_model(model, what)
    if not any(is_quantized(m) for m in model.modules()):
        raise ValueError(
            f"{what} must be an int8 model (from quantize_static or load_int8); "
            f"{type(model).__name__} has no quantized modules"
        )
    return model


# --- engines and fusion --------------------------------------------------------------------


def is_fused(model: nn.Module) -> bool:
    """True if `model` holds fused modules (ConvReLU2d, ConvBnReLU2d, LinearReLU, ...)."""
    return any(isinstance(m, _FusedModule) for m in model.modules())


def fuse_groups(model: nn.Module) -> list[list[str]]:
    """The module groups to fuse (the workbook's models say, via `fuse_groups()`); none if the
    model holds fused modules already."""
    if is_fused(model):
        return []
    return model.fuse_groups() if hasattr(model, "fuse_groups") else []


def fuse(model: nn.Module, *, qat: bool = False) -> nn.Module:
    """`model` fused: its `fuse_groups()` (the workbook's models) or `fuse_model(is_qat=...)`
    (torchvision's quantizable models); unchanged if it holds fused modules already. For PTQ
    (`qat=False`) the model must be in eval mode (batch norm is folded into the conv); for QAT
    in train mode (batch norm is kept, `ConvBnReLU2d`). Fusion may replace the root module:
    use the returned one."""
    if is_fused(model):
        return model
    groups = fuse_groups(model)
    if groups:
        fuse_fn = fuse_modules_qat if qat else fuse_modules
        return fuse_fn(model, groups)
    if callable(getattr(model, "fuse_model", None)):
        model.fuse_model(is_qat=qat)
    return model


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


def engine_of(model: nn.Module) -> str:
    """The engine `model` was built for; EngineMismatchError if another one is set now."""
    built = getattr(model, "qnb_engine", None)
    if built is None:
        raise ValueError(
            f"{type(model).__name__} records no engine: it was not built by qnb "
            "(ptq.quantize_static, qat.qat, deploy.load_int8 or deploy.load_torchscript)"
        )
    current = torch.backends.quantized.engine
    if current != built:
        raise EngineMismatchError(
            f"this int8 model was built for engine {built!r} but the current engine is "
            f"{current!r}: set torch.backends.quantized.engine = {built!r} (its weights are "
            "packed for one engine), or quantize again for the engine you want"
        )
    return built


def _engine_hook(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook of every int8 model built here: right engine, CPU input."""
    engine_of(module)
    for i, arg in enumerate(args):
        check_cpu_input(arg, f"input {i} of the int8 model")


def mark_int8(int8: nn.Module, engine: str, recipe: dict) -> nn.Module:
    """Record the engine and recipe on a converted model; it then refuses other engines."""
    int8.qnb_engine = engine
    int8.qnb_recipe = dict(recipe)
    int8.register_forward_pre_hook(_engine_hook)
    return int8


# --- the first int8 run ---------------------------------------------------------------------


def quantization_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules eager quantization treats as one unit: leaves, fused modules and
    FloatFunctionals, with their names."""
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
    if name and builtin and not is_quantized(module):
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


def first_int8_run(int8: nn.Module, x: torch.Tensor) -> dict[str, str]:
    """Run one batch through the int8 model; return each unit's input kind ("quantized"/"float").

    The same batch ran through the float model during calibration, so a failure here comes from
    quantization: it is re-raised as a QuantizedTensorError that says where and what to do."""
    named_units = dict(quantization_units(int8))
    seen: dict[str, str] = {}
    stack: list[str] = []

    def enter(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            stack.append(name)
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            if name in named_units and first is not None:
                seen.setdefault(name, "quantized" if first.is_quantized else "float")

        return hook

    def leave(module: nn.Module, args: tuple, output: object) -> None:
        stack.pop()

    modules = list(int8.named_modules())
    watch = hooks.attached(forward=[(module, leave) for _, module in modules],
                           pre=[(module, enter(name)) for name, module in modules])
    try:
        with watch, warnings.catch_warnings(), torch.inference_mode():
            warnings.filterwarnings("error", message=_CAT_WARNING)
            int8(x)
    except Exception as exc:
        named = dict(int8.named_modules())
        name = stack[-1] if stack else None
        module = named.get(name) if name is not None else None
        raise QuantizedTensorError(_explain(exc, name, module)) from exc
    return seen
