"""Notebook 05 (static_ptq): 05.1 the leaves of an int8 model that stay float, 05.2 a residual
block eager PTQ can quantize (FloatFunctional), 05.3 eager static PTQ by hand (core).

05.1 reads torch.ao's default static module mappings; 05.2 quantizes the student's model with
`qnb.ptq.quantize_static`; 05.3 compares with torch.ao's own prepare -> calibrate -> convert."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch

from qnb.exercises.grading import fail, needs_answer, passed


def _int8_module_types() -> tuple[type, ...]:
    """Module types that compute on int8 tensors after a default eager convert."""
    from torch.ao.nn.quantized import DeQuantize, Quantize
    from torch.ao.nn.quantized.modules.linear import LinearPackedParams
    from torch.ao.quantization.quantization_mappings import (
        get_default_static_quant_module_mappings,
    )

    mapped = get_default_static_quant_module_mappings().values()
    return (*mapped, Quantize, DeQuantize, LinearPackedParams)  # packed params: inside Linear


@needs_answer
def grade_float_modules(answer: list, int8_model: torch.nn.Module) -> None:
    """Exercise 05.1: the leaf modules of a converted model that are not int8 modules."""
    name, int8_types = "Exercise 05.1", _int8_module_types()
    leaves = {n: m for n, m in int8_model.named_modules() if n and not list(m.children())}
    want = {n for n, m in leaves.items() if not isinstance(m, int8_types)}
    got = set(answer) if isinstance(answer, list | tuple | set) else None
    if got is None:
        fail(name, f"answer with a list of module names, got {type(answer).__name__}")
    if "" in got:
        fail(name, "'' is the model itself, not a leaf module: skip it")
    unknown = got - set(leaves)
    if unknown:
        fail(name, f"{sorted(unknown)} are not leaf modules of the model (see named_modules())")
    def kinds(names: set) -> str:  # the first three, with their module types
        return ", ".join(f"{n} ({type(leaves[n]).__name__})" for n in sorted(names)[:3])

    if got - want:
        fail(name, f"{kinds(got - want)} compute in int8; note that fused int8 modules such as "
                   "QuantizedConvReLU2d live in torch.ao.nn.intrinsic.quantized")
    if want - got:
        fail(name, f"missing {kinds(want - got)}: leaves left by fusion (Identity) and ops that "
                   "work on quantized tensors directly (pooling, flatten) are not int8 modules "
                   "either")
    passed(name, f"{len(want)} leaf modules need no int8 version: {', '.join(sorted(want))}")


@needs_answer
def grade_float_functional(model_class: type) -> None:
    """Exercise 05.2: a residual model that eager PTQ can quantize (FloatFunctional add)."""
    from torch.ao.nn.quantized import QFunctional

    from qnb import estimators, ptq

    name = "Exercise 05.2"
    if not isinstance(model_class, type) or not issubclass(model_class, torch.nn.Module):
        fail(name, f"pass the class itself (Residual), got {model_class!r}")
    model = model_class().eval()
    gen = torch.Generator().manual_seed(0)
    calib = [torch.randn(4, 1, 8, 8, generator=gen) for _ in range(4)]
    try:
        int8, _ = ptq.quantize_static(model, calib)  # this machine's engine
    except ptq.QuantizedTensorError as error:
        fail(
            name,
            "a float op still meets a quantized tensor: create self.skip = "
            f"FloatFunctional() in __init__ and call self.skip.add(a, b) ({error})",
        )
    except (ValueError, estimators.NotCalibratedError) as error:  # e.g. no QuantStub called
        fail(name, f"eager PTQ cannot quantize this model: {error}")
    adds = [type(m).__name__ for m in int8.modules() if isinstance(m, QFunctional)]
    if not adds:
        fail(name, "the converted model has no quantized add (QFunctional): use FloatFunctional")
    with torch.inference_mode():
        x, out = calib[0], int8(calib[0])
        if out.is_quantized:
            fail(name, "the model returns a quantized tensor: end forward with self.dequant(x)")
        gap = float((model(x) - out).abs().max() / model(x).abs().max())
    if gap > 0.1:
        fail(
            name,
            f"the int8 model's output is {gap:.0%} off the float one: is the skip "
            "connection adding the right tensors?",
        )
    passed(name, f"quantizes to {adds[0]}; output within {gap:.1%} of float")


class _Tiny(torch.nn.Module):
    """QuantStub -> conv -> ReLU -> linear -> DeQuantStub: eager PTQ needs no fusion for it."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        torch.manual_seed(seed)
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.relu = torch.nn.ReLU()
        self.fc = torch.nn.Linear(4 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv(self.quant(x)))
        return self.dequant(self.fc(x.flatten(1)))


def _eager_ptq(model: torch.nn.Module, calib: list, qconfig_engine: str) -> torch.nn.Module:
    """torch.ao's eager static PTQ of `model` with `qconfig_engine`'s default qconfig."""
    from torch.ao import quantization as tq

    m = copy.deepcopy(model).eval()
    m.qconfig = tq.get_default_qconfig(qconfig_engine)
    prepared = tq.prepare(m)
    with torch.inference_mode():
        for x in calib:
            prepared(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an uncalibrated observer warns
        return tq.convert(prepared)


@needs_answer
def grade_static_ptq(fn: Callable, engine: str, seed: int = 0) -> None:
    """Exercise 05.3: `fn(model, calib, engine)` is eager static PTQ by hand (qconfig, prepare,
    calibrate, convert): the int8 model torch.ao builds, bit for bit."""
    name = "Exercise 05.3"
    if engine not in torch.backends.quantized.supported_engines:
        raise ValueError(
            f"engine must be one of {torch.backends.quantized.supported_engines}, got {engine!r}"
        )
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        gen = torch.Generator().manual_seed(seed + 50)
        calib = [torch.rand(8, 1, 8, 8, generator=gen) * (1 + k) for k in range(4)]
        x = torch.rand(16, 1, 8, 8, generator=gen) * 2
        model = _Tiny(seed).eval()
        reference = copy.deepcopy(model)
        got_model = fn(model, [c.clone() for c in calib], engine)
        if not isinstance(got_model, torch.nn.Module):
            fail(name, f"return the converted model, got {type(got_model).__name__}")
        kinds = {type(m).__module__ for m in got_model.modules()}
        if any(hasattr(m, "activation_post_process") or "observer" in type(m).__module__
               for m in got_model.modules()):  # fmt: skip
            fail(name, "the model still has observers: call torch.ao.quantization.convert on the "
                  "prepared, calibrated model")  # fmt: skip
        if not any("quantized" in k for k in kinds):
            fail(name, "no int8 modules in the model: set model.qconfig, prepare, calibrate, "
                  "then convert")  # fmt: skip
        if got_model.training:
            fail(name, "the model is in training mode: call model.eval() before prepare")
        with torch.inference_mode():
            got = got_model(x)
            want = _eager_ptq(reference, calib, engine)(x)
            if torch.equal(got, want):
                passed(name, f"the same int8 model as torch.ao's prepare -> calibrate -> convert "
                        f"on {engine}")  # fmt: skip
                return
            other = "qnnpack" if engine != "qnnpack" else "x86"
            variants = {
                "the observers never saw data (scale 1, zero point 0): run every calibration "
                "batch through the *prepared* model before convert": ([], engine),
                "use get_default_qconfig(engine) for the engine you run on (x86 and fbgemm keep "
                "activations to 7 bits, reduce_range; qnnpack uses all 8)": (calib, other),
                "calibrate on every batch, not only the first": (calib[:1], engine),
            }
            for hint, (batches, qconfig_engine) in variants.items():
                try:
                    same = torch.equal(got, _eager_ptq(reference, batches, qconfig_engine)(x))
                except RuntimeError:  # a qconfig this engine cannot run
                    same = False
                if same:
                    fail(name, hint)
        gap = float((got - want).abs().max())
        fail(name, f"outputs differ from torch.ao's int8 model by up to {gap:.3g}")
    finally:
        torch.backends.quantized.engine = previous
