"""qnb.affine: the numpy reference of affine quantization, checked bit for bit against torch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

from qnb.affine import QParams, dequantize, fake_quantize, qparams, quantize, sqnr_db

# torch 2.14 warns that quantized tensors are deprecated; they are the reference here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:torch.quantize_per_tensor:UserWarning",
    "ignore::DeprecationWarning",
)

F32 = np.float32
EPS32 = float(np.finfo(F32).eps)  # 2**-23
SCALE_20_255 = F32(20) / F32(255)  # the float32 scale of [-10, 10] at 8 bits
FAST = settings(max_examples=60, deadline=None)
ENGINES = [e for e in ("x86", "qnnpack") if e in torch.backends.quantized.supported_engines]
# Far outside any 8-bit range but below torch's int32 overflow (see test_torch_int32_overflow).
SAFE_LEVELS = 2.0**30


# ----------------------------------------------------------------------------- torch oracles
def torch_dtype(qp: QParams) -> torch.dtype:
    """The torch 8-bit dtype whose full range is qp's range."""
    assert qp.bits == 8 and qp.qmax - qp.qmin == 255, "torch int_repr needs a full 8-bit range"
    return torch.qint8 if qp.signed else torch.quint8


def torch_quantize(x: np.ndarray, qp: QParams, axis: int | None = None) -> np.ndarray:
    t = torch.from_numpy(np.array(x, dtype=F32))
    if qp.per_channel:
        scales = torch.from_numpy(np.array(qp.scale, dtype=np.float64))
        zps = torch.from_numpy(np.array(qp.zero_point, dtype=np.int64))
        tq = torch.quantize_per_channel(t, scales, zps, axis % x.ndim, torch_dtype(qp))
    else:
        tq = torch.quantize_per_tensor(t, float(qp.scale), int(qp.zero_point), torch_dtype(qp))
    return tq.int_repr().numpy().astype(np.int64)


def torch_fake_quantize(x: np.ndarray, qp: QParams, axis: int | None = None) -> np.ndarray:
    t = torch.from_numpy(np.array(x, dtype=F32))
    qmin, qmax = int(qp.qmin), int(qp.qmax)
    if qp.per_channel:
        scales = torch.from_numpy(np.array(qp.scale, dtype=F32))
        zps = torch.from_numpy(np.array(qp.zero_point, dtype=np.int32))
        out = torch.fake_quantize_per_channel_affine(t, scales, zps, axis % x.ndim, qmin, qmax)
    else:
        out = torch.fake_quantize_per_tensor_affine(
            t, float(qp.scale), int(qp.zero_point), qmin, qmax
        )
    return out.numpy()


def qp8(scale: float, zero_point: int, signed: bool) -> QParams:
    """8-bit per-tensor QParams with the full quint8 / qint8 range."""
    qmin, qmax = (-128, 127) if signed else (0, 255)
    return QParams(float(F32(scale)), zero_point, qmin, qmax, bits=8, signed=signed)


def assert_same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    bad = np.flatnonzero(ours.ravel() != theirs.ravel())
    assert bad.size == 0, (
        f"{bad.size} differ, first at {bad[0]}: {ours.ravel()[bad[0]]} vs {theirs.ravel()[bad[0]]}"
    )


@pytest.fixture(params=ENGINES)
def engine(request):
    """Run a test under each quantized engine (the quantize kernels do not depend on it)."""
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = request.param
    yield request.param
    torch.backends.quantized.engine = before


# ----------------------------------------------------------------------------- worked example
def test_worked_example_asymmetric_unsigned():
    qp = qparams(-10, 10)
    assert qp.scale == SCALE_20_255 and qp.scale == pytest.approx(20 / 255)
    assert round(float(qp.scale), 4) == 0.0784
    assert (qp.zero_point, qp.qmin, qp.qmax) == (127, 0, 255)
    q = quantize(3.14, qp)
    assert q == 167 and q - qp.zero_point == 40
    assert dequantize(q, qp) == F32(40) * SCALE_20_255
    assert float(dequantize(q, qp)) == pytest.approx(3.137, abs=1e-3)


def test_worked_example_symmetric_signed_gives_40():
    qp = qparams(-10, 10, symmetric=True)
    assert qp.scale == SCALE_20_255
    assert (qp.zero_point, qp.qmin, qp.qmax, qp.signed) == (0, -128, 127, True)
    assert quantize(3.14, qp) == 40
    assert dequantize(40, qp) == F32(40) * SCALE_20_255


def test_worked_example_symmetric_unsigned_gives_168():
    qp = qparams(-10, 10, symmetric=True, signed=False)
    assert (qp.scale, qp.zero_point, qp.qmin, qp.qmax) == (SCALE_20_255, 128, 0, 255)
    assert quantize(3.14, qp) == 168
    assert dequantize(168, qp) == F32(40) * SCALE_20_255


def test_worked_example_zero_point_is_a_tie_that_float32_breaks():
    # In real numbers -10 / (20/255) = -127.5 exactly; float64 keeps the tie (round -> -128,
    # zero point 128) but float32, which torch uses, lands just above it (-> -127, zp 127).
    assert -10 / (20 / 255) == -127.5
    assert -127.5 < F32(-10) / SCALE_20_255 < -127.49
    observer = MinMaxObserver(dtype=torch.quint8)
    observer(torch.tensor([-10.0, 10.0]))
    scale, zero_point = observer.calculate_qparams()
    assert (scale.item(), zero_point.item()) == (qparams(-10, 10).scale, 127)


@pytest.mark.parametrize("symmetric", [False, True])
def test_worked_example_matches_torch(symmetric):
    qp = qparams(-10, 10, symmetric=symmetric)
    x = np.array([3.14, -10, 10, 0, -3.14], F32)
    assert_same(quantize(x, qp), torch_quantize(x, qp))


# ----------------------------------------------------------------------------- kernel details
def test_multiplies_by_float32_reciprocal_not_divides():
    # fbgemm's own example: x * (1/s) is exactly 127.5 (-> 128), x / s is 127.49999 (-> 127).
    s, x = F32(0.00214854861), F32(0.273939937)
    assert x * (F32(1) / s) == 127.5 and x / s < 127.5
    qp = qp8(s, 0, signed=False)
    assert quantize(x, qp) == 128 == torch_quantize(np.array([x]), qp)[0]


@pytest.mark.parametrize("signed", [False, True])
def test_zero_point_is_added_after_rounding(signed):
    # Ties round to even on x/scale, before the zero point moves them: with zp = 1,
    # 0.5 -> 0 + 1 and 1.5 -> 2 + 1 (round(x/scale + zp) would give 2 and 2).
    qp = qp8(1.0, 1, signed)
    x = np.array([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5], F32)
    expected = np.array([1, 3, 3, 5, 1, -1, -1]).clip(qp.qmin, qp.qmax)
    assert_same(quantize(x, qp), expected)
    assert_same(quantize(x, qp), torch_quantize(x, qp))


def half_to_even(k: np.ndarray) -> np.ndarray:
    """round(k + 0.5) with ties to even, written out: k if k is even else k + 1."""
    return k + (k % 2)


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25, 2.0**-7, 4.0, 2.0**-20])
@pytest.mark.parametrize(
    ("zero_point", "signed"),
    [
        (0, False),
        (1, False),
        (77, False),
        (128, False),
        (255, False),
        (0, True),
        (1, True),
        (-100, True),
        (-128, True),
        (127, True),
    ],
)
def test_exact_ties_round_half_to_even(scale, zero_point, signed):
    qp = qp8(scale, zero_point, signed)
    qmin, qmax = int(qp.qmin), int(qp.qmax)
    k = np.arange(qmin - zero_point - 5, qmax - zero_point + 5)
    x = ((k + 0.5) * scale).astype(F32)  # exactly halfway between two levels
    expected = np.clip(half_to_even(k) + zero_point, qmin, qmax)
    assert_same(quantize(x, qp), expected)
    assert_same(quantize(x, qp), torch_quantize(x, qp))


def float32_ties(scale: float, ks: np.ndarray) -> np.ndarray:
    """Float32 inputs x with x * float32(1/scale) exactly k + 0.5, searched near (k+0.5)*scale."""
    s = F32(scale)
    inv = F32(1) / s
    found = []
    for k in ks:
        x = F32((k + 0.5) * float(s))
        for _ in range(8):  # a few ulps below, then up
            x = np.nextafter(x, F32(-np.inf))
        for _ in range(16):
            if x * inv == F32(k + 0.5):
                found.append(x)
            x = np.nextafter(x, F32(np.inf))
    return np.array(found, F32)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("scale", [20 / 255, 0.1, 1 / 3, 0.0023, 0.00214854861, 7.3])
def test_ties_at_typical_scales(scale, signed):
    qp = qp8(scale, 3 if signed else 131, signed)
    ties = float32_ties(scale, np.arange(-140, 140))
    assert ties.size > 20, "the search should find many exact float32 ties"
    neighbours = np.concatenate([np.nextafter(ties, F32(-np.inf)), np.nextafter(ties, F32(np.inf))])
    for x in (ties, neighbours):
        assert_same(quantize(x, qp), torch_quantize(x, qp))


@pytest.mark.parametrize("signed", [False, True])
def test_random_tensors_match_torch(engine, signed):
    rng = np.random.default_rng(1234)
    qmin, qmax = (-128, 127) if signed else (0, 255)
    for _ in range(60):
        scale = float(F32(np.exp(rng.uniform(-15, 5))))
        qp = qp8(scale, int(rng.integers(qmin, qmax + 1)), signed)
        n = int(rng.integers(0, 70))  # lengths that are and are not multiples of the vector width
        x = rng.standard_normal(n) * scale * rng.choice([10.0, 100.0, 1e4, 1e8])
        ties = (rng.integers(-300, 300, n) + 0.5) * scale
        x = np.where(rng.random(n) < 0.3, ties, x).astype(F32)
        assert_same(quantize(x, qp), torch_quantize(x, qp))


@FAST
@given(
    scale=st.floats(1e-6, 1e3).map(F32),
    zero_point=st.integers(0, 255),
    signed=st.booleans(),
    levels=hnp.arrays(np.float64, st.integers(0, 40), elements=st.floats(-400, 400)),
)
def test_hypothesis_per_tensor_matches_torch(scale, zero_point, signed, levels):
    zero_point = zero_point - 128 * signed
    qp = qp8(scale, zero_point, signed)
    x = (levels * float(scale)).astype(F32)
    assert_same(quantize(x, qp), torch_quantize(x, qp))


def test_quantize_does_not_depend_on_engine():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(1000) * 50).astype(F32)
    qp = qp8(0.37, 101, signed=False)
    before, results = torch.backends.quantized.engine, []
    try:
        for name in ENGINES:
            torch.backends.quantized.engine = name
            results.append(torch_quantize(x, qp))
    finally:
        torch.backends.quantized.engine = before
    for result in results:
        assert_same(quantize(x, qp), result)


def test_far_outside_the_range_clamps():
    qp = qp8(0.01, 128, signed=False)
    x = np.array([1e3, -1e3, 1e6, -1e6, 2e7, -2e7, 3e38, -3e38], F32)
    assert_same(quantize(x, qp), np.array([255, 0] * 4))
    safe = x[np.abs(x.astype(np.float64)) / 0.01 < SAFE_LEVELS]
    assert_same(quantize(safe, qp), torch_quantize(safe, qp))


def test_torch_int32_overflow_is_a_documented_difference():
    # x86 torch adds the zero point in int32 after saturating x/scale at 2**31 - 128, so for
    # quint8 with zero_point >= 128 it wraps and returns 0 (pytorch/pytorch#133557).
    # qnb saturates to qmax, as torch's per-channel kernel does.
    qp = qp8(1.0, 128, signed=False)
    x = np.array([2.0**31, 1e10, np.finfo(F32).max], F32)
    assert_same(quantize(x, qp), np.array([255, 255, 255]))
    assert set(torch_quantize(x, qp).tolist()) <= {0, 255}
    per_channel = QParams(np.array([1.0]), np.array([128]), 0, 255)
    assert_same(torch_quantize(x[:, None], per_channel, axis=1), np.full((3, 1), 255))
    below = np.array([2147483392.0], F32)  # the largest float32 below 2**31 - 128: no overflow
    assert quantize(below, qp)[0] == 255 == torch_quantize(below, qp)[0]


# ----------------------------------------------------------------------------- per-channel
PER_CHANNEL_CASES = [
    ((4,), 0),
    ((3, 5), 0),
    ((3, 5), 1),
    ((3, 5), -1),
    ((2, 3, 4), 1),
    ((2, 3, 4), -1),
    ((2, 3, 4, 5), 2),
    ((4, 3, 2, 2), 0),
    ((2, 6, 3, 3), 1),
]


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize(("shape", "axis"), PER_CHANNEL_CASES)
def test_per_channel_matches_torch(shape, axis, signed):
    rng = np.random.default_rng([*shape, axis % len(shape), signed])
    channels = shape[axis]
    qmin, qmax = (-128, 127) if signed else (0, 255)
    scale = np.exp(rng.uniform(-10, 2, channels)).astype(F32).astype(np.float64)
    qp = QParams(scale, rng.integers(qmin, qmax + 1, channels), qmin, qmax, signed=signed)
    view = [1] * len(shape)
    view[axis] = channels
    s = scale.reshape(view)
    noise = rng.standard_normal(shape) * s * rng.choice([1.0, 100.0, 1e5], size=shape)
    ties = (rng.integers(-300, 300, shape) + 0.5) * s
    x = np.where(rng.random(shape) < 0.4, ties, noise).astype(F32)
    assert_same(quantize(x, qp, axis), torch_quantize(x, qp, axis))
    assert_same(dequantize(quantize(x, qp, axis), qp, axis), torch_fake_quantize(x, qp, axis))


def test_per_channel_channels_are_independent():
    qp = qparams(np.array([-1.0, -100.0]), np.array([1.0, 100.0]), symmetric=True)
    x = np.array([[0.5, 0.5], [50.0, 50.0]], F32)  # channel c is row c (axis 0)
    q = quantize(x, qp, axis=0)
    assert_same(q[0], quantize(x[0], qparams(-1.0, 1.0, symmetric=True)))
    assert_same(q[1], quantize(x[1], qparams(-100.0, 100.0, symmetric=True)))
    assert_same(quantize(x.T, qp, axis=1), q.T)
    assert_same(quantize(x.T, qp, axis=-1), q.T)


# ----------------------------------------------------------------------------- qparams vs torch
OBSERVER_CONFIGS = [  # (observer kwargs, qparams kwargs)
    (dict(dtype=torch.quint8, qscheme=torch.per_tensor_affine), dict()),
    (dict(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric), dict(symmetric=True)),
    (
        dict(dtype=torch.quint8, qscheme=torch.per_tensor_symmetric),
        dict(symmetric=True, signed=False),
    ),
    (dict(dtype=torch.qint8, qscheme=torch.per_tensor_affine), dict(signed=True)),
    (
        dict(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=-127, quant_max=127),
        dict(symmetric=True, narrow_range=True),
    ),
    (
        dict(dtype=torch.quint8, qscheme=torch.per_tensor_affine, quant_min=0, quant_max=127),
        dict(bits=7),
    ),
    (
        dict(dtype=torch.quint8, qscheme=torch.per_tensor_affine, quant_min=0, quant_max=15),
        dict(bits=4),
    ),
]


def observed_tensors() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        np.array([-10.0, 10.0]),
        np.array([-1.0, 3.0]),
        rng.standard_normal(100) * 3,
        rng.uniform(2, 5, 50),
        -rng.uniform(2, 5, 50),
        np.full(4, 5.0),
        np.full(4, -3.0),
        np.zeros(4),
        np.full(3, 1e-9),
        np.array([-1e-7, 2e-7]),
        np.array([-1e30, 2e30]),
        rng.standard_normal(1000) * 0.01 + 0.3,
    ] + [rng.uniform(-a, b, 20) for a, b in rng.uniform(0, 100, (30, 2))]


@pytest.mark.parametrize(("observer_kwargs", "qparams_kwargs"), OBSERVER_CONFIGS)
def test_qparams_match_minmax_observer(observer_kwargs, qparams_kwargs):
    for values in observed_tensors():
        x = torch.tensor(values, dtype=torch.float32)
        observer = MinMaxObserver(**observer_kwargs)
        observer(x)
        scale, zero_point = observer.calculate_qparams()
        qp = qparams(x.min().item(), x.max().item(), **qparams_kwargs)
        assert (qp.scale, qp.zero_point) == (scale.item(), zero_point.item()), values[:4]


@pytest.mark.parametrize("ch_axis", [0, 1])
@pytest.mark.parametrize(
    ("observer_kwargs", "qparams_kwargs"),
    [
        (dict(dtype=torch.qint8, qscheme=torch.per_channel_symmetric), dict(symmetric=True)),
        (dict(dtype=torch.quint8, qscheme=torch.per_channel_affine), dict()),
    ],
)
def test_qparams_match_per_channel_observer(ch_axis, observer_kwargs, qparams_kwargs):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 5, 3, 3)).astype(F32) * rng.uniform(0.01, 2, (6, 1, 1, 1))
    w = np.moveaxis(w, 0, ch_axis).copy()
    index = [slice(None)] * 4
    index[ch_axis] = 1
    w[tuple(index)] = 0.0  # an all-zero channel
    index[ch_axis] = 2
    w[tuple(index)] = 0.75  # a constant positive channel
    observer = PerChannelMinMaxObserver(ch_axis=ch_axis, **observer_kwargs)
    observer(torch.from_numpy(w))
    scale, zero_point = observer.calculate_qparams()
    others = tuple(d for d in range(4) if d != ch_axis)
    qp = qparams(w.min(axis=others), w.max(axis=others), **qparams_kwargs)
    assert_same(qp.scale, scale.numpy().astype(np.float64))
    assert_same(qp.zero_point, zero_point.numpy().astype(np.int64))
    assert qp.scale[1] == EPS32  # all-zero channel: torch's eps floor, no division by zero
    assert_same(quantize(w, qp, ch_axis), torch_quantize(w, qp, ch_axis))


# ----------------------------------------------------------------------------- dequantize
@pytest.mark.parametrize("signed", [False, True])
def test_dequantize_matches_torch(signed):
    rng = np.random.default_rng(5)
    for _ in range(20):
        qp = qp8(np.exp(rng.uniform(-8, 3)), int(rng.integers(0, 128)), signed)
        x = (rng.standard_normal(37) * 100 * float(qp.scale)).astype(F32)
        t = torch.quantize_per_tensor(
            torch.from_numpy(x), float(qp.scale), int(qp.zero_point), torch_dtype(qp)
        )
        q = t.int_repr().numpy()  # uint8 / int8 codes: dequantize must not wrap around
        assert_same(dequantize(q, qp), t.dequantize().numpy())
        assert dequantize(q, qp).dtype == F32


@FAST
@given(
    bits=st.integers(2, 16),
    symmetric=st.booleans(),
    signed=st.booleans(),
    narrow_range=st.booleans(),
    bounds=st.tuples(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4)).map(sorted),
    levels=hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(-1.5, 1.5)),
)
def test_fake_quantize_matches_torch_at_every_bit_width(
    bits, symmetric, signed, narrow_range, bounds, levels
):
    qp = qparams(*bounds, bits=bits, symmetric=symmetric, signed=signed, narrow_range=narrow_range)
    x = (levels * max(abs(bounds[0]), abs(bounds[1]), 1e-3)).astype(F32)
    assert_same(fake_quantize(x, qp), torch_fake_quantize(x, qp))


# ----------------------------------------------------------------------------- properties
config = st.fixed_dictionaries(
    {
        "bits": st.integers(2, 16),
        "symmetric": st.booleans(),
        "signed": st.booleans(),
        "narrow_range": st.booleans(),
    }
)


@FAST
@given(
    kwargs=config,
    bounds=st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)).map(sorted),
    fractions=hnp.arrays(np.float64, st.integers(1, 50), elements=st.floats(0, 1)),
)
def test_error_inside_the_range_is_at_most_half_a_step(kwargs, bounds, fractions):
    qp = qparams(*bounds, **kwargs)
    lo, hi = dequantize(np.array([qp.qmin, qp.qmax]), qp).astype(np.float64)
    x = (lo + fractions * (hi - lo)).astype(F32).clip(lo, hi)
    x_hat = fake_quantize(x, qp)
    error = np.abs(x.astype(np.float64) - x_hat)
    # Rounding x/scale costs at most scale/2. Float32 adds relative errors of 2**-24 each in
    # 1/scale, x * (1/scale) and (q - zp) * scale: at most 2**-22 * max(|x|, |x_hat|) in all.
    slack = 2 * EPS32 * np.maximum(np.abs(x), np.abs(x_hat))
    assert np.all(error <= float(qp.scale) / 2 + slack)


@FAST
@given(kwargs=config, scale=st.floats(1e-8, 1e4).map(F32), data=st.data())
def test_every_code_round_trips(kwargs, scale, data):
    bits, signed = kwargs["bits"], kwargs["signed"]
    qmin = (-(2 ** (bits - 1)) if signed else 0) + kwargs["narrow_range"]
    qmax = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    zero_point = data.draw(st.integers(qmin, qmax))
    qp = QParams(float(scale), zero_point, qmin, qmax, bits, kwargs["symmetric"], signed)
    codes = np.arange(qmin, qmax + 1)
    assert_same(quantize(dequantize(codes, qp), qp), codes)


@FAST
@given(
    kwargs=config,
    bounds=st.tuples(st.floats(-100, 100), st.floats(-100, 100)).map(sorted),
    x=hnp.arrays(np.float32, st.integers(1, 60), elements=st.floats(-300, 300, width=32)),
)
def test_quantize_is_monotone_and_zero_is_exact(kwargs, bounds, x):
    qp = qparams(*bounds, **kwargs)
    assert np.all(np.diff(quantize(np.sort(x), qp)) >= 0)
    assert quantize(0.0, qp) == qp.zero_point and fake_quantize(0.0, qp) == 0.0


# ----------------------------------------------------------------------------- edge cases
def test_empty_arrays():
    qp = qparams(-1, 1)
    assert quantize(np.empty((0, 3)), qp).shape == (0, 3)
    assert quantize([], qp).dtype == np.int64
    assert dequantize(np.empty(0, np.int64), qp).shape == (0,)
    per_channel = qparams(np.array([-1.0, -2, -3]), np.array([1.0, 2, 3]))
    assert fake_quantize(np.empty((0, 3)), per_channel, axis=1).shape == (0, 3)


def test_scalars_give_0d_arrays():
    qp = qparams(-1, 1, symmetric=True)
    q = quantize(0.5, qp)
    assert isinstance(q, np.ndarray) and q.shape == () and q.dtype == np.int64
    assert dequantize(int(q), qp).shape == ()


@pytest.mark.parametrize(
    ("xmin", "xmax", "symmetric", "scale", "zero_point"),
    [
        (5.0, 5.0, False, F32(5) / F32(255), 0),  # widened to [0, 5]
        (-3.0, -3.0, False, F32(3) / F32(255), 255),  # widened to [-3, 0]
        (0.0, 0.0, False, EPS32, 0),  # nothing to cover: torch's eps, not a division by 0
        (0.0, 0.0, True, EPS32, 0),
        (2.0, 5.0, False, F32(5) / F32(255), 0),  # a range that excludes 0
        (-5.0, -2.0, False, F32(5) / F32(255), 255),
        (1e-12, 1e-12, False, EPS32, 0),
    ],
)
def test_constant_and_degenerate_ranges(xmin, xmax, symmetric, scale, zero_point):
    qp = qparams(xmin, xmax, symmetric=symmetric)
    assert (qp.scale, qp.zero_point) == (scale, zero_point)
    x = np.full(5, xmin, F32)
    assert np.all(np.abs(fake_quantize(x, qp) - x) <= float(qp.scale) / 2 + 1e-6)


def test_range_excluding_zero_is_widened():
    assert qparams(2, 5) == qparams(0, 5)
    assert qparams(-5, -2) == qparams(-5, 0)
    assert qparams(2, 5, symmetric=True) == qparams(-5, 5, symmetric=True)


def test_all_zero_channel():
    qp = qparams(np.array([0.0, -1.0]), np.array([0.0, 1.0]))
    assert qp.scale[0] == EPS32 and qp.zero_point[0] == 0
    x = np.array([[0.0, 0.0], [-1.0, 0.25]], F32)
    assert_same(fake_quantize(x, qp, axis=0)[0], np.zeros(2, F32))


def test_input_is_taken_as_float32():
    qp = qparams(-1, 1)
    x64 = np.array([0.1, 1 / 3, -0.7, 1e-9])
    assert_same(quantize(x64, qp), quantize(x64.astype(F32), qp))
    assert_same(quantize([1, -1, 0], qp), quantize(np.array([1.0, -1.0, 0.0]), qp))
    assert quantize(np.array([1e300]), qp) == 255  # beyond float32: inf, clamped


def test_qparams_record_the_config():
    qp = qparams(-1, 1, bits=4, symmetric=True, narrow_range=True)
    assert (qp.qmin, qp.qmax, qp.bits, qp.symmetric, qp.signed) == (-7, 7, 4, True, True)
    assert qp.scale == F32(1) / F32(7)
    unsigned = qparams(-1, 1, bits=4, symmetric=True, signed=False, narrow_range=True)
    assert (unsigned.qmin, unsigned.qmax, unsigned.zero_point) == (1, 15, 8)
    assert qparams(-1, 1, bits=16).qmax == 65535
    assert qparams(-1, 1, bits=2, signed=True).qmin == -2
    assert isinstance(qp.scale, np.float64) and isinstance(qp.zero_point, np.int64)


def test_qparams_object():
    qp = QParams(0.5, 3, -128, 127, signed=True)
    assert qp.scale == 0.5 and not qp.per_channel
    assert repr(qp) == (
        "QParams(scale=0.5, zero_point=3, qmin=-128, qmax=127, bits=8, "
        "symmetric=False, signed=True)"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        qp.scale = 1.0
    per_channel = QParams([0.5, 0.25], [0, 1], 0, 255)
    assert per_channel.per_channel and per_channel.scale.dtype == np.float64
    with pytest.raises(ValueError):
        per_channel.scale[0] = 2.0  # read-only
    assert per_channel == QParams(np.array([0.5, 0.25]), np.array([0, 1]), 0, 255)
    assert per_channel != QParams([0.5, 0.5], [0, 1], 0, 255)
    assert "scale=[0.5 , 0.25]" in repr(per_channel)


# ----------------------------------------------------------------------------- sqnr
def test_sqnr_db_values():
    assert sqnr_db([1.0, 1.0], [1.0, 0.0]) == pytest.approx(10 * np.log10(2))
    assert sqnr_db([3.0, -4.0], [3.0, -4.0]) == float("inf")
    assert sqnr_db([0.0, 0.0], [0.0, 1.0]) == float("-inf")
    assert sqnr_db(np.ones((2, 2)), np.full((2, 2), 0.9)) == pytest.approx(20.0)


def test_sqnr_grows_about_6_db_per_bit():
    x = np.random.default_rng(0).uniform(-1, 1, 20_000).astype(F32)
    sqnr = [sqnr_db(x, fake_quantize(x, qparams(-1, 1, bits=b))) for b in range(4, 13)]
    assert np.diff(sqnr) == pytest.approx(6.02, abs=0.3)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bits", [True, 8.0, "8", None, np.float64(8)])
def test_bits_of_wrong_type(bits):
    with pytest.raises(TypeError, match=r"bits must be an int in 2\.\.16, got"):
        qparams(-1, 1, bits=bits)


@pytest.mark.parametrize("bits", [0, 1, 17, 32, -8])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match=rf"bits must be an int in 2\.\.16, got {bits}"):
        qparams(-1, 1, bits=bits)


@pytest.mark.parametrize("scale", [0.0, -0.5, float("nan"), float("inf")])
def test_bad_scale(scale):
    with pytest.raises(ValueError, match=rf"scale must be a positive finite .*got {scale}"):
        QParams(scale, 0, 0, 255)
    with pytest.raises(ValueError, match=rf"scale must .*got {scale} at index \(1,\)"):
        QParams([1.0, scale], [0, 0], 0, 255)


@pytest.mark.parametrize(("zero_point", "signed"), [(256, False), (-1, False), (128, True)])
def test_zero_point_outside_range(zero_point, signed):
    qmin, qmax = (-128, 127) if signed else (0, 255)
    message = rf"zero_point must be an int in \[qmin, qmax\] = \[{qmin}, {qmax}\]; got {zero_point}"
    with pytest.raises(ValueError, match=message):
        QParams(1.0, zero_point, qmin, qmax, signed=signed)


def test_bad_qparams_fields():
    with pytest.raises(TypeError, match="zero_point must be an int"):
        QParams(1.0, 1.5, 0, 255)
    with pytest.raises(ValueError, match=r"qmin must be an int in 0\.\.255; got -1"):
        QParams(1.0, 0, -1, 255)
    with pytest.raises(ValueError, match=r"qmax must be an int in -8\.\.7; got 8"):
        QParams(1.0, 0, -8, 8, bits=4, signed=True)
    with pytest.raises(ValueError, match="qmin must be < qmax; got qmin=5, qmax=5"):
        QParams(1.0, 5, 5, 5)
    with pytest.raises(ValueError, match=r"same shape; got \(2,\) and \(\)"):
        QParams([1.0, 2.0], 0, 0, 255)
    with pytest.raises(TypeError, match="signed must be True or False; got 1"):
        QParams(1.0, 0, 0, 255, signed=1)


@pytest.mark.parametrize("name", ["symmetric", "signed", "narrow_range"])
def test_flags_must_be_bools(name):
    with pytest.raises(TypeError, match=f"{name} must be True or False; got 'yes'"):
        qparams(-1, 1, **{name: "yes"})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_in_x(bad):
    x = np.array([0.0, 1.0, bad])
    for func in (quantize, fake_quantize):
        with pytest.raises(ValueError, match=rf"x must be finite; got {bad} at index \(2,\)"):
            func(x, qparams(-1, 1))
    with pytest.raises(ValueError, match="x_hat must be finite"):
        sqnr_db(np.zeros(3), x)
    with pytest.raises(ValueError, match=f"xmin must be finite; got {bad}"):
        qparams(bad, 1.0)


def test_non_numeric_x():
    with pytest.raises(TypeError, match="x must be real numbers"):
        quantize(["a", "b"], qparams(-1, 1))
    with pytest.raises(TypeError, match="q must be integer codes"):
        dequantize(np.array([1.5]), qparams(-1, 1))
    with pytest.raises(TypeError, match="qp must be a QParams"):
        quantize([1.0], (0.1, 0))


def test_xmin_greater_than_xmax():
    with pytest.raises(ValueError, match="xmin must be <= xmax; got xmin=2.0 > xmax=1.0"):
        qparams(2.0, 1.0)
    with pytest.raises(ValueError, match="xmin=3.0 > xmax=-1.0 at channel 1"):
        qparams(np.array([0.0, 3.0]), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"got shapes \(2,\) and \(3,\)"):
        qparams(np.zeros(2), np.ones(3))
    with pytest.raises(ValueError, match=r"got shapes \(2, 2\)"):
        qparams(np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="xmax - xmin must fit in float32.*xmin=-1e"):
        qparams(-1e39, 1.0)  # finite in float64, -inf in float32
    with pytest.raises(ValueError, match="xmax - xmin must fit in float32"):
        qparams(-3e38, 3e38)


@pytest.mark.parametrize("axis", [3, -4, 1.0, True, "1"])
def test_axis_out_of_range(axis):
    qp = qparams(np.full(3, -1.0), np.full(3, 1.0))
    with pytest.raises(ValueError, match=r"axis must be an int in -3\.\.2 for 3-d x; got"):
        quantize(np.zeros((3, 3, 3)), qp, axis=axis)
    with pytest.raises(ValueError, match=r"axis must be an int in -1\.\.0 for 1-d q"):
        dequantize(np.zeros(3, np.int64), qparams(-1, 1), axis=axis)


def test_per_channel_length_mismatch():
    qp = qparams(np.full(3, -1.0), np.full(3, 1.0))
    with pytest.raises(ValueError, match=r"3 channels but x\.shape\[1\] is 4"):
        quantize(np.zeros((3, 4)), qp, axis=1)
    with pytest.raises(ValueError, match=r"axis must be None for 0-d x; got 0"):
        quantize(1.0, qp, axis=0)


def test_per_channel_without_axis():
    qp = qparams(np.full(3, -1.0), np.full(3, 1.0))
    for call in (
        lambda: quantize(np.zeros((3, 3)), qp),
        lambda: dequantize(np.zeros((3, 3), np.int64), qp),
        lambda: fake_quantize(np.zeros((3, 3)), qp),
    ):
        with pytest.raises(ValueError, match=r"axis is required for per-channel qp \(3 channels\)"):
            call()


def test_codes_outside_range():
    message = r"q must hold codes in \[qmin, qmax\] = \[0, 255\]; got 256 at index \(1,\)"
    with pytest.raises(ValueError, match=message):
        dequantize(np.array([0, 256]), qparams(-1, 1))


def test_sqnr_bad_shapes():
    with pytest.raises(ValueError, match=r"same shape; got \(2,\) and \(3,\)"):
        sqnr_db(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match=r"must not be empty; got shape \(0,\)"):
        sqnr_db([], [])
