"""Notebook 01 (affine_quantization): 01.1 scale and zero point, 01.2 a quantizer bit-exact with
torch's quint8 kernel (core), 01.3 dB of SQNR per bit read off the run's measurements.

The answers are recomputed in plain Python and with `torch.quantize_per_tensor`."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from qnb.exercises.grading import fail, needs_answer, passed


def _expected_qparams(xmin: float, xmax: float, bits: int) -> tuple[float, int]:
    """Asymmetric unsigned scale and zero point, as plain Python floats."""
    xmin, xmax = min(xmin, 0.0), max(xmax, 0.0)
    levels = 2**bits - 1
    scale = (xmax - xmin) / levels
    return scale, min(max(-round(xmin / scale), 0), levels)


@needs_answer
def grade_qparams(scale: float, zero_point: int, xmin: float, xmax: float, bits: int) -> None:
    """Exercise 01.1: asymmetric unsigned scale and zero point for [xmin, xmax] at `bits`."""
    name, (want_scale, want_zp) = "Exercise 01.1", _expected_qparams(xmin, xmax, bits)
    levels = 2**bits - 1
    if scale is None or zero_point is None:
        fail(name, "set both `scale` and `zero_point`")
    if not math.isclose(scale, want_scale, rel_tol=1e-6):
        ratio = scale / want_scale if want_scale else float("nan")
        if math.isclose(scale * want_scale, 1.0, rel_tol=1e-6):
            fail(
                name, "scale is upside down: it is (xmax - xmin) / (qmax - qmin), not the inverse"
            )
        if math.isclose(ratio, levels / (levels + 1), rel_tol=1e-6):
            fail(
                name,
                f"there are 2**bits - 1 = {levels} steps between qmin and qmax, not {levels + 1}",
            )
        fail(name, f"scale is {ratio:.4g}x the right value; use (xmax - xmin) / (qmax - qmin)")
    if isinstance(zero_point, float | np.floating) and not float(zero_point).is_integer():
        fail(name, f"zero_point must be an integer level, got {zero_point}: round it")
    if zero_point == want_zp:  # before the sign test: -0 == 0 when the range starts at 0
        passed(name, f"scale = {scale:.6g}, zero_point = {zero_point}")
        return
    if zero_point == 0:  # symmetric habit, or the wrong sign clamped to qmin
        fail(
            name,
            f"zero_point 0 puts the real 0 at qmin, leaving no level for xmin = {xmin} < 0: "
            "z = qmin - round(xmin / scale) (mind the sign)",
        )
    if zero_point == -want_zp or zero_point == min(max(round(xmin / want_scale), 0), levels):
        fail(name, "zero point has the wrong sign: z = qmin - round(xmin / scale)")
    fail(
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


@needs_answer
def grade_quantize(fn: Callable[[np.ndarray, float, int], np.ndarray], seed: int = 0) -> None:
    """Exercise 01.2: `fn(x, scale, zero_point)` must match torch's quint8 kernel bit for bit.
    Seed 0 is the notebook's case (scale 0.25, zero point 10); other seeds draw other values,
    another power-of-two scale and zero point."""
    name = "Exercise 01.2"
    scale, zp = ((0.25, 10), (0.5, 3), (0.125, 131))[seed % 3]
    ties = (np.arange(-8, 8) + 0.5).astype(np.float32) * scale  # exactly halfway between levels
    wide = np.array([-1e3, -3.0, 0.0, 60.0, 1e3], dtype=np.float32)  # far outside the range
    rng = np.random.default_rng(seed)
    spread = rng.uniform(-2, 60, 64) * (scale / 0.25)  # over the levels, whatever the scale
    x = np.concatenate([ties, wide, spread.astype(np.float32)])
    got, want = np.asarray(fn(x.copy(), scale, zp)), _torch_reference(x, scale, zp)
    if got.shape != want.shape:
        fail(name, f"returned shape {got.shape}, expected {want.shape} (one level per input)")
    if not np.array_equal(got, want):
        for hint, mistake in _common_mistakes(x, scale, zp).items():
            if np.array_equal(got, mistake):
                fail(name, hint)
        _fail_first_difference(name, x, got, want)
    # 0.1 has no exact float32 reciprocal: x * (1/s) and x / s differ in the last bit near ties
    first_scale, scale = scale, 0.1
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
                fail(
                    name,
                    f"right at scale {first_scale:g}, but at scale 0.1 you divide ({precision} "
                    "x / scale): "
                    "torch multiplies by the float32 reciprocal, x * (1 / scale) in float32 "
                    "(inv = np.float32(1) / np.float32(scale)), and near a tie the last bit of "
                    "x / scale rounds the other way (see qnb.affine)",
                )
        _fail_first_difference(name, x, got, want)
    if not np.issubdtype(got.dtype, np.integer):
        fail(name, f"right values but dtype {got.dtype}: return integers (e.g. .astype(int))")
    passed(name, "bit-exact with torch.quantize_per_tensor: ties, clamping and x * (1/s)")


def _fail_first_difference(name: str, x: np.ndarray, got: np.ndarray, want: np.ndarray) -> None:
    wrong = got != want
    fail(
        name,
        f"{wrong.sum()} of {x.size} levels differ, e.g. x = {x[wrong][0]!r}: "
        f"got {got[wrong][0]}, torch gives {want[wrong][0]}",
    )


@needs_answer
def grade_db_per_bit(answer: float, bit_widths: list, sqnr_db: list) -> None:
    """Exercise 01.3: dB of SQNR one more bit buys at large b, read off this run's measured
    `sqnr_db` at `bit_widths` (the uniform-data curve), not from the formula: the answer must
    be the step between two measured points at 6 bits or more (or a fit through them),
    within 0.002 dB; 6.02 typed in is the formula and is refused."""
    name = "Exercise 01.3"
    if isinstance(answer, bool) or not isinstance(answer, int | float) or not math.isfinite(answer):
        fail(name, f"answer must be a number of dB, got {answer!r}")
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
        passed(name, f"{answer:.3f} dB per bit measured ({how}; 20*log10 2 = 6.021)")
        return
    if math.isclose(answer, 20 * math.log10(2), abs_tol=0.005) or math.isclose(
        answer, 6.0, abs_tol=1e-9
    ):
        fail(
            name,
            "that is the formula's 20*log10(2); compute the step from sqnr['uniform'] "
            "at two bit widths of 6 or more: (SQNR_b2 - SQNR_b1) / (b2 - b1)",
        )
    if math.isclose(answer, 10 * math.log10(2), abs_tol=0.1):
        fail(name, "that is 10*log10(2): a bit halves the step, so the noise *power* drops 4x")
    if any(
        math.isclose(answer, (d[j] - d[i]), abs_tol=0.002)
        for i in range(len(b))
        for j in range(i + 1, len(b))
    ):
        fail(name, "that is the dB difference between two widths: divide by how many bits apart")
    low = {
        f"{bits[i]:g} -> {bits[i + 1]:g}": (db[i + 1] - db[i]) / (bits[i + 1] - bits[i])
        for i in range(len(bits) - 1)
        if bits[i] < 6
    }
    for how, slope in low.items():
        if abs(answer - slope) <= 0.002:
            fail(
                name,
                f"that is the step {how} bits, where 2**b - 1 still grows faster than "
                "2**b: use widths of 6 bits or more ('once b is large')",
            )
    fail(
        name,
        f"{answer:.3g} dB is not a step of this run's measured curve at 6 bits or more "
        f"(e.g. {next(iter(slopes.values())):.3f} between {next(iter(slopes))})",
    )
