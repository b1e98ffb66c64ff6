"""Quantization-aware training: W8A8 converts to int8, lower bits stay simulated, the recipe's
freezing steps, determinism, and bad input. Every run fine-tunes briefly on a small subset."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.ao.nn.intrinsic.qat import ConvBnReLU2d
from torch.ao.quantization.observer import MovingAveragePerChannelMinMaxObserver

from qnb import data, deploy, eager, models, qat
from qnb.env import hide_deprecation_warnings

hide_deprecation_warnings()
pytestmark = [
    pytest.mark.usefixtures("torch_state"),
    pytest.mark.filterwarnings("ignore:TypedStorage is deprecated:UserWarning"),
]

SMALL = {"epochs": 1, "augment": models.random_shift(2), "progress": False}


def loader(limit=256, batch_size=64):  # 4 steps of 64 by default
    return data.train_loader(batch_size, seed=0, limit=limit)


@pytest.fixture(scope="module")
def plain():
    return models.pretrained("plain_cnn")


@pytest.fixture(scope="module")
def evals():
    return data.test_loader(limit=200)


@pytest.fixture(scope="module")
def calib():
    return data.calibration_loader(64, 32)


def run(model, evals, train=None, **kw):
    return qat.qat(model, train or loader(), eval_loader=evals, **{**SMALL, **kw})


@pytest.fixture(scope="module")
def w8a8(plain, evals, calib):
    engine = torch.backends.quantized.engine
    try:
        return run(plain, evals, calib=calib, engine="x86")
    finally:
        torch.backends.quantized.engine = engine


@pytest.fixture(scope="module")
def w4a4(plain, evals):
    return run(plain, evals, weight_bits=4, act_bits=4, log_every=1)


def test_w8a8_converts_to_a_real_int8_model(w8a8):
    int8, report = w8a8
    assert not report.simulated and "int8" in report.message
    kinds = {type(m).__name__ for m in int8.modules()}
    assert {"Quantize", "DeQuantize", "ConvReLU2d", "LinearReLU", "Linear"} <= kinds
    assert all(
        type(m).__module__.startswith("torch.ao.nn.quantized")
        or type(m).__module__.startswith("torch.ao.nn.intrinsic.quantized")
        for m in int8.modules()
        if not list(m.children()) and not isinstance(m, nn.Identity | nn.MaxPool2d)
    )
    weight = int8.conv1.weight()  # per channel, symmetric: every zero point is 0
    assert weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
    assert not weight.q_per_channel_zero_points().any()
    assert int8.qnb_engine == "x86"
    # the int8 kernels compute what the fake-quantized model trained with
    assert abs(report.int8_acc - report.fake_quant_acc) <= 0.01
    assert report.fake_quant_acc > 0.9
    assert "reduce_range" in report.qconfig


def test_int8_model_refuses_another_engine(w8a8):
    int8, _ = w8a8
    torch.backends.quantized.engine = "qnnpack"
    with pytest.raises(eager.EngineMismatchError, match="x86"):
        int8(torch.zeros(1, 1, 28, 28))


def test_below_8_bits_the_model_is_simulated(w4a4):
    model, report = w4a4
    assert report.simulated and report.int8_acc is None
    assert "simulated" in report.message and "simulated" in str(report)
    assert not model.training
    assert not qat.observers_enabled(model) and qat.bn_frozen(model)
    assert 0.5 < report.fake_quant_acc <= 1.0
    assert model(torch.zeros(2, 1, 28, 28)).dtype == torch.float32


def per_channel_levels(w: torch.Tensor) -> int:
    return max(len(torch.unique(row)) for row in w.reshape(len(w), -1))


def test_w4_weights_lie_on_a_16_level_grid_per_channel(w4a4):
    model, _ = w4a4
    with torch.no_grad():
        fc1 = model.fc1.weight_fake_quant(model.fc1.weight)
        conv = model.conv2
        assert isinstance(conv, ConvBnReLU2d)
        scale = conv.bn.weight / torch.sqrt(conv.bn.running_var + conv.bn.eps)
        folded = conv.weight_fake_quant(conv.weight * scale.reshape(-1, 1, 1, 1))
    for w in (fc1, folded):
        assert per_channel_levels(w) <= 16
        assert per_channel_levels(w) > 4  # a real 4-bit grid, not collapsed
    assert per_channel_levels(model.fc1.weight.detach()) > 16  # the float shadow weights
    assert model.fc1.weight_fake_quant.qscheme == torch.per_channel_symmetric
    assert (model.fc1.weight_fake_quant.quant_min, model.fc1.weight_fake_quant.quant_max) == (
        -8,
        7,
    )


def test_history_has_one_row_per_logged_step(w4a4):
    _, report = w4a4
    assert [row["step"] for row in report.history] == [1, 2, 3, 4]
    assert report.steps == 4 and report.epochs == 1
    table = report.table()
    assert {"step", "epoch", "loss", "train_acc", "eval_acc", "lr"} <= set(table.columns)
    assert table["loss"].notna().all() and math.isclose(table["epoch"].iloc[-1], 1.0)
    assert report.fake_quant_acc == report.history[-1]["eval_acc"]


def test_bn_and_observers_freeze_after_the_given_steps(plain, evals):
    _, report = run(
        plain,
        evals,
        weight_bits=4,
        act_bits=4,
        freeze_bn_after=1,
        freeze_observers_after=3,
        log_every=1,
    )
    assert (report.bn_frozen_at, report.observers_frozen_at) == (1, 3)
    assert [r["bn_frozen"] for r in report.history] == [True] * 4
    assert [r["observers_frozen"] for r in report.history] == [False, False, True, True]


def test_frozen_ranges_stay_where_the_warm_up_put_them(plain, evals, calib):
    model, report = run(
        plain, evals, weight_bits=4, act_bits=4, calib=calib, freeze_observers_after=0
    )
    assert report.observers_frozen_at == 0 and report.history[0]["step"] == 0  # warm-up row
    original = plain.fc2.weight.detach()
    assert not torch.equal(model.fc2.weight.detach(), original)  # the weights were trained
    obs = MovingAveragePerChannelMinMaxObserver(
        dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-8, quant_max=7
    )
    obs(original)
    scale, _ = obs.calculate_qparams()
    torch.testing.assert_close(model.fc2.weight_fake_quant.scale, scale)  # not the trained ones


def test_caller_model_is_unchanged_and_runs_are_deterministic(plain, evals, w4a4):
    before = copy.deepcopy(plain.state_dict())
    again, report = run(plain, evals, weight_bits=4, act_bits=4, log_every=1)
    first, first_report = w4a4
    for key, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert report.history == first_report.history
    after = plain.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not plain.training and not qat.fake_quants(plain)


def test_the_same_model_on_any_thread_count(plain, evals, w4a4):
    """Fine-tuning runs on models.TRAIN_THREADS threads: a caller on 2 threads gets the model a
    caller on 1 thread gets, bit for bit, and keeps its own thread count."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads > 1 else 2)
        other, _ = run(plain, evals, weight_bits=4, act_bits=4, log_every=1)
        assert torch.get_num_threads() == (1 if threads > 1 else 2)
    finally:
        torch.set_num_threads(threads)
    first, _ = w4a4
    for key, value in first.state_dict().items():
        assert torch.equal(value, other.state_dict()[key]), key


class NoStub(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))


@pytest.mark.parametrize(
    ("kw", "error", "words"),
    [
        ({"weight_bits": 1}, ValueError, "weight_bits must be an int in 2..8, got 1"),
        ({"weight_bits": 16}, ValueError, "weight_bits must be an int in 2..8, got 16"),
        ({"act_bits": 9}, ValueError, "act_bits must be an int in 2..8, got 9"),
        ({"act_bits": "4"}, TypeError, "act_bits must be an int in 2..8, got '4'"),
        ({"weight_bits": True}, TypeError, "weight_bits"),
        ({"epochs": 0}, ValueError, "epochs must be an int >= 1, got 0"),
        ({"lr": 0.0}, ValueError, "lr must be a finite number > 0, got 0.0"),
        ({"lr": math.nan}, ValueError, "lr must be a finite number > 0"),
        ({"engine": "tpu"}, ValueError, "engine must be one of"),
        ({"freeze_bn_after": -1}, ValueError, "freeze_bn_after must be an int >= 0, got -1"),
        ({"freeze_observers_after": 1.5}, TypeError, "freeze_observers_after"),
        ({"freeze_observers_after": 0}, ValueError, "pass calib"),
        ({"log_every": 0}, ValueError, "log_every"),
        ({"augment": 2}, TypeError, "augment must be a function or None, got int"),
        ({"loss_fn": "mse"}, TypeError, "loss_fn must be a function or None, got str"),
        ({"eval_loader": torch.zeros(3)}, TypeError, "eval_loader must be a DataLoader"),
        ({"progress": "yes"}, TypeError, "progress"),
    ],
)
def test_bad_input(plain, kw, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(".", r"\.")):
        qat.qat(plain, loader(), **kw)


def test_bad_models(plain):
    with pytest.raises(ValueError, match="no QuantStub"):
        qat.qat(NoStub(), loader())
    with pytest.raises(TypeError, match="torch.nn.Module"):
        qat.qat("plain_cnn", loader())
    prepared = qat.prepare(plain, qat.qat_qconfig(4, 4))
    with pytest.raises(ValueError, match="already prepared"):
        qat.qat(prepared, loader())


@pytest.mark.parametrize(
    ("train", "error", "words"),
    [
        (torch.zeros(4, 1, 28, 28), TypeError, "train_loader must be a DataLoader"),
        ([], ValueError, "train_loader must be a DataLoader .* of length 0"),
        (iter([(torch.zeros(2, 1, 28, 28), torch.zeros(2))]), ValueError, "without a length"),
        ([torch.zeros(2, 1, 28, 28)], TypeError, "must yield \\(input, target\\) pairs"),
    ],
)
def test_bad_train_loaders(plain, train, error, words):
    with pytest.raises(error, match=words):
        qat.qat(plain, train)


@pytest.mark.parametrize(
    ("bits", "engine", "qrange", "reduce_range"),
    [
        (8, "x86", (0, 127), True),  # torch's x86 QAT default: 7-bit activations
        (8, "qnnpack", (0, 255), False),
        (4, "x86", (0, 15), False),  # simulated: no int16 accumulation to protect
        (2, "x86", (0, 3), False),
    ],
)
def test_qconfig_ranges(bits, engine, qrange, reduce_range):
    if engine not in torch.backends.quantized.supported_engines:
        pytest.skip(f"engine {engine} not in this PyTorch build")
    config = qat.qat_qconfig(bits, bits, engine)
    act, weight = config.activation(), config.weight()
    assert (act.quant_min, act.quant_max) == qrange
    assert act.activation_post_process.reduce_range is reduce_range
    assert (weight.quant_min, weight.quant_max) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert weight.qscheme == torch.per_channel_symmetric and weight.ch_axis == 0


def test_default_learning_rate_is_lower_at_8_bits(w8a8, w4a4):
    assert w8a8[1].lr == qat.default_lr(8, 8) == 1e-4
    assert w4a4[1].lr == qat.default_lr(4, 4) == 1e-3
    assert qat.default_lr(8, 4) == 1e-3
    assert qat.default_lr(2, 2) == qat.default_lr(8, 2) == 3e-3  # chosen on validation


def test_int8_model_saves_and_reloads(w8a8, evals, tmp_path):
    int8, report = w8a8
    path = deploy.save_state_dict(int8, tmp_path / "qat_int8.pt")
    again = deploy.load_int8("plain_cnn", path)
    x = next(iter(evals))[0][:16]
    assert torch.equal(int8(x), again(x))


def test_depthwise_model_converts_too(evals):
    model = models.build("depthwise_cnn", seed=0).eval()
    int8, report = run(model, evals, train=loader(64, 32))
    assert not report.simulated and report.steps == 2
    kinds = {type(m).__name__ for m in int8.modules()}
    assert {"Quantize", "ConvReLU2d", "Linear", "DeQuantize"} <= kinds
    assert int8(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_torchvision_quantizable_resnet18_fine_tunes_and_converts():
    """Any eval-able model with a QuantStub: torchvision's quantizable ResNet-18 (random
    weights) on a few random batches, fused by its own fuse_model(is_qat=True)."""
    from torchvision.models.quantization import resnet18

    torch.manual_seed(0)
    model = resnet18(weights=None, quantize=False).eval()
    gen = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 1000, (4,), generator=gen))
        for _ in range(3)
    ]
    int8, report = qat.qat(
        model, batches, epochs=1, calib=batches[:1], engine="x86", progress=False
    )
    assert not report.simulated and report.steps == 3 and report.int8_acc is None
    kinds = {type(m).__name__ for m in int8.modules()}
    assert {"Quantize", "ConvReLU2d", "QFunctional", "DeQuantize"} <= kinds
    out = int8(batches[0][0])
    assert out.shape == (4, 1000) and torch.isfinite(out).all()
    assert not any(type(m).__name__.startswith("ConvBn") for m in model.modules())  # unchanged
