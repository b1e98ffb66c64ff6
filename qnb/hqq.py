"""HQQ, half-quadratic quantization (Badri and Shaji 2023, mobiusml.github.io/hqq_blog): the zero
point of each group chosen without calibration data, by minimizing ||W - dequantize(quantize(W))||
in an l_p norm with p < 1 (which tolerates a few large errors, the outliers, to shrink the many
small ones).

Per group of `group` consecutive weights of a row: scale s = (2^bits - 1) / (max - min) (the grid
spans the group; clamped at 2e4), zero z = -min * s (rounded at 4 bits); codes
Q = clamp(round(W s + z), 0, 2^bits - 1), value (Q - z) / s. Then `iters` rounds of the
half-quadratic split W = W_r + W_e, with W_r = (Q - z) / s the quantized weights:
- W_e = shrink_p(W - W_r, beta): the generalized soft-threshold, the proximal step of the l_p
  norm: sign(x) relu(|x| - |x|^(p-1) / beta);
- z = mean over the group of (Q - (W - W_e) s): the least-squares zero for the rest;
- beta *= kappa; stop early when the mean |W - W_r| stops falling.
Only the zero point moves; the scale stays (HQQ's default, `optimize_weights_proximal_legacy`).
Written after torchao's copy of HQQ (`torchao/quantization/quant_primitives.py`:
`_choose_qparams_and_quantize_affine_hqq`, `optimize_weights_proximal_legacy`, `_shrink_lp_op`),
the reference answer the tests hold this to; as there, the codes are taken with the zero of the
last round (also when that round stopped the loop).

Taught in notebook 14 (llm_outliers_and_gguf).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from qnb import checks, rtn

__all__ = ["shrink", "hqq_codes", "hqq_weight", "hqq_linears"]


def shrink(x: torch.Tensor, beta: float, p: float) -> torch.Tensor:
    """The generalized soft-threshold (proximal operator of |x|^p / beta):
    sign(x) relu(|x| - |x|^(p-1) / beta); p = 1 is the plain soft-threshold at 1 / beta."""
    checks.check_float_tensor("x", x)
    beta = checks.check_positive("beta", beta)
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 1:
        raise ValueError(f"p must be a number in (0, 1], got {p!r}")
    if p == 1:
        return torch.sign(x) * torch.relu(x.abs() - 1.0 / beta)
    return torch.sign(x) * torch.relu(x.abs() - (1.0 / beta) * x.abs().pow(p - 1))


def hqq_codes(
    weight: torch.Tensor,
    bits: int,
    group: int,
    *,
    iters: int = 20,
    p: float = 0.7,
    beta: float = 10.0,
    kappa: float = 1.01,
    early_stop: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes uint8, scale, zero) of `weight` (out_features, in_features), each (out_features,
    in_features / group) for scale and zero, as HQQ optimizes them; value (codes - zero) * scale
    (this `scale` is 1/s of the module doc)."""
    checks.check_float_tensor("weight", weight)
    if weight.dim() != 2 or weight.numel() == 0:
        raise ValueError(f"weight must be a non-empty 2-D tensor, got shape {tuple(weight.shape)}")
    bits = checks.check_bits("bits", bits, 2, 8)
    group = rtn.check_granularity(checks.check_int("group", group, 1), weight.shape[1])
    iters = checks.check_int("iters", iters, 1)
    beta = checks.check_positive("beta", beta)
    kappa = checks.check_positive("kappa", kappa)
    early_stop = checks.check_bool("early_stop", early_stop)
    shrink(torch.zeros(1), beta, p)  # checks p
    w = weight.detach().float().reshape(-1, group)
    top = 2**bits - 1
    s = (top / (w.amax(dim=1, keepdim=True) - w.amin(dim=1, keepdim=True))).clamp(max=2e4)
    z = -w.amin(dim=1, keepdim=True) * s
    if bits == 4:  # as torchao (and AutoAWQ's quantizer) round it
        z = torch.round(z)
    best = 1e4
    for _ in range(iters):
        q = torch.round(w * s + z).clamp(0, top)
        w_r = (q - z) / s
        w_e = shrink(w - w_r, beta, p)
        z = torch.mean(q - (w - w_e) * s, dim=1, keepdim=True)
        beta *= kappa
        error = float(torch.abs(w - w_r).mean())
        if early_stop:
            if error < best:
                best = error
            else:
                break
    q = torch.round(w * s + z).clamp(0, top)
    rows = weight.shape[0]
    return (
        q.reshape(weight.shape).to(torch.uint8),
        (1.0 / s).reshape(rows, -1),
        z.reshape(rows, -1),
    )


def hqq_weight(weight: torch.Tensor, bits: int, group: int, **options) -> torch.Tensor:
    """`weight` quantized by HQQ (`hqq_codes`) and dequantized, same shape and dtype."""
    codes, scale, zero = hqq_codes(weight, bits, group, **options)
    n = weight.shape[1]
    w = (codes.float() - rtn.column_scales(zero, n)) * rtn.column_scales(scale, n)
    return w.to(weight.dtype)


def hqq_linears(model: nn.Module, bits: int, group: int, **options) -> nn.Module:
    """An eval-mode copy of `model` with every nn.Linear's weight replaced by `hqq_weight`; no
    data needed. `model` is not changed."""
    checks.check_model(model)
    out = copy.deepcopy(model).eval()
    layers = rtn.linear_layers(out)
    for name, layer in layers.items():
        rtn.check_granularity(group, layer.in_features, name)
    with torch.no_grad():
        for layer in layers.values():
            layer.weight.copy_(hqq_weight(layer.weight, bits, group, **options))
    return out
