"""Cross-layer equalization (CLE): rescale consecutive layers so that their weight ranges match.

Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias Correction" (ICCV
2019) and "A White Paper on Neural Network Quantization" (2021, section 4.1). For two layers A
and B with only a ReLU between them, ReLU(x / s) = ReLU(x) / s for s > 0, so dividing output
channel i of A (its weights and bias) by s_i and multiplying input channel i of B by s_i leaves
the model's outputs unchanged. With r1_i = max|A's output channel i| and r2_i = max|B's input
channel i|, the scale

    s_i = sqrt(r1_i * r2_i) / r2_i

gives both the same range sqrt(r1_i * r2_i), so one per-tensor scale fits every channel of both.
A layer in two pairs (B of one, A of the next) is rescaled again by the next pair, so the pairs
are equalized in turn until the scales stop changing. Pairs are found by tracing the model with
torch.fx; B may be a dense or a depthwise convolution (groups = in_channels). High-bias
absorption (the paper's second step) is not done here.

PyTorch's own `torch.ao.quantization._equalize.cross_layer_equalization` does the same for
dense pairs with the range max - min (tests compare the two on a pair where both apply).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import fx, nn

from qnb import checks, simulate

__all__ = ["CLEReport", "channel_ranges", "equalization_scales", "pairs", "equalize"]

# Modules and functions that may sit between A and B: positively homogeneous per channel
# (f(x / s) = f(x) / s for s > 0), so the rescaling passes through them.
_PASSING_MODULES = (nn.ReLU, nn.Identity, nn.Dropout)
_PASSING_FUNCTIONS = (torch.relu, nn.functional.relu)


@dataclass
class CLEReport:
    """What `equalize` did: the pairs, the sweeps over them, and the per-channel scales."""

    pairs: list[tuple[str, str]]
    sweeps: int
    scales: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)  # product per pair

    def __repr__(self) -> str:
        return f"CLEReport({len(self.pairs)} pairs equalized in {self.sweeps} sweeps)"


def channel_ranges(weight: torch.Tensor, axis: int, groups: int = 1) -> torch.Tensor:
    """max|w| per output channel (`axis` 0) or per input channel (`axis` 1) of a Conv2d/Linear
    weight; for a depthwise weight (`groups` = input channels) input channel i is its rows
    i*m .. (i+1)*m - 1 (m = output channels per group).

    Taught in notebook 07 (advanced_ptq)."""
    checks.check_choice("axis", axis, (0, 1))
    w = weight.detach().abs()
    if axis == 0:
        return w.flatten(1).amax(dim=1)
    if groups == 1:
        return w.transpose(0, 1).flatten(1).amax(dim=1)
    if w.shape[1] != 1:
        raise ValueError(
            f"groups={groups}: only dense (groups=1) and depthwise weights (one input channel "
            f"per group) are supported, got a weight of shape {tuple(weight.shape)}"
        )
    return w.reshape(groups, -1).amax(dim=1)


def equalization_scales(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """s_i = sqrt(r1_i * r2_i) / r2_i; 1 where either range is 0 (a dead channel stays as is).

    Taught in notebook 07 (advanced_ptq)."""
    if r1.shape != r2.shape:
        raise ValueError(f"r1 and r2 must have one range per channel each, got {r1.shape} vs "
                         f"{r2.shape}")
    if (r1 < 0).any() or (r2 < 0).any() or not (r1.isfinite().all() and r2.isfinite().all()):
        raise ValueError("r1 and r2 must be finite ranges >= 0 (max|w| per channel)")
    alive = (r1 > 0) & (r2 > 0)
    scales = torch.ones_like(r1)
    scales[alive] = torch.sqrt(r1[alive] * r2[alive]) / r2[alive]
    return scales


def _passes(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _PASSING_MODULES)
    if node.op == "call_function":
        return node.target in _PASSING_FUNCTIONS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _layer(node: fx.Node, modules: dict[str, nn.Module]) -> nn.Module | None:
    if node.op != "call_module":
        return None
    module = modules[node.target]
    return module if isinstance(module, nn.Conv2d | nn.Linear) else None


def _b_fits(a: nn.Module, b: nn.Module) -> bool:
    """B takes A's output channels as its input channels, densely or depthwise."""
    out_a = a.out_channels if isinstance(a, nn.Conv2d) else a.out_features
    if isinstance(b, nn.Linear):
        return b.in_features == out_a
    return b.in_channels == out_a and b.groups in (1, b.in_channels)


def pairs(model: nn.Module) -> list[tuple[str, str]]:
    """The (A, B) layer pairs CLE can equalize, in forward order: a Conv2d/Linear A whose output
    reaches exactly one Conv2d/Linear B through ReLU/Identity/Dropout only, B dense or depthwise.

    `model` is traced with torch.fx, so it must be traceable (the workbook's CNNs and
    torchvision's quantizable models are, after fusion). Taught in notebook 07 (advanced_ptq)."""
    model = checks.check_model(model)
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:
        raise ValueError(
            f"model cannot be traced with torch.fx, so its layer pairs cannot be found "
            f"({type(exc).__name__}: {exc}); pass pairs=[('a', 'b'), ...] to equalize"
        ) from None
    modules = dict(model.named_modules())
    found = []
    for node in graph.nodes:
        a = _layer(node, modules)
        if a is None:
            continue
        current = node
        while len(current.users) == 1:
            (current,) = current.users
            b = _layer(current, modules)
            if b is not None:
                if _b_fits(a, b):
                    found.append((node.target, current.target))
                break
            if not _passes(current, modules):
                break
    return found


def _equalize_pair(a: nn.Module, b: nn.Module) -> torch.Tensor:
    """Rescale A's output channels and B's input channels in place; return the scales."""
    groups = b.groups if isinstance(b, nn.Conv2d) else 1
    s = equalization_scales(channel_ranges(a.weight, 0), channel_ranges(b.weight, 1, groups))
    with torch.no_grad():
        a.weight.div_(s.reshape(-1, *[1] * (a.weight.dim() - 1)))
        if a.bias is not None:
            a.bias.div_(s)
        if groups == 1:
            b.weight.mul_(s.reshape(1, -1, *[1] * (b.weight.dim() - 2)))
        else:
            per_group = b.weight.shape[0] // groups
            b.weight.mul_(s.repeat_interleave(per_group).reshape(-1, 1, 1, 1))
    return s


def equalize(
    model: nn.Module,
    *,
    layer_pairs: list[tuple[str, str]] | None = None,
    max_sweeps: int = 100,
    tolerance: float = 1e-4,
) -> tuple[nn.Module, CLEReport]:
    """A fused (batch norm folded), equalized copy of `model`, and a report.

    Every pair of `layer_pairs` (default: `pairs()` of the fused copy) is equalized in turn;
    sweeps repeat until no scale moves by more than `tolerance` from 1, at most `max_sweeps`.
    The copy's float outputs equal the model's up to float rounding; `model` is not changed.

    Taught in notebook 07 (advanced_ptq)."""
    checks.check_eval_model(model, why="CLE folds batch norm with its running statistics")
    max_sweeps = checks.check_int("max_sweeps", max_sweeps, 1)
    tolerance = checks.check_positive("tolerance", tolerance)
    equalized = simulate.fused_copy(model)
    modules = dict(equalized.named_modules())
    found = pairs(equalized) if layer_pairs is None else _check_pairs(layer_pairs, modules)
    report = CLEReport(pairs=found, sweeps=0)
    for sweep in range(1, max_sweeps + 1):
        report.sweeps, moved = sweep, 0.0
        for a_name, b_name in found:
            s = _equalize_pair(modules[a_name], modules[b_name])
            total = report.scales.get((a_name, b_name), torch.ones_like(s))
            report.scales[(a_name, b_name)] = total * s
            moved = max(moved, float((s - 1).abs().max()))
        if moved <= tolerance:
            break
    return equalized, report


def _check_pairs(layer_pairs: object, modules: dict[str, nn.Module]) -> list[tuple[str, str]]:
    if not isinstance(layer_pairs, list | tuple):
        raise TypeError(f"layer_pairs must be a list of (a, b) layer names, got "
                        f"{type(layer_pairs).__name__}")
    checked = []
    for pair in layer_pairs:
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise ValueError(f"layer_pairs must hold (a, b) name pairs, got {pair!r}")
        a, b = (modules.get(n) if isinstance(n, str) else None for n in pair)
        layers = nn.Conv2d | nn.Linear
        if not (isinstance(a, layers) and isinstance(b, layers)):
            known = ", ".join(repr(n) for n, _ in simulate.weight_layers(
                next(iter(modules.values()))))
            raise ValueError(f"layer_pairs: {pair!r} must name two Conv2d/Linear layers of the "
                             f"fused model; its layers are {known}")
        if not _b_fits(a, b):
            raise ValueError(f"layer_pairs: {pair!r}: {pair[1]!r} does not take {pair[0]!r}'s "
                             "output channels as its input channels (densely or depthwise)")
        checked.append((pair[0], pair[1]))
    return checked
