"""Notebook 13 (number_formats): 13.1 an FP8 E4M3 encoder (core), 13.2 the MXFP4 block scale.

13.1 compares with torch's `float8_e4m3fn` cast; 13.2 recomputes the OCP MX rule in numpy."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from qnb.exercises.grading import as_array, fail, needs_answer, passed


def _e4m3_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    """Finite float32 test values for an E4M3 encoder, by class."""
    grid = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float().numpy()
    grid = np.unique(grid[np.isfinite(grid) & (grid >= 0)]).astype(np.float64)
    rng = np.random.default_rng(13 + seed)
    normal = np.exp2(rng.uniform(-6, np.log2(448), 300))
    ties = (grid[:-1] + grid[1:]) / 2  # exactly halfway between two neighbouring values
    classes = {
        "normal": np.concatenate([normal, grid[grid >= 2.0**-6]]),
        "tie": ties,  # subnormal ties included
        "subnormal": np.concatenate([grid[grid < 2.0**-6], np.exp2(rng.uniform(-12, -6, 100))]),
        "overflow": np.array([449.0, 464.0, 479.0, 500.0, 1000.0, 65504.0, 1e30]),
    }
    return {k: np.concatenate([v, -v]).astype(np.float32) for k, v in classes.items()}


@needs_answer
def grade_e4m3_encoder(fn: Callable[[np.ndarray], np.ndarray], seed: int = 0) -> None:
    """Exercise 13.1: `fn(x)` returns the OCP FP8 E4M3 (e4m3fn) codes (uint8) of float32 `x`:
    round to nearest with ties to even, subnormals, saturation at +-448. Seeds other than 0 (the
    notebook's) draw other random normals and subnormals; every E4M3 value and tie stays."""
    name = "Exercise 13.1"
    inputs = _e4m3_inputs(seed)
    wrong = {}
    for cls, x in inputs.items():
        want = torch.from_numpy(x).clamp(-448, 448).to(torch.float8_e4m3fn).view(torch.uint8)
        try:
            got = np.asarray(fn(x.copy()))
        except NotImplementedError:
            raise
        except Exception as exc:  # show the learner what broke, on which inputs
            fail(name, f"your encoder raised {type(exc).__name__} ({exc}) on the {cls} inputs")
        if got.shape != x.shape or got.dtype.kind not in "iu":
            fail(name, f"return one integer code per input (shape {x.shape}, uint8), got "
                        f"shape {got.shape}, dtype {got.dtype}")
        if got.min() < 0 or got.max() > 255:
            fail(name, f"codes are 8 bits (0..255), got {int(got.min())}..{int(got.max())}")
        bad = np.nonzero(got.astype(np.int64) != want.numpy())[0]
        if bad.size:
            wrong[cls] = (x, got.astype(np.uint8), want, bad)
    if not wrong:
        n = sum(len(x) for x in inputs.values())
        passed(name, f"{n} values bit-exact with torch's float8_e4m3fn cast: normals, ties to "
                      "even, subnormals and saturation")
        return
    if "tie" in wrong and set(wrong) <= {"tie", "overflow"}:
        x, got, _, bad = wrong["tie"]
        value = torch.from_numpy(got[bad]).view(torch.float8_e4m3fn).float().numpy()
        if np.all(np.abs(value) > np.abs(x[bad])):
            fail(name, f"round half up: {x[bad[0]]:g} lies exactly halfway between two E4M3 "
                        "values and goes to the one whose last mantissa bit is 0 (ties to even, "
                        "np.rint), not to the larger one (np.floor(v + 0.5))")
    if set(wrong) == {"overflow"}:
        x, got, want, bad = wrong["overflow"]
        fail(name, f"no saturation: {x[bad[0]]:g} must become {'-' if x[bad[0]] < 0 else ''}448 "
                    f"(code {int(want[bad[0]])}), E4M3's largest value; you gave code "
                    f"{int(got[bad[0]])} (0x7F/0xFF are NaN, and an exponent past 15 wraps): "
                    "clamp to +-448 before or after rounding")
    small = [(x[bad], got[bad], want[bad]) for x, got, want, bad in wrong.values()]
    if all(np.all(np.abs(xs) < 2.0**-6) for xs, _, _ in small):  # only below the normals
        x, got, want = (np.concatenate(v) for v in zip(*small, strict=True))
        bad = [0]
        fail(name, f"subnormals: {x[bad[0]]:g} is below the smallest normal 2^-6; its exponent "
                    "field is 0 and its step 2^-9 (value = mantissa * 2^-9), got code "
                    f"{int(got[bad[0]])}, expected {int(want[bad[0]])}")
    cls = next(iter(wrong))
    x, got, want, bad = wrong[cls]
    fail(name, f"{sum(len(w[3]) for w in wrong.values())} codes are wrong ({', '.join(wrong)} "
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


@needs_answer
def grade_mx_block_scale(fn: Callable[[np.ndarray], np.ndarray]) -> None:
    """Exercise 13.2: `fn(blocks)` returns the MXFP4 shared scale X of each block of 32 (one
    float per row of `blocks`): X = 2^(floor(log2(amax)) - 2), a power of two (E8M0), with 2 the
    exponent of E2M1's largest value 6 = 1.5 * 2^2 (OCP MX v1.0, section 6.3)."""
    name = "Exercise 13.2"
    blocks = _mx_blocks()
    amax = np.abs(blocks.astype(np.float64)).max(axis=1)
    exponent = np.array([math.frexp(a)[1] - 1 for a in amax])  # floor(log2 amax), exactly
    want = np.exp2(exponent - 2)
    got = as_array(fn(blocks.copy())).reshape(-1)
    if got.shape != want.shape:
        fail(name, f"return one scale per block ({len(want)} for {blocks.shape[0]} rows), got "
                    f"{got.size} values")
    if np.array_equal(got, want):
        passed(name, f"{len(want)} scales, each a power of two: blocks of amax "
                      f"{amax[0]:g} and {amax[1]:g} share X = {want[0]:g} and {want[1]:g}; "
                      f"{amax[1]:g} / {want[1]:g} clips to 6")
        return
    if np.allclose(got, exponent - 2) or np.allclose(got, exponent - 2 + 127):
        fail(name, "return the scale X = 2^e itself as a float, not its exponent e (or the "
                    "biased E8M0 byte e + 127)")
    if np.allclose(got, amax / 6, rtol=1e-6) or not np.all(
            (got > 0) & (np.frexp(np.where(got > 0, got, 1.0))[0] == 0.5)):
        fail(name, "a scale that is not a power of two: E8M0 stores only an exponent (8 bits, "
                    "no mantissa), so X = 2^(floor(log2 amax) - 2), not amax / 6; the largest "
                    "element may then exceed 6 and clips to 6")
    if np.array_equal(got, np.exp2(exponent)):
        fail(name, "subtract emax_elem = 2 (E2M1's largest value is 6 = 1.5 * 2^2): X = "
                    "2^(floor(log2 amax) - 2), so that amax / X lands in [4, 8)")
    if np.array_equal(got, np.exp2(np.ceil(np.log2(amax)) - 2)):
        fail(name, "that rounds log2(amax) up (the 'ceil' variant some libraries offer); the "
                    "OCP spec takes floor(log2 amax): np.floor(np.log2(amax)) or frexp")
    bad = int(np.argmax(got != want))
    fail(name, f"block {bad} (amax {amax[bad]:g}): got {got[bad]:g}, expected {want[bad]:g} = "
                f"2^(floor(log2 amax) - 2)")
