"""Every exercise check, from one table: for each exercise of `qnb.exercises.REGISTRY` the right
answer passes, at least two typical mistakes each get their diagnosis (the message is asserted),
the unfinished stub is "not answered yet", and every core exercise passes on its held-out seeds,
where an answer tuned to the visible case fails.

The registry itself is held to the notebooks in test_exercises_registry.py.
"""

from __future__ import annotations

import copy
import functools
import itertools
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import DeQuantStub, QuantStub

from qnb import cle, data, dynamic, env, gptq, integer, models, ptq, rtn, runtimes, simulate, sweep
from qnb.bench import BenchResult, Row
from qnb.exercises import BY_ID, REGISTRY, ExerciseError
from qnb.exercises import nb09_mixed_precision as nb09


class TinyCNN(nn.Module):
    """conv-bn-relu, pool, flatten, two linears (the last without bias): sizes stay tiny."""

    def __init__(self) -> None:
        super().__init__()
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(4 * 4 * 4, 8)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(8, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu1(self.bn1(self.conv1(self.quant(x)))))
        return self.dequant(self.fc2(self.relu2(self.fc1(self.flatten(x)))))

    def fuse_groups(self) -> list[list[str]]:
        return [["conv1", "bn1", "relu1"], ["fc1", "relu2"]]


class Residual(nn.Module):
    """The right answer to 05.2 (the add under another name than the notebook's `skip`)."""

    def __init__(self) -> None:
        super().__init__()
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.add_op = FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        return self.dequant(self.add_op.add(x, self.conv(x)))


class PlusResidual(Residual):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        return self.dequant(x + self.conv(x))


class UncalledStubResidual(Residual):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.add_op.add(x, self.conv(x)))


class NoStubResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.add_op = nn.Conv2d(1, 1, 3, padding=1), FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add_op.add(x, self.conv(x))


class NoDequantResidual(Residual):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        return self.add_op.add(x, self.conv(x))


class NoSkip(Residual):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.conv(self.quant(x)))


def _ste(forward, backward=None) -> type:
    methods = {"forward": staticmethod(lambda ctx, x: forward(x))}
    if backward is not None:
        methods["backward"] = staticmethod(lambda ctx, grad: backward(grad))
    return type("MySTE", (torch.autograd.Function,), methods)


def _stub(exercise: str):
    def stub(*args):
        raise NotImplementedError(f"Exercise {exercise}: write the body")

    return stub


def _my_quantize(x, scale, zero_point):
    inv_scale = np.float32(1) / np.float32(scale)  # torch multiplies by the float32 reciprocal
    return np.clip(np.rint(x.astype(np.float32) * inv_scale) + zero_point, 0, 255).astype(np.int64)


# 01.3: a run's measured uniform-data SQNR curve (dB) at these widths
BITS_01 = [2, 4, 6, 7, 8, 10, 12]
SQNR_01 = [9.52, 23.49, 35.98, 42.08, 48.11, 60.17, 72.24]


def _symmetric_sqnr(w: torch.Tensor, bits: int, per_channel: bool) -> float:
    """Weight SQNR (dB) at `bits`, symmetric, scale max|w| / ((qmax - qmin) / 2)."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    flat = w.reshape(len(w), -1)
    top = flat.abs().amax(1, keepdim=True) if per_channel else flat.abs().max()
    scale = top / ((qmax - qmin) / 2)
    w_hat = torch.clamp(torch.round(flat / scale), qmin, qmax) * scale
    return float(10 * torch.log10((flat**2).sum() / ((flat - w_hat) ** 2).sum()))


def _clip_mse(x: np.ndarray, high: float, bits: int) -> float:
    scale = high / (2**bits - 1)
    return float(np.mean((x - np.clip(np.round(x / scale), 0, 2**bits - 1) * scale) ** 2))


def _dyn_qparams(x: torch.Tensor, qmax: int) -> tuple[float, int]:
    """Exercise 06.2 as a student computes it: range widened to include 0, 0..qmax."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / qmax
    return scale, int(min(max(round(-lo / scale), 0), qmax))


def _reducing_engine() -> str:
    """An engine of this machine whose dynamic kernels use reduce_range (x86, fbgemm, onednn)."""
    found = [e for e in env.quantized_engines() if dynamic.reduces_range(e)]
    if not found:
        pytest.skip("no engine with reduce_range here (QNB_ENGINES=qnnpack, or an ARM build)")
    return found[0]


class Setup:
    """The checks' inputs, built once per module and only when a row needs them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        gen = torch.Generator().manual_seed(0)
        self.weight = torch.randn(6, 3, 3, 3, generator=gen)
        self.weight[0, 0, 0, 0] = -5.0  # a channel whose largest |w| is negative
        rng = np.random.default_rng(0)
        self.acts = torch.from_numpy(rng.exponential(1.0, 20_000))  # no ties, both tails apart
        self.relu_acts = torch.relu(torch.from_numpy(rng.standard_normal(20_000)))
        self.ste_x = torch.tensor([-2.0, -1.1, -1.0, -0.6, 0.0, 0.4, 0.75, 0.8, 3.0])
        self.points = {  # notebook 09's exercise table: ties on both axes
            "uniform 2": (102, 0.80),
            "mixed 2.5": (127, 0.95),
            "uniform 3": (152, 0.86),
            "mixed 3": (152, 0.95),
            "mixed 4": (157, 0.977),
            "uniform 4": (202, 0.976),
            "mixed 6": (300, 0.979),
            "uniform 8": (402, 0.979),
        }
        self.grid = {"bits": [2, 4, 8], "seed": [0, 1]}
        # 06.2: five time steps of a batch of 8, each step with its own range
        spread = torch.tensor([0.5, 1.0, 1.5, 2.5, 4.0]).reshape(5, 1, 1)
        self.steps = torch.randn(5, 8, 16, generator=gen) * spread + 0.3
        self.positive = torch.rand(8, 16, generator=gen) + 0.5  # min > 0: widened to include 0

    @functools.cached_property
    def tiny(self) -> nn.Module:
        torch.manual_seed(0)
        model = TinyCNN().eval()
        with torch.no_grad():  # conv1: one loud channel, three quiet ones
            model.conv1.weight.mul_(torch.tensor([1.0, 0.02, 0.02, 0.02]).reshape(-1, 1, 1, 1))
        return model

    @functools.cached_property
    def int8(self) -> nn.Module:
        gen = torch.Generator().manual_seed(1)
        calib = [torch.randn(4, 1, 8, 8, generator=gen) for _ in range(2)]
        return ptq.quantize_static(self.tiny, calib, engine="x86")[0]

    @functools.cached_property
    def lstm(self) -> nn.Module:
        torch.manual_seed(0)
        return models.LSTMClassifier(hidden=8)

    @functools.cached_property
    def results_csv(self) -> str:
        table = pd.DataFrame(
            {
                "run": ["a", "b", "c", "d", "e"],
                "status": ["ok", "ok", "failed", "ok", "ok"],
                "compare_bits": [4, 4, 4, 8, 8],
                "seed": [0, 1, 2, 0, 1],
                "sqnr_relu_asymmetric_db": [20.0, 22.0, np.nan, 45.0, 46.0],
                "sqnr_relu_symmetric_db": [15.0, 16.0, np.nan, 44.0, 44.5],
            }
        )
        path = self.folder / "results.csv"
        table.to_csv(path, index=False)
        return str(path)

    @functools.cached_property
    def notebook(self) -> str:
        cell = nbformat.v4.new_code_cell("bits = 8\nseed = 0", metadata={"tags": ["parameters"]})
        path = self.folder / "nb.ipynb"
        nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
        return str(path)

    @functools.cached_property
    def qdq(self) -> Path:
        """Notebook 11's QDQ plain CNN, written by ONNX Runtime's quantizer."""
        calib = [b[0] for b in data.calibration_loader(64, 32)]
        model = simulate.fused_copy(models.build("plain_cnn", seed=0))
        fp32 = runtimes.export_onnx(model, calib[0], self.folder / "cnn.onnx")
        return runtimes.quantize_qdq(fp32, self.folder / "cnn_int8.onnx", calib)

    def qdq_input(self) -> tuple[float, int]:
        scale, zero_point = runtimes.quant_params(self.qdq)["x"]
        return float(scale), int(zero_point)

    def qdq_other_scale(self) -> tuple[str, float]:
        """Another tensor's scale in the QDQ model (a per-tensor one)."""
        params = runtimes.quant_params(self.qdq)
        other = next(n for n in params if n != "x" and params[n][0].shape == ())
        return other, float(params[other][0])

    @functools.cached_property
    def adarounded(self) -> tuple:
        """07.2: a layer's weight, its rounding with about 20% of the weights flipped to the
        other neighbour, per-channel 3-bit scales, qmin, qmax, and the true flip count."""
        gen = torch.Generator().manual_seed(0)
        weight = torch.randn(4, 3, 3, 3, generator=gen)
        scale, _, qmin, qmax = simulate.weight_qparams(weight, 3)
        s = scale.reshape(-1, 1, 1, 1)
        codes = torch.clamp(torch.round(weight / s), qmin, qmax)
        flip = torch.rand(weight.shape, generator=gen) < 0.2
        low = torch.floor(weight / s)
        other = torch.where(codes == low, low + 1, low).clamp(qmin, qmax)
        rounded = torch.where(flip, other, codes) * s
        flips = int((torch.round(rounded / s) != codes).sum())
        return weight, rounded, scale, qmin, qmax, flips

    def flip_args(self, flips) -> tuple:
        weight, rounded, scale, qmin, qmax, _ = self.adarounded
        return flips, weight, rounded, scale, qmin, qmax

    # the right answers, as a student computes them

    def scales(self, bits: int) -> np.ndarray:
        flat = np.abs(self.weight.numpy()).reshape(len(self.weight), -1)
        return flat.max(axis=1) / ((2 ** (bits - 1) - 1 - (-(2 ** (bits - 1)))) / 2)

    def worst_layer(self, bits: int) -> str:
        fused = simulate.fused_copy(self.tiny)
        gain = {
            n: _symmetric_sqnr(m.weight.detach(), bits, True)
            - _symmetric_sqnr(m.weight.detach(), bits, False)
            for n, m in simulate.weight_layers(fused)
        }
        return max(gain, key=gain.get)

    def best_clip(self, bits: int) -> float:
        x = self.acts.numpy()
        grid = np.linspace(x.max() / 100, x.max(), 300)
        return float(grid[np.argmin([_clip_mse(x, c, bits) for c in grid])])

    def gaps(self) -> dict:
        ok = pd.read_csv(self.results_csv).query("status == 'ok'")
        gap = ok.sqnr_relu_asymmetric_db - ok.sqnr_relu_symmetric_db
        return gap.groupby(ok.compare_bits).mean().to_dict()

    def runs(self, start: int = 0, step: int = 1) -> list[str]:
        names = [f"nb__bits={b}__seed={s}" for b in self.grid["bits"] for s in self.grid["seed"]]
        return names[start::step]

    def lstm_share(self) -> float:
        lstm = sum(p.numel() for p in self.lstm.lstm.parameters())
        return lstm / sum(p.numel() for p in self.lstm.parameters())

    def ste_grad(self, scale=0.25, zero_point=0, qmin=-4, qmax=3) -> torch.Tensor:
        level = torch.round(self.ste_x / scale) + zero_point
        return ((level >= qmin) & (level <= qmax)).float()

    def size(self, bits: dict, *, scales=True, bias=True, per_tensor=False) -> float:
        """Fused TinyCNN: conv1 (36 weights, 4 out, bias from BN), fc1 (512, 8, bias), fc2
        (40, 5, no bias)."""
        layers = {"conv1": (36, 4, 4), "fc1": (512, 8, 8), "fc2": (40, 5, 0)}
        total = 0.0
        for name, (numel, out, bias_numel) in layers.items():
            total += numel * bits[name] / 8
            total += 4 * (1 if per_tensor else out) if scales else 0
            total += 4 * bias_numel if bias else 0
        return total

    def front(self) -> list[str]:
        return [
            n
            for n, (size, acc) in self.points.items()
            if not any(
                s <= size and a >= acc and (s < size or a > acc) for s, a in self.points.values()
            )
        ]


BITS_09 = {"conv1": 4, "fc1": 2, "fc2": 8}
# TinyCNN's leaves that stay float after convert: fusion leaves Identity where bn1, relu1 and
# relu2 were; pooling and flatten work on quantized tensors as they are
FLOAT_LEAVES = ["bn1", "relu1", "pool", "flatten", "relu2"]

# (check, arguments from a Setup, PASSED or the diagnosis), by id "exercise-what"


def _nbgrader_stub(*args):
    raise NotImplementedError()  # what nbgrader's generate_assignment leaves for a solution


# --- right answers of the function-writing exercises, as a student writes them --------------


def fake_quantize_per_channel(weight, bits):
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    top = np.abs(weight).reshape(len(weight), -1).max(axis=1)
    scale = (top / ((qmax - qmin) / 2)).reshape(-1, *[1] * (weight.ndim - 1))
    return np.clip(np.rint(weight / scale), qmin, qmax) * scale


def _scale_02(w, bits):
    return np.abs(w).reshape(len(w), -1).max(axis=1).reshape(-1, 1, 1, 1) / ((2**bits - 1) / 2)


def moving_average_minmax(batches, averaging_constant):
    lo, hi = float(batches[0].min()), float(batches[0].max())
    for b in batches[1:]:
        lo += averaging_constant * (float(b.min()) - lo)
        hi += averaging_constant * (float(b.max()) - hi)
    return lo, hi


def requantize(acc, multiplier, zero_point):
    return integer.requantize(acc, np.float32(multiplier), zero_point)


def cross_term(x_q, w_q, z_x):
    x, w = x_q.astype(np.int32), w_q.astype(np.int32)
    return x @ w.T - z_x * w.sum(axis=1)


def bn_fold(w, b, gamma, beta, mean, var, eps):
    scale = gamma / np.sqrt(var + eps)
    return w * scale.reshape(-1, 1, 1, 1), (b - mean) * scale + beta


def static_ptq(model, calib, engine, qconfig_engine=None, batches=None):
    from torch.ao import quantization as tq

    model = copy.deepcopy(model).eval()
    model.qconfig = tq.get_default_qconfig(qconfig_engine or engine)
    prepared = tq.prepare(model)
    with torch.inference_mode():
        for x in calib if batches is None else calib[:batches]:
            prepared(x)
    return tq.convert(prepared)


def _prepared_only(model, calib, engine):
    from torch.ao import quantization as tq

    model = copy.deepcopy(model).eval()
    model.qconfig = tq.get_default_qconfig(engine)
    return tq.prepare(model)


def group_quantize(weight, group_size, bits, levels=None, axis_rows=True):
    qmax = 2**bits - 1
    groups = weight.reshape(-1, group_size) if axis_rows else weight.T.reshape(-1, group_size)
    lo = np.minimum(groups.min(axis=1, keepdims=True), 0)
    hi = np.maximum(groups.max(axis=1, keepdims=True), 0)
    scale = (hi - lo) / (levels or qmax)
    zero = np.clip(np.rint(-lo / scale), 0, qmax)
    q = np.clip(np.rint(groups / scale) + zero, 0, qmax)
    out = (q - zero) * scale
    return out.reshape(weight.shape) if axis_rows else out.reshape(weight.T.shape).T


def cle_scales(w1, w2):
    return cle.equalization_scales(cle.channel_ranges(w1, 0), cle.channel_ranges(w2, 1))


def _cle_ranges(w1, w2):
    return w1.abs().flatten(1).amax(1), w2.abs().transpose(0, 1).flatten(1).amax(1)


def _cle_minmax_scales(w1, w2):
    r1 = w1.flatten(1).amax(1) - w1.flatten(1).amin(1)
    cols = w2.transpose(0, 1).flatten(1)
    r2 = cols.amax(1) - cols.amin(1)
    return torch.sqrt(r1 * r2) / r2


def _ste_stub() -> type:
    """The 08.2 answer cell as nbgrader releases it: the bodies raise."""

    def forward(x):
        raise NotImplementedError()

    return _ste(forward, forward)


def allocate(options, budget):
    names = list(options)
    best_cost, best = float("inf"), None
    for combo in itertools.product(*(options[n] for n in names)):
        size = sum(options[n][b][1] for n, b in zip(names, combo, strict=True))
        cost = sum(options[n][b][0] for n, b in zip(names, combo, strict=True))
        if size <= budget and cost < best_cost:
            best_cost, best = cost, dict(zip(names, combo, strict=True))
    return best


def amdahl(p, k):
    return 1 / ((1 - p) + p / k)


def paired_speedup(fp32_ms, int8_ms):
    ratios = np.asarray(fp32_ms) / np.asarray(int8_ms)
    p25, median, p75 = np.quantile(ratios, [0.25, 0.5, 0.75])
    return median, p25, p75


def quantize_linear(x, scale, zero_point):
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, 0, 255).astype(np.uint8)


F32 = np.float32


def gptq_step(w, u, scale, qmin, qmax):
    q = torch.clamp(torch.round(w[:, 0] / scale), qmin, qmax) * scale
    out = w.clone()
    out[:, 0] = q
    out[:, 1:] -= ((w[:, 0] - q) / u[0, 0])[:, None] * u[0, 1:]
    return out


def _rtn_step(w, u, scale, qmin, qmax):
    out = w.clone()
    out[:, 0] = torch.clamp(torch.round(w[:, 0] / scale), qmin, qmax) * scale
    return out


def _undivided_step(w, u, s, lo, hi):
    q0 = _rtn_step(w, u, s, lo, hi)[:, :1]
    return torch.cat([q0, w[:, 1:] - (w[:, :1] - q0) * u[0, 1:]], dim=1)


_NUDGE_COLUMN_2 = torch.nn.functional.pad(torch.full((4, 1), 0.1, dtype=torch.float64), (2, 3))


def awq_scales(x, alpha):
    s = x.abs().reshape(-1, x.shape[-1]).mean(dim=0).pow(alpha).clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


def _awq_unclamped(x, alpha):
    s = x.abs().reshape(-1, x.shape[-1]).mean(dim=0).pow(alpha)
    return s / (s.max() * s.min()).sqrt()


def _awq_max(x, alpha):
    s = x.abs().reshape(-1, x.shape[-1]).amax(dim=0).pow(alpha)
    return s / (s.max() * s.min()).sqrt()


def q4_0_block(block, *, rounding="gguf", signed=True, pairs=False, clamp=True):
    """A learner's Q4_0 block encoder, right by default; the flags make the usual mistakes."""
    block = np.asarray(block, np.float32)
    m = block[np.abs(block).argmax()]
    d = np.float32(m / np.float32(-8)) if signed else np.float32(np.abs(m) / np.float32(8))
    inv = np.float32(0) if d == 0 else np.float32(1) / d
    c = np.trunc(block * inv + np.float32(8.5)) if rounding == "gguf" else np.rint(block * inv) + 8
    c = np.clip(np.minimum(c, 15) if clamp else c, 0, 255).astype(np.uint8) & 0x0F
    packed = c[0::2] | (c[1::2] << 4) if pairs else c[:16] | (c[16:] << 4)
    return np.concatenate([np.float16(d).reshape(1).view(np.uint8), packed.astype(np.uint8)])


def awq_search(layer, x, quantize, *, judge="output", divide=True):
    """A learner's AWQ search for alpha, right by default; the flags make the usual mistakes."""
    from qnb import awq

    mean_abs, w0 = awq.act_scale(x), layer.weight.detach().clone()
    best = (float("inf"), None)
    with torch.no_grad():
        for i in range(20):
            s = awq.awq_scales(mean_abs, i / 20)
            w = quantize(w0 * s) / (s if divide else 1)
            if judge == "output":
                loss = float((layer(x) - nn.functional.linear(x, w, layer.bias)).pow(2).mean())
            else:
                loss = float((w0 - w).pow(2).mean())
            if loss < best[0]:
                best = (loss, i / 20)
    return best[1]


def _awq_search_in_place(layer, x, quantize):
    with torch.no_grad():
        layer.weight.mul_(1.01)
    return awq_search(layer, x, quantize)


def e4m3(x, *, half_up=False, saturate=True, subnormals=True):
    """A learner's E4M3 encoder, right by default; the flags make the usual mistakes."""
    x = np.asarray(x, np.float64)
    sign = np.signbit(x).astype(np.int64) << 7
    a = np.abs(x)
    if saturate:
        a = np.minimum(a, 448.0)
    e = np.maximum(np.floor(np.log2(np.where(a > 0, a, 1.0))), -6)
    step = np.exp2(e - 3)
    q = np.floor(a / step + 0.5) if half_up else np.rint(a / step)
    v = q * step
    if not subnormals:
        v = np.where(v < 2.0**-6, 0.0, v)
    e2 = np.maximum(np.floor(np.log2(np.where(v > 0, v, 1.0))), -6)
    normal = v >= 2.0**-6
    with np.errstate(invalid="ignore"):  # the branch np.where discards may overflow
        code = np.where(
            normal,
            (e2 + 7).astype(np.int64) << 3 | (v / np.exp2(e2 - 3) - 8).astype(np.int64),
            (v / 2.0**-9).astype(np.int64),
        )
    return (sign | np.minimum(code, 0x7F)).astype(np.uint8)  # past 448 without saturation: NaN


def mx_scale(blocks):
    return np.exp2(np.floor(np.log2(np.abs(blocks).max(axis=1))) - 2)


def grid_runs(grid):
    names = list(grid)
    return [dict(zip(names, v, strict=True)) for v in itertools.product(*grid.values())]


def _engine() -> str:
    return env.default_engine()


# notebook 10's bench result: 8 images per call
RESULT_10 = BenchResult(
    [Row("fp32", [4.0, 5.0, 6.0], 1), Row("int8", [1.0, 1.25, 1.5], 1)],
    "fp32",
    {"batch": 8},
)
THROUGHPUT_10 = {"fp32": 8 * 1000 / 5.0, "int8": 8 * 1000 / 1.25}


PASSED = None

# --- the table --------------------------------------------------------------------------------
# One row per case, by id "NN.K-what": a function of the shared `Setup` giving the check's
# arguments (the answer first), and either PASSED (the right answer, computed as a student
# would) or the words of the diagnosis (a regular expression) that the answer must get. A row
# whose "what" is "stub" is the unfinished answer: None, or nbgrader's stub that raises.
CASES = {
    # 01.1: scale and zero point of [-2.5, 7.5] at 4 bits
    "01.1-right": (lambda s: (10 / 15, 4, -2.5, 7.5, 4), PASSED),
    "01.1-right-relu-range-zero-point-0": (
        lambda s: (6 / 255, 0, 0.0, 6.0, 8),
        PASSED,
    ),
    "01.1-scale-inverted": (
        lambda s: (15 / 10, 4, -2.5, 7.5, 4),
        "scale is upside down",
    ),
    "01.1-divided-by-2**bits": (
        lambda s: (10 / 16, 4, -2.5, 7.5, 4),
        "2\\*\\*bits - 1 = 15 steps",
    ),
    "01.1-zero-point-sign": (
        lambda s: (10 / 15, -4, -2.5, 7.5, 4),
        "zero point has the wrong sign",
    ),
    "01.1-zero-point-0": (
        lambda s: (10 / 15, 0, -2.5, 7.5, 4),
        "zero_point 0 puts the real 0 at",
    ),
    "01.1-zero-point-not-rounded": (
        lambda s: (10 / 15, 3.75, -2.5, 7.5, 4),
        "must be an integer level",
    ),
    "01.1-stub": (lambda s: (None, None, -2.5, 7.5, 4), "not answered yet"),
    # 01.2: a quantize function, bit-exact with torch's quint8 kernel
    "01.2-right": (lambda s: (_my_quantize,), PASSED),
    "01.2-multiplied-by-scale": (
        lambda s: (lambda x, sc, z: np.clip(np.rint(x * sc) + z, 0, 255).astype(int),),
        "multiply by the scale instead of dividing",
    ),
    "01.2-no-clamp": (
        lambda s: (lambda x, sc, z: (np.rint(x / sc) + z).astype(int),),
        "clamp to \\[qmin, qmax\\] after rounding",
    ),
    "01.2-round-half-up": (
        lambda s: (lambda x, sc, z: np.clip(np.floor(x / sc + 0.5) + z, 0, 255).astype(int),),
        "torch rounds half to even",
    ),
    "01.2-truncated": (
        lambda s: (lambda x, sc, z: np.clip((x / sc).astype(int) + z, 0, 255),),
        "truncate toward zero",
    ),
    "01.2-zero-point-subtracted": (
        lambda s: (lambda x, sc, z: np.clip(np.rint(x / sc) - z, 0, 255).astype(int),),
        "the zero point is added, not subtracted",
    ),
    "01.2-float-dtype": (
        lambda s: (lambda x, sc, z: _my_quantize(x, sc, z).astype(float),),
        "right values but dtype float",
    ),
    "01.2-divided-float32": (
        lambda s: (lambda x, sc, z: np.clip(np.rint(x / np.float32(sc)) + z, 0, 255).astype(int),),
        "torch multiplies by the float32 reciprocal",
    ),
    "01.2-divided-float64": (
        lambda s: (
            lambda x, sc, z: np.clip(np.rint(x.astype(float) / sc) + z, 0, 255).astype(int),
        ),
        "at scale 0.1 you divide \\(float64",
    ),
    # 01.3: dB per bit from the measured curve, not the formula
    "01.3-right-last-step": (
        lambda s: ((72.24 - 60.17) / 2, BITS_01, SQNR_01),
        PASSED,
    ),
    "01.3-right-fit": (
        lambda s: (float(np.polyfit(BITS_01[2:], SQNR_01[2:], 1)[0]), BITS_01, SQNR_01),
        PASSED,
    ),
    "01.3-formula-typed-in": (lambda s: (6.02, BITS_01, SQNR_01), "formula"),
    "01.3-six-typed-in": (lambda s: (6, BITS_01, SQNR_01), "formula"),
    "01.3-power-not-amplitude": (
        lambda s: (3.01, BITS_01, SQNR_01),
        "10\\*log10\\(2\\)",
    ),
    "01.3-not-divided-by-bits": (
        lambda s: (72.24 - 60.17, BITS_01, SQNR_01),
        "divide by how many bits apart",
    ),
    "01.3-small-b": (
        lambda s: ((23.49 - 9.52) / 2, BITS_01, SQNR_01),
        "use widths of 6 bits or more",
    ),
    "01.3-stub": (lambda s: (None, BITS_01, SQNR_01), "not answered yet"),
    "01.2-stub": (lambda s: (_stub("01.2"),), "not answered yet: your code is still the stub"),
    "01.2-stub-nbgrader": (
        lambda s: (_nbgrader_stub,),
        "not answered yet: your code is still the stub",
    ),
    # 02.1: per-output-channel symmetric scales at 4 bits
    "02.1-right": (lambda s: (s.scales(4), s.weight, 4), PASSED),
    "02.1-divided-by-qmax": (
        lambda s: (s.scales(4) * 7.5 / 7, s.weight, 4),
        "you divided by qmax = 7",
    ),
    "02.1-divided-by-2**(bits-1)": (
        lambda s: (s.scales(4) * 7.5 / 8, s.weight, 4),
        "you divided by 2\\*\\*\\(bits-1\\) = 8",
    ),
    "02.1-per-tensor": (
        lambda s: (s.scales(4).max(), s.weight, 4),
        "one scale for the whole tensor is per-tensor",
    ),
    "02.1-max-not-abs": (
        lambda s: (s.weight.reshape(6, -1).amax(1).numpy() / 7.5, s.weight, 4),
        "the largest \\|w\\|, not the largest w",
    ),
    "02.1-range-over-levels": (
        lambda s: (s.scales(4) * 7.5 / 15, s.weight, 4),
        "about half the right size",
    ),
    "02.1-wrong-axis": (
        lambda s: (s.weight.abs().amax((0, 2, 3)).numpy() / 7.5, s.weight, 4),
        "one scale per output channel, shape \\(6,\\)",
    ),
    "02.1-stub": (lambda s: (None, s.weight, 4), "not answered yet"),
    # 02.2: the layer losing most SQNR per-channel -> per-tensor, at 4 bits
    "02.2-right": (lambda s: (s.worst_layer(4), s.tiny, 4), PASSED),
    "02.2-right-float-name": (
        lambda s: (s.worst_layer(4).removesuffix(".0"), s.tiny, 4),
        PASSED,
    ),
    "02.2-another-layer": (
        lambda s: ("fc1.0", s.tiny, 4),
        "another layer loses more",
    ),
    "02.2-not-a-weight-layer": (
        lambda s: ("bn1", s.tiny, 4),
        "not a weight layer of the fused model",
    ),
    "02.2-not-a-name": (
        lambda s: (0, s.tiny, 4),
        "answer with the layer's name",
    ),
    "02.2-stub": (lambda s: (None, s.tiny, 4), "not answered yet"),
    # 03.1: the top of a percentile range
    "03.1-right": (
        lambda s: (float(np.percentile(s.acts.numpy(), 90)), s.acts, 90),
        PASSED,
    ),
    "03.1-maximum": (
        lambda s: (float(s.acts.max()), s.acts, 90),
        "that is the maximum",
    ),
    "03.1-other-tail": (
        lambda s: (float(np.percentile(s.acts.numpy(), 10)), s.acts, 90),
        "that is the other tail",
    ),
    "03.1-fraction-as-percent": (
        lambda s: (float(np.percentile(s.acts.numpy(), 0.9)), s.acts, 90),
        "np.percentile takes percent \\(0..100\\), np.quantile takes a fraction",
    ),
    "03.1-fraction-as-percent-relu-zeros": (
        lambda s: (float(np.percentile(s.relu_acts.numpy(), 0.9999)), s.relu_acts, 99.99),
        "that is the bottom of the data.*np.percentile takes percent",
    ),
    "03.1-off": (
        lambda s: (float(np.percentile(s.acts.numpy(), 80)), s.acts, 90),
        "it should clip 10%",
    ),
    "03.1-not-a-number": (
        lambda s: ("2.3", s.acts, 90),
        "must be a finite number",
    ),
    "03.1-stub": (lambda s: (None, s.acts, 90), "not answered yet"),
    # 03.2: the clipping threshold with the least error, 4 bits
    "03.2-right": (lambda s: (s.best_clip(4), s.acts, 4), PASSED),
    "03.2-maximum": (
        lambda s: (float(s.acts.max()), s.acts, 4),
        "wastes levels on rare large values \\(lower it\\)",
    ),
    "03.2-too-low": (
        lambda s: (float(s.acts.max()) / 50, s.acts, 4),
        "clamps too much .*raise it",
    ),
    "03.2-negative": (lambda s: (-1.0, s.acts, 4), "must be a threshold in"),
    "03.2-stub": (lambda s: (None, s.acts, 4), "not answered yet"),
    # 05.1: leaf modules of an int8 model that are not int8 modules
    "05.1-right": (lambda s: (FLOAT_LEAVES, s.int8), PASSED),
    "05.1-includes-int8-conv": (
        lambda s: (["conv1", *FLOAT_LEAVES], s.int8),
        "conv1 \\(ConvReLU2d\\) compute in int8",
    ),
    "05.1-misses-fusion-identity": (
        lambda s: (["pool", "flatten"], s.int8),
        "missing bn1 \\(Identity\\), relu1 \\(Identity\\).*leaves left by fusion",
    ),
    "05.1-model-itself": (
        lambda s: (["", *FLOAT_LEAVES], s.int8),
        "'' is the model itself",
    ),
    "05.1-not-a-leaf": (
        lambda s: (["fc1", *FLOAT_LEAVES], s.int8),
        "\\['fc1'\\] are not leaf modules",
    ),
    "05.1-a-string": (lambda s: ("pool", s.int8), "answer with a list"),
    "05.1-stub": (lambda s: (None, s.int8), "not answered yet"),
    # 05.2: a residual model that eager PTQ quantizes
    "05.2-right": (lambda s: (Residual,), PASSED),
    "05.2-plus-on-quantized": (
        lambda s: (PlusResidual,),
        "a float op still meets a quantized tensor: create self.skip = FloatFunctional",
    ),
    "05.2-quantstub-never-called": (
        lambda s: (UncalledStubResidual,),
        "eager PTQ cannot quantize this model: QuantStub 'quant' is defined but was never called",
    ),
    "05.2-no-quantstub": (
        lambda s: (NoStubResidual,),
        "eager PTQ cannot quantize this model: .*no QuantStub",
    ),
    "05.2-no-dequant": (
        lambda s: (NoDequantResidual,),
        "end forward with self.dequant",
    ),
    "05.2-no-add": (
        lambda s: (NoSkip,),
        "no quantized add \\(QFunctional\\)",
    ),
    "05.2-an-instance": (lambda s: (Residual(),), "pass the class itself"),
    "05.2-stub": (lambda s: (None,), "not answered yet"),
    # 06.1: the LSTM's share of the parameters
    "06.1-right": (lambda s: (s.lstm_share(), s.lstm), PASSED),
    "06.1-percent": (
        lambda s: (100 * s.lstm_share(), s.lstm),
        "that is a percentage",
    ),
    "06.1-complement": (
        lambda s: (1 - s.lstm_share(), s.lstm),
        "everything \\*but\\* the LSTM",
    ),
    "06.1-weights-only": (
        lambda s: (
            sum(p.numel() for n, p in s.lstm.lstm.named_parameters() if "weight" in n)
            / sum(p.numel() for p in s.lstm.parameters()),
            s.lstm,
        ),
        "weights and biases of all four gates",
    ),
    "06.1-not-a-number": (lambda s: ("most", s.lstm), "answer must be a number"),
    "06.1-stub": (lambda s: (None, s.lstm), "not answered yet"),
    # 06.2: the range a dynamic kernel picks for one call's input (one time step of `steps`)
    "06.2-right-7-bit": (
        lambda s: (*_dyn_qparams(s.steps[2], 127), s.steps[2], _reducing_engine(), s.steps),
        PASSED,
    ),
    "06.2-right-qnnpack": (
        lambda s: (*_dyn_qparams(s.steps[2], 255), s.steps[2], "qnnpack", s.steps),
        PASSED,
    ),
    "06.2-full-range-on-x86": (
        lambda s: (*_dyn_qparams(s.steps[2], 255), s.steps[2], _reducing_engine(), s.steps),
        "that is the full 0..255 scale; on '.*' the dynamic kernels ask for reduce_range=True",
    ),
    "06.2-7-bit-on-qnnpack": (
        lambda s: (*_dyn_qparams(s.steps[2], 127), s.steps[2], "qnnpack", s.steps),
        "that is a 7-bit \\(reduce_range\\) scale; on 'qnnpack' the dynamic kernels ignore",
    ),
    "06.2-range-over-all-steps": (
        lambda s: (*_dyn_qparams(s.steps, 127), s.steps[2], _reducing_engine(), s.steps),
        "that range is over the whole tensor \\(all time steps\\)",
    ),
    "06.2-zero-point-not-clamped": (
        lambda s: (_dyn_qparams(s.positive, 255)[0], -3, s.positive, "qnnpack"),
        "zero_point -3 is off .* clamped to 0..255",
    ),
    "06.2-range-without-zero": (
        lambda s: (float(s.positive.max() - s.positive.min()) / 255, 0, s.positive, "qnnpack"),
        "is off: \\(max - min\\) / 255 over this call's input, with the range widened to",
    ),
    "06.2-not-a-number": (
        lambda s: ("0.01", 0, s.steps[2], "qnnpack"),
        "scale must be a number",
    ),
    "06.2-stub": (lambda s: (None, None, s.steps[2]), "not answered yet"),
    # 08.1: the STE gradient of fake quantization (3-bit signed grid, scale 0.25)
    "08.1-right": (lambda s: (s.ste_grad(), s.ste_x, 0.25, 0, -4, 3), PASSED),
    "08.1-right-bool-mask": (
        lambda s: (s.ste_grad().bool(), s.ste_x, 0.25, 0, -4, 3),
        PASSED,
    ),
    "08.1-true-derivative-zeros": (
        lambda s: (torch.zeros(len(s.ste_x)), s.ste_x, 0.25, 0, -4, 3),
        "all zeros is the true derivative of round",
    ),
    "08.1-ones-everywhere": (
        lambda s: (torch.ones(len(s.ste_x)), s.ste_x, 0.25, 0, -4, 3),
        "clamped values get no gradient",
    ),
    "08.1-float-range-not-levels": (
        lambda s: (((s.ste_x >= -1.0) & (s.ste_x <= 0.75)).float(), s.ste_x, 0.25, 0, -4, 3),
        "wrong at x = \\[-1.1.*0.8.*\\]: the test is on the rounded level",
    ),
    "08.1-wrong-shape": (
        lambda s: (s.ste_grad()[:-1], s.ste_x, 0.25, 0, -4, 3),
        "one gradient per point",
    ),
    "08.1-stub": (lambda s: (None, s.ste_x, 0.25, 0, -4, 3), "not answered yet"),
    # 08.2: an autograd Function: round forward, identity backward
    "08.2-right": (lambda s: (_ste(torch.round, lambda g: g),), PASSED),
    "08.2-zero-gradient": (
        lambda s: (_ste(torch.round, torch.zeros_like),),
        "backward should return grad_output unchanged",
    ),
    "08.2-ones-gradient": (
        lambda s: (_ste(torch.round, torch.ones_like),),
        "backward should return grad_output unchanged",
    ),
    "08.2-floor-forward": (
        lambda s: (_ste(torch.floor, lambda g: g),),
        "forward should round",
    ),
    "08.2-no-backward": (lambda s: (_ste(torch.round),), "define backward"),
    "08.2-a-function": (
        lambda s: (torch.round,),
        "pass a torch.autograd.Function subclass",
    ),
    "08.2-stub": (lambda s: (None,), "not answered yet"),
    # 09.1: bytes of the fused model at mixed bit widths
    "09.1-right": (lambda s: (s.size(BITS_09), s.tiny, BITS_09), PASSED),
    "09.1-bits-not-bytes": (
        lambda s: (8 * s.size(BITS_09), s.tiny, BITS_09),
        "you counted bits, not bytes",
    ),
    "09.1-kib": (
        lambda s: (s.size(BITS_09) / 1024, s.tiny, BITS_09),
        "that is KiB",
    ),
    "09.1-no-scales": (
        lambda s: (s.size(BITS_09, scales=False), s.tiny, BITS_09),
        "4 bytes per output channel short",
    ),
    "09.1-per-tensor-scales": (
        lambda s: (s.size(BITS_09, per_tensor=True), s.tiny, BITS_09),
        "one 4-byte scale per output channel",
    ),
    "09.1-no-bias": (
        lambda s: (s.size(BITS_09, bias=False), s.tiny, BITS_09),
        "count the biases too",
    ),
    "09.1-unfused-bias": (
        lambda s: (s.size(BITS_09) - 16, s.tiny, BITS_09),
        "fold batch norm first",
    ),
    "09.1-all-8-bits": (
        lambda s: (s.size(dict.fromkeys(BITS_09, 8)), s.tiny, BITS_09),
        "every layer came out at 8 bits",
    ),
    "09.1-off": (
        lambda s: (s.size(BITS_09) + 3, s.tiny, BITS_09),
        "\\+3.0 bytes off",
    ),
    "09.1-stub": (lambda s: (None, s.tiny, BITS_09), "not answered yet"),
    # 09.2: the names on the Pareto front
    "09.2-right": (lambda s: (s.front(), s.points), PASSED),
    "09.2-dominated": (
        lambda s: ([*s.front(), "uniform 4"], s.points),
        "'uniform 4' is dominated by 'mixed 4'",
    ),
    "09.2-tie-on-accuracy-still-dominates": (
        lambda s: ([*s.front(), "uniform 8"], s.points),
        "'uniform 8' is dominated by 'mixed 6'.*a tie on one axis still counts",
    ),
    "09.2-missing-smallest": (
        lambda s: ([n for n in s.front() if n != "uniform 2"], s.points),
        "'uniform 2' belongs on the front.*nothing is smaller than it",
    ),
    "09.2-unknown-name": (
        lambda s: ([*s.front(), "mixed 5"], s.points),
        "\\['mixed 5'\\] are not points",
    ),
    "09.2-a-string": (lambda s: ("mixed 4", s.points), "answer with a list"),
    "09.2-stub": (lambda s: (None, s.points), "not answered yet"),
    # 14.1: GGUF's Q4_0 block encoder (core)
    "14.1-right": (lambda s: (q4_0_block,), PASSED),
    "14.1-round-to-even": (lambda s: (lambda b: q4_0_block(b, rounding="rint"),), "rounding"),
    "14.1-unsigned-scale": (lambda s: (lambda b: q4_0_block(b, signed=False),), "the scale's sign"),
    "14.1-adjacent-nibbles": (lambda s: (lambda b: q4_0_block(b, pairs=True),), "nibble order"),
    "14.1-no-clamp": (lambda s: (lambda b: q4_0_block(b, clamp=False),), "clamp the codes to 15"),
    "14.1-short": (lambda s: (lambda b: q4_0_block(b)[:17],), "return 18 bytes"),
    "14.1-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 14.2: AWQ's search for alpha
    "14.2-right": (lambda s: (awq_search,), PASSED),
    "14.2-weight-error": (
        lambda s: (lambda f, x, q: awq_search(f, x, q, judge="weight"),),
        "the one whose weights change least",
    ),
    "14.2-undivided": (
        lambda s: (lambda f, x, q: awq_search(f, x, q, divide=False),),
        "divide the quantized weights by s again",
    ),
    "14.2-last-alpha": (lambda s: (lambda f, x, q: 0.95,), "changes the output by"),
    "14.2-off-grid": (lambda s: (lambda f, x, q: 1.0,), "one of the grid"),
    "14.2-changes-the-layer": (lambda s: (_awq_search_in_place,), "leave the layer's weight"),
    "14.2-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 15.1: mean SQNR gap per compare_bits over the ok runs
    "15.1-right": (lambda s: (s.gaps(), s.results_csv), PASSED),
    "15.1-right-string-keys": (
        lambda s: ({str(k): v for k, v in s.gaps().items()}, s.results_csv),
        PASSED,
    ),
    "15.1-sign-flipped": (
        lambda s: ({k: -v for k, v in s.gaps().items()}, s.results_csv),
        "the sign is flipped",
    ),
    "15.1-asymmetric-only": (
        lambda s: ({4: 21.0, 8: 45.5}, s.results_csv),
        "at 4 bits the mean gap over the seeds is 5.500 dB, not 21.000",
    ),
    "15.1-missing-bits": (
        lambda s: ({4: s.gaps()[4]}, s.results_csv),
        "one entry per swept compare_bits \\[4, 8\\]",
    ),
    "15.1-not-a-number": (
        lambda s: ({4: "5.5", 8: 1.25}, s.results_csv),
        "must be a finite number of dB",
    ),
    "15.1-a-list": (lambda s: ([5.5, 1.25], s.results_csv), "answer with a dict"),
    "15.1-stub": (lambda s: (None, s.results_csv), "not answered yet"),
    # 15.2: the runs of shard 2/3
    "15.2-right": (lambda s: (s.runs(1, 3), s.notebook, s.grid, "2/3"), PASSED),
    "15.2-contiguous-block": (
        lambda s: (s.runs()[2:4], s.notebook, s.grid, "2/3"),
        "a shard is not a contiguous block",
    ),
    "15.2-wrong-order": (
        lambda s: (s.runs(1, 3)[::-1], s.notebook, s.grid, "2/3"),
        "right runs, wrong order",
    ),
    "15.2-zero-based": (
        lambda s: (s.runs(2, 3), s.notebook, s.grid, "2/3"),
        "every 3-th run of the plan starting at run 2 \\(1-based\\)",
    ),
    "15.2-a-string": (
        lambda s: (s.runs(1, 3)[0], s.notebook, s.grid, "2/3"),
        "answer with a list of run names",
    ),
    "15.2-stub": (lambda s: (None, s.notebook, s.grid, "2/3"), "not answered yet"),
    # 02.3: a per-channel fake quantizer (core)
    "02.3-right": (lambda s: (fake_quantize_per_channel,), PASSED),
    "02.3-per-tensor": (
        lambda s: (
            lambda w, bits: fake_quantize_per_channel(w.reshape(1, -1), bits).reshape(w.shape),
        ),
        "is per-tensor",
    ),
    "02.3-no-clamp": (
        lambda s: (lambda w, bits: np.rint(w / _scale_02(w, bits)) * _scale_02(w, bits),),
        r"clamp to \[qmin, qmax\] = \[-8, 7\]",
    ),
    "02.3-codes": (
        lambda s: (lambda w, bits: np.clip(np.rint(w / _scale_02(w, bits)), -8, 7),),
        "those are the integer codes",
    ),
    "02.3-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 03.3: a moving-average min/max calibrator (core)
    "03.3-right": (lambda s: (moving_average_minmax,), PASSED),
    "03.3-global-minmax": (
        lambda s: (lambda bs, c: (min(b.min() for b in bs), max(b.max() for b in bs)),),
        "min/max over all batches",
    ),
    "03.3-from-zero": (
        lambda s: (lambda bs, c: moving_average_minmax([np.zeros(1, np.float32), *bs], c),),
        r"averaging from \(0, 0\)",
    ),
    "03.3-swapped-constant": (
        lambda s: (lambda bs, c: moving_average_minmax(bs, 1 - c),),
        "c weighs the new batch",
    ),
    "03.3-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 04.1: requantization (core)
    "04.1-right": (lambda s: (requantize,), PASSED),
    "04.1-divided": (
        lambda s: (lambda a, m, z: np.clip(np.rint(a / m) + z, 0, 255),),
        "did you divide by the multiplier",
    ),
    "04.1-no-clamp": (
        lambda s: (lambda a, m, z: np.rint(a * m) + z,),
        "clamp after adding the zero point",
    ),
    "04.1-zero-point-before-rounding": (
        lambda s: (lambda a, m, z: np.clip(np.rint(a * m + z), 0, 255),),
        "the zero point goes in after rounding",
    ),
    "04.1-half-up": (
        lambda s: (lambda a, m, z: np.clip(np.floor(a * m + 0.5) + z, 0, 255),),
        "round half to even",
    ),
    "04.1-no-zero-point": (
        lambda s: (lambda a, m, z: np.clip(np.rint(a * m), 0, 255),),
        "the zero point is missing",
    ),
    "04.1-truncated": (
        lambda s: (lambda a, m, z: np.clip((a * m).astype(int) + z, 0, 255),),
        "truncates toward zero",
    ),
    "04.1-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 04.2: the zero-point cross term (core)
    "04.2-right": (lambda s: (cross_term,), PASSED),
    "04.2-int16-wraps": (
        lambda s: (lambda x, w, z: x @ w.T - z * w.sum(axis=1),),
        "wrapped around",
    ),
    "04.2-uint8-wraps": (lambda s: (lambda x, w, z: (x - np.uint8(z)) @ w.T,), "wraps below 0"),
    "04.2-added": (
        lambda s: (
            lambda x, w, z: x.astype(int) @ w.T.astype(int) + z * w.astype(int).sum(axis=1),
        ),
        "the cross term is subtracted",
    ),
    "04.2-not-subtracted": (
        lambda s: (lambda x, w, z: x.astype(int) @ w.T.astype(int),),
        "the zero point is not subtracted at all",
    ),
    "04.2-sum-of-inputs": (
        lambda s: (
            lambda x, w, z: (
                x.astype(int) @ w.T.astype(int) - z * x.astype(int).sum(1, keepdims=True)
            ),
        ),
        "not the sum of the inputs",
    ),
    "04.2-float-dtype": (
        lambda s: (lambda x, w, z: cross_term(x, w, z).astype(float),),
        "right values but dtype float64: return the int32 accumulator",
    ),
    "04.2-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 04.3: batch-norm folding (core)
    "04.3-right": (lambda s: (bn_fold,), PASSED),
    "04.3-variance": (
        lambda s: (lambda w, b, g, be, m, v, e: (w * (g / (v + e)).reshape(-1, 1, 1, 1), b),),
        "not the variance",
    ),
    "04.3-no-eps": (
        lambda s: (lambda w, b, g, be, m, v, e: (w * (g / np.sqrt(v)).reshape(-1, 1, 1, 1), b),),
        "eps is missing",
    ),
    "04.3-last-axis": (
        lambda s: (lambda w, b, g, be, m, v, e: (w * (g / np.sqrt(v + e)), b),),
        "along the last axis",
    ),
    "04.3-no-beta": (
        lambda s: (
            lambda w, b, g, be, m, v, e: (
                bn_fold(w, b, g, be, m, v, e)[0],
                (b - m) * g / np.sqrt(v + e),
            ),
        ),
        "beta is missing",
    ),
    "04.3-mean-not-subtracted": (
        lambda s: (
            lambda w, b, g, be, m, v, e: (
                bn_fold(w, b, g, be, m, v, e)[0],
                b * g / np.sqrt(v + e) + be,
            ),
        ),
        "subtract the running mean",
    ),
    "04.3-not-a-pair": (lambda s: (lambda w, b, g, be, m, v, e: w,), "return a pair"),
    "04.3-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 05.3: eager static PTQ by hand (core)
    "05.3-right": (lambda s: (static_ptq, _engine()), PASSED),
    "05.3-no-convert": (lambda s: (_prepared_only, _engine()), "still has observers"),
    "05.3-no-calibration": (
        lambda s: (lambda m, c, e: static_ptq(m, c, e, batches=0), _engine()),
        "observers never saw data",
    ),
    "05.3-first-batch": (
        lambda s: (lambda m, c, e: static_ptq(m, c, e, batches=1), _engine()),
        "calibrate on every batch",
    ),
    "05.3-stub": (
        lambda s: (_nbgrader_stub, _engine()),
        "not answered yet: your code is still the stub",
    ),
    # 06.3: a group quantizer (core)
    "06.3-right": (lambda s: (group_quantize,), PASSED),
    "06.3-per-row": (
        lambda s: (lambda w, g, bits: group_quantize(w, w.shape[1], bits),),
        "one scale per row is per-channel",
    ),
    "06.3-columns": (
        lambda s: (lambda w, g, bits: group_quantize(w, g, bits, axis_rows=False),),
        "not weights down a column",
    ),
    "06.3-levels": (
        lambda s: (lambda w, g, bits: group_quantize(w, g, bits, levels=2**bits),),
        "there are 2\\*\\*bits - 1 = 15 steps",
    ),
    "06.3-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 07.1: cross-layer equalization scales (core)
    "07.1-right": (lambda s: (cle_scales,), PASSED),
    "07.1-inverted": (lambda s: (lambda w1, w2: 1 / cle_scales(w1, w2),), "those are 1 / s"),
    "07.1-squared": (
        lambda s: (lambda w1, w2: _cle_ranges(w1, w2)[0] / _cle_ranges(w1, w2)[1],),
        "take the square root",
    ),
    "07.1-max-minus-min": (lambda s: (_cle_minmax_scales,), "max - min"),
    "07.1-wrong-axis": (
        lambda s: (lambda w1, w2: w2.abs().flatten(1).amax(1),),
        "one scale per channel",
    ),
    "07.1-a-list": (lambda s: (lambda w1, w2: cle_scales(w1, w2).tolist(),), "return a tensor"),
    "07.1-off": (lambda s: (lambda w1, w2: cle_scales(w1, w2) * 1.1,), r"scale \d is .*expected"),
    "07.1-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 07.2: how many weights AdaRound flips
    "07.2-right": (lambda s: s.flip_args(s.adarounded[-1]), PASSED),
    "07.2-the-others": (
        lambda s: s.flip_args(s.adarounded[0].numel() - s.adarounded[-1]),
        "counts the weights AdaRound rounds to nearest",
    ),
    "07.2-changed-at-all": (
        lambda s: s.flip_args(int((s.adarounded[1] != s.adarounded[0]).sum())),
        "counts weights that changed at all",
    ),
    "07.2-a-float": (lambda s: s.flip_args(float(s.adarounded[-1])), "must be an int"),
    "07.2-stub": (lambda s: s.flip_args(None), "not answered yet"),
    # 08.2 as nbgrader releases it: forward and backward raise
    "08.2-stub-nbgrader": (
        lambda s: (_ste_stub(),),
        "not answered yet: your code is still the stub",
    ),
    # 09.3: the optimal bit allocation (core)
    "09.3-right": (lambda s: (allocate,), PASSED),
    "09.3-greedy": (lambda s: (nb09._greedy_allocation,), "that is the greedy allocation"),
    "09.3-all-8": (
        lambda s: (lambda options, budget: dict.fromkeys(options, 8),),
        "over the budget",
    ),
    "09.3-a-layer-missing": (
        lambda s: (lambda options, budget: dict.fromkeys(list(options)[1:], 2),),
        "give every layer its bits",
    ),
    "09.3-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 10.1: images per second from a bench result
    "10.1-right": (lambda s: (dict(THROUGHPUT_10), RESULT_10), PASSED),
    "10.1-calls-per-second": (
        lambda s: ({"fp32": 1000 / 5.0, "int8": 1000 / 1.25}, RESULT_10),
        "calls per second; each call runs 8 images",
    ),
    "10.1-not-milliseconds": (
        lambda s: ({"fp32": 8 / 5.0, "int8": 8 / 1.25}, RESULT_10),
        "median_ms is in milliseconds",
    ),
    "10.1-time-per-image": (
        lambda s: ({"fp32": 5.0 / 8, "int8": 1.25 / 8}, RESULT_10),
        "time per image",
    ),
    "10.1-missing": (lambda s: ({"fp32": 1600.0}, RESULT_10), r"missing \['int8'\]"),
    "10.1-not-a-number": (
        lambda s: ({"fp32": 1600.0, "int8": "fast"}, RESULT_10),
        r"answer\['int8'\] must be a number",
    ),
    "10.1-off": (
        lambda s: ({"fp32": 1600.0, "int8": 7000.0}, RESULT_10),
        "images/s = batch \\* 1000 / median ms",
    ),
    "10.1-a-list": (lambda s: ([1600.0, 6400.0], RESULT_10), "answer with a dict"),
    "10.1-stub": (lambda s: (None, RESULT_10), "not answered yet"),
    # 10.2: Amdahl's law
    "10.2-right": (lambda s: (amdahl,), PASSED),
    "10.2-speedups-averaged": (
        lambda s: (lambda p, k: (1 - p) + p * k,),
        "speedups do not average: times add",
    ),
    "10.2-p-times-k": (
        lambda s: (lambda p, k: 1 / ((1 - p) + p * k),),
        "takes p / k of the old time",
    ),
    "10.2-new-time": (lambda s: (lambda p, k: (1 - p) + p / k,), "that is the new time"),
    "10.2-just-k": (lambda s: (lambda p, k: k,), r"amdahl\(0.0, 4\) gave 4.0"),
    "10.2-a-string": (lambda s: ("amdahl",), "answer with a function"),
    "10.2-stub": (lambda s: (_stub("10.2"),), "not answered yet: your code is still the stub"),
    "10.2-stub-nbgrader": (
        lambda s: (_nbgrader_stub,),
        "not answered yet: your code is still the stub",
    ),
    # 10.3: the paired speedup (core)
    "10.3-right": (lambda s: (paired_speedup,), PASSED),
    "10.3-ratio-of-medians": (
        lambda s: (lambda a, b: (np.median(a) / np.median(b), 0, 0),),
        "ratio of the medians",
    ),
    "10.3-inverted": (lambda s: (lambda a, b: paired_speedup(b, a),), "that is int8 / fp32"),
    "10.3-mean": (
        lambda s: (lambda a, b: (np.mean(np.asarray(a) / np.asarray(b)), 0, 0),),
        "mean of the ratios",
    ),
    "10.3-sorted": (
        lambda s: (lambda a, b: paired_speedup(sorted(a), sorted(b)),),
        "sorting each list breaks the pairs",
    ),
    "10.3-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 11.1: ONNX QuantizeLinear in numpy (core)
    "11.1-right": (lambda s: (quantize_linear,), PASSED),
    "11.1-torch-reciprocal": (
        lambda s: (lambda x, sc, z: np.clip(np.rint(x * (F32(1) / F32(sc))) + z, 0, 255),),
        "that is torch's rule",
    ),
    "11.1-half-up": (
        lambda s: (lambda x, sc, z: np.clip(np.floor(x / F32(sc) + F32(0.5)) + z, 0, 255),),
        "round half to even",
    ),
    "11.1-zero-point-first": (
        lambda s: (lambda x, sc, z: np.clip(np.rint(x / F32(sc) + z), 0, 255),),
        "add the zero point after rounding",
    ),
    "11.1-no-saturation": (
        lambda s: (lambda x, sc, z: (np.rint(x / F32(sc)) + z).astype(np.int64),),
        "saturate to 0..255",
    ),
    "11.1-wrong-shape": (
        lambda s: (lambda x, sc, z: np.clip(np.rint(x / F32(sc)) + z, 0, 255)[:-1],),
        "return one code per value",
    ),
    "11.1-multiplied": (
        lambda s: (lambda x, sc, z: np.clip(np.rint(x * F32(sc)) + z, 0, 255),),
        "QuantizeLinear gives",
    ),
    "11.1-stub": (lambda s: (_stub("11.1"),), "not answered yet: your code is still the stub"),
    # 11.2: the QDQ model's input scale and zero point
    "11.2-right": (lambda s: (s.qdq_input(), s.qdq), PASSED),
    "11.2-inverted-scale": (
        lambda s: ((1 / s.qdq_input()[0], s.qdq_input()[1]), s.qdq),
        "that is 1 / scale",
    ),
    "11.2-another-tensor": (
        lambda s: ((s.qdq_other_scale()[1], s.qdq_input()[1]), s.qdq),
        "that is the scale of '.*', not of the model's input",
    ),
    "11.2-zero-point-off": (
        lambda s: ((s.qdq_input()[0], s.qdq_input()[1] + 1), s.qdq),
        "the zero point is off",
    ),
    "11.2-zero-point-float": (
        lambda s: ((s.qdq_input()[0], float(s.qdq_input()[1])), s.qdq),
        "the zero point must be an int",
    ),
    "11.2-not-a-pair": (lambda s: ((s.qdq_input()[0],), s.qdq), "a pair"),
    "11.2-scale-a-string": (
        lambda s: (("0.1", s.qdq_input()[1]), s.qdq),
        "the scale must be a number",
    ),
    "11.2-stub": (lambda s: (None, s.qdq), "not answered yet"),
    # 12.1: bits per weight with one float16 scale per group of 128
    "12.1-right": (lambda s: (rtn.bits_per_weight(128, 64, 4, 128), 4, 128, 16), PASSED),
    "12.1-no-scales": (lambda s: (4, 4, 128, 16), "leaves the scales out"),
    "12.1-scale-per-weight": (lambda s: (20, 4, 128, 16), "divide its bits by the group size"),
    "12.1-float32-scale": (lambda s: (4.25, 4, 128, 16), "not 32"),
    "12.1-one-bit-scale": (lambda s: (4 + 1 / 128, 4, 128, 16), "not 1"),
    "12.1-off": (lambda s: (5, 4, 128, 16), "is not it"),
    "12.1-a-string": (lambda s: ("4.125", 4, 128, 16), "must be a number"),
    "12.1-stub": (lambda s: (None, 4, 128, 16), "not answered yet"),
    # 12.2: GPTQ's step for one column (core)
    "12.2-right": (lambda s: (gptq_step,), PASSED),
    "12.2-round-to-nearest": (lambda s: (_rtn_step,), "did not move: that is round to nearest"),
    "12.2-wrong-way": (
        lambda s: (
            lambda w, u, sc, lo, hi: 2 * _rtn_step(w, u, sc, lo, hi) - gptq_step(w, u, sc, lo, hi),
        ),
        "wrong way",
    ),
    "12.2-not-divided": (lambda s: (_undivided_step,), "divide the error"),
    "12.2-column-0-off-grid": (
        lambda s: (lambda w, u, sc, lo, hi: w,),
        "column 0 must be on the grid",
    ),
    "12.2-wrong-shape": (
        lambda s: (lambda w, u, sc, lo, hi: gptq_step(w, u, sc, lo, hi)[:, 1:],),
        "shape",
    ),
    "12.2-column-2-off": (
        lambda s: (lambda w, u, sc, lo, hi: gptq_step(w, u, sc, lo, hi) + _NUDGE_COLUMN_2,),
        "column 2 differs",
    ),
    "12.2-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 12.3: AWQ's per-channel scales
    "12.3-right": (lambda s: (awq_scales,), PASSED),
    "12.3-right-without-clamp": (lambda s: (_awq_unclamped,), PASSED),
    "12.3-maximum": (lambda s: (_awq_max,), "that is the maximum of each channel"),
    "12.3-not-normalized": (
        lambda s: (lambda x, a: x.abs().reshape(-1, x.shape[-1]).mean(dim=0).pow(a),),
        "normalize",
    ),
    "12.3-mean-before-magnitude": (
        lambda s: (
            lambda x, a: awq_scales(x.reshape(-1, x.shape[-1]).mean(dim=0, keepdim=True), a),
        ),
        "magnitude first",
    ),
    "12.3-fixed-alpha": (lambda s: (lambda x, a: awq_scales(x, 0.5),), "use the `alpha` passed in"),
    "12.3-wrong-shape": (
        lambda s: (lambda x, a: awq_scales(x, a)[:4],),
        "one scale per input channel",
    ),
    "12.3-off": (lambda s: (lambda x, a: awq_scales(x, a) * 1.01,), "channel"),
    "12.3-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 13.1: an FP8 E4M3 encoder (core)
    "13.1-right": (lambda s: (e4m3,), PASSED),
    "13.1-half-up": (lambda s: (lambda x: e4m3(x, half_up=True),), "round half up"),
    "13.1-no-saturation": (lambda s: (lambda x: e4m3(x, saturate=False),), "no saturation"),
    "13.1-no-subnormals": (lambda s: (lambda x: e4m3(x, subnormals=False),), "subnormals"),
    "13.1-wrong-shape": (lambda s: (lambda x: e4m3(x)[:3],), "one integer code per input"),
    "13.1-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 13.2: the MXFP4 block scale
    "13.2-right": (lambda s: (mx_scale,), PASSED),
    "13.2-amax-over-6": (lambda s: (lambda b: np.abs(b).max(axis=1) / 6,), "not a power of two"),
    "13.2-nearly-amax-over-6": (
        lambda s: (lambda b: np.abs(b).max(axis=1).astype(np.float64) / 6 * 1.01,),
        "not a power of two",
    ),
    "13.2-ceil": (
        lambda s: (lambda b: np.exp2(np.ceil(np.log2(np.abs(b).max(axis=1))) - 2),),
        "rounds log2",
    ),
    "13.2-no-emax": (
        lambda s: (lambda b: np.exp2(np.floor(np.log2(np.abs(b).max(axis=1)))),),
        "subtract emax_elem",
    ),
    "13.2-exponent": (
        lambda s: (lambda b: np.floor(np.log2(np.abs(b).max(axis=1))) - 2,),
        "not its exponent",
    ),
    "13.2-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
    # 15.3: the parameter grid (core)
    "15.3-right": (lambda s: (grid_runs,), PASSED),
    "15.3-zip": (
        lambda s: (
            lambda grid: [
                dict(zip(grid, v, strict=False)) for v in zip(*grid.values(), strict=False)
            ],
        ),
        "pairs the values up",
    ),
    "15.3-last-slowest": (
        lambda s: (
            lambda grid: [
                dict(reversed(list(zip(reversed(list(grid)), v, strict=True))))
                for v in itertools.product(*reversed(list(grid.values())))
            ],
        ),
        "right runs, wrong order",
    ),
    "15.3-stub": (lambda s: (_nbgrader_stub,), "not answered yet: your code is still the stub"),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    return Setup(tmp_path_factory.mktemp("exercises"))


def _exercise(case_id: str):
    return BY_ID[case_id.split("-", 1)[0]]


def _kind(case_id: str, diagnosis: str | None) -> str:
    if diagnosis is PASSED:
        return "right"
    return "stub" if case_id.split("-")[1] == "stub" else "mistake"


@pytest.mark.parametrize(("case_id", "arguments", "diagnosis"),
                         [(k, *v) for k, v in CASES.items()], ids=list(CASES))  # fmt: skip
def test_the_check_grades_the_answer(setup, case_id, arguments, diagnosis, capsys):
    exercise = _exercise(case_id)
    args = arguments(setup)
    if diagnosis is PASSED:
        exercise.grader(*args)
        assert f"✔ Exercise {exercise.id} passed" in capsys.readouterr().out
    else:
        with pytest.raises(ExerciseError, match=f"^Exercise {exercise.id}: .*{diagnosis}"):
            exercise.grader(*args)
    if _kind(case_id, diagnosis) == "stub":
        assert "not answered yet" in diagnosis


@pytest.mark.parametrize("exercise", REGISTRY, ids=lambda e: e.id)
def test_every_exercise_has_a_right_answer_two_mistakes_and_a_stub(exercise):
    kinds = [_kind(k, d) for k, (_, d) in CASES.items() if k.split("-", 1)[0] == exercise.id]
    assert kinds.count("right") >= 1, f"{exercise.id}: no right answer in CASES"
    assert kinds.count("mistake") >= 2, f"{exercise.id}: fewer than two typical mistakes"
    assert kinds.count("stub") >= 1, f"{exercise.id}: no stub"
    if exercise.core:
        assert f"{exercise.id}-right" in CASES, f"{exercise.id}: held-out seeds need its -right row"


def test_every_case_belongs_to_a_registered_exercise():
    assert {k.split("-", 1)[0] for k in CASES} == set(BY_ID)


CORE = [e for e in REGISTRY if e.core]
HELD_OUT = [1, 2]  # the notebooks' hidden tests use these; 0 is the visible check


@pytest.mark.parametrize("exercise", CORE, ids=lambda e: e.id)
def test_every_core_exercise_takes_a_seed(exercise):
    assert exercise.seeded, f"{exercise.id}: a core check takes `seed` (held-out variants)"


@pytest.mark.parametrize("seed", HELD_OUT)
@pytest.mark.parametrize("exercise", CORE, ids=lambda e: e.id)
def test_the_right_answer_passes_the_held_out_variants(setup, exercise, seed, capsys):
    exercise.grader(*CASES[f"{exercise.id}-right"][0](setup), seed=seed)
    assert f"✔ Exercise {exercise.id} passed" in capsys.readouterr().out


class _Replay:
    """An answer tuned to the visible case: it returns what the right answer returned at seed 0,
    call by call, whatever it is given."""

    def __init__(self, right) -> None:
        self.right, self.outputs, self.calls = right, [], 0

    def record(self, *args):
        out = self.right(*args)
        self.outputs.append(copy.deepcopy(out))
        return out

    def replay(self, *args):
        out = self.outputs[self.calls % len(self.outputs)]
        self.calls += 1
        return copy.deepcopy(out)


def _tuned_ste() -> type:
    """08.2 tuned to the visible check: the right forward, and a backward that returns the
    visible check's upstream gradients (1, 2, 3, 4, 5) instead of grad_output."""
    visible = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    return _ste(torch.round, lambda grad: visible if len(grad) == len(visible) else grad * 0)


@pytest.mark.parametrize("exercise", CORE, ids=lambda e: e.id)
def test_an_answer_tuned_to_the_visible_case_fails_a_held_out_one(setup, exercise, capsys):
    right, *rest = CASES[f"{exercise.id}-right"][0](setup)
    if isinstance(right, type):  # 08.2 answers with a class
        tuned = _tuned_ste()
        exercise.grader(tuned, *rest)
    else:
        answer = _Replay(right)
        exercise.grader(answer.record, *rest)
        exercise.grader(answer.replay, *rest)  # the visible check cannot tell
        tuned = answer.replay
    assert f"✔ Exercise {exercise.id} passed" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match=f"^Exercise {exercise.id}: "):
        exercise.grader(tuned, *rest, seed=HELD_OUT[0])


# --- facts the rows rest on, and inputs a check refuses ---------------------------------------


def test_the_exercise_setup_is_what_the_rows_assume(setup):
    """The rows rest on these facts; if one breaks, the row would test nothing."""
    assert setup.worst_layer(4) == "conv1.0"
    w = setup.weight.reshape(6, -1)
    assert not torch.equal(w.amax(1), w.abs().amax(1))  # max-not-abs differs from right
    assert setup.front() == ["uniform 2", "mixed 2.5", "mixed 4", "mixed 6"]
    assert setup.gaps() == {4: 5.5, 8: 1.25}
    assert [run.name for run in sweep.plan([setup.notebook], setup.grid)] == setup.runs()
    assert 0 < setup.adarounded[-1] < setup.adarounded[0].numel()


def test_the_visible_allocation_problem_is_one_where_greedy_is_not_optimal():
    options, budget = nb09._allocation_problem(0)
    greedy = nb09._greedy_allocation(options, budget)
    best, _ = nb09._best_allocation(options, budget)
    assert sum(options[n][greedy[n]][0] for n in options) > best + 1e-9
    assert sum(options[n][greedy[n]][1] for n in options) <= budget


def test_the_gptq_answer_is_qnb_gptqs_first_column_and_the_least_squares_optimum():
    """12.2's right answer is qnb.gptq's first column (damp 0), which is the least-squares
    optimum of the other columns given column 0."""
    gen = torch.Generator().manual_seed(3)
    mix = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(300, 6, generator=gen, dtype=torch.float64) @ (torch.eye(6) + 0.7 * mix)
    w = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    h = gptq.hessian(x)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    scale = rtn.weight_scales(w, 3, "channel")[:, 0]
    ours = gptq_step(w, u, scale, *rtn.grid(3))
    theirs = gptq.gptq_weight(w, h, 3, "channel", damp=0, columns=1).double()
    assert torch.allclose(ours, theirs, atol=1e-9)
    target = (w @ x.T).T  # least squares over columns 1..5 with column 0 fixed
    free = torch.linalg.lstsq(x[:, 1:], target - x[:, :1] * ours[:, :1].T).solution.T
    assert torch.allclose(ours[:, 1:], free, atol=1e-8)


def test_a_not_implemented_error_of_another_kind_is_not_taken_for_a_stub():
    def amdahl(p: float, k: float) -> float:
        raise NotImplementedError("torch has no kernel for this")

    with pytest.raises(NotImplementedError, match="no kernel"):
        BY_ID["10.2"].grader(amdahl)


def test_throughput_needs_a_batch_size():
    with pytest.raises(ValueError, match="records no batch size"):
        BY_ID["10.1"].grader(
            dict(THROUGHPUT_10), BenchResult(RESULT_10.rows, "fp32", {"batch": None})
        )


def test_static_ptq_refuses_an_unknown_engine_naming_it():
    with pytest.raises(ValueError, match="engine must be one of .* got 'tpu'"):
        BY_ID["05.3"].grader(static_ptq, "tpu")
