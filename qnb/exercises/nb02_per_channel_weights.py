"""Notebook 02 (per_channel_weights): 02.1 per-channel symmetric scales, 02.2 the layer that
loses most from sharing one scale, 02.3 a per-channel fake quantizer (core).

02.1 and 02.3 compare with torch.ao's PerChannelMinMaxObserver and
`torch.fake_quantize_per_channel_affine`; 02.2 measures the layers with `qnb.simulate` (the fused
model, its weight fake quantization) and names them with `qnb.mixed.layers_by_name`."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from qnb.exercises.grading import as_array, fail, needs_answer, passed, same_grid


def _observer_scales(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel symmetric scales, as torch.ao's PerChannelMinMaxObserver makes them."""
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    obs = PerChannelMinMaxObserver(
        0, torch.qint8, torch.per_channel_symmetric, quant_min=qmin, quant_max=qmax
    )
    obs(weight)
    return obs.calculate_qparams()[0]


@needs_answer
def grade_channel_scales(scales: np.ndarray, weight: torch.Tensor, bits: int) -> None:
    """Exercise 02.1: per-output-channel symmetric scales of `weight` at `bits`."""
    name, want = "Exercise 02.1", _observer_scales(weight.detach(), bits).numpy()
    got = np.asarray(scales, dtype=np.float64).reshape(-1)
    half = (2**bits - 1) / 2
    if got.size == 1 and want.size > 1:
        fail(
            name,
            "one scale for the whole tensor is per-tensor; take the max over each "
            "output channel (axis 0) separately",
        )
    if got.shape != want.shape:
        fail(name, f"expected one scale per output channel, shape {want.shape}, got {got.shape}")
    if np.allclose(got, want, rtol=1e-5):
        passed(name, f"{want.size} scales, from {want.min():.3g} to {want.max():.3g}")
        return
    flat = weight.detach().reshape(len(weight), -1).double()
    if np.allclose(got, (flat.amax(1) / half).numpy(), rtol=1e-5):
        fail(name, "take the largest |w|, not the largest w: a negative weight can be larger")
    ratio = float(np.median(got / want))
    if math.isclose(ratio, half / (2 ** (bits - 1) - 1), rel_tol=1e-3):
        fail(
            name,
            f"you divided by qmax = {2 ** (bits - 1) - 1}; torch's symmetric scale is "
            f"max|w| / ((qmax - qmin) / 2) = max|w| / {half}",
        )
    if math.isclose(ratio, half / 2 ** (bits - 1), rel_tol=1e-3):
        fail(
            name, f"you divided by 2**(bits-1) = {2 ** (bits - 1)}; use (qmax - qmin) / 2 = {half}"
        )
    if math.isclose(ratio, 0.5, rel_tol=0.2):
        fail(name, "about half the right size: a symmetric range spans -max|w| .. +max|w|")
    fail(
        name,
        f"scales are {ratio:.3g}x the expected ones; take max |w| over each channel "
        f"(all axes but 0) and divide by (qmax - qmin) / 2 = {half}",
    )


@needs_answer
def grade_worst_layer(answer: str, model: torch.nn.Module, bits: int) -> None:
    """Exercise 02.2: the layer losing most weight SQNR from per-channel to per-tensor."""
    from qnb import mixed, simulate

    name, fused = "Exercise 02.2", simulate.fused_copy(model)
    losses, layers = {}, simulate.weight_layers(fused)
    for layer_name, layer in layers:
        w = layer.weight.detach()
        sqnr = {
            g: _sqnr(w, simulate.fake_quantize_weight(w, bits, g)) for g in simulate.GRANULARITIES
        }
        losses[layer_name] = sqnr["per_channel"] - sqnr["per_tensor"]
    want = max(losses, key=losses.get)
    if not isinstance(answer, str):
        fail(name, f"answer with the layer's name (a string), got {answer!r}")
    fused_name = {id(m): n for n, m in layers}  # the float name ('conv1') means 'conv1.0' too
    aliases = {n: fused_name[id(m)] for n, m in mixed.layers_by_name(fused).items()}
    answer = aliases.get(answer, answer)
    if answer not in losses:
        fail(name, f"{answer!r} is not a weight layer of the fused model; they are {list(losses)}")
    if answer != want:
        fail(
            name,
            f"{answer!r} loses {losses[answer]:.1f} dB; another layer loses more. "
            "Compare per-channel minus per-tensor SQNR for every layer",
        )
    passed(name, f"{want} loses {losses[want]:.1f} dB when all its channels share one scale")


def _sqnr(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    noise = float(((x - x_hat) ** 2).sum())
    return math.inf if noise == 0 else 10 * math.log10(float((x**2).sum()) / noise)


def _conv_weight(seed: int) -> torch.Tensor:
    """A conv weight whose output channels have ranges 30x apart, as after BN folding."""
    gen = torch.Generator().manual_seed(seed)
    spread = torch.logspace(-1.5, 0, 8).reshape(-1, 1, 1, 1)
    return torch.randn((8, 4, 3, 3), generator=gen) * spread


@needs_answer
def grade_fake_quantize_per_channel(fn: Callable[[np.ndarray, int], np.ndarray], seed: int = 0):
    """Exercise 02.3: `fn(weight, bits)` fake-quantizes a conv weight per output channel,
    symmetric, signed, as torch's per-channel kernel with PerChannelMinMaxObserver's scales."""
    name, bits = "Exercise 02.3", (4, 3, 5)[seed % 3]
    w = _conv_weight(seed)
    scales = _observer_scales(w, bits)
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    zeros = torch.zeros(len(w), dtype=torch.int32)
    want = torch.fake_quantize_per_channel_affine(w, scales, zeros, 0, qmin, qmax).double().numpy()
    got = as_array(fn(w.numpy().copy(), bits))
    step = scales.double().numpy().reshape(-1, 1, 1, 1) * np.ones_like(want)
    if got.shape != want.shape:
        fail(name, f"returned shape {got.shape}, expected {want.shape}: one value per weight")
    if same_grid(got, want, step):
        passed(name, f"{bits}-bit per-channel fake quantization, one scale per output channel")
        return
    w64, half = w.double().numpy(), (qmax - qmin) / 2
    top = np.abs(w64).reshape(len(w64), -1).max(1).reshape(-1, 1, 1, 1)
    if np.all(got == np.rint(got)) and qmin <= got.min() and got.max() <= qmax:
        fail(name, "those are the integer codes: return the dequantized weights, codes * scale")
    mistakes = {
        "one scale for the whole tensor is per-tensor: take max |w| over each output channel "
        "(axis 0) separately": np.clip(np.rint(w64 / (np.abs(w64).max() / half)), qmin, qmax)
        * (np.abs(w64).max() / half),
        f"you divided by qmax = {qmax}; torch's symmetric scale is max|w| / ((qmax - qmin) / 2) "
        f"= max|w| / {half}": np.clip(np.rint(w64 / (top / qmax)), qmin, qmax) * (top / qmax),
    }
    for hint, mistake in mistakes.items():
        if same_grid(got, mistake, step) or np.allclose(got, mistake, rtol=1e-5, atol=1e-7):
            fail(name, hint)
    if np.any(np.isclose(got, (qmax + 1) * step, rtol=1e-4)):
        fail(
            name,
            f"clamp to [qmin, qmax] = [{qmin}, {qmax}]: the largest w / scale is {half}, which "
            f"can round to {qmax + 1}",
        )
    fail(
        name,
        f"{int((np.abs(got - want) > 1e-4 * step + 1e-7).sum())} of {want.size} values are off: "
        "q = clamp(round(w / s), qmin, qmax), then q * s, with s = max|w| / ((qmax - qmin) / 2) "
        "per output channel",
    )
