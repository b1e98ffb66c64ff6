"""Exercise checks: quiet praise for a right answer, a diagnosis for a wrong one.

Every check recomputes the answer independently (plain Python or PyTorch's own kernels),
never from the notebook's solution, and raises `ExerciseError` with a hint that teaches.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
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
    """Exercise 13.1: mean SQNR gap (asymmetric - symmetric on ReLU data) per compare_bits."""
    import pandas as pd

    name = "Exercise 13.1"
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
    """Exercise 13.2: the run names one shard `I/N` of a sweep executes."""
    from qnb import sweep

    name = "Exercise 13.2"
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
