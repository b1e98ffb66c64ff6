"""The notebook 12 exercise checks: right answers pass, typical mistakes get their diagnosis."""

from __future__ import annotations

import pytest
import torch

from qnb import gptq, rtn
from qnb.exercises import (
    ExerciseError,
    check_awq_scales,
    check_bits_per_weight,
    check_gptq_step,
)


def test_bits_per_weight_right_answer_is_qnb_rtn(capsys):
    expected = rtn.bits_per_weight(128, 64, 4, 128)
    check_bits_per_weight(expected, 4, 128, 16)
    assert "Exercise 12.1 passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (4, "leaves the scales out"),
        (20, "divide its bits by the group size"),
        (4.25, "not 32"),
        (4 + 1 / 128, "not 1"),
        (5, "is not it"),
        ("4.125", "must be a number"),
        (None, "not answered yet"),
    ],
)
def test_bits_per_weight_mistakes(answer, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_bits_per_weight(answer, 4, 128, 16)


def right_step(w, u, scale, qmin, qmax):
    q = torch.clamp(torch.round(w[:, 0] / scale), qmin, qmax) * scale
    out = w.clone()
    out[:, 0] = q
    out[:, 1:] -= ((w[:, 0] - q) / u[0, 0])[:, None] * u[0, 1:]
    return out


def test_gptq_step_right_answer_equals_qnb_gptq_and_least_squares(capsys):
    """The check's answer is qnb.gptq's first column (damp 0), which is the least-squares
    optimum of the other columns given column 0."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(300, 6, generator=gen, dtype=torch.float64) @ (
        torch.eye(6, dtype=torch.float64) + 0.7 * torch.randn(6, 6, generator=gen,
                                                              dtype=torch.float64))
    w = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    h = gptq.hessian(x)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    scale = rtn.weight_scales(w, 3, "channel")[:, 0]
    ours = right_step(w, u, scale, *rtn.grid(3))
    theirs = gptq.gptq_weight(w, h, 3, "channel", damp=0, columns=1).double()
    assert torch.allclose(ours, theirs, atol=1e-9)
    target = (w @ x.T).T  # least squares over columns 1..5 with column 0 fixed
    free = torch.linalg.lstsq(x[:, 1:], target - x[:, :1] * ours[:, :1].T).solution.T
    assert torch.allclose(ours[:, 1:], free, atol=1e-8)
    check_gptq_step(right_step)
    assert "Exercise 12.2 passed" in capsys.readouterr().out


nudge_column_2 = torch.nn.functional.pad(torch.full((4, 1), 0.1, dtype=torch.float64), (2, 3))


def not_implemented(w, u, scale, qmin, qmax):
    raise NotImplementedError()


def rtn_only(w, u, scale, qmin, qmax):
    out = w.clone()
    out[:, 0] = torch.clamp(torch.round(w[:, 0] / scale), qmin, qmax) * scale
    return out


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (rtn_only, "did not move: that is round to nearest"),
        (lambda w, u, s, lo, hi: 2 * rtn_only(w, u, s, lo, hi) - right_step(w, u, s, lo, hi),
         "wrong way"),
        (lambda w, u, s, lo, hi: torch.cat([rtn_only(w, u, s, lo, hi)[:, :1], w[:, 1:] - (
            w[:, :1] - rtn_only(w, u, s, lo, hi)[:, :1]) * u[0, 1:]], dim=1), "divide the error"),
        (lambda w, u, s, lo, hi: w, "column 0 must be on the grid"),
        (lambda w, u, s, lo, hi: right_step(w, u, s, lo, hi)[:, 1:], "shape"),
        (lambda w, u, s, lo, hi: right_step(w, u, s, lo, hi) + nudge_column_2, "column 2 differs"),
        (None, "not answered yet"),
        (not_implemented, "not answered yet"),
    ],
)
def test_gptq_step_mistakes(answer, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_gptq_step(answer)


def awq_right(x, alpha):
    s = x.abs().reshape(-1, x.shape[-1]).mean(dim=0).pow(alpha).clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


def test_awq_scales_right_answer_is_llm_awqs_formula(capsys):
    """mean|x| per channel (llm-awq's get_act_scale), ** alpha, / sqrt(max * min): the right
    answer passes, with or without AWQ's clamp at 1e-4 (no channel mean is that small here)."""
    check_awq_scales(awq_right)
    out = capsys.readouterr().out
    assert "Exercise 12.3 passed" in out and "maximum would have given" in out

    def no_clamp(x, alpha):
        s = x.abs().reshape(-1, x.shape[-1]).mean(dim=0).pow(alpha)
        return s / (s.max() * s.min()).sqrt()

    check_awq_scales(no_clamp)


def awq_max(x, alpha):
    s = x.abs().reshape(-1, x.shape[-1]).amax(dim=0).pow(alpha)
    return s / (s.max() * s.min()).sqrt()


def awq_stub(x, alpha):
    raise NotImplementedError()


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (awq_max, "that is the maximum of each channel"),
        (lambda x, a: x.abs().reshape(-1, x.shape[-1]).mean(dim=0).pow(a), "normalize"),
        (lambda x, a: awq_right(x.reshape(-1, x.shape[-1]).mean(dim=0, keepdim=True), a),
         "magnitude first"),
        (lambda x, a: awq_right(x, 0.5), "use the `alpha` passed in"),
        (lambda x, a: awq_right(x, a)[:4], "one scale per input channel"),
        (lambda x, a: awq_right(x, a) * 1.01, "channel"),
        (None, "not answered yet"),
        (awq_stub, "not answered yet"),
    ],
)
def test_awq_scales_mistakes(answer, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_awq_scales(answer)
