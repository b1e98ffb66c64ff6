"""Notebook 11 (other_runtimes): 11.1 ONNX's QuantizeLinear in numpy (core), 11.2 the input
scale and zero point of a QDQ model.

11.1 compares with `qnb.runtimes.quantize_linear`, which runs ONNX Runtime's QuantizeLinear;
11.2 reads the ONNX file with `onnx`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from qnb.exercises.grading import fail, needs_answer, passed, rel_close


def _tie_values(scale: np.float32, zero_point: int, seed: int = 0) -> np.ndarray:
    """Values around exact ties of x / scale (k + 0.5), values that saturate, and random ones."""
    rng = np.random.default_rng(11 + seed)
    k = np.arange(-zero_point - 3, 258 - zero_point, dtype=np.float32)
    ties = (k + np.float32(0.5)) * scale
    near = np.concatenate([np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, -np.inf)])
    wide = rng.uniform(-400, 400, 2000).astype(np.float32) * scale
    return np.concatenate([ties, near.astype(np.float32), wide]).astype(np.float32)


def _quantize_linear_params(seed: int) -> list[tuple[float, int]]:
    """(scale, zero point) pairs: an odd zero point (rounding before adding it matters), zero,
    and mid-range."""
    if seed == 0:
        return [(0.0213, 37), (0.00214854861, 0), (0.1, 128)]
    rng = np.random.default_rng(110 + seed)
    scales = [rng.uniform(0.005, 0.05), rng.uniform(0.001, 0.005), rng.uniform(0.05, 0.2)]
    odd = int(rng.integers(0, 64)) * 2 + 1
    return [(float(f"{s:.6g}"), z) for s, z in zip(scales, (odd, 0, 128), strict=True)]


@needs_answer
def grade_quantize_linear(
    fn: Callable[[np.ndarray, float, int], np.ndarray], seed: int = 0
) -> None:
    """Exercise 11.1: ONNX QuantizeLinear to uint8 in numpy: round(x / scale) + zp, saturated.
    Seed 0 is the notebook's three (scale, zero point) pairs; other seeds draw other scales, an
    odd zero point among them, and other values."""
    from qnb import runtimes

    name = "Exercise 11.1"
    for scale, zero_point in _quantize_linear_params(seed):
        s = np.float32(scale)
        x = _tie_values(s, zero_point, seed)
        want = runtimes.quantize_linear(x, float(s), zero_point).astype(np.int64)
        got = np.asarray(fn(x.copy(), float(s), zero_point))
        if got.shape != x.shape:
            fail(name, f"return one code per value: shape {got.shape}, expected {x.shape}")
        got = got.astype(np.int64)
        if np.array_equal(got, want):
            continue
        reciprocal = np.clip(np.rint(x * (np.float32(1) / s)) + zero_point, 0, 255)
        half_up = np.clip(np.floor(x / s + np.float32(0.5)) + zero_point, 0, 255)
        zp_first = np.clip(np.rint(x / s + zero_point), 0, 255)
        unclipped = np.rint(x / s) + zero_point
        if np.array_equal(got, reciprocal):
            fail(name, "that is torch's rule, x * (1 / scale); ONNX divides: x / scale")
        if np.array_equal(got, half_up):
            fail(name, "round half to even (np.rint), not half up: 2.5 -> 2, 3.5 -> 4")
        if np.array_equal(got, zp_first) and zero_point:
            fail(name, "add the zero point after rounding: round(x / scale) + zero_point")
        if np.array_equal(got[(unclipped >= 0) & (unclipped <= 255)],
                          want[(unclipped >= 0) & (unclipped <= 255)]):
            fail(name, "saturate to 0..255 (np.clip) before casting to uint8")
        bad = int(np.argmax(got != want))
        fail(name, f"quantize_linear({x[bad]!r}, {scale}, {zero_point}) gave {got[bad]}, "
                    f"QuantizeLinear gives {want[bad]}")
    passed(name, "codes equal ONNX Runtime's QuantizeLinear, ties included")


@needs_answer
def grade_input_qparams(answer: tuple, path) -> None:
    """Exercise 11.2: the scale and zero point of the QDQ model's input QuantizeLinear."""
    import onnx
    from onnx import numpy_helper

    name = "Exercise 11.2"
    if not isinstance(answer, tuple | list) or len(answer) != 2:
        fail(name, "set ex_input_qparams = (scale, zero_point), a pair")
    scale, zero_point = answer
    graph = onnx.load(str(path)).graph
    inputs = {i.name for i in graph.input} - {i.name for i in graph.initializer}
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    node = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] in inputs)
    want_scale, want_zp = float(consts[node.input[1]]), int(consts[node.input[2]])
    others = [n for n in graph.node if n.op_type == "QuantizeLinear" and n is not node]
    if isinstance(scale, bool) or not isinstance(scale, float | np.floating | int):
        fail(name, f"the scale must be a number, got {type(scale).__name__}")
    if not isinstance(zero_point, int | np.integer) or isinstance(zero_point, bool):
        fail(name, f"the zero point must be an int, got {type(zero_point).__name__}")
    if rel_close(float(scale), want_scale) and int(zero_point) == want_zp:
        passed(name, f"the input is quantized at scale {want_scale:.6g}, zero point {want_zp}")
        return
    for other in others:
        if rel_close(float(scale), float(consts[other.input[1]])):
            fail(name, f"that is the scale of {other.input[0]!r}, not of the model's input")
    if rel_close(float(scale), 1 / want_scale):
        fail(name, "that is 1 / scale: QuantizeLinear's second input is the scale itself")
    if not rel_close(float(scale), want_scale):
        fail(name, "the scale is off: read the second input of the input's QuantizeLinear")
    fail(name, f"the zero point is off: the third input of that node holds it, not {zero_point}")
