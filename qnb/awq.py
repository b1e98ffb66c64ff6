"""AWQ, activation-aware weight quantization (Lin et al., MLSys 2024, arXiv:2306.00978): scale
weight column j of a Linear up by s_j before rounding and its input channel down by s_j, folded
into the operation before it, so that the columns whose inputs are large on average keep more
of their precision.

s = mean|X_j|^alpha over every calibration token of input channel j (clamped below at 1e-4),
divided by sqrt(max s * min s); alpha is searched on a grid of `n_grid` values i / n_grid for the
lowest mean squared error of a module's output on the calibration inputs, with the scaled
weights fake-quantized on the asymmetric grid per group (`qnb.rtn.quantize_weight(...,
symmetric=False)`). Written after the reference implementation, mit-han-lab/llm-awq
(`awq/quantize/auto_scale.py`: `get_act_scale`, `_search_module_scale`, `scale_ln_fcs`,
`scale_fc_fc`, `scale_gelu_fc`; `awq/quantize/qmodule.py`: `ScaledActivation`). As there, every
search runs on the float model and the scales are folded afterwards; the four places of a GELU
block are its first LayerNorm (into `attn.qkv`, judged on the attention's output), the value rows
of `attn.qkv` (into `attn.proj`), the second LayerNorm (into `mlp.fc1`, judged on the MLP's
output) and the GELU (into `mlp.fc2`, the activation divided by s). Here the final LayerNorm is
folded into the `head` as well (llm-awq leaves the head in 16 bits). Not done: llm-awq's second
step, the clipping search (`auto_clip.py`).

Taught in notebook 14 (llm_outliers_and_gguf).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from qnb import checks, rtn
from qnb.calibration import capture, input_batches

__all__ = ["act_scale", "awq_scales", "ScaledActivation", "search_scale", "fold", "places", "awq"]


def act_scale(x: torch.Tensor) -> torch.Tensor:
    """mean|x| of each input channel over every token of `x` (..., channels)."""
    checks.check_float_tensor("x", x)
    if x.dim() < 2 or x.numel() == 0:
        raise ValueError(f"x must be non-empty (tokens, channels), got shape {tuple(x.shape)}")
    return x.detach().abs().reshape(-1, x.shape[-1]).mean(dim=0)


def awq_scales(mean_abs: torch.Tensor, alpha: float) -> torch.Tensor:
    """AWQ's per-channel scales from mean|X_j|: mean^alpha clamped at 1e-4, over
    sqrt(max * min)."""
    checks.check_float_tensor("mean_abs", mean_abs)
    if mean_abs.dim() != 1 or (mean_abs < 0).any():
        raise ValueError(
            f"mean_abs must be a 1-D tensor of values >= 0 (mean |x| per channel), "
            f"got shape {tuple(mean_abs.shape)}"
        )
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    s = mean_abs.pow(alpha).clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


class ScaledActivation(nn.Module):
    """An activation whose output is divided by one scale per channel (AWQ's fold for a Linear
    that reads a GELU: the GELU is not homogeneous, so the division stays a separate op)."""

    def __init__(self, act: nn.Module, scales: torch.Tensor) -> None:
        super().__init__()
        self.act = act
        self.register_buffer("scales", scales.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x) / self.scales


def _quantizer(bits: int, group: int):
    return lambda w: rtn.quantize_weight(w, bits, group, symmetric=False)


def search_scale(
    module: nn.Module,
    linears: list[nn.Linear],
    x: torch.Tensor,
    bits: int,
    group: int,
    n_grid: int = 20,
) -> tuple[float, torch.Tensor, list[float]]:
    """(alpha, scales, losses): the grid search for the Linears `linears`, all reading the
    input `x` of `module` (which holds them): for alpha = i / n_grid, i = 0..n_grid-1, each
    Linear's weight becomes quantize(W * s) / s, and the loss is the mean squared change of
    `module(x)`; the first alpha of least loss wins. `module` comes back unchanged."""
    checks.check_float_tensor("x", x)
    n_grid = checks.check_int("n_grid", n_grid, 1)
    if not linears or not all(isinstance(f, nn.Linear) for f in linears):
        raise TypeError(f"linears must be a non-empty list of nn.Linear, got {linears!r}")
    wrong = [f for f in linears if f.in_features != x.shape[-1]]
    if wrong:
        raise ValueError(f"x has {x.shape[-1]} channels but a Linear reads {wrong[0].in_features}")
    for f in linears:
        rtn.check_granularity(group, f.in_features)
    quantize = _quantizer(bits, group)
    mean_abs = act_scale(x)
    saved = [f.weight.detach().clone() for f in linears]
    losses, best = [], (float("inf"), 0.0, None)
    with torch.no_grad():
        reference = module(x)
        try:
            for i in range(n_grid):
                alpha = i / n_grid
                s = awq_scales(mean_abs, alpha)
                for f, w in zip(linears, saved, strict=True):
                    f.weight.copy_(quantize(w * s) / s)
                loss = float((reference - module(x)).float().pow(2).mean())
                losses.append(loss)
                if loss < best[0]:
                    best = (loss, alpha, s)
        finally:
            for f, w in zip(linears, saved, strict=True):
                f.weight.copy_(w)
    return best[1], best[2], losses


def fold(prev: nn.Module, linears: list[nn.Linear], scales: torch.Tensor) -> nn.Module:
    """Fold `scales` in place: each of `linears` gets its columns multiplied by s, and `prev`,
    the operation whose output they read, divides its output by s: a LayerNorm its weight and
    bias, a Linear its last len(s) output rows and biases (the value rows of a fused q/k/v), a
    `ScaledActivation` its scales. The float function is unchanged (up to rounding). Returns
    `prev`."""
    checks.check_float_tensor("scales", scales)
    if scales.dim() != 1 or not (scales > 0).all():
        raise ValueError("scales must be a 1-D tensor of positive values")
    n = len(scales)
    if any(f.in_features != n for f in linears):
        raise ValueError(
            f"scales has {n} values, the Linears read {[f.in_features for f in linears]}"
        )
    with torch.no_grad():
        if isinstance(prev, nn.LayerNorm):
            prev.weight.div_(scales)
            if prev.bias is not None:
                prev.bias.div_(scales)
        elif isinstance(prev, nn.Linear):
            if prev.out_features < n:
                raise ValueError(f"prev has {prev.out_features} outputs, fewer than {n} scales")
            prev.weight[-n:].div_(scales[:, None])
            if prev.bias is not None:
                prev.bias[-n:].div_(scales)
        elif isinstance(prev, ScaledActivation):
            prev.scales.mul_(scales)
        else:
            raise TypeError(
                f"prev must be a LayerNorm, a Linear or a ScaledActivation, got "
                f"{type(prev).__name__}"
            )
        for f in linears:
            f.weight.mul_(scales)
    return prev


def places(model: nn.Module) -> list[tuple[str, list[str], str]]:
    """(previous op, [Linears], module judged) of each place AWQ scales in a qnb.lm.TinyLM."""
    from qnb.lm import TinyLM

    if not isinstance(model, TinyLM):
        raise TypeError(f"model must be a qnb.lm.TinyLM, got {type(model).__name__}")
    out = []
    for i in range(len(model.blocks)):
        b = f"blocks.{i}"
        out += [
            (f"{b}.norm1", [f"{b}.attn.qkv"], f"{b}.attn"),
            (f"{b}.attn.qkv", [f"{b}.attn.proj"], f"{b}.attn.proj"),
            (f"{b}.norm2", [f"{b}.mlp.fc1"], f"{b}.mlp"),
            (f"{b}.mlp.act", [f"{b}.mlp.fc2"], f"{b}.mlp.fc2"),
        ]
    return out + [("norm", ["head"], "head")]


def awq(
    model: nn.Module,
    batches: Iterable,
    bits: int,
    group: int,
    *,
    n_grid: int = 20,
    quantize: bool = True,
) -> nn.Module:
    """An eval-mode copy of a qnb.lm.TinyLM with AWQ's scales searched on `batches` (model
    inputs), folded, and every Linear quantized on the asymmetric grid of `bits` per group of
    `group` inputs (`quantize=False`: left in float, to see that folding changes nothing).
    `copy.awq_alphas`: {Linears: alpha chosen}. `model` is not changed."""
    rtn.grid(bits)
    quantize = checks.check_bool("quantize", quantize)
    spots = places(model)
    batches = input_batches(batches)
    for name, layer in rtn.linear_layers(model).items():
        rtn.check_granularity(group, layer.in_features, name)
    out = copy.deepcopy(model).eval()
    modules = dict(out.named_modules())
    found = []
    for prev, names, judged in spots:  # every search on the float model, as llm-awq
        x = capture(out, names[0], batches)
        alpha, s, _ = search_scale(
            modules[judged], [modules[n] for n in names], x, bits, group, n_grid
        )
        found.append((prev, names, alpha, s))
    for prev, names, _, s in found:
        if isinstance(modules[prev], nn.GELU):
            parent, _, attr = prev.rpartition(".")
            wrapped = ScaledActivation(modules[prev], torch.ones_like(s))
            setattr(out.get_submodule(parent), attr, wrapped)
            modules[prev] = wrapped
        fold(modules[prev], [modules[n] for n in names], s)
    with torch.no_grad():
        for layer in rtn.linear_layers(out).values() if quantize else []:
            layer.weight.copy_(rtn.quantize_weight(layer.weight, bits, group, symmetric=False))
    out.awq_alphas = {",".join(names): alpha for _, names, alpha, _ in found}
    return out
