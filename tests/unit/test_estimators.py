"""Range estimators: each against a case with a known answer, and the bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy
from torch.ao.quantization.observer import HistogramObserver

from qnb import estimators
from qnb.env import hide_deprecation_warnings

hide_deprecation_warnings()


@pytest.fixture(scope="module")
def gaussian():
    return torch.randn(32, 20_000, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def uniform_with_outlier():
    x = torch.rand(100_000, generator=torch.Generator().manual_seed(1))
    x[123] = 10.0
    return x


def test_minmax_is_the_extremes(gaussian):
    assert estimators.estimate_range(gaussian, "minmax") == (
        pytest.approx(float(gaussian.min())),
        pytest.approx(float(gaussian.max())),
    )


def test_moving_average_follows_its_formula():
    batches = torch.tensor([[0.0, 10.0], [-2.0, 20.0], [-4.0, 40.0]])
    low, high = estimators.estimate_range(batches, "moving_average", averaging_constant=0.5)
    # first batch sets the range, each later one moves it halfway: 0 -> -1 -> -2.5, 10 -> 15 -> 27.5
    assert (low, high) == (pytest.approx(-2.5), pytest.approx(27.5))


def test_percentile_of_uniform_data():
    x = torch.linspace(0, 1000, 1_000_001)
    low, high = estimators.estimate_range(x, "percentile", percentile=99.0)
    assert low == 0.0 and high == pytest.approx(990, abs=1000 / 2048 + 1e-3)


def test_percentile_clips_both_tails_of_two_sided_data(gaussian):
    low, high = estimators.estimate_range(gaussian, "percentile", percentile=99.0)
    # the 1% and 99% points of N(0, 1) are -/+2.326
    assert low == pytest.approx(-2.326, abs=0.03) and high == pytest.approx(2.326, abs=0.03)


@pytest.mark.parametrize(("bits", "alpha"), [(4, 2.55), (8, 3.92)])
def test_mse_finds_the_known_optimal_gaussian_clip(gaussian, bits, alpha):
    """Optimal clipping of N(0, 1) under uniform rounding noise (Banner et al., ACIQ)."""
    low, high = estimators.estimate_range(gaussian, "mse", bits, signed=True, symmetric=True)
    assert -low == pytest.approx(alpha, abs=0.15) and high == pytest.approx(alpha, abs=0.15)


def test_mse_clips_a_lone_outlier_at_4_bits(uniform_with_outlier):
    assert estimators.estimate_range(uniform_with_outlier, "mse", 4)[1] == pytest.approx(1, abs=0.1)


def test_entropy_clips_a_lone_outlier_at_4_bits(uniform_with_outlier):
    low, high = estimators.estimate_range(uniform_with_outlier, "entropy", 4)
    assert low == pytest.approx(0, abs=1e-3) and high == pytest.approx(1.0, abs=0.05)


def test_entropy_keeps_the_range_of_data_without_outliers():
    x = torch.rand(200_000, generator=torch.Generator().manual_seed(2))
    assert estimators.estimate_range(x, "entropy", 8)[1] == pytest.approx(1.0, abs=0.01)


def test_entropy_is_symmetric_for_two_sided_data(gaussian):
    low, high = estimators.estimate_range(gaussian, "entropy", 8)
    assert low == -high and 3.0 < high < float(gaussian.abs().max())


def test_histogram_searches_for_the_real_number_of_levels(uniform_with_outlier):
    """torch.ao's HistogramObserver assumes 256 levels for quint8 even with a 4-bit range."""
    ours = estimators.estimate_range(uniform_with_outlier, "histogram", 4)[1]
    stock = HistogramObserver(quant_min=0, quant_max=15)
    stock(uniform_with_outlier)
    assert ours == pytest.approx(1.0, abs=0.05)
    assert float(stock._non_linear_param_search()[1]) > 5  # kept the outlier, as for 8 bits


@pytest.mark.parametrize("method", estimators.METHODS)
def test_every_method_gives_a_range_that_holds_zero(method, gaussian):
    obs = estimators.observer(method, 8)
    obs(torch.relu(gaussian))
    scale, zero_point = obs.calculate_qparams()
    assert scale.item() > 0 and 0 <= zero_point.item() <= 255


@pytest.mark.parametrize("method", estimators.METHODS)
def test_an_observer_that_saw_nothing_refuses_to_give_qparams(method):
    with pytest.raises(estimators.NotCalibratedError, match="saw no data: run calibration"):
        estimators.observer(method).calculate_qparams()


@pytest.mark.parametrize("method", estimators.METHODS)
def test_observers_refuse_nan(method):
    with pytest.raises(ValueError, match="1 NaN or inf"):
        estimators.observer(method)(torch.tensor([0.0, math.nan, 1.0]))


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.tensor([]), "x is empty"),
        (torch.full((10,), 3.0), "x is constant.*3.0"),
        (torch.tensor([1.0, math.nan]), "x contains 1 NaN or inf"),
        (torch.tensor([1.0, math.inf, -math.inf]), "x contains 2 NaN or inf"),
    ],
)
def test_estimate_range_bad_data(x, message):
    with pytest.raises(ValueError, match=message):
        estimators.estimate_range(x, "minmax")


@pytest.mark.parametrize("percentile", [0, -1, 100.5, math.nan])
def test_percentile_out_of_range(percentile):
    with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\], got"):
        estimators.observer("percentile", percentile=percentile)


def test_percentile_must_be_a_number():
    with pytest.raises(TypeError, match="percentile must be a number"):
        estimators.observer("percentile", percentile="99")


@pytest.mark.parametrize("bits", [1, 17, 0])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match="bits must be an int in 2..16"):
        estimators.observer("minmax", bits)


@pytest.mark.parametrize("bits", [8.0, "8", True])
def test_bits_not_an_int(bits):
    with pytest.raises(TypeError, match="bits must be an int"):
        estimators.observer("minmax", bits)


def test_unknown_method():
    with pytest.raises(ValueError, match="method must be one of minmax, .*entropy; got 'kl'"):
        estimators.observer("kl")


def test_sixteen_bit_ranges_work(gaussian):
    obs = estimators.observer("minmax", 16, signed=True, symmetric=True)
    obs(gaussian)
    scale, zero_point = obs.calculate_qparams()
    assert zero_point.item() == 0
    assert scale.item() == pytest.approx(float(gaussian.abs().max()) / 32767.5, rel=1e-4)


def _tensorrt_entropy_bin(hist: np.ndarray, levels: int, start_bin: int = 128) -> int:
    """NVIDIA's entropy calibration as its pytorch-quantization tool writes it (loops, scipy's
    KL): for each candidate i from `start_bin`, the reference P is the first i bins with the
    clipped tail added to the last one, the candidate Q the same bins merged into `levels`
    levels and spread back evenly over their non-empty bins; the last of equal minima wins."""
    bins = np.array(hist, dtype=np.float64)
    bins[0] = bins[1]
    divergences = []
    for i in range(start_bin, len(bins) + 1):
        level_of = np.digitize(np.arange(i), np.linspace(0, i, levels + 1)) - 1
        level_of[bins[:i] == 0] = -1
        q = np.zeros(i)
        for level in set(level_of.tolist()) - {-1}:
            members = level_of == level
            q[members] = bins[:i][members].sum() / members.sum()
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        divergences.append(scipy_entropy(p, q))
    divergences = np.array(divergences)
    return start_bin + len(divergences) - 1 - int(np.argmin(divergences[::-1]))


def _spiky_histogram(seed: int) -> np.ndarray:
    """A ReLU-like histogram of 2,048 bins: zeros, a decaying bulk, repeated-value spikes."""
    rng = np.random.default_rng(seed)
    hist = rng.poisson(5_000 * np.exp(-np.arange(2048) / rng.uniform(80, 600))).astype(float)
    hist[0] += 400_000
    hist[rng.integers(1, 600, 12)] += rng.uniform(1e3, 5e4, 12)
    return hist


@pytest.mark.parametrize("levels", [16, 128, 256])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_entropy_search_is_tensorrts_procedure(levels, seed):
    """The same pick as NVIDIA's procedure (start bin 128 of 2,048, whatever the levels)."""
    hist = _spiky_histogram(seed)
    assert estimators._kl_threshold_bin(hist, levels) == _tensorrt_entropy_bin(hist, levels)


def test_entropy_search_starts_at_tensorrts_bin_128_even_for_256_levels():
    """Below 256 bins a 256-level candidate is lossless; the search must still look there
    (it used to start at `levels` bins, not TensorRT's 128)."""
    hist = np.ones(2048)  # a thin tail of single values ...
    hist[:240] = np.where(np.arange(240) % 2, 100.0, 1000.0)  # ... after a comb that merging blurs
    kept, _ = estimators.kl_curve(hist, 256)
    assert kept[0] == 128
    assert estimators._kl_threshold_bin(hist, 256) == _tensorrt_entropy_bin(hist, 256) < 256


def test_kl_curve_refuses_a_short_histogram():
    with pytest.raises(ValueError, match="hist must be a 1-D histogram of at least 32 bins"):
        estimators.kl_curve(np.ones(8), 16)
