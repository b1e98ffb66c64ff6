"""Integer-only inference in plain numpy: what a quantized linear or conv really computes.

Activations are uint8 codes with one scale and zero point (``s_x, z_x``); weights are int8
codes with a scale (and zero point) per output channel or per tensor (``s_w, z_w``); the
output is uint8 again (``s_y, z_y``). With real values ``x = s_x (q_x - z_x)`` etc.::

    y[n, c] = s_x s_w[c] * sum_k (q_x[n, k] - z_x)(q_w[c, k] - z_w[c]) + bias[c]

and the sum, expanded, is four integer terms (K = number of products per output)::

    sum q_x q_w  -  z_x sum_k q_w  -  z_w sum_k q_x  +  K z_x z_w
    (the matmul)   (column offset:   (row offset: per     (a constant)
                   per channel, at   input row, at run
                   pack time)        time; 0 if z_w = 0)

so the kernel multiplies raw codes (``vpmaddubsw``/VNNI take u8 x s8 directly) in int32 and
subtracts the offsets. Symmetric weights (``z_w = 0``, the default of every engine's qconfig)
drop the row offset, the only cross term that costs work at run time, in FBGEMM (x86/fbgemm),
which computes it only for ``z_w != 0``. QNNPACK takes a weight zero point always (PyTorch
adds 128 to its qint8 weights when packing them) and subtracts both zero points inside its
micro-kernels; oneDNN refuses ``z_w != 0``.

The arithmetic after the int32 accumulator is FBGEMM's ``ReQuantizeOutput`` (the x86 /
fbgemm engines' quantized linear and conv; include/fbgemm/OutputProcessing-inl.h and its
AVX2/AVX-512 versions in src/QuantUtilsAvx2.cc, src/QuantUtilsAvx512.cc,
src/FbgemmI8DepthwiseAvx2-inl.h), with the multipliers PyTorch computes in
aten/src/ATen/native/quantized/cpu/qlinear.cpp / qconv.cpp. Everything in float32::

    a[c]   = float32(s_x * s_w[c])                  # "act_times_w_scale"
    M[c]   = float32(a[c] / float32(s_y))           # the requantization multiplier
    b'[c]  = bias[c] / a[c]                         # per-channel weights: a division
           = bias[c] * float32(1 / a)               # per-tensor weights: a reciprocal, once
    v      = float32(acc) + b'[c]                   # the float32 bias is added to the
                                                    # accumulator, in units of s_x s_w
    q_y    = clamp(nearbyint(v * M[c]) + z_y, 0, 255)   # cvtps2dq: round half to even
    relu:    q_y = max(q_y, z_y)                    # ReLU is a clamp at the output zero point

So on x86 the bias is *not* quantized to int32: it stays float and is divided by ``s_x s_w``
before the requantization multiply. Integer-only hardware (gemmlowp, TFLite, most NPUs)
instead quantizes the bias to int32 at scale ``s_x s_w`` and replaces the float multiply
by a fixed-point one, ``M = M0 * 2**-31 * 2**-shift`` with an int32 ``M0``
(:func:`fixed_point_multiplier`, :func:`requantize`); that path can differ from the float
one by one code where ``v * M`` lands near a half. PyTorch's qnnpack engine sits in between:
it rounds the bias to int32 at ``s_x s_w`` but keeps the float32 multiplier
(``requantization="int32_bias"``), so its convolutions differ from x86 by one code where the
rounded bias tips ``v * M`` over a half.

On CPUs with AVX-512 VNNI, PyTorch's x86 engine runs symmetric-weight convolutions with
``groups <= 100`` on oneDNN instead of FBGEMM (``should_use_onednn_quant`` in PyTorch's
OnednnUtils.h; :func:`torch_conv_requantization`). oneDNN orders the same float32 operations
differently: ``v = float32(acc) * s_x' * s_w + bias`` (two products), then
``nearbyint(v * r_y + z_y)``, the zero point added before rounding, with
``s_x' = 1 / float32(1 / s_x)`` and ``r_y = 1 / (1 / float32(1 / s_y))``: PyTorch passes oneDNN
reciprocal scales, and they come back through float32 reciprocals
(``requantization="onednn"``; found by testing against the kernel, see
tests/unit/test_integer.py). The two agree except where the result lands within a float32
rounding of a half (or on a half, with an odd zero point).
:func:`fold_bn` is batch-norm folding as ``torch.ao.quantization.fuse_modules`` does it."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from qnb.affine import QParams
from qnb.checks import check_bool, check_int, check_int_codes, check_int_pair, show

__all__ = [
    "INT32_MAX",
    "FixedPoint",
    "multipliers",
    "fixed_point_multiplier",
    "requantize",
    "accumulate_linear",
    "accumulate_conv2d",
    "linear",
    "conv2d",
    "requantize_accumulator",
    "accumulator_bound",
    "fold_bn",
    "torch_conv_requantization",
]

INT32_MAX = 2**31 - 1
F32 = np.float32
REQUANTIZATIONS = ("float", "onednn", "int32_bias", "fixed_point")


class FixedPoint(NamedTuple):
    """A multiplier ``M ~= m0 * 2**(shift - 31)`` with an int32 mantissa ``m0`` in
    [2**30, 2**31) (0 for M = 0): what integer-only hardware multiplies by."""

    m0: np.ndarray
    shift: np.ndarray

    def value(self) -> np.ndarray:
        """The real multiplier this pair stands for (float64)."""
        return np.ldexp(np.asarray(self.m0, np.float64), np.asarray(self.shift) - 31)


# ----------------------------------------------------------------------------- validation
def _in_range(codes: np.ndarray, name: str, qp: QParams) -> None:
    bad = (codes < qp.qmin) | (codes > qp.qmax)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must hold codes in [qmin, qmax] = [{qp.qmin}, {qp.qmax}] of its QParams; "
            f"got {show(codes[idx])} at index {idx} ({int(bad.sum())} of {codes.size} "
            "codes outside)"
        )


def _check_qp(qp: Any, name: str, signed: bool, per_tensor: bool) -> QParams:
    if not isinstance(qp, QParams):
        raise TypeError(f"{name} must be a qnb.affine.QParams; got {type(qp).__name__}")
    kind = "signed (int8 weights)" if signed else "unsigned (uint8 activations)"
    if qp.signed != signed or qp.bits > 8:
        raise ValueError(
            f"{name} must describe {kind} codes of at most 8 bits; got signed={qp.signed}, "
            f"bits={qp.bits}"
        )
    if per_tensor and qp.per_channel:
        raise ValueError(
            f"{name} must be per-tensor (one scale and zero point); got {np.size(qp.scale)} "
            "channels"
        )
    return qp


def _check_bias(bias: Any, channels: int) -> np.ndarray | None:
    if bias is None:
        return None
    arr = np.asarray(bias)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"bias must be float32 numbers (or None); got dtype {arr.dtype}")
    if arr.shape != (channels,):
        raise ValueError(
            f"bias must have one value per output channel, shape ({channels},); got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"bias must be finite; got {show(arr[~np.isfinite(arr)][0])}")
    return arr.astype(F32)


def _check_channels(w_qp: QParams, channels: int) -> None:
    if w_qp.per_channel and np.size(w_qp.scale) != channels:
        raise ValueError(
            f"w_qp has {np.size(w_qp.scale)} per-channel scales but the weight has {channels} "
            "output channels (w_q.shape[0]); they must match"
        )


def _check_choice(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def _largest_code(qp: QParams) -> int:
    """The largest |q| or |q - z| a code of `qp` can have: what one factor of a product can be."""
    zp = np.asarray(qp.zero_point, np.int64)
    return int(max(abs(qp.qmin), abs(qp.qmax), np.max(qp.qmax - zp), np.max(zp - qp.qmin)))


def accumulator_bound(k: int, x_qp: QParams, w_qp: QParams) -> int:
    """The largest |int32 accumulator| `k` products of codes of `x_qp` and `w_qp` can reach.

    Each product of raw codes (or of codes minus zero points) is at most
    ``max|q_x| * max|q_w|`` (255 * 128 = 32,640 for uint8 x int8), so ``k`` of them stay
    inside int32 (2**31 - 1 = 2,147,483,647) for ``k <= 65,793``.
    """
    k = check_int("k", k, 1)
    return k * _largest_code(x_qp) * _largest_code(w_qp)


def _check_overflow(k: int, x_qp: QParams, w_qp: QParams) -> None:
    bound = accumulator_bound(k, x_qp, w_qp)
    if bound > INT32_MAX:
        per = _largest_code(x_qp) * _largest_code(w_qp)
        raise ValueError(
            f"the int32 accumulator can overflow: {k} products per output of up to "
            f"{_largest_code(x_qp)} x {_largest_code(w_qp)} = {per} each reach {bound:,}, "
            f"beyond 2**31 - 1 = {INT32_MAX:,}; at most {INT32_MAX // per:,} products per "
            "output (in_features, or in_channels / groups * kernel height * kernel width) "
            "fit these codes"
        )


# ----------------------------------------------------------------------------- multipliers
def multipliers(x_qp: QParams, w_qp: QParams, y_qp: QParams) -> tuple[np.ndarray, np.ndarray]:
    """``(a, M)`` in float32 as PyTorch computes them for FBGEMM (qlinear.cpp, qconv.cpp):
    ``a = s_x * s_w`` (the accumulator's scale, one per weight channel) and ``M = a / s_y``."""
    _check_qp(x_qp, "x_qp", signed=False, per_tensor=True)
    _check_qp(w_qp, "w_qp", signed=True, per_tensor=False)
    _check_qp(y_qp, "y_qp", signed=False, per_tensor=True)
    a = F32(x_qp.scale) * np.asarray(w_qp.scale, F32)
    return np.asarray(a, F32), np.asarray(a / F32(y_qp.scale), F32)


def fixed_point_multiplier(multiplier: Any) -> FixedPoint:
    """``M`` as ``m0 * 2**(shift - 31)``: TFLite's ``QuantizeMultiplier``
    (tensorflow/lite/kernels/internal/quantization_util.cc), the multipliers gemmlowp and
    TFLite's integer kernels take.

    ``M = q * 2**shift`` with q in [0.5, 1) (``std::frexp``), ``m0 = TfLiteRound(q * 2**31)``:
    rounded to nearest with exact ties *away from zero* (``std::round``), not to even; an
    ``m0`` rounded up to 2**31 is halved and the shift raised by one. As TFLite does, a
    multiplier below 2**-32 (``shift < -31``) is flushed to ``m0 = 0, shift = 0``.

    `multiplier`: a positive finite number or 1-D array of them. ``q * 2**31`` is exact in
    float64, so a float32 multiplier (24 significant bits) is represented exactly and any
    other within a relative 2**-31.
    """
    m = np.asarray(multiplier, np.float64)
    if m.dtype.kind not in "iuf" or not (np.isfinite(m) & (m > 0)).all() or m.ndim > 1:
        raise ValueError(
            f"multiplier must be a positive finite number or 1-D array of them; got "
            f"{show(multiplier)}"
        )
    q, shift = np.frexp(m)  # m = q * 2**shift, q in [0.5, 1)
    # TfLiteRound = std::round: half away from zero (q > 0: floor(x + 0.5), exact in float64
    # since q * 2**31 < 2**31 has at most 53 significant bits)
    m0 = np.floor(np.ldexp(q, 31) + 0.5).astype(np.int64)
    carry = m0 == 2**31  # q rounded up to 1.0: halve it, one more power of two
    m0 = np.where(carry, m0 // 2, m0)
    shift = np.where(carry, shift + 1, shift).astype(np.int64)
    tiny = shift < -31  # every bit would be shifted out: TFLite flushes to zero
    return FixedPoint(np.where(tiny, 0, m0), np.where(tiny, 0, shift))


def _rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul: ``(a * b + nudge) / 2**31`` with C's
    truncating division and ``nudge = 2**30`` (``1 - 2**30`` for a negative product): round to
    nearest, ties upward. In int64 here, with branch-free masks, in place."""
    total = np.multiply(a, b, dtype=np.int64)  # |a|, |b| <= 2**31: the product fits int64
    low31 = np.int64(INT32_MAX)
    sign = total >> 63  # -1 where negative, else 0
    sign &= low31
    total += 1 << 30
    total -= sign  # the nudge: 2**30, or 1 - 2**30 for a negative product
    np.right_shift(total, 63, out=sign)
    sign &= low31
    total += sign  # a negative total rounds toward zero in the shift below, as C's division
    total >>= 31
    if np.any(np.asarray(b) == -(2**31)):  # the one product that overflows int32
        total = np.where((a == b) & (a == -(2**31)), INT32_MAX, total)
    return total


def _rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: x / 2**exponent rounded half away from zero
    (remainder above ``mask >> 1``, or above it plus one for a negative x, rounds up)."""
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    remainder -= mask >> 1
    remainder -= x < 0  # the threshold is one higher for negative x
    out = x >> exponent
    out += remainder > 0
    return out


def requantize(
    acc: Any,
    multiplier: Any,
    zero_point: int,
    *,
    qmin: int = 0,
    qmax: int = 255,
    relu: bool = False,
    rounding: str = "double",
) -> np.ndarray:
    """Output codes ``clamp(round(acc * M) + zero_point, qmin, qmax)``, as int64.

    * `multiplier` a float (or an array broadcasting against `acc`): FBGEMM's float path,
      ``nearbyint(float32(acc) * float32(M))``, round half to even; `acc` may be float32 (the
      accumulator with the float bias already added) or integer.
    * `multiplier` a :class:`FixedPoint`: the integer-only path; `acc` must be int32 values.
      ``rounding="double"`` (gemmlowp, and TFLite's ``MultiplyByQuantizedMultiplier`` unless
      built with ``TFLITE_SINGLE_ROUNDING``, tensorflow/lite/kernels/internal/common.cc):
      shift left if ``shift > 0``, ``SaturatingRoundingDoublingHighMul`` by ``m0``
      (``round(x * m0 / 2**31)``, ties upward), then ``RoundingDivideByPOT`` by ``-shift``
      (ties away from zero): two roundings, so a product on the zero side of a half, within
      half a unit of the first rounding, is pushed onto the half and then away from zero: one
      code too far.
      ``rounding="single"``: one rounding of the 64-bit product,
      ``(x * m0 + 2**(30 - shift)) >> (31 - shift)`` (ties upward): TFLite's
      ``MultiplyByQuantizedMultiplier`` built with ``TFLITE_SINGLE_ROUNDING``, and ruy's
      (ruy/apply_multiplier.cc); it needs ``shift <= 30``.

    `relu` clamps from below at the zero point (the real 0) instead of qmin.
    """
    zero_point = check_int("zero_point", zero_point, -(2**31))
    relu = check_bool("relu", relu)
    qmin, qmax = check_int("qmin", qmin, -(2**31)), check_int("qmax", qmax, -(2**31))
    acc = np.asarray(acc)
    if acc.dtype.kind not in "iuf":
        raise TypeError(f"acc must be an int32 (or float32) accumulator; got dtype {acc.dtype}")
    if isinstance(multiplier, FixedPoint):
        if acc.dtype.kind == "f":
            raise TypeError(
                "acc must be integer for a FixedPoint multiplier (integer-only arithmetic: "
                f"add an int32 bias); got dtype {acc.dtype}"
            )
        acc = acc.astype(np.int64, copy=False)
        _check_int32(acc, "acc")
        _check_choice(rounding, "rounding", ("double", "single"))
        m0, shift = np.asarray(multiplier.m0, np.int64), np.asarray(multiplier.shift, np.int64)
        if rounding == "single":
            if np.any(shift > 30):
                raise ValueError(
                    "rounding='single' needs a multiplier below 2**30 (shift <= 30, as TFLite's "
                    f"single-rounding MultiplyByQuantizedMultiplier); got shift {shift.max()}"
                )
            total = 31 - shift  # |acc| <= 2**31 and m0 < 2**31: the product fits int64
            r = acc * m0
            r += np.int64(1) << (total - 1)
            r >>= total
        else:
            left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
            if np.any(left > 0):  # x * 2**left, saturated to int32 as the int32 kernels do
                acc = np.clip(acc << left, -(2**31), INT32_MAX)
            r = _rounding_divide_by_pot(_rounding_doubling_high_mul(acc, m0), right)
    else:
        if rounding != "double":
            raise ValueError(
                "rounding applies to a FixedPoint multiplier only (the float32 path rounds "
                f"once, half to even); got rounding={rounding!r} with a float multiplier"
            )
        m = np.asarray(multiplier, F32)
        if not (np.isfinite(m) & (m > 0)).all():
            raise ValueError(
                f"multiplier must be positive and finite; got {show(multiplier)}"
            )
        if acc.dtype.kind != "f":
            _check_int32(acc.astype(np.int64, copy=False), "acc")
        v = acc.astype(np.int64, copy=False).astype(F32) if acc.dtype.kind != "f" else acc
        r = np.rint(np.multiply(v, m, dtype=F32)).astype(np.int64)  # cvtps2dq: half to even
    low = zero_point if relu else qmin
    r += zero_point
    return np.clip(r, max(low, qmin), qmax, out=r)


def _check_int32(values: np.ndarray, name: str) -> None:
    if values.size and (values.min() < -(2**31) or values.max() > INT32_MAX):
        raise ValueError(f"{name} must fit in int32; got values up to {values.max()}")


# ----------------------------------------------------------------------------- accumulators
def accumulate_linear(x_q: Any, x_qp: QParams, w_q: Any, w_qp: QParams) -> np.ndarray:
    """The int32 accumulator ``sum_k (q_x - z_x)(q_w - z_w)`` of a linear layer, built the way
    the kernel builds it: the product of raw codes minus the zero-point cross terms.

    `x_q` (..., K) uint8 codes, `w_q` (C, K) int8 codes; returns int64 values of shape
    (..., C) that fit int32 (checked before anything is computed).
    """
    x, w = _check_linear_inputs(x_q, x_qp, w_q, w_qp)
    return _accumulate(x.reshape(-1, w.shape[1]), x_qp, w, w_qp).reshape(*x.shape[:-1], -1)


def _accumulate(x: np.ndarray, x_qp: QParams, w: np.ndarray, w_qp: QParams) -> np.ndarray:
    """(N, K) codes x (C, K) codes -> (N, C) accumulator, with its cross terms written out."""
    k = w.shape[1]
    z_x, z_w = int(x_qp.zero_point), np.asarray(w_qp.zero_point, np.int64)
    # The raw matmul, in floats because BLAS makes it fast (the kernel does it in int32:
    # vpmaddubsw + vpmaddwd, or vpdpbusd). Exact: every partial sum of raw codes is an integer
    # of magnitude at most k * max|q_x| * max|q_w|; float32 holds every integer below 2**24
    # and float64 every one below 2**53 (the int32 bound was checked), so no addition rounds.
    dtype = _exact_float(k, x_qp, w_qp)
    raw = (x.astype(dtype, copy=False) @ w.T.astype(dtype)).astype(np.int64)
    # Precomputed when the weights are packed: column offsets, one per output channel,
    # with the constant K z_x z_w folded in: -z_x (sum_k q_w - K z_w).
    col_offsets = w.sum(axis=1) - k * z_w
    acc = raw - z_x * col_offsets
    if np.any(z_w != 0):  # at run time: row offsets, one per input row (free if z_w = 0)
        acc = acc - x.sum(axis=1, keepdims=True, dtype=np.float64).astype(np.int64) * z_w
    return acc


def _exact_float(k: int, x_qp: QParams, w_qp: QParams) -> type:
    """float32 if every partial sum of `k` products of raw codes stays below 2**24, else
    float64."""
    largest = max(abs(x_qp.qmin), abs(x_qp.qmax)) * max(abs(w_qp.qmin), abs(w_qp.qmax))
    return np.float32 if k * largest < 2**24 else np.float64


def _check_codes(x: np.ndarray, x_qp: QParams, w: np.ndarray, w_qp: QParams) -> None:
    """One scale per output channel, codes inside their ranges, no int32 overflow for the
    K = in_features (x kernel size) products summed per output."""
    _check_channels(w_qp, w.shape[0])
    _in_range(x, "x_q", x_qp)
    _in_range(w, "w_q", w_qp)
    _check_overflow(int(np.prod(w.shape[1:])), x_qp, w_qp)


def _check_linear_inputs(
    x_q: Any, x_qp: QParams, w_q: Any, w_qp: QParams
) -> tuple[np.ndarray, np.ndarray]:
    _check_qp(x_qp, "x_qp", signed=False, per_tensor=True)
    _check_qp(w_qp, "w_qp", signed=True, per_tensor=False)
    x = check_int_codes("x_q", x_q, (1, 2, 3, 4), "codes of shape (..., in_features)")
    w = check_int_codes("w_q", w_q, (2,), "codes of shape (out_features, in_features)")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"x_q has {x.shape[-1]} features (last dim, shape {x.shape}) but w_q expects "
            f"{w.shape[1]} (shape {w.shape}); they must match"
        )
    _check_codes(x, x_qp, w, w_qp)
    return x, w


def accumulate_conv2d(
    x_q: Any,
    x_qp: QParams,
    w_q: Any,
    w_qp: QParams,
    stride: Any = 1,
    padding: Any = 0,
    groups: int = 1,
) -> np.ndarray:
    """The int32 accumulator of a 2-D convolution, (N, C_out, H_out, W_out) as int64.

    Padding is filled with the input zero point (the code of the real 0), as the kernels do;
    each group is a linear layer over its im2col patches.
    """
    x, w, stride, padding, groups = _check_conv_inputs(
        x_q, x_qp, w_q, w_qp, stride, padding, groups
    )
    return _conv_acc(x, x_qp, w, w_qp, stride, padding, groups)


def _conv_acc(x, x_qp, w, w_qp, stride, padding, groups) -> np.ndarray:
    n, c_in, _, _ = x.shape
    c_out, c_g, kh, kw = w.shape
    ph, pw = padding
    x = np.pad(  # padded with the code of the real 0; the patches are copied as floats
        x.astype(_exact_float(c_g * kh * kw, x_qp, w_qp)),
        ((0, 0), (0, 0), (ph, ph), (pw, pw)),
        constant_values=int(x_qp.zero_point),
    )
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    windows = windows[:, :, :: stride[0], :: stride[1]]  # (N, C_in, H_out, W_out, kh, kw)
    h_out, w_out = windows.shape[2:4]
    out = np.empty((n, c_out, h_out, w_out), np.int64)
    per_group = c_out // groups
    step = max(1, (1 << 22) // max(1, h_out * w_out * c_g * kh * kw))  # ~32 MB of patches
    for g in range(groups):
        sl = slice(g * per_group, (g + 1) * per_group)
        wg = w[sl].reshape(per_group, -1)
        qp = _channels(w_qp, sl)
        for start in range(0, n, step):
            patch = windows[start : start + step, g * c_g : (g + 1) * c_g]
            cols = patch.transpose(0, 2, 3, 1, 4, 5).reshape(-1, c_g * kh * kw)
            acc = _accumulate(cols, x_qp, wg, qp)
            out[start : start + step, sl] = acc.reshape(-1, h_out, w_out, per_group).transpose(
                0, 3, 1, 2
            )
    return out


def _channels(qp: QParams, sl: slice) -> QParams:
    if not qp.per_channel:
        return qp
    return QParams(
        qp.scale[sl], qp.zero_point[sl], qp.qmin, qp.qmax, qp.bits, qp.symmetric, qp.signed
    )


def _check_conv_inputs(x_q, x_qp, w_q, w_qp, stride, padding, groups):
    _check_qp(x_qp, "x_qp", signed=False, per_tensor=True)
    _check_qp(w_qp, "w_qp", signed=True, per_tensor=False)
    x = check_int_codes("x_q", x_q, (4,), "codes of shape (N, C_in, H, W)")
    w = check_int_codes("w_q", w_q, (4,), "codes of shape (C_out, C_in / groups, kH, kW)")
    groups = check_int("groups", groups, 1)
    stride, padding = check_int_pair("stride", stride, 1), check_int_pair("padding", padding, 0)
    if x.shape[1] % groups or w.shape[0] % groups:
        raise ValueError(
            f"groups must divide in_channels ({x.shape[1]}) and out_channels ({w.shape[0]}); "
            f"got groups={groups}"
        )
    if w.shape[1] * groups != x.shape[1]:
        raise ValueError(
            f"x_q has {x.shape[1]} input channels but w_q expects w_q.shape[1] * groups = "
            f"{w.shape[1]} * {groups} = {w.shape[1] * groups} (w_q.shape = {w.shape})"
        )
    for axis, name in ((2, "height"), (3, "width")):
        size = x.shape[axis] + 2 * padding[axis - 2]
        if size < w.shape[axis]:
            raise ValueError(
                f"the padded input {name} ({size}) is smaller than the kernel "
                f"({w.shape[axis]}); x_q.shape = {x.shape}, padding = {padding}"
            )
    _check_codes(x, x_qp, w, w_qp)
    return x, w, stride, padding, groups


# ----------------------------------------------------------------------------- the layers
def _output(acc, x_qp, w_qp, bias, y_qp, relu, requantization, channel_axis) -> np.ndarray:
    """Bias and requantization of an accumulator whose output channels are `channel_axis`."""
    _check_qp(y_qp, "y_qp", signed=False, per_tensor=True)
    relu = check_bool("relu", relu)
    _check_choice(requantization, "requantization", REQUANTIZATIONS)
    channels = acc.shape[channel_axis]
    bias = _check_bias(bias, channels)
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    a, m = multipliers(x_qp, w_qp, y_qp)
    z_y = int(y_qp.zero_point)
    limits = {"qmin": int(y_qp.qmin), "qmax": int(y_qp.qmax), "relu": relu}
    if requantization == "float":
        v = acc.astype(F32)  # cvtepi32_ps (exact below 2**24, else round to nearest even)
        if bias is not None:
            if w_qp.per_channel:  # _mm256_div_ps(bias, act_times_w_scale)
                b = bias / np.broadcast_to(a, bias.shape)
            else:  # _mm256_mul_ps(bias, 1.0 / act_times_w_scale): a reciprocal, then multiply
                b = bias * F32(1.0 / np.float64(a))
            v = v + np.asarray(b, F32).reshape(shape)
        return requantize(v, np.broadcast_to(m, (channels,)).reshape(shape), z_y, **limits)
    if requantization == "onednn":  # oneDNN: dequantize, add the bias, times 1 / s_y
        # src and weight scales applied one after the other (not their product), in float32.
        # PyTorch hands oneDNN *reciprocal* scales (qconv.cpp: "Scales of ONEDNN and PyTorch
        # are reciprocal"): scale_t(1, 1.0 / input_scale) and 1.0 / output_scale, float32s,
        # and the kernel multiplies by their float32 reciprocals, each a round trip that can
        # move the scale by one ulp: 1 / float32(1 / s_x), and for the output the reciprocal
        # of 1 / float32(1 / s_y). Found by testing against the kernel on near-ties (see
        # tests/unit/test_integer.py); the weight scales are used as float32(s_w).
        s_x = F32(1) / F32(1.0 / float(x_qp.scale))
        s_w = np.asarray(w_qp.scale, F32)
        v = (acc.astype(F32) * s_x) * (s_w.reshape(shape) if s_w.ndim else s_w)
        if bias is not None:
            v = v + bias.reshape(shape)
        inv_y = F32(1) / (F32(1) / F32(1.0 / float(y_qp.scale)))
        # the zero point is added in float32 *before* rounding (FBGEMM adds it after)
        q = np.rint(np.asarray(v * inv_y + F32(z_y), F32)).astype(np.int64)
        low = z_y if relu else int(y_qp.qmin)
        return np.clip(q, max(low, int(y_qp.qmin)), int(y_qp.qmax))
    if requantization == "int32_bias":  # qnnpack: bias rounded to int32, float multiplier
        if bias is not None:
            acc = acc + np.rint(bias / np.broadcast_to(a, bias.shape)).astype(np.int64).reshape(
                shape
            )
        return requantize(acc, np.broadcast_to(m, (channels,)).reshape(shape), z_y, **limits)
    # integer-only: the bias quantized to int32 at scale s_x s_w, a fixed-point multiplier
    s_acc = np.float64(x_qp.scale) * np.asarray(w_qp.scale, np.float64)
    if bias is not None:
        acc = acc + np.rint(bias / s_acc).astype(np.int64).reshape(shape)
    fp = fixed_point_multiplier(np.broadcast_to(s_acc / np.float64(y_qp.scale), (channels,)))
    fp = FixedPoint(fp.m0.reshape(shape), fp.shift.reshape(shape))
    return requantize(acc, fp, z_y, **limits)


def linear(
    x_q: Any,
    x_qp: QParams,
    w_q: Any,
    w_qp: QParams,
    bias: Any,
    y_qp: QParams,
    relu: bool = False,
    *,
    requantization: str = "float",
) -> np.ndarray:
    """A quantized linear layer in integers: ``torch.ao.nn.quantized.Linear`` (``LinearReLU``
    with ``relu=True``) bit for bit on the x86/fbgemm engines.

    `x_q` (..., K) uint8 codes with per-tensor `x_qp`; `w_q` (C, K) int8 codes with per-tensor
    or per-channel `w_qp`; `bias` (C,) float32 or None; output codes (..., C) as int64 with
    per-tensor `y_qp`. `requantization`: ``"float"`` (x86/FBGEMM: float32 bias added after
    dividing by ``s_x s_w``, float32 multiplier), ``"onednn"`` (x86 convolutions on VNNI
    CPUs: ``round((acc * s_x * s_w + bias) / s_y + z_y)`` in float32), ``"int32_bias"``
    (qnnpack: the bias rounded to int32 at scale ``s_x s_w`` first, float32 multiplier) or
    ``"fixed_point"`` (int32 bias, :func:`fixed_point_multiplier`, no float at all).
    """
    acc = accumulate_linear(x_q, x_qp, w_q, w_qp)
    return _output(acc, x_qp, w_qp, bias, y_qp, relu, requantization, channel_axis=-1)


def conv2d(
    x_q: Any,
    x_qp: QParams,
    w_q: Any,
    w_qp: QParams,
    bias: Any,
    y_qp: QParams,
    stride: Any = 1,
    padding: Any = 0,
    groups: int = 1,
    relu: bool = False,
    *,
    requantization: str = "float",
) -> np.ndarray:
    """A quantized 2-D convolution in integers: ``torch.ao.nn.quantized.Conv2d``
    (``ConvReLU2d`` with ``relu=True``) bit for bit on the x86 engine (FBGEMM, and oneDNN
    where x86 picks it). Shapes as torch's: `x_q` (N, C_in, H, W), `w_q`
    (C_out, C_in / groups, kH, kW); `stride`/`padding` an int or a pair. See :func:`linear`.
    """
    acc = accumulate_conv2d(x_q, x_qp, w_q, w_qp, stride, padding, groups)
    return _output(acc, x_qp, w_qp, bias, y_qp, relu, requantization, channel_axis=1)


def requantize_accumulator(
    acc: Any,
    x_qp: QParams,
    w_qp: QParams,
    bias: Any,
    y_qp: QParams,
    relu: bool = False,
    *,
    requantization: str = "float",
    channel_axis: int = -1,
) -> np.ndarray:
    """A layer's output codes from its int32 accumulator (:func:`accumulate_linear`,
    :func:`accumulate_conv2d`): the bias and requantization :func:`linear` and :func:`conv2d`
    apply after accumulating (`requantization` as there), the output channels on
    `channel_axis` (-1 for a linear layer, 1 for a convolution). One accumulator can so be
    requantized several ways, e.g. in oneDNN's and in FBGEMM's order."""
    arr = np.asarray(acc)
    if arr.dtype.kind not in "iu" or arr.ndim == 0:
        raise TypeError(
            f"acc must be an integer accumulator array (from accumulate_linear or "
            f"accumulate_conv2d); got dtype {arr.dtype}, shape {arr.shape}"
        )
    arr = arr.astype(np.int64, copy=False)
    _check_int32(arr, "acc")
    channel_axis = check_int("channel_axis", channel_axis, -arr.ndim, arr.ndim - 1)
    _check_qp(x_qp, "x_qp", signed=False, per_tensor=True)
    _check_qp(w_qp, "w_qp", signed=True, per_tensor=False)
    _check_channels(w_qp, arr.shape[channel_axis])
    return _output(arr, x_qp, w_qp, bias, y_qp, relu, requantization, channel_axis)


# ----------------------------------------------------------------------------- batch norm
def fold_bn(
    weight: Any,
    bias: Any,
    gamma: Any,
    beta: Any,
    mean: Any,
    var: Any,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
    """Batch norm folded into the conv (or linear) before it, in float32 as torch does it
    (``torch.nn.utils.fusion.fuse_conv_bn_weights``)::

        W' = W * gamma / sqrt(var + eps)      (per output channel, axis 0)
        b' = (b - mean) * gamma / sqrt(var + eps) + beta     (b = 0 if the conv has none)
    """
    w = _float_array(weight, "weight")
    c = w.shape[0] if w.ndim else 0
    if w.ndim < 2:
        raise ValueError(f"weight must be (C_out, ...) with at least 2 dims; got {w.shape}")
    gamma, beta, mean, var = (
        _float_array(v, n, (c,))
        for v, n in ((gamma, "gamma"), (beta, "beta"), (mean, "mean"), (var, "var"))
    )
    b = np.zeros(c, F32) if bias is None else _float_array(bias, "bias", (c,))
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0; got {show(eps)}")
    if np.any(var + F32(eps) <= 0):
        raise ValueError(f"var + eps must be > 0 in every channel; got min {np.min(var + eps)}")
    inv_std = F32(1) / np.sqrt(var + F32(eps))  # torch.rsqrt
    scale = (gamma * inv_std).astype(F32)
    w_folded = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
    b_folded = (b - mean) * inv_std * gamma + beta
    return w_folded.astype(F32), b_folded.astype(F32)


def _float_array(value: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers; got dtype {arr.dtype}")
    if shape is not None and arr.shape != shape:
        raise ValueError(
            f"{name} must have shape {shape} (one per output channel); got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite; got {show(arr[~np.isfinite(arr)][0])}")
    return arr.astype(F32)


def torch_conv_requantization(
    engine: str, vnni: bool, groups: int = 1, symmetric_weights: bool = True
) -> str:
    """The `requantization` of :func:`conv2d` that matches PyTorch's conv kernel on `engine`.

    x86 picks oneDNN when the CPU has AVX-512 VNNI, the weights are symmetric and
    ``groups <= 100`` (PyTorch's ``should_use_onednn_quant``), FBGEMM otherwise; ``fbgemm``
    is FBGEMM, ``onednn`` oneDNN, ``qnnpack`` the int32-bias path."""
    paths = {"fbgemm": "float", "onednn": "onednn", "qnnpack": "int32_bias"}
    if engine == "x86":
        vnni, symmetric_weights = (
            check_bool("vnni", vnni),
            check_bool("symmetric_weights", symmetric_weights),
        )
        use_onednn = vnni and symmetric_weights and check_int("groups", groups, 1) <= 100
        return "onednn" if use_onednn else "float"
    _check_choice(engine, "engine", ("x86", *paths))
    return paths[engine]
