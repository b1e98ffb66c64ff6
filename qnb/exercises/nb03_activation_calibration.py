"""Notebook 03 (activation_calibration): 03.1 the top of a percentile range, 03.2 a clipping
threshold near the best, 03.3 a moving-average min/max calibrator (core).

03.1 and 03.2 recompute with numpy; 03.3 compares with torch.ao's MovingAverageMinMaxObserver."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from qnb.exercises.grading import fail, needs_answer, passed


@needs_answer
def grade_percentile_clip(answer: float, activations: torch.Tensor, percentile: float) -> None:
    """Exercise 03.1: the top of the range that clips the top (100 - percentile) % of values."""
    name = "Exercise 03.1"
    x = activations.detach().reshape(-1).double().numpy()
    want = float(np.percentile(x, percentile))
    if not isinstance(answer, int | float | np.floating) or not math.isfinite(answer):
        fail(name, f"answer must be a finite number, got {answer!r}")
    tol = 1e-3 * (float(x.max()) - float(x.min()))
    if math.isclose(answer, want, abs_tol=tol):
        passed(name, f"{answer:.4g} clips {np.mean(x > answer):.3%} of the values")
        return
    if math.isclose(answer, float(x.max()), abs_tol=tol):
        fail(name, "that is the maximum: a percentile range clips the largest values off")
    other_tail = math.isclose(answer, float(np.percentile(x, 100 - percentile)), abs_tol=tol)
    fraction = math.isclose(answer, float(np.percentile(x, percentile / 100)), abs_tol=tol)
    percent = "np.percentile takes percent (0..100), np.quantile takes a fraction (0..1)"
    tail = f"you want the value below which {percentile}% of the activations lie"
    if other_tail and fraction:  # both land at the bottom of the data (ReLU zeros)
        fail(name, f"that is the bottom of the data: {tail}; {percent}")
    if other_tail:
        fail(name, f"that is the other tail: {tail}")
    if fraction:
        fail(name, percent)
    fail(
        name,
        f"{answer:.4g} clips {np.mean(x > answer):.3%} of the values; "
        f"it should clip {100 - percentile:.3g}%",
    )


def _clip_error(x: np.ndarray, high: float, bits: int) -> float:
    """Mean squared error of unsigned `bits`-wide fake quantization of x over [0, high]."""
    scale = high / (2**bits - 1)
    return float(np.mean((x - np.clip(np.round(x / scale), 0, 2**bits - 1) * scale) ** 2))


@needs_answer
def grade_best_clip(answer: float, activations: torch.Tensor, bits: int) -> None:
    """Exercise 03.2: a clipping threshold whose total error is within 2% of the best one."""
    name = "Exercise 03.2"
    x = activations.detach().reshape(-1).double().numpy()
    top = float(x.max())
    if not isinstance(answer, int | float | np.floating) or not 0 < answer <= top * 1.5:
        fail(name, f"answer must be a threshold in (0, {top:.3g}], got {answer!r}")
    grid = np.linspace(top / 200, top, 400)
    errors = np.array([_clip_error(x, c, bits) for c in grid])
    best, got = float(errors.min()), _clip_error(x, float(answer), bits)
    if got <= 1.02 * best:
        passed(name, f"threshold {answer:.4g}: error {got:.3g} (best on a fine grid {best:.3g})")
        return
    side = (
        "clamps too much (lower error: raise it)"
        if answer < grid[errors.argmin()]
        else ("wastes levels on rare large values (lower it)")
    )
    fail(
        name, f"threshold {answer:.4g} has error {got:.3g}, {got / best:.2f}x the best; it {side}"
    )


def _activation_batches(seed: int) -> list[np.ndarray]:
    """Eight batches of ReLU-like activations whose range drifts, one outlier batch among them."""
    rng = np.random.default_rng(seed + 30)
    batches = [np.maximum(rng.normal(0.5, 1 + 0.1 * k, 512), 0).astype(np.float32) - 0.05 * k
               for k in range(8)]  # fmt: skip
    batches[5] = batches[5] * 3
    return batches


@needs_answer
def grade_moving_average_minmax(
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
        fail(name, f"return a pair (min, max), got {got!r}")
    got = tuple(float(v) for v in got)

    def close(a: tuple, b: tuple) -> bool:
        pairs = zip(a, b, strict=True)
        return all(math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6) for x, y in pairs)

    if close(got, want):
        passed(name, f"range [{want[0]:.4g}, {want[1]:.4g}] after {len(batches)} batches, c={c}")
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
            fail(name, hint)
    fail(
        name,
        f"got ({got[0]:.4g}, {got[1]:.4g}); expected ({want[0]:.4g}, {want[1]:.4g}): the first "
        "batch sets the range, then min += c * (batch.min() - min), the same for max",
    )


def _from_zero(batches: list[np.ndarray], c: float) -> tuple[float, float]:
    lo = hi = 0.0
    for b in batches:
        lo, hi = lo + c * (float(b.min()) - lo), hi + c * (float(b.max()) - hi)
    return lo, hi
