"""Eager static PTQ: the pipeline, its guards, per-layer error, save and reload."""

from __future__ import annotations

import copy
import math

import matplotlib
import pytest
import torch
from torch import nn
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import DeQuantStub, QuantStub, prepare

from qnb import data, deploy, eager, models, ptq
from qnb.env import hide_deprecation_warnings
from qnb.estimators import NotCalibratedError

matplotlib.use("Agg")
hide_deprecation_warnings()
pytestmark = [
    pytest.mark.usefixtures("torch_state"),
    pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.:UserWarning"),
    pytest.mark.filterwarnings("ignore:TypedStorage is deprecated:UserWarning"),
]


def batches(n: int = 2, size: int = 8, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(size, 1, 28, 28, generator=gen) for _ in range(n)]


@pytest.fixture(scope="module")
def plain():
    return models.pretrained("plain_cnn")


@pytest.fixture(scope="module")
def calib():
    return data.calibration_loader(256, 32)


@pytest.fixture(scope="module")
def x86(plain, calib):
    engine = torch.backends.quantized.engine
    try:
        return ptq.quantize_static(plain, calib, engine="x86")
    finally:
        torch.backends.quantized.engine = engine


class Tiny(nn.Module):
    """Two parallel convs joined by `join`; a QuantStub that `call_quant` may skip."""

    def __init__(self, join: str = "ff_add", call_quant: bool = True) -> None:
        super().__init__()
        self.join, self.call_quant = join, call_quant
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2.weight.data *= 5  # so the two outputs get different scales
        if join.startswith("ff"):
            self.ff = FloatFunctional()
        self.head = nn.Linear(8 * 28 * 28 if "cat" in join else 4 * 28 * 28, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.call_quant:
            x = self.quant(x)
        a, b = self.conv1(x), self.conv2(x)
        if self.join == "add":
            y = a + b  # the float op the guard must point at
        elif self.join == "cat":
            y = torch.cat([a, b], 1)  # the float op the guard must point at
        elif self.join == "ff_cat":
            y = self.ff.cat([a, b], 1)
        else:
            y = self.ff.add(a, b)
        return self.dequant(self.head(torch.flatten(y, 1)))


def tiny(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    return Tiny(**kwargs).eval()


# --- the pipeline ---------------------------------------------------------------------------


def test_x86_int8_plain_cnn_is_within_one_point_of_fp32(plain, x86):
    int8, report = x86
    fp32_acc, int8_acc = models.evaluate(plain), models.evaluate(int8)
    assert int8_acc >= fp32_acc - 0.01, (fp32_acc, int8_acc)
    assert report.engine == "x86" and report.calibration_batches == 8
    assert int8.qnb_engine == "x86" and torch.backends.quantized.engine == "x86"


def test_report_says_what_was_quantized_fused_and_kept_float(x86):
    report = x86[1]
    rows = {m.name: m for m in report.modules}
    assert report.names("quantized") == ["quant", "conv1", "conv2", "fc1", "fc2", "dequant"]
    assert rows["conv1"].int8_type == "QuantizedConvReLU2d"
    assert rows["fc1"].int8_type == "QuantizedLinearReLU"
    assert "per-channel" in rows["conv1"].reason
    assert rows["bn1"].status == "fused" and "folded into conv1" in rows["bn1"].reason
    assert rows["relu3"].status == "fused" and "fc1" in rows["relu3"].reason
    assert rows["pool1"].status == "float" and "quantized tensors directly" in rows["pool1"].reason
    assert "PerChannelMinMaxObserver" in report.qconfig and report.reduce_range is True
    table = report.table()
    assert list(table.columns) == ["name", "float_type", "int8_type", "status", "reason"]
    assert len(table) == 13 and "QuantizedConvReLU2d" in str(report)


def test_the_callers_model_is_not_changed(calib):
    model = models.build("plain_cnn", seed=0).eval()
    before = copy.deepcopy(model.state_dict())
    types = [type(m) for m in model.modules()]
    ptq.quantize_static(model, calib, num_batches=1)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [type(m) for m in model.modules()] == types
    assert not hasattr(model, "qconfig") and not model._forward_pre_hooks
    assert not model.training


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack", "onednn"])
def test_other_engines_agree_with_fp32(plain, calib, engine):
    if engine not in torch.backends.quantized.supported_engines:
        pytest.skip(f"{engine} is not supported by this PyTorch build")
    int8, report = ptq.quantize_static(plain, calib, engine=engine, num_batches=2)
    assert report.engine == engine == torch.backends.quantized.engine
    assert report.reduce_range is (engine == "fbgemm")
    images, _ = data.tensors(False)
    with torch.inference_mode():
        agree = (int8(images[:256]).argmax(1) == plain(images[:256]).argmax(1)).float().mean()
    assert agree >= 0.97


def test_per_tensor_weights_and_a_qnb_estimator(calib):
    model = models.build("depthwise_cnn", seed=0).eval()
    int8, report = ptq.quantize_static(
        model, calib, num_batches=1, per_channel=False, act_method="minmax"
    )
    weight = int8.stem.weight()  # symmetric: stored as affine with zero point 0
    assert weight.qscheme() == torch.per_tensor_affine and weight.q_zero_point() == 0
    assert "MinMax (" in report.qconfig and "per_tensor_symmetric" in report.qconfig
    rows = {m.name: m for m in report.modules}
    assert rows["block1.dw"].int8_type == "QuantizedConvReLU2d"
    assert "per-tensor" in rows["block1.dw"].reason
    assert rows["pool"].status == "float" and rows["fc"].status == "quantized"


def test_float_functional_add_and_cat_are_quantized():
    for join in ("ff_add", "ff_cat"):
        int8, report = ptq.quantize_static(tiny(join=join), batches())
        assert {m.name: m.int8_type for m in report.modules}["ff"] == "QFunctional"
        assert int8(batches(1)[0]).shape == (8, 3)


# --- guards ---------------------------------------------------------------------------------


def test_unknown_engine_lists_the_supported_ones():
    with pytest.raises(ValueError, match="engine must be one of") as err:
        ptq.quantize_static(tiny(), batches(), engine="tpu")
    for engine in torch.backends.quantized.supported_engines:
        if engine != "none":
            assert repr(engine) in str(err.value)
    assert "'tpu'" in str(err.value)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="act_method must be None"):
        ptq.quantize_static(tiny(), batches(), act_method="magic")
    with pytest.raises(TypeError, match="per_channel must be True or False"):
        ptq.quantize_static(tiny(), batches(), per_channel="yes")
    with pytest.raises(ValueError, match="num_batches must be an int >= 1, got 0"):
        ptq.quantize_static(tiny(), batches(), num_batches=0)


def test_train_mode_is_refused():
    with pytest.raises(ValueError, match=r"train mode .*call model.eval\(\) first.*batch norm"):
        ptq.quantize_static(models.build("plain_cnn", seed=0), batches())


def test_a_model_without_quant_stub_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).eval()
    with pytest.raises(ValueError, match="has no QuantStub.*QuantStub and a DeQuantStub"):
        ptq.quantize_static(model, batches())


def test_a_quant_stub_never_called_is_refused():
    with pytest.raises(NotCalibratedError, match="QuantStub 'quant' is defined but was never"):
        ptq.quantize_static(tiny(call_quant=False), batches())


def test_observers_that_saw_nothing_are_named():
    class Branchy(Tiny):
        def __init__(self) -> None:
            super().__init__()
            self.rare = nn.Conv2d(1, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] > 1000:
                x = self.rare(x)
            return super().forward(x)

    with pytest.raises(NotCalibratedError, match=r"'rare' \(Conv2d\) saw no data.*qconfig = None"):
        ptq.quantize_static(Branchy().eval(), batches())


def test_zero_calibration_batches_are_refused():
    with pytest.raises(ValueError, match="calib yielded no batches"):
        ptq.quantize_static(tiny(), [])


def test_float_add_on_quantized_tensors_names_float_functional_and_the_line():
    with pytest.raises(ptq.QuantizedTensorError) as err:
        ptq.quantize_static(tiny(join="add"), batches())
    message = str(err.value)
    assert "FloatFunctional" in message and "self.ff.add(a, b)" in message
    assert "test_ptq.py:" in message and "y = a + b" in message
    assert "aten::add" in message and "in Tiny.forward" in message


def test_a_float_op_in_a_submodule_names_the_submodule():
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) * 2

    model = nn.Sequential(QuantStub(), Residual(), DeQuantStub()).eval()
    with pytest.raises(ptq.QuantizedTensorError) as err:
        ptq.quantize_static(model, batches())
    message = str(err.value)
    assert "in module '1' (Residual)" in message and "return self.conv(x) * 2" in message
    assert "FloatFunctional" in message


def test_torch_cat_of_differently_scaled_tensors_names_float_functional():
    with pytest.raises(ptq.QuantizedTensorError) as err:
        ptq.quantize_static(tiny(join="cat"), batches())
    message = str(err.value)
    assert "torch.cat" in message and "FloatFunctional" in message and "self.ff.cat" in message
    assert "y = torch.cat([a, b], 1)" in message


def test_a_float_module_fed_a_quantized_tensor_is_named():
    model = tiny()
    model.head.qconfig = None  # kept float, but nothing dequantizes its input
    with pytest.raises(ptq.QuantizedTensorError, match=r"float module 'head' \(Linear\) received"):
        ptq.quantize_static(model, batches())


def test_an_int8_module_fed_a_float_tensor_is_named():
    class Late(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant, self.conv, self.dequant = QuantStub(), nn.Conv2d(1, 2, 3), DeQuantStub()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv(x)  # before the QuantStub: the int8 conv gets a float tensor
            return self.dequant(self.quant(x))

    with pytest.raises(ptq.QuantizedTensorError, match=r"int8 module 'conv' .* float tensor"):
        ptq.quantize_static(Late().eval(), batches())


def test_prepare_twice_is_refused():
    model = tiny()
    model.qconfig = ptq.qconfig_for("x86")
    prepared = prepare(model)
    with pytest.raises(ValueError, match="already prepared.*start from the float model"):
        ptq.quantize_static(prepared, batches())


def test_convert_twice_is_refused(x86):
    with pytest.raises(ValueError, match="already converted.*start from the float model"):
        ptq.quantize_static(x86[0], batches())


def test_running_under_another_engine_is_refused(x86):
    int8 = x86[0]
    torch.backends.quantized.engine = "qnnpack"
    with pytest.raises(ptq.EngineMismatchError, match="built for engine 'x86' but the current"):
        int8(batches(1)[0])
    with pytest.raises(ptq.EngineMismatchError, match="torch.backends.quantized.engine = 'x86'"):
        eager.engine_of(int8)
    torch.backends.quantized.engine = "x86"
    assert int8(batches(1)[0]).shape == (8, 10)


def test_cuda_model_is_refused(monkeypatch):
    monkeypatch.setattr(eager, "_is_cuda", lambda t: True)
    with pytest.raises(ValueError, match="quantized inference here is CPU-only.*model.cpu()"):
        ptq.quantize_static(tiny(), batches())


def test_cuda_calibration_batch_and_cuda_input_are_refused(monkeypatch, x86):
    calib = batches()
    monkeypatch.setattr(eager, "_is_cuda", lambda t: t is calib[1])
    with pytest.raises(ValueError, match="CPU-only: a calibration batch is a CUDA tensor"):
        ptq.quantize_static(tiny(), calib)
    with pytest.raises(ValueError, match="CPU-only: input 0 of the int8 model is a CUDA"):
        x86[0](calib[1])


def test_a_failed_run_leaves_the_engine_as_it_was():
    torch.backends.quantized.engine = "x86"
    with pytest.raises(ValueError):
        ptq.quantize_static(tiny(), [], engine="qnnpack")
    assert torch.backends.quantized.engine == "x86"


# --- per-layer error ------------------------------------------------------------------------


def test_layer_errors_one_finite_row_per_quantized_layer_worst_first(plain, x86):
    images, labels = data.tensors(False)
    df = ptq.layer_errors(plain, x86[0], (images[:64], labels[:64]))
    assert sorted(df["layer"]) == sorted(["quant", "conv1", "conv2", "fc1", "fc2"])
    assert df["sqnr_db"].map(math.isfinite).all() and (df["sqnr_db"] > 15).all()
    assert df["sqnr_db"].is_monotonic_increasing and (df["mse"] > 0).all()
    assert df.set_index("layer").loc["conv1", "int8_type"] == "QuantizedConvReLU2d"
    ax = ptq.plot_layer_errors(df, top=3)
    assert len(ax.patches) == 3
    matplotlib.pyplot.close("all")


def test_layer_errors_checks_its_models(plain, x86):
    with pytest.raises(ValueError, match="int8_model must be an int8 model"):
        ptq.layer_errors(plain, plain, batches(1)[0])
    with pytest.raises(ValueError, match="float_model is already converted"):
        ptq.layer_errors(x86[0], x86[0], batches(1)[0])
    with pytest.raises(ValueError, match="none of int8_model's quantized layers"):
        ptq.layer_errors(nn.Sequential(nn.Identity()).eval(), x86[0], batches(1)[0])


def test_layer_errors_cover_float_functional():
    model = tiny()
    int8, _ = ptq.quantize_static(model, batches())
    df = ptq.layer_errors(model, int8, batches(1, seed=1)[0])
    assert set(df["layer"]) == {"quant", "conv1", "conv2", "ff", "head"}
    assert df["sqnr_db"].map(math.isfinite).all()


# --- save and reload ------------------------------------------------------------------------


def test_torchscript_round_trip_gives_identical_outputs(x86, tmp_path):
    int8, x = x86[0], batches(1)[0]
    path = deploy.save_torchscript(int8, tmp_path / "int8.pt", x)
    torch.backends.quantized.engine = "qnnpack"  # the loader sets the model's engine back
    loaded = deploy.load_torchscript(path)
    assert torch.backends.quantized.engine == "x86" and loaded.qnb_engine == "x86"
    with torch.inference_mode():
        assert torch.equal(loaded(x), int8(x))


def test_state_dict_round_trip_gives_identical_outputs(x86, tmp_path):
    int8, x = x86[0], batches(1)[0]
    path = deploy.save_state_dict(int8, tmp_path / "int8_state.pt")
    loaded = deploy.load_int8("plain_cnn", path)
    assert loaded.qnb_engine == "x86" and loaded.qnb_recipe == int8.qnb_recipe
    with torch.inference_mode():
        assert torch.equal(loaded(x), int8(x))
    rebuilt = deploy.load_int8(lambda: models.build("plain_cnn", seed=3), path, engine="x86")
    with torch.inference_mode():
        assert torch.equal(rebuilt(x), int8(x))


def test_state_dict_round_trip_on_qnnpack(tmp_path):
    int8, _ = ptq.quantize_static(tiny(), batches(), engine="qnnpack", per_channel=False)
    path = deploy.save_state_dict(int8, tmp_path / "tiny.pt")
    torch.backends.quantized.engine = "x86"
    loaded = deploy.load_int8(tiny(), path)
    assert torch.backends.quantized.engine == "qnnpack"
    x = batches(1, seed=2)[0]
    with torch.inference_mode():
        assert torch.equal(loaded(x), int8(x))


def test_reload_guards(x86, tmp_path):
    path = deploy.save_state_dict(x86[0], tmp_path / "int8_state.pt")
    with pytest.raises(ValueError, match="built for 'x86'.*engine='x86' or None"):
        deploy.load_int8("plain_cnn", path, engine="qnnpack")
    with pytest.raises(ValueError, match="does not fit the rebuilt recipe"):
        deploy.load_int8("depthwise_cnn", path)
    with pytest.raises(FileNotFoundError, match="is not a file"):
        deploy.load_torchscript(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="not a TorchScript archive"):
        text = path.with_suffix(".txt")
        text.write_text("x")
        deploy.load_torchscript(text)
    with pytest.raises(ValueError, match="int8_model must be an int8 model"):
        deploy.save_torchscript(models.build("plain_cnn").eval(), tmp_path / "f.pt", batches(1)[0])


def test_torchvision_mobilenet_quantizes_with_its_unused_skip_adds_left_float(tmp_path):
    from torchvision.models.quantization import mobilenet_v2

    torch.manual_seed(0)
    model = mobilenet_v2(weights=None, quantize=False).eval()  # fuse_model() is called for us
    calib = [torch.randn(2, 3, 32, 32) for _ in range(2)]
    int8, report = ptq.quantize_static(model, calib, engine="x86")

    residual = {
        f"features.{i}.skip_add"
        for i, b in enumerate(model.features)
        if getattr(b, "use_res_connect", False)
    }
    rows = {row.name: row for row in report.modules}
    unused = {n for n, r in rows.items() if n.endswith("skip_add") and r.status == "float"}
    assert residual and unused and not residual & unused
    assert all(rows[n].status == "quantized" for n in residual)
    assert all(rows[n].reason == "not called in forward" for n in unused)
    assert int8.qnb_recipe["unused_float"] == sorted(unused, key=list(rows).index)

    path = deploy.save_state_dict(int8, tmp_path / "mnv2.pt")
    loaded = deploy.load_int8(lambda: mobilenet_v2(weights=None, quantize=False), path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), int8(x))


def test_torchvision_models_are_fused_by_their_fuse_model():
    from torchvision.models.quantization import resnet18

    from qnb import simulate

    model = resnet18(weights=None, quantize=False).eval()
    fused = simulate.fused_copy(model)
    assert not fused.training and all(not m.training for m in fused.modules())
    assert isinstance(fused.bn1, nn.Identity) and type(fused.conv1).__name__ == "ConvReLU2d"
    assert isinstance(model.bn1, nn.BatchNorm2d)  # the caller's model is not changed
