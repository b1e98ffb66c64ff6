"""The int16 headroom of x86's u8 x s8 dot products: where ``vpmaddubsw`` saturates.

AVX2 and AVX-512 CPUs without VNNI multiply uint8 activations by int8 weights with
``vpmaddubsw``, which sums each pair of adjacent products into int16 *with saturation*, then
``vpmaddwd`` widens to int32. Two products of 255 x -128 sum to -65,280: outside int16, so the
pair is clamped and the int32 accumulator is wrong. FBGEMM (PyTorch's x86 and fbgemm engines)
therefore uses 7-bit activations on such CPUs (``reduce_range=True``): 2 x 127 x 128 = 32,512
fits. VNNI's ``vpdpbusd`` accumulates in int32 directly and cannot saturate this way.
:func:`madd_int16` is the instruction on arrays; :func:`saturating_pairs` counts the pairs of a
real layer that would saturate, in the order FBGEMM packs them.

Taught in notebook 04 (integer_arithmetic)."""

from __future__ import annotations

from typing import Any

import numpy as np

from qnb.checks import check_int, check_int_codes, check_int_pair

__all__ = ["INT16_MIN", "INT16_MAX", "madd_int16", "saturating_pairs"]

INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1


def madd_int16(a_u8: Any, b_s8: Any) -> tuple[np.ndarray, np.ndarray]:
    """``vpmaddubsw``: u8 x s8 products summed in adjacent pairs into int16, with saturation.

    `a_u8` uint8 codes and `b_s8` int8 codes of one even-length shape (..., 2P). Returns
    ``(saturated, exact)``: the int16 pair sums the instruction produces and the true sums
    (int64), so ``saturated != exact`` marks the pairs that overflowed. Non-VNNI AVX2/AVX-512
    int8 GEMMs use this instruction (then ``vpmaddwd`` into int32); 7-bit activations
    (``reduce_range``) keep every pair inside int16: 2 * 127 * 128 = 32,512 <= 32,767.
    """
    a = check_int_codes("a_u8", a_u8, tuple(range(1, 8)), "uint8 codes (..., 2P)")
    b = check_int_codes("b_s8", b_s8, tuple(range(1, 8)), "int8 codes (..., 2P)")
    if a.shape != b.shape or a.shape[-1] % 2:
        raise ValueError(
            f"a_u8 and b_s8 must have one shape with an even last dim; got {a.shape}, {b.shape}"
        )
    if a.min() < 0 or a.max() > 255:
        raise ValueError(f"a_u8 must hold uint8 codes 0..255; got {a.min()}..{a.max()}")
    if b.min() < -128 or b.max() > 127:
        raise ValueError(f"b_s8 must hold int8 codes -128..127; got {b.min()}..{b.max()}")
    products = a * b
    exact = products[..., 0::2] + products[..., 1::2]
    return np.clip(exact, INT16_MIN, INT16_MAX), exact


def saturating_pairs(
    x_q: Any,
    w_q: Any,
    stride: Any = 1,
    padding: Any = 0,
    pad_code: int = 0,
) -> tuple[int, int]:
    """How many u8 x s8 pair sums of ``vpmaddubsw`` saturate int16 when the uint8 codes `x_q`
    meet the int8 weights `w_q`: ``(saturated, pairs)``, over every output and output channel.

    A linear layer: `x_q` (N, K), `w_q` (C, K). A convolution (groups = 1): `x_q`
    (N, C_in, H, W), `w_q` (C_out, C_in, kH, kW), with `stride`, `padding` (filled with
    `pad_code`, the input zero point). Each output's K products are paired in the order of
    the packed reduction dimension: the features of a linear layer in order; for a
    convolution the channels-last im2col order of FBGEMM (kernel row, kernel column, input
    channel), as its x86 kernels pack NHWC activations. An odd K gets a zero partner (no
    saturation: one product is at most 255 * 128 = 32,640). A pair saturates when its exact sum
    is outside [-32768, 32767] (:func:`madd_int16`); with codes of at most 127 none can.
    """
    x = check_int_codes("x_q", x_q, (2, 4), "codes of shape (N, K) or (N, C_in, H, W)")
    w = check_int_codes("w_q", w_q, (2, 4), "codes of shape (C, K) or (C_out, C_in, kH, kW)")
    if x.ndim != w.ndim:
        raise ValueError(
            f"x_q and w_q must both be 2-D (linear) or 4-D (conv); got {x.shape}, {w.shape}"
        )
    if x.size and (x.min() < 0 or x.max() > 255):
        raise ValueError(f"x_q must hold uint8 codes 0..255; got {x.min()}..{x.max()}")
    if w.size and (w.min() < -128 or w.max() > 127):
        raise ValueError(f"w_q must hold int8 codes -128..127; got {w.min()}..{w.max()}")
    pad_code = check_int("pad_code", pad_code, 0)
    if pad_code > 255:
        raise ValueError(f"pad_code must be a uint8 code 0..255; got {pad_code}")
    if x.ndim == 4:
        if x.shape[1] != w.shape[1]:
            raise ValueError(
                f"x_q has {x.shape[1]} input channels but w_q expects {w.shape[1]} (groups = 1)"
            )
        stride, padding = check_int_pair("stride", stride, 1), check_int_pair("padding", padding, 0)
        (ph, pw), (kh, kw) = padding, w.shape[2:]
        nhwc = np.pad(
            x.astype(np.uint8).transpose(0, 2, 3, 1),
            ((0, 0), (ph, ph), (pw, pw), (0, 0)),
            constant_values=pad_code,
        )
        if nhwc.shape[1] < kh or nhwc.shape[2] < kw:
            raise ValueError(
                f"the padded input {nhwc.shape[1:3]} is smaller than the kernel {(kh, kw)}"
            )
        windows = np.lib.stride_tricks.sliding_window_view(nhwc, (kh, kw), axis=(1, 2))
        windows = windows[:, :: stride[0], :: stride[1]]  # (N, H_out, W_out, C_in, kh, kw)
        w = w.transpose(0, 2, 3, 1).reshape(len(w), -1)  # (C_out, kh * kw * C_in)
        per_output = windows.shape[1] * windows.shape[2]
        # a1 + a2 >= 256 needs a code >= 128: only the windows holding one can saturate
        hot_pixel = nhwc.max(axis=3) >= 128
        hot = np.zeros(windows.shape[:3], bool)
        for r in range(kh):  # a window is hot if any of its kh * kw pixels is
            for c in range(kw):
                hot |= hot_pixel[
                    :,
                    r : r + stride[0] * hot.shape[1] : stride[0],
                    c : c + stride[1] * hot.shape[2] : stride[1],
                ]
        where = np.nonzero(hot)

        def rows_at(sl: slice) -> np.ndarray:  # im2col rows (kh, kw, C_in) of hot windows
            patch = windows[where[0][sl], where[1][sl], where[2][sl]]  # (M, C_in, kh, kw)
            return patch.transpose(0, 2, 3, 1).reshape(len(patch), -1)

        n_hot = len(where[0])
    else:
        if x.shape[1] != w.shape[1]:
            raise ValueError(f"x_q has {x.shape[1]} features but w_q expects {w.shape[1]}")
        hot_rows = x[(x >= 128).any(axis=1)].astype(np.uint8)
        per_output, n_hot = 1, len(hot_rows)

        def rows_at(sl: slice) -> np.ndarray:
            return hot_rows[sl]

    k = w.shape[1]
    if k % 2:  # a zero partner for the last product
        w = np.pad(w, ((0, 0), (0, 1)))
    w1, w2 = w[:, 0::2].T.astype(np.int32), w[:, 1::2].T.astype(np.int32)  # (P, C)
    # A pair can only saturate if a1 |w1| + a2 |w2| > 32767 for its largest weights, and
    # since |w| <= 128 only if a1 + a2 >= 256: the cheap test first. The candidates that pass
    # both are counted once per distinct (pair, a1, a2), then tried against every channel.
    big1, big2 = np.abs(w1).max(axis=1), np.abs(w2).max(axis=1)
    keys = []  # (distinct keys, how often) per chunk; a table instead if it is small
    table = np.zeros(len(w1) << 16, np.int64) if len(w1) <= 64 else None
    step = max(1, (1 << 23) // max(1, k))
    for start in range(0, n_hot, step):
        rows = rows_at(slice(start, start + step))
        if k % 2:
            rows = np.pad(rows, ((0, 0), (0, 1)))
        a1, a2 = rows[:, 0::2], rows[:, 1::2]
        flat = np.flatnonzero(a1.astype(np.uint16) + a2 >= 256)
        r, p = np.divmod(flat, a1.shape[1])
        c1, c2 = a1[r, p].astype(np.int64), a2[r, p].astype(np.int64)
        near = c1 * big1[p] + c2 * big2[p] > INT16_MAX
        key = (p[near] << 16) | (c1[near] << 8) | c2[near]
        if table is not None:
            table += np.bincount(key, minlength=len(table))
        else:
            keys.append(np.unique(key, return_counts=True))
    if table is not None:
        keys = [(np.flatnonzero(table), table[table > 0])]
    saturated = 0
    if keys:
        key, back = np.unique(np.concatenate([k for k, _ in keys]), return_inverse=True)
        times = np.bincount(back, weights=np.concatenate([n for _, n in keys])).astype(np.int64)
        p, c1, c2 = key >> 16, (key >> 8) & 255, key & 255
        for c0 in range(0, len(key), 1 << 14):  # each distinct candidate, against every channel
            sl = slice(c0, c0 + (1 << 14))
            sums = c1[sl, None] * w1[p[sl]] + c2[sl, None] * w2[p[sl]]
            hits = ((sums > INT16_MAX) | (sums < INT16_MIN)).sum(axis=1)
            saturated += int(hits @ times[sl])
    pairs = len(x) * per_output * w.shape[0] * (w.shape[1] // 2)
    return saturated, pairs
