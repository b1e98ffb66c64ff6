"""Exercise checks: quiet praise for a right answer, a diagnosis for a wrong one.

Every check recomputes the answer independently (plain Python or PyTorch's own kernels),
never from the notebook's solution, and raises `ExerciseError` with a hint that teaches.
"""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import math
import re
import warnings
from collections.abc import Callable

import numpy as np
import torch


class ExerciseError(AssertionError):
    """A wrong answer to an exercise; the message says what is wrong."""


def _passed(exercise: str, detail: str = "") -> None:
    print(f"✔ {exercise} passed" + (f": {detail}" if detail else ""))


def _fail(exercise: str, hint: str) -> None:
    raise ExerciseError(f"{exercise}: {hint}")


def _needs_answer(check: Callable[..., None]) -> Callable[..., None]:
    """Guard a check: an answer left as a stub (a `None`, or a function that still raises the
    stub's NotImplementedError: nbgrader's bare one, or one that names the exercise) fails as
    "not answered yet", never with a confusing traceback.

    The exercise is named by the first words of the check's docstring ("Exercise NN.K: ...").
    """
    found = re.match(r"Exercise \d+\.\d+", check.__doc__ or "")
    if not found:
        raise ValueError(f"{check.__name__}: docstring must start with 'Exercise NN.K:'")
    name, signature = found.group(0), inspect.signature(check)

    @functools.wraps(check)
    def guarded(*args, **kwargs):
        given = signature.bind(*args, **kwargs).arguments
        unset = [f"`{k}`" for k, v in given.items() if v is None]
        if unset:
            _fail(
                name,
                f"not answered yet ({', '.join(unset)} {'is' if len(unset) == 1 else 'are'} "
                "None): replace the stub in the cell above with your answer and run it",
            )
        try:
            return check(*args, **kwargs)
        except NotImplementedError as exc:  # nbgrader's stub raises it bare
            if str(exc) and not str(exc).startswith(name):
                raise
        _fail(
            name,
            "not answered yet: your code is still the stub (it raises NotImplementedError); "
            "replace the stub in the cell above with your answer and run it",
        )

    return guarded


def _expected_qparams(xmin: float, xmax: float, bits: int) -> tuple[float, int]:
    """Asymmetric unsigned scale and zero point, as plain Python floats."""
    xmin, xmax = min(xmin, 0.0), max(xmax, 0.0)
    levels = 2**bits - 1
    scale = (xmax - xmin) / levels
    return scale, min(max(-round(xmin / scale), 0), levels)


@_needs_answer
def check_qparams(scale: float, zero_point: int, xmin: float, xmax: float, bits: int) -> None:
    """Exercise 01.1: asymmetric unsigned scale and zero point for [xmin, xmax] at `bits`."""
    name, (want_scale, want_zp) = "Exercise 01.1", _expected_qparams(xmin, xmax, bits)
    levels = 2**bits - 1
    if scale is None or zero_point is None:
        _fail(name, "set both `scale` and `zero_point`")
    if not math.isclose(scale, want_scale, rel_tol=1e-6):
        ratio = scale / want_scale if want_scale else float("nan")
        if math.isclose(scale * want_scale, 1.0, rel_tol=1e-6):
            _fail(
                name, "scale is upside down: it is (xmax - xmin) / (qmax - qmin), not the inverse"
            )
        if math.isclose(ratio, levels / (levels + 1), rel_tol=1e-6):
            _fail(
                name,
                f"there are 2**bits - 1 = {levels} steps between qmin and qmax, not {levels + 1}",
            )
        _fail(name, f"scale is {ratio:.4g}x the right value; use (xmax - xmin) / (qmax - qmin)")
    if isinstance(zero_point, float | np.floating) and not float(zero_point).is_integer():
        _fail(name, f"zero_point must be an integer level, got {zero_point}: round it")
    if zero_point == want_zp:  # before the sign test: -0 == 0 when the range starts at 0
        _passed(name, f"scale = {scale:.6g}, zero_point = {zero_point}")
        return
    if zero_point == 0:  # symmetric habit, or the wrong sign clamped to qmin
        _fail(
            name,
            f"zero_point 0 puts the real 0 at qmin, leaving no level for xmin = {xmin} < 0: "
            "z = qmin - round(xmin / scale) (mind the sign)",
        )
    if zero_point == -want_zp or zero_point == min(max(round(xmin / want_scale), 0), levels):
        _fail(name, "zero point has the wrong sign: z = qmin - round(xmin / scale)")
    _fail(
        name, f"zero_point {zero_point} is not where the real 0 lands; want qmin - round(xmin / s)"
    )


def _torch_reference(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    q = torch.quantize_per_tensor(torch.from_numpy(x), scale, zero_point, torch.quint8)
    return q.int_repr().numpy().astype(np.int64)


def _common_mistakes(x: np.ndarray, scale: float, zp: int) -> dict[str, np.ndarray]:
    """What the usual wrong versions of the formula produce, each with the hint it deserves."""
    x64, clamp = x.astype(np.float64), lambda q: np.clip(q, 0, 255)
    return {
        "did you multiply by the scale instead of dividing? q = round(x / scale) + zero_point": (
            clamp(np.rint(x64 * scale) + zp)
        ),
        "levels fall outside [0, 255]: clamp to [qmin, qmax] after rounding": np.rint(x64 / scale)
        + zp,
        "only the exact halfway cases differ: torch rounds half to even (np.rint does; "
        "floor(v + 0.5) rounds every half up)": clamp(np.floor(x64 / scale + 0.5) + zp),
        "int() and astype(int) truncate toward zero: round first": clamp(
            np.trunc(x64 / scale) + zp
        ),
        "the zero point is added, not subtracted: q = round(x / scale) + zero_point": clamp(
            np.rint(x64 / scale) - zp
        ),
    }


@_needs_answer
def check_quantize(fn: Callable[[np.ndarray, float, int], np.ndarray]) -> None:
    """Exercise 01.2: `fn(x, scale, zero_point)` must match torch's quint8 kernel bit for bit."""
    name, scale, zp = "Exercise 01.2", 0.25, 10
    ties = (np.arange(-8, 8) + 0.5).astype(np.float32) * scale  # exactly halfway between levels
    wide = np.array([-1e3, -3.0, 0.0, 60.0, 1e3], dtype=np.float32)  # far outside the range
    rng = np.random.default_rng(0)
    x = np.concatenate([ties, wide, rng.uniform(-2, 60, 64).astype(np.float32)])
    got, want = np.asarray(fn(x.copy(), scale, zp)), _torch_reference(x, scale, zp)
    if got.shape != want.shape:
        _fail(name, f"returned shape {got.shape}, expected {want.shape} (one level per input)")
    if not np.array_equal(got, want):
        for hint, mistake in _common_mistakes(x, scale, zp).items():
            if np.array_equal(got, mistake):
                _fail(name, hint)
        _fail_first_difference(name, x, got, want)
    # 0.1 has no exact float32 reciprocal: x * (1/s) and x / s differ in the last bit near ties
    scale = 0.1
    near = (np.arange(-100, 100) + 0.5).astype(np.float32) * np.float32(scale)
    x = np.concatenate([near, np.nextafter(near, np.float32(np.inf))]).astype(np.float32)
    got, want = np.asarray(fn(x.copy(), scale, zp)), _torch_reference(x, scale, zp)
    if not np.array_equal(got, want):
        divided = {
            "float32": np.clip(np.rint(x / np.float32(scale)) + zp, 0, 255),
            "float64": np.clip(np.rint(x.astype(np.float64) / scale) + zp, 0, 255),
        }
        for precision, mistake in divided.items():
            if np.array_equal(got, mistake):
                _fail(
                    name,
                    f"right at scale 0.25, but at scale 0.1 you divide ({precision} x / scale): "
                    "torch multiplies by the float32 reciprocal, x * (1 / scale) in float32 "
                    "(inv = np.float32(1) / np.float32(scale)), and near a tie the last bit of "
                    "x / scale rounds the other way (see qnb.affine)",
                )
        _fail_first_difference(name, x, got, want)
    if not np.issubdtype(got.dtype, np.integer):
        _fail(name, f"right values but dtype {got.dtype}: return integers (e.g. .astype(int))")
    _passed(name, "bit-exact with torch.quantize_per_tensor: ties, clamping and x * (1/s)")


def _fail_first_difference(name: str, x: np.ndarray, got: np.ndarray, want: np.ndarray) -> None:
    wrong = got != want
    _fail(
        name,
        f"{wrong.sum()} of {x.size} levels differ, e.g. x = {x[wrong][0]!r}: "
        f"got {got[wrong][0]}, torch gives {want[wrong][0]}",
    )


@_needs_answer
def check_db_per_bit(answer: float, bit_widths: list, sqnr_db: list) -> None:
    """Exercise 01.3: dB of SQNR one more bit buys at large b, read off this run's measured
    `sqnr_db` at `bit_widths` (the uniform-data curve), not from the formula: the answer must
    be the step between two measured points at 6 bits or more (or a fit through them),
    within 0.002 dB; 6.02 typed in is the formula and is refused."""
    name = "Exercise 01.3"
    if isinstance(answer, bool) or not isinstance(answer, int | float) or not math.isfinite(answer):
        _fail(name, f"answer must be a number of dB, got {answer!r}")
    bits, db = np.asarray(bit_widths, dtype=float), np.asarray(sqnr_db, dtype=float)
    if bits.shape != db.shape or bits.ndim != 1:
        raise ValueError(
            f"bit_widths and sqnr_db must be two lists of the same length, got {len(bits)} "
            f"bit widths and {len(db)} SQNRs"
        )
    high = bits >= 6
    if high.sum() < 2:
        raise ValueError(
            f"bit_widths must hold at least two widths of 6 bits or more, got {bit_widths!r}"
        )
    b, d = bits[high], db[high]
    slopes = {
        f"{b[i]:g} -> {b[j]:g} bits": (d[j] - d[i]) / (b[j] - b[i])
        for i in range(len(b))
        for j in range(i + 1, len(b))
    }
    slopes["a straight-line fit from 6 bits up"] = float(np.polyfit(b, d, 1)[0])
    how, slope = min(slopes.items(), key=lambda item: abs(answer - item[1]))
    if abs(answer - slope) <= 0.002:
        _passed(name, f"{answer:.3f} dB per bit measured ({how}; 20*log10 2 = 6.021)")
        return
    if math.isclose(answer, 20 * math.log10(2), abs_tol=0.005) or math.isclose(
        answer, 6.0, abs_tol=1e-9
    ):
        _fail(
            name,
            "that is the formula's 20*log10(2); compute the step from sqnr['uniform'] "
            "at two bit widths of 6 or more: (SQNR_b2 - SQNR_b1) / (b2 - b1)",
        )
    if math.isclose(answer, 10 * math.log10(2), abs_tol=0.1):
        _fail(name, "that is 10*log10(2): a bit halves the step, so the noise *power* drops 4x")
    if any(
        math.isclose(answer, (d[j] - d[i]), abs_tol=0.002)
        for i in range(len(b))
        for j in range(i + 1, len(b))
    ):
        _fail(name, "that is the dB difference between two widths: divide by how many bits apart")
    low = {
        f"{bits[i]:g} -> {bits[i + 1]:g}": (db[i + 1] - db[i]) / (bits[i + 1] - bits[i])
        for i in range(len(bits) - 1)
        if bits[i] < 6
    }
    for how, slope in low.items():
        if abs(answer - slope) <= 0.002:
            _fail(
                name,
                f"that is the step {how} bits, where 2**b - 1 still grows faster than "
                "2**b: use widths of 6 bits or more ('once b is large')",
            )
    _fail(
        name,
        f"{answer:.3g} dB is not a step of this run's measured curve at 6 bits or more "
        f"(e.g. {next(iter(slopes.values())):.3f} between {next(iter(slopes))})",
    )


def _observer_scales(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel symmetric scales, as torch.ao's PerChannelMinMaxObserver makes them."""
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    obs = PerChannelMinMaxObserver(
        0, torch.qint8, torch.per_channel_symmetric, quant_min=qmin, quant_max=qmax
    )
    obs(weight)
    return obs.calculate_qparams()[0]


@_needs_answer
def check_channel_scales(scales: np.ndarray, weight: torch.Tensor, bits: int) -> None:
    """Exercise 02.1: per-output-channel symmetric scales of `weight` at `bits`."""
    name, want = "Exercise 02.1", _observer_scales(weight.detach(), bits).numpy()
    got = np.asarray(scales, dtype=np.float64).reshape(-1)
    half = (2**bits - 1) / 2
    if got.size == 1 and want.size > 1:
        _fail(
            name,
            "one scale for the whole tensor is per-tensor; take the max over each "
            "output channel (axis 0) separately",
        )
    if got.shape != want.shape:
        _fail(name, f"expected one scale per output channel, shape {want.shape}, got {got.shape}")
    if np.allclose(got, want, rtol=1e-5):
        _passed(name, f"{want.size} scales, from {want.min():.3g} to {want.max():.3g}")
        return
    flat = weight.detach().reshape(len(weight), -1).double()
    if np.allclose(got, (flat.amax(1) / half).numpy(), rtol=1e-5):
        _fail(name, "take the largest |w|, not the largest w: a negative weight can be larger")
    ratio = float(np.median(got / want))
    if math.isclose(ratio, half / (2 ** (bits - 1) - 1), rel_tol=1e-3):
        _fail(
            name,
            f"you divided by qmax = {2 ** (bits - 1) - 1}; torch's symmetric scale is "
            f"max|w| / ((qmax - qmin) / 2) = max|w| / {half}",
        )
    if math.isclose(ratio, half / 2 ** (bits - 1), rel_tol=1e-3):
        _fail(
            name, f"you divided by 2**(bits-1) = {2 ** (bits - 1)}; use (qmax - qmin) / 2 = {half}"
        )
    if math.isclose(ratio, 0.5, rel_tol=0.2):
        _fail(name, "about half the right size: a symmetric range spans -max|w| .. +max|w|")
    _fail(
        name,
        f"scales are {ratio:.3g}x the expected ones; take max |w| over each channel "
        f"(all axes but 0) and divide by (qmax - qmin) / 2 = {half}",
    )


@_needs_answer
def check_worst_layer(answer: str, model: torch.nn.Module, bits: int) -> None:
    """Exercise 02.2: the layer losing most weight SQNR from per-channel to per-tensor."""
    from qnb import mixed, simulate

    name, fused = "Exercise 02.2", simulate.fused(model)
    losses, layers = {}, simulate.weight_layers(fused)
    for layer_name, layer in layers:
        w = layer.weight.detach()
        sqnr = {
            g: _sqnr(w, simulate.fake_quantize_weight(w, bits, g)) for g in simulate.GRANULARITIES
        }
        losses[layer_name] = sqnr["per_channel"] - sqnr["per_tensor"]
    want = max(losses, key=losses.get)
    if not isinstance(answer, str):
        _fail(name, f"answer with the layer's name (a string), got {answer!r}")
    fused_name = {id(m): n for n, m in layers}  # the float name ('conv1') means 'conv1.0' too
    aliases = {n: fused_name[id(m)] for n, m in mixed.layers_by_name(fused).items()}
    answer = aliases.get(answer, answer)
    if answer not in losses:
        _fail(name, f"{answer!r} is not a weight layer of the fused model; they are {list(losses)}")
    if answer != want:
        _fail(
            name,
            f"{answer!r} loses {losses[answer]:.1f} dB; another layer loses more. "
            "Compare per-channel minus per-tensor SQNR for every layer",
        )
    _passed(name, f"{want} loses {losses[want]:.1f} dB when all its channels share one scale")


def _sqnr(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    noise = float(((x - x_hat) ** 2).sum())
    return math.inf if noise == 0 else 10 * math.log10(float((x**2).sum()) / noise)


@_needs_answer
def check_percentile_clip(answer: float, activations: torch.Tensor, percentile: float) -> None:
    """Exercise 03.1: the top of the range that clips the top (100 - percentile) % of values."""
    name = "Exercise 03.1"
    x = activations.detach().reshape(-1).double().numpy()
    want = float(np.percentile(x, percentile))
    if not isinstance(answer, int | float | np.floating) or not math.isfinite(answer):
        _fail(name, f"answer must be a finite number, got {answer!r}")
    tol = 1e-3 * (float(x.max()) - float(x.min()))
    if math.isclose(answer, want, abs_tol=tol):
        _passed(name, f"{answer:.4g} clips {np.mean(x > answer):.3%} of the values")
        return
    if math.isclose(answer, float(x.max()), abs_tol=tol):
        _fail(name, "that is the maximum: a percentile range clips the largest values off")
    other_tail = math.isclose(answer, float(np.percentile(x, 100 - percentile)), abs_tol=tol)
    fraction = math.isclose(answer, float(np.percentile(x, percentile / 100)), abs_tol=tol)
    percent = "np.percentile takes percent (0..100), np.quantile takes a fraction (0..1)"
    tail = f"you want the value below which {percentile}% of the activations lie"
    if other_tail and fraction:  # both land at the bottom of the data (ReLU zeros)
        _fail(name, f"that is the bottom of the data: {tail}; {percent}")
    if other_tail:
        _fail(name, f"that is the other tail: {tail}")
    if fraction:
        _fail(name, percent)
    _fail(
        name,
        f"{answer:.4g} clips {np.mean(x > answer):.3%} of the values; "
        f"it should clip {100 - percentile:.3g}%",
    )


def _clip_error(x: np.ndarray, high: float, bits: int) -> float:
    """Mean squared error of unsigned `bits`-wide fake quantization of x over [0, high]."""
    scale = high / (2**bits - 1)
    return float(np.mean((x - np.clip(np.round(x / scale), 0, 2**bits - 1) * scale) ** 2))


@_needs_answer
def check_best_clip(answer: float, activations: torch.Tensor, bits: int) -> None:
    """Exercise 03.2: a clipping threshold whose total error is within 2% of the best one."""
    name = "Exercise 03.2"
    x = activations.detach().reshape(-1).double().numpy()
    top = float(x.max())
    if not isinstance(answer, int | float | np.floating) or not 0 < answer <= top * 1.5:
        _fail(name, f"answer must be a threshold in (0, {top:.3g}], got {answer!r}")
    grid = np.linspace(top / 200, top, 400)
    errors = np.array([_clip_error(x, c, bits) for c in grid])
    best, got = float(errors.min()), _clip_error(x, float(answer), bits)
    if got <= 1.02 * best:
        _passed(name, f"threshold {answer:.4g}: error {got:.3g} (best on a fine grid {best:.3g})")
        return
    side = (
        "clamps too much (lower error: raise it)"
        if answer < grid[errors.argmin()]
        else ("wastes levels on rare large values (lower it)")
    )
    _fail(
        name, f"threshold {answer:.4g} has error {got:.3g}, {got / best:.2f}x the best; it {side}"
    )


@_needs_answer
def check_sweep_gap(answer: dict, results_csv: str) -> None:
    """Exercise 15.1: mean SQNR gap (asymmetric - symmetric on ReLU data) per compare_bits."""
    import pandas as pd

    name = "Exercise 15.1"
    table = pd.read_csv(results_csv)
    ok = table[table.status == "ok"]
    gap = ok.sqnr_relu_asymmetric_db - ok.sqnr_relu_symmetric_db
    want = gap.groupby(ok.compare_bits).mean().to_dict()
    if not isinstance(answer, dict) or not answer:
        _fail(name, "answer with a dict {compare_bits: mean gap in dB}")
    try:
        given = {int(k): v for k, v in answer.items()}
    except (TypeError, ValueError):
        _fail(name, f"the keys are the compare_bits values (integers), got {list(answer)}")
    if set(given) != set(map(int, want)):
        _fail(name, f"expected one entry per swept compare_bits {sorted(want)}, got {list(answer)}")
    for bits, value in want.items():
        got = given[int(bits)]
        if not isinstance(got, int | float | np.integer | np.floating) or not math.isfinite(got):
            _fail(name, f"the gap at {bits} bits must be a finite number of dB, got {got!r}")
        if math.isclose(got, value, abs_tol=1e-6):
            continue
        if math.isclose(got, -value, abs_tol=1e-6):
            _fail(name, "the sign is flipped: asymmetric minus symmetric")
        _fail(
            name,
            f"at {bits} bits the mean gap over the seeds is {value:.3f} dB, not {got:.3f}; "
            "average over runs with the same compare_bits (only runs with status ok)",
        )
    _passed(name, ", ".join(f"{b} bits: {v:.2f} dB" for b, v in sorted(want.items())))


def _int8_module_types() -> tuple[type, ...]:
    """Module types that compute on int8 tensors after a default eager convert."""
    from torch.ao.nn.quantized import DeQuantize, Quantize
    from torch.ao.nn.quantized.modules.linear import LinearPackedParams
    from torch.ao.quantization.quantization_mappings import (
        get_default_static_quant_module_mappings,
    )

    mapped = get_default_static_quant_module_mappings().values()
    return (*mapped, Quantize, DeQuantize, LinearPackedParams)  # packed params: inside Linear


@_needs_answer
def check_float_modules(answer: list, int8_model: torch.nn.Module) -> None:
    """Exercise 05.1: the leaf modules of a converted model that are not int8 modules."""
    name, int8_types = "Exercise 05.1", _int8_module_types()
    leaves = {n: m for n, m in int8_model.named_modules() if n and not list(m.children())}
    want = {n for n, m in leaves.items() if not isinstance(m, int8_types)}
    got = set(answer) if isinstance(answer, list | tuple | set) else None
    if got is None:
        _fail(name, f"answer with a list of module names, got {type(answer).__name__}")
    if "" in got:
        _fail(name, "'' is the model itself, not a leaf module: skip it")
    unknown = got - set(leaves)
    if unknown:
        _fail(name, f"{sorted(unknown)} are not leaf modules of the model (see named_modules())")
    wrongly = sorted(got - want)
    if wrongly:
        kinds = ", ".join(f"{n} ({type(leaves[n]).__name__})" for n in wrongly[:3])
        _fail(
            name,
            f"{kinds} compute in int8; note that fused int8 modules such as "
            "QuantizedConvReLU2d live in torch.ao.nn.intrinsic.quantized",
        )
    missing = sorted(want - got)
    if missing:
        kinds = ", ".join(f"{n} ({type(leaves[n]).__name__})" for n in missing[:3])
        _fail(
            name,
            f"missing {kinds}: leaves left by fusion (Identity) and ops that work on "
            "quantized tensors directly (pooling, flatten) are not int8 modules either",
        )
    _passed(name, f"{len(want)} leaf modules need no int8 version: {', '.join(sorted(want))}")


@_needs_answer
def check_float_functional(model_class: type) -> None:
    """Exercise 05.2: a residual model that eager PTQ can quantize (FloatFunctional add)."""
    from torch.ao.nn.quantized import QFunctional

    from qnb import estimators, ptq

    name = "Exercise 05.2"
    if not isinstance(model_class, type) or not issubclass(model_class, torch.nn.Module):
        _fail(name, f"pass the class itself (Residual), got {model_class!r}")
    model = model_class().eval()
    gen = torch.Generator().manual_seed(0)
    calib = [torch.randn(4, 1, 8, 8, generator=gen) for _ in range(4)]
    try:
        int8, _ = ptq.quantize_static(model, calib)  # this machine's engine
    except ptq.QuantizedTensorError as error:
        _fail(
            name,
            "a float op still meets a quantized tensor: create self.skip = "
            f"FloatFunctional() in __init__ and call self.skip.add(a, b) ({error})",
        )
    except (ValueError, estimators.NotCalibratedError) as error:  # e.g. no QuantStub called
        _fail(name, f"eager PTQ cannot quantize this model: {error}")
    adds = [type(m).__name__ for m in int8.modules() if isinstance(m, QFunctional)]
    if not adds:
        _fail(name, "the converted model has no quantized add (QFunctional): use FloatFunctional")
    with torch.inference_mode():
        x, out = calib[0], int8(calib[0])
        if out.is_quantized:
            _fail(name, "the model returns a quantized tensor: end forward with self.dequant(x)")
        gap = float((model(x) - out).abs().max() / model(x).abs().max())
    if gap > 0.1:
        _fail(
            name,
            f"the int8 model's output is {gap:.0%} off the float one: is the skip "
            "connection adding the right tensors?",
        )
    _passed(name, f"quantizes to {adds[0]}; output within {gap:.1%} of float")


@_needs_answer
def check_lstm_share(answer: float, model: torch.nn.Module) -> None:
    """Exercise 06.1: the fraction of the model's parameters that are in its LSTM."""
    name = "Exercise 06.1"
    total = sum(p.numel() for p in model.parameters())
    lstm = sum(
        p.numel() for m in model.modules() if isinstance(m, torch.nn.LSTM) for p in m.parameters()
    )
    want = lstm / total
    if not isinstance(answer, int | float | np.floating) or not math.isfinite(answer):
        _fail(name, f"answer must be a number, got {answer!r}")
    if math.isclose(answer, 100 * want, rel_tol=1e-6):
        _fail(name, "that is a percentage: answer with a fraction between 0 and 1")
    if math.isclose(answer, 1 - want, rel_tol=1e-6):
        _fail(name, "that is the share of everything *but* the LSTM")
    if not math.isclose(answer, want, rel_tol=1e-6):
        _fail(
            name,
            f"{answer:.4g} is off: count p.numel() over the LSTM's parameters "
            "(weights and biases of all four gates) and over the whole model",
        )
    _passed(
        name,
        f"{want:.1%} of the parameters are the LSTM's: weight-only on Linear layers "
        "cannot shrink this model much",
    )


def _dynamic_scale(x: torch.Tensor, qmax: int) -> float:
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    return (hi - lo) / qmax


@_needs_answer
def check_dynamic_qparams(
    scale: float,
    zero_point: int,
    x: torch.Tensor,
    engine: str | None = None,
    whole: torch.Tensor | None = None,
) -> None:
    """Exercise 06.2: the scale and zero point a dynamic int8 kernel of `engine` (None: this
    machine's) picks for one call's input `x`; `whole` (optional) is the larger tensor `x` was
    cut from (all time steps), whose range would be a mistake."""
    from qnb import checks, dynamic

    name = "Exercise 06.2"
    if not isinstance(scale, int | float | np.floating) or not math.isfinite(scale):
        _fail(name, f"scale must be a number, got {scale!r}")
    x, engine = x.detach(), checks.check_engine(engine)
    want_scale, want_zp, qmax = dynamic.activation_qparams(x, engine)
    on = f"on {engine!r}"
    if not math.isclose(scale, want_scale, rel_tol=1e-4):
        other = 255 if qmax == 127 else 127
        if math.isclose(scale, _dynamic_scale(x, other), rel_tol=1e-4):
            if other == 255:
                _fail(
                    name,
                    f"that is the full 0..255 scale; {on} the dynamic kernels ask for "
                    "reduce_range=True (nn.quantized.dynamic.Linear calls linear_dynamic(..., "
                    "reduce_range=True)): 7-bit activations 0..127, (max - min) / 127",
                )
            _fail(
                name,
                f"that is a 7-bit (reduce_range) scale; {on} the dynamic kernels ignore "
                "reduce_range and use the full 0..255: (max - min) / 255",
            )
        if whole is not None and any(
            math.isclose(scale, _dynamic_scale(whole.detach(), q), rel_tol=1e-4) for q in (127, 255)
        ):
            _fail(
                name,
                "that range is over the whole tensor (all time steps): the kernel picks a "
                "range per call, from that call's input only (here one time step's)",
            )
        _fail(
            name,
            f"scale {scale:.6g} is off: (max - min) / {qmax} over this call's input, with the "
            "range widened to include 0",
        )
    if int(zero_point) != want_zp:
        _fail(
            name,
            f"zero_point {zero_point} is off (want the level of 0.0: "
            f"round(-min / scale), clamped to 0..{qmax})",
        )
    _passed(
        name,
        f"scale {want_scale:.5g}, zero point {want_zp} on 0..{qmax}: picked per call, at run time",
    )


@_needs_answer
def check_shard(answer: list, notebook: str, grid: dict, shard: str) -> None:
    """Exercise 15.2: the run names one shard `I/N` of a sweep executes."""
    from qnb import sweep

    name = "Exercise 15.2"
    index, count = sweep.parse_shard(shard)
    want = [run.name for run in sweep.shard(sweep.plan([notebook], grid), index, count)]
    if not isinstance(answer, list | tuple):
        _fail(name, f"answer with a list of run names, got {type(answer).__name__}")
    if list(answer) == want:
        _passed(name, f"shard {shard} runs {len(want)} of the grid: {', '.join(want)}")
        return
    if sorted(answer) == sorted(want):
        _fail(name, "right runs, wrong order: list them in the order of the plan")
    everything = [run.name for run in sweep.plan([notebook], grid)]
    if list(answer) == everything[(index - 1) * len(want) : index * len(want)]:
        _fail(name, "a shard is not a contiguous block: it takes every N-th run, starting at I")
    _fail(
        name,
        f"shard {shard} takes every {count}-th run of the plan starting at run {index} "
        f"(1-based): {len(want)} runs",
    )


@_needs_answer
def check_ste_gradient(
    answer: torch.Tensor, x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int
) -> None:
    """Exercise 08.1: the straight-through gradient of fake quantization at the points x."""
    name = "Exercise 08.1"
    probe = x.detach().clone().requires_grad_(True)
    torch.fake_quantize_per_tensor_affine(probe, scale, zero_point, qmin, qmax).sum().backward()
    want = probe.grad
    got = torch.as_tensor(answer, dtype=torch.float32).reshape(-1)
    if got.shape != want.shape:
        _fail(
            name,
            f"one gradient per point: expected shape {tuple(want.shape)}, got {tuple(got.shape)}",
        )
    if torch.equal(got, want):
        _passed(name, f"gradient {want.tolist()}: 1 inside the range, 0 where clamped")
        return
    if torch.equal(got, torch.zeros_like(want)):
        _fail(
            name,
            "all zeros is the true derivative of round; the STE passes the gradient "
            "through (1) wherever the value is inside the range",
        )
    if torch.equal(got, torch.ones_like(want)):
        _fail(name, "clamped values get no gradient: moving them does not change the output")
    wrong = (got != want).nonzero().reshape(-1).tolist()
    _fail(
        name,
        f"wrong at x = {[float(x[i]) for i in wrong]}: the test is on the rounded level, "
        f"round(x / scale) + zero_point in [{qmin}, {qmax}], so the pass-through region reaches "
        "half a step beyond the end levels",
    )


@_needs_answer
def check_ste_function(function: type) -> None:
    """Exercise 08.2: an autograd Function that rounds forward and passes gradients through."""
    name = "Exercise 08.2"
    if not isinstance(function, type) or not issubclass(function, torch.autograd.Function):
        _fail(name, f"pass a torch.autograd.Function subclass, got {function!r}")
    x = torch.tensor([-1.5, -0.4, 0.5, 1.5, 2.7], requires_grad=True)
    y = function.apply(x)
    if not torch.equal(y.detach(), torch.round(x.detach())):
        _fail(name, f"forward should round: got {y.detach().tolist()} for {x.detach().tolist()}")
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    try:
        (y * weights).sum().backward()
    except NotImplementedError:  # torch's own: the Function defines no backward
        _fail(name, "define backward too: @staticmethod def backward(ctx, grad_output)")
    if x.grad is None or not torch.equal(x.grad, weights):
        got = None if x.grad is None else x.grad.tolist()
        _fail(
            name,
            f"backward should return grad_output unchanged; d(sum(w*y))/dx gave {got}, "
            f"expected {weights.tolist()}",
        )
    _passed(name, "forward rounds, backward is the identity: the straight-through estimator")


def _size_variants(model: torch.nn.Module, bitwidths: dict) -> dict[str, float]:
    """The size of `model` at `bitwidths` the right way and the usual wrong ways, in bytes."""
    from qnb import mixed, simulate

    bits = mixed.resolve_bitwidths(model, bitwidths)
    fused = mixed.layers_by_name(simulate.fused(model))  # {float name: layer}, batch norm folded
    original = dict(model.named_modules())
    sizes = dict.fromkeys(
        ("right", "bits", "kib", "no scales", "per tensor", "no bias", "unfused bias", "all 8"),
        0.0,
    )
    for name, layer in fused.items():
        b, numel, channels = bits[name], layer.weight.numel(), layer.weight.shape[0]
        bias = 4 * layer.bias.numel() if layer.bias is not None else 0
        own_bias = 4 * channels if getattr(original[name], "bias", None) is not None else 0
        weights = numel * 4 if b is None else numel * b / 8
        scales = 0 if b is None else 4 * channels
        sizes["right"] += weights + scales + bias
        sizes["bits"] += (weights + scales + bias) * 8
        sizes["no scales"] += weights + bias
        sizes["per tensor"] += weights + (0 if b is None else 4) + bias
        sizes["no bias"] += weights + scales
        sizes["unfused bias"] += weights + scales + own_bias
        sizes["all 8"] += numel + 4 * channels + bias
    sizes["kib"] = sizes["right"] / 1024
    return sizes


@_needs_answer
def check_model_size(answer: float, model: torch.nn.Module, bitwidths: dict) -> None:
    """Exercise 09.1: the workbook's size (bytes) of `model`'s layers at `bitwidths`."""
    from qnb import mixed

    name = "Exercise 09.1"
    if not isinstance(answer, int | float | np.integer | np.floating) or not math.isfinite(answer):
        _fail(name, f"answer must be a number of bytes, got {answer!r}")
    want = mixed.model_size_bytes(model, bitwidths)
    if math.isclose(answer, want, rel_tol=1e-9, abs_tol=1e-6):
        _passed(name, f"{want:,.0f} bytes ({want / 1024:.1f} KiB)")
        return
    variants = _size_variants(model, bitwidths)
    hints = {
        "bits": "you counted bits, not bytes: a weight at b bits takes b / 8 bytes",
        "kib": "that is KiB: answer in bytes",
        "no scales": "you are 4 bytes per output channel short: each layer has a float32 "
        "scale per output channel *and* a float32 bias (one element per output channel)",
        "per tensor": "the weights are per-channel: one 4-byte scale per output channel "
        "(weight.shape[0]), not one per layer",
        "no bias": "count the biases too: they stay float32, 4 bytes per element",
        "unfused bias": "fold batch norm first (simulate.fused): the fused convolutions get a "
        "bias even where the float conv had bias=False",
        "all 8": "every layer came out at 8 bits: use each layer's own entry of the dict",
    }
    for variant, hint in hints.items():
        if math.isclose(answer, variants[variant], rel_tol=1e-9, abs_tol=1e-6):
            _fail(name, hint)
    _fail(
        name,
        f"{answer:,.1f} is {answer - want:+,.1f} bytes off: per layer, numel * bits / 8 + "
        "4 * out_channels (scales) + 4 * bias.numel(), on the fused model",
    )


@_needs_answer
def check_pareto_points(answer: list, points: dict) -> None:
    """Exercise 09.2: the names of the (size, accuracy) points on the Pareto front."""
    from qnb import mixed

    name = "Exercise 09.2"
    if not isinstance(answer, list | tuple | set):
        _fail(name, f"answer with a list of point names, got {type(answer).__name__}")
    names = list(points)
    unknown = sorted(set(answer) - set(names))
    if unknown:
        _fail(name, f"{unknown} are not points of the list; the names are {names}")
    mask = mixed.pareto([points[n] for n in names])
    want = {n for n, keep in zip(names, mask, strict=True) if keep}
    got = set(answer)
    if got == want:
        _passed(name, f"{len(want)} of {len(names)} points are on the front: {sorted(want)}")
        return
    for n in sorted(got - want):
        size, acc = points[n]
        other = next(
            o
            for o in names
            if points[o][0] <= size
            and points[o][1] >= acc
            and (points[o][0] < size or points[o][1] > acc)
        )
        tie = points[other][0] == size or points[other][1] == acc
        _fail(
            name,
            f"{n!r} is dominated by {other!r}: at most as large and at least as accurate, "
            "and strictly better in one" + (" (a tie on one axis still counts)" if tie else ""),
        )
    missing = sorted(want - got)
    smallest = points[missing[0]][0] == min(p[0] for p in points.values())
    _fail(
        name,
        f"{missing[0]!r} belongs on the front: no other point is at most as large and at least "
        "as accurate as it" + (" (nothing is smaller than it)" if smallest else ""),
    )


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-3)


@_needs_answer
def check_throughput(answer: dict, result) -> None:
    """Exercise 10.1: images per second of each model in a `qnb.bench` result."""
    name = "Exercise 10.1"
    batch = result.context().get("batch")
    if batch is None:
        raise ValueError("result was timed with a callable example: it records no batch size")
    if not isinstance(answer, dict):
        _fail(name, f"answer with a dict of model name -> images per second, got {answer!r}")
    models = [row.name for row in result.rows]
    missing = [m for m in models if m not in answer]
    if missing:
        _fail(name, f"give a value for every model of the result; missing {missing}")
    for model in models:
        ms, got = result.median_ms(model), answer[model]
        if not isinstance(got, int | float | np.integer | np.floating) or not math.isfinite(got):
            _fail(name, f"answer[{model!r}] must be a number, got {got!r}")
        if _close(got, batch * 1000 / ms):
            continue
        if _close(got, 1000 / ms):
            _fail(name, f"{model!r}: that is calls per second; each call runs {batch} images")
        if _close(got, batch / ms):
            _fail(name, f"{model!r}: median_ms is in milliseconds; a second is 1000 of them")
        if _close(got, ms / batch) or _close(got, ms):
            _fail(name, f"{model!r}: that is time per image (or per call); invert it")
        _fail(name, f"{model!r}: {got:.4g} is off; images/s = batch * 1000 / median ms")
    best = max(models, key=lambda m: batch * 1000 / result.median_ms(m))
    _passed(name, f"{best!r} runs {batch * 1000 / result.median_ms(best):,.0f} images/s")


@_needs_answer
def check_amdahl(function: Callable[[float, float], float]) -> None:
    """Exercise 10.2: `function(p, k)`, the whole-model speedup when a fraction p of the time
    runs k times faster and the rest not at all."""
    name = "Exercise 10.2"
    if not callable(function):
        _fail(name, f"answer with a function amdahl(p, k), got {type(function).__name__}")
    points = [(0.0, 4.0), (1.0, 4.0), (0.5, 4.0), (0.9, 4 / 3), (0.75, 10.0)]
    got = [function(p, k) for p, k in points]
    if not all(isinstance(g, int | float | np.integer | np.floating) for g in got):
        _fail(name, f"amdahl(p, k) must return a number, got {got[0]!r} for p=0, k=4")
    mistakes = {
        "speedups do not average: times add. The new time is (1 - p) + p / k": (
            lambda p, k: (1 - p) + p * k
        ),
        "the sped-up part takes p / k of the old time, not p * k": (
            lambda p, k: 1 / ((1 - p) + p * k)
        ),
        "that is the new time (as a fraction of the old); invert it": (
            lambda p, k: (1 - p) + p / k
        ),
    }
    for hint, mistake in mistakes.items():
        if all(_close(g, mistake(p, k)) for g, (p, k) in zip(got, points, strict=True)):
            _fail(name, hint)
    for g, (p, k) in zip(got, points, strict=True):
        want = 1 / ((1 - p) + p / k)
        if not _close(g, want):
            _fail(name, f"amdahl({p}, {k:.4g}) gave {g!r}; expected {want:.4g}")
    _passed(name, "with p = 0.9 and k = 4 the model gets 3.08x, not 4x")


# --- the core of a technique, written by the student: 02.3, 03.3, 05.3, 06.3, 09.3, 10.3, 15.3 --
# Each takes `seed`: the visible check uses seed 0, the hidden tests other seeds (other data, and
# where it matters other bits), so an answer tuned to the visible case does not pass.


def _as_array(got: object) -> np.ndarray:
    if isinstance(got, torch.Tensor):
        got = got.detach().numpy()
    return np.asarray(got, dtype=np.float64)


def _same_grid(got: np.ndarray, want: np.ndarray, step: np.ndarray) -> bool:
    """Equal, but for values within an ulp of a tie between two levels (x / s vs x * (1 / s)):
    at most 1% of them may be one step off."""
    if got.shape != want.shape:
        return False
    off = np.abs(got - want)
    exact = off <= 1e-4 * step + 1e-7
    one_step = np.isclose(off, step, rtol=1e-3)
    return bool(np.all(exact | one_step) and one_step.mean() <= 0.01)


def _conv_weight(seed: int) -> torch.Tensor:
    """A conv weight whose output channels have ranges 30x apart, as after BN folding."""
    gen = torch.Generator().manual_seed(seed)
    spread = torch.logspace(-1.5, 0, 8).reshape(-1, 1, 1, 1)
    return torch.randn((8, 4, 3, 3), generator=gen) * spread


@_needs_answer
def check_fake_quantize_per_channel(fn: Callable[[np.ndarray, int], np.ndarray], seed: int = 0):
    """Exercise 02.3: `fn(weight, bits)` fake-quantizes a conv weight per output channel,
    symmetric, signed, as torch's per-channel kernel with PerChannelMinMaxObserver's scales."""
    name, bits = "Exercise 02.3", (4, 3, 5)[seed % 3]
    w = _conv_weight(seed)
    scales = _observer_scales(w, bits)
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    zeros = torch.zeros(len(w), dtype=torch.int32)
    want = torch.fake_quantize_per_channel_affine(w, scales, zeros, 0, qmin, qmax).double().numpy()
    got = _as_array(fn(w.numpy().copy(), bits))
    step = scales.double().numpy().reshape(-1, 1, 1, 1) * np.ones_like(want)
    if got.shape != want.shape:
        _fail(name, f"returned shape {got.shape}, expected {want.shape}: one value per weight")
    if _same_grid(got, want, step):
        _passed(name, f"{bits}-bit per-channel fake quantization, one scale per output channel")
        return
    w64, half = w.double().numpy(), (qmax - qmin) / 2
    top = np.abs(w64).reshape(len(w64), -1).max(1).reshape(-1, 1, 1, 1)
    if np.all(got == np.rint(got)) and qmin <= got.min() and got.max() <= qmax:
        _fail(name, "those are the integer codes: return the dequantized weights, codes * scale")
    mistakes = {
        "one scale for the whole tensor is per-tensor: take max |w| over each output channel "
        "(axis 0) separately": np.clip(np.rint(w64 / (np.abs(w64).max() / half)), qmin, qmax)
        * (np.abs(w64).max() / half),
        f"you divided by qmax = {qmax}; torch's symmetric scale is max|w| / ((qmax - qmin) / 2) "
        f"= max|w| / {half}": np.clip(np.rint(w64 / (top / qmax)), qmin, qmax) * (top / qmax),
    }
    for hint, mistake in mistakes.items():
        if _same_grid(got, mistake, step) or np.allclose(got, mistake, rtol=1e-5, atol=1e-7):
            _fail(name, hint)
    if np.any(np.isclose(got, (qmax + 1) * step, rtol=1e-4)):
        _fail(
            name,
            f"clamp to [qmin, qmax] = [{qmin}, {qmax}]: the largest w / scale is {half}, which "
            f"can round to {qmax + 1}",
        )
    _fail(
        name,
        f"{int((np.abs(got - want) > 1e-4 * step + 1e-7).sum())} of {want.size} values are off: "
        "q = clamp(round(w / s), qmin, qmax), then q * s, with s = max|w| / ((qmax - qmin) / 2) "
        "per output channel",
    )


def _activation_batches(seed: int) -> list[np.ndarray]:
    """Eight batches of ReLU-like activations whose range drifts, one outlier batch among them."""
    rng = np.random.default_rng(seed + 30)
    batches = [np.maximum(rng.normal(0.5, 1 + 0.1 * k, 512), 0).astype(np.float32) - 0.05 * k
               for k in range(8)]  # fmt: skip
    batches[5] = batches[5] * 3
    return batches


@_needs_answer
def check_moving_average_minmax(
    fn: Callable[[list, float], tuple[float, float]], seed: int = 0
) -> None:
    """Exercise 03.3: `fn(batches, averaging_constant)` returns the (min, max) calibration range
    torch's MovingAverageMinMaxObserver ends with after seeing the batches in order."""
    from torch.ao.quantization.observer import MovingAverageMinMaxObserver

    name, c = "Exercise 03.3", (0.01, 0.2, 0.5)[seed % 3]
    batches = _activation_batches(seed)
    observer = MovingAverageMinMaxObserver(averaging_constant=c)
    for b in batches:
        observer(torch.from_numpy(b))
    want = (float(observer.min_val), float(observer.max_val))
    got = fn([b.copy() for b in batches], c)
    if not isinstance(got, tuple | list) or len(got) != 2:
        _fail(name, f"return a pair (min, max), got {got!r}")
    got = tuple(float(v) for v in got)

    def close(a: tuple, b: tuple) -> bool:
        pairs = zip(a, b, strict=True)
        return all(math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6) for x, y in pairs)

    if close(got, want):
        _passed(name, f"range [{want[0]:.4g}, {want[1]:.4g}] after {len(batches)} batches, c={c}")
        return

    def average(start: tuple[float, float], weight_new: float) -> tuple[float, float]:
        lo, hi = start
        for b in batches[1:]:
            lo += weight_new * (float(b.min()) - lo)
            hi += weight_new * (float(b.max()) - hi)
        return lo, hi

    first = (float(batches[0].min()), float(batches[0].max()))
    mistakes = {
        "that is the min/max over all batches: move the range only a fraction c of the way "
        "towards each new batch's min and max": (
            min(float(b.min()) for b in batches),
            max(float(b.max()) for b in batches),
        ),
        "the first batch sets the range as it is; averaging from (0, 0) pulls it towards 0": (
            _from_zero(batches, c)
        ),
        "c weighs the new batch: new = old + c * (batch - old), not old + (1 - c) * (batch - old)":
            average(first, 1 - c),
        "a plain mean of the batch minima and maxima weighs every batch alike; a moving average "
        "forgets old batches": (
            float(np.mean([b.min() for b in batches])),
            float(np.mean([b.max() for b in batches])),
        ),
        "that is the last batch's range: average it in, with weight c": (
            float(batches[-1].min()),
            float(batches[-1].max()),
        ),
    }
    for hint, mistake in mistakes.items():
        if close(got, mistake):
            _fail(name, hint)
    _fail(
        name,
        f"got ({got[0]:.4g}, {got[1]:.4g}); expected ({want[0]:.4g}, {want[1]:.4g}): the first "
        "batch sets the range, then min += c * (batch.min() - min), the same for max",
    )


def _from_zero(batches: list[np.ndarray], c: float) -> tuple[float, float]:
    lo = hi = 0.0
    for b in batches:
        lo, hi = lo + c * (float(b.min()) - lo), hi + c * (float(b.max()) - hi)
    return lo, hi


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


@_needs_answer
def check_static_ptq(fn: Callable, engine: str, seed: int = 0) -> None:
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
            _fail(name, f"return the converted model, got {type(got_model).__name__}")
        kinds = {type(m).__module__ for m in got_model.modules()}
        if any(hasattr(m, "activation_post_process") or "observer" in type(m).__module__
               for m in got_model.modules()):  # fmt: skip
            _fail(name, "the model still has observers: call torch.ao.quantization.convert on the "
                  "prepared, calibrated model")  # fmt: skip
        if not any("quantized" in k for k in kinds):
            _fail(name, "no int8 modules in the model: set model.qconfig, prepare, calibrate, "
                  "then convert")  # fmt: skip
        if got_model.training:
            _fail(name, "the model is in training mode: call model.eval() before prepare")
        with torch.inference_mode():
            got = got_model(x)
            want = _eager_ptq(reference, calib, engine)(x)
            if torch.equal(got, want):
                _passed(name, f"the same int8 model as torch.ao's prepare -> calibrate -> convert "
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
                    _fail(name, hint)
        gap = float((got - want).abs().max())
        _fail(name, f"outputs differ from torch.ao's int8 model by up to {gap:.3g}")
    finally:
        torch.backends.quantized.engine = previous


def _linear_weight(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 60)
    w = torch.randn((6, 128), generator=gen) * 0.1
    w[:, 40] += 1.5  # an outlier input column: it spoils a per-channel scale, not a group's
    return w


@_needs_answer
def check_group_quantize(fn: Callable[[np.ndarray, int, int], np.ndarray], seed: int = 0) -> None:
    """Exercise 06.3: `fn(weight, group_size, bits)` fake-quantizes a Linear weight (out, in)
    in groups of `group_size` consecutive inputs of each row, asymmetric and unsigned, with the
    min/max range of each group (stretched to include 0)."""
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    name = "Exercise 06.3"
    group_size, bits = ((32, 4), (16, 3), (64, 4))[seed % 3]
    w = _linear_weight(seed)
    qmax = 2**bits - 1
    groups = w.reshape(-1, group_size)
    observer = PerChannelMinMaxObserver(
        0, torch.quint8, torch.per_channel_affine, quant_min=0, quant_max=qmax
    )
    observer(groups)
    scale, zero_point = observer.calculate_qparams()
    want = torch.fake_quantize_per_channel_affine(groups, scale, zero_point.int(), 0, 0, qmax)
    want = want.reshape(w.shape).double().numpy()
    step = np.repeat(scale.double().numpy(), group_size).reshape(w.shape)
    got = _as_array(fn(w.numpy().copy(), group_size, bits))
    if got.shape != want.shape:
        _fail(name, f"returned shape {got.shape}, expected {want.shape}: one value per weight")
    if _same_grid(got, want, step):
        n = groups.shape[0]
        _passed(name, f"{n} groups of {group_size} at {bits} bits, one scale and zero point each")
        return

    def fake(g: np.ndarray, levels: int, symmetric: bool = False) -> np.ndarray:
        lo, hi = np.minimum(g.min(1, keepdims=True), 0), np.maximum(g.max(1, keepdims=True), 0)
        if symmetric:
            s = np.maximum(-lo, hi) / (levels / 2)
            return np.clip(np.rint(g / s), -(levels + 1) // 2, levels // 2) * s
        s = (hi - lo) / levels
        z = np.clip(np.rint(-lo / s), 0, qmax)
        return (np.clip(np.rint(g / s) + z, 0, qmax) - z) * s

    w64 = w.double().numpy()
    out, inputs = w64.shape
    columns = w64.T.reshape(-1, group_size)  # groups down the columns
    mistakes = {
        "one scale per row is per-channel: split each row into groups of group_size "
        "consecutive inputs (weight.reshape(-1, group_size))": fake(w64, qmax),
        "group consecutive inputs of a row, not weights down a column": fake(columns, qmax)
        .reshape(inputs, out).T,
        f"there are 2**bits - 1 = {qmax} steps between the lowest and the highest code, "
        f"not {qmax + 1}": fake(w64.reshape(-1, group_size), qmax + 1).reshape(w64.shape),
        "this group quantizer is asymmetric: each group gets a zero point, and codes 0..2**bits-1":
            fake(w64.reshape(-1, group_size), qmax, symmetric=True).reshape(w64.shape),
    }
    for hint, mistake in mistakes.items():
        if _same_grid(got, mistake, step) or np.allclose(got, mistake, rtol=1e-5, atol=1e-7):
            _fail(name, hint)
    if np.all(np.equal(np.mod(got, 1), 0)) and got.min() >= 0 and got.max() <= qmax:
        _fail(name, "those are the codes: return the dequantized weights, (q - z) * s")
    _fail(
        name,
        f"{int((np.abs(got - want) > 1e-4 * step + 1e-7).sum())} of {want.size} values are off: "
        "per group, s = (max - min) / (2**bits - 1), z = round(-min / s), "
        "q = clamp(round(w / s) + z, 0, 2**bits - 1), then (q - z) * s",
    )


def _allocation_problem(seed: int) -> tuple[dict, float]:
    """Five layers, each at 2, 4 or 8 bits: {layer: {bits: (cost, bytes)}} and a budget where
    dropping bits greedily by cost per byte is not optimal."""
    if seed == 0:
        sizes = {"conv1": 300, "conv2": 4600, "conv3": 9200, "fc1": 50000, "fc2": 1300}
        costs = {"conv1": (0.9, 0.06), "conv2": (0.30, 0.02), "conv3": (0.25, 0.015),
                 "fc1": (0.2, 0.004), "fc2": (0.5, 0.03)}  # fmt: skip
    else:
        rng = np.random.default_rng(seed + 90)
        names = [f"layer{i}" for i in range(5)]
        sizes = dict(zip(names, rng.integers(200, 40000, 5).tolist(), strict=True))
        costs = {n: (float(rng.uniform(0.1, 1)), float(rng.uniform(0.001, 0.05))) for n in names}
    options = {
        n: {2: (costs[n][0], sizes[n] * 2 / 8), 4: (costs[n][1], sizes[n] * 4 / 8),
            8: (0.0, float(sizes[n]))}
        for n in sizes
    }  # fmt: skip
    total8 = sum(sizes.values())
    return options, 0.4 * total8


def _best_allocation(options: dict, budget: float) -> tuple[float, dict]:
    names = list(options)
    best = (math.inf, {})
    for combo in itertools.product(*(sorted(options[n]) for n in names)):
        size = sum(options[n][b][1] for n, b in zip(names, combo, strict=True))
        cost = sum(options[n][b][0] for n, b in zip(names, combo, strict=True))
        if size <= budget and cost < best[0]:
            best = (cost, dict(zip(names, combo, strict=True)))
    return best


def _greedy_allocation(options: dict, budget: float) -> dict:
    bits = {n: max(options[n]) for n in options}
    size = lambda: sum(options[n][bits[n]][1] for n in options)  # noqa: E731
    while size() > budget:
        steps = []
        for n in options:
            lower = [b for b in options[n] if b < bits[n]]
            if lower:
                b = max(lower)
                saved = options[n][bits[n]][1] - options[n][b][1]
                steps.append(((options[n][b][0] - options[n][bits[n]][0]) / saved, n, b))
        if not steps:
            break
        _, n, b = min(steps)
        bits[n] = b
    return bits


@_needs_answer
def check_allocation(fn: Callable[[dict, float], dict], seed: int = 0) -> None:
    """Exercise 09.3: `fn(options, budget)` picks bits per layer ({layer: {bits: (cost, bytes)}})
    with the smallest total cost whose bytes fit the budget: the exact optimum, not a heuristic."""
    name = "Exercise 09.3"
    options, budget = _allocation_problem(seed)
    got = fn(copy.deepcopy(options), budget)
    if not isinstance(got, dict):
        _fail(name, f"answer with a dict {{layer: bits}}, got {type(got).__name__}")
    missing = [n for n in options if n not in got]
    if missing:
        _fail(name, f"give every layer its bits; missing {missing}")
    for n, b in got.items():
        if n not in options or b not in options[n]:
            _fail(name, f"{n!r}: {b!r} bits is not one of its options {sorted(options.get(n, {}))}")
    size = sum(options[n][got[n]][1] for n in options)
    cost = sum(options[n][got[n]][0] for n in options)
    if size > budget + 1e-9:
        _fail(name, f"{size:,.0f} bytes is over the budget of {budget:,.0f}: the bytes must fit")
    best, best_bits = _best_allocation(options, budget)
    if cost <= best + 1e-12:
        _passed(name, f"total cost {cost:.4g} in {size:,.0f} of {budget:,.0f} bytes: the optimum")
        return
    if got == _greedy_allocation(options, budget):
        _fail(
            name,
            f"that is the greedy allocation (cost {cost:.4g}): dropping bits where they cost least "
            f"per byte saved is not optimal here; the best one costs {best:.4g}. Search the "
            "combinations (a knapsack: dynamic programming over bytes, or all 3**layers)",
        )
    _fail(
        name,
        f"cost {cost:.4g} fits the budget, but another allocation costs {best:.4g}: search every "
        "combination of bits (or a knapsack over bytes)",
    )


def _timings(seed: int) -> tuple[list[float], list[float]]:
    """Per-round times (ms) of fp32 and int8 timed in the same rounds: the machine's load moves
    both, so the ratios are tighter than either list."""
    rng = np.random.default_rng(seed + 100)
    load = 1 + rng.gamma(2, 0.3, 15)
    fp32 = 10 * load * rng.normal(1, 0.02, 15)
    int8 = 4 * load * rng.normal(1, 0.05, 15)
    int8[3] *= 2.5  # one slow round
    return fp32.round(4).tolist(), int8.round(4).tolist()


@_needs_answer
def check_paired_speedup(fn: Callable[[list, list], tuple], seed: int = 0) -> None:
    """Exercise 10.3: `fn(fp32_ms, int8_ms)` returns (median, p25, p75) of the paired ratios
    fp32 / int8, one per round, as `qnb.bench` reports every speedup."""
    name = "Exercise 10.3"
    fp32, int8 = _timings(seed)
    got = fn(list(fp32), list(int8))
    if not isinstance(got, tuple | list) or len(got) != 3:
        _fail(name, f"return three numbers (median, p25, p75), got {got!r}")
    got = [float(g) for g in got]
    a, b = np.asarray(fp32), np.asarray(int8)
    ratios = a / b
    median = float(np.median(ratios))
    ordered = np.sort(ratios)
    n = len(ratios)

    def between(value: float, q: float) -> bool:  # any of the usual quantile definitions
        lo, hi = ordered[int(math.floor(q * (n - 1)))], ordered[int(math.ceil(q * (n - 1)))]
        return lo - 1e-9 <= value <= hi + 1e-9

    right_median = math.isclose(got[0], median, rel_tol=1e-6)
    if right_median and between(got[1], 0.25) and between(got[2], 0.75):
        _passed(name, f"{median:.2f}x (IQR {got[1]:.2f}-{got[2]:.2f}) over {n} paired rounds")
        return
    if math.isclose(got[0], 1 / median, rel_tol=1e-6) or math.isclose(
        got[0], float(np.median(b / a)), rel_tol=1e-6
    ):
        _fail(name, "that is int8 / fp32: a speedup is fp32 time / int8 time (> 1: int8 faster)")
    if math.isclose(got[0], float(np.median(a) / np.median(b)), rel_tol=1e-6):
        _fail(name, "that is the ratio of the medians; pair the rounds: median(fp32[i] / int8[i])")
    if math.isclose(got[0], float(np.mean(ratios)), rel_tol=1e-6):
        _fail(name, "that is the mean of the ratios: one slow round pulls it; take the median")
    if math.isclose(got[0], float(np.median(np.sort(a) / np.sort(b))), rel_tol=1e-6):
        _fail(name, "sorting each list breaks the pairs: divide round i by round i as measured")
    if right_median:
        _fail(name, "the median is right; p25 and p75 are the 25th and 75th percentiles of the "
              "same ratios (np.quantile(ratios, [0.25, 0.75]))")  # fmt: skip
    _fail(name, f"median {got[0]:.4g} is off; expected the median of fp32[i] / int8[i]")


@_needs_answer
def check_grid(fn: Callable[[dict], list], seed: int = 0) -> None:
    """Exercise 15.3: `fn(grid)` expands {name: [values]} into one dict of parameters per run:
    every combination, the first parameter varying slowest, as `qnb sweep` plans them."""
    name = "Exercise 15.3"
    grids = [
        {"model_name": ["plain_cnn", "depthwise_cnn"], "bits": [2, 4, 8], "seed": [0, 1]},
        {"engine": ["x86", "qnnpack"], "calib_images": [64, 256, 1024]},
        {"a": [1], "b": ["x", "y"], "c": [0.5, 1.5], "d": [True, False]},
    ]
    grid = grids[seed % 3]
    want = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    got = fn(copy.deepcopy(grid))
    if not isinstance(got, list | tuple) or not all(isinstance(g, dict) for g in got):
        _fail(name, "return a list of dicts, one {name: value} per run")
    got = list(got)
    if got == want:
        _passed(name, f"{len(want)} runs: " + " x ".join(str(len(v)) for v in grid.values()))
        return
    if len(got) == min(len(v) for v in grid.values()):
        _fail(name, "that pairs the values up (zip); a grid runs every combination "
              "(itertools.product)")  # fmt: skip
    if len(got) != len(want):
        sizes = " x ".join(str(len(v)) for v in grid.values())
        _fail(name, f"{len(got)} runs; the grid has {sizes} = {len(want)} combinations")
    key = lambda d: repr(sorted(d.items()))  # noqa: E731
    if sorted(map(key, got)) == sorted(map(key, want)):
        _fail(name, "right runs, wrong order: the first parameter varies slowest, the last "
              "fastest (itertools.product over the values in the grid's order)")  # fmt: skip
    _fail(name, "some runs are not combinations of the grid's values")



def _requantize_reference(acc: np.ndarray, multiplier: float, zero_point: int) -> np.ndarray:
    """float32 product, round half to even, then the zero point, then clamp to uint8."""
    v = acc.astype(np.float32) * np.float32(multiplier)
    return np.clip(np.rint(v).astype(np.int64) + zero_point, 0, 255)


@_needs_answer
def check_requantize(fn: Callable[[np.ndarray, float, int], np.ndarray]) -> None:
    """Exercise 04.1: `fn(acc, multiplier, zero_point)` turns int32 accumulators into uint8 codes
    as the x86 kernels do."""
    name, multiplier, zp = "Exercise 04.1", 0.25, 3
    ties = np.arange(-38, 42, 4, dtype=np.int32)  # acc * 0.25 = k + 0.5 exactly
    rng = np.random.default_rng(4)
    acc = np.concatenate([ties, [-5000, 5000, 0], rng.integers(-600, 600, 64)]).astype(np.int32)
    want = _requantize_reference(acc, multiplier, zp)
    got = np.asarray(fn(acc.copy(), multiplier, zp))
    if got.shape != want.shape:
        _fail(name, f"returned shape {got.shape}, expected {want.shape} (one code per acc)")
    if np.array_equal(got, want):
        _passed(name, "round(acc * M) + zero point, clamped to 0..255, ties to even")
        return
    a, m = acc.astype(np.float64), multiplier
    mistakes = {
        "did you divide by the multiplier? M = s_x * s_w / s_y already divides by the "
        "output scale: multiply": np.clip(np.rint(a / m) + zp, 0, 255),
        "codes fall outside 0..255: clamp after adding the zero point": np.rint(a * m) + zp,
        "the zero point is missing: the real 0 sits at code zero_point": np.clip(
            np.rint(a * m), 0, 255
        ),
        "the zero point goes in after rounding (round(v) + z, not round(v + z)): with an odd "
        "zero point the ties come out differently": np.clip(np.rint(a * m + zp), 0, 255),
        "only the ties differ: the kernels round half to even (np.rint), not half up "
        "(floor(v + 0.5))": np.clip(np.floor(a * m + 0.5) + zp, 0, 255),
        "astype(int) truncates toward zero: round first": np.clip(np.trunc(a * m) + zp, 0, 255),
    }
    for hint, mistake in mistakes.items():
        if np.array_equal(got, mistake):
            _fail(name, hint)
    wrong = got != want
    _fail(
        name,
        f"{int(wrong.sum())} of {acc.size} codes differ, e.g. acc = {int(acc[wrong][0])}: got "
        f"{got[wrong][0]}, expected {int(want[wrong][0])}",
    )


@_needs_answer
def check_cross_term(fn: Callable[[np.ndarray, np.ndarray, int], np.ndarray]) -> None:
    """Exercise 04.2: `fn(x_q, w_q, z_x)`, the accumulator sum_k (x_q - z_x) w_q from the raw
    product of codes and the zero-point cross term."""
    name, z_x = "Exercise 04.2", 131
    rng = np.random.default_rng(5)
    x_q = rng.integers(150, 256, (6, 40)).astype(np.uint8)  # bright inputs: int16 overflows
    w_q = rng.integers(60, 128, (5, 40)).astype(np.int8)
    x64, w64 = x_q.astype(np.int64), w_q.astype(np.int64)
    want = (x64 - z_x) @ w64.T
    got = np.asarray(fn(x_q.copy(), w_q.copy(), z_x))
    if got.shape != want.shape:
        _fail(name, f"returned shape {got.shape}, expected {want.shape} (rows of x, rows of w)")
    if np.array_equal(got.astype(np.int64), want):
        if got.dtype.kind not in "iu" or (got.dtype.itemsize < 4):
            _fail(name, f"right values but dtype {got.dtype}: return the int32 accumulator")
        _passed(name, "x_q @ w_q.T - z_x * w_q.sum(axis=1): the column offsets, precomputed")
        return
    raw = x64 @ w64.T
    with np.errstate(over="ignore"):  # what numpy does with the codes as given: it wraps
        wrapped = [
            (x_q @ w_q.T - z_x * w_q.sum(axis=1)).astype(np.int64),  # uint8 @ int8 is int16
            ((x_q - np.uint8(z_x)) @ w_q.T).astype(np.int64),  # uint8 - z_x stays uint8
        ]
    mistakes = {
        "the values wrapped around: uint8 times int8 in numpy is int16 (at most 32,767); "
        "cast both to np.int32 before multiplying": wrapped[0],
        "the values wrapped around: x_q - z_x on uint8 codes wraps below 0 (and uint8 @ int8 "
        "is int16); cast to np.int32 first": wrapped[1],
        "the cross term is subtracted: sum (x - z_x) w = sum x w - z_x * sum w": raw
        + z_x * w64.sum(1),
        "the zero point is not subtracted at all: the raw product counts z_x * sum_k w_q too "
        "much": raw,
        "z_x multiplies the sum of the *weights* of each output (w_q.sum(axis=1)), not the sum "
        "of the inputs": raw - z_x * x64.sum(1, keepdims=True),
        "sum the weights over the input dimension (axis=1), one offset per output channel": raw
        - z_x * w64.sum(),
    }
    for hint, mistake in mistakes.items():
        if mistake.shape == got.shape and np.array_equal(got.astype(np.int64), mistake):
            _fail(name, hint)
    wrong = got != want
    _fail(
        name,
        f"{int(wrong.sum())} of {want.size} accumulators differ; expected "
        "x_q @ w_q.T - z_x * w_q.sum(axis=1), in int32",
    )


@_needs_answer
def check_bn_fold(fn: Callable[..., tuple[np.ndarray, np.ndarray]]) -> None:
    """Exercise 04.3: `fn(weight, bias, gamma, beta, mean, var, eps)` folds batch norm into the
    conv before it, returning (folded weight, folded bias)."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    name, eps = "Exercise 04.3", 1e-3
    rng = np.random.default_rng(6)
    shape = (4, 3, 4, 4)  # last dim = out channels: a wrong-axis broadcast would run silently
    w, b = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    gamma = rng.uniform(0.5, 2, 4).astype(np.float32)
    beta = rng.standard_normal(4).astype(np.float32)
    mean = rng.standard_normal(4).astype(np.float32)
    var = rng.uniform(0.001, 0.01, 4).astype(np.float32)  # small, so eps matters
    t = [torch.from_numpy(a) for a in (w, b, mean, var)]
    want_w, want_b = fuse_conv_bn_weights(
        t[0], t[1], t[2], t[3], eps, torch.from_numpy(gamma), torch.from_numpy(beta)
    )
    want_w, want_b = want_w.detach().numpy(), want_b.detach().numpy()
    answer = fn(w.copy(), b.copy(), gamma.copy(), beta.copy(), mean.copy(), var.copy(), eps)
    if not isinstance(answer, tuple | list) or len(answer) != 2:
        _fail(name, "return a pair (folded weight, folded bias)")
    got_w, got_b = (np.asarray(a, dtype=np.float64) for a in answer)
    if got_w.shape != shape or got_b.shape != (4,):
        _fail(name, f"shapes {got_w.shape}, {got_b.shape}; expected {shape} and (4,)")
    close = lambda a, b: np.allclose(a, b, rtol=1e-4, atol=1e-6)  # noqa: E731
    ok_w, ok_b = close(got_w, want_w), close(got_b, want_b)
    if ok_w and ok_b:
        _passed(name, "W' = W * gamma / sigma, b' = (b - mean) * gamma / sigma + beta")
        return
    sigma, per = np.sqrt(var + eps), (-1, 1, 1, 1)
    if not ok_w:
        if close(got_w, w * (gamma / (var + eps)).reshape(per)):
            _fail(name, "divide by the standard deviation sqrt(var + eps), not the variance")
        if close(got_w, w * (gamma / np.sqrt(var)).reshape(per)):
            _fail(name, "eps is missing: sigma = sqrt(var + eps)")
        if close(got_w, w * (gamma / sigma)):
            _fail(
                name,
                "the scale went along the last axis: reshape gamma / sigma to (-1, 1, 1, 1) so "
                "that each output channel (axis 0) gets its own",
            )
        _fail(name, "the folded weight is off: W' = W * (gamma / sqrt(var + eps)) per out channel")
    if close(got_b, (b - mean) * gamma / sigma):
        _fail(name, "beta is missing: b' = (b - mean) * gamma / sigma + beta")
    if close(got_b, b * gamma / sigma + beta):
        _fail(name, "subtract the running mean from the bias before scaling")
    if close(got_b, (b - mean) + beta) or close(got_b, b - mean * gamma / sigma + beta):
        _fail(name, "scale the whole (b - mean) by gamma / sigma")
    _fail(name, "the folded bias is off: b' = (b - mean) * gamma / sqrt(var + eps) + beta")


# --- notebook 11 (other_runtimes): ONNX's QuantizeLinear, the QDQ model's input qparams -------
# (appended by the notebook 11 author; the checks run ONNX Runtime / read the ONNX file
# themselves, through qnb.runtimes, imported inside each check)


def _tie_values(scale: np.float32, zero_point: int) -> np.ndarray:
    """Values around exact ties of x / scale (k + 0.5), values that saturate, and random ones."""
    rng = np.random.default_rng(11)
    k = np.arange(-zero_point - 3, 258 - zero_point, dtype=np.float32)
    ties = (k + np.float32(0.5)) * scale
    near = np.concatenate([np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, -np.inf)])
    wide = rng.uniform(-400, 400, 2000).astype(np.float32) * scale
    return np.concatenate([ties, near.astype(np.float32), wide]).astype(np.float32)


@_needs_answer
def check_quantize_linear(fn: Callable[[np.ndarray, float, int], np.ndarray]) -> None:
    """Exercise 11.1: ONNX QuantizeLinear to uint8 in numpy: round(x / scale) + zp, saturated."""
    from qnb import runtimes

    name = "Exercise 11.1"
    for scale, zero_point in ((0.0213, 37), (0.00214854861, 0), (0.1, 128)):
        s = np.float32(scale)
        x = _tie_values(s, zero_point)
        want = runtimes.quantize_linear(x, float(s), zero_point).astype(np.int64)
        got = np.asarray(fn(x.copy(), float(s), zero_point))
        if got.shape != x.shape:
            _fail(name, f"return one code per value: shape {got.shape}, expected {x.shape}")
        got = got.astype(np.int64)
        if np.array_equal(got, want):
            continue
        reciprocal = np.clip(np.rint(x * (np.float32(1) / s)) + zero_point, 0, 255)
        half_up = np.clip(np.floor(x / s + np.float32(0.5)) + zero_point, 0, 255)
        zp_first = np.clip(np.rint(x / s + zero_point), 0, 255)
        unclipped = np.rint(x / s) + zero_point
        if np.array_equal(got, reciprocal):
            _fail(name, "that is torch's rule, x * (1 / scale); ONNX divides: x / scale")
        if np.array_equal(got, half_up):
            _fail(name, "round half to even (np.rint), not half up: 2.5 -> 2, 3.5 -> 4")
        if np.array_equal(got, zp_first) and zero_point:
            _fail(name, "add the zero point after rounding: round(x / scale) + zero_point")
        if np.array_equal(got[(unclipped >= 0) & (unclipped <= 255)],
                          want[(unclipped >= 0) & (unclipped <= 255)]):
            _fail(name, "saturate to 0..255 (np.clip) before casting to uint8")
        bad = int(np.argmax(got != want))
        _fail(name, f"quantize_linear({x[bad]!r}, {scale}, {zero_point}) gave {got[bad]}, "
                    f"QuantizeLinear gives {want[bad]}")
    _passed(name, "codes equal ONNX Runtime's QuantizeLinear, ties included")


@_needs_answer
def check_input_qparams(answer: tuple, path) -> None:
    """Exercise 11.2: the scale and zero point of the QDQ model's input QuantizeLinear."""
    import onnx
    from onnx import numpy_helper

    name = "Exercise 11.2"
    if not isinstance(answer, tuple | list) or len(answer) != 2:
        _fail(name, "set ex_input_qparams = (scale, zero_point), a pair")
    scale, zero_point = answer
    graph = onnx.load(str(path)).graph
    inputs = {i.name for i in graph.input} - {i.name for i in graph.initializer}
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    node = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] in inputs)
    want_scale, want_zp = float(consts[node.input[1]]), int(consts[node.input[2]])
    others = [n for n in graph.node if n.op_type == "QuantizeLinear" and n is not node]
    if isinstance(scale, bool) or not isinstance(scale, float | np.floating | int):
        _fail(name, f"the scale must be a number, got {type(scale).__name__}")
    if not isinstance(zero_point, int | np.integer) or isinstance(zero_point, bool):
        _fail(name, f"the zero point must be an int, got {type(zero_point).__name__}")
    if _close(float(scale), want_scale) and int(zero_point) == want_zp:
        _passed(name, f"the input is quantized at scale {want_scale:.6g}, zero point {want_zp}")
        return
    for other in others:
        if _close(float(scale), float(consts[other.input[1]])):
            _fail(name, f"that is the scale of {other.input[0]!r}, not of the model's input")
    if _close(float(scale), 1 / want_scale):
        _fail(name, "that is 1 / scale: QuantizeLinear's second input is the scale itself")
    if not _close(float(scale), want_scale):
        _fail(name, "the scale is off: read the second input of the input's QuantizeLinear")
    _fail(name, f"the zero point is off: the third input of that node holds it, not {zero_point}")


# --- notebook 07 (advanced_ptq) ---------------------------------------------------------------


def _cle_pair(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv pair whose channels have very different ranges (and signs that differ)."""
    gen = torch.Generator().manual_seed(seed)
    spread = torch.logspace(-1, 1, 6).reshape(6, 1, 1, 1)
    w1 = torch.randn(6, 3, 3, 3, generator=gen) * spread
    w2 = torch.randn(4, 6, 1, 1, generator=gen) * torch.logspace(1, -1, 6).reshape(1, 6, 1, 1)
    return w1, w2


@_needs_answer
def check_cle_scales(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Exercise 07.1: CLE scales s_i = sqrt(r1_i * r2_i) / r2_i for a dense pair."""
    name = "Exercise 07.1"
    w1, w2 = _cle_pair(0)
    r1 = w1.abs().flatten(1).amax(dim=1)
    r2 = w2.abs().transpose(0, 1).flatten(1).amax(dim=1)
    want = torch.sqrt(r1 * r2) / r2
    got = fn(w1.clone(), w2.clone())
    if not isinstance(got, torch.Tensor):
        _fail(name, f"return a tensor of {len(want)} scales, got {type(got).__name__}")
    got = got.detach().flatten().double()
    if got.numel() != len(want):
        _fail(name, f"one scale per channel between the layers ({len(want)}), got {got.numel()}: "
                    "w1's ranges are over its output channels (axis 0), w2's over its input "
                    "channels (axis 1)")
    want = want.double()
    if torch.allclose(got, want, rtol=1e-4):
        _passed(name, f"{len(want)} scales from {want.min():.3g} to {want.max():.3g}; both layers'"
                      " channels then have the range sqrt(r1 * r2)")
        return
    if torch.allclose(got, 1 / want, rtol=1e-4):
        _fail(name, "those are 1 / s: s_i = sqrt(r1_i * r2_i) / r2_i divides by the second "
                    "layer's range")
    if torch.allclose(got, want.square(), rtol=1e-4):
        _fail(name, "those are s squared (r1 / r2): take the square root")
    minmax1 = w1.flatten(1).amax(dim=1) - w1.flatten(1).amin(dim=1)
    minmax2 = (w2.transpose(0, 1).flatten(1).amax(dim=1)
               - w2.transpose(0, 1).flatten(1).amin(dim=1))
    if torch.allclose(got, (torch.sqrt(minmax1 * minmax2) / minmax2).double(), rtol=1e-4):
        _fail(name, "those use max - min as the range; for symmetric weights use max|w|")
    bad = int(torch.argmax((got - want).abs()))
    _fail(name, f"scale {bad} is {float(got[bad]):.4g}, expected {float(want[bad]):.4g} "
                f"(r1 = {float(r1[bad]):.4g}, r2 = {float(r2[bad]):.4g})")


@_needs_answer
def check_flip_count(
    flips: int,
    weight: torch.Tensor,
    rounded: torch.Tensor,
    scale: torch.Tensor,
    qmin: int,
    qmax: int,
) -> None:
    """Exercise 07.2: the weights AdaRound rounds differently from round-to-nearest."""
    name = "Exercise 07.2"
    if isinstance(flips, bool) or not isinstance(flips, int | np.integer):
        _fail(name, f"ex_flips must be an int (a count of weights), got {type(flips).__name__}")
    s = scale.reshape(-1, *[1] * (weight.dim() - 1))
    codes = torch.round(rounded / s)
    nearest = torch.clamp(torch.round(weight / s), qmin, qmax)
    want = int((codes != nearest).sum())
    if int(flips) == want:
        _passed(name, f"{want} of {weight.numel()} weights ({want / weight.numel():.1%}) are "
                      "rounded away from nearest")
        return
    if int(flips) == weight.numel() - want:
        _fail(name, "that counts the weights AdaRound rounds to nearest; count the others")
    unclamped = int((codes != torch.round(weight / s)).sum())
    if int(flips) == unclamped and unclamped != want:
        _fail(name, "clamp round(w / s) to qmin..qmax first: a weight beyond the grid's end is "
                    "not a flip")
    if int(flips) == int((rounded != weight).sum()):
        _fail(name, "that counts weights that changed at all; compare the codes "
                    "round(rounded / s) with round-to-nearest's, per channel")
    _fail(name, f"{flips} is not the count: compare round(ex_rounded / s) with "
                "clamp(round(ex_weight / s), qmin, qmax), s the per-channel scale reshaped to "
                "broadcast over each output channel's weights")


@_needs_answer
def check_bits_per_weight(bpw: float, bits: int, group_size: int, scale_bits: int) -> None:
    """Exercise 12.1: the storage cost of `bits`-wide weights in groups with one scale each."""
    name = "Exercise 12.1"
    if isinstance(bpw, bool) or not isinstance(bpw, int | float | np.number):
        _fail(name, f"ex_bpw must be a number of bits, got {type(bpw).__name__}")
    want = bits + scale_bits / group_size
    got = float(bpw)
    if math.isclose(got, want, rel_tol=1e-6):
        _passed(name, f"{want:g} bits per weight: the scales add {scale_bits / group_size:g} "
                      f"bits to each {bits}-bit weight ({want / 32:.1%} of float32's 32)")
        return
    if math.isclose(got, bits):
        _fail(name, "that leaves the scales out: each group of weights also stores its scale")
    if math.isclose(got, bits + scale_bits):
        _fail(name, "one scale is shared by the whole group: divide its bits by the group size")
    if math.isclose(got, bits + 32 / group_size):
        _fail(name, f"the scale here is {scale_bits} bits (float16), not 32")
    if math.isclose(got, bits + 1 / group_size):
        _fail(name, f"a scale costs {scale_bits} bits, not 1")
    _fail(name, f"{got:g} is not it: add the bits of the weight and its share of the group's "
                "scale")


def _gptq_problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    """A small layer (4 x 6, float64), correlated inputs, the Cholesky factor of H^-1, scales."""
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(200, 6, generator=gen, dtype=torch.float64) @ (torch.eye(6) + 0.8 * mix)
    w = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    h = 2 * x.T @ x / len(x)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    scale = w.abs().amax(dim=1) / 3  # 3-bit symmetric grid: codes -4..3
    return w, u, scale, -4, 3


def _gptq_step(w, u, scale, qmin, qmax) -> torch.Tensor:
    q = torch.clamp(torch.round(w[:, 0] / scale), qmin, qmax) * scale
    out = w.clone()
    out[:, 0] = q
    out[:, 1:] -= ((w[:, 0] - q) / u[0, 0]).unsqueeze(1) * u[0, 1:]
    return out


@_needs_answer
def check_gptq_step(fn: Callable[..., torch.Tensor]) -> None:
    """Exercise 12.2: GPTQ's step for one column: quantize it, move the others to compensate."""
    name = "Exercise 12.2"
    w, u, scale, qmin, qmax = _gptq_problem(0)
    want = _gptq_step(w, u, scale, qmin, qmax)
    got = fn(w.clone(), u.clone(), scale.clone(), qmin, qmax)
    if not isinstance(got, torch.Tensor) or got.shape != w.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        _fail(name, f"return the whole weight (a tensor of shape {tuple(w.shape)}), got {shape}")
    got = got.detach().double()
    nearest = torch.clamp(torch.round(w[:, 0] / scale), qmin, qmax) * scale
    if not torch.allclose(got[:, 0], nearest, atol=1e-9):
        _fail(name, "column 0 must be on the grid: clamp(round(w / scale), qmin, qmax) * scale")
    if torch.allclose(got, want, atol=1e-9):
        _passed(name, "column 0 rounded, columns 1-5 moved by -(w0 - q0) / U[0, 0] * U[0, 1:]: "
                      "the least-squares best for the layer's output given column 0")
        return
    if torch.allclose(got[:, 1:], w[:, 1:], atol=1e-12):
        _fail(name, "the other columns did not move: that is round to nearest; GPTQ subtracts "
                    "column 0's error, scaled by U[0, 1:] / U[0, 0], from them")
    moved = got[:, 1:] - w[:, 1:]
    if torch.allclose(moved, -(want[:, 1:] - w[:, 1:]), atol=1e-9):
        _fail(name, "the columns moved the wrong way: the error is w0 - q0, and the update "
                    "subtracts error * U[0, 1:] / U[0, 0]")
    err = (w[:, 0] - nearest).unsqueeze(1)
    if torch.allclose(moved, -err * u[0, 1:], atol=1e-9):
        _fail(name, "divide the error by U[0, 0] (the diagonal of the Cholesky factor) first")
    bad = int(torch.argmax((got - want).abs().amax(dim=0)))
    _fail(name, f"column {bad} differs from GPTQ's update (largest difference "
                f"{float((got - want)[:, bad].abs().max()):.3g})")


def _awq_scales(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """AWQ's scales (llm-awq's `get_act_scale` and `_search_module_scale`), in float64."""
    s = x.double().abs().reshape(-1, x.shape[-1]).mean(dim=0).pow(alpha).clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


def _normalized(s: torch.Tensor) -> torch.Tensor:
    return s / (s.max() * s.min()).sqrt()


@_needs_answer
def check_awq_scales(fn: Callable[..., torch.Tensor]) -> None:
    """Exercise 12.3: AWQ's per-channel scales: each input channel's mean magnitude to the power
    alpha, normalized by sqrt(max * min)."""
    name = "Exercise 12.3"
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(4, 16, 8, generator=gen) * torch.linspace(0.2, 3.0, 8)  # (batch, tokens, ch)
    x[0, 3, 2] = 40.0  # one token's spike in channel 2: a large maximum, an ordinary mean
    flat = x.double().abs().reshape(-1, 8)
    for alpha in (0.5, 0.25):
        want = _awq_scales(x, alpha)
        got = fn(x.clone(), alpha)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            _fail(name, f"return one scale per input channel (a tensor of shape (8,) for inputs "
                        f"of shape {tuple(x.shape)}), got {shape}")
        got = got.detach().double()
        if torch.allclose(got, want, rtol=1e-5):
            continue
        if torch.allclose(got, _normalized(flat.amax(dim=0).pow(alpha)), rtol=1e-5):
            _fail(name, "that is the maximum of each channel (SmoothQuant's statistic); AWQ's "
                        "scale uses the mean magnitude of each input channel over all tokens "
                        "(mean of |x|): a channel large on one token only is not salient")
        if torch.allclose(got, flat.mean(dim=0).pow(alpha), rtol=1e-5):
            _fail(name, "normalize the scales: divide them by sqrt(max(s) * min(s)), as AWQ "
                        "does, so that they straddle 1")
        signed = x.double().reshape(-1, 8).mean(dim=0)
        if torch.allclose(got, _normalized(signed.abs().pow(alpha)), rtol=1e-5):
            _fail(name, "take the magnitude first: the mean of |x|, not |mean of x| (positive "
                        "and negative values cancel)")
        for other in (1.0, 0.5, 0.25, 0.0):
            if other != alpha and torch.allclose(got, _awq_scales(x, other), rtol=1e-5):
                _fail(name, f"use the `alpha` passed in ({alpha}), got the scales of alpha "
                            f"{other}")
        bad = int(torch.argmax((got - want).abs()))
        _fail(name, f"channel {bad}: {float(got[bad]):.4g}, expected {float(want[bad]):.4g} "
                    "(mean |x| over every token of the channel, to the power alpha, then "
                    "divided by sqrt(max * min) of all channels)")
    top = _awq_scales(x, 0.5)
    maxed = _normalized(flat.amax(dim=0).pow(0.5))
    _passed(name, f"s_j = mean|x_j|^alpha / sqrt(max s * min s): channel 2 (one token at 40) "
                  f"gets {float(top[2]):.2f}, where its maximum would have given "
                  f"{float(maxed[2]):.2f}")


# ---- notebook 13 (number_formats): the E4M3 encoder and the MX block scale ----


def _e4m3_inputs() -> dict[str, np.ndarray]:
    """Finite float32 test values for an E4M3 encoder, by class."""
    grid = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float().numpy()
    grid = np.unique(grid[np.isfinite(grid) & (grid >= 0)]).astype(np.float64)
    rng = np.random.default_rng(13)
    normal = np.exp2(rng.uniform(-6, np.log2(448), 300))
    ties = (grid[:-1] + grid[1:]) / 2  # exactly halfway between two neighbouring values
    classes = {
        "normal": np.concatenate([normal, grid[grid >= 2.0**-6]]),
        "tie": ties,  # subnormal ties included
        "subnormal": np.concatenate([grid[grid < 2.0**-6], np.exp2(rng.uniform(-12, -6, 100))]),
        "overflow": np.array([449.0, 464.0, 479.0, 500.0, 1000.0, 65504.0, 1e30]),
    }
    return {k: np.concatenate([v, -v]).astype(np.float32) for k, v in classes.items()}


@_needs_answer
def check_e4m3_encoder(fn: Callable[[np.ndarray], np.ndarray]) -> None:
    """Exercise 13.1: `fn(x)` returns the OCP FP8 E4M3 (e4m3fn) codes (uint8) of float32 `x`:
    round to nearest with ties to even, subnormals, saturation at +-448."""
    name = "Exercise 13.1"
    inputs = _e4m3_inputs()
    wrong = {}
    for cls, x in inputs.items():
        want = torch.from_numpy(x).clamp(-448, 448).to(torch.float8_e4m3fn).view(torch.uint8)
        try:
            got = np.asarray(fn(x.copy()))
        except NotImplementedError:
            raise
        except Exception as exc:  # show the learner what broke, on which inputs
            _fail(name, f"your encoder raised {type(exc).__name__} ({exc}) on the {cls} inputs")
        if got.shape != x.shape or got.dtype.kind not in "iu":
            _fail(name, f"return one integer code per input (shape {x.shape}, uint8), got "
                        f"shape {got.shape}, dtype {got.dtype}")
        if got.min() < 0 or got.max() > 255:
            _fail(name, f"codes are 8 bits (0..255), got {int(got.min())}..{int(got.max())}")
        bad = np.nonzero(got.astype(np.int64) != want.numpy())[0]
        if bad.size:
            wrong[cls] = (x, got.astype(np.uint8), want, bad)
    if not wrong:
        n = sum(len(x) for x in inputs.values())
        _passed(name, f"{n} values bit-exact with torch's float8_e4m3fn cast: normals, ties to "
                      "even, subnormals and saturation")
        return
    if "tie" in wrong and set(wrong) <= {"tie", "overflow"}:
        x, got, _, bad = wrong["tie"]
        value = torch.from_numpy(got[bad]).view(torch.float8_e4m3fn).float().numpy()
        if np.all(np.abs(value) > np.abs(x[bad])):
            _fail(name, f"round half up: {x[bad[0]]:g} lies exactly halfway between two E4M3 "
                        "values and goes to the one whose last mantissa bit is 0 (ties to even, "
                        "np.rint), not to the larger one (np.floor(v + 0.5))")
    if set(wrong) == {"overflow"}:
        x, got, want, bad = wrong["overflow"]
        _fail(name, f"no saturation: {x[bad[0]]:g} must become {'-' if x[bad[0]] < 0 else ''}448 "
                    f"(code {int(want[bad[0]])}), E4M3's largest value; you gave code "
                    f"{int(got[bad[0]])} (0x7F/0xFF are NaN, and an exponent past 15 wraps): "
                    "clamp to +-448 before or after rounding")
    small = [(x[bad], got[bad], want[bad]) for x, got, want, bad in wrong.values()]
    if all(np.all(np.abs(xs) < 2.0**-6) for xs, _, _ in small):  # only below the normals
        x, got, want = (np.concatenate(v) for v in zip(*small, strict=True))
        bad = [0]
        _fail(name, f"subnormals: {x[bad[0]]:g} is below the smallest normal 2^-6; its exponent "
                    "field is 0 and its step 2^-9 (value = mantissa * 2^-9), got code "
                    f"{int(got[bad[0]])}, expected {int(want[bad[0]])}")
    cls = next(iter(wrong))
    x, got, want, bad = wrong[cls]
    _fail(name, f"{sum(len(w[3]) for w in wrong.values())} codes are wrong ({', '.join(wrong)} "
                f"inputs), e.g. {x[bad[0]]:g} -> {int(got[bad[0]])}, expected "
                f"{int(want[bad[0]])}: sign bit 7, exponent bits 6-3 (bias 7), mantissa bits "
                "2-0; round the mantissa to nearest, ties to even")


def _mx_blocks() -> np.ndarray:
    rng = np.random.default_rng(131)
    blocks = rng.standard_normal((12, 32)) * np.exp2(rng.integers(-20, 20, (12, 1)))
    blocks[0, 7] = 4.0  # amax exactly a power of two
    blocks[1, 3] = -7.99  # amax just below one: its largest element clips to 6
    blocks[2, 0] = 6.0  # E2M1's largest value
    blocks[3] = np.linspace(-0.3, 0.3, 32)
    return blocks.astype(np.float32)


@_needs_answer
def check_mx_block_scale(fn: Callable[[np.ndarray], np.ndarray]) -> None:
    """Exercise 13.2: `fn(blocks)` returns the MXFP4 shared scale X of each block of 32 (one
    float per row of `blocks`): X = 2^(floor(log2(amax)) - 2), a power of two (E8M0), with 2 the
    exponent of E2M1's largest value 6 = 1.5 * 2^2 (OCP MX v1.0, section 6.3)."""
    name = "Exercise 13.2"
    blocks = _mx_blocks()
    amax = np.abs(blocks.astype(np.float64)).max(axis=1)
    exponent = np.array([math.frexp(a)[1] - 1 for a in amax])  # floor(log2 amax), exactly
    want = np.exp2(exponent - 2)
    got = _as_array(fn(blocks.copy())).reshape(-1)
    if got.shape != want.shape:
        _fail(name, f"return one scale per block ({len(want)} for {blocks.shape[0]} rows), got "
                    f"{got.size} values")
    if np.array_equal(got, want):
        _passed(name, f"{len(want)} scales, each a power of two: blocks of amax "
                      f"{amax[0]:g} and {amax[1]:g} share X = {want[0]:g} and {want[1]:g}; "
                      f"{amax[1]:g} / {want[1]:g} clips to 6")
        return
    if np.allclose(got, exponent - 2) or np.allclose(got, exponent - 2 + 127):
        _fail(name, "return the scale X = 2^e itself as a float, not its exponent e (or the "
                    "biased E8M0 byte e + 127)")
    if np.allclose(got, amax / 6, rtol=1e-6) or not np.all(
            (got > 0) & (np.frexp(np.where(got > 0, got, 1.0))[0] == 0.5)):
        _fail(name, "a scale that is not a power of two: E8M0 stores only an exponent (8 bits, "
                    "no mantissa), so X = 2^(floor(log2 amax) - 2), not amax / 6; the largest "
                    "element may then exceed 6 and clips to 6")
    if np.array_equal(got, np.exp2(exponent)):
        _fail(name, "subtract emax_elem = 2 (E2M1's largest value is 6 = 1.5 * 2^2): X = "
                    "2^(floor(log2 amax) - 2), so that amax / X lands in [4, 8)")
    if np.array_equal(got, np.exp2(np.ceil(np.log2(amax)) - 2)):
        _fail(name, "that rounds log2(amax) up (the 'ceil' variant some libraries offer); the "
                    "OCP spec takes floor(log2 amax): np.floor(np.log2(amax)) or frexp")
    bad = int(np.argmax(got != want))
    _fail(name, f"block {bad} (amax {amax[bad]:g}): got {got[bad]:g}, expected {want[bad]:g} = "
                f"2^(floor(log2 amax) - 2)")
