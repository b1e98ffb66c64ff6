"""The notebook 07 exercise checks: right answers pass, typical mistakes get their diagnosis."""

from __future__ import annotations

import pytest
import torch

from qnb import cle, simulate
from qnb.exercises import ExerciseError, check_cle_scales, check_flip_count


def right_scales(w1, w2):
    r1, r2 = cle.channel_ranges(w1, 0), cle.channel_ranges(w2, 1)
    return cle.equalization_scales(r1, r2)


def ranges(w1, w2):
    return w1.abs().flatten(1).amax(1), w2.abs().transpose(0, 1).flatten(1).amax(1)


def minmax_scales(w1, w2):
    r1 = w1.flatten(1).amax(1) - w1.flatten(1).amin(1)
    cols = w2.transpose(0, 1).flatten(1)
    r2 = cols.amax(1) - cols.amin(1)
    return torch.sqrt(r1 * r2) / r2


def not_implemented(w1, w2):
    raise NotImplementedError()


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (lambda w1, w2: 1 / right_scales(w1, w2), "those are 1 / s"),
        (lambda w1, w2: ranges(w1, w2)[0] / ranges(w1, w2)[1], "take the square root"),
        (minmax_scales, "max - min"),
        (lambda w1, w2: w2.abs().flatten(1).amax(1), "one scale per channel"),
        (lambda w1, w2: right_scales(w1, w2).tolist(), "return a tensor"),
        (lambda w1, w2: right_scales(w1, w2) * 1.1, r"scale \d is .*expected"),
    ],
)
def test_cle_scales_mistakes(answer, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_cle_scales(answer)


def test_cle_scales_right_answer_and_stubs(capsys):
    check_cle_scales(right_scales)
    assert "Exercise 07.1 passed" in capsys.readouterr().out
    for stub in (None, not_implemented):
        with pytest.raises(ExerciseError, match="not answered yet"):
            check_cle_scales(stub)


@pytest.fixture
def rounded_layer():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 3, 3, 3, generator=gen)
    scale, _, qmin, qmax = simulate.weight_qparams(weight, 3)
    s = scale.reshape(-1, 1, 1, 1)
    codes = torch.clamp(torch.round(weight / s), qmin, qmax)
    flip = torch.rand(weight.shape, generator=gen) < 0.2
    low = torch.floor(weight / s)
    other = torch.where(codes == low, low + 1, low).clamp(qmin, qmax)
    rounded = torch.where(flip, other, codes) * s
    want = int((torch.round(rounded / s) != codes).sum())
    return weight, rounded, scale, qmin, qmax, want


def test_flip_count_right_and_wrong(capsys, rounded_layer):
    weight, rounded, scale, qmin, qmax, want = rounded_layer
    assert 0 < want < weight.numel()
    check_flip_count(want, weight, rounded, scale, qmin, qmax)
    assert "Exercise 07.2 passed" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="rounds to nearest"):
        check_flip_count(weight.numel() - want, weight, rounded, scale, qmin, qmax)
    with pytest.raises(ExerciseError, match="changed at all"):
        check_flip_count(int((rounded != weight).sum()), weight, rounded, scale, qmin, qmax)
    with pytest.raises(ExerciseError, match="must be an int"):
        check_flip_count(float(want), weight, rounded, scale, qmin, qmax)
    with pytest.raises(ExerciseError, match="not answered yet"):
        check_flip_count(None, weight, rounded, scale, qmin, qmax)
