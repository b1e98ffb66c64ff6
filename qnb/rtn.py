"""Weight-only round-to-nearest (RTN) per tensor, per output channel or per group of input
columns, on a symmetric or an asymmetric grid: the baseline every LLM weight quantizer is compared
against.

One scale covers a group of weights: the whole tensor ("tensor"), one output row ("channel"), or,
for an int g, g consecutive input columns of one row (the "per-group" int4/int3 of llama.cpp, AWQ
and GPTQ; Frantar et al. 2023, arXiv:2210.17323, section 5).

- **Symmetric** (the default): a `bits`-wide signed code lies in qmin..qmax =
  -2^(bits-1)..2^(bits-1)-1; the scale is max|w| over the group / qmax, so the largest weight
  lands on +-qmax; codes are round-half-even(w / scale) clamped to qmin..qmax (the clamp only
  matters for other algorithms, such as GPTQ, that move weights before rounding). RTN's codes
  therefore never reach qmin: the grid has 2^bits - 1 usable levels (7 of 8 at 3 bits). An
  all-zero group gets scale 1 (its codes are 0). No zero points are stored.
- **Asymmetric** (`symmetric=False`, `asymmetric_codes`): unsigned codes 0..2^bits-1 and one
  integer zero point per group, as GPTQ's reference quantizer (`sym=False`) and AWQ's
  `pseudo_quantize_tensor` compute them: lo = min(min w, 0), hi = max(max w, 0) over the group,
  scale = (hi - lo) / (2^bits - 1), zero point = round(-lo / scale) (in 0..2^bits-1), codes
  clamp(round(w / scale) + zero point, 0, 2^bits-1), value (code - zero point) * scale. All
  2^bits levels span the group's own range. GPTQ's and AWQ's int4/int3 exports store these zero
  points packed at the weight's bit width (`qzeros`), one per group beside an fp16 scale: that
  is what `bits_per_weight(..., symmetric=False)` counts.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Iterable

import torch
from torch import nn

from qnb import checks

__all__ = [
    "GRANULARITIES",
    "check_granularity",
    "grid",
    "weight_scales",
    "column_scales",
    "round_codes",
    "quantize_codes",
    "asymmetric_codes",
    "quantize_weight",
    "bits_per_weight",
    "linear_layers",
    "model_bits_per_weight",
    "quantize_linears",
]

GRANULARITIES = ("tensor", "channel")  # or an int: the group size


def check_granularity(granularity: object, in_features: int | None = None,
                      layer: str | None = None) -> str | int:
    """"tensor", "channel" or a group size g >= 1 (an int dividing `in_features` if given;
    `layer` names the layer in the message)."""
    if isinstance(granularity, numbers.Integral) and not isinstance(granularity, bool):
        group = checks.check_int("granularity", granularity, 1)
        if in_features is not None and in_features % group:
            where = f"layer {layer!r} has" if layer else "the weight has"
            raise ValueError(
                f"granularity={group}: a group size must divide in_features, but {where} "
                f"in_features={in_features}"
            )
        return group
    if isinstance(granularity, str) and granularity in GRANULARITIES:
        return granularity
    raise ValueError(
        f"granularity must be 'tensor', 'channel' or a group size (an int >= 1), got "
        f"{granularity!r}"
    )


def grid(bits: int) -> tuple[int, int]:
    """(qmin, qmax) of a signed `bits`-wide code: -2^(bits-1), 2^(bits-1) - 1 (bits 2..8)."""
    bits = checks.check_bits("bits", bits, 2, 8)
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _check_weight(weight: object) -> torch.Tensor:
    checks.check_float_tensor("weight", weight)
    if weight.dim() != 2 or weight.numel() == 0:
        raise ValueError(f"weight must be a non-empty 2-D (out_features, in_features) tensor, "
                         f"got shape {tuple(weight.shape)}")
    return weight.detach()


def weight_scales(weight: torch.Tensor, bits: int, granularity: str | int) -> torch.Tensor:
    """The scales of `weight` (out_features, in_features): shape (1, 1) per tensor,
    (out_features, 1) per channel, (out_features, in_features / g) per group of g columns;
    max|w| of the group / qmax, 1 for an all-zero group. In the weight's dtype."""
    w = _check_weight(weight)
    qmax = grid(bits)[1]
    granularity = check_granularity(granularity, w.shape[1])
    if granularity == "tensor":
        top = w.abs().amax().reshape(1, 1)
    elif granularity == "channel":
        top = w.abs().amax(dim=1, keepdim=True)
    else:
        top = w.abs().reshape(w.shape[0], -1, granularity).amax(dim=2)
    return torch.where(top > 0, top / qmax, torch.ones_like(top))


def column_scales(scales: torch.Tensor, in_features: int) -> torch.Tensor:
    """`scales` of `weight_scales` repeated along the columns: one per weight (or per row
    and column for a (1, 1) or (rows, 1) scale, which broadcast)."""
    groups = scales.shape[1]
    if in_features % groups:
        raise ValueError(f"scales of shape {tuple(scales.shape)} do not fit in_features="
                         f"{in_features}")
    return scales.repeat_interleave(in_features // groups, dim=1) if groups > 1 else scales


def round_codes(weight: torch.Tensor, scales: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes (int8) of `weight` on the grid of `scales` (broadcastable to it):
    round-half-even(w / scale) clamped to qmin..qmax."""
    qmin, qmax = grid(bits)
    return torch.round(weight / scales).clamp_(qmin, qmax).to(torch.int8)


def quantize_codes(weight: torch.Tensor, bits: int, granularity: str | int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, scales) of RTN: int8 codes of `weight`'s shape and the scales of
    `weight_scales`; `codes * column_scales(scales, in_features)` is the quantized weight.

    Taught in notebook 12 (llm_weight_quantization)."""
    scales = weight_scales(weight, bits, granularity)
    codes = round_codes(weight.detach(), column_scales(scales, weight.shape[1]), bits)
    return codes, scales


def _groups(w: torch.Tensor, granularity: str | int) -> torch.Tensor:
    """`w` (rows, in_features) as (rows or 1, groups, group size): the weights each scale covers."""
    if granularity == "tensor":
        return w.reshape(1, 1, -1)
    if granularity == "channel":
        return w.unsqueeze(1)
    return w.reshape(w.shape[0], -1, granularity)


def asymmetric_codes(weight: torch.Tensor, bits: int, granularity: str | int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes, scales, zero_points) of RTN on the asymmetric grid (see the module docstring):
    unsigned codes 0..2^bits-1 (uint8, `weight`'s shape), the scales shaped as
    `weight_scales`'s (in the weight's dtype) and one integer zero point per scale (int16, same
    shape). `(codes - column_scales(zero_points)) * column_scales(scales)` is the quantized
    weight. An all-zero group gets scale 1 and zero point 0.

    Taught in notebook 12 (llm_weight_quantization)."""
    w = _check_weight(weight)
    bits = checks.check_bits("bits", bits, 2, 8)
    granularity = check_granularity(granularity, w.shape[1])
    levels = 2**bits - 1
    groups = _groups(w, granularity)
    lo = groups.amin(dim=2).clamp(max=0)
    hi = groups.amax(dim=2).clamp(min=0)
    span = hi - lo
    scales = torch.where(span > 0, span / levels, torch.ones_like(span))
    zero_points = torch.round(-lo / scales).clamp_(0, levels)
    full_scales = column_scales(scales, w.shape[1])
    full_zeros = column_scales(zero_points, w.shape[1])
    codes = (torch.round(w / full_scales) + full_zeros).clamp_(0, levels)
    return codes.to(torch.uint8), scales, zero_points.to(torch.int16)


def quantize_weight(weight: torch.Tensor, bits: int, granularity: str | int, *,
                    symmetric: bool = True) -> torch.Tensor:
    """`weight` rounded to its nearest point of the `bits`-wide grid (same shape and dtype): one
    scale per tensor ("tensor"), per output row ("channel") or per row and group of
    `granularity` input columns (an int); symmetric (signed codes, no zero point) or, with
    `symmetric=False`, asymmetric (one zero point per scale, `asymmetric_codes`).

    Taught in notebook 12 (llm_weight_quantization)."""
    _check_symmetric(symmetric)
    if not symmetric:
        codes, scales, zero_points = asymmetric_codes(weight, bits, granularity)
        n = weight.shape[1]
        return ((codes.to(weight.dtype) - column_scales(zero_points, n).to(weight.dtype))
                * column_scales(scales, n))
    codes, scales = quantize_codes(weight, bits, granularity)
    return codes.to(weight.dtype) * column_scales(scales, weight.shape[1])


def _check_symmetric(symmetric: object) -> bool:
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be True (signed codes, no zero point) or False (one zero "
                        f"point per scale), got {symmetric!r}")
    return symmetric


def bits_per_weight(in_features: int, out_features: int, bits: int, granularity: str | int,
                    scale_bits: int = 16, *, symmetric: bool = True) -> float:
    """Storage per weight of a quantized (out_features, in_features) Linear, scales included:
    bits + scale_bits / g per group of g, bits + scale_bits / in_features per channel,
    bits + scale_bits / (in_features * out_features) per tensor. Every scale is stored in
    `scale_bits` (fp16 by default, the tensor's single scale too). The symmetric grid stores no
    zero points; the asymmetric one (`symmetric=False`) stores one per scale, `bits` wide (as
    GPTQ's and AWQ's packed `qzeros`): bits + (scale_bits + bits) / g. Biases are not counted.

    Taught in notebook 12 (llm_weight_quantization)."""
    in_features = checks.check_int("in_features", in_features, 1)
    out_features = checks.check_int("out_features", out_features, 1)
    bits = checks.check_bits("bits", bits, 2, 8)
    scale_bits = checks.check_int("scale_bits", scale_bits, 1, 64)
    granularity = check_granularity(granularity, in_features)
    per_group = scale_bits + (0 if _check_symmetric(symmetric) else bits)
    per_scale = {"tensor": in_features * out_features, "channel": in_features}
    return bits + per_group / per_scale.get(granularity, granularity)


def linear_layers(model: nn.Module, keep: Iterable[str] = ()) -> dict[str, nn.Linear]:
    """{name: layer} of `model`'s nn.Linear layers, in definition order, except those named in
    `keep`; a ValueError if a name in `keep` is not a Linear of the model, or none is left."""
    checks.check_model(model)
    if isinstance(keep, str) or not isinstance(keep, Iterable):
        raise TypeError(f"keep must be an iterable of layer names, got {keep!r}")
    keep = list(keep)
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    if not linears:
        raise ValueError(f"model ({type(model).__name__}) has no nn.Linear layer to quantize")
    wrong = [n for n in keep if n not in linears]
    if wrong:
        modules = dict(model.named_modules())
        what = ", ".join(
            f"{n!r} ({type(modules[n]).__name__})" if isinstance(n, str) and n in modules
            else f"{n!r} (no such module)" for n in wrong
        )
        shown = ", ".join(repr(n) for n in list(linears)[:8]) + (", ..." if len(linears) > 8
                                                                  else "")
        raise ValueError(f"keep names layers that are not nn.Linear layers of the model: {what};"
                         f" its Linears are {shown}")
    chosen = {n: m for n, m in linears.items() if n not in keep}
    if not chosen:
        raise ValueError(f"keep={keep!r} keeps every nn.Linear of the model: none is left to "
                         "quantize")
    return chosen


def model_bits_per_weight(model: nn.Module, bits: int, granularity: str | int,
                          keep: Iterable[str] = (), scale_bits: int = 16, *,
                          symmetric: bool = True) -> float:
    """`bits_per_weight` averaged over the quantized Linears (all but `keep`), weighted by their
    weight counts; the kept layers and everything else (embeddings, norms, biases) are not
    counted. `symmetric=False` counts a zero point per scale.

    Taught in notebook 12 (llm_weight_quantization)."""
    layers = linear_layers(model, keep)
    total = cost = 0.0
    for name, layer in layers.items():
        check_granularity(granularity, layer.in_features, name)
        count = layer.in_features * layer.out_features
        total += count
        cost += count * bits_per_weight(layer.in_features, layer.out_features, bits,
                                        granularity, scale_bits, symmetric=symmetric)
    return cost / total


def quantize_linears(model: nn.Module, bits: int, granularity: str | int, *,
                     keep: Iterable[str] = (), symmetric: bool = True) -> nn.Module:
    """An eval-mode copy of `model` whose nn.Linear weights (all but the layers named in `keep`)
    are replaced by `quantize_weight(weight, bits, granularity, symmetric=symmetric)`; `model`
    is not changed.

    Taught in notebook 12 (llm_weight_quantization)."""
    grid(bits)
    _check_symmetric(symmetric)
    checks.check_model(model)
    quantized = copy.deepcopy(model).eval()
    layers = linear_layers(quantized, keep)
    for name, layer in layers.items():  # every layer checked before any is changed
        check_granularity(granularity, layer.in_features, name)
    with torch.no_grad():
        for layer in layers.values():
            layer.weight.copy_(quantize_weight(layer.weight, bits, granularity,
                                               symmetric=symmetric))
    return quantized
