"""Paired statistics for two models on the same images, the spread of a figure over seeds,
and the workbook's one verdict method.

Two models evaluated on the same test images are compared paired, image by image, not by two
accuracies side by side:

- `flips(pred_a, pred_b, labels)` -> `(b, c)`: `b` images A gets right and B gets wrong, `c`
  images A gets wrong and B gets right. Only these discordant images tell the models apart.
- `mcnemar_p(b, c)`: the exact McNemar test, a two-sided binomial test of `b` successes in
  `b + c` trials at 1/2 (`scipy.stats.binomtest`); 1.0 when no image flips.
- `paired_interval(b, c, n)`: an interval of accuracy(B) - accuracy(A) that does not collapse
  when one side has no discordant images (Agresti and Min 2005: 0.5 added to each cell of the
  paired 2x2 table, then the Wald interval).
- `compare(...)` returns all of it as a `Comparison` that prints as one sentence.

**Verdicts.** A comparison the prose draws a conclusion from is measured on several training
seeds. `Family(size)` holds the verdicts one notebook makes; `family.accuracy(...)` (one
prediction array per seed for each side) and `family.loss(...)` (one per-window loss array per
seed, notebook 12) return a `Verdict` whose `label` is one of `LABELS`:

- "better on every seed": B (or A) is significantly better on each seed;
- "better on some seeds, never worse": significantly better on at least one seed, never
  significantly worse;
- "depends on the seed": significantly better on one seed and significantly worse on another;
- "no measurable difference": no seed significant, and the pooled interval lies inside the
  difference these images and seeds can resolve (`min_detectable_diff`);
- "not resolved": no seed significant, but the interval is wider than that.

"Significant" is a per-seed two-sided test (exact McNemar for accuracies, a paired t-test over
windows for losses) at `alpha / (size * seeds)`: Bonferroni over every test of the family, so
the chance that a notebook makes even one false "better" verdict is at most `alpha` (5%). The
pooled difference is the mean over seeds; its interval treats an image (or window) as the unit,
since the same images serve every seed: the per-image difference averaged over seeds, its
variance (for accuracies at least that of the Agresti-Min table of the mean counts).

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
from scipy.stats import binomtest, norm, ttest_rel

from qnb.checks import check_int

__all__ = [
    "ALPHA",
    "LABELS",
    "Comparison",
    "Family",
    "Verdict",
    "flips",
    "mcnemar_p",
    "paired_interval",
    "min_detectable_diff",
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
    """Per image: is A right, is B right (two bool arrays), after checking the three inputs."""
    truth = _classes("labels", labels)
    a, b = _classes("pred_a", pred_a), _classes("pred_b", pred_b)
    for name, array in (("pred_a", a), ("pred_b", b)):
        if len(array) != len(truth):
            raise ValueError(
                f"{name} must have one prediction per label ({len(truth)}), got {len(array)}"
            )
    return a == truth, b == truth


def _check_fraction(name: str, value: object, example: str = "0.95") -> float:
    """`value` as a float strictly between 0 and 1, or an error naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a number strictly between 0 and 1 (for example {example}), "
            f"got {value!r} ({type(value).__name__})"
        )
    if not 0 < value < 1:  # NaN fails this too
        raise ValueError(
            f"{name} must be a number strictly between 0 and 1 (for example {example}), "
            f"got {value!r}"
        )
    return float(value)


def _check_confidence(confidence: object) -> float:
    return _check_fraction("confidence", confidence)


def flips(pred_a: object, pred_b: object, labels: object) -> tuple[int, int]:
    """`(b, c)`: images that A gets right and B wrong, and images that A gets wrong and B right."""
    right_a, right_b = _correct(pred_a, pred_b, labels)
    return int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for `b` and `c` discordant images (1.0 if both are 0):
    the chance of a split at least this uneven if each flip were a fair coin."""
    b, c = check_int("b", b, 0), check_int("c", c, 0)
    if b + c == 0:
        return 1.0
    return float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def paired_interval(b: int, c: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """`(lo, hi)`: an interval of accuracy(B) - accuracy(A) from `b` images only A gets right,
    `c` only B gets right, out of `n`: 0.5 added to each cell of the paired 2x2 table, then the
    Wald interval (Agresti and Min, "Simple improved confidence intervals for comparing matched
    proportions", Statistics in Medicine 2005). With no discordant image it is a narrow interval
    around 0, never a single point; clipped to [-1, 1]."""
    b, c, n = check_int("b", b, 0), check_int("c", c, 0), check_int("n", n, 1)
    if b + c > n:
        raise ValueError(f"b + c must be at most n, got b={b}, c={c}, n={n}")
    z = norm.ppf(0.5 + _check_confidence(confidence) / 2)
    diff, half = _agresti_min(b, c, n)
    return max(-1.0, float(diff - z * half)), min(1.0, float(diff + z * half))


def _agresti_min(b: float, c: float, n: int) -> tuple[float, float]:
    """The Agresti-Min estimate of the paired difference and its standard error."""
    b, c, m = b + 0.5, c + 0.5, n + 2
    diff = (c - b) / m
    return diff, math.sqrt(max((b + c) / m - diff * diff, 0.0) / m)


def min_detectable_diff(
    sd: float, n_items: int, seeds: int = 1, *, alpha: float = 0.05, power: float = 0.8
) -> float:
    """The smallest paired mean difference a two-sided test at level `alpha` finds with
    probability `power`, from `n_items` paired items (test images, text windows) on each of
    `seeds` seeds: (z_(1 - alpha/2) + z_power) * sd / sqrt(n_items * seeds). `sd` is one item's
    standard deviation of the difference; for accuracies sqrt(discordant rate), since a
    per-image difference is +1, -1 or 0. Treating the seeds as independent replicates is the
    optimistic end: the same hard images flip on every seed."""
    if isinstance(sd, bool) or not isinstance(sd, numbers.Real) or not math.isfinite(sd) or sd < 0:
        raise ValueError(f"sd must be a finite number >= 0, got {sd!r}")
    sd = float(sd)
    n_items, seeds = check_int("n_items", n_items, 1), check_int("seeds", seeds, 1)
    alpha, power = _check_fraction("alpha", alpha, "0.05"), _check_fraction("power", power, "0.8")
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * sd / math.sqrt(n_items * seeds))


@dataclass(frozen=True)
class Comparison:
    """Model B against model A on the same `n` images (see `compare`)."""

    n: int
    acc_a: float
    acc_b: float
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    p_value: float  # exact McNemar
    lo: float  # interval of acc_b - acc_a (paired_interval)
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
            f"{self.c} images only B gets right, {self.b} only A; "
            f"exact McNemar p = {self.p_value:.3g} (n = {self.n})"
        )


def compare(
    pred_a: object,
    pred_b: object,
    labels: object,
    *,
    confidence: float = 0.95,
) -> Comparison:
    """Model B against model A on the same images: accuracies, flips, McNemar p and the
    Agresti-Min interval of the difference (`paired_interval`)."""
    right_a, right_b = _correct(pred_a, pred_b, labels)
    b, c = flips(pred_a, pred_b, labels)
    n = len(right_a)
    lo, hi = paired_interval(b, c, n, confidence=confidence)
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


# --- verdicts over seeds ----------------------------------------------------------------------

ALPHA = 0.05  # the workbook's significance level, for a whole notebook's family of verdicts
EVERY_SEED = "better on every seed"
SOME_SEEDS = "better on some seeds, never worse"
DEPENDS = "depends on the seed"
NO_DIFFERENCE = "no measurable difference"
NOT_RESOLVED = "not resolved"
LABELS = (EVERY_SEED, SOME_SEEDS, DEPENDS, NO_DIFFERENCE, NOT_RESOLVED)


@dataclass(frozen=True)
class Verdict:
    """B against A over seeds (see `Family`). `diffs`, `diff`, `lo`, `hi` and `resolvable` are
    signed so that positive means B is better: accuracy(B) - accuracy(A) as a fraction, or
    loss(A) - loss(B) in nats."""

    names: tuple[str, str]  # (A, B)
    label: str  # one of LABELS
    winner: str | None  # the better side, for "better on every seed" / "... never worse"
    diffs: tuple[float, ...]  # per seed
    p_values: tuple[float, ...]  # per seed, two-sided, before the family correction
    level: float  # a seed's test is significant when its p-value is below this
    diff: float  # mean over seeds
    lo: float  # interval of `diff` (images or windows as the unit)
    hi: float
    resolvable: float  # min_detectable_diff for these items and seeds
    kind: str  # "accuracy" or "loss"

    @property
    def text(self) -> str:
        """The label as a sentence fragment: "per-channel better on every seed"."""
        return f"{self.winner} {self.label}" if self.winner else self.label

    @property
    def significant(self) -> tuple[int, ...]:
        """Per seed: +1 B significantly better, -1 significantly worse, 0 neither."""
        return _signs(self.diffs, self.p_values, self.level)

    def _show(self, value: float) -> str:
        return f"{100 * value:+.2f}" if self.kind == "accuracy" else f"{value:+.4f}"

    @property
    def detail(self) -> str:
        """The numbers behind the label, in one line."""
        unit = "points" if self.kind == "accuracy" else "nats"
        b, a = self.names[1], self.names[0]
        what = f"{b} - {a}" if self.kind == "accuracy" else f"loss of {a} - {b}"
        return (f"{what} {self._show(self.diff)} {unit} (95% interval {self._show(self.lo)} to "
                f"{self._show(self.hi)}; resolvable {self._show(self.resolvable).lstrip('+')}"
                f"); per seed {' '.join(self._show(d) for d in self.diffs)}, p "
                f"{' '.join(f'{p:.2g}' for p in self.p_values)} (significant below "
                f"{self.level:.2g})")

    def __str__(self) -> str:
        return f"{self.text}: {self.detail}"

    def row(self) -> dict[str, str]:
        """Columns for a results table."""
        a, b = self.names
        what = f"{b} - {a} per seed (points)" if self.kind == "accuracy" else \
            f"loss of {a} - {b} per seed (nats)"
        unit = "points" if self.kind == "accuracy" else "nats"
        return {
            what:
                " ".join(self._show(d) for d in self.diffs),
            "p per seed": " ".join(f"{p:.2g}" for p in self.p_values),
            f"pooled ({unit}, 95% interval)":
                f"{self._show(self.diff)} ({self._show(self.lo)} to {self._show(self.hi)})",
            "verdict": self.text,
        }


def _signs(diffs: Iterable[float], p_values: Iterable[float], level: float) -> tuple[int, ...]:
    """Per seed: +1 B significantly better, -1 significantly worse, 0 neither."""
    return tuple(int(math.copysign(1, d)) if p < level and d != 0 else 0
                 for d, p in zip(diffs, p_values, strict=True))


def _label(signs: Iterable[int], lo: float, hi: float, resolvable: float) -> tuple[str, int]:
    """(label, direction): direction +1 B better, -1 A better, 0 no winner."""
    signs = list(signs)
    up, down = signs.count(1), signs.count(-1)
    if up and down:
        return DEPENDS, 0
    if up or down:
        direction = 1 if up else -1
        return (EVERY_SEED if max(up, down) == len(signs) else SOME_SEEDS), direction
    inside = -resolvable <= lo and hi <= resolvable
    return (NO_DIFFERENCE if inside else NOT_RESOLVED), 0


def _seed_arrays(name: str, per_seed: object, dtype: type) -> list[np.ndarray]:
    if isinstance(per_seed, str | bytes) or not isinstance(per_seed, Iterable):
        raise TypeError(f"{name} must be a sequence with one array per seed, got "
                        f"{type(per_seed).__name__}")
    arrays = [np.asarray(v) for v in per_seed]
    if not arrays:
        raise ValueError(f"{name} must hold one array per seed, got none")
    if dtype is float:
        arrays = [a.astype(np.float64).reshape(-1) for a in arrays]
        bad = [i for i, a in enumerate(arrays) if not a.size or not np.isfinite(a).all()]
        if bad:
            raise ValueError(f"{name} must hold non-empty finite values per seed; seed "
                             f"position {bad[0]} does not")
    return arrays


class Family:
    """The verdicts one notebook makes, corrected together.

    `size` is the number of verdicts the notebook may make (declare it from its parameters).
    Each seed's test in a verdict over k seeds is significant below `alpha / (size * k)`
    (Bonferroni), so over the whole notebook the chance of any false "better" is at most
    `alpha`. Verdicts are keyed: asking again under the same key (a cell run twice) replaces
    the verdict; a key beyond `size` is an error, never a silently weaker correction."""

    def __init__(self, size: int, *, alpha: float = ALPHA) -> None:
        self.size = check_int("size", size, 1)
        self.alpha = _check_fraction("alpha", alpha, "0.05")
        self.verdicts: dict[str, Verdict] = {}

    def __repr__(self) -> str:
        return f"Family({len(self.verdicts)} of {self.size} verdicts, alpha {self.alpha})"

    def _level(self, key: object, seeds: int) -> float:
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"key must be a non-empty string naming the verdict, got {key!r}")
        if key not in self.verdicts and len(self.verdicts) >= self.size:
            raise ValueError(
                f"this family was declared for size={self.size} verdicts and already holds "
                f"{len(self.verdicts)}; key {key!r} would be one more: declare a larger size"
            )
        return self.alpha / (self.size * seeds)

    def accuracy(
        self, key: str, preds_a: object, preds_b: object, labels: object,
        names: tuple[str, str] = ("A", "B"),
    ) -> Verdict:
        """B against A on the same labelled images, one prediction array per seed for each:
        exact McNemar per seed, the pooled difference with an interval over images."""
        preds_a = _seed_arrays("preds_a", preds_a, int)
        preds_b = _seed_arrays("preds_b", preds_b, int)
        if len(preds_a) != len(preds_b):
            raise ValueError(f"preds_a and preds_b must cover the same seeds, got "
                             f"{len(preds_a)} and {len(preds_b)} arrays")
        level = self._level(key, len(preds_a))
        rights = [_correct(a, b, labels) for a, b in zip(preds_a, preds_b, strict=True)]
        per_image = np.mean([rb.astype(np.int8) - ra for ra, rb in rights], axis=0)
        counts = [(int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))) for ra, rb in rights]
        n, k = len(per_image), len(rights)
        mean_b, mean_c = (float(np.mean(x)) for x in zip(*counts, strict=True))
        floor = _agresti_min(mean_b, mean_c, n)[1] ** 2 / k
        se = math.sqrt(max(float(np.var(per_image, ddof=1)) / n if n > 1 else 0.0, floor))
        rate = (mean_b + mean_c + 1) / (n + 2)
        return self._verdict(
            key, names, "accuracy", [(c - b) / n for b, c in counts],
            [mcnemar_p(b, c) for b, c in counts], level, float(per_image.mean()), se,
            min_detectable_diff(math.sqrt(rate), n, k, alpha=self.alpha))

    def loss(
        self, key: str, losses_a: object, losses_b: object, names: tuple[str, str] = ("A", "B")
    ) -> Verdict:
        """B against A on the same items (text windows), one loss array per seed for each:
        lower is better; a paired t-test per seed, the pooled difference with an interval over
        items."""
        losses_a = _seed_arrays("losses_a", losses_a, float)
        losses_b = _seed_arrays("losses_b", losses_b, float)
        shapes = {a.shape for a in losses_a + losses_b}
        if len(losses_a) != len(losses_b) or len(shapes) != 1:
            raise ValueError(f"losses_a and losses_b must hold one array per seed each, all of "
                             f"the same length, got {len(losses_a)} and {len(losses_b)} arrays "
                             f"of lengths {sorted(s[0] for s in shapes)}")
        level = self._level(key, len(losses_a))
        d = np.stack([a - b for a, b in zip(losses_a, losses_b, strict=True)])
        n, k = d.shape[1], d.shape[0]
        if n < 2:
            raise ValueError(f"a loss verdict needs at least 2 items per seed, got {n}")
        ps = []
        for a, b in zip(losses_a, losses_b, strict=True):
            p = float(ttest_rel(a, b).pvalue) if np.any(a != b) else 1.0
            ps.append(1.0 if math.isnan(p) else p)
        per_item = d.mean(axis=0)
        se = float(np.std(per_item, ddof=1)) / math.sqrt(n)
        sd = float(np.mean(np.std(d, axis=1, ddof=1)))
        return self._verdict(key, names, "loss", d.mean(axis=1).tolist(), ps, level,
                             float(per_item.mean()), se,
                             min_detectable_diff(sd, n, k, alpha=self.alpha))

    def _verdict(self, key, names, kind, diffs, p_values, level, diff, se, resolvable) -> Verdict:
        if not (isinstance(names, tuple | list) and len(names) == 2
                and all(isinstance(x, str) and x for x in names)):
            raise ValueError(f"names must be two non-empty strings (A, B), got {names!r}")
        z = norm.ppf(0.975)
        lo, hi = diff - z * se, diff + z * se
        label, direction = _label(_signs(diffs, p_values, level), lo, hi, resolvable)
        verdict = Verdict(
            names=tuple(names), label=label,
            winner={1: names[1], -1: names[0]}.get(direction), diffs=tuple(diffs),
            p_values=tuple(p_values), level=level, diff=diff, lo=lo, hi=hi,
            resolvable=resolvable, kind=kind)
        self.verdicts[key] = verdict
        return verdict


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
