"""qnb.integer: integer-only linear and conv, bit for bit against torch's int8 kernels.

Engines and what differs between them (PyTorch 2.14, see qnb/integer.py for the sources):
* x86: linear on FBGEMM; conv on oneDNN (brgemm, VNNI CPUs, symmetric weights, groups <= 100)
  or FBGEMM otherwise. Both add the float32 bias after dividing it by s_x * s_w and multiply
  by the float32 M = s_x * s_w / s_y: `requantization="float"`, 0 differing codes.
* qnnpack: rounds the bias to int32 at scale s_x * s_w *before* adding it, then the same
  float32 multiplier: `requantization="int32_bias"` matches it; the x86 arithmetic differs
  from it by at most one code, where the rounded bias tips v * M over a half (counted).
* fixed point (gemmlowp/TFLite, no torch engine): int32 bias and an int32 multiplier (TFLite's
  QuantizeMultiplier, ties away from zero) applied with gemmlowp's two roundings or with one
  (TFLITE_SINGLE_ROUNDING, ruy), both checked against exact rational arithmetic; at most one
  code from x86's float path (counted, bounded).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.ao.nn import quantized as nnq
from torch.ao.nn.intrinsic import quantized as nniq
from torch.ao.quantization import fuse_modules

from qnb import env, integer
from qnb.affine import QParams

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore:torch.quantize_per_tensor:UserWarning"
)

# A named profile (not loaded globally): about 15 s of tests for the file on 2 cores.
settings.register_profile(
    "qnb_integer",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
CASES = settings.get_profile("qnb_integer")
ENGINES = torch.backends.quantized.supported_engines
# ----------------------------------------------------------------------------- torch oracles
def qp_of(t: torch.Tensor) -> QParams:
    """The QParams of a quantized torch tensor, over the full range of its dtype."""
    signed = t.dtype == torch.qint8
    lo, hi = (-128, 127) if signed else (0, 255)
    if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        scale = t.q_per_channel_scales().numpy().astype(np.float64)
        return QParams(scale, t.q_per_channel_zero_points().numpy(), lo, hi, 8, False, signed)
    return QParams(t.q_scale(), t.q_zero_point(), lo, hi, 8, False, signed)


def codes(t: torch.Tensor) -> np.ndarray:
    return t.int_repr().numpy().astype(np.int64)


@st.composite
def layer_case(draw, conv: bool):
    """Random quantized inputs, weights, bias and output qparams (torch tensors)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    depthwise = conv and draw(st.booleans())
    groups = draw(st.integers(1, 3)) if conv else 1
    c_in_g, c_out_g = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if depthwise:
        groups, c_in_g = draw(st.integers(1, 6)), 1
    c_in, c_out = groups * c_in_g, groups * c_out_g
    per_channel = draw(st.booleans())
    w_zp = 0 if per_channel or not draw(st.booleans()) else draw(st.integers(-30, 30))
    s_x = draw(st.floats(1e-4, 0.5))
    s_w = rng.uniform(1e-4, 0.05, c_out) if per_channel else draw(st.floats(1e-4, 0.05))
    case = {
        "x_zp": draw(st.integers(0, 255)),
        "s_x": s_x,
        "s_y": draw(st.floats(1e-3, 5.0)),
        "y_zp": draw(st.integers(0, 255)),
        "relu": draw(st.booleans()),
        "groups": groups,
    }
    if conv:
        kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        h, w = draw(st.integers(kh, 10)), draw(st.integers(kw, 10))
        case["stride"] = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        case["padding"] = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
        x_shape = (draw(st.integers(1, 2)), c_in, h, w)
        w_shape = (c_out, c_in_g, kh, kw)
    else:
        k = draw(st.integers(1, 300))
        x_shape, w_shape = (draw(st.integers(1, 8)), k), (c_out, k)
    spread = float(rng.uniform(0.5, 300))  # how much of the uint8 range the input covers
    x = torch.from_numpy((rng.standard_normal(x_shape) * spread * s_x).astype(np.float32))
    case["x_q"] = torch.quantize_per_tensor(x, s_x, case["x_zp"], torch.quint8)
    wf = torch.from_numpy(rng.standard_normal(w_shape).astype(np.float32))
    if per_channel:
        wf = wf * torch.from_numpy(s_w * 60).float().reshape(-1, *[1] * (len(w_shape) - 1))
        zeros = torch.zeros(c_out, dtype=torch.long)
        case["w_q"] = torch.quantize_per_channel(wf, torch.from_numpy(s_w), zeros, 0, torch.qint8)
    else:
        case["w_q"] = torch.quantize_per_tensor(wf * s_w * 60, s_w, w_zp, torch.qint8)
    with_bias = draw(st.booleans())
    bias = rng.standard_normal(c_out) * float(rng.uniform(0.01, 10)) if with_bias else None
    case["bias"] = None if bias is None else torch.from_numpy(bias.astype(np.float32))
    return case


def torch_layer(case: dict, conv: bool, engine: str) -> np.ndarray:
    torch.backends.quantized.engine = engine
    w_q = case["w_q"]
    if conv:
        kind = nniq.ConvReLU2d if case["relu"] else nnq.Conv2d
        c_out, c_in_g, kh, kw = w_q.shape
        module = kind(
            c_in_g * case["groups"],
            c_out,
            (kh, kw),
            stride=case["stride"],
            padding=case["padding"],
            groups=case["groups"],
            bias=case["bias"] is not None,
        )
    else:
        kind = nniq.LinearReLU if case["relu"] else nnq.Linear
        module = kind(w_q.shape[1], w_q.shape[0])
    module.set_weight_bias(w_q, case["bias"])
    module.scale, module.zero_point = case["s_y"], case["y_zp"]
    return codes(module(case["x_q"]))


def ours(case: dict, conv: bool, requantization: str) -> np.ndarray:
    bias = None if case["bias"] is None else case["bias"].numpy()
    args = (codes(case["x_q"]), qp_of(case["x_q"]), codes(case["w_q"]), qp_of(case["w_q"]), bias)
    y_qp = QParams(case["s_y"], case["y_zp"], 0, 255)
    if conv:
        return integer.conv2d(
            *args,
            y_qp,
            case["stride"],
            case["padding"],
            case["groups"],
            case["relu"],
            requantization=requantization,
        )
    return integer.linear(*args, y_qp, case["relu"], requantization=requantization)


def compare(case: dict, conv: bool, name: str) -> None:
    # x86: every case must be bit-exact (FBGEMM linear; oneDNN or FBGEMM conv)
    x86 = torch_layer(case, conv, "x86")
    mine = ours(case, conv, "float")
    if conv:  # oneDNN on VNNI CPUs: its own float32 order of operations (see module doc)
        symmetric = int(np.max(np.abs(qp_of(case["w_q"]).zero_point))) == 0
        path = integer.torch_conv_requantization("x86", VNNI, case["groups"], symmetric)
        mine = ours(case, conv, path)
    assert np.array_equal(mine, x86), f"{int((mine != x86).sum())} of {x86.size} codes differ"
    # the fixed-point multiplier: at most one code away from the float path
    fixed = ours(case, conv, "fixed_point")
    assert np.abs(fixed - x86).max(initial=0) <= 1
    if "qnnpack" in ENGINES:
        qnnpack = torch_layer(case, conv, "qnnpack")
        assert np.array_equal(ours(case, conv, "int32_bias"), qnnpack)
        diff = np.abs(mine - qnnpack)
        assert diff.max(initial=0) <= 1  # x86's float bias vs qnnpack's int32 bias: <= 1 code


@CASES
@given(layer_case(conv=False))
def test_linear_matches_torch_x86_bit_for_bit(torch_state, case):
    compare(case, conv=False, name="linear")


@CASES
@given(layer_case(conv=True))
def test_conv2d_matches_torch_x86_bit_for_bit(torch_state, case):
    compare(case, conv=True, name="conv2d")


def test_fbgemm_engine_conv_matches_too(torch_state):
    """x86 runs this conv on oneDNN (on a VNNI CPU); the fbgemm engine on FBGEMM: both equal."""
    rng = np.random.default_rng(7)
    x = torch.quantize_per_tensor(torch.randn(2, 8, 9, 9) * 3, 0.02, 120, torch.quint8)
    w = torch.quantize_per_channel(
        torch.randn(16, 8, 3, 3),
        torch.from_numpy(rng.uniform(0.005, 0.02, 16)),
        torch.zeros(16, dtype=torch.long),
        0,
        torch.qint8,
    )
    case = {
        "x_q": x,
        "w_q": w,
        "bias": torch.randn(16),
        "s_y": 0.3,
        "y_zp": 70,
        "relu": False,
        "groups": 1,
        "stride": (1, 1),
        "padding": (1, 1),
    }
    assert np.array_equal(torch_layer(case, True, "fbgemm"), ours(case, True, "float"))
    assert np.array_equal(torch_layer(case, True, "x86"), ours(case, True, "float"))


VNNI = env.cpu_features()["avx512_vnni"]  # what PyTorch checks (cpuinfo) to pick oneDNN


def test_onednn_and_fbgemm_round_a_near_tie_differently(torch_state):
    """From the trained CNN's conv1: (acc * a + b) / s_y and (acc + b / a) * M land on two
    sides of 18.5 (exact value 18.500002). oneDNN (x86 on a VNNI CPU) gives 19, FBGEMM 18."""
    s_x, z_x, s_w, b, s_y = (
        0.025544211268424988,
        17,
        0.004203419666737318,
        -0.2170835137,
        0.0400195569,
    )
    x_codes = np.array([117, 18]).reshape(1, 2, 1, 1)  # (117 - 17) * 89 + (18 - 17) * 17 = 8917
    w_codes = np.array([89, 17]).reshape(1, 2, 1, 1)
    x = torch._make_per_tensor_quantized_tensor(
        torch.from_numpy(x_codes.astype(np.uint8)), s_x, z_x
    )
    w = torch.quantize_per_channel(
        torch.from_numpy(w_codes * s_w).float(),
        torch.tensor([s_w], dtype=torch.float64),
        torch.zeros(1, dtype=torch.long),
        0,
        torch.qint8,
    )
    case = {
        "x_q": x,
        "w_q": w,
        "bias": torch.tensor([b], dtype=torch.float32),
        "s_y": s_y,
        "y_zp": 0,
        "relu": True,
        "groups": 1,
        "stride": (1, 1),
        "padding": (0, 0),
    }
    assert ours(case, True, "float").item() == torch_layer(case, True, "fbgemm").item() == 18
    assert ours(case, True, "onednn").item() == torch_layer(case, True, "onednn").item() == 19
    path = integer.torch_conv_requantization("x86", VNNI)
    assert ours(case, True, path).item() == torch_layer(case, True, "x86").item()


def test_torch_conv_requantization_follows_the_dispatch():
    assert integer.torch_conv_requantization("x86", True) == "onednn"
    assert integer.torch_conv_requantization("x86", True, groups=101) == "float"
    assert integer.torch_conv_requantization("x86", True, symmetric_weights=False) == "float"
    assert integer.torch_conv_requantization("x86", False) == "float"
    assert integer.torch_conv_requantization("qnnpack", True) == "int32_bias"
    with pytest.raises(ValueError, match="engine must be one of"):
        integer.torch_conv_requantization("mps", True)


# ----------------------------------------------------------------------------- the parts
def test_cross_terms_equal_the_centered_sum():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 40))
    w = rng.integers(-128, 128, (3, 40))
    x_qp = QParams(0.1, 77, 0, 255)
    w_qp = QParams(0.01, -9, -128, 127, signed=True)  # a nonzero weight zero point: row offsets
    want = (x - 77) @ (w + 9).T
    assert np.array_equal(integer.accumulate_linear(x, x_qp, w, w_qp), want)


def test_relu_clamps_at_the_output_zero_point():
    out = integer.requantize(np.array([-500, -1, 0, 3]), 0.5, 40, relu=True)
    assert out.tolist() == [40, 40, 40, 42]  # 3 * 0.5 = 1.5 rounds to 2 (half to even)
    assert integer.requantize(np.array([-500]), 0.5, 40).tolist() == [0]


def test_float_requantization_rounds_half_to_even():
    assert integer.requantize(np.array([1, 3, 5, -1, -3]), 0.5, 0, qmin=-10).tolist() == [
        0,
        2,
        2,
        0,
        -2,
    ]


def test_fixed_point_multiplier_is_accurate_and_normalised():
    m = np.array([0.5, 1.0, 0.75, 1e-6, 0.0123456789, 3.0])
    fp = integer.fixed_point_multiplier(m)
    assert fp.m0[0] == 2**30 and fp.shift[0] == 0
    assert fp.m0[1] == 2**30 and fp.shift[1] == 1
    assert ((fp.m0 >= 2**30) & (fp.m0 < 2**31)).all()
    assert np.all(np.abs(fp.value() / m - 1) < 2.0**-30)


def test_fixed_point_rounding_of_ties():
    # the rounding right shift (RoundingDivideByPOT) rounds ties away from zero:
    # M = 0.25 is m0 = 2**30 (x / 2, exact for even x) and a shift right by 1
    quarter = integer.fixed_point_multiplier(0.25)
    assert integer.requantize(np.array([2, 6, -2, -6]), quarter, 0, qmin=-10).tolist() == [
        1,
        2,
        -1,
        -2,
    ]
    # the doubling high multiply (SaturatingRoundingDoublingHighMul) rounds its ties up:
    # M = 0.5 is m0 = 2**30 with no shift, so -1 * 0.5 = -0.5 becomes 0
    half = integer.fixed_point_multiplier(0.5)
    assert integer.requantize(np.array([1, -1, -3]), half, 0, qmin=-10).tolist() == [1, 0, -1]


def test_fixed_point_vs_float_multiplier_at_most_one_code():
    rng = np.random.default_rng(3)
    acc = rng.integers(-(2**20), 2**20, 200_000)
    multiplier = np.float32(0.000123456)
    as_float = integer.requantize(acc, multiplier, 128, qmin=-(2**31), qmax=2**31 - 1)
    fixed = integer.requantize(
        acc, integer.fixed_point_multiplier(multiplier), 128, qmin=-(2**31), qmax=2**31 - 1
    )
    differ = int((as_float != fixed).sum())
    assert np.abs(as_float - fixed).max() <= 1
    assert differ < acc.size // 100  # rare: only near halves


@pytest.mark.parametrize("requantization", integer.REQUANTIZATIONS)
def test_requantize_accumulator_is_what_the_layers_apply(requantization):
    rng = np.random.default_rng(2)
    x_qp, y_qp = QParams(0.05, 7, 0, 255), QParams(0.3, 20, 0, 255)
    w_qp = QParams(rng.uniform(0.005, 0.02, 4), np.zeros(4, np.int64), -128, 127, signed=True)
    x, w = rng.integers(0, 256, (2, 3, 6, 6)), rng.integers(-128, 128, (4, 3, 3, 3))
    bias = rng.standard_normal(4).astype(np.float32)
    acc = integer.accumulate_conv2d(x, x_qp, w, w_qp, 1, 1)
    got = integer.requantize_accumulator(
        acc, x_qp, w_qp, bias, y_qp, True, requantization=requantization, channel_axis=1
    )
    want = integer.conv2d(
        x, x_qp, w, w_qp, bias, y_qp, 1, 1, 1, True, requantization=requantization
    )
    assert np.array_equal(got, want)
    xl, wl = rng.integers(0, 256, (5, 12)), rng.integers(-128, 128, (4, 12))
    acc = integer.accumulate_linear(xl, x_qp, wl, w_qp)
    got = integer.requantize_accumulator(acc, x_qp, w_qp, bias, y_qp, requantization=requantization)
    assert np.array_equal(
        got, integer.linear(xl, x_qp, wl, w_qp, bias, y_qp, requantization=requantization)
    )


def test_requantize_accumulator_bad_input():
    x_qp, y_qp = QParams(0.05, 7, 0, 255), QParams(0.3, 20, 0, 255)
    w_qp = QParams(np.full(4, 0.01), np.zeros(4, np.int64), -128, 127, signed=True)
    with pytest.raises(TypeError, match="acc must be an integer accumulator"):
        integer.requantize_accumulator(np.zeros((2, 4)), x_qp, w_qp, None, y_qp)
    with pytest.raises(ValueError, match="channel_axis must be an int in -2..1"):
        integer.requantize_accumulator(
            np.zeros((2, 4), np.int64), x_qp, w_qp, None, y_qp, channel_axis=2
        )
    with pytest.raises(ValueError, match="w_qp has 4 per-channel scales"):
        integer.requantize_accumulator(np.zeros((4, 3), np.int64), x_qp, w_qp, None, y_qp)


def test_fixed_point_multiplier_rounds_ties_away_from_zero_as_tflite():
    """TFLite's QuantizeMultiplier: m0 = TfLiteRound(q * 2**31), std::round (half away from
    zero), not half to even."""
    q_fixed = np.array([2**30 + 0.5, 2**30 + 2.5, 2**30 + 1.5, 2**30 + 0.25, 2**30 + 0.75])
    fp = integer.fixed_point_multiplier(q_fixed / 2**31)  # q in [0.5, 1): shift 0
    assert fp.shift.tolist() == [0] * 5
    assert (fp.m0 - 2**30).tolist() == [1, 3, 2, 0, 1]  # half to even would give 0, 2, 2, 0, 1
    # a q that rounds up to 2**31 is halved, one more power of two: 1 - 2**-32 -> 1.0
    top = integer.fixed_point_multiplier(1 - 2.0**-32)
    assert (int(top.m0), int(top.shift)) == (2**30, 1)
    # below 2**-32 every bit would be shifted out: flushed to zero, as TFLite does
    tiny = integer.fixed_point_multiplier(np.array([2.0**-40, 2.0**-32, 2.0**-33]))
    assert tiny.m0.tolist() == [0, 2**30, 0] and tiny.shift.tolist() == [0, -31, 0]


def tflite_quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier in exact arithmetic: frexp, then round half away from zero."""
    q = Fraction(m)
    shift = 0
    while q >= 1:
        q, shift = q / 2, shift + 1
    while q < Fraction(1, 2):
        q, shift = q * 2, shift - 1
    scaled = q * 2**31
    m0 = int(scaled + Fraction(1, 2)) if scaled > 0 else 0  # floor(x + 1/2) for x > 0
    if m0 == 2**31:
        m0, shift = m0 // 2, shift + 1
    return m0, shift


def test_fixed_point_multiplier_equals_exact_tflite_rounding():
    rng = np.random.default_rng(11)
    m = np.concatenate([rng.uniform(1e-5, 4, 500), rng.uniform(0, 1, 200).astype(np.float32)])
    fp = integer.fixed_point_multiplier(m)
    want = [tflite_quantize_multiplier(float(v)) for v in m]
    assert list(zip(fp.m0.tolist(), fp.shift.tolist(), strict=True)) == want
    # a float32 multiplier (24 significant bits) is represented exactly
    m32 = m[500:]
    assert np.array_equal(integer.fixed_point_multiplier(m32).value(), m32.astype(np.float64))


def gemmlowp_double_rounding(x: int, m0: int, shift: int) -> int:
    """TFLite's default MultiplyByQuantizedMultiplier in Python integers."""
    x = x * 2 ** max(shift, 0)
    ab = x * m0
    nudge = 2**30 if ab >= 0 else 1 - 2**30
    high = abs(ab + nudge) // 2**31 * (1 if ab + nudge >= 0 else -1)  # C: toward zero
    right = max(-shift, 0)
    mask = 2**right - 1
    remainder, threshold = high & mask, (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if remainder > threshold else 0)


def test_fixed_point_double_and_single_rounding_against_exact_arithmetic():
    rng = np.random.default_rng(5)
    acc = np.concatenate([rng.integers(-(2**24), 2**24, 3000), np.arange(-300, 301)])
    wide = {"qmin": -(2**31), "qmax": 2**31 - 1}
    for m in (0.0041011548, 0.25, 0.3, 1.7, np.float32(0.000123456)):
        fp = integer.fixed_point_multiplier(m)
        m0, shift = int(fp.m0), int(fp.shift)
        double = integer.requantize(acc, fp, 0, **wide)
        single = integer.requantize(acc, fp, 0, rounding="single", **wide)
        exact = Fraction(m0) * Fraction(2) ** (shift - 31)
        for a, d, s in zip(acc.tolist(), double.tolist(), single.tolist(), strict=True):
            assert d == gemmlowp_double_rounding(a, m0, shift)
            # one rounding of the exact product, ties upward (floor(x + 1/2))
            assert s == (a * exact + Fraction(1, 2)).__floor__()
        off = int(np.sum(double != single))
        if shift >= 0:  # no right shift: the high multiply is the only rounding
            assert off == 0
        elif shift >= -7:  # about one in 2**(1 - shift) products is rounded twice the wrong way
            assert off > 0
    # M = 0.25 is m0 = 2**30 and a right shift by 1: 3 * 0.25 = 0.75 -> 1 with one rounding;
    # double rounding first makes 3 * 2**30 / 2**31 = 1.5 -> 2, then 2 / 2 = 1 too; at 5 * 0.25
    # = 1.25: 2.5 -> 3, then 3 / 2 = 1.5 -> 2 (away from zero): the exact 1.25 rounds to 1
    quarter = integer.fixed_point_multiplier(0.25)
    assert integer.requantize(np.array([5]), quarter, 0, qmin=-10).tolist() == [2]
    assert integer.requantize(np.array([5]), quarter, 0, qmin=-10, rounding="single").tolist() == [
        1
    ]


def test_rounding_option_is_checked():
    fp = integer.fixed_point_multiplier(0.5)
    with pytest.raises(ValueError, match="rounding must be one of 'double', 'single'"):
        integer.requantize(np.array([1]), fp, 0, rounding="triple")
    with pytest.raises(ValueError, match="rounding applies to a FixedPoint multiplier only"):
        integer.requantize(np.array([1]), 0.5, 0, rounding="single")
    big = integer.fixed_point_multiplier(2.0**31)
    with pytest.raises(ValueError, match="shift <= 30"):
        integer.requantize(np.array([1]), big, 0, rounding="single")


def test_accumulator_bound_names_the_int32_limit():
    x_qp, w_qp = QParams(0.1, 0, 0, 255), QParams(0.1, 0, -128, 127, signed=True)
    assert integer.accumulator_bound(65793, x_qp, w_qp) <= integer.INT32_MAX
    assert integer.accumulator_bound(65794, x_qp, w_qp) > integer.INT32_MAX


@pytest.mark.parametrize("bias", [True, False])
def test_bn_folding_matches_fuse_modules(bias):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=bias), nn.BatchNorm2d(8))
    bn = model[1]
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.1, 3)
    bn.weight.data.uniform_(0.5, 2)
    bn.bias.data.uniform_(-1, 1)
    model.eval()
    fused = fuse_modules(model, [["0", "1"]])[0]
    conv = model[0]
    w, b = integer.fold_bn(
        conv.weight.detach().numpy(),
        None if conv.bias is None else conv.bias.detach().numpy(),
        bn.weight.detach().numpy(),
        bn.bias.detach().numpy(),
        bn.running_mean.numpy(),
        bn.running_var.numpy(),
        bn.eps,
    )
    np.testing.assert_allclose(w, fused.weight.detach().numpy(), rtol=2e-7, atol=0)
    np.testing.assert_allclose(b, fused.bias.detach().numpy(), rtol=2e-7, atol=1e-7)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        np.testing.assert_allclose(fused(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- bad input
X_QP, W_QP, Y_QP = (
    QParams(0.1, 3, 0, 255),
    QParams(0.05, 0, -128, 127, signed=True),
    QParams(0.2, 10, 0, 255),
)
X, W, B = np.zeros((2, 4), np.int64), np.ones((3, 4), np.int64), np.zeros(3, np.float32)
XC, WC = np.zeros((1, 2, 5, 5), np.int64), np.ones((4, 2, 3, 3), np.int64)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: integer.linear(X.astype(float), X_QP, W, W_QP, B, Y_QP),
            TypeError,
            "x_q must be integer codes.*float64",
        ),
        (
            lambda: integer.linear(X, X_QP, W.astype(np.float32), W_QP, B, Y_QP),
            TypeError,
            "w_q must be integer codes",
        ),
        (
            lambda: integer.linear(X, X_QP, W[:, :3], W_QP, B, Y_QP),
            ValueError,
            "x_q has 4 features .* w_q expects 3",
        ),
        (
            lambda: integer.linear(X + 300, X_QP, W, W_QP, B, Y_QP),
            ValueError,
            r"x_q must hold codes in \[qmin, qmax\] = \[0, 255\] of its QParams; got 300",
        ),
        (
            lambda: integer.linear(X, X_QP, W * 200, W_QP, B, Y_QP),
            ValueError,
            r"w_q must hold codes in \[qmin, qmax\] = \[-128, 127\] of its QParams; got 200",
        ),
        (
            lambda: integer.linear(
                X, X_QP, W, QParams(np.ones(5), np.zeros(5, int), -128, 127, signed=True), B, Y_QP
            ),
            ValueError,
            "w_qp has 5 per-channel scales but the weight has 3 output channels",
        ),
        (
            lambda: integer.linear(X, W_QP, W, W_QP, B, Y_QP),
            ValueError,
            "x_qp must describe unsigned",
        ),
        (
            lambda: integer.linear(X, X_QP, W, X_QP, B, Y_QP),
            ValueError,
            "w_qp must describe signed",
        ),
        (
            lambda: integer.linear(X, X_QP, W, W_QP, B, "0.2"),
            TypeError,
            "y_qp must be a qnb.affine.QParams",
        ),
        (
            lambda: integer.linear(X, X_QP, W, W_QP, np.zeros(4), Y_QP),
            ValueError,
            r"bias must have one value per output channel, shape \(3,\)",
        ),
        (
            lambda: integer.linear(X, X_QP, W, W_QP, np.array([1.0, np.nan, 0]), Y_QP),
            ValueError,
            "bias must be finite",
        ),
        (
            lambda: integer.linear(X, X_QP, W, W_QP, B, Y_QP, requantization="int8"),
            ValueError,
            "requantization must be one of 'float', 'onednn', 'int32_bias', 'fixed_point'; "
            "got 'int8'",
        ),
        (
            lambda: integer.linear(X, X_QP, W, W_QP, B, Y_QP, relu=1),
            TypeError,
            "relu must be True or False",
        ),
        (
            lambda: integer.linear(
                np.zeros((1, 70_000), np.int64),
                X_QP,
                np.zeros((1, 70_000), np.int64),
                W_QP,
                None,
                Y_QP,
            ),
            ValueError,
            r"int32 accumulator can overflow: 70000 products .* 2\*\*31 - 1 .* at most 65,793",
        ),
        (
            lambda: integer.conv2d(X, X_QP, WC, W_QP, None, Y_QP),
            ValueError,
            r"x_q must be codes of shape \(N, C_in, H, W\)",
        ),
        (
            lambda: integer.conv2d(XC, X_QP, WC[:, :1], W_QP, None, Y_QP),
            ValueError,
            "x_q has 2 input channels but w_q expects",
        ),
        (
            lambda: integer.conv2d(XC, X_QP, WC, W_QP, None, Y_QP, groups=3),
            ValueError,
            "groups must divide in_channels",
        ),
        (
            lambda: integer.conv2d(XC, X_QP, WC, W_QP, None, Y_QP, stride=0),
            ValueError,
            "stride must be an int >= 1, got 0",
        ),
        (
            lambda: integer.conv2d(XC, X_QP, WC, W_QP, None, Y_QP, padding=-1),
            ValueError,
            "padding must be an int >= 0, got -1",
        ),
        (
            lambda: integer.conv2d(XC[..., :2, :2], X_QP, WC, W_QP, None, Y_QP),
            ValueError,
            r"padded input height \(2\) is smaller than the kernel \(3\)",
        ),
        (lambda: QParams(0.0, 0, 0, 255), ValueError, "scale must be a positive finite"),
        (lambda: QParams(-0.1, 0, 0, 255), ValueError, "scale must be a positive finite"),
        (
            lambda: integer.requantize(np.array([1]), 0.0, 0),
            ValueError,
            "multiplier must be positive and finite",
        ),
        (
            lambda: integer.requantize(np.array([1.5]), integer.fixed_point_multiplier(0.5), 0),
            TypeError,
            "acc must be integer for a FixedPoint multiplier",
        ),
        (
            lambda: integer.requantize(np.array([2**40]), 0.5, 0),
            ValueError,
            "acc must fit in int32",
        ),
        (
            lambda: integer.fixed_point_multiplier(-1.0),
            ValueError,
            "multiplier must be a positive finite number",
        ),
        (
            lambda: integer.fold_bn(
                np.ones((2, 1, 3, 3)), None, np.ones(3), np.ones(2), np.ones(2), np.ones(2)
            ),
            ValueError,
            r"gamma must have shape \(2,\)",
        ),
        (
            lambda: integer.fold_bn(
                np.ones((2, 1, 3, 3)), None, np.ones(2), np.ones(2), np.ones(2), -np.ones(2)
            ),
            ValueError,
            "var \\+ eps must be > 0",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_onednn_applies_the_two_scales_one_after_the_other(torch_state):
    """Found by hypothesis: 150 * 91 = 13650 at s_x = s_w = 0.05, s_y = 0.25 is 136.5 exactly.
    FBGEMM's float32 M = 0.0100000007 gives 136.50001 -> 137; oneDNN's (acc * s_x) * s_w stays
    on 136.5 -> 136 (half to even)."""
    x = torch._make_per_tensor_quantized_tensor(
        torch.full((1, 1, 1, 1), 150, dtype=torch.uint8), 0.05, 0
    )
    w = torch.quantize_per_tensor(torch.full((1, 1, 1, 1), 4.55), 0.05, 0, torch.qint8)
    case = {
        "x_q": x,
        "w_q": w,
        "bias": None,
        "s_y": 0.25,
        "y_zp": 0,
        "relu": False,
        "groups": 1,
        "stride": (1, 1),
        "padding": (0, 0),
    }
    assert ours(case, True, "float").item() == torch_layer(case, True, "fbgemm").item() == 137
    assert ours(case, True, "onednn").item() == torch_layer(case, True, "onednn").item() == 136


@pytest.mark.skipif("onednn" not in ENGINES, reason="this PyTorch has no onednn engine")
@pytest.mark.parametrize("per_channel", [True, False])
def test_onednn_rounds_its_reciprocal_scales_on_near_ties(torch_state, per_channel):
    """Many outputs, so that near-ties occur: PyTorch passes oneDNN 1 / s_x and 1 / s_y, and the
    kernel multiplies by float32 reciprocals of those (1 / float32(1 / s_x), and
    1 / (1 / float32(1 / s_y))), not by float32(s_x) and float32(1 / s_y). The trained CNN of
    notebook 04 has convolution outputs where only these scales give oneDNN's code.
    On two threads: on one, oneDNN picks another convolution kernel here, which differed in
    one code of these 1.92 million on an AVX-512 Xeon."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _onednn_near_ties(per_channel)
    finally:
        torch.set_num_threads(threads)


def _onednn_near_ties(per_channel):
    rng = np.random.default_rng(1)
    differ = 0
    for _ in range(12):
        s_x, z_x = float(rng.uniform(0.005, 0.1)), int(rng.integers(0, 60))
        s_y, z_y = float(rng.uniform(0.01, 0.3)), int(rng.integers(0, 80))
        x = torch._make_per_tensor_quantized_tensor(
            torch.from_numpy(rng.integers(0, 256, (1, 4, 100, 100)).astype(np.uint8)), s_x, z_x
        )
        wf = torch.from_numpy(rng.uniform(-1, 1, (16, 4, 1, 1)).astype(np.float32))
        if per_channel:
            scales = torch.from_numpy(rng.uniform(0.001, 0.02, 16))
            w = torch.quantize_per_channel(
                wf * scales.float().reshape(-1, 1, 1, 1) * 127,
                scales,
                torch.zeros(16, dtype=torch.long),
                0,
                torch.qint8,
            )
        else:
            w = torch.quantize_per_tensor(wf * 0.01 * 127, 0.01, 0, torch.qint8)
        case = {
            "x_q": x,
            "w_q": w,
            "bias": torch.from_numpy((rng.standard_normal(16) * 0.5).astype(np.float32)),
            "s_y": s_y,
            "y_zp": z_y,
            "relu": False,
            "groups": 1,
            "stride": (1, 1),
            "padding": (0, 0),
        }
        assert np.array_equal(ours(case, True, "onednn"), torch_layer(case, True, "onednn"))
        differ += int((ours(case, True, "float") != ours(case, True, "onednn")).sum())
    assert differ > 0  # near-ties occurred: the two orders of operations were told apart
