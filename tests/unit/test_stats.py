"""qnb.stats: flips, exact McNemar, the Agresti-Min interval, min_detectable_diff, the verdicts
of a Family over seeds (each label from synthetic predictions), spread over seeds."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import ttest_rel

from qnb import stats

LABELS = np.arange(20) % 10


def _with_errors(labels, wrong):
    """Predictions equal to `labels` except at the positions `wrong` (off by one class)."""
    pred = np.array(labels).copy()
    pred[list(wrong)] = (pred[list(wrong)] + 1) % 10
    return pred


# --- flips and McNemar ---------------------------------------------------------------------


def test_flips_count_each_direction():
    a = _with_errors(LABELS, [0, 1, 2])  # A wrong at 0, 1, 2
    b = _with_errors(LABELS, [2, 3, 4, 5, 6])  # B wrong at 2..6
    assert stats.flips(a, b, LABELS) == (4, 2)  # A right / B wrong at 3..6; B right at 0, 1
    assert stats.flips(b, a, LABELS) == (2, 4)


def test_two_different_wrong_answers_are_not_a_flip():
    a = _with_errors(LABELS, [0])
    b = a.copy()
    b[0] = (LABELS[0] + 2) % 10  # wrong in another way: both still wrong
    assert stats.flips(a, b, LABELS) == (0, 0)


@pytest.mark.parametrize(
    "b, c, p",
    [
        (0, 6, 2 * 0.5**6),  # 0.03125
        (6, 0, 2 * 0.5**6),
        (1, 9, 2 * (1 + 10) / 2**10),  # P(X <= 1) + P(X >= 9), X ~ Bin(10, 1/2)
        (0, 1, 1.0),
        (5, 5, 1.0),
        (0, 0, 1.0),  # no flips: nothing tells the models apart
    ],
)
def test_mcnemar_exact_known_answers(b, c, p):
    assert stats.mcnemar_p(b, c) == pytest.approx(p, rel=1e-12)


def test_mcnemar_small_p_for_a_lopsided_split():
    assert stats.mcnemar_p(2, 30) < 1e-6 < stats.mcnemar_p(12, 20) < 1


# --- paired_interval (Agresti-Min) and min_detectable_diff ---------------------------------

Z95 = 1.959963984540054  # the normal quantile at 0.975
Z90 = 1.6448536269514722  # at 0.95
Z80 = 0.8416212335729143  # at 0.8 (power)


def test_paired_interval_matches_a_hand_computation_of_agresti_min():
    # b = 3 images only A gets right, c = 7 only B, n = 50: add 0.5 to each cell of the 2x2
    # table (n + 2 = 52 images), then the Wald interval of (c' - b') / 52
    b_, c_, m = 3.5, 7.5, 52
    diff = (c_ - b_) / m
    se = math.sqrt(((b_ + c_) / m - diff**2) / m)
    assert (diff, se) == pytest.approx((0.0769231, 0.0628829), abs=1e-7)
    lo, hi = stats.paired_interval(3, 7, 50)
    assert lo == pytest.approx(diff - Z95 * se, rel=1e-12)
    assert hi == pytest.approx(diff + Z95 * se, rel=1e-12)
    assert (lo, hi) == pytest.approx((-0.0463251, 0.2001712), abs=1e-7)
    lo90, hi90 = stats.paired_interval(3, 7, 50, confidence=0.9)
    assert (lo90, hi90) == pytest.approx((diff - Z90 * se, diff + Z90 * se), rel=1e-12)
    assert stats.paired_interval(7, 3, 50) == pytest.approx((-hi, -lo), rel=1e-12)  # mirrored


@pytest.mark.parametrize("b, c", [(0, 0), (0, 2), (2, 0), (0, 1)])
def test_paired_interval_never_collapses_at_zero_discordant_images(b, c):
    n = 100
    lo, hi = stats.paired_interval(b, c, n)
    assert hi - lo > 0.01  # a real interval, not the point the plain Wald interval gives
    for estimate in ((c - b) / n, (c + 0.5 - b - 0.5) / (n + 2)):  # raw and Agresti-Min
        assert lo < estimate < hi
    if b == c == 0:
        assert lo == pytest.approx(-Z95 / 102) and hi == pytest.approx(Z95 / 102)
        assert lo < 0 < hi


def test_paired_interval_narrows_with_more_images_and_is_clipped():
    wide, narrow = stats.paired_interval(2, 8, 100), stats.paired_interval(20, 80, 1000)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2
    lo, hi = stats.paired_interval(0, 5, 5)  # every image flips to B: clipped at +1
    assert hi == 1.0 and 0 < lo < 1
    assert stats.paired_interval(5, 0, 5)[0] == -1.0


def test_compare_uses_the_paired_interval():
    labels = np.arange(50) % 10
    a = _with_errors(labels, range(0, 7))  # A wrong at 0..6
    b = _with_errors(labels, range(7, 10))  # B wrong at 7..9: b = 3, c = 7
    result = stats.compare(a, b, labels)
    assert (result.b, result.c) == (3, 7)
    assert (result.lo, result.hi) == stats.paired_interval(3, 7, 50)


def test_identical_predictions_give_p_1_and_an_interval_around_0():
    pred = _with_errors(LABELS, [3, 7])
    comparison = stats.compare(pred, pred.copy(), LABELS)
    assert (comparison.b, comparison.c, comparison.p_value) == (0, 0, 1.0)
    assert comparison.diff == 0 and comparison.lo < 0 < comparison.hi
    assert comparison.hi == pytest.approx(Z95 / 22)


@pytest.mark.parametrize(
    "args, kw, error, match",
    [
        ((6, 5, 10), {}, ValueError, r"b \+ c must be at most n, got b=6, c=5, n=10"),
        ((1, 1, 0), {}, ValueError, "n must be an int >= 1, got 0"),
        ((-1, 1, 10), {}, ValueError, "b must be an int >= 0, got -1"),
        ((1, 1.5, 10), {}, TypeError, "c must be an int >= 0, got 1.5"),
        ((1, 1, 10), {"confidence": 1.0}, ValueError, "strictly between 0 and 1"),
        ((1, 1, 10), {"confidence": "95%"}, TypeError, "got '95%'"),
    ],
)
def test_paired_interval_bad_input(args, kw, error, match):
    with pytest.raises(error, match=match):
        stats.paired_interval(*args, **kw)


def test_min_detectable_diff_formula():
    # (z_(1 - alpha/2) + z_power) * sd / sqrt(n_items * seeds)
    assert stats.min_detectable_diff(0.2, 10_000, 3) == pytest.approx(
        (Z95 + Z80) * 0.2 / math.sqrt(30_000), rel=1e-12)
    assert stats.min_detectable_diff(0.2, 10_000) == pytest.approx(
        (Z95 + Z80) * 0.2 / 100, rel=1e-12)
    assert stats.min_detectable_diff(1.0, 100, 4, alpha=0.01, power=0.9) == pytest.approx(
        (2.5758293035489004 + 1.2815515655446004) / 20, rel=1e-12)
    assert stats.min_detectable_diff(0, 100) == 0.0
    assert stats.min_detectable_diff(0.3, 400, 4) == pytest.approx(
        stats.min_detectable_diff(0.3, 1600, 1))  # only items x seeds counts
    assert stats.min_detectable_diff(0.3, 400, alpha=0.01) > stats.min_detectable_diff(0.3, 400)


@pytest.mark.parametrize(
    "kw, error, match",
    [
        ({"sd": -0.1}, ValueError, "sd must be a finite number >= 0, got -0.1"),
        ({"sd": float("nan")}, ValueError, "sd must be a finite number >= 0, got nan"),
        ({"sd": math.inf}, ValueError, "sd must be a finite number >= 0, got inf"),
        ({"n_items": 0}, ValueError, "n_items must be an int >= 1, got 0"),
        ({"n_items": 10.5}, TypeError, "n_items must be an int >= 1, got 10.5"),
        ({"seeds": 0}, ValueError, "seeds must be an int >= 1, got 0"),
        ({"alpha": 0.0}, ValueError, "strictly between 0 and 1"),
        ({"alpha": 1.5}, ValueError, "strictly between 0 and 1"),
        ({"power": 1.0}, ValueError, "strictly between 0 and 1"),
        ({"power": "high"}, TypeError, "got 'high'"),
    ],
)
def test_min_detectable_diff_bad_input(kw, error, match):
    args = {"sd": 0.2, "n_items": 100, "seeds": 1} | kw
    with pytest.raises(error, match=match):
        stats.min_detectable_diff(**args)


@pytest.mark.parametrize(
    "kw, name",
    [({"alpha": 1.5}, "alpha"), ({"power": 0.0}, "power"), ({"sd": "wide"}, "sd")],
)
def test_min_detectable_diff_bad_input_names_the_argument(kw, name):
    args = {"sd": 0.2, "n_items": 100, "seeds": 1} | kw
    with pytest.raises((TypeError, ValueError)) as info:
        stats.min_detectable_diff(**args)
    assert str(info.value).startswith(f"{name} must be")

# --- compare and inputs --------------------------------------------------------------------


def test_compare_accepts_tensors_arrays_and_lists_alike():
    labels = np.arange(100) % 10
    a, b = _with_errors(labels, range(0, 8)), _with_errors(labels, range(5, 7))
    from_arrays = stats.compare(a, b, labels)
    from_tensors = stats.compare(torch.from_numpy(a), torch.from_numpy(b), torch.tensor(labels))
    from_lists = stats.compare(a.tolist(), b.tolist(), labels.tolist())
    assert from_arrays == from_tensors == from_lists
    assert (from_arrays.b, from_arrays.c, from_arrays.n) == (0, 6, 100)
    assert from_arrays.acc_a == 0.92 and from_arrays.acc_b == 0.98
    assert from_arrays.p_value == pytest.approx(0.03125)
    assert from_arrays.diff == pytest.approx(0.06)
    text = str(from_arrays)
    assert "+6.0 points" in text and "6 images only B gets right, 0 only A" in text
    assert "p = 0.0312" in text and "95% interval" in text


BAD = [
    ({"pred_a": [1, 2]}, ValueError, r"pred_a must have one prediction per label \(3\), got 2"),
    ({"pred_b": [1, 2, 3, 4]}, ValueError, r"pred_b must have one prediction .*\(3\), got 4"),
    ({"labels": []}, ValueError, "labels must hold at least one class index, got an empty"),
    ({"pred_a": [], "pred_b": [], "labels": []}, ValueError, "labels must hold at least one"),
    ({"pred_a": [0.1, 0.9, 0.5]}, TypeError, "pred_a must hold integer class indices"),
    ({"pred_b": [[1, 2, 3]]}, ValueError, r"pred_b must be a 1-D .* got shape \(1, 3\)"),
    ({"labels": 3}, ValueError, r"labels must be a 1-D .* got shape \(\)"),
    ({"confidence": 1.0}, ValueError, "confidence must be a number strictly between 0 and 1"),
    ({"confidence": 0}, ValueError, "strictly between 0 and 1 .*got 0"),
    ({"confidence": float("nan")}, ValueError, "confidence must be .* got nan"),
    ({"confidence": "95%"}, TypeError, "confidence must be .* got '95%'"),
    ({"confidence": True}, TypeError, "confidence must be .* got True"),
]


@pytest.mark.parametrize("kw, error, match", BAD)
def test_bad_input_names_the_argument(kw, error, match):
    args = {"pred_a": [1, 2, 3], "pred_b": [1, 2, 0], "labels": [1, 2, 3]} | kw
    with pytest.raises(error, match=match):
        stats.compare(**args)


def test_flips_and_mcnemar_bad_input():
    with pytest.raises(ValueError, match="pred_a must have one prediction per label"):
        stats.flips([1], [1, 2], [1, 2])
    with pytest.raises(TypeError, match="pred_b must be a 1-D sequence of class indices"):
        stats.flips([1], torch.ones(1, requires_grad=True), [1])
    with pytest.raises(ValueError, match="b must be an int >= 0, got -1"):
        stats.mcnemar_p(-1, 3)
    with pytest.raises(TypeError, match=r"c must be an int >= 0, got 2.0"):
        stats.mcnemar_p(1, 2.0)


# --- spread over seeds ---------------------------------------------------------------------


def test_spread_is_mean_min_max():
    assert stats.spread([0.974, 0.969, 0.978]) == pytest.approx((0.9736667, 0.969, 0.978))
    assert stats.spread(x for x in [2, 4]) == (3.0, 2.0, 4.0)
    assert stats.spread(np.array([1.5])) == (1.5, 1.5, 1.5)


def test_format_spread():
    assert stats.format_spread([0.974, 0.969, 0.978]) == "97.4% (96.9-97.8, 3 seeds)"
    assert stats.format_spread([0.962]) == "96.2% (1 seed)"
    assert stats.format_spread(iter([4.0, 4.5]), percent=False, decimals=2) == (
        "4.25 (4.00-4.50, 2 seeds)"
    )
    assert stats.format_spread([-0.012, -0.004]) == "-0.8% (-1.2 to -0.4, 2 seeds)"


@pytest.mark.parametrize(
    "values, error, match",
    [
        ([], ValueError, "values must hold at least one number, got an empty sequence"),
        ([0.9, float("nan")], ValueError, "values must be finite numbers, got nan"),
        ([0.9, math.inf], ValueError, "values must be finite numbers, got inf"),
        ([0.9, "0.8"], TypeError, "values must be finite numbers, got '0.8'"),
        ([True, 0.8], TypeError, "values must be finite numbers, got True"),
        ("0.9", TypeError, "values must be a sequence of numbers, got str"),
        (0.9, TypeError, "values must be a sequence of numbers, got float"),
    ],
)
def test_spread_bad_input(values, error, match):
    with pytest.raises(error, match=match):
        stats.spread(values)


def test_format_spread_bad_options():
    with pytest.raises(ValueError, match="decimals must be an int in 0..6, got 9"):
        stats.format_spread([0.9], decimals=9)
    with pytest.raises(TypeError, match="percent must be True or False, got 1"):
        stats.format_spread([0.9], percent=1)


# --- verdicts: Family --------------------------------------------------------------------------


def seed_predictions(n, b, c, start=0, both=0):
    """One seed's (pred_a, pred_b) on labels arange(n) % 10: `c` images only A gets wrong,
    then `b` images only B gets wrong, then `both` that both get wrong (differently), starting
    at image `start` (so seeds can flip other images); every other image both get right."""
    labels = np.arange(n) % 10
    a, bb = labels.copy(), labels.copy()
    rows = (start + np.arange(c + b + both)) % n
    only_a, only_b, both_wrong = rows[:c], rows[c:c + b], rows[c + b:]
    a[only_a] = (labels[only_a] + 1) % 10
    bb[only_b] = (labels[only_b] + 1) % 10
    a[both_wrong], bb[both_wrong] = (labels[both_wrong] + 1) % 10, (labels[both_wrong] + 2) % 10
    return a, bb


def seeds(n, *specs):
    """Per-seed predictions of A and B, and the labels, from (b, c, start, both) per seed."""
    pairs = [seed_predictions(n, *spec) for spec in specs]
    return [a for a, _ in pairs], [b for _, b in pairs], np.arange(n) % 10


def test_labels_are_the_five_defined_once():
    assert stats.LABELS == ("better on every seed", "better on some seeds, never worse",
                            "depends on the seed", "no measurable difference", "not resolved")
    assert stats.ALPHA == 0.05


def test_seed_predictions_make_the_flips_they_say():
    a, b = seed_predictions(100, 4, 9, start=95, both=3)
    assert stats.flips(a, b, np.arange(100) % 10) == (4, 9)
    assert int(np.sum((a != np.arange(100) % 10) & (b != np.arange(100) % 10))) == 3


def test_a_clear_effect_on_every_seed():
    preds_a, preds_b, labels = seeds(1000, (5, 40, 0, 30), (6, 38, 100, 30), (4, 42, 200, 30))
    family = stats.Family(4)
    verdict = family.accuracy("per-channel", preds_a, preds_b, labels,
                              names=("per-tensor", "per-channel"))
    assert verdict.label == "better on every seed" and verdict.winner == "per-channel"
    assert verdict.text == "per-channel better on every seed"
    assert verdict.kind == "accuracy" and verdict.names == ("per-tensor", "per-channel")
    assert verdict.diffs == pytest.approx((0.035, 0.032, 0.038))
    assert verdict.diff == pytest.approx(0.035) and verdict.lo < 0.035 < verdict.hi
    assert verdict.p_values == tuple(stats.mcnemar_p(b, c) for b, c in [(5, 40), (6, 38), (4, 42)])
    assert verdict.significant == (1, 1, 1)
    assert family.verdicts == {"per-channel": verdict}
    text = str(verdict)
    assert text.startswith("per-channel better on every seed: per-channel - per-tensor +3.50")
    assert "per seed +3.50 +3.20 +3.80" in text and "significant below 0.0042" in text
    assert verdict.row()["verdict"] == "per-channel better on every seed"
    # the same predictions the other way round: A wins, the differences change sign
    other = stats.Family(4).accuracy("k", preds_b, preds_a, labels, names=("int8", "fp32"))
    assert other.label == "better on every seed" and other.winner == "int8"
    assert other.diffs == pytest.approx((-0.035, -0.032, -0.038))
    assert other.significant == (-1, -1, -1)


def test_significant_on_one_seed_only_and_never_worse():
    preds_a, preds_b, labels = seeds(1000, (5, 40, 0, 30), (10, 14, 100, 30), (12, 12, 200, 30))
    verdict = stats.Family(4).accuracy("k", preds_a, preds_b, labels, names=("rtn", "gptq"))
    assert verdict.label == "better on some seeds, never worse" and verdict.winner == "gptq"
    assert verdict.significant == (1, 0, 0)
    assert verdict.text == "gptq better on some seeds, never worse"


def test_significant_in_both_directions_depends_on_the_seed():
    preds_a, preds_b, labels = seeds(1000, (5, 40, 0, 30), (40, 5, 100, 30), (10, 10, 200, 30))
    verdict = stats.Family(4).accuracy("k", preds_a, preds_b, labels)
    assert verdict.label == "depends on the seed" and verdict.winner is None
    assert verdict.significant == (1, -1, 0)
    assert verdict.text == "depends on the seed"


def test_identical_predictions_make_no_measurable_difference():
    preds_a, preds_b, labels = seeds(1000, *[(0, 0, 0, 30)] * 3)
    verdict = stats.Family(4).accuracy("k", preds_a, preds_b, labels)
    assert verdict.label == "no measurable difference" and verdict.winner is None
    assert verdict.diffs == (0.0, 0.0, 0.0) and verdict.p_values == (1.0, 1.0, 1.0)
    assert verdict.lo < 0 < verdict.hi  # an interval, never the point 0
    assert -verdict.resolvable <= verdict.lo and verdict.hi <= verdict.resolvable


def test_balanced_flips_on_many_images_make_no_measurable_difference():
    # 10 images each way on every seed, other images on each seed: nothing to tell apart, and
    # 1,000 images x 3 seeds resolve well below the interval's width
    preds_a, preds_b, labels = seeds(1000, (10, 10, 0, 30), (10, 10, 300, 30), (10, 10, 600, 30))
    verdict = stats.Family(4).accuracy("k", preds_a, preds_b, labels)
    assert verdict.label == "no measurable difference"
    assert verdict.resolvable == pytest.approx(
        stats.min_detectable_diff(math.sqrt(21 / 1002), 1000, 3))


def test_a_small_noisy_difference_on_few_images_is_not_resolved():
    preds_a, preds_b, labels = seeds(20, (2, 7))  # +25 points, but 9 flips: p = 0.18
    verdict = stats.Family(4).accuracy("k", preds_a, preds_b, labels)
    assert verdict.p_values == pytest.approx((0.1796875,))
    assert verdict.label == "not resolved" and verdict.winner is None
    assert verdict.significant == (0,)
    assert verdict.lo < 0 < verdict.resolvable < verdict.hi  # wider than 20 images resolve


def test_the_bonferroni_level_is_alpha_over_size_times_seeds():
    one_seed = seeds(200, (3, 14))  # p = 0.0127: below 0.05, above 0.05 / 5
    assert stats.mcnemar_p(3, 14) == pytest.approx(0.012725830078125)
    alone = stats.Family(1).accuracy("k", *one_seed)
    assert alone.level == 0.05 and alone.label == "better on every seed"
    among_five = stats.Family(5).accuracy("k", *one_seed)
    assert among_five.level == pytest.approx(0.01) and among_five.label == "not resolved"
    three = seeds(1000, *[(5, 40, 100 * s, 0) for s in range(3)])
    assert stats.Family(4).accuracy("k", *three).level == pytest.approx(0.05 / 12)
    assert stats.Family(2, alpha=0.01).accuracy("k", *three).level == pytest.approx(0.01 / 6)
    # a seed exactly at the level is not significant: p must be below it
    p = stats.mcnemar_p(5, 40)
    strict = stats.Family(1, alpha=p).accuracy("k", *seeds(1000, (5, 40)))
    assert strict.level == p and strict.significant == (0,)


def test_asking_again_under_the_same_key_replaces_the_verdict():
    family = stats.Family(1)
    clear = seeds(1000, (5, 40, 0, 30))
    first = family.accuracy("k", *clear)
    again = family.accuracy("k", *clear)  # a cell run twice
    assert len(family.verdicts) == 1 and again == first and again.level == 0.05
    same = seeds(1000, (0, 0, 0, 30))
    assert family.accuracy("k", *same).label == "no measurable difference"
    assert family.verdicts["k"].label == "no measurable difference"
    assert "1 of 1 verdicts" in repr(family)


def test_one_key_beyond_the_size_is_refused():
    family = stats.Family(2)
    data = seeds(100, (1, 2))
    family.accuracy("a", *data)
    family.loss("b", [np.ones(5)], [np.ones(5)])  # loss verdicts count in the same family
    with pytest.raises(ValueError, match=r"size=2 verdicts and already holds 2; key 'c'"):
        family.accuracy("c", *data)
    with pytest.raises(ValueError, match="size=2"):
        family.loss("c", [np.ones(5)], [np.ones(5)])
    assert set(family.verdicts) == {"a", "b"}
    family.accuracy("a", *data)  # re-asking a known key is still fine


def test_a_refused_call_does_not_use_up_a_place():
    family = stats.Family(1)
    preds_a, preds_b, labels = seeds(100, (1, 2))
    with pytest.raises(ValueError):
        family.accuracy("bad", preds_a, preds_b, labels[:-1])
    with pytest.raises(ValueError):
        family.accuracy("bad names", preds_a, preds_b, labels, names=("A", ""))
    assert family.verdicts == {}
    family.accuracy("good", preds_a, preds_b, labels)


def wiggle(n, amplitude, phase=0.0):
    """A deterministic zero-centred pattern, for synthetic per-window losses."""
    return amplitude * np.sin(np.arange(n) * 2.399 + phase)


def windows(n=200, shifts=(0.1, 0.1, 0.1), amplitude=0.05):
    """Per-seed losses of A and B on `n` windows; B is lower by `shifts[s]` plus noise."""
    base = [2.0 + wiggle(n, 0.8, s) for s in range(len(shifts))]
    return base, [a - shift + wiggle(n, amplitude, 1.0 + s)
                  for s, (a, shift) in enumerate(zip(base, shifts, strict=True))]


def test_loss_verdict_lower_is_better():
    losses_a, losses_b = windows()
    verdict = stats.Family(4).loss("int8", losses_a, losses_b, names=("int4", "int8"))
    assert verdict.kind == "loss"
    assert verdict.label == "better on every seed" and verdict.winner == "int8"
    assert verdict.diffs == pytest.approx([float(np.mean(a - b))
                                           for a, b in zip(losses_a, losses_b, strict=True)])
    assert 0.09 < verdict.diff < 0.11 and verdict.lo < verdict.diff < verdict.hi
    assert verdict.p_values[0] == pytest.approx(ttest_rel(losses_a[0], losses_b[0]).pvalue)
    assert str(verdict).startswith("int8 better on every seed: loss of int4 - int8 +0.09")
    assert "nats" in str(verdict)
    worse = stats.Family(4).loss("k", losses_b, losses_a, names=("int8", "int4"))
    assert worse.winner == "int8" and worse.diff < 0 and worse.significant == (-1, -1, -1)


@pytest.mark.parametrize(
    "shifts, label, winner",
    [
        ((0.1, 0.0, 0.0), "better on some seeds, never worse", "B"),
        ((0.1, -0.1, 0.0), "depends on the seed", None),
        ((-0.1, -0.1, -0.1), "better on every seed", "A"),
    ],
)
def test_loss_verdict_labels(shifts, label, winner):
    verdict = stats.Family(4).loss("k", *windows(shifts=shifts))
    assert (verdict.label, verdict.winner) == (label, winner)


def test_identical_losses_make_no_measurable_difference():
    losses_a, _ = windows()
    verdict = stats.Family(4).loss("k", losses_a, [a.copy() for a in losses_a])
    assert verdict.label == "no measurable difference" and verdict.p_values == (1.0, 1.0, 1.0)


def test_a_small_noisy_loss_difference_on_few_windows_is_not_resolved():
    losses_a, losses_b = windows(n=10, shifts=(0.15,), amplitude=0.4)
    verdict = stats.Family(1).loss("k", losses_a, losses_b)
    assert verdict.significant == (0,) and verdict.label == "not resolved"
    assert verdict.lo < 0 < verdict.resolvable < verdict.hi
    # the same noise around a smaller shift stays inside what 10 windows resolve
    smaller = stats.Family(1).loss("k", *windows(n=10, shifts=(0.0,), amplitude=0.4))
    assert smaller.label == "no measurable difference"


FAMILY_BAD = [
    (lambda f: f.accuracy("k", [[0, 1]] * 2, [[0, 1]] * 3, [0, 1]), ValueError,
     "preds_a and preds_b must cover the same seeds, got 2 and 3 arrays"),
    (lambda f: f.accuracy("k", [[0, 1, 2]], [[0, 1]], [0, 1]), ValueError,
     r"pred_a must have one prediction per label \(2\), got 3"),
    (lambda f: f.accuracy("k", [[0, 1]], [[0, 1]], [0, 1, 2]), ValueError,
     r"pred_a must have one prediction per label \(3\), got 2"),
    (lambda f: f.accuracy("k", [], [], [0, 1]), ValueError,
     "preds_a must hold one array per seed, got none"),
    (lambda f: f.accuracy("k", "01", [[0, 1]], [0, 1]), TypeError,
     "preds_a must be a sequence with one array per seed, got str"),
    (lambda f: f.accuracy("k", [[0.5, 1.0]], [[0, 1]], [0, 1]), TypeError,
     "pred_a must hold integer class indices"),
    (lambda f: f.accuracy("", [[0, 1]], [[0, 1]], [0, 1]), ValueError,
     "key must be a non-empty string naming the verdict, got ''"),
    (lambda f: f.accuracy(3, [[0, 1]], [[0, 1]], [0, 1]), ValueError, "key must be"),
    (lambda f: f.accuracy("k", [[0, 1]], [[0, 1]], [0, 1], names=("A",)), ValueError,
     r"names must be two non-empty strings \(A, B\), got \('A',\)"),
    (lambda f: f.accuracy("k", [[0, 1]], [[0, 1]], [0, 1], names=("A", 2)), ValueError,
     "names must be two non-empty strings"),
    (lambda f: f.loss("k", [np.ones(4)], [np.ones(4), np.ones(4)]), ValueError,
     "losses_a and losses_b must hold one array per seed each, .* got 1 and 2 arrays"),
    (lambda f: f.loss("k", [np.ones(4)], [np.ones(5)]), ValueError,
     r"all of the same length, .* of lengths \[4, 5\]"),
    (lambda f: f.loss("k", [np.ones(4), [1, 2, np.nan, 4]], [np.ones(4)] * 2), ValueError,
     "losses_a must hold non-empty finite values per seed; seed position 1 does not"),
    (lambda f: f.loss("k", [np.ones(4)], [[1, np.inf, 1, 1]]), ValueError,
     "losses_b must hold non-empty finite values"),
    (lambda f: f.loss("k", [[]], [[]]), ValueError, "losses_a must hold non-empty finite"),
    (lambda f: f.loss("k", [[1.0]], [[2.0]]), ValueError,
     "a loss verdict needs at least 2 items per seed, got 1"),
    (lambda f: f.loss("k", [np.ones(4)], [np.ones(4)], names="AB"), ValueError,
     "names must be two non-empty strings"),
    (lambda f: f.loss("k", 2.0, [np.ones(4)]), TypeError,
     "losses_a must be a sequence with one array per seed, got float"),
]


@pytest.mark.parametrize("call, error, match", FAMILY_BAD)
def test_family_bad_input(call, error, match):
    family = stats.Family(3)
    with pytest.raises(error, match=match):
        call(family)
    assert family.verdicts == {}


@pytest.mark.parametrize(
    "args, kw, error, match",
    [
        ((0,), {}, ValueError, "size must be an int >= 1, got 0"),
        ((2.0,), {}, TypeError, "size must be an int >= 1, got 2.0"),
        ((2,), {"alpha": 0}, ValueError, "strictly between 0 and 1"),
        ((2,), {"alpha": 1.5}, ValueError, "strictly between 0 and 1"),
    ],
)
def test_family_bad_size_or_alpha(args, kw, error, match):
    with pytest.raises(error, match=match):
        stats.Family(*args, **kw)
