"""qnb.models: the CNNs (the depthwise one a small MobileNetV2), fusion, eager PTQ, seeded
training, evaluation, the pretrained cache, the shipped weights and `retrain`."""

import copy
import hashlib
import json
import shutil
import warnings
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
NAMES = [n for n in qm.MODELS if n not in qm.LANGUAGE_MODELS]  # the Fashion-MNIST models
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
    """One epoch (not the default config: no shipped file is read); use with `count_training`,
    which makes the epoch 256 images."""
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


def test_depthwise_cnn_is_a_small_mobilenet_v2():
    model = qm.build("depthwise_cnn", seed=0)
    assert not hasattr(qm, "SeparableBlock")
    assert (model.stem.in_channels, model.stem.out_channels) == (1, 16)
    assert model.stem.stride == (2, 2) and model.stem.kernel_size == (3, 3)
    blocks = model.blocks()
    assert [type(b) for b in blocks] == [qm.InvertedResidual] * 4
    assert blocks == [model.block1, model.block2, model.block3, model.block4]
    specs = [(16, 16, 1), (16, 24, 2), (24, 24, 1), (24, 32, 1)]
    for block, (cin, cout, stride) in zip(blocks, specs, strict=True):
        hidden = 4 * cin
        assert (block.expand.in_channels, block.expand.out_channels) == (cin, hidden)
        assert block.expand.kernel_size == (1, 1) and block.expand.groups == 1
        # depthwise: one filter per channel
        assert block.dw.groups == block.dw.in_channels == block.dw.out_channels == hidden
        assert block.dw.kernel_size == (3, 3) and block.dw.stride == (stride, stride)
        assert (block.project.in_channels, block.project.out_channels) == (hidden, cout)
        assert block.project.kernel_size == (1, 1) and block.project.groups == 1
        assert not hasattr(block, "project_relu")  # the linear bottleneck
        # a skip exactly where the add is possible: stride 1 and the channels kept
        assert block.has_skip == (stride == 1 and cin == cout)
        assert isinstance(block.skip, nn.quantized.FloatFunctional) == block.has_skip
        assert block.has_skip or block.skip is None
    assert [b.has_skip for b in blocks] == [True, False, True, False]
    assert (model.head.in_channels, model.head.out_channels) == (32, 128)
    assert (model.fc.in_features, model.fc.out_features) == (128, 10)
    activations = [m for m in model.modules() if isinstance(m, nn.ReLU | nn.ReLU6 | nn.Hardtanh)]
    assert activations and all(type(m) is nn.ReLU for m in activations)  # ReLU, never ReLU6


def test_depthwise_cnn_feature_map_sizes():
    model = qm.build("depthwise_cnn", seed=0).eval()
    shapes = {}
    for name in ("stem_relu", "block1", "block2", "block3", "block4", "head_relu", "pool"):
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
    with torch.no_grad():
        model(images(2))
    assert shapes == {"stem_relu": (16, 14, 14), "block1": (16, 14, 14),
                      "block2": (24, 7, 7), "block3": (24, 7, 7), "block4": (32, 7, 7),
                      "head_relu": (128, 7, 7), "pool": (128, 1, 1)}


def test_the_skip_adds_the_block_input_only_where_there_is_one():
    model = qm.build("depthwise_cnn", seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    x = {i: torch.randn(2, c, s, s, generator=gen)
         for i, (c, s) in enumerate([(16, 14), (16, 14), (24, 7), (24, 7)], 1)}
    for i, block in enumerate(model.blocks(), 1):
        with torch.no_grad():  # the projection's BN outputs 0: only the skip is left
            block.project_bn.weight.zero_()
            block.project_bn.bias.zero_()
            out = block(x[i])
        if block.has_skip:
            assert torch.equal(out, x[i]), i
        else:
            assert not out.any(), i


def test_fuse_groups_name_every_conv_bn_relu():
    model = qm.build("depthwise_cnn")
    blocks = [[f"block{i}.expand", f"block{i}.expand_bn", f"block{i}.expand_relu"]
              for i in range(1, 5)]
    expected = [["stem", "stem_bn", "stem_relu"]]
    for i, triple in enumerate(blocks, 1):
        expected += [triple, [f"block{i}.dw", f"block{i}.dw_bn", f"block{i}.dw_relu"],
                     [f"block{i}.project", f"block{i}.project_bn"]]
    assert model.fuse_groups() == expected + [["head", "head_bn", "head_relu"]]
    grouped = {name for group in model.fuse_groups() for name in group}
    for name, module in model.named_modules():  # every conv and BN is in a group
        if isinstance(module, nn.Conv2d | nn.BatchNorm2d):
            assert name in grouped, name


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
    fused = fuse_modules(copy.deepcopy(model), groups)  # in eval mode: BN folded into the conv
    for group in groups:
        head = fused.get_submodule(group[0])
        if "relu" in group[-1].rsplit(".", 1)[-1]:  # conv-bn-relu, linear-relu
            assert isinstance(head, ConvReLU2d | LinearReLU), group
        else:  # conv-bn (the linear bottleneck): a plain conv with BN's shift as its bias
            assert type(head) is nn.Conv2d and head.bias is not None, group
        assert all(isinstance(fused.get_submodule(n), nn.Identity) for n in group[1:])
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
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
    if name == "depthwise_cnn":  # the residual adds run in int8 too
        assert [type(b.skip).__name__ for b in model.blocks() if b.has_skip] == ["QFunctional"] * 2
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
    assert qm.evaluate(model) == (y == 0).sum().item() / 10_000  # the test split by default


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
    assert len(predicted) == 10_000 and torch.equal(labels, data.tensors(False)[1])


def test_predict_agrees_with_evaluate_on_a_real_model():
    model = tiny_train()
    predicted, labels = qm.predict(model, data.validation_loader(batch_size=64, limit=1_000))
    images, truth = (t[:1_000] for t in data.validation_tensors())
    assert torch.equal(labels, truth)
    with torch.no_grad():
        assert torch.equal(predicted, model(images).argmax(1))
    assert qm.evaluate(model, data.validation_loader(limit=1_000)) == (
        (predicted == labels).sum().item() / 1_000)


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
        ({"limit": 0}, ValueError, "limit must be an int in 1..55000, got 0"),
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


SMALL = 256  # images a test's training run sees (the train split has 55,000)


@pytest.fixture
def count_training(monkeypatch):
    """Count the training runs `pretrained` starts, and keep each tiny: the first SMALL
    training images (when no limit is given) and SMALL validation images to score."""
    calls = []
    real = qm.train

    def counting(*args, **kw):
        calls.append(dict(kw))
        if kw.get("limit") is None:
            kw["limit"] = SMALL
        if kw.get("eval_loader") is not None:
            kw["eval_loader"] = data.validation_loader(limit=SMALL)
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
    """A model trained on other images (all 60,000 of the training file, or one pixel changed)
    is not reused: the key hashes the images the model trains on."""
    now = qm.cache_path("plain_cnn", epochs=1)
    images, labels = data.tensors(True)
    assert len(labels) == 55_000
    file, real = data.fashion_mnist(True), data.tensors
    whole = (file.data.unsqueeze(1).float().div(255).sub(data.MEAN).div(data.STD), file.targets)
    qm._data_digest.cache_clear()  # computed once per process: recompute on the fakes
    monkeypatch.setattr(data, "tensors", lambda train=True, root=None: whole)
    assert qm.cache_path("plain_cnn", epochs=1) != now
    qm._data_digest.cache_clear()
    changed = images.clone()
    changed[0, 0, 0, 0] += 1
    monkeypatch.setattr(data, "tensors", lambda train=True, root=None: (changed, labels))
    assert qm.cache_path("plain_cnn", epochs=1) != now
    qm._data_digest.cache_clear()
    monkeypatch.setattr(data, "tensors", real)
    assert qm.cache_path("plain_cnn", epochs=1) == now


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


def test_unwritable_cache_warns_but_returns_the_model(count_training, tmp_path):
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


# --- retrain and the shipped weights ----------------------------------------------------------

RETRAIN = {"epochs": 1, "limit": SMALL}  # a short run through retrain's own code path


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """A folder as `make models` writes it, from one short retraining of ("lstm", 0) in a
    spawned process; the manifest held another entry before, which must survive."""
    folder = tmp_path_factory.mktemp("weights")
    other = {"sha256": "0" * 64, "config": {"name": "plain_cnn"}}
    (folder / "manifest.json").write_text(json.dumps({"models": {"plain_cnn-seed9.pt": other}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QNB_DATA", str(REPO / "data"))  # the child processes read the shipped data
        seconds = qm.retrain([("lstm", 0)], folder=folder, jobs=1, **RETRAIN)
    return folder, seconds


def manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def test_retrain_writes_the_weights_and_a_manifest_entry(retrained):
    folder, seconds = retrained
    assert list(seconds) == [("lstm", 0)] and seconds[("lstm", 0)] > 0
    path = folder / "lstm-seed0.pt"
    assert path.is_file() and qm.weights_file("lstm", 0) == path.name
    assert sorted(p.name for p in folder.iterdir()) == ["lstm-seed0.pt", "manifest.json"]
    entries = manifest(folder)["models"]
    assert list(entries) == ["lstm-seed0.pt", "plain_cnn-seed9.pt"]  # merged, sorted
    entry = entries["lstm-seed0.pt"]
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    config = entry["config"]
    assert config["epochs"] == 1 and config["limit"] == SMALL  # the short run says so
    assert config["name"] == "lstm" and config["seed"] == 0 and config["torch"] == torch.__version__
    assert {k: config[k] for k in ("lr", "batch_size", "shift")} == {
        k: qm.TRAINING["lstm"][k] for k in ("lr", "batch_size", "shift")}
    assert len(config["data"]) == 64 and config["arch"]
    assert entry["seconds"] > 0 and "1 trainings at a time" in entry["machine"]
    assert set(entry["final"]) == {"loss", "train_acc", "eval_acc"}


def test_retrained_weights_are_what_train_gives_in_this_process(retrained):
    """The spawned process trains exactly as `train` does here: the same bytes of weights."""
    folder, _ = retrained
    saved = torch.load(folder / "lstm-seed0.pt", weights_only=True)
    model = qm.build("lstm", seed=0)
    model.load_state_dict(saved["state_dict"])  # the architecture's own keys and shapes
    untrained = qm.build("lstm", seed=0).state_dict()
    assert any(not torch.equal(v, untrained[k]) for k, v in saved["state_dict"].items())
    config = {k: v for k, v in qm.TRAINING["lstm"].items() if k != "epochs"}
    here = qm.train(qm.build("lstm", seed=0), seed=0, progress=False,
                    eval_loader=data.validation_loader(), **RETRAIN, **config)
    for key, value in here.state_dict().items():
        assert torch.equal(value, saved["state_dict"][key]), key
    assert saved["history"] == here.history and len(here.history) == 1
    assert saved["history"][0]["eval_acc"] == manifest(folder)["models"]["lstm-seed0.pt"][
        "final"]["eval_acc"]


@pytest.fixture
def no_pool(monkeypatch):
    """Fail if retrain gets as far as starting its worker processes."""

    class Refused:
        def __init__(self, *args, **kwargs):
            raise AssertionError("retrain started training before refusing its arguments")

    monkeypatch.setattr(qm.concurrent.futures, "ProcessPoolExecutor", Refused)


@pytest.mark.parametrize(
    "args, kw, error, match",
    [
        ([("lstm", 0)], {"jobs": 0}, ValueError, "jobs must be an int >= 1, got 0"),
        ([("lstm", 0)], {"limit": 0}, ValueError, "limit must be an int >= 1, got 0"),
        ([("lstm", 0)], {"epochs": 0}, ValueError, "epochs must be an int >= 1, got 0"),
        ([("tinylm", 0)], {"steps": 0}, ValueError, "steps must be an int >= 1, got 0"),
    ],
)
def test_retrain_refuses_bad_arguments_before_training(no_pool, tmp_path, args, kw, error, match):
    with pytest.raises(error, match=match):
        qm.retrain(args, folder=tmp_path, **kw)
    assert not (tmp_path / "manifest.json").exists()


@pytest.mark.parametrize(
    "pairs, kw, error, match",
    [
        ([("lstm", 0), ("resnet", 0)], {}, ValueError, "name must be one of"),
        ([("lstm", 0), ("resnet", 0)], {"epochs": 1}, ValueError, "name must be one of"),
        ([("lstm", 0), ("lstm", -1)], {"epochs": 1}, ValueError,
         "seed must be an int >= 0, got -1"),
        ([("plain_cnn", 1.5)], {"epochs": 1}, TypeError, "seed must be an int >= 0, got 1.5"),
        (["lstm"], {"epochs": 1}, ValueError, "pairs"),  # not a (name, seed) pair
    ],
)
def test_retrain_refuses_bad_pairs_before_training(no_pool, tmp_path, pairs, kw, error, match):
    with pytest.raises(error, match=match):
        qm.retrain(pairs, folder=tmp_path, jobs=1, limit=SMALL, **kw)


@pytest.fixture
def shipped(retrained, tmp_path, monkeypatch):
    """A copy of the retrained folder as WEIGHTS_DIR, and a way to edit its manifest entry."""
    folder = tmp_path / "weights"
    shutil.copytree(retrained[0], folder)
    monkeypatch.setattr(qm, "WEIGHTS_DIR", folder)

    def edit(**changes):
        text = manifest(folder)
        entry = text["models"]["lstm-seed0.pt"]
        for key, value in changes.items():
            if key == "sha256":
                entry["sha256"] = value
            elif value is None:
                entry["config"].pop(key, None)
            else:
                entry["config"][key] = value
        (folder / "manifest.json").write_text(json.dumps(text))

    return folder, edit


def as_default(edit):
    """Make the manifest say that the shipped file was trained with the default config."""
    edit(epochs=qm.TRAINING["lstm"]["epochs"], limit=None)


def cached_stand_in(seed=0):
    """Put an untrained model in the cache file of ("lstm", seed), where pretrained's fallback
    looks: a fallback then needs no training, and gives these recognisable weights."""
    model = qm.build("lstm", seed=100 + seed)
    path = qm.cache_path("lstm", seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "history": []}, path)
    return model


def same_weights(a, b):
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_pretrained_loads_a_shipped_file_whose_config_is_the_default(shipped, count_training):
    folder, edit = shipped
    as_default(edit)
    edit(torch="0.0.0")  # any torch version: a state dict loads the same
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = qm.pretrained("lstm", progress=False)
    assert count_training == [] and not qm.cache_path("lstm", seed=0).exists()
    saved = torch.load(folder / "lstm-seed0.pt", weights_only=True)
    assert all(torch.equal(v, saved["state_dict"][k]) for k, v in model.state_dict().items())
    assert model.history == saved["history"] and not model.training
    assert qm.pretrained("lstm", progress=False) is not model  # a fresh copy each time


def test_a_shipped_file_of_a_short_run_is_not_used_for_the_default(shipped, count_training):
    """As retrain wrote it (epochs 1, limit 256), the file does not stand for the default."""
    stand_in = cached_stand_in()
    with pytest.warns(RuntimeWarning, match=r"lstm-seed0.pt were trained with another config "
                      r"than TRAINING\['lstm'\] \(run `make models`\)"):
        model = qm.pretrained("lstm", progress=False)
    assert count_training == [] and same_weights(model, stand_in)  # from the cache instead


@pytest.mark.parametrize("change", [{"lr": 1.0}, {"limit": 512}, {"data": "f" * 64},
                                    {"train_version": 0}])
def test_any_other_config_difference_refuses_the_shipped_file(shipped, count_training, change):
    _, edit = shipped
    as_default(edit)
    edit(**change)
    stand_in = cached_stand_in()
    with pytest.warns(RuntimeWarning, match="trained with another config"):
        model = qm.pretrained("lstm", progress=False)
    assert same_weights(model, stand_in)


def test_a_refused_shipped_file_falls_back_to_training_into_the_cache(shipped, count_training):
    assert not qm.cache_path("lstm", seed=0).exists()
    with pytest.warns(RuntimeWarning, match="training into the cache instead"):
        model = qm.pretrained("lstm", progress=False)
    assert len(count_training) == 1 and count_training[0]["epochs"] == qm.TRAINING["lstm"][
        "epochs"]
    assert qm.cache_path("lstm", seed=0).is_file()
    with pytest.warns(RuntimeWarning, match="another config"):  # still refused, every time
        again = qm.pretrained("lstm", progress=False)
    assert same_weights(again, model)  # now from the cache
    assert len(count_training) == 1


def test_another_length_never_reads_the_shipped_file(shipped, count_training):
    """pretrained(epochs=1) is not the default config: even a manifest entry of epochs=1 (and
    no limit) is not read, so nothing warns."""
    _, edit = shipped
    edit(limit=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qm.pretrained("lstm", epochs=1, progress=False)
    assert len(count_training) == 1


@pytest.mark.parametrize("damage", ["sha256", "bytes", "missing"])
def test_a_shipped_file_that_does_not_match_its_sha256_is_refused(shipped, count_training,
                                                                   damage):
    folder, edit = shipped
    as_default(edit)
    path = folder / "lstm-seed0.pt"
    if damage == "sha256":
        edit(sha256="0" * 64)
    elif damage == "bytes":
        path.write_bytes(path.read_bytes() + b"\0")
    else:
        path.unlink()
    stand_in = cached_stand_in()
    with pytest.warns(RuntimeWarning, match="are missing or do not match their sha256 in the "
                      "manifest; training into the cache instead"):
        model = qm.pretrained("lstm", progress=False)
    assert count_training == [] and same_weights(model, stand_in)


def test_no_manifest_entry_means_the_cache_without_a_warning(shipped, count_training):
    stand_in = cached_stand_in(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = qm.pretrained("lstm", seed=1, progress=False)  # the folder has only seed 0
    assert count_training == [] and same_weights(model, stand_in)


def test_weights_dir_and_file_names():
    assert qm.WEIGHTS_DIR == REPO / "data" / "weights"
    assert qm.weights_file("depthwise_cnn", 2) == "depthwise_cnn-seed2.pt"
    with pytest.raises(ValueError, match="name must be one of"):
        qm.weights_file("resnet", 0)
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        qm.weights_file("lstm", -1)


def test_notebook_models_are_known_models():
    assert {name for name, _ in qm.NOTEBOOK_MODELS} == set(qm.MODELS)


def test_predict_runs_fake_quantized_models_in_cache_sized_passes_with_the_same_logits():
    """A fake-quantized model is run PREDICT_CHUNK images at a time: the predictions equal one
    pass over the whole batch; other models get the caller's batches as they are."""
    from qnb import simulate

    model = qm.build("depthwise_cnn", seed=0).eval()
    images = torch.randn(250, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(250, dtype=torch.int64)
    sim, _ = simulate.simulate(model, weight_bits=4, act_bits=4, calib=[images[:64]])
    sizes = []
    sim.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    predicted, _ = qm.predict(sim, [(images, labels)])
    assert sizes == [100, 100, 50]
    with torch.inference_mode():
        assert torch.equal(predicted, sim(images).argmax(1))
    sizes.clear()
    model.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    qm.predict(model, [(images, labels)])
    assert sizes == [250]
