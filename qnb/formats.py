"""Number formats as bits: packing, FP8 (E4M3, E5M2 and their `fnuz` variants), the OCP MX block
formats, NVFP4 and NF4 with double quantization. Plain numpy (torch only where a format is
defined by torch's own arithmetic), written from each format's bit layout and tested bit for bit
against torch's float8 casts, torchao's MX/NVFP4 code and bitsandbytes' `quantize_4bit`.

- **Packing**: `pack_int4` / `unpack_int4` put two 4-bit codes in a byte; `pack_bits` /
  `unpack_bits` pack codes of any width (2, 3, ... bits) into a little-endian bit stream.
- **Small floats** (`FloatFormat`, `FORMATS`): 1 sign bit, `ebits` exponent bits with a bias,
  `mbits` mantissa bits; exponent field 0 holds the subnormals. What the top codes mean is the
  format's `special`: "ieee" (top exponent: infinities and NaNs; E5M2), "fn" (finite: only
  S.1111.111 is NaN; OCP E4M3), "fnuz" (finite, unsigned zero: 0x80 is the one NaN and there
  is no -0; AMD/Graphcore's E4M3FNUZ, E5M2FNUZ) or "none" (every code is a number; the MX
  elements E2M1, E2M3, E3M2). `encode_float(x, fmt, saturate=...)` rounds float32 to nearest,
  ties to even; values beyond the largest finite value become it (`saturate=True`) or the
  format's infinity, else its NaN. `decode_float` is the inverse.
- **MX** (OCP Microscaling Formats v1.0): blocks of 32 elements share one E8M0 scale, a power of
  two 2^(floor(log2 amax) - emax_elem) (spec section 6.3); `mx_encode` / `mx_decode` for MXFP8
  (E4M3, E5M2), MXFP6 (E2M3, E3M2), MXFP4 (E2M1) and MXINT8 (int8 times 2^-6).
- **NVFP4**: E2M1 in blocks of 16, one E4M3 scale per block and one float32 scale per tensor
  (`nvfp4_encode` / `nvfp4_decode`, as torchao's `nvfp4_quantize` with a per-tensor scale).
- **NF4** (QLoRA): 16 levels at quantiles of a normal distribution, one absmax per block of 64
  (`nf4_encode`); double quantization stores those absmax values in 8 bits per block of 256
  (`double_quantize`, bitsandbytes' `compress_statistics=True`).
- **On a model**: `quantize_weight(w, name)` returns a weight rounded to the format `name`
  (blocks and groups run along each output row), `bits_per_value(name, shape)` its storage with
  every scale counted, `sqnr_db` the error.

Taught in notebook 13 (number_formats).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from qnb.checks import check_int

__all__ = [
    "FloatFormat", "FORMATS", "MX_ELEMENTS", "WEIGHT_FORMATS",
    "pack_int4", "unpack_int4", "pack_bits", "unpack_bits",
    "float_format", "encode_float", "decode_float", "float_grid",
    "scaled_fp8", "mx_encode", "mx_decode", "nvfp4_encode", "nvfp4_decode",
    "nf4_levels", "nf4_encode", "nf4_decode", "dynamic_map", "double_quantize",
    "double_dequantize", "quantize_weight", "bits_per_value", "sqnr_db",
]


@dataclass(frozen=True)
class FloatFormat:
    """A small float: sign, `ebits` exponent bits (bias `bias`), `mbits` mantissa bits, and what
    its top codes mean (`special`: "ieee", "fn", "fnuz" or "none", see the module docstring)."""

    name: str
    ebits: int
    mbits: int
    bias: int
    special: str

    @property
    def bits(self) -> int:
        return 1 + self.ebits + self.mbits

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal value (subnormals share it)."""
        return 1 - self.bias

    @property
    def max_fields(self) -> tuple[int, int]:
        """(exponent field, mantissa field) of the largest finite value."""
        top, full = 2**self.ebits - 1, 2**self.mbits - 1
        if self.special == "ieee":
            return top - 1, full
        if self.special == "fn":
            return top, full - 1
        return top, full

    @property
    def max(self) -> float:
        """The largest finite value."""
        e, m = self.max_fields
        return math.ldexp(1 + m / 2**self.mbits, e - self.bias)

    @property
    def emax(self) -> int:
        """Exponent of the largest finite value, floor(log2(max)) (MX calls it emax_elem)."""
        return self.max_fields[0] - self.bias


FORMATS = {
    "e4m3fn": FloatFormat("e4m3fn", 4, 3, 7, "fn"),
    "e5m2": FloatFormat("e5m2", 5, 2, 15, "ieee"),
    "e4m3fnuz": FloatFormat("e4m3fnuz", 4, 3, 8, "fnuz"),
    "e5m2fnuz": FloatFormat("e5m2fnuz", 5, 2, 16, "fnuz"),
    "e2m1": FloatFormat("e2m1", 2, 1, 1, "none"),
    "e2m3": FloatFormat("e2m3", 2, 3, 1, "none"),
    "e3m2": FloatFormat("e3m2", 3, 2, 3, "none"),
}
# MX name -> element format ("int8": MXINT8, two's complement with an implied scale of 2^-6)
MX_ELEMENTS = {"mxfp8_e4m3": "e4m3fn", "mxfp8_e5m2": "e5m2", "mxfp6_e2m3": "e2m3",
               "mxfp6_e3m2": "e3m2", "mxfp4": "e2m1", "mxint8": "int8"}


def float_format(fmt: str | FloatFormat) -> FloatFormat:
    """`fmt` as a FloatFormat (a name of `FORMATS` or a FloatFormat), or an error."""
    if isinstance(fmt, FloatFormat):
        return fmt
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {sorted(FORMATS)} (or a FloatFormat), got {fmt!r}")
    return FORMATS[fmt]


def _float32(name: str, x: object, *, finite: bool = False) -> np.ndarray:
    try:
        array = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of float32 values, got "
                        f"{type(x).__name__} ({exc})") from None
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    if array.dtype != np.float32 and array.dtype.kind == "f" and array.dtype.itemsize > 4:
        raise TypeError(f"{name} must be float32 (round it first: a float64 would be rounded "
                        f"twice), got {array.dtype}")
    array = array.astype(np.float32)
    if finite and not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got {int((~np.isfinite(array)).sum())} "
                         "NaN or infinite values")
    return array


# ---------------------------------------------------------------- packing


def pack_int4(codes: object, *, high_first: bool = False) -> np.ndarray:
    """Two 4-bit codes per byte (uint8), from an even number of codes in -8..7 or 0..15. The
    first code of each pair goes in the low nibble (torchao, ggml) or, with `high_first`, in
    the high one (bitsandbytes)."""
    c = np.asarray(codes).reshape(-1)
    if c.dtype.kind not in "iu":
        raise TypeError(f"codes must be integers, got dtype {c.dtype}")
    if c.size % 2:
        raise ValueError(f"codes must hold an even number of values, got {c.size}")
    if c.size and (c.min() < -8 or c.max() > 15):
        raise ValueError(f"codes must lie in -8..7 (signed) or 0..15 (unsigned), got "
                         f"{int(c.min())}..{int(c.max())}")
    nibbles = (c.astype(np.int16) & 0xF).astype(np.uint8)
    first, second = nibbles[0::2], nibbles[1::2]
    return (first << 4 | second) if high_first else (first | second << 4)


def unpack_int4(packed: object, *, signed: bool = True, high_first: bool = False) -> np.ndarray:
    """The codes `pack_int4` packed: int8 in -8..7 (`signed`) or uint8 in 0..15."""
    p = np.asarray(packed).reshape(-1)
    if p.dtype != np.uint8:
        raise TypeError(f"packed must be uint8 bytes, got dtype {p.dtype}")
    low, high = p & 0xF, p >> 4
    out = np.stack([high, low] if high_first else [low, high], axis=1).reshape(-1)
    return ((out.astype(np.int8) ^ 8) - 8).astype(np.int8) if signed else out


def pack_bits(codes: object, bits: int) -> np.ndarray:
    """Codes of `bits` bits each (signed or unsigned), one after another in a little-endian bit
    stream (code i in bits i*bits .. i*bits + bits - 1), padded with zeros to whole bytes."""
    bits = check_int("bits", bits, 1, 8)
    c = np.asarray(codes).reshape(-1)
    if c.dtype.kind not in "iu":
        raise TypeError(f"codes must be integers, got dtype {c.dtype}")
    if c.size and (c.min() < -(2 ** (bits - 1)) or c.max() > 2**bits - 1):
        raise ValueError(f"codes must fit in {bits} bits ({-(2 ** (bits - 1))}..{2**bits - 1}), "
                         f"got {int(c.min())}..{int(c.max())}")
    u = c.astype(np.int64) & (2**bits - 1)
    stream = ((u[:, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(stream, bitorder="little")


def unpack_bits(packed: object, bits: int, count: int, *, signed: bool = True) -> np.ndarray:
    """The first `count` codes of `bits` bits from `pack_bits`'s stream (int64)."""
    bits, count = check_int("bits", bits, 1, 8), check_int("count", count, 0)
    p = np.asarray(packed).reshape(-1)
    if p.dtype != np.uint8:
        raise TypeError(f"packed must be uint8 bytes, got dtype {p.dtype}")
    if count * bits > 8 * p.size:
        raise ValueError(f"count={count} codes of {bits} bits need {math.ceil(count * bits / 8)}"
                         f" bytes, packed has {p.size}")
    stream = np.unpackbits(p, bitorder="little")[: count * bits].reshape(count, bits)
    u = stream.astype(np.int64) @ (1 << np.arange(bits))
    return np.where(u >= 2 ** (bits - 1), u - 2**bits, u) if signed else u


# ---------------------------------------------------------------- small floats


def encode_float(x: object, fmt: str | FloatFormat, *, saturate: bool = True) -> np.ndarray:
    """The codes (uint8, the format's bits in the low bits) of float32 `x`: round to nearest,
    ties to even, subnormals included. A value whose rounded magnitude exceeds the largest finite
    one becomes +-max (`saturate=True`; infinities too, as torch's e4m3fn cast does) or else the
    format's infinity, or its NaN where it has none. NaN stays NaN ("none" formats have no NaN:
    an error). Signed zero is kept except in "fnuz" formats."""
    f = float_format(fmt)
    x = _float32("x", x)
    if not isinstance(saturate, bool):
        raise TypeError(f"saturate must be True or False, got {saturate!r}")
    nan, inf = np.isnan(x), np.isinf(x)
    if f.special == "none" and nan.any():
        raise ValueError(f"x holds NaN, which {f.name} cannot encode (it has no NaN)")
    sign = (x.view(np.uint32) >> 31).astype(np.uint8)
    a = np.abs(np.where(nan | inf, np.float32(0), x)).astype(np.float64)
    exp = np.maximum(np.frexp(np.where(a > 0, a, 1.0))[1] - 1, f.emin)  # floor(log2 a)
    step = np.ldexp(1.0, exp - f.mbits)
    v = np.rint(a / step) * step  # exact in float64; np.rint rounds half to even
    e = np.frexp(np.where(v > 0, v, 1.0))[1] - 1
    normal = (v > 0) & (e >= f.emin)
    efield = np.where(normal, e + f.bias, 0)
    mfield = np.where(normal, v / np.ldexp(1.0, e - f.mbits) - 2**f.mbits,
                      v / np.ldexp(1.0, f.emin - f.mbits))
    mag = (efield.astype(np.int64) << f.mbits | mfield.astype(np.int64)).astype(np.uint8)
    emax, mmax = f.max_fields
    top = np.uint8(emax << f.mbits | mmax)
    over = (v > f.max) | inf
    if saturate:
        mag = np.where(over, top, mag)
    elif f.special == "ieee":
        mag = np.where(over, np.uint8((2**f.ebits - 1) << f.mbits), mag)
    elif f.special == "none":
        if over.any():
            raise ValueError(f"x holds values beyond {f.name}'s largest ({f.max:g}) and the "
                             "format has no infinity or NaN: use saturate=True")
    code = (sign << (f.bits - 1) | mag).astype(np.uint8)
    nan_code = np.uint8(0x80) if f.special == "fnuz" else np.uint8(2**(f.bits - 1) - 1)
    if f.special == "fnuz":
        code = np.where(mag == 0, np.uint8(0), code)  # no negative zero
        code = np.where(nan | (over & (not saturate)), nan_code, code)
    elif f.special == "fn":
        code = np.where(over & (not saturate), sign << 7 | nan_code, code)
        code = np.where(nan, sign << 7 | nan_code, code)
    elif f.special == "ieee":
        code = np.where(nan, sign << (f.bits - 1) | nan_code, code)
    return code.astype(np.uint8)


def decode_float(codes: object, fmt: str | FloatFormat) -> np.ndarray:
    """The float32 values of `codes` (uint8) in format `fmt`."""
    f = float_format(fmt)
    c = np.asarray(codes)
    if c.dtype != np.uint8:
        raise TypeError(f"codes must be uint8, got dtype {c.dtype}")
    if c.size and c.max() >= 2**f.bits:
        raise ValueError(f"codes must fit in {f.bits} bits for {f.name}, got {int(c.max())}")
    sign = np.where(c >> (f.bits - 1) & 1, -1.0, 1.0)
    e = (c >> f.mbits & (2**f.ebits - 1)).astype(np.int64)
    m = (c & (2**f.mbits - 1)).astype(np.float64)
    mag = np.where(e > 0, np.ldexp(1 + m / 2**f.mbits, e - f.bias),
                   np.ldexp(m / 2**f.mbits, f.emin))
    v = sign * mag
    top = e == 2**f.ebits - 1
    if f.special == "ieee":
        v = np.where(top, np.where(m == 0, sign * np.inf, np.nan), v)
    elif f.special == "fn":
        v = np.where(top & (m == 2**f.mbits - 1), np.nan, v)
    elif f.special == "fnuz":
        v = np.where(c == 0x80, np.nan, v)
    return v.astype(np.float32)


def float_grid(fmt: str | FloatFormat) -> np.ndarray:
    """Every finite value of `fmt`, sorted, each once (float32)."""
    f = float_format(fmt)
    v = decode_float(np.arange(2**f.bits, dtype=np.uint8), f)
    return np.unique(v[np.isfinite(v)])


def scaled_fp8(x: object, fmt: str = "e4m3fn") -> tuple[np.ndarray, np.float32]:
    """Per-tensor scaled FP8: scale = amax / max of `fmt` (float32), codes of x / scale.
    Returns (codes, scale); the value is decode_float(codes) * scale."""
    f = float_format(fmt)
    if f.bits != 8:
        raise ValueError(f"fmt must be an 8-bit format, got {f.name} ({f.bits} bits)")
    x = _float32("x", x, finite=True)
    amax = np.float32(np.abs(x).max()) if x.size else np.float32(0)
    scale = np.float32(amax / np.float32(f.max)) if amax > 0 else np.float32(1)
    return encode_float((x / scale).astype(np.float32), f), scale


# ---------------------------------------------------------------- MX block formats


def _blocks(name: str, x: np.ndarray, block: int) -> np.ndarray:
    if x.ndim < 1 or x.shape[-1] % block:
        raise ValueError(f"{name}'s last dimension must be a multiple of block={block}, got "
                         f"shape {x.shape}")
    return x.reshape(*x.shape[:-1], x.shape[-1] // block, block)


def _mx_element(name: str) -> str:
    if name not in MX_ELEMENTS:
        raise ValueError(f"element must be one of {sorted(MX_ELEMENTS)}, got {name!r}")
    return MX_ELEMENTS[name]


def mx_encode(x: object, element: str = "mxfp8_e4m3", block: int = 32
              ) -> tuple[np.ndarray, np.ndarray]:
    """OCP MX: each block of `block` consecutive values along the last axis shares the scale
    X = 2^(floor(log2 amax) - emax_elem), stored as E8M0 (biased exponent, uint8, 127 = 2^0;
    clamped to 2^-127..2^127); elements are x / X rounded (ties to even) and saturated to the
    element format. floor(log2 amax) is read from amax's float32 exponent bits (-127 for a zero
    or subnormal amax, as torchao does). Returns (scales (..., n_blocks), element codes of x's
    shape: uint8 float codes, or int8 codes viewed as uint8 for MXINT8)."""
    elem = _mx_element(element)
    block = check_int("block", block, 1)
    x = _float32("x", x, finite=True)
    b = _blocks("x", x, block)
    amax = np.abs(b).max(axis=-1)
    emax = 0 if elem == "int8" else FORMATS[elem].emax
    exponent = (amax.view(np.uint32) >> 23 & 0xFF).astype(np.int64) - 127
    shared = np.clip(exponent - emax, -127, 127)
    scales = (shared + 127).astype(np.uint8)
    step = np.maximum(np.ldexp(np.float32(1), shared), np.float32(2.0**-126)).astype(np.float32)
    scaled = (b / step[..., None]).astype(np.float32)
    if elem == "int8":
        codes = np.clip(np.rint(scaled * np.float32(64)), -127, 127).astype(np.int8).view(np.uint8)
    else:
        f = FORMATS[elem]
        codes = encode_float(np.clip(scaled, -f.max, f.max), f, saturate=True)
    return scales, codes.reshape(x.shape)


def mx_decode(scales: object, codes: object, element: str = "mxfp8_e4m3", block: int = 32
              ) -> np.ndarray:
    """The float32 values of `mx_encode`'s (scales, codes)."""
    elem = _mx_element(element)
    codes, scales = np.asarray(codes), np.asarray(scales)
    b = _blocks("codes", codes, check_int("block", block, 1))
    if elem == "int8":
        values = b.view(np.int8).astype(np.float32) / np.float32(64)
    else:
        values = decode_float(b, elem)
    step = np.ldexp(np.float32(1), scales.astype(np.int64) - 127).astype(np.float32)
    return (values * step[..., None]).astype(np.float32).reshape(codes.shape)


# ---------------------------------------------------------------- NVFP4

_E4M3_TINY = np.float32(2.0**-6)  # E4M3's smallest normal (torch.finfo.tiny), torchao's floor


def nvfp4_encode(x: object, block: int = 16) -> tuple[np.float32, np.ndarray, np.ndarray]:
    """NVFP4 of a 2-D float32 `x` (rows, k): a float32 tensor scale amax / (448 * 6), an E4M3
    scale per block of 16 along each row, (block amax / 6) / tensor scale (clamped to
    2^-6..448, E4M3's normal range), and E2M1 elements x * ((1 / tensor scale) / block scale)
    saturated at +-6. Returns (tensor_scale, block scale codes (rows, k / 16), element codes
    (rows, k)). Float32 arithmetic in torchao's order (`nvfp4_quantize` with a per-tensor scale)."""
    block = check_int("block", block, 1)
    x = _float32("x", x, finite=True)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (rows, k), got shape {x.shape}")
    b = _blocks("x", x, block)
    amax = np.float32(np.abs(x).max())
    tensor_scale = np.float32(amax / np.float32(448.0 * 6.0))
    if tensor_scale == 0:
        tensor_scale = np.float32(1)
    block_scale = (np.abs(b).max(axis=-1) / np.float32(6)).astype(np.float32)
    scaled = np.clip((block_scale / tensor_scale).astype(np.float32), _E4M3_TINY, np.float32(448))
    scale_codes = encode_float(scaled, "e4m3fn")
    recip = ((np.float32(1) / tensor_scale) / decode_float(scale_codes, "e4m3fn")).astype(
        np.float32)
    data = np.clip((b * recip[..., None]).astype(np.float32), -6, 6)
    return tensor_scale, scale_codes, encode_float(data, "e2m1").reshape(x.shape)


def nvfp4_decode(tensor_scale: float, scale_codes: object, codes: object, block: int = 16
                 ) -> np.ndarray:
    """The float32 values of `nvfp4_encode`'s output."""
    b = _blocks("codes", np.asarray(codes), check_int("block", block, 1))
    step = (decode_float(np.asarray(scale_codes), "e4m3fn") * np.float32(tensor_scale))
    return (decode_float(b, "e2m1") * step[..., None]).astype(np.float32).reshape(
        np.asarray(codes).shape)


# ---------------------------------------------------------------- NF4 and double quantization


def nf4_levels(offset: float = 0.9677083) -> np.ndarray:
    """The 16 NF4 levels (float32, sorted, -1 .. 1 with an exact 0): normal quantiles at 8 evenly
    spaced probabilities from `offset` to 1/2 on the positive side and 7 on the negative side,
    divided by the largest (Dettmers et al. 2023, QLoRA, appendix E; bitsandbytes'
    `create_normal_map`)."""
    if isinstance(offset, bool) or not isinstance(offset, float | int) or not 0.5 < offset < 1:
        raise ValueError(f"offset must be a probability between 0.5 and 1, got {offset!r}")
    return _nf4_levels(float(offset)).copy()


@functools.cache
def _nf4_levels(offset: float) -> np.ndarray:
    from scipy.stats import norm

    pos = norm.ppf(torch.linspace(offset, 0.5, 9)[:-1].numpy()).tolist()
    neg = (-norm.ppf(torch.linspace(offset, 0.5, 8)[:-1].numpy())).tolist()
    values = torch.tensor(pos + [0.0] + neg, dtype=torch.float32).sort().values
    return (values / values.max()).numpy()


def _flat_blocks(name: str, x: object, block: int) -> np.ndarray:
    flat = _float32(name, x, finite=True).reshape(-1)
    if flat.size == 0 or flat.size % block:
        raise ValueError(f"{name} must hold a positive multiple of block={block} values, got "
                         f"{flat.size}")
    return flat.reshape(-1, block)


def nf4_encode(x: object, block: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """NF4: per block of `block` values (of x flattened), absmax; codes = index of the nearest
    level of x / absmax (a value on a midpoint takes the lower level). Returns (codes uint8 0..15
    in x's order, absmax float32 per block)."""
    b = _flat_blocks("x", x, check_int("block", block, 1))
    absmax = np.abs(b).max(axis=1)
    recip = (np.float32(1) / np.maximum(absmax, np.float32(1e-38))).astype(np.float32)
    scaled = np.clip((b * recip[:, None]).astype(np.float32), -1, 1)
    levels = nf4_levels()
    mid = ((levels[:-1] + levels[1:]) / np.float32(2)).astype(np.float32)
    return np.searchsorted(mid, scaled.reshape(-1), side="left").astype(np.uint8), absmax


def nf4_decode(codes: object, absmax: object, block: int = 64) -> np.ndarray:
    """The float32 values (flat) of NF4 codes with their per-block absmax."""
    codes = np.asarray(codes).reshape(-1, check_int("block", block, 1))
    return (nf4_levels()[codes] * np.asarray(absmax, np.float32)[:, None]).astype(
        np.float32).reshape(-1)


def dynamic_map() -> np.ndarray:
    """bitsandbytes' signed 8-bit dynamic map (256 sorted float32 values in [-1, 1]: a sign, a
    run of zeros for the exponent, an indicator bit, then fraction bits; Dettmers 2016), with
    its first value set to -1 as bitsandbytes' CPU quantizer sets it."""
    return _dynamic_map().copy()


@functools.cache
def _dynamic_map() -> np.ndarray:
    data = []
    for i in range(7):
        boundaries = torch.linspace(0.1, 1, 2**i + 1, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist() + (-(10 ** (-6 + i)) * means).tolist()
    data += [0.0, 1.0]
    code = torch.tensor(sorted(data), dtype=torch.float32).numpy()
    code[0] = -1.0
    return code


@functools.cache
def _dq_table() -> np.ndarray:
    """bitsandbytes' CPU lookup table: for 65,536 evenly spaced points of [-1, 1], the index of
    the first `dynamic_map()` value whose midpoint with the next is not below the point."""
    code = dynamic_map()
    mid = (np.float32(0.5) * (code[:-1] + code[1:])).astype(np.float32)
    points = (np.float32(-1) + np.float32(2) * np.arange(65536, dtype=np.float32)
              / np.float32(65535)).astype(np.float32)
    return np.searchsorted(mid, points, side="left").astype(np.uint8)


def double_quantize(absmax: object, block: int = 256) -> tuple[np.float32, np.ndarray, np.ndarray]:
    """QLoRA's double quantization of the NF4 block scales as bitsandbytes (0.50, CPU) does it:
    subtract their mean (`offset`), then per block of `block` scales an absmax (float32) and an
    8-bit code per scale: y * (1 / absmax) is rounded onto a grid of 65,536 evenly spaced points
    of [-1, 1], and a table gives the `dynamic_map()` value nearest to that grid point (not
    always the value nearest to y itself). Returns (offset, codes uint8, absmax2 float32 per
    block of scales); the last block may be short."""
    a = _float32("absmax", absmax, finite=True).reshape(-1)
    block = check_int("block", block, 1)
    offset = np.float32(torch.from_numpy(a).mean().item())
    y = (a - offset).astype(np.float32)
    n = len(y)
    padded = np.zeros(-(-n // block) * block, np.float32)
    padded[:n] = y
    b = padded.reshape(-1, block)
    absmax2 = np.abs(b).max(axis=1)
    inv = (np.float32(1) / np.where(absmax2 > 0, absmax2, np.float32(1))).astype(np.float32)
    normed = np.clip((b * inv[:, None]).astype(np.float32), -1, 1).reshape(-1)[:n]
    half = ((normed + np.float32(1)).astype(np.float32) * np.float32(0.5)).astype(np.float32)
    point = np.trunc((half * np.float32(65535)).astype(np.float32) + np.float32(0.5))
    codes = _dq_table()[point.astype(np.int64)]
    zero = np.repeat(absmax2 == 0, block)[:n]
    return offset, np.where(zero, np.uint8(0), codes).astype(np.uint8), absmax2


def double_dequantize(offset: float, codes: object, absmax2: object, block: int = 256
                      ) -> np.ndarray:
    """The NF4 block scales back from `double_quantize`'s output (float32)."""
    codes = np.asarray(codes).reshape(-1)
    step = np.repeat(np.asarray(absmax2, np.float32), check_int("block", block, 1))[: len(codes)]
    return ((dynamic_map()[codes] * step).astype(np.float32) + np.float32(offset)).astype(
        np.float32)


# ---------------------------------------------------------------- formats on a model's weights

# name -> (value bits, block or group size along a row, what is stored beside the values)
WEIGHT_FORMATS = {
    "int8_channel": "int8, one float16 scale per output row",
    "int4_channel": "int4 (codes -7..7), one float16 scale per output row",
    "int4_g32": "int4, one float16 scale per group of 32 inputs",
    "int4_g64": "int4, one float16 scale per group of 64 inputs",
    "int4_g128": "int4, one float16 scale per group of 128 inputs",
    "fp8_e4m3": "FP8 E4M3, one float32 scale per tensor (amax / 448)",
    "fp8_e5m2": "FP8 E5M2, one float32 scale per tensor (amax / 57344)",
    "mxfp8_e4m3": "E4M3 elements, an E8M0 scale per block of 32",
    "mxfp8_e5m2": "E5M2 elements, an E8M0 scale per block of 32",
    "mxfp6_e2m3": "E2M3 elements, an E8M0 scale per block of 32",
    "mxfp6_e3m2": "E3M2 elements, an E8M0 scale per block of 32",
    "mxfp4": "E2M1 elements, an E8M0 scale per block of 32",
    "mxint8": "int8 elements (x 2^-6), an E8M0 scale per block of 32",
    "nvfp4": "E2M1 elements, an E4M3 scale per block of 16, a float32 scale per tensor",
    "nf4": "NF4 levels, a float32 absmax per block of 64",
    "nf4_dq": "NF4 levels, an 8-bit absmax per block of 64, double-quantized in blocks of 256",
}
_INT = {"int8_channel": (8, None), "int4_channel": (4, None), "int4_g32": (4, 32),
        "int4_g64": (4, 64), "int4_g128": (4, 128)}


def _weight_format(name: object) -> str:
    if name not in WEIGHT_FORMATS:
        raise ValueError(f"format must be one of {list(WEIGHT_FORMATS)}, got {name!r}")
    return name


def _block(name: str, k: int) -> int:
    """Block (group) length along a row of k inputs."""
    if name in _INT:
        return _INT[name][1] or k
    if name.startswith("mx"):
        return 32
    return {"nvfp4": 16, "nf4": 64, "nf4_dq": 64}.get(name, k)


def _rows(w: object) -> np.ndarray:
    if not isinstance(w, torch.Tensor) or not w.is_floating_point() or w.dim() < 1:
        raise TypeError(f"w must be a floating-point torch.Tensor (a layer's weight), got "
                        f"{type(w).__name__}")
    return w.detach().float().reshape(w.shape[0], -1).cpu().numpy()


def quantize_weight(w: torch.Tensor, name: str) -> torch.Tensor:
    """`w` (out, ...) rounded to format `name` (one of `WEIGHT_FORMATS`) and back to float32, of
    w's shape. Blocks and groups run along each output row (w flattened to (out, k)); a row
    whose length is not a multiple of the block is padded with zeros (which change no block's
    amax). Integer formats are symmetric: scale = amax / qmax rounded to float16, codes
    round-half-even(w / scale) in -qmax..qmax."""
    name = _weight_format(name)
    rows = _rows(w)
    out, k = rows.shape
    if name in ("fp8_e4m3", "fp8_e5m2"):
        fmt = "e4m3fn" if name == "fp8_e4m3" else "e5m2"
        codes, scale = scaled_fp8(rows, fmt)
        values = decode_float(codes, fmt) * scale
        return torch.from_numpy(values.astype(np.float32)).reshape(w.shape)
    block = _block(name, k)
    padded = np.zeros((out, -(-k // block) * block), np.float32)
    padded[:, :k] = rows
    if name in _INT:
        qmax = 2 ** (_INT[name][0] - 1) - 1
        g = padded.reshape(out, -1, block)
        scale = (np.abs(g).max(axis=-1, keepdims=True) / qmax).astype(np.float16).astype(
            np.float32)
        scale = np.where(scale > 0, scale, np.float32(1))
        values = (np.clip(np.rint(g / scale), -qmax, qmax) * scale).reshape(out, -1)
    elif name.startswith("mx"):
        values = mx_decode(*mx_encode(padded, name), name)
    elif name == "nvfp4":
        values = nvfp4_decode(*nvfp4_encode(padded))
    else:
        codes, absmax = nf4_encode(padded)
        if name == "nf4_dq":
            absmax = double_dequantize(*double_quantize(absmax))
        values = nf4_decode(codes, absmax).reshape(out, -1)
    return torch.from_numpy(np.ascontiguousarray(values[:, :k], np.float32)).reshape(w.shape)


def bits_per_value(name: str, shape: tuple[int, ...]) -> float:
    """Storage per weight of a weight of `shape` in format `name`, every scale counted: value
    bits, plus scale bits per block or group (float16 16, E8M0 and E4M3 8, float32 32) over the
    padded rows, plus a per-tensor float32 scale (FP8, NVFP4) or NF4's double quantization
    (an 8-bit code per block of 64, a float32 absmax per 256 of them and a float32 offset)."""
    name = _weight_format(name)
    if not isinstance(shape, tuple | list | torch.Size) or len(shape) < 1:
        raise TypeError(f"shape must be a weight's shape (a tuple of ints), got {shape!r}")
    out = check_int("shape[0]", shape[0], 1)
    k = math.prod(check_int("shape", s, 1) for s in shape[1:]) if len(shape) > 1 else 1
    n = out * k
    if name in ("fp8_e4m3", "fp8_e5m2"):
        return 8 + 32 / n
    block = _block(name, k)
    blocks = out * -(-k // block)
    if name in _INT:
        return _INT[name][0] + 16 * blocks / n
    if name.startswith("mx"):
        elem = MX_ELEMENTS[name]
        return (8 if elem == "int8" else FORMATS[elem].bits) + 8 * blocks / n
    if name == "nvfp4":
        return 4 + (8 * blocks + 32) / n
    if name == "nf4":
        return 4 + 32 * blocks / n
    return 4 + (8 * blocks + 32 * -(-blocks // 256) + 32) / n


def sqnr_db(x: object, x_hat: object) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum x^2 / sum (x - x_hat)^2)."""
    a, b = (np.asarray(v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v,
                       np.float64) for v in (x, x_hat))
    if a.shape != b.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {a.shape} and {b.shape}")
    noise = float(np.sum((a - b) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(a**2)) / noise)
