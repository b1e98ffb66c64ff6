"""Notebook 06 (dynamic_and_weight_only): 06.1 the LSTM's share of the parameters, 06.2 the
scale and zero point a dynamic kernel picks, 06.3 a group quantizer (core).

06.2 takes the kernel's rule from `qnb.dynamic.activation_qparams` (tested against torch's
dynamic kernels); 06.3 compares with torch.ao's PerChannelMinMaxObserver over the groups and
`torch.fake_quantize_per_channel_affine`."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from qnb.exercises.grading import as_array, fail, needs_answer, passed, same_grid


@needs_answer
def grade_lstm_share(answer: float, model: torch.nn.Module) -> None:
    """Exercise 06.1: the fraction of the model's parameters that are in its LSTM."""
    name = "Exercise 06.1"
    total = sum(p.numel() for p in model.parameters())
    lstm = sum(
        p.numel() for m in model.modules() if isinstance(m, torch.nn.LSTM) for p in m.parameters()
    )
    want = lstm / total
    if not isinstance(answer, int | float | np.floating) or not math.isfinite(answer):
        fail(name, f"answer must be a number, got {answer!r}")
    if math.isclose(answer, 100 * want, rel_tol=1e-6):
        fail(name, "that is a percentage: answer with a fraction between 0 and 1")
    if math.isclose(answer, 1 - want, rel_tol=1e-6):
        fail(name, "that is the share of everything *but* the LSTM")
    if not math.isclose(answer, want, rel_tol=1e-6):
        fail(
            name,
            f"{answer:.4g} is off: count p.numel() over the LSTM's parameters "
            "(weights and biases of all four gates) and over the whole model",
        )
    passed(
        name,
        f"{want:.1%} of the parameters are the LSTM's: weight-only on Linear layers "
        "cannot shrink this model much",
    )


def _dynamic_scale(x: torch.Tensor, qmax: int) -> float:
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    return (hi - lo) / qmax


@needs_answer
def grade_dynamic_qparams(
    scale: float,
    zero_point: int,
    x: torch.Tensor,
    engine: str | None = None,
    whole: torch.Tensor | None = None,
) -> None:
    """Exercise 06.2: the scale and zero point a dynamic int8 kernel of `engine` (None: this
    machine's) picks for one call's input `x`; `whole` (optional) is the larger tensor `x` was
    cut from (all time steps), whose range would be a mistake."""
    from qnb import checks, dynamic

    name = "Exercise 06.2"
    if not isinstance(scale, int | float | np.floating) or not math.isfinite(scale):
        fail(name, f"scale must be a number, got {scale!r}")
    x, engine = x.detach(), checks.check_engine(engine)
    want_scale, want_zp, qmax = dynamic.activation_qparams(x, engine)
    on = f"on {engine!r}"
    if not math.isclose(scale, want_scale, rel_tol=1e-4):
        other = 255 if qmax == 127 else 127
        if math.isclose(scale, _dynamic_scale(x, other), rel_tol=1e-4):
            if other == 255:
                fail(
                    name,
                    f"that is the full 0..255 scale; {on} the dynamic kernels ask for "
                    "reduce_range=True (nn.quantized.dynamic.Linear calls linear_dynamic(..., "
                    "reduce_range=True)): 7-bit activations 0..127, (max - min) / 127",
                )
            fail(
                name,
                f"that is a 7-bit (reduce_range) scale; {on} the dynamic kernels ignore "
                "reduce_range and use the full 0..255: (max - min) / 255",
            )
        if whole is not None and any(
            math.isclose(scale, _dynamic_scale(whole.detach(), q), rel_tol=1e-4) for q in (127, 255)
        ):
            fail(
                name,
                "that range is over the whole tensor (all time steps): the kernel picks a "
                "range per call, from that call's input only (here one time step's)",
            )
        fail(
            name,
            f"scale {scale:.6g} is off: (max - min) / {qmax} over this call's input, with the "
            "range widened to include 0",
        )
    if int(zero_point) != want_zp:
        fail(
            name,
            f"zero_point {zero_point} is off (want the level of 0.0: "
            f"round(-min / scale), clamped to 0..{qmax})",
        )
    passed(
        name,
        f"scale {want_scale:.5g}, zero point {want_zp} on 0..{qmax}: picked per call, at run time",
    )


def _linear_weight(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 60)
    w = torch.randn((6, 128), generator=gen) * 0.1
    w[:, 40] += 1.5  # an outlier input column: it spoils a per-channel scale, not a group's
    return w


@needs_answer
def grade_group_quantize(fn: Callable[[np.ndarray, int, int], np.ndarray], seed: int = 0) -> None:
    """Exercise 06.3: `fn(weight, group_size, bits)` fake-quantizes a Linear weight (out, in)
    in groups of `group_size` consecutive inputs of each row, asymmetric and unsigned, with the
    min/max range of each group (stretched to include 0)."""
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    name = "Exercise 06.3"
    group_size, bits = ((32, 4), (16, 3), (64, 4))[seed % 3]
    w = _linear_weight(seed)
    qmax = 2**bits - 1
    groups = w.reshape(-1, group_size)
    observer = PerChannelMinMaxObserver(
        0, torch.quint8, torch.per_channel_affine, quant_min=0, quant_max=qmax
    )
    observer(groups)
    scale, zero_point = observer.calculate_qparams()
    want = torch.fake_quantize_per_channel_affine(groups, scale, zero_point.int(), 0, 0, qmax)
    want = want.reshape(w.shape).double().numpy()
    step = np.repeat(scale.double().numpy(), group_size).reshape(w.shape)
    got = as_array(fn(w.numpy().copy(), group_size, bits))
    if got.shape != want.shape:
        fail(name, f"returned shape {got.shape}, expected {want.shape}: one value per weight")
    if same_grid(got, want, step):
        n = groups.shape[0]
        passed(name, f"{n} groups of {group_size} at {bits} bits, one scale and zero point each")
        return

    def fake(g: np.ndarray, levels: int, symmetric: bool = False) -> np.ndarray:
        lo, hi = np.minimum(g.min(1, keepdims=True), 0), np.maximum(g.max(1, keepdims=True), 0)
        if symmetric:
            s = np.maximum(-lo, hi) / (levels / 2)
            return np.clip(np.rint(g / s), -(levels + 1) // 2, levels // 2) * s
        s = (hi - lo) / levels
        z = np.clip(np.rint(-lo / s), 0, qmax)
        return (np.clip(np.rint(g / s) + z, 0, qmax) - z) * s

    w64 = w.double().numpy()
    out, inputs = w64.shape
    columns = w64.T.reshape(-1, group_size)  # groups down the columns
    mistakes = {
        "one scale per row is per-channel: split each row into groups of group_size "
        "consecutive inputs (weight.reshape(-1, group_size))": fake(w64, qmax),
        "group consecutive inputs of a row, not weights down a column": fake(columns, qmax)
        .reshape(inputs, out).T,
        f"there are 2**bits - 1 = {qmax} steps between the lowest and the highest code, "
        f"not {qmax + 1}": fake(w64.reshape(-1, group_size), qmax + 1).reshape(w64.shape),
        "this group quantizer is asymmetric: each group gets a zero point, and codes 0..2**bits-1":
            fake(w64.reshape(-1, group_size), qmax, symmetric=True).reshape(w64.shape),
    }
    for hint, mistake in mistakes.items():
        if same_grid(got, mistake, step) or np.allclose(got, mistake, rtol=1e-5, atol=1e-7):
            fail(name, hint)
    if np.all(np.equal(np.mod(got, 1), 0)) and got.min() >= 0 and got.max() <= qmax:
        fail(name, "those are the codes: return the dequantized weights, (q - z) * s")
    fail(
        name,
        f"{int((np.abs(got - want) > 1e-4 * step + 1e-7).sum())} of {want.size} values are off: "
        "per group, s = (max - min) / (2**bits - 1), z = round(-min / s), "
        "q = clamp(round(w / s) + z, 0, 2**bits - 1), then (q - z) * s",
    )
