"""Affine (scale / zero-point) quantization in plain numpy, bit-exact with PyTorch.

The mapping between a real number ``x`` and its integer code ``q`` is::

    q     = clamp(round(x / scale) + zero_point, qmin, qmax)
    x_hat = (q - zero_point) * scale

This module is the teaching reference of the workbook. ``quantize`` reproduces the arithmetic
of PyTorch's CPU kernels (``torch.quantize_per_tensor`` / ``torch.quantize_per_channel``; the
per-tensor path is fbgemm's ``Quantize``, the per-channel path ATen's ``quantize_val``, and both
compute the same thing), step by step and in the same precision::

    s         = float32(scale)             # the kernels take the scale as float32
    inv_scale = float32(1) / s             # a float32 reciprocal, computed once ...
    y         = float32(x) * inv_scale     # ... and multiplied: x * (1/s), not x / s
    r         = nearbyint(y)               # round half to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2
    q         = clamp(r + zero_point, qmin, qmax)   # the zero point is added AFTER rounding

Two details matter for exactness and are easy to get wrong:

* ``x * (1/s)`` and ``x / s`` differ in the last bit for some inputs, and that bit decides
  ties. With ``s = 0.00214854861`` and ``x = 0.273939937`` (float32), ``x * (1/s)`` is exactly
  127.5 (rounds to 128, which torch returns) while ``x / s`` is 127.49999 (rounds to 127).
* The tie is broken on the offset ``x/s``, not on ``q``: with ``zero_point = 1``, x/s = 0.5
  gives q = 0 + 1 = 1 and x/s = 1.5 gives q = 2 + 1 = 3 (``round(x/s + zp)`` would give 2, 2).

``dequantize`` is ``float32(q - zero_point) * float32(scale)``: exact integer subtraction, one
float32 rounding, which is what torch's ``dequantize`` and ``fake_quantize_*`` return.

Deliberate difference from torch (see pytorch/pytorch#133557): on x86, torch's per-tensor
kernel adds the zero point in int32 after saturating ``y`` at 2**31 - 128, so for quint8 with
``zero_point >= 128`` and ``x / scale >= 2**31 - 128`` (or ``x = inf``) the sum overflows and
torch returns 0 instead of 255. Here such values saturate to ``qmax``, as torch's per-channel
kernel does. Everywhere else the codes agree bit for bit (tested in tests/unit/test_affine.py).

``qparams`` follows ``torch.ao.quantization`` observers' ``calculate_qparams``: float32
arithmetic, the range widened to include 0, and the scale floored at float32 eps (2**-23).
Deliberate difference: for unsigned symmetric quantization the zero point is always the
midpoint 2**(bits-1) (torch's default for quint8 and uint16), whereas torch observers given an
explicit ``quant_min``/``quant_max`` use ``(quant_min + quant_max) // 2`` (127 for 0..255).

Worked example, [-10, 10] at 8 bits (scale = 20/255 ~ 0.0784 in every variant)::

    variant                       zero_point   quantize(3.14)   dequantize -> x_hat
    asymmetric, unsigned 0..255          127              167   (167 - 127) * s = 3.1372550
    symmetric, signed -128..127            0               40   (40 - 0) * s    = 3.1372550
    symmetric, unsigned 0..255           128              168   (168 - 128) * s = 3.1372550

3.14 / s = 40.035, rounded 40: the offset from the zero point is 40 in all three. The
asymmetric zero point is 0 - round(-10 / s): exactly -127.5 in real numbers, a tie that
float64 would round to -128 (zero point 128), but in float32, as torch computes it,
-10 / s = -127.49999, which rounds to -127, so the zero point is 127 (torch's MinMaxObserver
agrees).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from qnb.checks import check_bits, show

__all__ = ["QParams", "qparams", "quantize", "dequantize", "fake_quantize", "sqnr_db"]

MIN_BITS, MAX_BITS = 2, 16
EPS = np.float32(np.finfo(np.float32).eps)  # torch observers' smallest scale (2**-23)


# ----------------------------------------------------------------------------- validation
def _first_bad(arr: np.ndarray, bad: np.ndarray) -> str:
    """'nan at index (2,) (3 of 10 values)' for the first True of `bad`."""
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f" at index {idx}" if arr.ndim else ""
    count = f" ({int(bad.sum())} of {arr.size} values)" if arr.size > 1 else ""
    return f"{show(arr[idx])}{where}{count}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _check_bits(bits: Any) -> int:
    return check_bits("bits", bits, MIN_BITS, MAX_BITS)


def _check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False; got {show(value)}")
    return bool(value)


def _check_axis(axis: Any, ndim: int, name: str) -> int:
    if not _is_int(axis) or not -ndim <= axis < ndim:
        allowed = f"an int in {-ndim}..{ndim - 1}" if ndim else "None"
        raise ValueError(f"axis must be {allowed} for {ndim}-d {name}; got {show(axis)}")
    return int(axis) % ndim


def _as_array(value: Any, name: str, kinds: str, what: str) -> np.ndarray:
    """`value` as an ndarray whose dtype kind is one of `kinds` ('i', 'u', 'f', 'b')."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # e.g. ragged nested lists
        raise TypeError(f"{name} must be {what}; got {show(value)}") from exc
    if arr.dtype.kind not in kinds:
        raise TypeError(f"{name} must be {what}; got dtype {arr.dtype} ({show(value)})")
    return arr


def _as_real(value: Any, name: str, dtype: type = np.float32) -> np.ndarray:
    """Real numbers as `dtype` (float32, like a torch float tensor); NaN and inf are rejected."""
    arr = _as_array(value, name, "iuf", "real numbers (int or float)")
    bad = ~np.isfinite(arr) if arr.dtype.kind == "f" else np.zeros(arr.shape, bool)
    if bad.any():
        raise ValueError(f"{name} must be finite; got {_first_bad(arr, bad)}")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes +-inf: clamps
        return arr.astype(dtype)


def _int_range(bits: int, signed: bool) -> tuple[int, int]:
    """The full integer range of a `bits`-bit (un)signed type."""
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def _check_code(value: Any, name: str, lo: int, hi: int) -> np.int64:
    if not _is_int(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in {lo}..{hi}; got {show(value)}")
    return np.int64(value)


def _check_scale(value: Any) -> np.ndarray:
    scale = _as_array(value, "scale", "iuf", "a positive finite number or 1-D array of them")
    scale = scale.astype(np.float64)
    bad = ~(np.isfinite(scale) & (scale > 0))
    if scale.ndim > 1 or bad.any():
        got = f"shape {scale.shape}" if scale.ndim > 1 else _first_bad(scale, bad)
        raise ValueError(f"scale must be a positive finite number or 1-D array; got {got}")
    return scale


def _check_zero_point(value: Any, qmin: int, qmax: int) -> np.ndarray:
    zp = _as_array(value, "zero_point", "iu", "an int or 1-D array of ints")
    zp = zp.astype(np.int64)
    bad = (zp < qmin) | (zp > qmax)
    if zp.ndim > 1 or bad.any():
        got = f"shape {zp.shape}" if zp.ndim > 1 else _first_bad(zp, bad)
        raise ValueError(f"zero_point must be an int in [qmin, qmax] = [{qmin}, {qmax}]; got {got}")
    return zp


def _frozen(arr: np.ndarray) -> np.ndarray | np.generic:
    """A 0-d array as a numpy scalar; otherwise a read-only copy."""
    if arr.ndim == 0:
        return arr[()]
    arr = arr.copy()
    arr.flags.writeable = False
    return arr


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True, eq=False)
class QParams:
    """Quantization parameters: per-tensor (scalar scale / zero_point) or per-channel (1-D).

    Codes live in ``qmin..qmax``, which must fit a `bits`-bit signed or unsigned integer.
    Usually made by :func:`qparams`; direct construction validates every field. The arithmetic
    uses ``float32(scale)``, as torch does; ``qparams`` returns scales that are float32 numbers.
    """

    scale: Any
    zero_point: Any
    qmin: Any
    qmax: Any
    bits: int = 8
    symmetric: bool = False
    signed: bool = False

    def __post_init__(self) -> None:
        bits = _check_bits(self.bits)
        signed = _check_flag(self.signed, "signed")
        symmetric = _check_flag(self.symmetric, "symmetric")
        lo, hi = _int_range(bits, signed)
        qmin = _check_code(self.qmin, "qmin", lo, hi)
        qmax = _check_code(self.qmax, "qmax", lo, hi)
        if qmin >= qmax:
            raise ValueError(f"qmin must be < qmax; got qmin={qmin}, qmax={qmax}")
        scale = _check_scale(self.scale)
        zp = _check_zero_point(self.zero_point, int(qmin), int(qmax))
        if scale.shape != zp.shape:
            raise ValueError(
                f"scale and zero_point must have the same shape; got {scale.shape} and {zp.shape}"
            )
        for name, value in [
            ("scale", _frozen(scale)),
            ("zero_point", _frozen(zp)),
            ("qmin", qmin),
            ("qmax", qmax),
            ("bits", bits),
            ("symmetric", symmetric),
            ("signed", signed),
        ]:
            object.__setattr__(self, name, value)

    @property
    def per_channel(self) -> bool:
        """True when `scale` and `zero_point` are 1-D arrays, one entry per channel."""
        return np.ndim(self.scale) == 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QParams):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f), getattr(other, f)) for f in self.__dataclass_fields__
        )

    __hash__ = None  # type: ignore[assignment]  # may hold arrays

    def __repr__(self) -> str:
        def fmt(v: Any) -> str:
            return np.array2string(v, separator=", ") if np.ndim(v) else show(v)

        fields = ", ".join(f"{f}={fmt(getattr(self, f))}" for f in self.__dataclass_fields__)
        return f"QParams({fields})"


def qparams(
    xmin: Any,
    xmax: Any,
    bits: int = 8,
    symmetric: bool = False,
    signed: bool | None = None,
    narrow_range: bool = False,
) -> QParams:
    """Scale and zero point covering ``[xmin, xmax]`` with `bits`-bit integer codes.

    `xmin`/`xmax` are numbers (per-tensor) or 1-D arrays (per-channel). `signed` defaults to
    False for asymmetric (codes 0..2**bits-1) and True for symmetric (-2**(bits-1)..2**(bits-1)-1);
    `narrow_range` drops the lowest code (e.g. -127..127). Computed like torch's observers:
    in float32, the range widened to include 0, the scale at least float32 eps.

    * asymmetric: ``scale = (xmax - xmin) / (qmax - qmin)``,
      ``zero_point = clamp(qmin - round(xmin / scale), qmin, qmax)``
    * symmetric: ``scale = max(-xmin, xmax) / ((qmax - qmin) / 2)``, ``zero_point`` 0 if
      signed, else the midpoint 2**(bits-1).

    >>> qp = qparams(-10, 10)   # scale 20/255 ~ 0.0784; the zero point is 127, see module doc
    >>> int(qp.zero_point), int(quantize(3.14, qp)), float(dequantize(167, qp))
    (127, 167, 3.1372549533843994)

    Taught in notebook 01 (affine_quantization).
    """
    bits = _check_bits(bits)
    symmetric = _check_flag(symmetric, "symmetric")
    narrow_range = _check_flag(narrow_range, "narrow_range")
    signed = symmetric if signed is None else _check_flag(signed, "signed")
    qmin, qmax = _int_range(bits, signed)
    qmin += int(narrow_range)  # drop the lowest code

    lo, hi = _as_real(xmin, "xmin"), _as_real(xmax, "xmax")
    if lo.ndim > 1 or hi.ndim > 1 or (lo.ndim and hi.ndim and lo.shape != hi.shape):
        raise ValueError(
            "xmin and xmax must be numbers or 1-D arrays of one length (one per channel); "
            f"got shapes {lo.shape} and {hi.shape}"
        )
    lo, hi = np.broadcast_arrays(lo, hi)
    if (lo > hi).any():
        bad = lo > hi
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f" at channel {idx[0]}" if idx else ""
        raise ValueError(
            f"xmin must be <= xmax; got xmin={show(lo[idx])} > xmax={show(hi[idx])}{where}"
        )
    lo = np.minimum(lo, np.float32(0))  # the range must contain 0 so that 0 is exact
    hi = np.maximum(hi, np.float32(0))
    with np.errstate(over="ignore"):
        if symmetric:
            scale = np.maximum(np.maximum(-lo, hi) / np.float32((qmax - qmin) / 2), EPS)
        else:
            scale = np.maximum((hi - lo) / np.float32(qmax - qmin), EPS)
    if not np.isfinite(scale).all():
        raise ValueError(
            "xmax - xmin must fit in float32 (below 3.4e38); "
            f"got xmin={show(np.min(xmin))}, xmax={show(np.max(xmax))}"
        )
    if symmetric:
        zero_point = np.full(lo.shape, 0 if signed else (qmin + qmax + 1) // 2, np.int64)
    else:
        zero_point = np.clip(qmin - np.rint(lo / scale).astype(np.int64), qmin, qmax)
    return QParams(scale.astype(np.float64), zero_point, qmin, qmax, bits, symmetric, signed)


# ----------------------------------------------------------------------------- the mapping
def _params_for(
    qp: Any, shape: tuple[int, ...], axis: Any, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """(float32 scale, int64 zero_point) shaped to broadcast against an array of `shape`."""
    if not isinstance(qp, QParams):
        raise TypeError(f"qp must be a QParams (see qparams()); got {type(qp).__name__}")
    scale = np.asarray(qp.scale, np.float32)  # torch keeps scales as float32
    zero_point = np.asarray(qp.zero_point, np.int64)
    ndim = len(shape)
    if axis is not None:
        axis = _check_axis(axis, ndim, name)
    if not qp.per_channel:
        return scale, zero_point
    if axis is None:
        raise ValueError(
            f"axis is required for per-channel qp ({scale.size} channels); got axis=None"
        )
    if scale.size != shape[axis]:
        raise ValueError(
            f"per-channel qp has {scale.size} channels but {name}.shape[{axis}] is "
            f"{shape[axis]} ({name}.shape = {shape}); they must match"
        )
    channel_shape = [1] * ndim
    channel_shape[axis] = scale.size
    return scale.reshape(channel_shape), zero_point.reshape(channel_shape)


def quantize(x: Any, qp: QParams, axis: int | None = None) -> np.ndarray:
    """Integer codes (int64) of `x`, bit-exact with torch's quantize_per_tensor / _per_channel.

    `x` is taken as float32, like a torch float tensor. For per-channel `qp`, `axis` names the
    dimension of `x` that the parameters index (negative allowed).

    Taught in notebook 01 (affine_quantization).
    """
    x = _as_real(x, "x")
    scale, zero_point = _params_for(qp, x.shape, axis, "x")
    inv_scale = np.float32(1) / scale  # float32 reciprocal, as in torch's kernels
    with np.errstate(over="ignore"):  # huge |x| gives +-inf, which clamps below
        y = x * inv_scale  # float32 product, one rounding
    r = np.rint(y)  # round half to even (C's nearbyint)
    # Add the zero point after rounding, then clamp; float64 holds r + zero_point exactly
    # whenever it matters (|r| < 2**52), and inf clamps to qmax.
    q = np.clip(r.astype(np.float64) + zero_point, qp.qmin, qp.qmax)
    return np.asarray(q.astype(np.int64))


def dequantize(q: Any, qp: QParams, axis: int | None = None) -> np.ndarray:
    """Float32 values ``(q - zero_point) * scale`` of integer codes `q` in qmin..qmax.

    Bit-exact with torch's ``dequantize`` (its per-channel kernel multiplies by the float64
    scale, which agrees because ``qparams`` scales are float32 numbers).

    Taught in notebook 01 (affine_quantization).
    """
    q = _as_array(q, "q", "iu", "integer codes (an int array)")
    scale, zero_point = _params_for(qp, q.shape, axis, "q")
    bad = (q < qp.qmin) | (q > qp.qmax)
    if bad.any():
        raise ValueError(
            f"q must hold codes in [qmin, qmax] = [{qp.qmin}, {qp.qmax}]; got {_first_bad(q, bad)}"
        )
    offset = q.astype(np.int64) - zero_point  # exact integer subtraction (no uint8 wrap-around)
    return np.asarray(offset.astype(np.float32) * scale)  # one float32 rounding


def fake_quantize(x: Any, qp: QParams, axis: int | None = None) -> np.ndarray:
    """``dequantize(quantize(x))``: `x` snapped to the nearest representable float32 value.

    Bit-exact with torch.fake_quantize_per_tensor_affine / _per_channel_affine.

    Taught in notebook 01 (affine_quantization).
    """
    return dequantize(quantize(x, qp, axis), qp, axis)


def sqnr_db(x: Any, x_hat: Any) -> float:
    """Signal-to-quantization-noise ratio ``10 * log10(sum(x**2) / sum((x - x_hat)**2))``, in dB.

    ``inf`` when `x_hat` equals `x`; ``-inf`` when `x` is all zeros but `x_hat` is not.

    Taught in notebook 01 (affine_quantization).
    """
    a = _as_real(x, "x", np.float64)
    b = _as_real(x_hat, "x_hat", np.float64)
    if a.shape != b.shape:
        raise ValueError(f"x and x_hat must have the same shape; got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError(f"x and x_hat must not be empty; got shape {a.shape}")
    signal, noise = float(np.sum(a * a)), float(np.sum((a - b) ** 2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))
