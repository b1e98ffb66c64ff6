"""Notebook 12 (llm_weight_quantization): 12.1 bits per weight with group scales, 12.2 GPTQ's
step for one column (core), 12.3 AWQ's per-channel scales.

All three are recomputed with plain torch arithmetic (12.3 after llm-awq's formula)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from qnb.exercises.grading import fail, needs_answer, passed


@needs_answer
def grade_bits_per_weight(bpw: float, bits: int, group_size: int, scale_bits: int) -> None:
    """Exercise 12.1: the storage cost of `bits`-wide weights in groups with one scale each."""
    name = "Exercise 12.1"
    if isinstance(bpw, bool) or not isinstance(bpw, int | float | np.number):
        fail(name, f"ex_bpw must be a number of bits, got {type(bpw).__name__}")
    want = bits + scale_bits / group_size
    got = float(bpw)
    if math.isclose(got, want, rel_tol=1e-6):
        passed(name, f"{want:g} bits per weight: the scales add {scale_bits / group_size:g} "
                      f"bits to each {bits}-bit weight ({want / 32:.1%} of float32's 32)")
        return
    if math.isclose(got, bits):
        fail(name, "that leaves the scales out: each group of weights also stores its scale")
    if math.isclose(got, bits + scale_bits):
        fail(name, "one scale is shared by the whole group: divide its bits by the group size")
    if math.isclose(got, bits + 32 / group_size):
        fail(name, f"the scale here is {scale_bits} bits (float16), not 32")
    if math.isclose(got, bits + 1 / group_size):
        fail(name, f"a scale costs {scale_bits} bits, not 1")
    fail(name, f"{got:g} is not it: add the bits of the weight and its share of the group's "
                "scale")


def _gptq_problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    """A small layer (4 x 6, float64), correlated inputs, the Cholesky factor of H^-1, scales."""
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(200, 6, generator=gen, dtype=torch.float64) @ (torch.eye(6) + 0.8 * mix)
    w = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    h = 2 * x.T @ x / len(x)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    scale = w.abs().amax(dim=1) / 3  # 3-bit symmetric grid: codes -4..3
    return w, u, scale, -4, 3


def _gptq_step(w, u, scale, qmin, qmax) -> torch.Tensor:
    q = torch.clamp(torch.round(w[:, 0] / scale), qmin, qmax) * scale
    out = w.clone()
    out[:, 0] = q
    out[:, 1:] -= ((w[:, 0] - q) / u[0, 0]).unsqueeze(1) * u[0, 1:]
    return out


@needs_answer
def grade_gptq_step(fn: Callable[..., torch.Tensor], seed: int = 0) -> None:
    """Exercise 12.2: GPTQ's step for one column: quantize it, move the others to compensate
    (seed 0: the notebook's layer; other seeds draw other weights and inputs)."""
    name = "Exercise 12.2"
    w, u, scale, qmin, qmax = _gptq_problem(seed)
    want = _gptq_step(w, u, scale, qmin, qmax)
    got = fn(w.clone(), u.clone(), scale.clone(), qmin, qmax)
    if not isinstance(got, torch.Tensor) or got.shape != w.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        fail(name, f"return the whole weight (a tensor of shape {tuple(w.shape)}), got {shape}")
    got = got.detach().double()
    nearest = torch.clamp(torch.round(w[:, 0] / scale), qmin, qmax) * scale
    if not torch.allclose(got[:, 0], nearest, atol=1e-9):
        fail(name, "column 0 must be on the grid: clamp(round(w / scale), qmin, qmax) * scale")
    if torch.allclose(got, want, atol=1e-9):
        passed(name, "column 0 rounded, columns 1-5 moved by -(w0 - q0) / U[0, 0] * U[0, 1:]: "
                      "the least-squares best for the layer's output given column 0")
        return
    if torch.allclose(got[:, 1:], w[:, 1:], atol=1e-12):
        fail(name, "the other columns did not move: that is round to nearest; GPTQ subtracts "
                    "column 0's error, scaled by U[0, 1:] / U[0, 0], from them")
    moved = got[:, 1:] - w[:, 1:]
    if torch.allclose(moved, -(want[:, 1:] - w[:, 1:]), atol=1e-9):
        fail(name, "the columns moved the wrong way: the error is w0 - q0, and the update "
                    "subtracts error * U[0, 1:] / U[0, 0]")
    err = (w[:, 0] - nearest).unsqueeze(1)
    if torch.allclose(moved, -err * u[0, 1:], atol=1e-9):
        fail(name, "divide the error by U[0, 0] (the diagonal of the Cholesky factor) first")
    bad = int(torch.argmax((got - want).abs().amax(dim=0)))
    fail(name, f"column {bad} differs from GPTQ's update (largest difference "
                f"{float((got - want)[:, bad].abs().max()):.3g})")


def _awq_scales(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """AWQ's scales (llm-awq's `get_act_scale` and `_search_module_scale`), in float64."""
    s = x.double().abs().reshape(-1, x.shape[-1]).mean(dim=0).pow(alpha).clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


def _normalized(s: torch.Tensor) -> torch.Tensor:
    return s / (s.max() * s.min()).sqrt()


@needs_answer
def grade_awq_scales(fn: Callable[..., torch.Tensor]) -> None:
    """Exercise 12.3: AWQ's per-channel scales: each input channel's mean magnitude to the power
    alpha, normalized by sqrt(max * min)."""
    name = "Exercise 12.3"
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(4, 16, 8, generator=gen) * torch.linspace(0.2, 3.0, 8)  # (batch, tokens, ch)
    x[0, 3, 2] = 40.0  # one token's spike in channel 2: a large maximum, an ordinary mean
    flat = x.double().abs().reshape(-1, 8)
    for alpha in (0.5, 0.25):
        want = _awq_scales(x, alpha)
        got = fn(x.clone(), alpha)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            fail(name, f"return one scale per input channel (a tensor of shape (8,) for inputs "
                        f"of shape {tuple(x.shape)}), got {shape}")
        got = got.detach().double()
        if torch.allclose(got, want, rtol=1e-5):
            continue
        if torch.allclose(got, _normalized(flat.amax(dim=0).pow(alpha)), rtol=1e-5):
            fail(name, "that is the maximum of each channel (SmoothQuant's statistic); AWQ's "
                        "scale uses the mean magnitude of each input channel over all tokens "
                        "(mean of |x|): a channel large on one token only is not salient")
        if torch.allclose(got, flat.mean(dim=0).pow(alpha), rtol=1e-5):
            fail(name, "normalize the scales: divide them by sqrt(max(s) * min(s)), as AWQ "
                        "does, so that they straddle 1")
        signed = x.double().reshape(-1, 8).mean(dim=0)
        if torch.allclose(got, _normalized(signed.abs().pow(alpha)), rtol=1e-5):
            fail(name, "take the magnitude first: the mean of |x|, not |mean of x| (positive "
                        "and negative values cancel)")
        for other in (1.0, 0.5, 0.25, 0.0):
            if other != alpha and torch.allclose(got, _awq_scales(x, other), rtol=1e-5):
                fail(name, f"use the `alpha` passed in ({alpha}), got the scales of alpha "
                            f"{other}")
        bad = int(torch.argmax((got - want).abs()))
        fail(name, f"channel {bad}: {float(got[bad]):.4g}, expected {float(want[bad]):.4g} "
                    "(mean |x| over every token of the channel, to the power alpha, then "
                    "divided by sqrt(max * min) of all channels)")
    top = _awq_scales(x, 0.5)
    maxed = _normalized(flat.amax(dim=0).pow(0.5))
    passed(name, f"s_j = mean|x_j|^alpha / sqrt(max s * min s): channel 2 (one token at 40) "
                  f"gets {float(top[2]):.2f}, where its maximum would have given "
                  f"{float(maxed[2]):.2f}")
