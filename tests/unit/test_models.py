"""qnb.models: the CNNs, fusion, eager PTQ, seeded training, evaluation, the pretrained cache."""

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.ao.nn.intrinsic import ConvReLU2d, LinearReLU
from torch.ao.nn.intrinsic.quantized import ConvReLU2d as QuantizedConvReLU2d
from torch.ao.quantization import convert, fuse_modules, get_default_qconfig, prepare

import qnb.models as qm
from qnb import data

REPO = Path(__file__).resolve().parents[2]
NAMES = [n for n in qm.MODELS if n not in qm.LANGUAGE_MODELS]  # the MNIST models
CNNS = ["plain_cnn", "depthwise_cnn"]  # with stubs and fuse groups, for eager static PTQ


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """The shipped data, and a cache that is never the checkout's."""
    monkeypatch.setenv("QNB_DATA", str(REPO / "data"))
    monkeypatch.setenv("QNB_CACHE", str(tmp_path / "qnb-cache"))


def images(n=8):
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def with_bn_statistics(model: nn.Module) -> nn.Module:
    """A few train-mode passes, so BN running statistics are not the trivial 0/1."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(images(32) * 2 + 0.5)
    return model.eval()


def cheap_pretrained(name="plain_cnn", **kw):
    return qm.pretrained(name, epochs=1, progress=False, **kw)


# --- architecture ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", CNNS)
def test_shapes_and_stubs(name):
    model = qm.build(name, seed=0).eval()
    assert isinstance(model, qm.MODELS[name])
    assert model(images(5)).shape == (5, 10)
    assert isinstance(model.quant, torch.ao.quantization.QuantStub)
    assert isinstance(model.dequant, torch.ao.quantization.DeQuantStub)
    assert 5_000 < sum(p.numel() for p in model.parameters()) < 1_000_000  # small: trains in s


def test_depthwise_blocks_are_depthwise_separable():
    model = qm.build("depthwise_cnn")
    for block in (model.block1, model.block2, model.block3):
        assert block.dw.groups == block.dw.in_channels == block.dw.out_channels
        assert block.dw.kernel_size == (3, 3) and block.pw.kernel_size == (1, 1)


def test_build_seed_is_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = qm.build("plain_cnn", seed=3), qm.build("plain_cnn", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    c = qm.build("plain_cnn", seed=4)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


@pytest.mark.parametrize("name", CNNS)
def test_fuse_groups_fuse_without_changing_outputs(name):
    model = with_bn_statistics(qm.build(name, seed=0))
    groups = model.fuse_groups()
    fused = fuse_modules(copy.deepcopy(model), groups)
    for group in groups:
        head = fused.get_submodule(group[0])
        assert isinstance(head, ConvReLU2d | LinearReLU), group
        assert all(isinstance(fused.get_submodule(n), nn.Identity) for n in group[1:])
    with torch.no_grad():
        torch.testing.assert_close(fused(images()), model(images()), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CNNS)
def test_eager_static_ptq_end_to_end_x86(name, monkeypatch):
    monkeypatch.setattr(torch.backends.quantized, "engine", "x86")
    model = with_bn_statistics(qm.build(name, seed=0))
    model = fuse_modules(model, model.fuse_groups())
    model.qconfig = get_default_qconfig("x86")
    prepare(model, inplace=True)
    for x, _ in data.calibration_loader(64, batch_size=32):  # two batches
        model(x)
    convert(model, inplace=True)
    assert isinstance(model.get_submodule(model.fuse_groups()[0][0]), QuantizedConvReLU2d)
    out = model(images(4))
    assert out.shape == (4, 10) and out.dtype == torch.float32
    assert 0.0 <= qm.evaluate(model, data.test_loader(limit=64)) <= 1.0


# --- training and evaluation ----------------------------------------------------------------


def tiny_train(seed=0, name="plain_cnn", **kw):
    model = qm.build(name, seed=seed)
    return qm.train(model, epochs=2, limit=128, batch_size=32, seed=seed, progress=False, **kw)


@pytest.mark.parametrize("name", NAMES)
def test_training_is_deterministic(name):
    state = torch.random.get_rng_state()
    a, b = tiny_train(name=name), tiny_train(name=name)
    assert torch.equal(torch.random.get_rng_state(), state)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert a.history == b.history
    c = tiny_train(seed=1, name=name)
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_train_returns_the_model_in_eval_mode_with_history():
    model = qm.build("plain_cnn", seed=0)
    before = model.conv1.weight.detach().clone()
    out = qm.train(
        model, epochs=2, limit=64, eval_loader=data.test_loader(limit=50), progress=False
    )
    assert out is model and not model.training
    assert not torch.equal(before, model.conv1.weight)
    assert [row["epoch"] for row in model.history] == [1, 2]
    for row in model.history:
        assert set(row) == {"epoch", "loss", "train_acc", "eval_acc"}
        assert row["loss"] > 0 and 0 <= row["train_acc"] <= 1 and 0 <= row["eval_acc"] <= 1


def test_progress_bar_on_and_off(capsys):
    qm.train(qm.build("plain_cnn"), epochs=1, limit=32, progress=False)
    assert "training PlainCNN" not in capsys.readouterr().err
    qm.train(qm.build("plain_cnn"), epochs=1, limit=32, progress=True)
    assert "training PlainCNN" in capsys.readouterr().err


def test_evaluate_counts_correct_predictions_and_restores_mode():
    class Constant(nn.Module):
        def forward(self, x):
            return torch.eye(10)[torch.zeros(len(x), dtype=torch.long)]

    model = Constant().train()
    labels = torch.tensor([0, 0, 1, 2])
    assert qm.evaluate(model, [(images(4), labels)]) == 0.5
    assert model.training
    _, y = data.tensors(False)
    assert qm.evaluate(model) == (y == 0).sum().item() / 1000  # the test split by default


def test_predict_gives_the_predictions_and_labels_in_loader_order():
    class Constant(nn.Module):
        def forward(self, x):
            return torch.eye(10)[torch.full((len(x),), 3)]

    model = Constant().train()
    batches = [(images(4), torch.tensor([3, 0, 3, 1])), (images(2), [5, 3])]
    predicted, labels = qm.predict(model, batches)
    assert predicted.tolist() == [3] * 6 and predicted.dtype == torch.int64
    assert labels.tolist() == [3, 0, 3, 1, 5, 3] and labels.dtype == torch.int64
    assert model.training  # mode restored
    assert qm.evaluate(model, batches) == 0.5
    predicted, labels = qm.predict(model)  # the test split by default
    assert len(predicted) == 1000 and torch.equal(labels, data.tensors(False)[1])


def test_predict_agrees_with_evaluate_on_a_real_model():
    model = tiny_train()
    predicted, labels = qm.predict(model, data.validation_loader(batch_size=64))
    assert torch.equal(labels, data.validation_tensors()[1])
    with torch.no_grad():
        assert torch.equal(predicted, model(data.validation_tensors()[0]).argmax(1))
    assert qm.evaluate(model, data.validation_loader()) == (predicted == labels).sum().item() / 500


@pytest.mark.parametrize("func", [qm.predict, qm.evaluate])
def test_predict_and_evaluate_refuse_empty_loaders(func):
    model = qm.build("plain_cnn")
    with pytest.raises(ValueError, match="loader must yield at least one"):
        func(model, [(images(0), torch.zeros(0, dtype=torch.long))])
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got int"):
        func(3)


def test_evaluate_bad_input():
    model = qm.build("plain_cnn")
    with pytest.raises(ValueError, match="loader must yield at least one"):
        qm.evaluate(model, [])
    with pytest.raises(TypeError, match=r"loader must yield \(images, labels\) pairs"):
        qm.evaluate(model, [images(2)])
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        qm.evaluate("plain_cnn")


@pytest.mark.parametrize(
    "kw, error, match",
    [
        ({"epochs": 0}, ValueError, "epochs must be an int >= 1, got 0"),
        ({"epochs": 1.5}, TypeError, "epochs must be an int >= 1, got 1.5"),
        ({"lr": -1.0}, ValueError, "lr must be a finite number > 0, got -1.0"),
        ({"lr": float("nan")}, ValueError, "lr must be a finite number > 0, got nan"),
        ({"lr": "fast"}, TypeError, "lr must be a finite number > 0, got 'fast'"),
        ({"shift": -1}, ValueError, r"shift must be an int in 0..8, got -1"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0, got -1"),
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
        ({"limit": 0}, ValueError, "limit must be an int in 1..3500, got 0"),
        ({"progress": "yes"}, TypeError, "progress must be None"),
    ],
)
def test_train_bad_input(kw, error, match):
    with pytest.raises(error, match=match):
        qm.train(qm.build("plain_cnn"), **kw)


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        qm.build,
        qm.cache_path,
        lambda name: qm.pretrained(name, progress=False),
    ],
)
@pytest.mark.parametrize("bad", ["foo", "PlainCNN", None, 3])
def test_unknown_name_names_the_argument_and_the_known_names(call, bad):
    with pytest.raises(ValueError) as info:
        call(bad)
    assert str(info.value) == (
        f"name must be one of 'plain_cnn', 'depthwise_cnn', 'lstm', 'tinylm', got {bad!r}"
    )


def test_models_and_training_configs_match():
    assert set(qm.MODELS) == set(qm.TRAINING) == {"plain_cnn", "depthwise_cnn", "lstm", "tinylm"}
    assert all("steps" in qm.TRAINING[n] and "epochs" not in qm.TRAINING[n]
               for n in qm.LANGUAGE_MODELS)


# --- the pretrained cache -------------------------------------------------------------------


@pytest.fixture
def count_training(monkeypatch):
    calls = []
    real = qm.train

    def counting(*args, **kw):
        calls.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(qm, "train", counting)
    return calls


def test_pretrained_trains_once_then_loads_fresh_copies(count_training, tmp_path):
    path = qm.cache_path("plain_cnn", epochs=1)
    assert path.parent == tmp_path / "qnb-cache" / "models"  # $QNB_CACHE/models
    assert path.name.startswith("plain_cnn-") and "torch" in path.name
    assert not path.exists()
    a = cheap_pretrained()
    assert path.is_file() and len(count_training) == 1
    assert (
        count_training[0]["epochs"] == 1
        and count_training[0]["lr"] == qm.TRAINING["plain_cnn"]["lr"]
    )
    b, c = cheap_pretrained(), cheap_pretrained()
    assert len(count_training) == 1  # loaded from the cache, not trained again
    assert b is not c and not b.training and isinstance(b, qm.PlainCNN)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert b.history == a.history and len(b.history) == 1
    b.conv1.weight.data.zero_()
    assert not torch.equal(b.conv1.weight, c.conv1.weight)  # copies are independent
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_cache_key_follows_the_config(tmp_path):
    base = qm.cache_path("plain_cnn", epochs=1)
    assert qm.cache_path("plain_cnn", epochs=1) == base
    assert qm.cache_path("plain_cnn", epochs=2) != base
    assert qm.cache_path("plain_cnn", epochs=1, seed=1) != base
    assert qm.cache_path("depthwise_cnn", epochs=1).name.startswith("depthwise_cnn-")
    assert qm.cache_path("plain_cnn").name != base.name  # default epochs
    assert qm.cache_path("plain_cnn", epochs=1, cache_dir=tmp_path).parent == tmp_path


def test_cache_key_hashes_the_training_split(monkeypatch):
    """A model trained before the validation split (on all 4,000 training-file digits) is not
    reused: the key hashes the digits the model trains on, which no longer hold validation."""
    now = qm.cache_path("plain_cnn", epochs=1)
    images, labels = data.tensors(True)
    assert len(labels) == 3500
    file = data.mnist(True)
    whole = (file.data.unsqueeze(1).float().div(255).sub(data.MEAN).div(data.STD), file.targets)
    monkeypatch.setattr(data, "tensors", lambda train=True, root=None: whole)
    assert qm.cache_path("plain_cnn", epochs=1) != now
    changed = images.clone()
    changed[0, 0, 0, 0] += 1
    monkeypatch.setattr(data, "tensors", lambda train=True, root=None: (changed, labels))
    assert qm.cache_path("plain_cnn", epochs=1) != now


def test_default_cache_dir_is_the_ignored_checkout_folder(monkeypatch):
    monkeypatch.delenv("QNB_CACHE")
    assert qm.cache_path("plain_cnn").parent == REPO / ".cache" / "models"
    assert ".cache/" in (REPO / ".gitignore").read_text().split()


def test_corrupt_cache_file_is_retrained_with_a_warning(count_training, tmp_path):
    path = qm.cache_path("plain_cnn", epochs=1, cache_dir=tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a torch file")
    with pytest.warns(RuntimeWarning, match="could not be read.*training again"):
        model = cheap_pretrained(cache_dir=tmp_path)
    assert len(count_training) == 1 and isinstance(model, qm.PlainCNN)
    cheap_pretrained(cache_dir=tmp_path)  # the file was repaired: loads without a warning
    assert len(count_training) == 1


def test_cache_with_wrong_weights_is_retrained(count_training, tmp_path):
    path = qm.cache_path("plain_cnn", epochs=1, cache_dir=tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}}, path)
    with pytest.warns(RuntimeWarning, match="could not be read"):
        cheap_pretrained(cache_dir=tmp_path)
    assert len(count_training) == 1


def test_unwritable_cache_warns_but_returns_the_model(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(RuntimeWarning, match="could not cache weights"):
        model = cheap_pretrained(cache_dir=blocker)
    assert isinstance(model, qm.PlainCNN) and not model.training


def test_pretrained_bad_input():
    with pytest.raises(ValueError, match="epochs must be an int >= 1, got 0"):
        qm.pretrained("plain_cnn", epochs=0)
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -2"):
        qm.pretrained("plain_cnn", seed=-2)
    with pytest.raises(TypeError, match="progress must be None"):
        qm.pretrained("plain_cnn", epochs=1, progress=1)


def test_warm_checks_every_pair_before_training_anything():
    with pytest.raises(ValueError, match="name must be one of"):
        qm.warm([("plain_cnn", 0), ("resnet", 0)])
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        qm.warm([("plain_cnn", -1)])
    with pytest.raises(ValueError, match="jobs must be an int >= 1, got 0"):
        qm.warm([("plain_cnn", 0)], jobs=0)


def test_warm_finds_cached_models_in_child_processes(tmp_path):
    """A cached model is found by the worker processes (they see $QNB_CACHE): nothing trains."""
    path = qm.cache_path("lstm", seed=5)
    model = qm.build("lstm", seed=5).eval()
    model.history = []
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": model.state_dict(), "history": []}, path)
    seconds = qm.warm([("lstm", 5)], jobs=1)
    assert list(seconds) == [("lstm", 5)] and seconds[("lstm", 5)] >= 0
    saved = torch.load(path, weights_only=True)["state_dict"]  # still untrained: not retrained
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_notebook_models_are_known_models():
    assert {name for name, _ in qm.NOTEBOOK_MODELS} == set(qm.MODELS)
