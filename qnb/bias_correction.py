"""Empirical bias correction: fold each layer's mean output error into its bias.

Rounding the weights of a layer shifts the mean of its outputs: E[W_q x] - E[W x] = (W_q - W)
E[x] is not zero when the rounding errors of a channel do not cancel against its mean input (a
ReLU's output has a positive mean). Nagel et al., "Data-Free Quantization Through Weight
Equalization and Bias Correction" (ICCV 2019, section 4.2, the empirical variant): run
calibration images through the float and the quantized model, and subtract from each output
channel's bias the difference of the two means. Layers are corrected in forward order, each
seeing the inputs the already-corrected layers before it produce, so later layers also absorb
the mean error that reaches them.

PyTorch ships a version for eager int8 models built on its numeric suite
(`torch.ao.quantization._correct_bias.bias_correction`); this one works on the float models
of `qnb.simulate` (fake-quantized copies), so its effect can be measured at any bit width.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from qnb import calibration, checks, hooks, simulate
from qnb.progress import bar_as_asked
from qnb.progress import check_enabled as check_progress

__all__ = ["channel_means", "output_means", "correct_bias"]


def channel_means(outputs: torch.Tensor) -> torch.Tensor:
    """The mean of each channel (dimension 1) of a layer's outputs, over every other dimension.

    Taught in notebook 07 (advanced_ptq)."""
    if outputs.dim() < 2:
        raise ValueError(f"outputs must have a channel dimension (N, C, ...), got shape "
                         f"{tuple(outputs.shape)}")
    return outputs.transpose(0, 1).flatten(1).mean(dim=1)


def output_means(model: nn.Module, names: list[str], batches: list[torch.Tensor]
                  ) -> dict[str, torch.Tensor]:
    """`channel_means` of the outputs of layers `names` over `batches`, in one pass, taken
    before any other forward hook of a layer (an activation quantizer) changes them.

    Taught in notebook 07 (advanced_ptq)."""
    layers = dict(model.named_modules())
    sums: dict[str, list] = {n: [0.0, 0] for n in names}

    def hook(name):
        def add(_module, _args, out):
            count = out.numel() // out.shape[1]
            sums[name][0] = sums[name][0] + channel_means(out.detach()) * count
            sums[name][1] += count
        return add

    with hooks.attached([(layers[n], hook(n)) for n in names], prepend=True):
        hooks.run(model, batches)
    return {n: total / count for n, (total, count) in sums.items()}


def _matching_layers(quantized: nn.Module, reference: nn.Module) -> list[str]:
    names = [n for n, _ in simulate.weight_layers(quantized)]
    ref = [n for n, _ in simulate.weight_layers(reference)]
    if names != ref:
        raise ValueError(
            "quantized and reference must have the same Conv2d/Linear layers (a simulated copy "
            f"and the fused float model it came from); got {names[:4]}... vs {ref[:4]}..."
        )
    return names


def correct_bias(
    quantized: nn.Module,
    reference: nn.Module,
    calib: Iterable,
    *,
    num_batches: int | None = None,
    progress: bool | None = None,
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy of `quantized` whose Conv2d/Linear biases absorb the mean output error against
    `reference` on `calib`, and the correction subtracted from each layer's bias.

    `quantized` is a fake-quantized model of `qnb.simulate` and `reference` the fused float
    model it was made from (`simulate.fused_copy(model)`), with the same layer names. A layer
    without a bias gets one. The means are taken on each layer's own output, before its ReLU and
    before any activation quantizer. Neither model is changed.

    Taught in notebook 07 (advanced_ptq)."""
    checks.check_eval_model(quantized, "quantized")
    checks.check_eval_model(reference, "reference")
    check_progress(progress)
    batches = calibration.input_batches(calib, num_batches)
    names = _matching_layers(quantized, reference)
    corrected = copy.deepcopy(quantized)
    layers = dict(corrected.named_modules())
    names = calibration.forward_order(corrected, {n: layers[n] for n in names}, batches[0])
    wanted = output_means(reference, names, batches)
    shifts = {}
    for name in bar_as_asked(names, progress, desc="bias correction", unit="layer"):
        layer = layers[name]
        shift = output_means(corrected, [name], batches)[name] - wanted[name]
        with torch.no_grad():
            if layer.bias is None:
                layer.bias = nn.Parameter(-shift)
            else:
                layer.bias.sub_(shift)
        shifts[name] = shift
    return corrected, shifts
