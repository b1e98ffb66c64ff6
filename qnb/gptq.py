"""GPTQ: quantize a Linear's weight column by column, each column's rounding error compensated
by the columns not yet quantized, so that the layer's output on calibration inputs moves least.

Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers" (ICLR 2023, arXiv:2210.17323), after Optimal Brain Quantization (Frantar and
Alistarh 2022). For a layer y = W x with inputs X (tokens, in_features), the error
||(W - Q) X^T||_F^2 is a quadratic form in each row's error with the Hessian H = 2 X^T X / n.
Quantizing column j to q_j and moving the columns after it by

    delta = -(w_j - q_j) / [H_F^-1]_jj * [H_F^-1]_j,F     (F: the columns not yet quantized)

is the exact least-squares optimum of the remaining columns given the fixed ones. GPTQ does the
columns in a fixed order for every row at once, reads every [H_F^-1] it needs from one upper
Cholesky factor of H^-1, and applies the updates lazily, `block_size` columns at a time. H gets
`damp` * mean(diag H) on its diagonal (dampening); a column whose input is always 0 (diag 0) is
dead: its weights are set to 0. The grid is `qnb.rtn`'s symmetric one; per tensor and per
channel the scales are RTN's, fixed up front; per group of g columns a group's scales are taken
(max|w| / qmax per row) from the current, already error-updated weights when its first column is
reached. Written after the reference implementation, IST-DASLab/gptq (`gptq.py`,
`GPTQ.fasterquant`, `static_groups=False`, `actorder=False`); one difference: there a group that
starts inside a block takes its scales from the block's weights as they stood at the block's
start, here from their current values, so the result does not depend on `block_size`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from qnb import checks, rtn
from qnb.calibration import capture, forward_order, input_batches
from qnb.progress import bar_as_asked
from qnb.progress import check_enabled as check_progress

__all__ = ["hessian", "gptq_codes", "gptq_weight", "gptq"]


def hessian(inputs: torch.Tensor) -> torch.Tensor:
    """H = 2 X^T X / n of a Linear's inputs X (..., in_features) flattened to (n, in_features),
    in float64.

    Taught in notebook 12 (llm_weight_quantization)."""
    checks.check_float_tensor("inputs", inputs)
    if inputs.dim() < 2 or inputs.numel() == 0:
        raise ValueError(f"inputs must be a non-empty (tokens, in_features) tensor, got shape "
                         f"{tuple(inputs.shape)}")
    x = inputs.detach().reshape(-1, inputs.shape[-1]).to(torch.float64)
    return 2 * x.T @ x / len(x)


def _check_hessian(H: object, in_features: int) -> torch.Tensor:
    checks.check_float_tensor("H", H)
    if H.shape != (in_features, in_features):
        raise ValueError(f"H must be (in_features, in_features) = ({in_features}, "
                         f"{in_features}) for this weight, got shape {tuple(H.shape)}")
    return H.detach().to(torch.float64).clone()


def _inverse_factor(H: torch.Tensor, damp: float) -> torch.Tensor:
    """The upper Cholesky factor U of (H + damp mean(diag H) I)^-1 = U^T U."""
    H[range(len(H)), range(len(H))] += damp * float(H.diagonal().mean())
    try:
        inverse = torch.cholesky_inverse(torch.linalg.cholesky(H))
        return torch.linalg.cholesky(inverse, upper=True)
    except RuntimeError:  # torch.linalg.LinAlgError
        raise ValueError(f"H is not positive definite (after dampening with damp={damp}): use "
                         "more calibration tokens or a larger damp") from None


def _run(weight: torch.Tensor, H: torch.Tensor, bits: int, granularity: str | int, damp: float,
         block_size: int, columns: int | None
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W, codes, scales): W with its first `columns` (default all) columns quantized and the rest
    error-updated, in float64; the int8 codes (0 where not quantized); the scales (weight dtype)."""
    scales = rtn.weight_scales(weight, bits, granularity)  # checks weight, bits, granularity
    w = weight.detach()
    granularity = rtn.check_granularity(granularity, w.shape[1])
    rows, n = w.shape
    qmin, qmax = rtn.grid(bits)
    H = _check_hessian(H, n)
    damp = _check_damp(damp)
    block_size = checks.check_int("block_size", block_size, 1)
    stop = n if columns is None else checks.check_int("columns", columns, 1, n)
    W = w.to(torch.float64).clone()
    dead = H.diagonal() == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    U = _inverse_factor(H, damp)
    group = granularity if isinstance(granularity, int) else None
    if group is not None:  # filled in as the columns are reached
        scales = torch.ones(rows, n // group, dtype=w.dtype)
    codes = torch.zeros(rows, n, dtype=torch.int8)
    for i1 in range(0, stop, block_size):
        i2 = min(i1 + block_size, n)
        W1, U1 = W[:, i1:i2].clone(), U[i1:i2, i1:i2]
        errors = torch.zeros_like(W1)
        for i in range(min(i2, stop) - i1):
            j = i1 + i
            if group is not None and j % group == 0:
                current = torch.cat([W1[:, i:i + group],  # + the group's part after this block
                                     W[:, i2:j + group] - errors[:, :i] @ U[i1:j, i2:j + group]],
                                    dim=1)
                scales[:, j // group] = rtn.weight_scales(current, bits, "channel")[:, 0]
            scale = scales[:, 0 if group is None else j // group].to(torch.float64)
            code = torch.round(W1[:, i] / scale).clamp_(qmin, qmax)
            codes[:, j] = code.to(torch.int8)
            errors[:, i] = (W1[:, i] - code * scale) / U1[i, i]
            W1[:, i:] -= errors[:, i:i + 1] * U1[i:i + 1, i:]
            W1[:, i] = code * scale
        W[:, i1:i2] = W1
        W[:, i2:] -= errors @ U[i1:i2, i2:]
    return W, codes, scales


def _check_damp(damp: object) -> float:
    if damp == 0 and not isinstance(damp, bool):
        return 0.0
    return checks.check_positive("damp", damp)


def gptq_codes(weight: torch.Tensor, H: torch.Tensor, bits: int, granularity: str | int, *,
               damp: float = 0.01, block_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, scales) of GPTQ, shaped as `qnb.rtn.quantize_codes`'s: int8 codes of `weight`'s
    shape and the scales, (1, 1), (out_features, 1) or (out_features, in_features / g).

    Taught in notebook 12 (llm_weight_quantization)."""
    _, codes, scales = _run(weight, H, bits, granularity, damp, block_size, None)
    return codes, scales


def gptq_weight(weight: torch.Tensor, H: torch.Tensor, bits: int, granularity: str | int, *,
                damp: float = 0.01, block_size: int = 128, columns: int | None = None
                ) -> torch.Tensor:
    """`weight` (out_features, in_features) quantized by GPTQ with the Hessian `H` of its inputs
    (`hessian`), on `qnb.rtn`'s grid of `bits` and `granularity`, same shape and dtype. `damp`:
    dampening, a fraction of mean(diag H) added to the diagonal (0 allowed for a positive
    definite H); `block_size`: columns per lazy batch update (no effect on the result beyond
    float rounding). `columns`: quantize only the first `columns` columns; the rest come back
    error-updated but not quantized (the algorithm stopped midway, to look at or to test).

    Taught in notebook 12 (llm_weight_quantization)."""
    W, codes, scales = _run(weight, H, bits, granularity, damp, block_size, columns)
    if columns is None:
        full = rtn.column_scales(scales.to(torch.float64), W.shape[1])
        W = codes.to(torch.float64) * full
    return W.to(weight.dtype)


def gptq(model: nn.Module, batches: Iterable, bits: int, granularity: str | int, *,
         keep: Iterable[str] = (), damp: float = 0.01, block_size: int = 128,
         progress: bool | None = None) -> nn.Module:
    """An eval-mode copy of `model` whose nn.Linear weights (all but `keep`) are quantized by
    GPTQ, layer by layer in forward order: each layer's Hessian comes from its inputs on
    `batches` (an iterable of model inputs, or of (input, target) pairs) in the copy whose earlier
    layers are already quantized. A Linear the first batch never reaches gets plain RTN.
    `progress`: None follows QNB_PROGRESS, False hides the bar, True shows it. `model` is not
    changed.

    Taught in notebook 12 (llm_weight_quantization)."""
    checks.check_model(model)
    rtn.grid(bits)
    _check_damp(damp)
    checks.check_int("block_size", block_size, 1)
    check_progress(progress)
    batches = input_batches(batches)
    quantized = copy.deepcopy(model).eval()
    layers = rtn.linear_layers(quantized, keep)
    for name, layer in layers.items():
        rtn.check_granularity(granularity, layer.in_features, name)
    order = forward_order(quantized, layers, batches[0])
    bar = bar_as_asked(order, progress, desc="GPTQ", unit="layer", total=len(order))
    with torch.no_grad():
        for name in bar:
            layer = layers[name]
            H = hessian(capture(quantized, name, batches))
            layer.weight.copy_(gptq_weight(layer.weight, H, bits, granularity, damp=damp,
                                           block_size=block_size))
        for name in [n for n in layers if n not in order]:
            layers[name].weight.copy_(rtn.quantize_weight(layers[name].weight, bits,
                                                          granularity))
    return quantized
