"""qnb.formats, bit for bit against torch's float8 casts, torchao's MX and NVFP4 code and
bitsandbytes' CPU NF4 quantizer."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from qnb import formats as F

TORCH_FP8 = {  # our format, torch dtype, the conversion torch 2.14's eager cast does
    "e4m3fn": (torch.float8_e4m3fn, True),  # saturates finite overflow and infinities
    "e5m2": (torch.float8_e5m2, False),  # overflow -> inf
    "e4m3fnuz": (torch.float8_e4m3fnuz, False),  # overflow -> NaN (0x80)
    "e5m2fnuz": (torch.float8_e5m2fnuz, False),
}


def _torch_codes(x: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    return torch.from_numpy(x).to(dtype).view(torch.uint8).numpy()


def _classes(name: str) -> dict[str, np.ndarray]:
    """Inputs of every class: normals and subnormals (grid values and random), exact ties
    (midpoints of neighbouring grid values), overflow, NaN and infinities, signed zeros."""
    rng = np.random.default_rng(0)
    f = F.float_format(name)
    grid = F.float_grid(name).astype(np.float64)
    pos = grid[grid > 0]
    sub = pos[pos < 2.0**f.emin]
    mids = (grid[:-1] + grid[1:]) / 2
    logu = np.exp2(rng.uniform(f.emin - f.mbits - 3, f.emax + 2, 20000))
    return {
        "normals": np.concatenate([pos[pos >= 2.0**f.emin], logu[logu >= 2.0**f.emin]]),
        "subnormals": np.concatenate([sub, logu[logu < 2.0**f.emin], sub / 3]),
        "ties": mids,
        "overflow": np.array([f.max * 1.03, f.max * 1.1, f.max * 2, 1e30, 3.4e38]),
        "nan and inf": np.array([np.nan, -np.nan, np.inf, -np.inf]),
        "zeros": np.array([0.0, -0.0, 1e-45, -1e-45]),
    }


@pytest.mark.parametrize("name", list(TORCH_FP8))
def test_fp8_encoder_is_bit_exact_with_torch_on_every_input_class(name):
    dtype, saturate = TORCH_FP8[name]
    for cls, values in _classes(name).items():
        x = np.concatenate([values, -values]).astype(np.float32)
        if cls == "ties":  # every midpoint is a float32, exactly
            assert np.array_equal(x.astype(np.float64), np.concatenate([values, -values]))
        if cls == "nan and inf":  # and every bit pattern, NaN payloads included
            x = np.concatenate([x, np.random.default_rng(5).integers(
                0, 2**32, 50000, dtype=np.uint64).astype(np.uint32).view(np.float32)])
        got, want = F.encode_float(x, name, saturate=saturate), _torch_codes(x, dtype)
        bad = np.nonzero(got != want)[0]
        assert bad.size == 0, (name, cls, x[bad[:5]], got[bad[:5]], want[bad[:5]])


@pytest.mark.parametrize("name", list(TORCH_FP8))
def test_fp8_decoder_matches_torch_on_all_256_codes(name):
    codes = np.arange(256, dtype=np.uint8)
    want = torch.from_numpy(codes).view(TORCH_FP8[name][0]).float().numpy()
    got = F.decode_float(codes, name)
    assert np.array_equal(got, want, equal_nan=True)
    assert F.float_format(name).max == torch.finfo(TORCH_FP8[name][0]).max


def test_format_facts():
    assert [F.FORMATS[n].max for n in ("e4m3fn", "e5m2", "e4m3fnuz", "e5m2fnuz")] == \
        [448, 57344, 240, 57344]
    assert [F.FORMATS[n].max for n in ("e2m1", "e2m3", "e3m2")] == [6, 7.5, 28]
    assert F.float_grid("e2m1").tolist() == [-6, -4, -3, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2,
                                             3, 4, 6]
    assert len(F.float_grid("e4m3fn")) == 253  # 256 codes - 2 NaNs - one of the two zeros
    assert len(F.float_grid("e4m3fnuz")) == 255  # one NaN, one zero


def test_saturation_modes():
    x = np.array([500.0, np.inf, -1e6], np.float32)
    assert F.decode_float(F.encode_float(x, "e4m3fn"), "e4m3fn").tolist() == [448, 448, -448]
    assert np.isnan(F.decode_float(F.encode_float(x, "e4m3fn", saturate=False), "e4m3fn")).all()
    assert F.decode_float(F.encode_float(x, "e5m2", saturate=True), "e5m2").tolist() == \
        [512, 57344, -57344]
    y = np.array([1e6, -np.inf], np.float32)
    assert F.decode_float(F.encode_float(y, "e5m2", saturate=False), "e5m2").tolist() == \
        [np.inf, -np.inf]
    # ties to even: 1 + 1/16 lies halfway between 1 and 1.125 (mantissa 000 is even)
    t = np.array([1.0625, 1.1875, -1.0625], np.float32)
    assert F.decode_float(F.encode_float(t, "e4m3fn"), "e4m3fn").tolist() == [1, 1.25, -1]


def test_packing_round_trips_and_matches_torchao_and_bitsandbytes_nibble_order():
    rng = np.random.default_rng(1)
    codes = rng.integers(-8, 8, 64).astype(np.int8)
    packed = F.pack_int4(codes)
    assert packed.size == 32 and np.array_equal(F.unpack_int4(packed), codes)
    a, b = int(codes[0]) & 0xF, int(codes[1]) & 0xF
    assert packed[0] == a | b << 4 and F.pack_int4(codes, high_first=True)[0] == a << 4 | b
    u = rng.integers(0, 16, 64).astype(np.uint8)
    kernels = pytest.importorskip("torchao.prototype.mx_formats.kernels")
    assert np.array_equal(kernels.pack_uint4(torch.from_numpy(u)).numpy(), F.pack_int4(u))
    for bits in (2, 3, 5):
        c = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), 101)
        p = F.pack_bits(c, bits)
        assert p.size == math.ceil(101 * bits / 8)
        assert np.array_equal(F.unpack_bits(p, bits, 101), c)
    with pytest.raises(ValueError, match="codes must fit in 3 bits"):
        F.pack_bits([4, 9], 3)
    with pytest.raises(ValueError, match="even number"):
        F.pack_int4([1, 2, 3])


def _mx_inputs() -> np.ndarray:
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((64, 256)) * np.exp2(rng.integers(-40, 40, (64, 1)))).astype(
        np.float32)
    x[0, :32] = 0  # an all-zero block
    x[1, :32] = 1e-40  # a subnormal amax
    x[2, :32] = 6.0  # the largest FP4 value exactly
    x[3, :32] = np.linspace(-1, 1, 32)  # ties after scaling
    return x


def test_mx_encoder_is_bit_exact_with_torchao():
    mx = pytest.importorskip("torchao.prototype.mx_formats.mx_tensor")
    from torchao.prototype.mx_formats.constants import DTYPE_FP6_E2M3, DTYPE_FP6_E3M2
    from torchao.prototype.mx_formats.kernels import unpack_uint4

    x = _mx_inputs()
    dtypes = {"mxfp8_e4m3": torch.float8_e4m3fn, "mxfp8_e5m2": torch.float8_e5m2,
              "mxfp6_e2m3": DTYPE_FP6_E2M3, "mxfp6_e3m2": DTYPE_FP6_E3M2,
              "mxfp4": torch.float4_e2m1fn_x2}
    for name, dtype in dtypes.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scale, data = mx.to_mx(torch.from_numpy(x), dtype, 32)
        raw = data.view(torch.uint8)
        if name == "mxfp4":
            raw = unpack_uint4(raw.contiguous())
        scales, codes = F.mx_encode(x, name)
        assert np.array_equal(scales, scale.view(torch.uint8).numpy()), name
        assert np.array_equal(codes, raw.numpy()), name
        back = mx.to_dtype(data, scale, dtype, 32, torch.float32)
        assert np.array_equal(F.mx_decode(scales, codes, name), back.numpy()), name


def test_mxint8_scale_is_a_power_of_two_and_elements_fit():
    x = _mx_inputs()[4:]
    scales, codes = F.mx_encode(x, "mxint8")
    q = codes.view(np.int8).reshape(60, -1, 32)
    assert np.abs(q).max(axis=-1).min() >= 64  # the block's largest element uses the top bit
    assert np.abs(q.astype(int)).max() <= 127
    back = F.mx_decode(scales, codes, "mxint8").reshape(60, -1, 32)
    step = np.ldexp(1.0, scales.astype(int) - 127 - 6)[..., None]
    error = np.abs(back - x.reshape(60, -1, 32))
    saturated = np.abs(q.astype(int)) == 127  # x / X up to 1.99: the top code clips
    assert np.all(error[~saturated] <= np.broadcast_to(step / 2 + 1e-45, error.shape)[~saturated])
    assert np.all(error <= step) and saturated.any()


def test_nvfp4_is_bit_exact_with_torchao():
    nv = pytest.importorskip("torchao.prototype.mx_formats.nvfp4_tensor")
    from torchao.prototype.mx_formats.kernels import unpack_uint4

    rng = np.random.default_rng(3)
    for x in (_mx_inputs() * np.float32(1e-3), rng.standard_normal((32, 512)).astype(np.float32)):
        t = torch.from_numpy(x)
        scale, data = nv.nvfp4_quantize(t, 16, nv.per_tensor_amax_to_scale(t.abs().amax()))
        tensor_scale, scale_codes, codes = F.nvfp4_encode(x)
        assert tensor_scale == nv.per_tensor_amax_to_scale(t.abs().amax()).item()
        assert np.array_equal(scale_codes, scale.view(torch.uint8).numpy())
        assert np.array_equal(codes, unpack_uint4(data).numpy())


def test_nf4_and_double_quantization_are_bit_exact_with_bitsandbytes():
    bnb = pytest.importorskip("bitsandbytes.functional")
    assert np.array_equal(F.nf4_levels(), bnb.get_4bit_type("nf4", device="cpu").numpy())
    code = bnb.create_dynamic_map().numpy()
    code[0] = -1.0  # as bitsandbytes' CPU quantizer sets it
    assert np.array_equal(F.dynamic_map(), code)
    rng = np.random.default_rng(4)
    for shape in ((512, 128), (128, 512), (300, 64)):
        x = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        x[0, :64] = 0.0  # an all-zero block
        x[1, 5] = 1.0  # an outlier
        for compress in (False, True):
            packed, state = bnb.quantize_4bit(torch.from_numpy(x), blocksize=64,
                                              compress_statistics=compress, quant_type="nf4")
            codes, absmax = F.nf4_encode(x)
            assert np.array_equal(F.pack_int4(codes, high_first=True), packed.reshape(-1).numpy())
            if not compress:
                assert np.array_equal(absmax, state.absmax.numpy())
                continue
            offset, q, absmax2 = F.double_quantize(absmax)
            assert offset == state.offset.item()
            assert np.array_equal(q, state.absmax.numpy())
            assert np.array_equal(absmax2, state.state2.absmax.numpy())
            deq = bnb.dequantize_4bit(packed, state).numpy().reshape(-1)
            assert np.array_equal(F.nf4_decode(codes, F.double_dequantize(offset, q, absmax2)),
                                  deq)


def test_weight_formats_bits_and_errors():
    w = torch.randn(64, 16, 3, 3)  # rows of 144: blocks of 32/64 are padded
    for name in F.WEIGHT_FORMATS:
        q = F.quantize_weight(w, name)
        assert q.shape == w.shape and q.dtype == torch.float32
        assert 5 < F.sqnr_db(w, q) < 80, name
    assert F.bits_per_value("mxfp4", (10, 256)) == 4.25
    assert F.bits_per_value("int4_g64", (10, 256)) == 4.25
    assert F.bits_per_value("int4_g32", (10, 256)) == F.bits_per_value("nvfp4", (10, 256)) - \
        32 / 2560
    assert F.bits_per_value("mxfp8_e4m3", (64, 144)) == 8 + 8 * 5 / 144  # 5 padded blocks
    assert F.bits_per_value("nf4", (256, 256)) == 4.5
    assert F.bits_per_value("nf4_dq", (256, 256)) == 4 + (8 * 1024 + 32 * 4 + 32) / 65536
    assert F.bits_per_value("fp8_e4m3", (4, 8)) == 9
    # the zero padding of a row's last block changes none of its full blocks
    rows = w.reshape(64, 144)
    for name in ("mxfp4", "nf4", "int4_g64"):
        assert torch.equal(F.quantize_weight(rows, name)[:, :128],
                           F.quantize_weight(rows[:, :128].contiguous(), name)), name
    assert F.sqnr_db(w, F.quantize_weight(w, "mxfp8_e4m3")) > F.sqnr_db(
        w, F.quantize_weight(w, "mxfp4"))
    with pytest.raises(ValueError, match="format must be one of"):
        F.quantize_weight(w, "fp4")
    with pytest.raises(ValueError, match="fmt must be one of"):
        F.encode_float([1.0], "e4m3")
    with pytest.raises(ValueError, match="multiple of block=32"):
        F.mx_encode(np.ones((2, 48), np.float32))
    with pytest.raises(ValueError, match="x must be finite"):
        F.mx_encode(np.full((1, 32), np.nan, np.float32))
    with pytest.raises(TypeError, match="x must be float32"):
        F.encode_float(np.ones(3), "e5m2")
    with pytest.raises(ValueError, match="no infinity or NaN"):
        F.encode_float(np.array([7.0], np.float32), "e2m1", saturate=False)
