"""AdaRound: learn, layer by layer, whether each weight rounds down or up.

Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization" (ICML 2020).
Round-to-nearest minimizes each weight's own error, but the loss depends on how the errors of
a layer's weights combine in its output. AdaRound keeps the grid (scale, qmin, qmax) and learns,
per weight, h in [0, 1] in

    w_soft = s * clamp(floor(w / s) + h(V), qmin, qmax),   h(V) = clamp(sigmoid(V)(zeta - gamma)
                                                                     + gamma, 0, 1)

(the rectified sigmoid, zeta = 1.1, gamma = -0.1, so h reaches 0 and 1 exactly), minimizing the
layer's output reconstruction error on calibration inputs plus a regularizer
reg * sum(1 - |2h - 1|^beta) that pushes every h to 0 or 1 as beta is annealed from 20 to 2
(none in the first `warm_start` of the iterations). At the end h is rounded (V >= 0: up), so the
result is an ordinary weight tensor on the grid: every code is floor(w / s) or floor(w / s) + 1,
clamped to qmin..qmax.

Layers are done in forward order. A layer's target is the float model's output on the float
model's input (after the layer's ReLU when it is fused with one); its prediction uses the inputs
the quantized model gives it, with the layers before it already rounded and activations
fake-quantized, so each layer also compensates the error arriving from below. The loss and the
beta schedule follow Qualcomm's AIMET (`aimet_torch/_base/adaround/adaround_loss.py`:
squared Frobenius norm over the channel dimension, averaged; cosine decay of beta after the warm
start); a slow test computes both with AIMET's own functions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

from qnb import calibration, checks, models, simulate
from qnb.progress import bar_as_asked
from qnb.progress import check_enabled as check_progress

__all__ = [
    "ZETA",
    "GAMMA",
    "AdaRoundSettings",
    "LayerResult",
    "rectified_sigmoid",
    "initial_v",
    "beta_at",
    "reconstruction_loss",
    "rounding_loss",
    "round_layer",
    "adaround",
]

ZETA, GAMMA = 1.1, -0.1  # the stretch of the rectified sigmoid (AdaRound's paper, AIMET)


@dataclass(frozen=True)
class AdaRoundSettings:
    """The optimization of one layer: AIMET's defaults but for the iterations and the learning
    rate (AIMET: 10,000 iterations at Adam's 1e-3; here fewer, larger steps, see `adaround`)."""

    iterations: int = 250
    batch_size: int = 32
    lr: float = 1e-2
    reg_param: float = 0.01
    beta_range: tuple[float, float] = (20.0, 2.0)
    warm_start: float = 0.2

    def __post_init__(self) -> None:
        checks.check_int("iterations", self.iterations, 1)
        checks.check_int("batch_size", self.batch_size, 1)
        checks.check_positive("lr", self.lr)
        checks.check_positive("reg_param", self.reg_param)
        if not (isinstance(self.beta_range, tuple) and len(self.beta_range) == 2):
            raise TypeError(f"beta_range must be a (start, end) pair, got {self.beta_range!r}")
        for beta in self.beta_range:
            checks.check_positive("beta_range", beta)
        if not (isinstance(self.warm_start, int | float) and 0 <= self.warm_start < 1):
            raise ValueError(f"warm_start must be a fraction in [0, 1), got {self.warm_start!r}")


@dataclass
class LayerResult:
    """What AdaRound did to one layer."""

    name: str
    weights: int
    flips: int  # codes that differ from round-to-nearest
    loss_nearest: float  # reconstruction loss with round-to-nearest, on all calibration inputs
    loss_adaround: float  # ... with the learned rounding
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)  # every 10th iteration

    @property
    def flipped(self) -> float:
        """The fraction of weights rounded the other way than to nearest."""
        return self.flips / self.weights


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    """h(V) = clamp(sigmoid(V) * (ZETA - GAMMA) + GAMMA, 0, 1). Taught in notebook 07."""
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)


def initial_v(rest: torch.Tensor) -> torch.Tensor:
    """The V with h(V) = `rest` (the fractional part w/s - floor(w/s)): AdaRound starts where the
    soft weight equals the float weight. Taught in notebook 07 (advanced_ptq)."""
    rest = rest.clamp(1e-6, 1 - 1e-6)
    return -torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1)


def beta_at(iteration: int, settings: AdaRoundSettings) -> float | None:
    """The regularizer's beta at `iteration`: None during the warm start, then a cosine decay
    from beta_range[0] to beta_range[1] (AIMET's `_compute_beta`). Taught in notebook 07."""
    start = settings.warm_start * settings.iterations
    if iteration < start:
        return None
    relative = (iteration - start) / (settings.iterations - start)
    first, last = settings.beta_range
    return last + 0.5 * (first - last) * (1 + math.cos(relative * math.pi))


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error summed over the channel dimension, averaged over the rest (AIMET's
    `compute_recon_loss`). Taught in notebook 07 (advanced_ptq)."""
    return (output - target).square().sum(dim=1).mean()


def rounding_loss(v: torch.Tensor, beta: float | None, reg_param: float) -> torch.Tensor:
    """reg_param * sum(1 - |2 h(V) - 1|^beta); 0 during the warm start (beta None)."""
    if beta is None:
        return torch.zeros(())
    return reg_param * (1 - (2 * rectified_sigmoid(v) - 1).abs().pow(beta)).sum()


def _channel_view(scale: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    if scale.numel() == 1:
        return scale.reshape(()).to(weight.dtype)
    return scale.reshape(-1, *[1] * (weight.dim() - 1)).to(weight.dtype)


def _activation(model: nn.Module, name: str):
    """ReLU when layer `name` is the first module of a fused layer+ReLU, else the identity."""
    parent_name, _, child = name.rpartition(".")
    parent = dict(model.named_modules()).get(parent_name)
    fused_relu = (
        child == "0"
        and isinstance(parent, nn.Sequential)
        and len(parent) > 1
        and isinstance(parent[1], nn.ReLU)
    )
    return torch.relu if fused_relu else (lambda x: x)


def round_layer(
    layer: nn.Module,
    scale: torch.Tensor,
    qmin: int,
    qmax: int,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    activation=lambda x: x,
    settings: AdaRoundSettings = AdaRoundSettings(),
    seed: int = 0,
    name: str = "layer",
) -> tuple[torch.Tensor, LayerResult]:
    """AdaRound of one float Conv2d/Linear `layer` on the symmetric grid `scale` (per output
    channel or one), qmin..qmax: the rounded weight (on the grid) and a `LayerResult`.

    `inputs` are the layer's inputs in the quantized model, `targets` the float model's outputs
    of this layer (after `activation`). Taught in notebook 07 (advanced_ptq)."""
    if not isinstance(layer, nn.Conv2d | nn.Linear):
        raise TypeError(f"layer must be an nn.Conv2d or nn.Linear, got {type(layer).__name__}")
    if len(inputs) != len(targets) or len(inputs) == 0:
        raise ValueError(f"inputs and targets must hold the same number (> 0) of samples, got "
                         f"{len(inputs)} and {len(targets)}")
    started = time.perf_counter()
    w = layer.weight.detach()
    s = _channel_view(scale, w)
    if not (s > 0).all():
        raise ValueError("scale must be > 0 for every channel")
    w_floor = torch.floor(w / s)
    v = initial_v(w / s - w_floor).requires_grad_()
    optimizer = torch.optim.Adam([v], lr=settings.lr)
    gen = torch.Generator().manual_seed(seed)

    def output(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return activation(functional_call(layer, {"weight": weight}, (x,)))

    def loss_of(codes: torch.Tensor) -> float:
        with torch.no_grad():
            return float(reconstruction_loss(output(codes * s, inputs), targets))

    history = []
    for it in range(settings.iterations):
        pick = torch.randint(len(inputs), (min(settings.batch_size, len(inputs)),), generator=gen)
        soft = s * torch.clamp(w_floor + rectified_sigmoid(v), qmin, qmax)
        recon = reconstruction_loss(output(soft, inputs[pick]), targets[pick])
        beta = beta_at(it, settings)
        reg = rounding_loss(v, beta, settings.reg_param)
        optimizer.zero_grad()
        (recon + reg).backward()
        optimizer.step()
        if it % 10 == 0 or it == settings.iterations - 1:
            undecided = float(((rectified_sigmoid(v) > 0.01) & (rectified_sigmoid(v) < 0.99))
                              .float().mean())
            history.append({"iteration": it, "reconstruction": float(recon.detach()),
                            "rounding": float(reg.detach()), "undecided": undecided})
    codes = torch.clamp(w_floor + (v.detach() >= 0).to(w.dtype), qmin, qmax)
    nearest = torch.clamp(torch.round(w / s), qmin, qmax)
    result = LayerResult(
        name=name,
        weights=w.numel(),
        flips=int((codes != nearest).sum()),
        loss_nearest=loss_of(nearest),
        loss_adaround=loss_of(codes),
        seconds=time.perf_counter() - started,
        history=history,
    )
    return codes * s, result


def adaround(
    model: nn.Module,
    calib: Iterable,
    *,
    weight_bits: int,
    act_bits: int | None = 8,
    granularity: str = "per_channel",
    act_method: str = "mse",
    settings: AdaRoundSettings = AdaRoundSettings(),
    num_batches: int | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[nn.Module, list[LayerResult]]:
    """A fake-quantized copy of `model` (as `simulate.simulate` makes it: fused, symmetric
    `weight_bits` weights on PyTorch's min/max grid, `act_bits` activations calibrated with
    `act_method`) whose weights are rounded by AdaRound instead of to nearest; one
    `LayerResult` per layer, in forward order.

    `calib` (a DataLoader or iterable of batches, no labels needed) calibrates the activations
    and is the reconstruction data. The optimization runs on `models.TRAIN_THREADS` (1) threads,
    as training does: the same rounding on any core count. `model` is not changed.

    The defaults (250 iterations of 32 samples, Adam at 1e-2) were picked on the 500
    validation digits (depthwise CNN, seeds 0-2, 256 calibration images, mean accuracy W4A8 /
    W3A8): 250 at 1e-2 97.5% / 97.1%, 500 at 1e-2 97.3% / 97.1%, 250 at 3e-2 97.5% / 96.8%,
    all within two digits of each other, so the cheapest.

    Taught in notebook 07 (advanced_ptq)."""
    checks.check_eval_model(model, why="AdaRound folds batch norm with its running statistics")
    weight_bits = checks.check_bits("weight_bits", weight_bits, 2, 8)
    if not isinstance(settings, AdaRoundSettings):
        raise TypeError(f"settings must be an AdaRoundSettings, got {type(settings).__name__}")
    seed = checks.check_int("seed", seed, 0)
    check_progress(progress)
    batches = calibration.input_batches(calib, num_batches)
    reference = simulate.fused_copy(model)
    sim, _ = simulate.simulate(model, weight_bits=weight_bits, act_bits=act_bits,
                               granularity=granularity, act_method=act_method, calib=batches)
    names = calibration.forward_order(reference, dict(simulate.weight_layers(reference)),
                                      batches[0])
    results = []
    bar = bar_as_asked(names, progress, desc=f"AdaRound W{weight_bits}", unit="layer")
    with models.on_train_threads():  # as training: the same rounding on any core count
        for index, name in enumerate(bar):
            results.append(_round_one(name, reference, sim, batches, weight_bits, granularity,
                                      settings, seed + index))
    return sim, results


def _round_one(name, reference, sim, batches, weight_bits, granularity, settings, seed):
    """AdaRound layer `name` of `sim` in place, against `reference`; its LayerResult."""
    layer = dict(reference.named_modules())[name]
    act = _activation(reference, name)
    with torch.no_grad():
        targets = act(calibration.capture(reference, name, batches, output=True))
    inputs = calibration.capture(sim, name, batches)
    scale, _, qmin, qmax = simulate.weight_qparams(layer.weight, weight_bits, granularity)
    rounded, result = round_layer(layer, scale, qmin, qmax, inputs, targets, activation=act,
                                  settings=settings, seed=seed, name=name)
    with torch.no_grad():
        dict(sim.named_modules())[name].weight.copy_(rounded)
    return result
