"""Notebook 07 (advanced_ptq): 07.1 cross-layer equalization scales (core), 07.2 how many
weights AdaRound rounds away from nearest.

Both are recomputed with plain torch tensor arithmetic."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from qnb.exercises.grading import fail, needs_answer, passed


def _cle_pair(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv pair whose channels have very different ranges (and signs that differ)."""
    gen = torch.Generator().manual_seed(seed)
    spread = torch.logspace(-1, 1, 6).reshape(6, 1, 1, 1)
    w1 = torch.randn(6, 3, 3, 3, generator=gen) * spread
    w2 = torch.randn(4, 6, 1, 1, generator=gen) * torch.logspace(1, -1, 6).reshape(1, 6, 1, 1)
    return w1, w2


@needs_answer
def grade_cle_scales(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], seed: int = 0
) -> None:
    """Exercise 07.1: CLE scales s_i = sqrt(r1_i * r2_i) / r2_i for a dense pair (seed 0: the
    notebook's pair; other seeds draw other weights)."""
    name = "Exercise 07.1"
    w1, w2 = _cle_pair(seed)
    r1 = w1.abs().flatten(1).amax(dim=1)
    r2 = w2.abs().transpose(0, 1).flatten(1).amax(dim=1)
    want = torch.sqrt(r1 * r2) / r2
    got = fn(w1.clone(), w2.clone())
    if not isinstance(got, torch.Tensor):
        fail(name, f"return a tensor of {len(want)} scales, got {type(got).__name__}")
    got = got.detach().flatten().double()
    if got.numel() != len(want):
        fail(name, f"one scale per channel between the layers ({len(want)}), got {got.numel()}: "
                    "w1's ranges are over its output channels (axis 0), w2's over its input "
                    "channels (axis 1)")
    want = want.double()
    if torch.allclose(got, want, rtol=1e-4):
        passed(name, f"{len(want)} scales from {want.min():.3g} to {want.max():.3g}; both layers'"
                      " channels then have the range sqrt(r1 * r2)")
        return
    if torch.allclose(got, 1 / want, rtol=1e-4):
        fail(name, "those are 1 / s: s_i = sqrt(r1_i * r2_i) / r2_i divides by the second "
                    "layer's range")
    if torch.allclose(got, want.square(), rtol=1e-4):
        fail(name, "those are s squared (r1 / r2): take the square root")
    minmax1 = w1.flatten(1).amax(dim=1) - w1.flatten(1).amin(dim=1)
    minmax2 = (w2.transpose(0, 1).flatten(1).amax(dim=1)
               - w2.transpose(0, 1).flatten(1).amin(dim=1))
    if torch.allclose(got, (torch.sqrt(minmax1 * minmax2) / minmax2).double(), rtol=1e-4):
        fail(name, "those use max - min as the range; for symmetric weights use max|w|")
    bad = int(torch.argmax((got - want).abs()))
    fail(name, f"scale {bad} is {float(got[bad]):.4g}, expected {float(want[bad]):.4g} "
                f"(r1 = {float(r1[bad]):.4g}, r2 = {float(r2[bad]):.4g})")


@needs_answer
def grade_flip_count(
    flips: int,
    weight: torch.Tensor,
    rounded: torch.Tensor,
    scale: torch.Tensor,
    qmin: int,
    qmax: int,
) -> None:
    """Exercise 07.2: the weights AdaRound rounds differently from round-to-nearest."""
    name = "Exercise 07.2"
    if isinstance(flips, bool) or not isinstance(flips, int | np.integer):
        fail(name, f"ex_flips must be an int (a count of weights), got {type(flips).__name__}")
    s = scale.reshape(-1, *[1] * (weight.dim() - 1))
    codes = torch.round(rounded / s)
    nearest = torch.clamp(torch.round(weight / s), qmin, qmax)
    want = int((codes != nearest).sum())
    if int(flips) == want:
        passed(name, f"{want} of {weight.numel()} weights ({want / weight.numel():.1%}) are "
                      "rounded away from nearest")
        return
    if int(flips) == weight.numel() - want:
        fail(name, "that counts the weights AdaRound rounds to nearest; count the others")
    unclamped = int((codes != torch.round(weight / s)).sum())
    if int(flips) == unclamped and unclamped != want:
        fail(name, "clamp round(w / s) to qmin..qmax first: a weight beyond the grid's end is "
                    "not a flip")
    if int(flips) == int((rounded != weight).sum()):
        fail(name, "that counts weights that changed at all; compare the codes "
                    "round(rounded / s) with round-to-nearest's, per channel")
    fail(name, f"{flips} is not the count: compare round(ex_rounded / s) with "
                "clamp(round(ex_weight / s), qmin, qmax), s the per-channel scale reshaped to "
                "broadcast over each output channel's weights")
