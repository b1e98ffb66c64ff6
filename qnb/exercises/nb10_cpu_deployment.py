"""Notebook 10 (cpu_deployment): 10.1 throughput from a `qnb.bench` result, 10.2 Amdahl's law,
10.3 the paired speedup as the workbook reports it (core).

All three are recomputed in plain Python and numpy."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from qnb.exercises.grading import fail, needs_answer, passed, rel_close


@needs_answer
def grade_throughput(answer: dict, result) -> None:
    """Exercise 10.1: images per second of each model in a `qnb.bench` result."""
    name = "Exercise 10.1"
    batch = result.context().get("batch")
    if batch is None:
        raise ValueError("result was timed with a callable example: it records no batch size")
    if not isinstance(answer, dict):
        fail(name, f"answer with a dict of model name -> images per second, got {answer!r}")
    models = [row.name for row in result.rows]
    missing = [m for m in models if m not in answer]
    if missing:
        fail(name, f"give a value for every model of the result; missing {missing}")
    for model in models:
        ms, got = result.median_ms(model), answer[model]
        if not isinstance(got, int | float | np.integer | np.floating) or not math.isfinite(got):
            fail(name, f"answer[{model!r}] must be a number, got {got!r}")
        if rel_close(got, batch * 1000 / ms):
            continue
        if rel_close(got, 1000 / ms):
            fail(name, f"{model!r}: that is calls per second; each call runs {batch} images")
        if rel_close(got, batch / ms):
            fail(name, f"{model!r}: median_ms is in milliseconds; a second is 1000 of them")
        if rel_close(got, ms / batch) or rel_close(got, ms):
            fail(name, f"{model!r}: that is time per image (or per call); invert it")
        fail(name, f"{model!r}: {got:.4g} is off; images/s = batch * 1000 / median ms")
    best = max(models, key=lambda m: batch * 1000 / result.median_ms(m))
    passed(name, f"{best!r} runs {batch * 1000 / result.median_ms(best):,.0f} images/s")


@needs_answer
def grade_amdahl(function: Callable[[float, float], float]) -> None:
    """Exercise 10.2: `function(p, k)`, the whole-model speedup when a fraction p of the time
    runs k times faster and the rest not at all."""
    name = "Exercise 10.2"
    if not callable(function):
        fail(name, f"answer with a function amdahl(p, k), got {type(function).__name__}")
    points = [(0.0, 4.0), (1.0, 4.0), (0.5, 4.0), (0.9, 4 / 3), (0.75, 10.0)]
    got = [function(p, k) for p, k in points]
    if not all(isinstance(g, int | float | np.integer | np.floating) for g in got):
        fail(name, f"amdahl(p, k) must return a number, got {got[0]!r} for p=0, k=4")
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
        if all(rel_close(g, mistake(p, k)) for g, (p, k) in zip(got, points, strict=True)):
            fail(name, hint)
    for g, (p, k) in zip(got, points, strict=True):
        want = 1 / ((1 - p) + p / k)
        if not rel_close(g, want):
            fail(name, f"amdahl({p}, {k:.4g}) gave {g!r}; expected {want:.4g}")
    passed(name, "with p = 0.9 and k = 4 the model gets 3.08x, not 4x")


def _timings(seed: int) -> tuple[list[float], list[float]]:
    """Per-round times (ms) of fp32 and int8 timed in the same rounds: the machine's load moves
    both, so the ratios are tighter than either list."""
    rng = np.random.default_rng(seed + 100)
    load = 1 + rng.gamma(2, 0.3, 15)
    fp32 = 10 * load * rng.normal(1, 0.02, 15)
    int8 = 4 * load * rng.normal(1, 0.05, 15)
    int8[3] *= 2.5  # one slow round
    return fp32.round(4).tolist(), int8.round(4).tolist()


@needs_answer
def grade_paired_speedup(fn: Callable[[list, list], tuple], seed: int = 0) -> None:
    """Exercise 10.3: `fn(fp32_ms, int8_ms)` returns (median, p25, p75) of the paired ratios
    fp32 / int8, one per round, as `qnb.bench` reports every speedup."""
    name = "Exercise 10.3"
    fp32, int8 = _timings(seed)
    got = fn(list(fp32), list(int8))
    if not isinstance(got, tuple | list) or len(got) != 3:
        fail(name, f"return three numbers (median, p25, p75), got {got!r}")
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
        passed(name, f"{median:.2f}x (IQR {got[1]:.2f}-{got[2]:.2f}) over {n} paired rounds")
        return
    if math.isclose(got[0], 1 / median, rel_tol=1e-6) or math.isclose(
        got[0], float(np.median(b / a)), rel_tol=1e-6
    ):
        fail(name, "that is int8 / fp32: a speedup is fp32 time / int8 time (> 1: int8 faster)")
    if math.isclose(got[0], float(np.median(a) / np.median(b)), rel_tol=1e-6):
        fail(name, "that is the ratio of the medians; pair the rounds: median(fp32[i] / int8[i])")
    if math.isclose(got[0], float(np.mean(ratios)), rel_tol=1e-6):
        fail(name, "that is the mean of the ratios: one slow round pulls it; take the median")
    if math.isclose(got[0], float(np.median(np.sort(a) / np.sort(b))), rel_tol=1e-6):
        fail(name, "sorting each list breaks the pairs: divide round i by round i as measured")
    if right_median:
        fail(name, "the median is right; p25 and p75 are the 25th and 75th percentiles of the "
              "same ratios (np.quantile(ratios, [0.25, 0.75]))")  # fmt: skip
    fail(name, f"median {got[0]:.4g} is off; expected the median of fp32[i] / int8[i]")
