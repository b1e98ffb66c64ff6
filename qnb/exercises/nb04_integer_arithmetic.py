"""Notebook 04 (integer_arithmetic): 04.1 requantization, 04.2 the zero-point cross term of the
int32 accumulator, 04.3 batch-norm folding; all three are core.

The answers are recomputed in numpy (float32 requantization as the x86 kernels do it) and with
`torch.nn.utils.fusion.fuse_conv_bn_weights`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from qnb.exercises.grading import fail, needs_answer, passed


def _requantize_reference(acc: np.ndarray, multiplier: float, zero_point: int) -> np.ndarray:
    """float32 product, round half to even, then the zero point, then clamp to uint8."""
    v = acc.astype(np.float32) * np.float32(multiplier)
    return np.clip(np.rint(v).astype(np.int64) + zero_point, 0, 255)


@needs_answer
def grade_requantize(fn: Callable[[np.ndarray, float, int], np.ndarray], seed: int = 0) -> None:
    """Exercise 04.1: `fn(acc, multiplier, zero_point)` turns int32 accumulators into uint8 codes
    as the x86 kernels do. Seed 0 is the notebook's case (multiplier 0.25, zero point 3); other
    seeds draw other accumulators, another power-of-two multiplier and odd zero point."""
    name = "Exercise 04.1"
    multiplier, zp = ((0.25, 3), (0.125, 7), (0.5, 101))[seed % 3]
    # acc * multiplier = k + 0.5 exactly (at 0.25: -38, -34, ..., 38)
    ties = ((np.arange(-10, 10) + 0.5) / multiplier).astype(np.int32)
    rng = np.random.default_rng(4 + seed)
    acc = np.concatenate([ties, [-5000, 5000, 0], rng.integers(-600, 600, 64)]).astype(np.int32)
    want = _requantize_reference(acc, multiplier, zp)
    got = np.asarray(fn(acc.copy(), multiplier, zp))
    if got.shape != want.shape:
        fail(name, f"returned shape {got.shape}, expected {want.shape} (one code per acc)")
    if np.array_equal(got, want):
        passed(name, "round(acc * M) + zero point, clamped to 0..255, ties to even")
        return
    a, m = acc.astype(np.float64), multiplier
    mistakes = {
        "did you divide by the multiplier? M = s_x * s_w / s_y already divides by the "
        "output scale: multiply": np.clip(np.rint(a / m) + zp, 0, 255),
        "codes fall outside 0..255: clamp after adding the zero point": np.rint(a * m) + zp,
        "the zero point is missing: the real 0 sits at code zero_point": np.clip(
            np.rint(a * m), 0, 255
        ),
        "the zero point goes in after rounding (round(v) + z, not round(v + z)): with an odd "
        "zero point the ties come out differently": np.clip(np.rint(a * m + zp), 0, 255),
        "only the ties differ: the kernels round half to even (np.rint), not half up "
        "(floor(v + 0.5))": np.clip(np.floor(a * m + 0.5) + zp, 0, 255),
        "astype(int) truncates toward zero: round first": np.clip(np.trunc(a * m) + zp, 0, 255),
    }
    for hint, mistake in mistakes.items():
        if np.array_equal(got, mistake):
            fail(name, hint)
    wrong = got != want
    fail(
        name,
        f"{int(wrong.sum())} of {acc.size} codes differ, e.g. acc = {int(acc[wrong][0])}: got "
        f"{got[wrong][0]}, expected {int(want[wrong][0])}",
    )


@needs_answer
def grade_cross_term(
    fn: Callable[[np.ndarray, np.ndarray, int], np.ndarray], seed: int = 0
) -> None:
    """Exercise 04.2: `fn(x_q, w_q, z_x)`, the accumulator sum_k (x_q - z_x) w_q from the raw
    product of codes and the zero-point cross term. Seed 0 is the notebook's case (z_x 131);
    other seeds draw other codes and another input zero point."""
    name, z_x = "Exercise 04.2", (131, 97, 170)[seed % 3]
    rng = np.random.default_rng(5 + seed)
    x_q = rng.integers(150, 256, (6, 40)).astype(np.uint8)  # bright inputs: int16 overflows
    w_q = rng.integers(60, 128, (5, 40)).astype(np.int8)
    x64, w64 = x_q.astype(np.int64), w_q.astype(np.int64)
    want = (x64 - z_x) @ w64.T
    got = np.asarray(fn(x_q.copy(), w_q.copy(), z_x))
    if got.shape != want.shape:
        fail(name, f"returned shape {got.shape}, expected {want.shape} (rows of x, rows of w)")
    if np.array_equal(got.astype(np.int64), want):
        if got.dtype.kind not in "iu" or (got.dtype.itemsize < 4):
            fail(name, f"right values but dtype {got.dtype}: return the int32 accumulator")
        passed(name, "x_q @ w_q.T - z_x * w_q.sum(axis=1): the column offsets, precomputed")
        return
    raw = x64 @ w64.T
    with np.errstate(over="ignore"):  # what numpy does with the codes as given: it wraps
        wrapped = [
            (x_q @ w_q.T - z_x * w_q.sum(axis=1)).astype(np.int64),  # uint8 @ int8 is int16
            ((x_q - np.uint8(z_x)) @ w_q.T).astype(np.int64),  # uint8 - z_x stays uint8
        ]
    mistakes = {
        "the values wrapped around: uint8 times int8 in numpy is int16 (at most 32,767); "
        "cast both to np.int32 before multiplying": wrapped[0],
        "the values wrapped around: x_q - z_x on uint8 codes wraps below 0 (and uint8 @ int8 "
        "is int16); cast to np.int32 first": wrapped[1],
        "the cross term is subtracted: sum (x - z_x) w = sum x w - z_x * sum w": raw
        + z_x * w64.sum(1),
        "the zero point is not subtracted at all: the raw product counts z_x * sum_k w_q too "
        "much": raw,
        "z_x multiplies the sum of the *weights* of each output (w_q.sum(axis=1)), not the sum "
        "of the inputs": raw - z_x * x64.sum(1, keepdims=True),
        "sum the weights over the input dimension (axis=1), one offset per output channel": raw
        - z_x * w64.sum(),
    }
    for hint, mistake in mistakes.items():
        if mistake.shape == got.shape and np.array_equal(got.astype(np.int64), mistake):
            fail(name, hint)
    wrong = got != want
    fail(
        name,
        f"{int(wrong.sum())} of {want.size} accumulators differ; expected "
        "x_q @ w_q.T - z_x * w_q.sum(axis=1), in int32",
    )


@needs_answer
def grade_bn_fold(fn: Callable[..., tuple[np.ndarray, np.ndarray]], seed: int = 0) -> None:
    """Exercise 04.3: `fn(weight, bias, gamma, beta, mean, var, eps)` folds batch norm into the
    conv before it, returning (folded weight, folded bias). Other seeds than 0 (the notebook's)
    draw other weights and batch-norm statistics."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    name, eps = "Exercise 04.3", 1e-3
    rng = np.random.default_rng(6 + seed)
    shape = (4, 3, 4, 4)  # last dim = out channels: a wrong-axis broadcast would run silently
    w, b = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    gamma = rng.uniform(0.5, 2, 4).astype(np.float32)
    beta = rng.standard_normal(4).astype(np.float32)
    mean = rng.standard_normal(4).astype(np.float32)
    var = rng.uniform(0.001, 0.01, 4).astype(np.float32)  # small, so eps matters
    t = [torch.from_numpy(a) for a in (w, b, mean, var)]
    want_w, want_b = fuse_conv_bn_weights(
        t[0], t[1], t[2], t[3], eps, torch.from_numpy(gamma), torch.from_numpy(beta)
    )
    want_w, want_b = want_w.detach().numpy(), want_b.detach().numpy()
    answer = fn(w.copy(), b.copy(), gamma.copy(), beta.copy(), mean.copy(), var.copy(), eps)
    if not isinstance(answer, tuple | list) or len(answer) != 2:
        fail(name, "return a pair (folded weight, folded bias)")
    got_w, got_b = (np.asarray(a, dtype=np.float64) for a in answer)
    if got_w.shape != shape or got_b.shape != (4,):
        fail(name, f"shapes {got_w.shape}, {got_b.shape}; expected {shape} and (4,)")
    close = lambda a, b: np.allclose(a, b, rtol=1e-4, atol=1e-6)  # noqa: E731
    ok_w, ok_b = close(got_w, want_w), close(got_b, want_b)
    if ok_w and ok_b:
        passed(name, "W' = W * gamma / sigma, b' = (b - mean) * gamma / sigma + beta")
        return
    sigma, per = np.sqrt(var + eps), (-1, 1, 1, 1)
    if not ok_w:
        if close(got_w, w * (gamma / (var + eps)).reshape(per)):
            fail(name, "divide by the standard deviation sqrt(var + eps), not the variance")
        if close(got_w, w * (gamma / np.sqrt(var)).reshape(per)):
            fail(name, "eps is missing: sigma = sqrt(var + eps)")
        if close(got_w, w * (gamma / sigma)):
            fail(
                name,
                "the scale went along the last axis: reshape gamma / sigma to (-1, 1, 1, 1) so "
                "that each output channel (axis 0) gets its own",
            )
        fail(name, "the folded weight is off: W' = W * (gamma / sqrt(var + eps)) per out channel")
    if close(got_b, (b - mean) * gamma / sigma):
        fail(name, "beta is missing: b' = (b - mean) * gamma / sigma + beta")
    if close(got_b, b * gamma / sigma + beta):
        fail(name, "subtract the running mean from the bias before scaling")
    if close(got_b, (b - mean) + beta) or close(got_b, b - mean * gamma / sigma + beta):
        fail(name, "scale the whole (b - mean) by gamma / sigma")
    fail(name, "the folded bias is off: b' = (b - mean) * gamma / sqrt(var + eps) + beta")
