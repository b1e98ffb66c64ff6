"""Paired statistics for two models on the same digits, and the spread of a figure over seeds.

Two models evaluated on the same test digits are compared paired, digit by digit, not by two
accuracies side by side:

- `flips(pred_a, pred_b, labels)` -> `(b, c)`: `b` digits A gets right and B gets wrong, `c`
  digits A gets wrong and B gets right. Only these discordant digits tell the models apart.
- `mcnemar_p(b, c)`: the exact McNemar test, a two-sided binomial test of `b` successes in
  `b + c` trials at 1/2 (`scipy.stats.binomtest`); 1.0 when no digit flips.
- `bootstrap_diff(...)`: a paired bootstrap interval of accuracy(B) - accuracy(A): the digits
  are resampled with replacement, the same resample for both models (seeded, numpy).
- `compare(...)` returns all of it as a `Comparison` that prints as one sentence.

A figure measured over several training seeds is shown with its spread: `spread(values)` ->
`(mean, lo, hi)` (lo and hi are the smallest and largest value), `format_spread(values)` ->
"97.4% (96.9-97.8, 3 seeds)".

Predictions and labels may be torch tensors (on the CPU), numpy arrays or lists of class
indices; this module needs numpy and scipy, not torch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from qnb.checks import check_int

__all__ = [
    "Comparison",
    "flips",
    "mcnemar_p",
    "bootstrap_diff",
    "paired_mean_diff",
    "compare",
    "spread",
    "format_spread",
]


def _classes(name: str, values: object) -> np.ndarray:
    """`values` as a non-empty 1-D array of integer class indices, or an error naming `name`."""
    try:
        array = np.asarray(values)
    except Exception as exc:  # a tensor that needs .detach(), a ragged list, ...
        raise TypeError(
            f"{name} must be a 1-D sequence of class indices, got {type(values).__name__} ({exc})"
        ) from None
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D sequence of class indices, got shape {tuple(array.shape)}"
        )
    if array.size == 0:
        raise ValueError(f"{name} must hold at least one class index, got an empty sequence")
    if array.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must hold integer class indices (predictions are argmax, not scores), "
            f"got dtype {array.dtype}"
        )
    return array


def _correct(pred_a: object, pred_b: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    """Per digit: is A right, is B right (two bool arrays), after checking the three inputs."""
    truth = _classes("labels", labels)
    a, b = _classes("pred_a", pred_a), _classes("pred_b", pred_b)
    for name, array in (("pred_a", a), ("pred_b", b)):
        if len(array) != len(truth):
            raise ValueError(
                f"{name} must have one prediction per label ({len(truth)}), got {len(array)}"
            )
    return a == truth, b == truth


def _check_confidence(confidence: object) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real):
        raise TypeError(
            f"confidence must be a number strictly between 0 and 1 (for example 0.95), "
            f"got {confidence!r} ({type(confidence).__name__})"
        )
    if not 0 < confidence < 1:  # NaN fails this too
        raise ValueError(
            f"confidence must be a number strictly between 0 and 1 (for example 0.95), "
            f"got {confidence!r}"
        )
    return float(confidence)


def flips(pred_a: object, pred_b: object, labels: object) -> tuple[int, int]:
    """`(b, c)`: digits that A gets right and B wrong, and digits that A gets wrong and B right."""
    right_a, right_b = _correct(pred_a, pred_b, labels)
    return int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for `b` and `c` discordant digits (1.0 if both are 0):
    the chance of a split at least this uneven if each flip were a fair coin."""
    b, c = check_int("b", b, 0), check_int("c", c, 0)
    if b + c == 0:
        return 1.0
    return float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def bootstrap_diff(
    pred_a: object,
    pred_b: object,
    labels: object,
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """`(diff, lo, hi)`: accuracy(B) - accuracy(A) and its paired bootstrap percentile interval.

    Each resample draws the digits with replacement (the same digits for both models). As the
    per-digit difference is +1 (a `c` digit), -1 (a `b` digit) or 0, the counts of a resample
    are drawn directly from the multinomial they follow, which is the same bootstrap, exactly,
    without building the index arrays. Seeded: the same inputs and `seed` give the same interval.
    """
    right_a, right_b = _correct(pred_a, pred_b, labels)
    confidence = _check_confidence(confidence)
    resamples = check_int("resamples", resamples, 100)
    seed = check_int("seed", seed, 0)
    n = len(right_a)
    b, c = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    counts = np.random.default_rng(seed).multinomial(n, [c / n, b / n, (n - b - c) / n], resamples)
    diffs = (counts[:, 0] - counts[:, 1]) / n
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(diffs, [tail, 1 - tail])
    return (c - b) / n, float(lo), float(hi)


def paired_mean_diff(
    a: object, b: object, *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """`(diff, lo, hi)`: mean(b) - mean(a) of paired per-item values (the same items, e.g. the
    loss of each text window under two models) and its paired bootstrap percentile interval
    (the items drawn with replacement, the same ones for both). Seeded."""
    a, b = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (a, b))
    if a.shape != b.shape or not a.size:
        raise ValueError(f"a and b must be paired values of the same non-zero length, got "
                         f"{a.size} and {b.size}")
    confidence = _check_confidence(confidence)
    resamples = check_int("resamples", resamples, 100)
    seed = check_int("seed", seed, 0)
    d, rng = b - a, np.random.default_rng(seed)
    means = np.concatenate([d[rng.integers(0, d.size, (min(1000, resamples - i), d.size))]
                            .mean(axis=1) for i in range(0, resamples, 1000)])
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(d.mean()), float(lo), float(hi)


@dataclass(frozen=True)
class Comparison:
    """Model B against model A on the same `n` digits (see `compare`)."""

    n: int
    acc_a: float
    acc_b: float
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    p_value: float  # exact McNemar
    lo: float  # bootstrap interval of acc_b - acc_a
    hi: float
    confidence: float

    @property
    def diff(self) -> float:
        """accuracy(B) - accuracy(A)."""
        return self.acc_b - self.acc_a

    def __str__(self) -> str:
        level = f"{self.confidence:.0%}"
        return (
            f"B {self.acc_b:.1%} vs A {self.acc_a:.1%}: {100 * self.diff:+.1f} points "
            f"({level} interval {100 * self.lo:+.1f} to {100 * self.hi:+.1f}); "
            f"{self.c} digits only B gets right, {self.b} only A; "
            f"exact McNemar p = {self.p_value:.3g} (n = {self.n})"
        )


def compare(
    pred_a: object,
    pred_b: object,
    labels: object,
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Model B against model A on the same digits: accuracies, flips, McNemar p, bootstrap
    interval of the difference."""
    right_a, right_b = _correct(pred_a, pred_b, labels)
    b, c = flips(pred_a, pred_b, labels)
    _, lo, hi = bootstrap_diff(
        pred_a, pred_b, labels, confidence=confidence, resamples=resamples, seed=seed
    )
    n = len(right_a)
    return Comparison(
        n=n,
        acc_a=float(right_a.mean()),
        acc_b=float(right_b.mean()),
        b=b,
        c=c,
        p_value=mcnemar_p(b, c),
        lo=lo,
        hi=hi,
        confidence=float(confidence),
    )


def _numbers(values: Iterable) -> list[float]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"values must be a sequence of numbers, got {type(values).__name__}")
    values = list(values)
    if not values:
        raise ValueError("values must hold at least one number, got an empty sequence")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"values must be finite numbers, got {v!r} in {values!r}")
        if not math.isfinite(v):
            raise ValueError(f"values must be finite numbers, got {v!r} in {values!r}")
    return [float(v) for v in values]


def spread(values: Iterable) -> tuple[float, float, float]:
    """`(mean, lo, hi)` of `values` (for example one accuracy per training seed)."""
    values = _numbers(values)
    return sum(values) / len(values), min(values), max(values)


def format_spread(values: Iterable, *, percent: bool = True, decimals: int = 1) -> str:
    """The mean, range and number of seeds as "97.4% (96.9-97.8, 3 seeds)"; one value reads
    "97.4% (1 seed)". `percent`: the values are fractions, shown as percent."""
    values = _numbers(values)
    mean, lo, hi = spread(values)
    decimals = check_int("decimals", decimals, 0, 6)
    if not isinstance(percent, bool):
        raise TypeError(f"percent must be True or False, got {percent!r}")
    scale, unit = (100, "%") if percent else (1, "")
    show = [f"{scale * v:.{decimals}f}" for v in (mean, lo, hi)]
    if len(values) == 1:
        return f"{show[0]}{unit} (1 seed)"
    dash = " to " if lo < 0 else "-"  # "-1.2--0.4" would read badly
    return f"{show[0]}{unit} ({show[1]}{dash}{show[2]}, {len(values)} seeds)"
