"""Activation outliers and SmoothQuant: move the quantization difficulty from activations to
weights, per input channel, without changing the float model.

Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training Quantization for Large Language
Models" (ICML 2023, arXiv:2211.10438). A few input channels of a transformer's Linears carry
activations 10-100x larger than the rest (measured here by `activation_stats`), so one int8
scale per tensor (or per token) rounds every other channel to a few levels. For a LayerNorm that
feeds Linears, dividing its channel j (weight and bias) by s_j and multiplying column j of each
Linear's weight by s_j leaves the outputs unchanged, and with

    s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha)

(X_j: the Linears' input channel j over calibration data, W: their weights side by side) the
activation and weight ranges of channel j become max|X_j|^(1-alpha) max|W_:,j|^alpha each;
alpha = 0.5 splits the difficulty evenly (the paper's default for most models). `w8a8`
simulates the int8 weights-and-activations model the paper deploys: per-channel int8 weights
(`qnb.rtn`) and per-tensor or per-token int8 inputs computed on the fly (dynamic).
`inject_outlier` makes a float-equivalent model with one outlier channel, for a small model that
has none of its own (the paper's outliers emerge in models of 6.7B parameters and up). It
multiplies a LayerNorm channel by a factor and divides the matching weight column by it: the
smoothing scale of that channel then grows by exactly the same factor, so SmoothQuant maps the
injected model back onto the smoothed original (an identity, not a repair).

`inject_first_token_outlier` makes an outlier that varies by token, which no per-channel scale
can undo: one LayerNorm channel is larger by `size` at the first position of every sequence only
(as the "massive activations" of large LLMs sit on the first token; Sun et al. 2024,
arXiv:2402.17762). The float model stays the same: a LayerNorm's normalized outputs sum to zero
over the channels, so the key and value rows of the attention's `qkv` Linear can be rewritten
to read the other channels instead of this one, and the first position's query does nothing in
causal attention (it attends to one key, with weight 1).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from qnb import checks, hooks, rtn
from qnb.calibration import input_batches

__all__ = [
    "ACTIVATION_GRANULARITIES",
    "ActivationStats",
    "activation_stats",
    "smoothing_scales",
    "smooth",
    "inject_outlier",
    "FirstTokenSpikeNorm",
    "inject_first_token_outlier",
    "quantize_activation",
    "W8A8Linear",
    "w8a8",
]

ACTIVATION_GRANULARITIES = ("tensor", "token")


@dataclass(frozen=True)
class ActivationStats:
    """The inputs of one Linear over the calibration data, flattened to (tokens, channels)."""

    name: str
    tokens: int
    channel_max: torch.Tensor  # max|x| per input channel
    kurtosis: float  # Pearson kurtosis of all input values (a normal distribution: 3)
    outlier_ratio: float  # largest channel max / median channel max

    def row(self) -> dict:
        """The scalar fields, for a `pandas.DataFrame` of many layers."""
        return {"name": self.name, "tokens": self.tokens, "channels": len(self.channel_max),
                "max": float(self.channel_max.max()), "kurtosis": self.kurtosis,
                "outlier_ratio": self.outlier_ratio}


class _Moments:
    """Running channel max and raw moments (float64) of one layer's inputs."""

    def __init__(self) -> None:
        self.count, self.top, self.sums = 0, None, torch.zeros(4, dtype=torch.float64)

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1])
        top = x.abs().amax(dim=0)
        self.top = top if self.top is None else torch.maximum(self.top, top)
        flat = x.to(torch.float64).flatten()
        self.count += len(x)
        self.sums += torch.stack([flat.pow(k).sum() for k in (1, 2, 3, 4)])

    def stats(self, name: str) -> ActivationStats:
        n = self.count * len(self.top)
        m1, m2, m3, m4 = (self.sums / n).tolist()
        var = m2 - m1 * m1
        central4 = m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1**4
        kurtosis = central4 / (var * var) if var > 0 else math.nan
        median = float(self.top.quantile(0.5))
        top = float(self.top.max())
        ratio = top / median if median > 0 else (math.inf if top > 0 else math.nan)
        return ActivationStats(name, self.count, self.top.clone(), kurtosis, ratio)


def _check_layer_names(model: nn.Module, layers: object) -> list[str]:
    linears = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    if layers is None:
        if not linears:
            raise ValueError(f"model ({type(model).__name__}) has no nn.Linear layer")
        return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if isinstance(layers, str) or not isinstance(layers, Iterable):
        raise TypeError(f"layers must be None (every Linear) or a list of Linear names, got "
                        f"{layers!r}")
    layers = list(layers)
    wrong = [n for n in layers if n not in linears]
    if wrong or not layers:
        raise ValueError(f"layers must name nn.Linear layers of the model, got {wrong or layers!r}"
                         f"; its Linears are {sorted(linears)[:8]}")
    return layers


def activation_stats(model: nn.Module, batches: Iterable, layers: Iterable[str] | None = None
                     ) -> list[ActivationStats]:
    """Per nn.Linear of `model` (or the Linears named in `layers`), in that order, the statistics
    of its inputs over `batches` (an iterable of model inputs, or of (input, target) pairs), all
    gathered in one pass. `model` is not changed.

    Taught in notebook 12 (llm_weight_quantization)."""
    checks.check_model(model)
    names = list(dict.fromkeys(_check_layer_names(model, layers)))
    batches = input_batches(batches)
    modules = dict(model.named_modules())
    moments = {name: _Moments() for name in names}
    watch = [(modules[name], lambda _m, args, name=name: moments[name].add(args[0]))
             for name in names]
    with hooks.attached(pre=watch):
        hooks.run(model, batches)
    silent = [name for name in names if moments[name].count == 0]
    if silent:
        raise ValueError(f"layers {silent} never ran on the calibration batches")
    return [moments[name].stats(name) for name in names]


def smoothing_scales(act_max: torch.Tensor, weight_max: torch.Tensor, alpha: float
                     ) -> torch.Tensor:
    """s_j = act_max_j^alpha / weight_max_j^(1 - alpha); 1 where either max is 0 (a dead
    channel stays as is).

    Taught in notebook 12 (llm_weight_quantization)."""
    alpha = _check_alpha(alpha)
    if act_max.shape != weight_max.shape:
        raise ValueError(f"act_max and weight_max must have one value per channel each, got "
                         f"{tuple(act_max.shape)} vs {tuple(weight_max.shape)}")
    alive = (act_max > 0) & (weight_max > 0)
    scales = torch.ones_like(act_max)
    scales[alive] = act_max[alive].pow(alpha) / weight_max[alive].pow(1 - alpha)
    return scales


def _check_alpha(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


def _check_pairs(model: nn.Module, pairs: object) -> list[tuple[str, list[str]]]:
    """(LayerNorm name, [Linear names]) pairs, each Linear taking the norm's channels."""
    if pairs is None:
        if not callable(getattr(model, "smooth_pairs", None)):
            raise ValueError(f"model ({type(model).__name__}) has no smooth_pairs() method: pass "
                             "pairs=[('norm name', ['linear name', ...]), ...]")
        pairs = model.smooth_pairs()
    if isinstance(pairs, str) or not isinstance(pairs, Iterable):
        raise TypeError(f"pairs must be a list of (norm, [linears]) name pairs, got {pairs!r}")
    modules = dict(model.named_modules())
    checked = []
    for pair in pairs:
        if not (isinstance(pair, list | tuple) and len(pair) == 2
                and not isinstance(pair[1], str) and isinstance(pair[1], Iterable)):
            raise ValueError(f"pairs must hold (norm name, [linear names]) pairs, got {pair!r}")
        norm_name, linear_names = pair[0], list(pair[1])
        norm = modules.get(norm_name) if isinstance(norm_name, str) else None
        if not isinstance(norm, nn.LayerNorm) or norm.weight is None:
            kind = type(norm).__name__ if norm is not None else "no such module"
            raise ValueError(f"pairs: {norm_name!r} ({kind}) must name an nn.LayerNorm with a "
                             "weight (elementwise_affine=True)")
        channels = norm.normalized_shape[-1]
        if len(norm.normalized_shape) != 1 or not linear_names:
            raise ValueError(f"pairs: {pair!r} needs a LayerNorm over one dimension and at least "
                             "one Linear")
        for name in linear_names:
            layer = modules.get(name) if isinstance(name, str) else None
            if not isinstance(layer, nn.Linear):
                kind = type(layer).__name__ if layer is not None else "no such module"
                raise ValueError(f"pairs: {name!r} ({kind}) fed by {norm_name!r} must name an "
                                 "nn.Linear")
            if layer.in_features != channels:
                raise ValueError(f"pairs: {name!r} has in_features={layer.in_features}, but "
                                 f"{norm_name!r} has {channels} channels")
        checked.append((norm_name, linear_names))
    if not checked:
        raise ValueError("pairs is empty: nothing to smooth")
    return checked


def smooth(model: nn.Module, batches: Iterable, alpha: float = 0.5,
           pairs: Iterable[tuple[str, list[str]]] | None = None) -> nn.Module:
    """An eval-mode copy of `model` smoothed by SmoothQuant: for each (LayerNorm, [Linears])
    pair (default: `model.smooth_pairs()`), the norm's weight and bias divided by s and the
    Linears' weight columns multiplied by s (`smoothing_scales` of the Linears' input maxima over
    `batches` and their weight column maxima). Float outputs equal the model's up to rounding.

    Taught in notebook 12 (llm_weight_quantization)."""
    checks.check_model(model)
    alpha = _check_alpha(alpha)
    found = _check_pairs(model, pairs)
    smoothed = copy.deepcopy(model).eval()
    first = [linears[0] for _, linears in found]  # a norm's output is all its Linears' input
    stats = {s.name: s for s in activation_stats(smoothed, batches, dict.fromkeys(first))}
    modules = dict(smoothed.named_modules())
    with torch.no_grad():
        for norm_name, linear_names in found:
            weights = torch.cat([modules[n].weight for n in linear_names])
            s = smoothing_scales(stats[linear_names[0]].channel_max, weights.abs().amax(dim=0),
                                 alpha)
            norm = modules[norm_name]
            norm.weight.div_(s)
            if norm.bias is not None:
                norm.bias.div_(s)
            for name in linear_names:
                modules[name].weight.mul_(s)
    return smoothed


def inject_outlier(model: nn.Module, norm: str, channel: int, factor: float,
                   linears: list[str]) -> nn.Module:
    """An eval-mode copy of `model` whose LayerNorm `norm` has channel `channel` (weight and bias)
    multiplied by `factor`, and whose `linears` (the Linears it feeds) have input column
    `channel` divided by it: the same float outputs, with an activation outlier channel.

    Taught in notebook 12 (llm_weight_quantization)."""
    checks.check_model(model)
    factor = checks.check_positive("factor", factor)
    if isinstance(linears, str):
        raise TypeError(f"linears must be a list of Linear names, got {linears!r}")
    ((norm, linears),) = _check_pairs(model, [(norm, linears)])
    channels = dict(model.named_modules())[norm].normalized_shape[-1]
    channel = checks.check_int("channel", channel, 0, channels - 1)
    changed = copy.deepcopy(model).eval()
    modules = dict(changed.named_modules())
    with torch.no_grad():
        modules[norm].weight[channel] *= factor
        if modules[norm].bias is not None:
            modules[norm].bias[channel] *= factor
        for name in linears:
            modules[name].weight[:, channel] /= factor
    return changed


class FirstTokenSpikeNorm(nn.LayerNorm):
    """A LayerNorm whose normalized input gets `spike` (one value per channel) added at the first
    position (dimension -2) of each sequence, before its weight and bias: the output there is
    larger by `spike * weight`. SmoothQuant's division of the weight and bias by s scales the
    spike with them."""

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__(norm.normalized_shape, eps=norm.eps,
                         elementwise_affine=norm.weight is not None, bias=norm.bias is not None)
        self.load_state_dict(norm.state_dict())
        self.register_buffer("spike", torch.zeros(norm.normalized_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"FirstTokenSpikeNorm needs a sequence dimension (..., time, "
                             f"channels), got shape {tuple(x.shape)}")
        n = F.layer_norm(x, self.normalized_shape, None, None, self.eps)
        first = torch.zeros(x.shape[-2], 1, dtype=n.dtype)
        first[0] = 1
        n = n + first * self.spike
        if self.weight is not None:
            n = n * self.weight
        return n + self.bias if self.bias is not None else n


def inject_first_token_outlier(model: nn.Module, norm: str, channel: int, size: float,
                               qkv: str) -> nn.Module:
    """An eval-mode copy of `model` whose LayerNorm `norm` outputs `size` more in channel
    `channel` at the first position of every sequence (a `FirstTokenSpikeNorm`), with the same
    float outputs (up to rounding) when `norm` feeds only `qkv`, the Linear of a causal
    attention whose output rows are queries, keys, values in thirds (as `qnb.lm.TinyLM`'s).

    How the float outputs stay the same: with x = weight * n + bias the LayerNorm's output and
    sum(n) = 0 over the channels, x_channel = -weight_c * sum_i (x_i - bias_i) / weight_i over the
    other channels + bias_c, so the key and value rows of `qkv` are rewritten to read the other
    channels instead (W -= W[:, c] * weight_c / weight; b += W[:, c] * weight_c *
    sum(bias / weight); their column `channel` becomes 0). Only the query rows still read the
    channel, and at the first position a causal attention's query attends to its own key alone,
    with weight 1, whatever its value. `size` 0 gives the rewritten model without the spike.

    Taught in notebook 12 (llm_weight_quantization)."""
    checks.check_model(model)
    if isinstance(size, bool) or not isinstance(size, numbers.Real) or not (
            math.isfinite(size) and size >= 0):
        raise ValueError(f"size must be a finite number >= 0, got {size!r}")
    ((norm, (qkv,)),) = _check_pairs(model, [(norm, [qkv])])
    modules = dict(model.named_modules())
    channels = modules[norm].normalized_shape[-1]
    if modules[qkv].out_features != 3 * channels:
        raise ValueError(f"qkv: {qkv!r} must output queries, keys and values ({3 * channels} "
                         f"features), got out_features={modules[qkv].out_features}")
    channel = checks.check_int("channel", channel, 0, channels - 1)
    gamma = modules[norm].weight.detach().to(torch.float64)
    if (gamma == 0).any():
        raise ValueError(f"{norm!r} has a zero weight in channel "
                         f"{int((gamma == 0).nonzero()[0])}: the other channels cannot stand in "
                         "for this one")
    changed = copy.deepcopy(model).eval()
    modules = dict(changed.named_modules())
    old = modules[norm]
    beta = (old.bias.detach().to(torch.float64) if old.bias is not None
            else torch.zeros_like(gamma))
    spiked = FirstTokenSpikeNorm(old)
    with torch.no_grad():
        spiked.spike[channel] = float(size) / float(gamma[channel])
        linear = modules[qkv]
        rows = slice(channels, 3 * channels)  # keys and values
        w = linear.weight[rows].to(torch.float64)
        column = w[:, channel].clone()
        w -= column[:, None] * (gamma[channel] / gamma)[None, :]
        w[:, channel] = 0
        linear.weight[rows] = w.to(linear.weight.dtype)
        if linear.bias is None:
            linear.bias = nn.Parameter(torch.zeros(linear.out_features,
                                                   dtype=linear.weight.dtype))
        shift = column * gamma[channel] * (beta / gamma).sum()
        linear.bias[rows] += shift.to(linear.bias.dtype)
    parent_name, _, attr = norm.rpartition(".")
    setattr(changed.get_submodule(parent_name) if parent_name else changed, attr, spiked)
    return changed


def quantize_activation(x: torch.Tensor, granularity: str = "tensor", bits: int = 8
                        ) -> torch.Tensor:
    """`x` fake-quantized on a symmetric signed grid: one scale max|x| / qmax for the whole tensor
    ("tensor") or per row of x flattened to (tokens, channels) ("token"); codes
    round-half-even(x / scale), clamped to qmin..qmax; an all-zero tensor or row stays zero.
    (The range comes from one `torch.aminmax` pass and the rounding runs in place on one new
    tensor: a W8A8 simulation spends most of its time here.)

    Taught in notebook 12 (llm_weight_quantization)."""
    checks.check_choice("granularity", granularity, ACTIVATION_GRANULARITIES)
    qmin, qmax = rtn.grid(bits)
    if granularity == "tensor":
        lo, hi = torch.aminmax(x)
    else:
        lo, hi = torch.aminmax(x, dim=-1, keepdim=True)
    top = torch.maximum(-lo, hi)
    scale = torch.where(top > 0, top / qmax, torch.ones_like(top))
    return torch.div(x, scale).round_().clamp_(qmin, qmax).mul_(scale)


class W8A8Linear(nn.Module):
    """A Linear with int8 per-channel RTN weights that fake-quantizes its input to int8 on the
    fly: one scale per call ("tensor") or per token ("token")."""

    def __init__(self, linear: nn.Linear, activations: str = "tensor") -> None:
        super().__init__()
        self.activations = checks.check_choice("activations", activations,
                                               ACTIVATION_GRANULARITIES)
        self.linear = copy.deepcopy(linear)
        with torch.no_grad():
            self.linear.weight.copy_(rtn.quantize_weight(linear.weight, 8, "channel"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(quantize_activation(x, self.activations))

    def extra_repr(self) -> str:
        return f"weights=int8 per channel, activations=int8 per {self.activations} (dynamic)"


def w8a8(model: nn.Module, *, keep: Iterable[str] = (), activations: str = "tensor"
         ) -> nn.Module:
    """An eval-mode copy of `model` simulating W8A8: every nn.Linear but those named in `keep`
    replaced by a `W8A8Linear` (int8 per-channel weights, int8 inputs scaled per tensor or per
    token on each call). `model` is not changed.

    Taught in notebook 12 (llm_weight_quantization)."""
    checks.check_model(model)
    checks.check_choice("activations", activations, ACTIVATION_GRANULARITIES)
    simulated = copy.deepcopy(model).eval()
    for name, layer in rtn.linear_layers(simulated, keep).items():
        parent_name, _, attr = name.rpartition(".")
        parent = simulated.get_submodule(parent_name) if name != "" else None
        wrapped = W8A8Linear(layer, activations)
        if parent is None:
            return wrapped.eval()
        setattr(parent, attr, wrapped)
    return simulated
