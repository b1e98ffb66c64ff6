"""qnb.dynamic: dynamic quantization (LSTM + Linear) and torchao weight-only int8/int4."""

import io
import warnings

import pytest
import torch
import torch.ao.nn.quantized.dynamic as nnqd
from torch import nn
from torchao.quantization import Int8Tensor, IntxUnpackedToInt8Tensor

import qnb.dynamic as dynamic
import qnb.models as qm
from qnb import data
from qnb import env as qnb_env
from qnb.dynamic import (
    ModuleReport,
    NotConvertedWarning,
    activation_qparams,
    quantize_dynamic,
    quantize_weight_only,
    reduces_range,
)
from qnb.env import hide_deprecation_warnings


@pytest.fixture(autouse=True)
def quiet_and_engine_restored(monkeypatch):
    """torch.ao's deprecation notices hidden; the quantized engine restored after each test."""
    monkeypatch.setattr(torch.backends.quantized, "engine", torch.backends.quantized.engine)
    with warnings.catch_warnings():
        hide_deprecation_warnings()
        yield


ENGINES = ", ".join(repr(e) for e in torch.backends.quantized.supported_engines if e != "none")


def images(n=32):
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def tiny_lstm(hidden=16):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return qm.LSTMClassifier(hidden).eval()


@pytest.fixture(scope="module")
def trained():
    """A briefly trained LSTM (about 80% test accuracy, seconds) and a test batch."""
    model = qm.train(
        qm.build("lstm", seed=0), epochs=3, limit=2048, lr=1e-2, shift=0, progress=False
    )
    x, _ = next(iter(data.test_loader(256)))
    return model, x


def compare(model, quantized, x):
    """Argmax agreement and the largest logit error relative to the largest logit."""
    with torch.no_grad():
        ref, out = model(x), quantized(x)
    agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
    return agree, ((out - ref).abs().max() / ref.abs().max()).item()


def serialized_size(model):
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def ours(caught):
    """The NotConvertedWarning messages among the caught warnings (pytest.warns sees all)."""
    return [str(w.message) for w in caught if w.category is NotConvertedWarning]


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# --- the LSTM model -------------------------------------------------------------------------


def test_lstm_classifier_reads_rows_and_is_registered():
    model = qm.build("lstm", seed=0)
    assert isinstance(model, qm.LSTMClassifier) and model.fuse_groups() == []
    assert model.lstm.input_size == 28 and model.lstm.batch_first and model.lstm.num_layers == 1
    assert model.eval()(images(5)).shape == (5, 10)
    assert qm.TRAINING["lstm"]["shift"] == 0 and qm.cache_path("lstm").name.startswith("lstm-")


# --- dynamic quantization -------------------------------------------------------------------


def test_dynamic_converts_lstm_and_linear_on_a_copy():
    model = tiny_lstm().train()
    before = state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvertedWarning)
        quantized, report = quantize_dynamic(model)
    assert type(quantized.lstm) is nnqd.LSTM and type(quantized.fc) is nnqd.Linear
    assert not quantized.training and torch.backends.quantized.engine == "x86"
    assert report == [
        ModuleReport("lstm", "LSTM", "DynamicQuantizedLSTM", "int8"),
        ModuleReport("fc", "Linear", "DynamicQuantizedLinear", "int8"),
    ]
    # the caller's model is untouched
    assert type(model.lstm) is nn.LSTM and type(model.fc) is nn.Linear and model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    agree, error = compare(model.eval(), quantized, images())
    assert agree >= 0.9 and error < 0.1


def test_dynamic_on_a_trained_lstm_keeps_predictions_and_shrinks_it(trained):
    model, x = trained
    quantized, _ = quantize_dynamic(model)
    agree, error = compare(model, quantized, x)
    assert agree >= 0.95 and error < 0.1
    assert serialized_size(quantized) < 0.4 * serialized_size(model)  # int8 LSTM + Linear


def test_dynamic_float16_and_only_the_requested_types():
    model = tiny_lstm()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvertedWarning)  # LSTM was not asked for
        quantized, report = quantize_dynamic(model, types=nn.Linear, dtype=torch.float16)
    assert type(quantized.lstm) is nn.LSTM and type(quantized.fc) is nnqd.Linear
    assert quantized.fc._packed_params.dtype == torch.float16
    assert report[0] == ModuleReport("lstm", "LSTM", None, "float32", "not requested")
    assert report[1].quantized == "DynamicQuantizedLinear" and report[1].weight == "float16"


def test_dynamic_warns_about_types_it_cannot_convert():
    model = qm.build("plain_cnn", seed=0)
    with pytest.warns(NotConvertedWarning) as caught:
        quantized, report = quantize_dynamic(model, types=(nn.Conv2d, nn.Linear, nn.LSTM))
    messages = ours(caught)
    assert messages == [
        "quantize_dynamic has no dynamic int8 version of Conv2d; 2 Conv2d modules stayed float",
        "types has LSTM, but the model has no LSTM module: nothing to convert",
    ]
    assert all(w.filename == __file__ for w in caught if w.category is NotConvertedWarning)
    assert type(quantized.conv1) is nn.Conv2d and type(quantized.fc1) is nnqd.Linear
    rows = {r.name: r for r in report}
    assert rows["conv1"].quantized is None and "no dynamic int8 version" in rows["conv1"].note
    assert rows["bn1"].note == "not requested" and rows["fc2"].quantized == "DynamicQuantizedLinear"


def test_dynamic_warns_about_plain_rnns_and_linear_subclasses():
    class MyLinear(nn.Linear):
        pass

    model = nn.Sequential(nn.RNN(4, 8), MyLinear(8, 2))
    with pytest.warns(NotConvertedWarning) as caught:
        _, report = quantize_dynamic(model, types=(nn.RNN, nn.Linear))
    assert [r.quantized for r in report] == [None, None]
    assert (
        report[1].note
        == "MyLinear subclasses a requested type; quantize_dynamic matches exact types"
    )
    messages = ours(caught)
    assert (
        messages[0]
        == "quantize_dynamic has no dynamic int8 version of RNN; 1 RNN module stayed float"
    )
    assert messages[1].startswith("1 Linear module stayed float (['1']): ")
    assert "not subclasses" in messages[1]


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (
            {"engine": "tpu"},
            ValueError,
            rf"engine must be one of the quantized engines .*: {ENGINES} \(or None: this "
            rf"machine's default, .*\); got 'tpu'",
        ),
        ({"engine": ""}, ValueError, "engine must be one of .*; got ''"),
        ({"engine": "qnnpack", "dtype": torch.float16}, ValueError, "no float16 dynamic kernels"),
        ({"dtype": torch.quint8}, ValueError, r"dtype must be one of torch.qint8, torch.float16"),
        ({"dtype": "int8"}, ValueError, "dtype must be one of .* got 'int8'"),
        ({"types": ()}, ValueError, "types must be .* got an empty tuple"),
        ({"types": "Linear"}, TypeError, "types must be an nn.Module subclass"),
        ({"types": (nn.Linear, torch.Tensor)}, TypeError, "types must be .* got <class 'torch.T"),
    ],
)
def test_dynamic_bad_input(kw, error, match):
    before = torch.backends.quantized.engine
    with pytest.raises(error, match=match):
        quantize_dynamic(tiny_lstm(), **kw)
    assert torch.backends.quantized.engine == before


def test_dynamic_sets_the_engine_and_refuses_quantized_models():
    quantized, _ = quantize_dynamic(tiny_lstm(), engine="qnnpack")
    assert torch.backends.quantized.engine == "qnnpack"
    with pytest.raises(ValueError, match=r"already quantized \('lstm' is a DynamicQuantizedLSTM"):
        quantize_dynamic(quantized)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        quantize_dynamic("lstm")


# --- what the dynamic kernels do with their input ----------------------------------------

SUPPORTED = qnb_env.quantized_engines()  # QNB_ENGINES=qnnpack: as an ARM build


def by_hand(x, quantized_linear, engine):
    """One dynamic Linear call from its own scale choice (activation_qparams): quantize x, the
    int matmul, then acc * (s_x * s_w) + bias in float32, in the engine's order."""
    scale, zero_point, qmax = activation_qparams(x, engine)
    q = torch.quantize_per_tensor(x, scale, zero_point, torch.quint8).int_repr()
    w = quantized_linear.weight()
    acc = (q.long().clamp(0, qmax) - zero_point) @ (w.int_repr().long() - w.q_zero_point()).T
    multiplier = torch.tensor(scale, dtype=torch.float32) * torch.tensor(w.q_scale())
    bias = quantized_linear.bias().detach()
    if engine == "qnnpack":  # a float32 multiply, then the add
        return acc.float() * multiplier + bias, q
    # fbgemm: one fused multiply-add (float64 then rounded to float32 gives the same here)
    return (acc.double() * multiplier.double() + bias.double()).float(), q


@pytest.mark.parametrize("engine", SUPPORTED)
@pytest.mark.parametrize("seed", [0, 1])
def test_a_dynamic_linear_call_is_reproduced_from_its_scale_choice(engine, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 10)).eval()
    quantized, _ = quantize_dynamic(model, types=nn.Linear, engine=engine)
    x = torch.randn(32, 64) * 3 + 1  # min < 0 < max, not symmetric
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # qnnpack warns that it ignores reduce_range
        got = quantized[0](x)
    want, q = by_hand(x, quantized[0], engine)
    if engine == "onednn":  # rounds in another order
        assert (got - want).abs().max() <= 1e-6
    else:
        assert torch.equal(got, want)
    assert int(q.max()) == (127 if engine != "qnnpack" else 255)
    # the other engine's range is measurably wrong: the kernel's choice is not a detail
    other = "qnnpack" if engine != "qnnpack" else next((e for e in SUPPORTED if e != engine), None)
    if other is not None:
        wrong, _ = by_hand(x, quantized[0], other)
        assert (got - wrong).abs().max() > 1e-3


def test_reduces_range_per_engine():
    assert reduces_range("qnnpack") is False
    for engine in set(SUPPORTED) & {"x86", "fbgemm", "onednn"}:
        assert reduces_range(engine) is True
    from qnb import env

    assert reduces_range() is reduces_range(env.default_engine())


def test_activation_qparams_range_includes_zero_and_bad_input():
    scale, zero_point, qmax = activation_qparams(torch.tensor([0.5, 2.0]), "qnnpack")
    assert (scale, zero_point, qmax) == (pytest.approx(2.0 / 255), 0, 255)
    with pytest.raises(TypeError, match="x must be a float tensor .* got Tensor of dtype"):
        activation_qparams(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="x must be a float tensor .* got list"):
        activation_qparams([1.0, 2.0])
    with pytest.raises(ValueError, match="x must be a non-empty tensor of finite values, got"):
        activation_qparams(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"got shape \(0,\)"):
        activation_qparams(torch.zeros(0))
    with pytest.raises(ValueError, match="engine must be one of"):
        activation_qparams(torch.ones(2), "tpu")


# --- weight-only quantization with torchao --------------------------------------------------


@pytest.mark.parametrize(
    "bits, group_size, tensor_type, qrange",
    [(8, None, Int8Tensor, (-128, 127)), (4, 8, IntxUnpackedToInt8Tensor, (-8, 7))],
)
def test_weight_only_quantizes_linear_weights_on_a_copy(bits, group_size, tensor_type, qrange):
    model = tiny_lstm()
    before = state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvertedWarning)
        quantized, report = quantize_weight_only(model, bits=bits, group_size=group_size)
    weight = quantized.fc.weight
    assert isinstance(quantized.fc, nn.Linear) and isinstance(weight, tensor_type)
    assert weight.qdata.dtype == torch.int8 and weight.shape == (10, 16)
    assert qrange[0] <= weight.qdata.min() and weight.qdata.max() <= qrange[1]
    assert weight.scale.shape == (10, 1 if group_size is None else 16 // group_size)
    assert type(quantized.lstm.weight_ih_l0) is nn.Parameter  # the LSTM stays float
    grouping = "per channel" if group_size is None else f"groups of {group_size} inputs"
    assert report == [
        ModuleReport(
            "lstm",
            "LSTM",
            None,
            "float32",
            "weight-only quantization covers nn.Linear only; LSTM stays float",
        ),
        ModuleReport("fc", "Linear", tensor_type.__name__, f"int{bits}", grouping),
    ]
    assert type(model.fc.weight) is nn.Parameter
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    agree, error = compare(model, quantized, images())
    assert agree >= 0.9 and error < (0.01 if bits == 8 else 0.1)


@pytest.mark.parametrize("bits, group_size, max_error", [(8, None, 0.01), (4, 16, 0.1)])
def test_weight_only_on_a_trained_lstm_keeps_predictions(trained, bits, group_size, max_error):
    model, x = trained
    quantized, _ = quantize_weight_only(model, bits=bits, group_size=group_size)
    agree, error = compare(model, quantized, x)
    assert agree >= 0.95 and error < max_error
    buffer = io.BytesIO()  # torchao's weights round-trip through torch.save / weights_only load
    torch.save(quantized.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert type(loaded["fc.weight"]) is type(quantized.fc.weight)


def test_weight_only_warns_without_linear_layers_and_refuses_quantized_models():
    with pytest.warns(NotConvertedWarning, match="no nn.Linear module"):
        _, report = quantize_weight_only(nn.Sequential(nn.Conv2d(1, 2, 3)))
    assert report[0].quantized is None and "covers nn.Linear only" in report[0].note
    quantized, _ = quantize_weight_only(tiny_lstm())
    with pytest.raises(
        ValueError, match=r"already quantized \('fc' has a weight of type Int8Tensor"
    ):
        quantize_weight_only(quantized)
    with pytest.raises(ValueError, match="already quantized"):
        quantize_dynamic(quantized)


@pytest.mark.parametrize(
    "kw, error, match",
    [
        ({"bits": 1}, ValueError, r"bits must be an int in 2..8, got 1"),
        ({"bits": 16}, ValueError, r"bits must be an int in 2..8, got 16"),
        ({"bits": 4.0}, TypeError, r"bits must be an int in 2..8, got 4.0"),
        ({"group_size": 0}, ValueError, "group_size must be an int >= 1, got 0"),
        ({"group_size": "8"}, TypeError, "group_size must be an int >= 1, got '8'"),
        (
            {"group_size": 6},
            ValueError,
            r"group_size must divide the in_features of every Linear layer, got 6, which does "
            r"not divide 'fc' \(in_features=16\); sizes that fit: \[1, 2, 4, 8, 16\]",
        ),
        ({"group_size": 32}, ValueError, "got 32, which does not divide 'fc'"),
    ],
)
def test_weight_only_bad_input(kw, error, match):
    with pytest.raises(error, match=match):
        quantize_weight_only(tiny_lstm(), **kw)


# --- torchao's int8 dynamic-activation and packed int4 configs (notebook 12) ----------------


def _two_linears():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)).eval()


def test_int8_dynamic_activation_quantizes_every_linear_on_a_copy():
    model = _two_linears()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result, report = dynamic.quantize_int8_dynamic_activation(model)
    assert [(r.name, r.quantized) for r in report] == [("0", "Int8Tensor"), ("2", "Int8Tensor")]
    assert all("activations int8" in r.weight for r in report)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])  # the input model is untouched
    x = torch.randn(16, 128)
    with torch.inference_mode():
        want, got = model(x), result(x)
    assert 0 < (want - got).abs().max() < 0.05 * want.abs().max()


def _int4_kernels_loaded() -> bool:
    try:  # how torchao itself tells whether its CPU kernel library is loaded
        torch.ops.torchao._pack_8bit_act_4bit_weight  # noqa: B018
    except AttributeError:
        return False
    return True


@pytest.mark.skipif(_int4_kernels_loaded(), reason="this torchao build has packed int4 kernels")
def test_int4_packed_says_which_kernels_are_missing():
    with pytest.raises(RuntimeError, match="no packed int4 CPU kernels.*quantize_weight_only"):
        dynamic.quantize_int4_packed(_two_linears(), 64)


@pytest.mark.skipif(not _int4_kernels_loaded(),
                    reason="this torchao build has no packed int4 CPU kernels (torchao's "
                    "experimental kernel library is not loaded)")
def test_int4_packed_works_where_the_kernels_exist():
    model = _two_linears()
    result, report = dynamic.quantize_int4_packed(model, 64)
    assert all(r.quantized is not None for r in report)
    x = torch.randn(16, 128)
    with torch.inference_mode():
        assert (model(x) - result(x)).abs().max() < 0.2 * model(x).abs().max()


def test_int4_packed_bad_group_size_names_the_layer():
    with pytest.raises(ValueError, match="group_size must divide the in_features"):
        dynamic.quantize_int4_packed(_two_linears(), 48)
    with pytest.raises(ValueError, match="group_size must be an int >= 1, got 0"):
        dynamic.quantize_int4_packed(_two_linears(), 0)
