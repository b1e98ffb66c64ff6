"""Simulated quantization of a whole model: an ordinary float model whose weights and
activations are rounded to a `bits`-wide integer grid and back (fake quantization).

Weights get their qparams from torch.ao's (per-channel) min/max observers and are replaced
by `torch.fake_quantize_per_*_affine` of themselves. Activations are observed with a range
estimator from `qnb.estimators` during calibration (torch.ao's eager `prepare` puts the
observers exactly where an int8 model would quantize), then each observer is swapped for a
fixed fake-quantize step. The result runs at fp32 speed; it measures accuracy, not latency.

Symmetric weight scales follow one of three rules (`SCALE_RULES`, the `scale_rule` argument):
"minmax" is PyTorch's: scale max|w| / ((qmax - qmin) / 2) on the grid qmin..qmax, so at low
bits the largest positive weight (at +(qmax + 1/2) steps) is clipped by half a step; "narrow"
drops the lowest level (grid -qmax..qmax) and divides by qmax, so the largest weight lands on a
level; "mse" keeps the grid qmin..qmax and picks, per channel (or tensor), the scale among
`MSE_FRACTIONS` * max|w| / qmax (and PyTorch's) with the smallest squared weight error.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.ao.quantization import QConfig, prepare
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

from qnb import affine, checks, eager, estimators
from qnb.calibration import calibrate

GRANULARITIES = ("per_tensor", "per_channel")
SCALE_RULES = ("minmax", "narrow", "mse")
MSE_FRACTIONS = torch.linspace(0.2, 1.0, 81)  # candidate scales of "mse", in max|w| / qmax


@dataclass
class LayerReport:
    """How one layer's weights were quantized, and what it cost."""

    name: str
    kind: str
    bits: int | None
    granularity: str
    weight_sqnr_db: float


class FakeQuant(nn.Module):
    """Fixed per-tensor fake quantization: round to the grid of (scale, zero_point), clamp."""

    is_fake_quant = True  # `models.predict` runs fake-quantized models in cache-sized passes

    def __init__(self, scale: float, zero_point: int, quant_min: int, quant_max: int) -> None:
        super().__init__()
        self.scale, self.zero_point = float(scale), int(zero_point)
        self.quant_min, self.quant_max = int(quant_min), int(quant_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or (x.requires_grad and torch.is_grad_enabled()):
            return torch.fake_quantize_per_tensor_affine(  # with its straight-through gradient
                x, self.scale, self.zero_point, self.quant_min, self.quant_max
            )
        # Evaluation: the arithmetic of torch's kernel (x * float32(1 / scale), round half to
        # even, + zero point, clamp, - zero point, * scale) on one buffer, without the mask the
        # kernel also writes; the zero point is folded into the clamp bounds (integers in
        # float32: exact). About 2x faster, bit-identical (tests/unit/test_simulate.py).
        scale = np.float32(self.scale)
        inverse = float(np.float32(1.0) / scale)
        low, high = self.quant_min - self.zero_point, self.quant_max - self.zero_point
        return torch.mul(x, inverse).round_().clamp_(low, high).mul_(float(scale))

    def extra_repr(self) -> str:
        return f"scale={self.scale:.4g}, zero_point={self.zero_point}, " + (
            f"range=[{self.quant_min}, {self.quant_max}]"
        )


def fused_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model`, fused (batch norm folded): its `fuse_groups()` (the
    workbook's models) or `fuse_model()` (torchvision's quantizable models); a model that
    holds fused modules already is only copied.

    Taught in notebook 02 (per_channel_weights)."""
    return eager.fuse(copy.deepcopy(model).eval()).eval()  # fused modules start in train mode


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Conv/Linear layers holding weights, in definition order, with their names.

    Taught in notebook 02 (per_channel_weights)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def _weight_range(bits: int) -> tuple[int, int, torch.dtype]:
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return qmin, qmax, torch.qint8 if bits <= 8 else torch.qint32


def _rule_scales(flat: torch.Tensor, bits: int, scale_rule: str) -> tuple[torch.Tensor, int]:
    """Per-row scales of the "narrow" or "mse" rule for `flat` (rows: channels), and the lowest
    level of its grid."""
    qmin, qmax, _ = _weight_range(bits)
    top = flat.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(flat.dtype).tiny)
    if scale_rule == "narrow":
        return top / qmax, -qmax
    fractions = torch.cat([MSE_FRACTIONS, torch.tensor([qmax / (qmax + 0.5)])])  # + torch's
    ratio = flat / top  # each row in [-1, 1]: its squared error ranks scales as the row's does
    buffer, errors = torch.empty_like(ratio), []
    for fraction in fractions.tolist():
        steps = qmax / fraction  # steps per max|w|
        torch.mul(ratio, steps, out=buffer)
        buffer.round_().clamp_(qmin, qmax).div_(steps).sub_(ratio)
        errors.append(buffer.square_().sum(dim=1))
    best = fractions[torch.stack(errors).argmin(dim=0)].unsqueeze(1)
    return best * top / qmax, qmin


def fake_quantize_weight(
    weight: torch.Tensor,
    bits: int,
    granularity: str = "per_channel",
    symmetric: bool = True,
    scale_rule: str = "minmax",
) -> torch.Tensor:
    """`weight` rounded to a signed `bits`-wide grid, per output channel or per tensor.

    `scale_rule` (symmetric only for "narrow" and "mse"): how the scale is chosen, see
    `SCALE_RULES` in the module docstring; "minmax" is PyTorch's observers.

    Taught in notebook 02 (per_channel_weights)."""
    bits = checks.check_bits("bits", bits)
    checks.check_choice("granularity", granularity, GRANULARITIES)
    checks.check_choice("scale_rule", scale_rule, SCALE_RULES)
    if scale_rule != "minmax":
        if not symmetric:
            raise ValueError(
                f"scale_rule={scale_rule!r} is a symmetric rule; use symmetric=True, or "
                "scale_rule='minmax' for affine weights"
            )
        per_channel = granularity == "per_channel"
        flat = weight.detach().reshape(len(weight) if per_channel else 1, -1)
        scale, qmin = _rule_scales(flat, bits, scale_rule)
        qmax = _weight_range(bits)[1]
        if per_channel:  # torch's own kernels round, as for "minmax": only the scale differs
            zero = torch.zeros(len(weight), dtype=torch.int32)
            return torch.fake_quantize_per_channel_affine(
                weight, scale.flatten().float(), zero, 0, qmin, qmax
            )
        return torch.fake_quantize_per_tensor_affine(weight, float(scale), 0, qmin, qmax)
    scale, zp, qmin, qmax = weight_qparams(weight, bits, granularity, symmetric)
    if granularity == "per_channel":
        return torch.fake_quantize_per_channel_affine(weight, scale, zp, 0, qmin, qmax)
    return torch.fake_quantize_per_tensor_affine(weight, float(scale), int(zp), qmin, qmax)


def weight_qparams(
    weight: torch.Tensor, bits: int, granularity: str = "per_channel", symmetric: bool = True
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """`(scale, zero_point, qmin, qmax)` of PyTorch's min/max weight observers ("minmax" rule) on
    a signed `bits`-wide grid: one scale and zero point per output channel, or one in all.

    Taught in notebook 07 (advanced_ptq: AdaRound rounds on this grid)."""
    bits = checks.check_bits("bits", bits)
    checks.check_choice("granularity", granularity, GRANULARITIES)
    qmin, qmax, dtype = _weight_range(bits)
    if granularity == "per_channel":
        scheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
        obs = PerChannelMinMaxObserver(0, dtype, scheme, quant_min=qmin, quant_max=qmax)
    else:
        scheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
        obs = MinMaxObserver(dtype=dtype, qscheme=scheme, quant_min=qmin, quant_max=qmax)
    obs(weight.detach())
    scale, zp = obs.calculate_qparams()
    return scale, zp.int(), qmin, qmax


def _quantize_weights_(
    model: nn.Module, bits: int | None, granularity: str, symmetric: bool, scale_rule: str
) -> list[LayerReport]:
    reports = []
    for name, layer in weight_layers(model):
        w = layer.weight.detach()
        w_hat = (
            w if bits is None else fake_quantize_weight(w, bits, granularity, symmetric, scale_rule)
        )
        sqnr = affine.sqnr_db(w.numpy(), w_hat.numpy())
        with torch.no_grad():
            layer.weight.copy_(w_hat)
        gran = "float" if bits is None else granularity
        reports.append(LayerReport(name, type(layer).__name__, bits, gran, sqnr))
    return reports


def freeze_activations(model: nn.Module) -> dict[str, FakeQuant]:
    """Swap every calibrated activation observer for a fixed FakeQuant; return them by name."""
    swapped = {}
    for name, module in model.named_modules():
        obs = getattr(module, "activation_post_process", None)
        if isinstance(obs, nn.Module) and hasattr(obs, "calculate_qparams"):
            scale, zp = obs.calculate_qparams()
            module.activation_post_process = FakeQuant(scale, zp, obs.quant_min, obs.quant_max)
            swapped[name or "input"] = module.activation_post_process
    return swapped


def activation_qconfig(method: str, bits: int, **kwargs) -> QConfig:
    """A qconfig whose activation observer is `method` at `bits` (weights: not observed)."""
    estimators.observer(method, bits, **kwargs)  # validate now, not deep inside prepare()
    act = estimators.observer_factory(method, bits, **kwargs)
    return QConfig(activation=act, weight=MinMaxObserver.with_args(dtype=torch.qint8))


def simulate(
    model: nn.Module,
    *,
    weight_bits: int | None = 8,
    act_bits: int | None = None,
    granularity: str = "per_channel",
    symmetric: bool = True,
    scale_rule: str = "minmax",
    act_method: str = "minmax",
    input_method: str = "minmax",
    calib: Iterable | None = None,
    num_batches: int | None = None,
    **estimator_kwargs,
) -> tuple[nn.Module, list[LayerReport]]:
    """A fake-quantized float copy of `model`, and a per-layer report of its weights.

    `weight_bits`/`act_bits` of None leave weights/activations in float. With `act_bits`,
    `calib` (a DataLoader or iterable of batches) is run through the model first so that
    the `act_method` estimator sees real activations. The model input (its QuantStub) uses
    `input_method`: an image's range is known, and a spiky pixel histogram (the background)
    misleads the clipping estimators. `scale_rule`: how the weight scales are chosen
    ("minmax", PyTorch's; "narrow"; "mse"; see the module docstring). The caller's model is not
    changed.

    Taught in notebook 02 (per_channel_weights).
    """
    weight_bits = checks.check_optional_bits("weight_bits", weight_bits)
    act_bits = checks.check_optional_bits("act_bits", act_bits)
    checks.check_choice("granularity", granularity, GRANULARITIES)
    checks.check_choice("scale_rule", scale_rule, SCALE_RULES)
    if scale_rule != "minmax" and not symmetric:
        raise ValueError(
            f"scale_rule={scale_rule!r} is a symmetric rule; use symmetric=True, or "
            "scale_rule='minmax' for affine weights"
        )
    if act_bits is not None and calib is None:
        raise ValueError("act_bits needs calib: a DataLoader or iterable of calibration batches")
    # channels-last: the layout oneDNN's convolutions run fastest in on CPUs (3x here on the
    # workbook's CNNs); the sums are ordered differently, so outputs differ from the
    # contiguous layout in the last float bits
    sim = fused_copy(model).to(memory_format=torch.channels_last)
    report = _quantize_weights_(sim, weight_bits, granularity, symmetric, scale_rule)
    if act_bits is not None:
        sim.qconfig = activation_qconfig(act_method, act_bits, **estimator_kwargs)
        if hasattr(sim, "quant"):
            sim.quant.qconfig = activation_qconfig(input_method, act_bits)
        if hasattr(sim, "dequant"):
            sim.dequant.qconfig = None  # its output is float in a real int8 model too
        prepare(sim, inplace=True)
        calibrate(sim, calib, num_batches, desc=f"calibrating ({act_method})")
        sim.activation_ranges = freeze_activations(sim)
    return sim.eval(), report
