"""The notebook 04 exercise checks: right answers pass, typical mistakes get their diagnosis."""

from __future__ import annotations

import numpy as np
import pytest

from qnb import integer
from qnb.exercises import ExerciseError, check_bn_fold, check_cross_term, check_requantize


def right_requantize(acc, multiplier, zero_point):
    return integer.requantize(acc, np.float32(multiplier), zero_point)


def right_cross_term(x_q, w_q, z_x):
    x, w = x_q.astype(np.int32), w_q.astype(np.int32)
    return x @ w.T - z_x * w.sum(axis=1)


def right_bn_fold(w, b, gamma, beta, mean, var, eps):
    scale = gamma / np.sqrt(var + eps)
    return w * scale.reshape(-1, 1, 1, 1), (b - mean) * scale + beta


@pytest.mark.parametrize(
    ("check", "answer", "message"),
    [
        (check_requantize, right_requantize, "Exercise 04.1 passed"),
        (check_cross_term, right_cross_term, "Exercise 04.2 passed"),
        (check_bn_fold, right_bn_fold, "Exercise 04.3 passed"),
    ],
)
def test_right_answers_pass(capsys, check, answer, message):
    check(answer)
    assert message in capsys.readouterr().out


F = np.float64
MISTAKES = [
    # 04.1 requantization
    (
        check_requantize,
        lambda a, m, z: np.clip(np.rint(a / m) + z, 0, 255),
        "did you divide by the multiplier",
    ),
    (check_requantize, lambda a, m, z: np.rint(a * m) + z, "clamp after adding the zero point"),
    (
        check_requantize,
        lambda a, m, z: np.clip(np.rint(a * m + z), 0, 255),
        "the zero point goes in after rounding",
    ),
    (
        check_requantize,
        lambda a, m, z: np.clip(np.floor(a * m + 0.5) + z, 0, 255),
        "round half to even",
    ),
    (
        check_requantize,
        lambda a, m, z: np.clip(np.rint(a * m), 0, 255),
        "the zero point is missing",
    ),
    (
        check_requantize,
        lambda a, m, z: np.clip((a * m).astype(int) + z, 0, 255),
        "truncates toward zero",
    ),
    # 04.2 the zero-point cross term
    (check_cross_term, lambda x, w, z: x @ w.T - z * w.sum(axis=1), "wrapped around"),
    (check_cross_term, lambda x, w, z: (x - np.uint8(z)) @ w.T, "wraps below 0"),
    (
        check_cross_term,
        lambda x, w, z: x.astype(int) @ w.T.astype(int) + z * w.astype(int).sum(axis=1),
        "the cross term is subtracted",
    ),
    (
        check_cross_term,
        lambda x, w, z: x.astype(int) @ w.T.astype(int),
        "the zero point is not subtracted at all",
    ),
    (
        check_cross_term,
        lambda x, w, z: x.astype(int) @ w.T.astype(int) - z * x.astype(int).sum(1, keepdims=True),
        "not the sum of the inputs",
    ),
    # 04.3 batch-norm folding
    (
        check_bn_fold,
        lambda w, b, g, be, m, v, e: (w * (g / (v + e)).reshape(-1, 1, 1, 1), b),
        "not the variance",
    ),
    (
        check_bn_fold,
        lambda w, b, g, be, m, v, e: (w * (g / np.sqrt(v)).reshape(-1, 1, 1, 1), b),
        "eps is missing",
    ),
    (
        check_bn_fold,
        lambda w, b, g, be, m, v, e: (w * (g / np.sqrt(v + e)), b),
        "along the last axis",
    ),
    (
        check_bn_fold,
        lambda w, b, g, be, m, v, e: (
            right_bn_fold(w, b, g, be, m, v, e)[0],
            (b - m) * g / np.sqrt(v + e),
        ),
        "beta is missing",
    ),
    (
        check_bn_fold,
        lambda w, b, g, be, m, v, e: (
            right_bn_fold(w, b, g, be, m, v, e)[0],
            b * g / np.sqrt(v + e) + be,
        ),
        "subtract the running mean",
    ),
    (check_bn_fold, lambda w, b, g, be, m, v, e: w, "return a pair"),
]


@pytest.mark.parametrize(("check", "answer", "hint"), MISTAKES)
def test_typical_mistakes_get_their_diagnosis(check, answer, hint):
    with pytest.raises(ExerciseError, match=hint):
        check(answer)


@pytest.mark.parametrize("check", [check_requantize, check_cross_term, check_bn_fold])
def test_stub_is_not_answered_yet(check):
    with pytest.raises(ExerciseError, match="not answered yet"):
        check(None)
