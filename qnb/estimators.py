"""Range estimators for activation calibration, as torch.ao observers.

`minmax`, `moving_average` and `histogram` are torch.ao's own observers; `percentile`, `mse`
and `entropy` (the KL-divergence calibrator of TensorRT) are written here on top of
`HistogramObserver`'s histogram. Each is an observer that any torch.ao qconfig accepts, with
two fixes over the stock ones: asking for qparams before any data was observed is an error
(never a silent default scale of 1.0), and the histogram searches optimise for the real
number of levels (`quant_max - quant_min + 1`; `HistogramObserver` assumes 256 for 8-bit
dtypes even when a 4-bit range is asked for).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch.ao.quantization.observer import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
)

from qnb.checks import check_bits

METHODS = ("minmax", "moving_average", "histogram", "percentile", "mse", "entropy")


class NotCalibratedError(RuntimeError):
    """Qparams were requested from an observer that never saw data."""


class _Guarded:
    """Refuse NaN/inf in observed tensors, and qparams from an observer that saw nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() and not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(
                f"{type(self).__name__} was given a tensor with {bad} NaN or inf values"
            )
        return super().forward(x)

    def calculate_qparams(self):
        if not torch.isfinite(self.min_val).all() or not torch.isfinite(self.max_val).all():
            raise NotCalibratedError(
                f"{type(self).__name__} saw no data: run calibration (feed batches through the "
                "prepared model) before computing quantization parameters"
            )
        return super().calculate_qparams()


class MinMax(_Guarded, MinMaxObserver):
    """Running min and max of everything seen (torch.ao's MinMaxObserver)."""


class MovingAverage(_Guarded, MovingAverageMinMaxObserver):
    """Exponential moving average of each batch's min and max (torch.ao's)."""


class Histogram(_Guarded, HistogramObserver):
    """torch.ao's histogram observer: the range that minimises the L2 error of the histogram."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dst_nbins = self.quant_max - self.quant_min + 1

    def bin_centers(self) -> torch.Tensor:
        """Centres of the histogram bins, in the units of the observed tensor."""
        width = (self.max_val - self.min_val) / self.bins
        return self.min_val + width * (torch.arange(self.bins, dtype=torch.float64) + 0.5)

    def levels(self) -> int:
        return int(self.quant_max - self.quant_min + 1)


class Percentile(Histogram):
    """Clip each tail at a percentile of the observed values (e.g. 99.99)."""

    def __init__(self, *args, percentile: float = 99.99, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.percentile = check_percentile(percentile)

    def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
        cdf = torch.cumsum(self.histogram.double(), 0) / self.histogram.sum()
        width = (self.max_val - self.min_val) / self.bins
        tail = 1 - self.percentile / 100
        lo = int(torch.searchsorted(cdf, torch.tensor([tail], dtype=cdf.dtype)))
        hi = int(torch.searchsorted(cdf, torch.tensor([1 - tail], dtype=cdf.dtype)))
        lo_val = self.min_val if self.min_val >= 0 else self.min_val + width * lo
        return lo_val, self.min_val + width * min(hi + 1, self.bins)


class MSE(Histogram):
    """The clipping range with the least expected squared error (rounding + clamping).

    Inside the range each value costs step**2 / 12 (uniform rounding noise); outside it costs
    its squared distance to the range end. Candidates shrink [min, max] towards 0.
    """

    def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
        centers, counts = self.bin_centers(), self.histogram.double()
        shrink = torch.linspace(0.01, 1.0, 400, dtype=torch.float64)[:, None]
        lo, hi = self.min_val.double() * shrink, self.max_val.double() * shrink
        step = (hi - lo) / (self.levels() - 1)
        clipped = torch.minimum(torch.maximum(centers, lo), hi)
        inside = (centers >= lo) & (centers <= hi)
        err = torch.where(inside, step**2 / 12, (centers - clipped) ** 2) @ counts
        best = int(torch.argmin(err))
        return lo[best, 0].float(), hi[best, 0].float()


class Entropy(Histogram):
    """TensorRT's entropy calibration: the range whose quantized histogram has the least KL
    divergence from the original one. The search is NVIDIA's procedure step for step
    (TensorRT's pytorch-quantization `_compute_amax_entropy`): a threshold on |x|, candidates
    from bin 128 of 2,048 (1/16 of the histogram) up, the zero bin set to its neighbour, the
    clipped tail added to the last kept bin, the candidate quantized to the number of levels,
    the last of equal minima. It comes in two forms, chosen by the observer's integer range:

    - **signed** (`observer("entropy", bits, signed=True, symmetric=True)`): TensorRT's int8,
      symmetric and signed. The threshold `t` is searched with 2**(bits - 1) levels (128 at 8
      bits: "128 values + sign"), the scale is TensorRT's `t / (2**(bits - 1) - 1)` with zero
      point 0, so a ReLU output gets the levels 0..127 only;
    - **unsigned** (the default quint8 observer): for one-sided data (ReLU outputs) the top of
      the range is searched with all 2**bits levels (256 at 8 bits), as pytorch-quantization
      does with `unsigned=True`; two-sided data gets the signed search (half the levels on
      |x|) on the affine range [-t, t].

    Below `levels` bins a candidate loses nothing to rounding in the histogram's resolution,
    so only clipping costs: with 256 levels that is every candidate from bin 128 to 256, and
    on spiky histograms (repeated values) KL can prefer such a short range; with 128 levels
    only the first candidate is lossless. Notebook 03 shows both."""

    def signed(self) -> bool:
        """True for TensorRT's signed form (a signed integer range)."""
        return int(self.quant_min) < 0

    def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.min_val >= 0 and not self.signed():  # unsigned, one-sided: all the levels
            keep = _kl_threshold_bin(self.histogram.double().numpy(), self.levels())
            return self.min_val, self.min_val + (self.max_val - self.min_val) * keep / self.bins
        # a threshold on |x| quantized to half the levels (TensorRT's form)
        top = float(max(-self.min_val, self.max_val))
        hist = _fold(self.bin_centers(), self.histogram.double(), top, self.bins)
        threshold = top * _kl_threshold_bin(hist, self.levels() // 2) / self.bins
        return torch.tensor(-threshold), torch.tensor(threshold)

    def _calculate_qparams(self, min_val: torch.Tensor, max_val: torch.Tensor):
        if self.signed() and self.qscheme == torch.per_tensor_symmetric:
            # TensorRT's scale: amax / 127 at 8 bits (torch's symmetric rule divides by 127.5)
            amax = torch.maximum(-torch.as_tensor(min_val), torch.as_tensor(max_val)).float()
            scale = (amax / int(self.quant_max)).clamp_min(float(self.eps)).reshape(1)
            return scale, torch.zeros(1, dtype=torch.int32)
        return super()._calculate_qparams(min_val, max_val)


def _fold(centers: torch.Tensor, counts: torch.Tensor, top: float, bins: int) -> np.ndarray:
    """Histogram of |x| over [0, top] in `bins` bins, from a histogram of x."""
    index = (centers.abs() / top * bins).long().clamp(0, bins - 1)
    return torch.zeros(bins, dtype=torch.float64).index_add_(0, index, counts).numpy()


def kl_curve(hist: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """`(kept, kl)`: for each candidate number of leading bins kept (from 1/16 of the bins,
    TensorRT's start bin 128 of 2,048), the KL divergence that `levels` levels lose.

    For a candidate of `i` bins, P is the first `i` bins with the clipped tail added to the
    last one; Q merges them into `levels` runs of bins (bin k goes to level k * levels // i)
    and spreads each run's mass evenly over its non-empty bins. All candidates at once, from
    cumulative sums: sum(P log(P / Q)) = sum(h log h) - sum over levels of m log(m / w) (m the
    mass, w the non-empty bins of a level), corrected for the last bin's tail.

    Taught in notebook 03 (activation_calibration)."""
    hist = np.asarray(hist, dtype=np.float64).copy()
    if hist.ndim != 1 or len(hist) < 32:
        raise ValueError(f"hist must be a 1-D histogram of at least 32 bins, got {hist.shape}")
    levels = int(levels)
    hist[0] = hist[1]  # as NVIDIA's calibrator does: the spike of exact zeros (ReLU) would dominate
    nonzero = hist > 0
    cum = np.concatenate([[0.0], np.cumsum(hist)])  # cum[i] = mass in bins 0..i-1
    count = np.concatenate([[0], np.cumsum(nonzero)])  # non-empty bins among 0..i-1
    safe = np.where(nonzero, hist, 1.0)
    hlogh = np.concatenate([[0.0], np.cumsum(np.where(nonzero, hist * np.log(safe), 0.0))])
    total = cum[-1]
    kept = np.arange(len(hist) // 16, len(hist) + 1)
    # level j of candidate i holds bins ceil(j * i / levels) .. ceil((j + 1) * i / levels) - 1
    edges = (np.arange(levels + 1)[None, :] * kept[:, None] + levels - 1) // levels
    mass = cum[edges[:, 1:]] - cum[edges[:, :-1]]
    width = count[edges[:, 1:]] - count[edges[:, :-1]]
    q = np.where(width > 0, mass / np.maximum(width, 1), 0.0)  # Q of each non-empty bin
    used = mass > 0
    plogq = np.where(used, mass * np.log(np.where(used, q, 1.0)), 0.0).sum(axis=1)
    last = kept - 1
    h_last, tail = hist[last], total - cum[kept]
    q_last = q[np.arange(len(kept)), last * levels // kept]
    with np.errstate(divide="ignore", invalid="ignore"):
        p_last = h_last + tail  # the last kept bin of P carries the clipped tail
        fix = np.where(h_last > 0, p_last * np.log(p_last / q_last)
                       - h_last * np.log(np.where(h_last > 0, h_last, 1.0) / q_last), 0.0)
        # P has mass where Q has none (an empty last bin that carries the tail): infinite
        fix = np.where((h_last == 0) & (tail > 0), math.inf, fix)
        kl = (hlogh[kept] - plogq + fix) / total + np.log(cum[kept] / total)
    return kept, kl


def _kl_threshold_bin(hist: np.ndarray, levels: int) -> int:
    """Number of leading bins to keep so that `levels` levels lose the least information
    (the last of equal minima, as NVIDIA's calibrator picks)."""
    kept, kl = kl_curve(hist, levels)
    return int(kept[len(kl) - 1 - np.argmin(kl[::-1])])


def check_percentile(percentile: float) -> float:
    """Validate a percentile in (0, 100]."""
    if isinstance(percentile, bool) or not isinstance(percentile, int | float):
        raise TypeError(f"percentile must be a number in (0, 100], got {percentile!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    return float(percentile)


_CLASSES = {
    "minmax": MinMax,
    "moving_average": MovingAverage,
    "histogram": Histogram,
    "percentile": Percentile,
    "mse": MSE,
    "entropy": Entropy,
}


def observer_factory(method: str = "minmax", bits: int = 8, **kwargs):
    """A factory for `observer(method, bits, **kwargs)`, as torch.ao's `QConfig` wants."""
    return functools.partial(observer, method, bits, **kwargs)


def observer(
    method: str = "minmax",
    bits: int = 8,
    *,
    signed: bool = False,
    symmetric: bool = False,
    **kwargs,
) -> torch.nn.Module:
    """A fresh observer of `method` for a `bits`-wide activation range (extra kwargs passed on)."""
    if method not in _CLASSES:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    bits = check_bits("bits", bits)
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    dtype = (torch.qint8 if signed else torch.quint8) if bits <= 8 else torch.qint32
    scheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    return _CLASSES[method](dtype=dtype, qscheme=scheme, quant_min=qmin, quant_max=qmax, **kwargs)


def estimate_range(x: torch.Tensor, method: str = "minmax", bits: int = 8, **kwargs) -> tuple:
    """The (low, high) range `method` picks for the values in `x` (batched along dim 0).

    Taught in notebook 03 (activation_calibration)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    obs = observer(method, bits, **kwargs)
    if x.numel() == 0:
        raise ValueError("x is empty: a range estimator needs at least one value")
    if not torch.isfinite(x).all():
        raise ValueError(f"x contains {int((~torch.isfinite(x)).sum())} NaN or inf values")
    if x.min() == x.max():
        raise ValueError(f"x is constant (every value is {float(x.min())!r}): nothing to estimate")
    for batch in x if x.dim() > 1 else [x]:
        obs(batch)
    if isinstance(obs, Histogram):
        low, high = obs._non_linear_param_search()
    else:
        low, high = obs.min_val, obs.max_val
    return float(low), float(high)
