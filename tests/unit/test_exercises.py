"""Every exercise check: right answers pass, typical mistakes get their diagnosis, stubs are
"not answered yet". Notebook 04's checks are tested in test_exercises_integer.py."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import DeQuantStub, QuantStub

from qnb import dynamic, env, exercises, models, ptq, simulate, sweep
from qnb.bench import BenchResult, Row
from qnb.exercises import (
    ExerciseError,
    check_amdahl,
    check_best_clip,
    check_channel_scales,
    check_db_per_bit,
    check_dynamic_qparams,
    check_float_functional,
    check_float_modules,
    check_lstm_share,
    check_model_size,
    check_pareto_points,
    check_percentile_clip,
    check_qparams,
    check_quantize,
    check_shard,
    check_ste_function,
    check_ste_gradient,
    check_sweep_gap,
    check_throughput,
    check_worst_layer,
)

# --- notebook 10 ---

RESULT = BenchResult(
    [Row("fp32", [4.0, 5.0, 6.0], 1), Row("int8", [1.0, 1.25, 1.5], 1)],
    "fp32",
    {"batch": 8},
)
RIGHT = {"fp32": 8 * 1000 / 5.0, "int8": 8 * 1000 / 1.25}


def test_throughput_right_answer_passes(capsys):
    check_throughput(dict(RIGHT), RESULT)
    assert "Exercise 10.1 passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        ({"fp32": 1000 / 5.0, "int8": 1000 / 1.25}, "calls per second; each call runs 8 images"),
        ({"fp32": 8 / 5.0, "int8": 8 / 1.25}, "median_ms is in milliseconds"),
        ({"fp32": 5.0 / 8, "int8": 1.25 / 8}, "time per image"),
        ({"fp32": 1600.0}, r"missing \['int8'\]"),
        ({"fp32": 1600.0, "int8": "fast"}, r"answer\['int8'\] must be a number"),
        ({"fp32": 1600.0, "int8": 7000.0}, "images/s = batch \\* 1000 / median ms"),
        ([1600.0, 6400.0], "answer with a dict"),
        (None, "not answered yet"),
    ],
)
def test_throughput_mistakes_get_their_hint(answer, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_throughput(answer, RESULT)


def test_throughput_needs_a_batch_size():
    with pytest.raises(ValueError, match="records no batch size"):
        check_throughput(dict(RIGHT), BenchResult(RESULT.rows, "fp32", {"batch": None}))


def test_amdahl_right_answer_passes(capsys):
    check_amdahl(lambda p, k: 1 / ((1 - p) + p / k))
    assert "Exercise 10.2 passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("function", "hint"),
    [
        (lambda p, k: (1 - p) + p * k, "speedups do not average: times add"),
        (lambda p, k: 1 / ((1 - p) + p * k), "takes p / k of the old time"),
        (lambda p, k: (1 - p) + p / k, "that is the new time"),
        (lambda p, k: k, r"amdahl\(0.0, 4\) gave 4.0"),
        ("amdahl", "answer with a function"),
    ],
)
def test_amdahl_mistakes_get_their_hint(function, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_amdahl(function)


@pytest.mark.parametrize("message", ["Exercise 10.2: write it", ""], ids=["named", "nbgrader"])
def test_amdahl_stub_is_not_answered_yet(message):
    """A stub that names the exercise, or nbgrader's bare `raise NotImplementedError()`."""

    def amdahl(p: float, k: float) -> float:
        raise NotImplementedError(message)

    with pytest.raises(ExerciseError, match="not answered yet: your code is still the stub"):
        check_amdahl(amdahl)


def test_a_not_implemented_error_of_another_kind_is_not_taken_for_a_stub():
    def amdahl(p: float, k: float) -> float:
        raise NotImplementedError("torch has no kernel for this")

    with pytest.raises(NotImplementedError, match="no kernel"):
        check_amdahl(amdahl)


# --- every other check: one table of right answers, typical mistakes and stubs -------------
#
# Each row: the check, a function of the shared `Setup` giving the check's arguments (the answer
# first), and either PASSED (the right answer, computed here as a student would) or the words
# of the diagnosis the mistake must get.

PASSED = None


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

    # the right answers, as a student computes them

    def scales(self, bits: int) -> np.ndarray:
        flat = np.abs(self.weight.numpy()).reshape(len(self.weight), -1)
        return flat.max(axis=1) / ((2 ** (bits - 1) - 1 - (-(2 ** (bits - 1)))) / 2)

    def worst_layer(self, bits: int) -> str:
        fused = simulate.fused(self.tiny)
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
CASES = {
    # 01.1: scale and zero point of [-2.5, 7.5] at 4 bits
    "01.1-right": (check_qparams, lambda s: (10 / 15, 4, -2.5, 7.5, 4), PASSED),
    "01.1-right-relu-range-zero-point-0": (
        check_qparams,
        lambda s: (6 / 255, 0, 0.0, 6.0, 8),
        PASSED,
    ),
    "01.1-scale-inverted": (
        check_qparams,
        lambda s: (15 / 10, 4, -2.5, 7.5, 4),
        "scale is upside down",
    ),
    "01.1-divided-by-2**bits": (
        check_qparams,
        lambda s: (10 / 16, 4, -2.5, 7.5, 4),
        "2\\*\\*bits - 1 = 15 steps",
    ),
    "01.1-zero-point-sign": (
        check_qparams,
        lambda s: (10 / 15, -4, -2.5, 7.5, 4),
        "zero point has the wrong sign",
    ),
    "01.1-zero-point-0": (
        check_qparams,
        lambda s: (10 / 15, 0, -2.5, 7.5, 4),
        "zero_point 0 puts the real 0 at",
    ),
    "01.1-zero-point-not-rounded": (
        check_qparams,
        lambda s: (10 / 15, 3.75, -2.5, 7.5, 4),
        "must be an integer level",
    ),
    "01.1-stub": (check_qparams, lambda s: (None, None, -2.5, 7.5, 4), "not answered yet"),
    # 01.2: a quantize function, bit-exact with torch's quint8 kernel
    "01.2-right": (check_quantize, lambda s: (_my_quantize,), PASSED),
    "01.2-multiplied-by-scale": (
        check_quantize,
        lambda s: (lambda x, sc, z: np.clip(np.rint(x * sc) + z, 0, 255).astype(int),),
        "multiply by the scale instead of dividing",
    ),
    "01.2-no-clamp": (
        check_quantize,
        lambda s: (lambda x, sc, z: (np.rint(x / sc) + z).astype(int),),
        "clamp to \\[qmin, qmax\\] after rounding",
    ),
    "01.2-round-half-up": (
        check_quantize,
        lambda s: (lambda x, sc, z: np.clip(np.floor(x / sc + 0.5) + z, 0, 255).astype(int),),
        "torch rounds half to even",
    ),
    "01.2-truncated": (
        check_quantize,
        lambda s: (lambda x, sc, z: np.clip((x / sc).astype(int) + z, 0, 255),),
        "truncate toward zero",
    ),
    "01.2-zero-point-subtracted": (
        check_quantize,
        lambda s: (lambda x, sc, z: np.clip(np.rint(x / sc) - z, 0, 255).astype(int),),
        "the zero point is added, not subtracted",
    ),
    "01.2-float-dtype": (
        check_quantize,
        lambda s: (lambda x, sc, z: _my_quantize(x, sc, z).astype(float),),
        "right values but dtype float",
    ),
    "01.2-divided-float32": (
        check_quantize,
        lambda s: (lambda x, sc, z: np.clip(np.rint(x / np.float32(sc)) + z, 0, 255).astype(int),),
        "torch multiplies by the float32 reciprocal",
    ),
    "01.2-divided-float64": (
        check_quantize,
        lambda s: (
            lambda x, sc, z: np.clip(np.rint(x.astype(float) / sc) + z, 0, 255).astype(int),
        ),
        "at scale 0.1 you divide \\(float64",
    ),
    # 01.3: dB per bit from the measured curve, not the formula
    "01.3-right-last-step": (
        check_db_per_bit,
        lambda s: ((72.24 - 60.17) / 2, BITS_01, SQNR_01),
        PASSED,
    ),
    "01.3-right-fit": (
        check_db_per_bit,
        lambda s: (float(np.polyfit(BITS_01[2:], SQNR_01[2:], 1)[0]), BITS_01, SQNR_01),
        PASSED,
    ),
    "01.3-formula-typed-in": (check_db_per_bit, lambda s: (6.02, BITS_01, SQNR_01), "formula"),
    "01.3-six-typed-in": (check_db_per_bit, lambda s: (6, BITS_01, SQNR_01), "formula"),
    "01.3-power-not-amplitude": (
        check_db_per_bit,
        lambda s: (3.01, BITS_01, SQNR_01),
        "10\\*log10\\(2\\)",
    ),
    "01.3-not-divided-by-bits": (
        check_db_per_bit,
        lambda s: (72.24 - 60.17, BITS_01, SQNR_01),
        "divide by how many bits apart",
    ),
    "01.3-small-b": (
        check_db_per_bit,
        lambda s: ((23.49 - 9.52) / 2, BITS_01, SQNR_01),
        "use widths of 6 bits or more",
    ),
    "01.3-stub": (check_db_per_bit, lambda s: (None, BITS_01, SQNR_01), "not answered yet"),
    "01.2-stub": (check_quantize, lambda s: (_stub("01.2"),), "your code is still the stub"),
    # 02.1: per-output-channel symmetric scales at 4 bits
    "02.1-right": (check_channel_scales, lambda s: (s.scales(4), s.weight, 4), PASSED),
    "02.1-divided-by-qmax": (
        check_channel_scales,
        lambda s: (s.scales(4) * 7.5 / 7, s.weight, 4),
        "you divided by qmax = 7",
    ),
    "02.1-divided-by-2**(bits-1)": (
        check_channel_scales,
        lambda s: (s.scales(4) * 7.5 / 8, s.weight, 4),
        "you divided by 2\\*\\*\\(bits-1\\) = 8",
    ),
    "02.1-per-tensor": (
        check_channel_scales,
        lambda s: (s.scales(4).max(), s.weight, 4),
        "one scale for the whole tensor is per-tensor",
    ),
    "02.1-max-not-abs": (
        check_channel_scales,
        lambda s: (s.weight.reshape(6, -1).amax(1).numpy() / 7.5, s.weight, 4),
        "the largest \\|w\\|, not the largest w",
    ),
    "02.1-range-over-levels": (
        check_channel_scales,
        lambda s: (s.scales(4) * 7.5 / 15, s.weight, 4),
        "about half the right size",
    ),
    "02.1-wrong-axis": (
        check_channel_scales,
        lambda s: (s.weight.abs().amax((0, 2, 3)).numpy() / 7.5, s.weight, 4),
        "one scale per output channel, shape \\(6,\\)",
    ),
    "02.1-stub": (check_channel_scales, lambda s: (None, s.weight, 4), "not answered yet"),
    # 02.2: the layer losing most SQNR per-channel -> per-tensor, at 4 bits
    "02.2-right": (check_worst_layer, lambda s: (s.worst_layer(4), s.tiny, 4), PASSED),
    "02.2-right-float-name": (
        check_worst_layer,
        lambda s: (s.worst_layer(4).removesuffix(".0"), s.tiny, 4),
        PASSED,
    ),
    "02.2-another-layer": (
        check_worst_layer,
        lambda s: ("fc1.0", s.tiny, 4),
        "another layer loses more",
    ),
    "02.2-not-a-weight-layer": (
        check_worst_layer,
        lambda s: ("bn1", s.tiny, 4),
        "not a weight layer of the fused model",
    ),
    "02.2-not-a-name": (
        check_worst_layer,
        lambda s: (0, s.tiny, 4),
        "answer with the layer's name",
    ),
    "02.2-stub": (check_worst_layer, lambda s: (None, s.tiny, 4), "not answered yet"),
    # 03.1: the top of a percentile range
    "03.1-right": (
        check_percentile_clip,
        lambda s: (float(np.percentile(s.acts.numpy(), 90)), s.acts, 90),
        PASSED,
    ),
    "03.1-maximum": (
        check_percentile_clip,
        lambda s: (float(s.acts.max()), s.acts, 90),
        "that is the maximum",
    ),
    "03.1-other-tail": (
        check_percentile_clip,
        lambda s: (float(np.percentile(s.acts.numpy(), 10)), s.acts, 90),
        "that is the other tail",
    ),
    "03.1-fraction-as-percent": (
        check_percentile_clip,
        lambda s: (float(np.percentile(s.acts.numpy(), 0.9)), s.acts, 90),
        "np.percentile takes percent \\(0..100\\), np.quantile takes a fraction",
    ),
    "03.1-fraction-as-percent-relu-zeros": (
        check_percentile_clip,
        lambda s: (float(np.percentile(s.relu_acts.numpy(), 0.9999)), s.relu_acts, 99.99),
        "that is the bottom of the data.*np.percentile takes percent",
    ),
    "03.1-off": (
        check_percentile_clip,
        lambda s: (float(np.percentile(s.acts.numpy(), 80)), s.acts, 90),
        "it should clip 10%",
    ),
    "03.1-not-a-number": (
        check_percentile_clip,
        lambda s: ("2.3", s.acts, 90),
        "must be a finite number",
    ),
    "03.1-stub": (check_percentile_clip, lambda s: (None, s.acts, 90), "not answered yet"),
    # 03.2: the clipping threshold with the least error, 4 bits
    "03.2-right": (check_best_clip, lambda s: (s.best_clip(4), s.acts, 4), PASSED),
    "03.2-maximum": (
        check_best_clip,
        lambda s: (float(s.acts.max()), s.acts, 4),
        "wastes levels on rare large values \\(lower it\\)",
    ),
    "03.2-too-low": (
        check_best_clip,
        lambda s: (float(s.acts.max()) / 50, s.acts, 4),
        "clamps too much .*raise it",
    ),
    "03.2-negative": (check_best_clip, lambda s: (-1.0, s.acts, 4), "must be a threshold in"),
    "03.2-stub": (check_best_clip, lambda s: (None, s.acts, 4), "not answered yet"),
    # 05.1: leaf modules of an int8 model that are not int8 modules
    "05.1-right": (check_float_modules, lambda s: (FLOAT_LEAVES, s.int8), PASSED),
    "05.1-includes-int8-conv": (
        check_float_modules,
        lambda s: (["conv1", *FLOAT_LEAVES], s.int8),
        "conv1 \\(ConvReLU2d\\) compute in int8",
    ),
    "05.1-misses-fusion-identity": (
        check_float_modules,
        lambda s: (["pool", "flatten"], s.int8),
        "missing bn1 \\(Identity\\), relu1 \\(Identity\\).*leaves left by fusion",
    ),
    "05.1-model-itself": (
        check_float_modules,
        lambda s: (["", *FLOAT_LEAVES], s.int8),
        "'' is the model itself",
    ),
    "05.1-not-a-leaf": (
        check_float_modules,
        lambda s: (["fc1", *FLOAT_LEAVES], s.int8),
        "\\['fc1'\\] are not leaf modules",
    ),
    "05.1-a-string": (check_float_modules, lambda s: ("pool", s.int8), "answer with a list"),
    "05.1-stub": (check_float_modules, lambda s: (None, s.int8), "not answered yet"),
    # 05.2: a residual model that eager PTQ quantizes
    "05.2-right": (check_float_functional, lambda s: (Residual,), PASSED),
    "05.2-plus-on-quantized": (
        check_float_functional,
        lambda s: (PlusResidual,),
        "a float op still meets a quantized tensor: create self.skip = FloatFunctional",
    ),
    "05.2-quantstub-never-called": (
        check_float_functional,
        lambda s: (UncalledStubResidual,),
        "eager PTQ cannot quantize this model: QuantStub 'quant' is defined but was never called",
    ),
    "05.2-no-quantstub": (
        check_float_functional,
        lambda s: (NoStubResidual,),
        "eager PTQ cannot quantize this model: .*no QuantStub",
    ),
    "05.2-no-dequant": (
        check_float_functional,
        lambda s: (NoDequantResidual,),
        "end forward with self.dequant",
    ),
    "05.2-no-add": (
        check_float_functional,
        lambda s: (NoSkip,),
        "no quantized add \\(QFunctional\\)",
    ),
    "05.2-an-instance": (check_float_functional, lambda s: (Residual(),), "pass the class itself"),
    "05.2-stub": (check_float_functional, lambda s: (None,), "not answered yet"),
    # 06.1: the LSTM's share of the parameters
    "06.1-right": (check_lstm_share, lambda s: (s.lstm_share(), s.lstm), PASSED),
    "06.1-percent": (
        check_lstm_share,
        lambda s: (100 * s.lstm_share(), s.lstm),
        "that is a percentage",
    ),
    "06.1-complement": (
        check_lstm_share,
        lambda s: (1 - s.lstm_share(), s.lstm),
        "everything \\*but\\* the LSTM",
    ),
    "06.1-weights-only": (
        check_lstm_share,
        lambda s: (
            sum(p.numel() for n, p in s.lstm.lstm.named_parameters() if "weight" in n)
            / sum(p.numel() for p in s.lstm.parameters()),
            s.lstm,
        ),
        "weights and biases of all four gates",
    ),
    "06.1-not-a-number": (check_lstm_share, lambda s: ("most", s.lstm), "answer must be a number"),
    "06.1-stub": (check_lstm_share, lambda s: (None, s.lstm), "not answered yet"),
    # 06.2: the range a dynamic kernel picks for one call's input (one time step of `steps`)
    "06.2-right-7-bit": (
        check_dynamic_qparams,
        lambda s: (*_dyn_qparams(s.steps[2], 127), s.steps[2], _reducing_engine(), s.steps),
        PASSED,
    ),
    "06.2-right-qnnpack": (
        check_dynamic_qparams,
        lambda s: (*_dyn_qparams(s.steps[2], 255), s.steps[2], "qnnpack", s.steps),
        PASSED,
    ),
    "06.2-full-range-on-x86": (
        check_dynamic_qparams,
        lambda s: (*_dyn_qparams(s.steps[2], 255), s.steps[2], _reducing_engine(), s.steps),
        "that is the full 0..255 scale; on '.*' the dynamic kernels ask for reduce_range=True",
    ),
    "06.2-7-bit-on-qnnpack": (
        check_dynamic_qparams,
        lambda s: (*_dyn_qparams(s.steps[2], 127), s.steps[2], "qnnpack", s.steps),
        "that is a 7-bit \\(reduce_range\\) scale; on 'qnnpack' the dynamic kernels ignore",
    ),
    "06.2-range-over-all-steps": (
        check_dynamic_qparams,
        lambda s: (*_dyn_qparams(s.steps, 127), s.steps[2], _reducing_engine(), s.steps),
        "that range is over the whole tensor \\(all time steps\\)",
    ),
    "06.2-zero-point-not-clamped": (
        check_dynamic_qparams,
        lambda s: (_dyn_qparams(s.positive, 255)[0], -3, s.positive, "qnnpack"),
        "zero_point -3 is off .* clamped to 0..255",
    ),
    "06.2-range-without-zero": (
        check_dynamic_qparams,
        lambda s: (float(s.positive.max() - s.positive.min()) / 255, 0, s.positive, "qnnpack"),
        "is off: \\(max - min\\) / 255 over this call's input, with the range widened to",
    ),
    "06.2-not-a-number": (
        check_dynamic_qparams,
        lambda s: ("0.01", 0, s.steps[2], "qnnpack"),
        "scale must be a number",
    ),
    "06.2-stub": (check_dynamic_qparams, lambda s: (None, None, s.steps[2]), "not answered yet"),
    # 08.1: the STE gradient of fake quantization (3-bit signed grid, scale 0.25)
    "08.1-right": (check_ste_gradient, lambda s: (s.ste_grad(), s.ste_x, 0.25, 0, -4, 3), PASSED),
    "08.1-right-bool-mask": (
        check_ste_gradient,
        lambda s: (s.ste_grad().bool(), s.ste_x, 0.25, 0, -4, 3),
        PASSED,
    ),
    "08.1-true-derivative-zeros": (
        check_ste_gradient,
        lambda s: (torch.zeros(len(s.ste_x)), s.ste_x, 0.25, 0, -4, 3),
        "all zeros is the true derivative of round",
    ),
    "08.1-ones-everywhere": (
        check_ste_gradient,
        lambda s: (torch.ones(len(s.ste_x)), s.ste_x, 0.25, 0, -4, 3),
        "clamped values get no gradient",
    ),
    "08.1-float-range-not-levels": (
        check_ste_gradient,
        lambda s: (((s.ste_x >= -1.0) & (s.ste_x <= 0.75)).float(), s.ste_x, 0.25, 0, -4, 3),
        "wrong at x = \\[-1.1.*0.8.*\\]: the test is on the rounded level",
    ),
    "08.1-wrong-shape": (
        check_ste_gradient,
        lambda s: (s.ste_grad()[:-1], s.ste_x, 0.25, 0, -4, 3),
        "one gradient per point",
    ),
    "08.1-stub": (check_ste_gradient, lambda s: (None, s.ste_x, 0.25, 0, -4, 3), "not answered"),
    # 08.2: an autograd Function: round forward, identity backward
    "08.2-right": (check_ste_function, lambda s: (_ste(torch.round, lambda g: g),), PASSED),
    "08.2-zero-gradient": (
        check_ste_function,
        lambda s: (_ste(torch.round, torch.zeros_like),),
        "backward should return grad_output unchanged",
    ),
    "08.2-ones-gradient": (
        check_ste_function,
        lambda s: (_ste(torch.round, torch.ones_like),),
        "backward should return grad_output unchanged",
    ),
    "08.2-floor-forward": (
        check_ste_function,
        lambda s: (_ste(torch.floor, lambda g: g),),
        "forward should round",
    ),
    "08.2-no-backward": (check_ste_function, lambda s: (_ste(torch.round),), "define backward"),
    "08.2-a-function": (
        check_ste_function,
        lambda s: (torch.round,),
        "pass a torch.autograd.Function subclass",
    ),
    "08.2-stub": (check_ste_function, lambda s: (None,), "not answered yet"),
    # 09.1: bytes of the fused model at mixed bit widths
    "09.1-right": (check_model_size, lambda s: (s.size(BITS_09), s.tiny, BITS_09), PASSED),
    "09.1-bits-not-bytes": (
        check_model_size,
        lambda s: (8 * s.size(BITS_09), s.tiny, BITS_09),
        "you counted bits, not bytes",
    ),
    "09.1-kib": (
        check_model_size,
        lambda s: (s.size(BITS_09) / 1024, s.tiny, BITS_09),
        "that is KiB",
    ),
    "09.1-no-scales": (
        check_model_size,
        lambda s: (s.size(BITS_09, scales=False), s.tiny, BITS_09),
        "4 bytes per output channel short",
    ),
    "09.1-per-tensor-scales": (
        check_model_size,
        lambda s: (s.size(BITS_09, per_tensor=True), s.tiny, BITS_09),
        "one 4-byte scale per output channel",
    ),
    "09.1-no-bias": (
        check_model_size,
        lambda s: (s.size(BITS_09, bias=False), s.tiny, BITS_09),
        "count the biases too",
    ),
    "09.1-unfused-bias": (
        check_model_size,
        lambda s: (s.size(BITS_09) - 16, s.tiny, BITS_09),
        "fold batch norm first",
    ),
    "09.1-all-8-bits": (
        check_model_size,
        lambda s: (s.size(dict.fromkeys(BITS_09, 8)), s.tiny, BITS_09),
        "every layer came out at 8 bits",
    ),
    "09.1-off": (
        check_model_size,
        lambda s: (s.size(BITS_09) + 3, s.tiny, BITS_09),
        "\\+3.0 bytes off",
    ),
    "09.1-stub": (check_model_size, lambda s: (None, s.tiny, BITS_09), "not answered yet"),
    # 09.2: the names on the Pareto front
    "09.2-right": (check_pareto_points, lambda s: (s.front(), s.points), PASSED),
    "09.2-dominated": (
        check_pareto_points,
        lambda s: ([*s.front(), "uniform 4"], s.points),
        "'uniform 4' is dominated by 'mixed 4'",
    ),
    "09.2-tie-on-accuracy-still-dominates": (
        check_pareto_points,
        lambda s: ([*s.front(), "uniform 8"], s.points),
        "'uniform 8' is dominated by 'mixed 6'.*a tie on one axis still counts",
    ),
    "09.2-missing-smallest": (
        check_pareto_points,
        lambda s: ([n for n in s.front() if n != "uniform 2"], s.points),
        "'uniform 2' belongs on the front.*nothing is smaller than it",
    ),
    "09.2-unknown-name": (
        check_pareto_points,
        lambda s: ([*s.front(), "mixed 5"], s.points),
        "\\['mixed 5'\\] are not points",
    ),
    "09.2-a-string": (check_pareto_points, lambda s: ("mixed 4", s.points), "answer with a list"),
    "09.2-stub": (check_pareto_points, lambda s: (None, s.points), "not answered yet"),
    # 15.1: mean SQNR gap per compare_bits over the ok runs
    "15.1-right": (check_sweep_gap, lambda s: (s.gaps(), s.results_csv), PASSED),
    "15.1-right-string-keys": (
        check_sweep_gap,
        lambda s: ({str(k): v for k, v in s.gaps().items()}, s.results_csv),
        PASSED,
    ),
    "15.1-sign-flipped": (
        check_sweep_gap,
        lambda s: ({k: -v for k, v in s.gaps().items()}, s.results_csv),
        "the sign is flipped",
    ),
    "15.1-asymmetric-only": (
        check_sweep_gap,
        lambda s: ({4: 21.0, 8: 45.5}, s.results_csv),
        "at 4 bits the mean gap over the seeds is 5.500 dB, not 21.000",
    ),
    "15.1-missing-bits": (
        check_sweep_gap,
        lambda s: ({4: s.gaps()[4]}, s.results_csv),
        "one entry per swept compare_bits \\[4, 8\\]",
    ),
    "15.1-not-a-number": (
        check_sweep_gap,
        lambda s: ({4: "5.5", 8: 1.25}, s.results_csv),
        "must be a finite number of dB",
    ),
    "15.1-a-list": (check_sweep_gap, lambda s: ([5.5, 1.25], s.results_csv), "answer with a dict"),
    "15.1-stub": (check_sweep_gap, lambda s: (None, s.results_csv), "not answered yet"),
    # 15.2: the runs of shard 2/3
    "15.2-right": (check_shard, lambda s: (s.runs(1, 3), s.notebook, s.grid, "2/3"), PASSED),
    "15.2-contiguous-block": (
        check_shard,
        lambda s: (s.runs()[2:4], s.notebook, s.grid, "2/3"),
        "a shard is not a contiguous block",
    ),
    "15.2-wrong-order": (
        check_shard,
        lambda s: (s.runs(1, 3)[::-1], s.notebook, s.grid, "2/3"),
        "right runs, wrong order",
    ),
    "15.2-zero-based": (
        check_shard,
        lambda s: (s.runs(2, 3), s.notebook, s.grid, "2/3"),
        "every 3-th run of the plan starting at run 2 \\(1-based\\)",
    ),
    "15.2-a-string": (
        check_shard,
        lambda s: (s.runs(1, 3)[0], s.notebook, s.grid, "2/3"),
        "answer with a list of run names",
    ),
    "15.2-stub": (check_shard, lambda s: (None, s.notebook, s.grid, "2/3"), "not answered yet"),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    return Setup(tmp_path_factory.mktemp("exercises"))


@pytest.mark.parametrize(("check", "arguments", "diagnosis"), CASES.values(), ids=CASES)
def test_check_grades_answer(setup, check, arguments, diagnosis, capsys):
    args = arguments(setup)
    exercise = re.match(r"Exercise \d+\.\d+", check.__doc__).group(0)
    if diagnosis is PASSED:
        check(*args)
        assert f"{exercise} passed" in capsys.readouterr().out
    else:
        with pytest.raises(ExerciseError, match=f"^{exercise}: .*{diagnosis}"):
            check(*args)


def test_every_check_has_a_right_answer_two_mistakes_and_a_stub():
    tested_above = {"check_throughput", "check_amdahl"}
    every = {n for n, f in vars(exercises).items() if n.startswith("check_") and callable(f)}
    # checks with a test file of their own: test_exercises_integer.py (notebook 04),
    # test_exercises_core.py (the core-technique exercises), one per notebook added later
    elsewhere = "\n".join(
        path.read_text() for path in Path(__file__).parent.glob("test_exercises_*.py")
    )
    checks = {name for name in every - tested_above if not re.search(rf"\b{name}\b", elsewhere)}
    assert {"check_requantize", "check_grid"} <= every - checks  # tested elsewhere, not lost
    rows = {}
    for case_id, (check, _, diagnosis) in CASES.items():
        kind = (
            "right" if diagnosis is PASSED else "stub" if case_id.endswith("-stub") else "mistake"
        )
        rows.setdefault(check.__name__, []).append(kind)
    assert set(rows) == checks
    for name, kinds in rows.items():
        assert kinds.count("right") >= 1 and kinds.count("stub") == 1, name
        assert kinds.count("mistake") >= 2, name


def test_the_exercise_setup_is_what_the_rows_assume(setup):
    """The rows rest on these facts; if one breaks, the row would test nothing."""
    assert setup.worst_layer(4) == "conv1.0"
    w = setup.weight.reshape(6, -1)
    assert not torch.equal(w.amax(1), w.abs().amax(1))  # max-not-abs differs from right
    assert setup.front() == ["uniform 2", "mixed 2.5", "mixed 4", "mixed 6"]
    assert setup.gaps() == {4: 5.5, 8: 1.25}
    assert [run.name for run in sweep.plan([setup.notebook], setup.grid)] == setup.runs()
