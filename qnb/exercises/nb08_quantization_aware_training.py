"""Notebook 08 (quantization_aware_training): 08.1 the straight-through gradient of fake
quantization, 08.2 an autograd Function that rounds forward and passes gradients through (core).

08.1 compares with the gradient of `torch.fake_quantize_per_tensor_affine`; 08.2 runs the
student's Function forward and backward."""

from __future__ import annotations

import torch

from qnb.exercises.grading import fail, needs_answer, passed


@needs_answer
def grade_ste_gradient(
    answer: torch.Tensor, x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int
) -> None:
    """Exercise 08.1: the straight-through gradient of fake quantization at the points x."""
    name = "Exercise 08.1"
    probe = x.detach().clone().requires_grad_(True)
    torch.fake_quantize_per_tensor_affine(probe, scale, zero_point, qmin, qmax).sum().backward()
    want = probe.grad
    got = torch.as_tensor(answer, dtype=torch.float32).reshape(-1)
    if got.shape != want.shape:
        fail(
            name,
            f"one gradient per point: expected shape {tuple(want.shape)}, got {tuple(got.shape)}",
        )
    if torch.equal(got, want):
        passed(name, f"gradient {want.tolist()}: 1 inside the range, 0 where clamped")
        return
    if torch.equal(got, torch.zeros_like(want)):
        fail(
            name,
            "all zeros is the true derivative of round; the STE passes the gradient "
            "through (1) wherever the value is inside the range",
        )
    if torch.equal(got, torch.ones_like(want)):
        fail(name, "clamped values get no gradient: moving them does not change the output")
    wrong = (got != want).nonzero().reshape(-1).tolist()
    fail(
        name,
        f"wrong at x = {[float(x[i]) for i in wrong]}: the test is on the rounded level, "
        f"round(x / scale) + zero_point in [{qmin}, {qmax}], so the pass-through region reaches "
        "half a step beyond the end levels",
    )


@needs_answer
def grade_ste_function(function: type, seed: int = 0) -> None:
    """Exercise 08.2: an autograd Function that rounds forward and passes gradients through
    (seed 0: the notebook's five points; other seeds draw other points and upstream gradients)."""
    name = "Exercise 08.2"
    if not isinstance(function, type) or not issubclass(function, torch.autograd.Function):
        fail(name, f"pass a torch.autograd.Function subclass, got {function!r}")
    if seed == 0:
        x = torch.tensor([-1.5, -0.4, 0.5, 1.5, 2.7], requires_grad=True)
        weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    else:
        gen = torch.Generator().manual_seed(80 + seed)
        x = (torch.randn(7, generator=gen) * 3).requires_grad_(True)
        weights = torch.randint(1, 10, (7,), generator=gen).float()
    y = function.apply(x)
    if not torch.equal(y.detach(), torch.round(x.detach())):
        fail(name, f"forward should round: got {y.detach().tolist()} for {x.detach().tolist()}")
    try:
        (y * weights).sum().backward()
    except NotImplementedError:  # torch's own: the Function defines no backward
        fail(name, "define backward too: @staticmethod def backward(ctx, grad_output)")
    if x.grad is None or not torch.equal(x.grad, weights):
        got = None if x.grad is None else x.grad.tolist()
        fail(
            name,
            f"backward should return grad_output unchanged; d(sum(w*y))/dx gave {got}, "
            f"expected {weights.tolist()}",
        )
    passed(name, "forward rounds, backward is the identity: the straight-through estimator")
