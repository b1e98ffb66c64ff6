"""Rotations (the QuaRot / SpinQuant idea): y = W x = (W Q)(Q^T x) for any orthogonal Q, so a
Linear can hold W Q and read Q^T x instead of W and x with the same float output. With Q a random
Hadamard matrix, a vector with one large entry becomes one whose entries all have about the same
size (|Q^T e_j| = 1/sqrt(n) in every entry): an outlier channel is spread over all of them,
and the weights' columns are mixed the same way, so both quantize on a finer grid.

- `hadamard(n)`: Sylvester's Hadamard matrix of order n (a power of two), over sqrt(n).
- `random_hadamard(n, seed)`: hadamard(n) times a diagonal of random signs (QuaRot's randomized
  Hadamard, Ashkboos et al. 2024, arXiv:2404.00456), orthogonal.
- `RotatingLinear`: a Linear whose weight is W Q (folded in) and whose input is multiplied by Q
  on the fly (QuaRot applies such an online Hadamard before `down_proj`, with a fast
  Walsh-Hadamard transform; here a matmul). With `act_bits` the rotated input is fake-quantized
  per token (`qnb.smoothquant.quantize_activation`), the W4A8 / W4A4 of QuaRot.
- `rotate(model, seed=..., act_bits=...)`: every nn.Linear of a copy wrapped so; `seed=None`
  wraps without rotating (the same activation quantization, the baseline).

QuaRot and SpinQuant also rotate the residual stream itself (folding Q into the embeddings and
every matrix that writes to it, after turning LayerNorm into RMSNorm), so most rotations cost
nothing at run time; here every Linear rotates its own input, the same arithmetic with an extra
matmul per Linear.

Taught in notebook 14 (llm_outliers_and_gguf).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from qnb import checks, rtn
from qnb.smoothquant import quantize_activation

__all__ = ["hadamard", "random_hadamard", "RotatingLinear", "rotate", "peak_to_rms"]


def hadamard(n: int) -> torch.Tensor:
    """Sylvester's Hadamard matrix of order `n` (a power of two) divided by sqrt(n): orthogonal,
    every entry +-1/sqrt(n) (float64)."""
    n = checks.check_int("n", n, 1)
    if n & (n - 1):
        raise ValueError(f"n must be a power of two (Sylvester's construction), got {n}")
    h = torch.ones(1, 1, dtype=torch.float64)
    while len(h) < n:
        h = torch.cat([torch.cat([h, h], dim=1), torch.cat([h, -h], dim=1)])
    return h / n**0.5


def random_hadamard(n: int, seed: int = 0) -> torch.Tensor:
    """hadamard(n) with its rows multiplied by random signs (a generator seeded with `seed`):
    orthogonal (float64)."""
    seed = checks.check_int("seed", seed, 0)
    h = hadamard(n)
    gen = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (n,), generator=gen, dtype=torch.float64) * 2 - 1
    return signs[:, None] * h


def peak_to_rms(x: torch.Tensor) -> float:
    """max|x| / rms(x) over the last dimension, the mean over the rows: how far the largest entry
    of a token sticks out (sqrt(n) for a one-hot row, about 3-4 for a Gaussian one)."""
    checks.check_float_tensor("x", x)
    x = x.detach().reshape(-1, x.shape[-1]).double()
    rms = x.pow(2).mean(dim=1).sqrt().clamp(min=1e-30)
    return float((x.abs().amax(dim=1) / rms).mean())


class RotatingLinear(nn.Module):
    """A Linear y = (W Q)(x Q) + b: `linear` holds W Q, the input is rotated on each call, then
    fake-quantized per token to `act_bits` (None: float). `rotation` None: no rotation."""

    def __init__(
        self, linear: nn.Linear, rotation: torch.Tensor | None, act_bits: int | None = None
    ) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        self.act_bits = checks.check_optional_bits("act_bits", act_bits, 2, 8)
        self.linear = copy.deepcopy(linear)
        if rotation is not None:
            n = linear.in_features
            checks.check_float_tensor("rotation", rotation)
            if rotation.shape != (n, n):
                raise ValueError(
                    f"rotation must be ({n}, {n}) for this Linear, got {tuple(rotation.shape)}"
                )
            with torch.no_grad():
                w = linear.weight.detach().double() @ rotation.double()
                self.linear.weight.copy_(w.to(linear.weight.dtype))
            self.register_buffer("rotation", rotation.to(linear.weight.dtype))
        else:
            self.rotation = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rotation is not None:
            x = x @ self.rotation
        if self.act_bits is not None:
            x = quantize_activation(x, "token", self.act_bits)
        return self.linear(x)

    def extra_repr(self) -> str:
        return (
            f"rotated={self.rotation is not None}, activations="
            f"{'float' if self.act_bits is None else f'int{self.act_bits} per token'}"
        )


def rotate(model: nn.Module, *, seed: int | None = 0, act_bits: int | None = None) -> nn.Module:
    """An eval-mode copy of `model` whose every nn.Linear is a `RotatingLinear`: rotated by a
    random Hadamard matrix of its input width (seeded with `seed` + the layer's index; `seed`
    None: not rotated), its input fake-quantized per token to `act_bits` (None: float). The
    weights inside (`<name>.linear`) stay float: quantize them with `qnb.rtn` or `qnb.gptq`.
    `model` is not changed."""
    checks.check_model(model)
    checks.check_optional_bits("act_bits", act_bits, 2, 8)
    if seed is not None:
        seed = checks.check_int("seed", seed, 0)
    out = copy.deepcopy(model).eval()
    for i, (name, layer) in enumerate(rtn.linear_layers(out).items()):
        q = None if seed is None else random_hadamard(layer.in_features, seed + i)
        parent, _, attr = name.rpartition(".")
        setattr(
            out.get_submodule(parent) if parent else out, attr, RotatingLinear(layer, q, act_bits)
        )
    return out
