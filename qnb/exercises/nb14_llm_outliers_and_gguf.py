"""Notebook 14 (llm_outliers_and_gguf): 14.1 GGUF's Q4_0 block encoder (core), 14.2 AWQ's search
for alpha.

14.1 compares with the `gguf` package's own `gguf.quants.quantize`; 14.2 with `qnb.awq`'s
search, itself checked against the reference implementation (tests/unit/test_awq.py)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from qnb.exercises.grading import fail, needs_answer, passed


def _q4_0_blocks(seed: int = 0) -> np.ndarray:
    """Blocks of 32 float32 values: ordinary ones, one whose largest magnitude is negative, one
    with +-m both in it (a code of 16 before the clamp), values exactly between two codes,
    an all-zero block. Other seeds draw other random blocks and move the special values."""
    rng = np.random.default_rng(14 + seed)
    blocks = rng.standard_normal((10, 32)) * np.exp2(rng.integers(-6, 3, (10, 1)))
    i = int(rng.integers(0, 32))
    blocks[1, i] = -6 * np.abs(blocks[1]).max()  # largest magnitude negative
    blocks[2, i] = 6 * np.abs(blocks[2]).max()  # largest positive, and its negative:
    blocks[2, (i + 5) % 32] = -blocks[2, i]  # x / d + 8.5 = 16.5 there, code 16 before the clamp
    step = float(rng.choice([0.5, 0.25, 1.0]))
    blocks[3] = step * (np.arange(32) % 16 - 8) + step / 2  # halfway between two codes
    blocks[3, 0] = -8 * step  # d = step
    blocks[4] = 0.0
    return blocks.astype(np.float32)


def _codes(block: np.ndarray, d: np.float32, rounding: str = "gguf") -> np.ndarray:
    inv = np.float32(0) if d == 0 else np.float32(1) / d
    v = block * inv
    if rounding == "gguf":
        return np.minimum(np.trunc(v + np.float32(8.5)), 15).astype(np.uint8)
    if rounding == "rint":
        return np.clip(np.rint(v) + 8, 0, 15).astype(np.uint8)
    return (np.trunc(v + np.float32(8.5))).astype(np.int64)  # no clamp


def _unpack(raw: np.ndarray) -> np.ndarray:
    return np.concatenate([raw[2:] & 0x0F, raw[2:] >> 4])


@needs_answer
def grade_q4_0_block(fn: Callable[[np.ndarray], np.ndarray], seed: int = 0) -> None:
    """Exercise 14.1: `fn(block)` returns the 18 bytes (uint8) of GGUF's Q4_0 encoding of 32
    float32 values, bit-exact with `gguf.quants.quantize(block, GGMLQuantizationType.Q4_0)`.
    Seeds other than 0 (the notebook's) draw other blocks."""
    import gguf

    name = "Exercise 14.1"
    blocks = _q4_0_blocks(seed)
    for k, block in enumerate(blocks):
        want = gguf.quants.quantize(block[None], gguf.GGMLQuantizationType.Q4_0).reshape(-1)
        try:
            got = np.asarray(fn(block.copy()))
        except NotImplementedError:
            raise
        except Exception as exc:
            fail(name, f"your encoder raised {type(exc).__name__} ({exc}) on block {k}")
        if got.dtype.kind not in "iu" or got.shape != (18,):
            fail(
                name,
                f"return 18 bytes (uint8): 2 of the float16 scale d, then 16 bytes of 4-bit "
                f"codes; got dtype {got.dtype}, shape {got.shape}",
            )
        if got.min() < 0 or got.max() > 255:
            fail(name, f"bytes are 0..255, got {int(got.min())}..{int(got.max())}")
        got = got.astype(np.uint8)
        if np.array_equal(got, want):
            continue
        m = block[np.abs(block).argmax()]
        d = np.float32(m / np.float32(-8))
        if not np.array_equal(got[:2], want[:2]):
            if np.array_equal(got[:2], np.float16(-d).reshape(1).view(np.uint8)):
                fail(
                    name,
                    "the scale's sign: d = m / -8, where m is the value of largest magnitude "
                    "with its sign (not max|x| / 8): the extreme value gets code 0, i.e. -8",
                )
            fail(
                name,
                f"block {k}: the first two bytes are d as float16 (d = m / -8, m the value of "
                f"largest magnitude, here {float(m):g}); got bytes {got[:2].tolist()}, "
                f"expected {want[:2].tolist()}",
            )
        codes = _codes(block, d)
        if np.array_equal(got[2:], codes[0::2] | (codes[1::2] << 4)):
            fail(
                name,
                "nibble order: byte i holds code i in its low 4 bits and code i + 16 in its "
                "high 4 bits (not codes 2i and 2i + 1)",
            )
        if (_codes(block, d, "raw") > 15).any() and np.array_equal(
            _unpack(got), np.clip(_codes(block, d, "raw"), 0, 255).astype(np.uint8) & 0x0F
        ):
            fail(
                name,
                "clamp the codes to 15: a value of -m (minus the value of largest magnitude) "
                "gives trunc(8 + 8.5) = 16, which does not fit in 4 bits",
            )
        if np.array_equal(_unpack(got), _codes(block, d, "rint")):
            fail(
                name,
                "rounding: gguf computes trunc(x / d + 8.5), which rounds halves up (toward "
                "+inf), not np.round / np.rint (halves to even); values halfway between two "
                "codes show it",
            )
        bad = int(np.nonzero(_unpack(got) != _unpack(want))[0][0])
        fail(
            name,
            f"block {k}, value {bad} ({float(block[bad]):g}): code {int(_unpack(got)[bad])}, "
            f"expected {int(_unpack(want)[bad])} = min(15, trunc(x / d + 8.5))",
        )
    passed(
        name,
        f"{len(blocks)} blocks bit-exact with gguf's Q4_0: 18 bytes per 32 values, 4.5 bits per "
        "weight",
    )


def _awq_case() -> tuple[nn.Linear, torch.Tensor]:
    gen = torch.Generator().manual_seed(145)
    fc = nn.Linear(32, 16)
    with torch.no_grad():
        fc.weight.copy_(torch.randn(16, 32, generator=gen) * 0.1)
        fc.bias.zero_()
    x = torch.randn(64, 32, generator=gen) * torch.linspace(0.3, 1.0, 32)
    x[:, [4, 19]] *= 6  # two salient channels: large on every token
    return fc, x


@torch.no_grad()
def _losses(fc: nn.Linear, x: torch.Tensor, quantize, criterion: str = "output") -> list[float]:
    """The loss of each alpha of the grid, judged by the layer's output (the right way), by its
    weights, or by its output without dividing the quantized weights by s."""
    from qnb import awq

    mean_abs, out = awq.act_scale(x), []
    for i in range(20):
        s = awq.awq_scales(mean_abs, i / 20)
        w = quantize(fc.weight * s) / (1 if criterion == "undivided" else s)
        if criterion == "weight":
            out.append(float((fc.weight - w).pow(2).mean()))
        else:
            out.append(float((fc(x) - nn.functional.linear(x, w, fc.bias)).pow(2).mean()))
    return out


@needs_answer
def grade_awq_search(fn: Callable[..., float]) -> None:
    """Exercise 14.2: `fn(layer, x, quantize)` returns AWQ's alpha for an nn.Linear `layer` with
    inputs `x`: of alpha = 0, 0.05, ..., 0.95, the first whose weights quantize(W * s) / s
    (s = `qnb.awq.awq_scales(qnb.awq.act_scale(x), alpha)`) change the layer's output on `x`
    least (mean squared error)."""
    from qnb import awq, rtn

    name = "Exercise 14.2"
    fc, x = _awq_case()

    def quantize(w):
        return rtn.quantize_weight(w, 3, 16, symmetric=False)

    want, _, losses = awq.search_scale(fc, [fc], x, 3, 16)
    before = fc.weight.detach().clone()
    got = fn(fc, x.clone(), quantize)
    if not torch.equal(fc.weight, before):
        with torch.no_grad():
            fc.weight.copy_(before)
        fail(name, "leave the layer's weight as it was: try each alpha on a copy (or restore it)")
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = float(got)
    if isinstance(got, bool) or not isinstance(got, int | float):
        fail(name, f"return alpha, one number, got {type(got).__name__}")
    if abs(got - want) < 1e-9:
        passed(
            name,
            f"alpha = {want:g}: the output error falls from {losses[0]:.3g} (alpha 0, plain "
            f"round-to-nearest) to {min(losses):.3g}",
        )
        return
    undivided = _losses(fc, x, quantize, "undivided")
    if abs(got - undivided.index(min(undivided)) / 20) < 1e-9:
        fail(
            name,
            f"alpha {got:g}: divide the quantized weights by s again, quantize(W * s) / s: the "
            "scale s only moves precision between columns (the input is divided by s), so "
            "without the division every alpha but 0 changes what the layer computes",
        )
    weight_losses = _losses(fc, x, quantize, "weight")
    if abs(got - weight_losses.index(min(weight_losses)) / 20) < 1e-9:
        fail(
            name,
            f"alpha {got:g} is the one whose weights change least; AWQ judges the layer's "
            f"output on the calibration inputs x (alpha {want:g}): what matters is W x, where "
            "the salient channels weigh more",
        )
    k = round(got * 20)
    if 0 <= k < 20 and abs(got - k / 20) < 1e-9:
        fail(
            name,
            f"alpha {got:g} changes the output by {losses[k]:.4g} (mean squared error), alpha "
            f"{want:g} by {min(losses):.4g}: compute quantize(W * s) / s for each alpha and "
            "keep the first of least output error",
        )
    fail(name, f"alpha must be one of the grid 0, 0.05, ..., 0.95 (i / 20), got {got!r}")
