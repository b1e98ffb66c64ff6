"""qnb.stats: flips, exact McNemar, the paired bootstrap, spread over seeds (known answers)."""

import math

import numpy as np
import pytest
import torch

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


# --- the bootstrap -------------------------------------------------------------------------


def test_identical_predictions_give_p_1_and_an_interval_at_0():
    pred = _with_errors(LABELS, [3, 7])
    comparison = stats.compare(pred, pred.copy(), LABELS)
    assert (comparison.b, comparison.c, comparison.p_value) == (0, 0, 1.0)
    assert comparison.diff == 0 and comparison.lo == 0 and comparison.hi == 0


def test_bootstrap_diff_is_b_minus_a_and_seeded():
    labels = np.arange(1000) % 10
    a = _with_errors(labels, range(0, 60))  # 94.0%
    b = _with_errors(labels, range(40, 70))  # 97.0%: 40 digits fixed, 10 broken
    diff, lo, hi = stats.bootstrap_diff(a, b, labels)
    assert diff == pytest.approx(0.03)
    assert lo < diff < hi and 0 < lo and hi < 0.06
    assert stats.bootstrap_diff(a, b, labels) == (diff, lo, hi)
    other = stats.bootstrap_diff(a, b, labels, seed=1)  # with 10,000 resamples the interval
    assert other == pytest.approx((diff, lo, hi), abs=0.002)  # barely depends on the seed
    few = {stats.bootstrap_diff(a, b, labels, resamples=100, seed=s) for s in range(5)}
    assert len(few) > 1  # but the seed is used
    narrow = stats.bootstrap_diff(a, b, labels, confidence=0.5)
    assert lo < narrow[1] < narrow[2] < hi


def test_bootstrap_matches_resampling_the_digits():
    """The multinomial shortcut is the ordinary paired bootstrap: same distribution."""
    labels = np.arange(300) % 10
    a, b = _with_errors(labels, range(0, 30)), _with_errors(labels, range(20, 35))
    right_a, right_b = a == labels, b == labels
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 300, size=(20_000, 300))
    plain = right_b[idx].mean(1) - right_a[idx].mean(1)
    _, lo, hi = stats.bootstrap_diff(a, b, labels, resamples=20_000)
    assert lo == pytest.approx(np.quantile(plain, 0.025), abs=0.004)
    assert hi == pytest.approx(np.quantile(plain, 0.975), abs=0.004)


def test_bootstrap_interval_covers_the_true_difference():
    """Synthetic pairs with a known true difference of +2 points: a 90% interval covers it
    in about 90% of 300 independent test sets."""
    rng = np.random.default_rng(0)
    n, covered, trials = 500, 0, 300
    labels = np.arange(n) % 10
    for trial in range(trials):
        u = rng.random(n)  # per digit: 4% only B right, 2% only A right, 6% both wrong
        wrong_a = (u < 0.04) | ((u >= 0.06) & (u < 0.12))
        wrong_b = (u >= 0.04) & (u < 0.12)
        a = _with_errors(labels, np.flatnonzero(wrong_a))
        b = _with_errors(labels, np.flatnonzero(wrong_b))
        _, lo, hi = stats.bootstrap_diff(a, b, labels, confidence=0.9, resamples=2000, seed=trial)
        covered += lo <= 0.02 <= hi
    assert 0.84 <= covered / trials <= 0.96


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
    assert "+6.0 points" in text and "6 digits only B gets right, 0 only A" in text
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
    ({"resamples": 10}, ValueError, "resamples must be an int >= 100, got 10"),
    ({"seed": -1}, ValueError, "seed must be an int >= 0, got -1"),
]


@pytest.mark.parametrize("kw, error, match", BAD)
@pytest.mark.parametrize("func", [stats.compare, stats.bootstrap_diff])
def test_bad_input_names_the_argument(func, kw, error, match):
    args = {"pred_a": [1, 2, 3], "pred_b": [1, 2, 0], "labels": [1, 2, 3]} | kw
    with pytest.raises(error, match=match):
        func(**args)


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


def test_paired_mean_diff_is_the_mean_difference_with_a_paired_interval():
    rng = np.random.default_rng(0)
    a = rng.normal(2.0, 1.0, 400)
    b = a + 0.05 + rng.normal(0, 0.01, 400)  # b is a shifted copy: a tight paired interval
    diff, lo, hi = stats.paired_mean_diff(a, b, seed=1)
    assert diff == pytest.approx(np.mean(b - a))
    assert 0.04 < lo < diff < hi < 0.06
    assert stats.paired_mean_diff(a, b, seed=1) == (diff, lo, hi)  # seeded
    unpaired = rng.normal(2.05, 1.0, 400)  # the same shift, without the pairing
    _, lo_u, hi_u = stats.paired_mean_diff(a, unpaired, seed=1)
    assert hi_u - lo_u > 20 * (hi - lo)


def test_paired_mean_diff_bad_input():
    with pytest.raises(ValueError, match="same non-zero length, got 3 and 2"):
        stats.paired_mean_diff([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="resamples must be an int >= 100, got 5"):
        stats.paired_mean_diff([1, 2], [1, 2], resamples=5)
