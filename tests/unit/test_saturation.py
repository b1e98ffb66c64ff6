"""qnb.saturation: vpmaddubsw's int16 pair sums against brute force, and its bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from qnb import saturation


def brute_force_pairs(rows: np.ndarray, w: np.ndarray) -> tuple[int, int]:
    """Every (row, channel, pair) through madd_int16, an odd K padded with a zero."""
    if rows.shape[1] % 2:
        rows, w = np.pad(rows, ((0, 0), (0, 1))), np.pad(w, ((0, 0), (0, 1)))
    a = np.broadcast_to(rows[:, None, :], (len(rows), len(w), rows.shape[1]))
    sat, exact = saturation.madd_int16(a, np.broadcast_to(w[None], a.shape))
    return int((sat != exact).sum()), sat.size


def im2col_channels_last(x, kh, kw, stride, pad, pad_code):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=pad_code)
    rows = [
        xp[i, :, h : h + kh, c : c + kw].transpose(1, 2, 0).reshape(-1)
        for i in range(len(xp))
        for h in range(0, xp.shape[2] - kh + 1, stride)
        for c in range(0, xp.shape[3] - kw + 1, stride)
    ]
    return np.array(rows)


@pytest.mark.parametrize("k", [7, 8, 31])
def test_saturating_pairs_of_a_linear_layer_equal_brute_force(k):
    rng = np.random.default_rng(k)
    x, w = rng.integers(0, 256, (50, k)), rng.integers(-128, 128, (6, k))
    got = saturation.saturating_pairs(x, w)
    assert got == brute_force_pairs(x, w) and got[0] > 0
    assert saturation.saturating_pairs(x // 2, w)[0] == 0  # 7-bit codes never saturate


@pytest.mark.parametrize(
    ("c_in", "stride", "pad", "pad_code"), [(4, 1, 1, 200), (4, 2, 0, 0), (1, 1, 1, 250)]
)
def test_saturating_pairs_of_a_conv_pair_channels_last(c_in, stride, pad, pad_code):
    rng = np.random.default_rng(c_in + stride + pad)
    x, w = rng.integers(0, 256, (3, c_in, 6, 5)), rng.integers(-128, 128, (5, c_in, 3, 3))
    got = saturation.saturating_pairs(x, w, stride, pad, pad_code)
    rows = im2col_channels_last(x, 3, 3, stride, pad, pad_code)
    assert got == brute_force_pairs(rows, w.transpose(0, 2, 3, 1).reshape(5, -1))
    assert got[0] > 0


def test_saturating_pairs_bad_input():
    w = np.zeros((2, 4), np.int64)
    with pytest.raises(ValueError, match="x_q must hold uint8 codes 0..255"):
        saturation.saturating_pairs(np.full((1, 4), 256), w)
    with pytest.raises(ValueError, match="w_q must hold int8 codes"):
        saturation.saturating_pairs(np.zeros((1, 4), np.int64), w + 200)
    with pytest.raises(ValueError, match="both be 2-D"):
        saturation.saturating_pairs(np.zeros((1, 4, 3, 3), np.int64), w)
    with pytest.raises(ValueError, match="features but w_q expects"):
        saturation.saturating_pairs(np.zeros((1, 5), np.int64), w)
    with pytest.raises(ValueError, match="pad_code must be a uint8 code"):
        saturation.saturating_pairs(
            np.zeros((1, 2, 3, 3), np.int64), np.zeros((1, 2, 3, 3), np.int64), 1, 1, 300
        )


def test_madd_int16_saturates_with_8_bit_activations_only():
    a = np.array([255, 255, 127, 127, 255, 255])
    b = np.array([127, 127, 127, 127, -128, -128])
    saturated, exact = saturation.madd_int16(a, b)
    assert exact.tolist() == [64770, 32258, -65280]
    assert saturated.tolist() == [32767, 32258, -32768]
    # every pair of 7-bit activations and int8 weights fits int16
    a7 = np.array(np.meshgrid(np.arange(128), np.arange(128))).reshape(2, -1).T
    for wpair in ((127, 127), (-128, -128), (127, -128)):
        sat, ex = saturation.madd_int16(a7, np.broadcast_to(wpair, a7.shape))
        assert np.array_equal(sat, ex)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (np.array([256, 0]), np.array([1, 1]), "a_u8 must hold uint8 codes 0..255"),
        (np.array([1, 0, 1]), np.array([1, 1, 1]), "even last dim"),
        (np.array([1.0, 0.0]), np.array([1, 1]), "a_u8 must be integer codes"),
        (np.array([1, 0]), np.array([1, 200]), "b_s8 must hold int8 codes"),
    ],
)
def test_madd_int16_bad_input(a, b, message):
    with pytest.raises((ValueError, TypeError), match=message):
        saturation.madd_int16(a, b)


def test_saturating_pairs_checks_stride_and_padding():
    x, w = np.zeros((1, 2, 5, 5), np.int64), np.zeros((1, 2, 3, 3), np.int64)
    with pytest.raises(ValueError, match="stride must be an int or a pair of ints"):
        saturation.saturating_pairs(x, w, (1, 1, 1))
    with pytest.raises(ValueError, match="padding must be an int >= 0, got -1"):
        saturation.saturating_pairs(x, w, 1, -1)
