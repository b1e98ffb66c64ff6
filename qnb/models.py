"""The workbook's small Fashion-MNIST models, their training and evaluation, `pretrained(name)`.

The two CNNs are ready for eager-mode static quantization: a `QuantStub` at the start of
`forward`, a `DeQuantStub` at the end, one module per op (a separate `nn.ReLU` per block, the
residual adds through `FloatFunctional`), and `fuse_groups()` naming the conv-bn-relu /
conv-bn / linear-relu groups to pass to `torch.ao.quantization.fuse_modules`.

- `PlainCNN`: conv-bn-relu-pool x2, linear-relu, linear.
- `DepthwiseCNN`: a small MobileNetV2 (inverted residual blocks: 1x1 expand, 3x3 depthwise,
  1x1 linear projection, skip connections), the family on which per-tensor weight quantization
  and cross-layer equalization were studied (after BN folding, the depthwise channels can have
  very different weight ranges).
- `LSTMClassifier`: an LSTM that reads each image row by row (28 steps of 28 pixels) and a
  linear classifier on its last hidden state, for dynamic and weight-only quantization (see
  `qnb.dynamic`; no stubs: those quantize weights ahead of time, activations on the fly if at all).
- `"tinylm"`: `qnb.lm.TinyLM`, a byte-level transformer trained on the text corpus of
  `qnb.text` (notebook 12), trained for a number of steps instead of epochs.

`pretrained(name, seed=s)` loads the weights shipped in `data/weights/` (every model and seed
the notebooks use, listed in its `manifest.json` with sha256, training config, data digest,
torch version, training time and machine), so nothing trains on a fresh clone; `retrain()`
(`make models`) trains them again from the shipped data. Other configs train on first use and
are cached in `.cache/models/`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import io
import json
import multiprocessing
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub
from torch.ao.quantization.fake_quantize import FakeQuantizeBase

from qnb import checks, data, files, lm, text
from qnb.checks import check_int
from qnb.progress import bar_as_asked
from qnb.progress import check_enabled as check_progress

__all__ = [
    "MODELS",
    "LANGUAGE_MODELS",
    "TRAINING",
    "PlainCNN",
    "DepthwiseCNN",
    "LSTMClassifier",
    "build",
    "train",
    "random_shift",
    "TRAIN_THREADS",
    "on_train_threads",
    "evaluate",
    "predict",
    "pretrained",
    "cache_path",
    "NOTEBOOK_MODELS",
    "WEIGHTS_DIR",
    "weights_file",
    "retrain",
]

TRAIN_VERSION = 3  # bump when the training procedure changes, so old cache files are not reused
WEIGHTS_DIR = files.REPO / "data" / "weights"  # the shipped weights and their manifest
MANIFEST = "manifest.json"
TRAIN_THREADS = 1  # training runs on one thread: the same weights on any core count (see train)


class PlainCNN(nn.Module):
    """conv-bn-relu-pool x2 (1->16->32 channels), linear-relu (1568->256), linear (256->10).

    The hidden layer is wide enough that the weights, not per-tensor metadata, dominate the
    serialized size, as in real models (int8 then approaches the 4x size limit)."""

    def __init__(self) -> None:
        super().__init__()
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 7 * 7, 256)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(256, 10)
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = torch.flatten(x, 1)
        x = self.fc2(self.relu3(self.fc1(x)))
        return self.dequant(x)

    def fuse_groups(self) -> list[list[str]]:
        """Submodule names to fuse, for `torch.ao.quantization.fuse_modules`."""
        return [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["fc1", "relu3"]]


class InvertedResidual(nn.Module):
    """MobileNetV2's block (Sandler et al., 2018): a 1x1 `expand` conv-bn-relu to
    `expansion` x the input channels, a 3x3 depthwise `dw` conv-bn-relu (groups = channels,
    the stride), a 1x1 `project` conv-bn without activation (the linear bottleneck), and the
    block's input added back (`skip`, a FloatFunctional, so eager quantization sees the add)
    when stride is 1 and the channel count is kept.

    ReLU, not MobileNetV2's ReLU6: cross-layer equalization (notebook 07) rescales a channel by
    s on one side of the activation and 1/s on the other, which needs f(x / s) = f(x) / s for
    s > 0 (positive homogeneity); ReLU has it, ReLU6's clip at 6 does not."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(hidden)
        self.expand_relu = nn.ReLU()
        self.dw = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.dw_bn = nn.BatchNorm2d(hidden)
        self.dw_relu = nn.ReLU()
        self.project = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_channels)
        self.has_skip = stride == 1 and in_channels == out_channels
        self.skip = nn.quantized.FloatFunctional() if self.has_skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand_relu(self.expand_bn(self.expand(x)))
        y = self.dw_relu(self.dw_bn(self.dw(y)))
        y = self.project_bn(self.project(y))
        return self.skip.add(x, y) if self.skip is not None else y

    def fuse_groups(self) -> list[list[str]]:
        """Submodule names to fuse, relative to this block."""
        return [["expand", "expand_bn", "expand_relu"], ["dw", "dw_bn", "dw_relu"],
                ["project", "project_bn"]]


class DepthwiseCNN(nn.Module):
    """A small MobileNetV2-style network: a 3x3 stem conv-bn-relu with stride 2 (1->16 channels,
    28x28 -> 14x14), four inverted residual blocks (16->16 with a skip, 16->24 with stride 2,
    24->24 with a skip, 24->32; expansion 4, so the depthwise layers have 64, 64, 96 and 96
    channels), a 1x1 head conv-bn-relu (32->128), global average pooling and a linear classifier
    (128->10)."""

    BLOCKS = ((16, 16, 1), (16, 24, 2), (24, 24, 1), (24, 32, 1))  # in, out, stride
    EXPANSION = 4

    def __init__(self) -> None:
        super().__init__()
        self.quant = QuantStub()
        self.stem = nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.stem_relu = nn.ReLU()
        for i, (cin, cout, stride) in enumerate(self.BLOCKS, 1):
            self.add_module(f"block{i}", InvertedResidual(cin, cout, stride, self.EXPANSION))
        self.head = nn.Conv2d(32, 128, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(128)
        self.head_relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, 10)
        self.dequant = DeQuantStub()

    def blocks(self) -> list[InvertedResidual]:
        """The inverted residual blocks, in order."""
        return [getattr(self, f"block{i}") for i in range(1, len(self.BLOCKS) + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        x = self.stem_relu(self.stem_bn(self.stem(x)))
        for block in self.blocks():
            x = block(x)
        x = self.head_relu(self.head_bn(self.head(x)))
        x = self.fc(torch.flatten(self.pool(x), 1))
        return self.dequant(x)

    def fuse_groups(self) -> list[list[str]]:
        """Submodule names to fuse, for `torch.ao.quantization.fuse_modules`."""
        groups = [["stem", "stem_bn", "stem_relu"]]
        for i, block in enumerate(self.blocks(), 1):
            groups += [[f"block{i}.{m}" for m in group] for group in block.fuse_groups()]
        return groups + [["head", "head_bn", "head_relu"]]


class LSTMClassifier(nn.Module):
    """An LSTM reading a (N, 1, 28, 28) image as 28 time steps of 28 pixels (its rows), then a
    linear classifier (hidden -> 10) on the last hidden state."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.lstm = nn.LSTM(28, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(len(x), -1, x.shape[-1])  # (N, 1, 28, 28) -> (N, 28 steps, 28 pixels)
        _, (h, _) = self.lstm(rows)
        return self.fc(h[-1])

    def fuse_groups(self) -> list[list[str]]:
        """Nothing to fuse (kept for the same interface as the CNNs)."""
        return []


MODELS: dict[str, type[nn.Module]] = {
    "plain_cnn": PlainCNN,
    "depthwise_cnn": DepthwiseCNN,
    "lstm": LSTMClassifier,
    "tinylm": lm.TinyLM,
}
LANGUAGE_MODELS = ("tinylm",)  # trained by qnb.lm.train on text, for `steps` (not epochs)

# Default training config of each model (Adam, cosine-decayed learning rate, seeded shuffling,
# random shifts of up to `shift` pixels), picked on a split of the train set, not on the test set.
TRAINING: dict[str, dict[str, float | int]] = {
    "plain_cnn": {"epochs": 10, "lr": 3e-3, "batch_size": 64, "shift": 2},
    "depthwise_cnn": {"epochs": 8, "lr": 5e-3, "batch_size": 64, "shift": 2},
    "lstm": {"epochs": 10, "lr": 3e-3, "batch_size": 64, "shift": 0},
    # AdamW, warm-up then cosine; lr on validation bits per byte (3e-3: 2.46, 2e-3: 2.53, 6e-3:
    # 3.05, seed 0); 600 steps keep cold training near a minute per seed on one thread
    "tinylm": {"steps": 600, "lr": 3e-3, "batch_size": 32},
}


# --- validation and progress ---------------------------------------------------------------


def _check_name(name: object) -> str:
    known = ", ".join(repr(k) for k in MODELS)
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"name must be one of {known}, got {name!r}")
    return name


def _shifted(images: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Each image moved by a random (dy, dx) in -shift..shift, filled with the background."""
    if shift == 0:
        return images
    h, w = images.shape[-2:]
    background = -data.MEAN / data.STD
    padded = nn.functional.pad(images, (shift, shift, shift, shift), value=background)
    offsets = torch.randint(0, 2 * shift + 1, (len(images), 2), generator=gen).tolist()
    return torch.stack(
        [p[:, y : y + h, x : x + w] for p, (y, x) in zip(padded, offsets, strict=True)]
    )


def random_shift(shift: int = 2) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The training augmentation as a function `augment(images, generator)`: each image
    moved by a random (dy, dx) in -shift..shift pixels, filled with the background (for
    `qnb.qat.qat(..., augment=random_shift(2))`; `train` uses the same)."""
    shift = check_int("shift", shift, 0, 8)
    return lambda images, gen: _shifted(images, shift, gen)


# --- building, training, evaluating --------------------------------------------------------


def build(name: str, *, seed: int | None = None) -> nn.Module:
    """A new untrained model by name (see `MODELS`); its initial weights are drawn with `seed`
    if given (leaving the global RNG untouched), else from the global RNG."""
    cls = MODELS[_check_name(name)]
    if seed is None:
        return cls()
    seed = check_int("seed", seed, 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls()


def train(
    model: nn.Module,
    *,
    epochs: int = 20,
    lr: float = 3e-3,
    batch_size: int = 64,
    shift: int = 2,
    seed: int = 0,
    limit: int | None = None,
    eval_loader: Iterable | None = None,
    progress: bool | None = None,
) -> nn.Module:
    """Train `model` in place on the train split (or its first `limit` images) and return it
    in eval mode.

    Adam with a cosine-decayed learning rate and cross-entropy loss; each image is moved by a
    random shift of up to `shift` pixels (0: none). Shuffling and shifts are drawn from
    generators seeded with `seed`, so the same model, seed and config give the same weights on
    the same machine (the global RNG is left untouched). `model.history` gets one dict per
    epoch: `epoch`, mean train `loss`, `train_acc` (and `eval_acc` on `eval_loader` if given).
    `progress`: None shows a bar in notebooks and terminals, True/False force it on/off.

    Why a model trained on another machine differs: the data order, the shifts and the initial
    weights come from seeded generators and do not depend on the thread count, and the forward
    pass gives the same logits with 1 and 2 threads, but the weight gradients do not: oneDNN's
    conv weight gradient and MKL's matrix product for the linear weight gradient split their
    sums over threads (and AVX2 and AVX-512 kernels sum in other orders), so one batch's
    gradients differ by 1e-7..1e-4 (relative), also under
    `torch.use_deterministic_algorithms(True)`, and training ends in other weights. So training
    runs on `TRAIN_THREADS` (1) threads whatever the machine has (restored after): the same
    weights on any core count of the same CPU family; another CPU family is another sample of
    about the seed-to-seed size. That is why the notebooks load shipped weights.
    """
    model = checks.check_model(model)
    epochs = check_int("epochs", epochs, 1)
    lr = checks.check_positive("lr", lr)
    shift = check_int("shift", shift, 0, 8)
    progress = check_progress(progress)
    loader = data.train_loader(batch_size, seed=seed, limit=limit)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model must have trainable parameters, got none")
    history = []
    _on_train_threads(
        _epochs,
        model,
        loader=loader,
        params=params,
        history=history,
        epochs=epochs,
        lr=lr,
        shift=shift,
        seed=seed,
        eval_loader=eval_loader,
        progress=progress,
    )
    model.eval()
    model.history = history
    return model


def _epochs(model, *, loader, params, history, epochs, lr, shift, seed, eval_loader, progress):
    """The training loop of `train` (seeded, on the calling thread setting); returns `model`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(loader))
        loss_fn = nn.CrossEntropyLoss()
        bar = bar_as_asked(range(epochs), progress, desc=f"training {type(model).__name__}")
        for epoch in bar:
            model.train()
            total_loss, correct, seen = 0.0, 0, 0
            for images, labels in loader:
                opt.zero_grad()
                logits = model(_shifted(images, shift, gen))
                loss = loss_fn(logits, labels)
                loss.backward()
                opt.step()
                sched.step()
                total_loss += loss.item() * len(labels)
                correct += (logits.argmax(1) == labels).sum().item()
                seen += len(labels)
            row = {"epoch": epoch + 1, "loss": total_loss / seen, "train_acc": correct / seen}
            if eval_loader is not None:
                row["eval_acc"] = evaluate(model, eval_loader)
            history.append(row)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
    return model


PREDICT_CHUNK = 100  # images per forward pass of a fake-quantized model in `predict`


def _pass_size(model: nn.Module) -> int | None:
    """Images per forward pass in `predict` (None: the caller's batches). A fake-quantized
    model (torch.ao's fake quantizers, `qnb.simulate.FakeQuant`) rounds every activation
    element by element, fastest on passes whose activations fit in the CPU's cache: 100
    images at a time ran about twice as fast as 1,000 on a 2-core Xeon, with the same logits
    bit for bit (each image is computed alone). Other models run the caller's batches as they are: a
    dynamically quantized model takes its activation range from each pass."""
    fake_quantized = any(isinstance(m, FakeQuantizeBase) or getattr(m, "is_fake_quant", False)
                         for m in model.modules())
    return PREDICT_CHUNK if fake_quantized else None


def predict(model: nn.Module, loader: Iterable | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`model`'s predicted classes and the true labels (both int64, in `loader` order) on
    `loader`'s (images, labels) batches; the test split by default. For paired comparisons of
    two models on the same images (see `qnb.stats`). The model runs in eval mode; its mode is
    restored."""
    model = checks.check_model(model)
    loader = data.test_loader() if loader is None else loader
    was_training = model.training
    model.eval()
    predicted, truth, size = [], [], _pass_size(model)
    try:
        with torch.inference_mode():
            for batch in loader:
                if not isinstance(batch, list | tuple) or len(batch) != 2:
                    raise TypeError(
                        f"loader must yield (images, labels) pairs, got {type(batch).__name__}"
                    )
                images, labels = batch
                parts = images.split(size) if size and torch.is_tensor(images) else (images,)
                predicted.append(torch.cat([model(part).argmax(1) for part in parts]))
                truth.append(torch.as_tensor(labels).to(torch.int64).reshape(-1))
    finally:
        model.train(was_training)
    if not predicted or not sum(map(len, truth)):
        raise ValueError("loader must yield at least one (images, labels) batch, got none")
    return torch.cat(predicted).to(torch.int64), torch.cat(truth)


def evaluate(model: nn.Module, loader: Iterable | None = None) -> float:
    """Top-1 accuracy in [0, 1] of `model` on `loader`'s (images, labels) batches; the test
    split by default. Works for float, fake-quantized and converted int8 models (which take
    float input through their QuantStub). The model runs in eval mode; its mode is restored.
    (A prepared model's observers still record in eval mode: calibrate before you evaluate.)"""
    predicted, labels = predict(model, loader)
    return (predicted == labels).sum().item() / len(labels)


# --- the pretrained cache ------------------------------------------------------------------


def _cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get("QNB_CACHE")
    return (Path(root) if root else files.REPO / ".cache") / "models"


@functools.cache
def _data_digest(name: str) -> str:
    """sha256 of the training data: the text corpus, or the normalised train split."""
    if name in LANGUAGE_MODELS:
        return text.SHA256["train"]
    images, labels = data.tensors(True)
    h = hashlib.sha256(images.numpy().tobytes())
    h.update(labels.numpy().tobytes())
    return h.hexdigest()


def _length(name: str, epochs: object, steps: object) -> tuple[str, int]:
    """("epochs", n) for the image models, ("steps", n) for the language model, defaults from
    `TRAINING`; the other keyword must be None."""
    unit, other, given, wrong = "epochs", "steps", epochs, steps
    if name in LANGUAGE_MODELS:
        unit, other, given, wrong = "steps", "epochs", steps, epochs
    if wrong is not None:
        raise ValueError(
            f"{other} does not apply to {name!r} (it trains for {unit}), got {other}={wrong!r}"
        )
    return unit, check_int(unit, TRAINING[name][unit] if given is None else given, 1)


def _config(name: str, unit: str, length: int, seed: int) -> dict:
    """Everything the trained weights depend on (but the machine)."""
    shapes = [[k, list(v.shape)] for k, v in build(name).state_dict().items()]
    arch = hashlib.sha256(json.dumps(shapes).encode()).hexdigest()  # the tensors' names and shapes
    return {
        "name": name,
        **TRAINING[name],
        unit: length,
        "seed": seed,
        "data": _data_digest(name),
        "arch": arch,
        "train_version": TRAIN_VERSION,
        "torch": torch.__version__,
    }


def cache_path(
    name: str,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The file `pretrained(name, ...)` reads and writes (it need not exist yet)."""
    name = _check_name(name)
    unit, length = _length(name, epochs, steps)
    seed = check_int("seed", seed, 0)
    config = _config(name, unit, length, seed)
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    version = re.sub(r"[^A-Za-z0-9.]+", "_", torch.__version__)
    return _cache_dir(cache_dir) / f"{name}-{key}-torch{version}.pt"


def _load(path: Path, name: str) -> nn.Module | None:
    """The model cached at `path`, or None (with a warning if the file is unreadable)."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: train again
        reason = f"not a readable weights file: {type(exc).__name__}"
    else:
        try:
            model = build(name)
            model.load_state_dict(saved["state_dict"])
            model.history = list(saved.get("history", []))
            return model.eval()
        except Exception as exc:  # other contents, weights of another shape: train again
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:240]
    warnings.warn(
        f"cached weights {str(path)!r} could not be read ({reason}); "
        "training again and replacing the file",
        RuntimeWarning,
        stacklevel=3,
    )
    return None


def _save(model: nn.Module, path: Path) -> None:
    """Write the weights atomically; warn, don't fail, if that is impossible."""
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "history": model.history}, buffer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(path, buffer.getvalue())
    except OSError as exc:
        warnings.warn(
            f"could not cache weights at {str(path)!r} ({exc})", RuntimeWarning, stacklevel=3
        )


def pretrained(
    name: str,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> nn.Module:
    """A trained model by name, in eval mode: a fresh copy on each call.

    With the default config (`TRAINING[name]`; `epochs` overrides the epoch count of the image
    models, `steps` the step count of "tinylm"), the weights shipped in `WEIGHTS_DIR` are loaded
    (checked against their sha256 and training config in the manifest; `make models` retrains
    them). Any other config is trained on first use (`seed` sets the initial weights and the
    data order; on `TRAIN_THREADS` threads) and cached in `cache_dir` (default `.cache/models/`
    of the checkout, or `$QNB_CACHE/models`) under a file name keyed by the config, the
    training data and the torch version. An unreadable cache file is replaced, with a warning.
    `model.history` holds the training history.
    """
    name = _check_name(name)
    unit, length = _length(name, epochs, steps)
    seed = check_int("seed", seed, 0)
    progress = check_progress(progress)
    if length == TRAINING[name][unit]:
        model = _load_shipped(name, seed, _config(name, unit, length, seed), WEIGHTS_DIR)
        if model is not None:
            return model
    path = cache_path(name, epochs=epochs, steps=steps, seed=seed, cache_dir=cache_dir)
    model = _load(path, name)
    if model is None:
        model = _fit(name, seed, unit, length, progress)
        _save(model, path)
    return model


@contextlib.contextmanager
def on_train_threads() -> Iterator[None]:
    """Run the block on `TRAIN_THREADS` threads, the caller's setting restored after: training
    (and QAT, AdaRound) then gives the same weights on any core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _on_train_threads(fit: Callable[..., nn.Module], model: nn.Module, **kwargs) -> nn.Module:
    """`fit(model, **kwargs)` on `TRAIN_THREADS` threads (the caller's setting restored)."""
    with on_train_threads():
        return fit(model, **kwargs)


# Every (name, seed) the notebooks load with their defaults: shipped in `WEIGHTS_DIR`.
NOTEBOOK_MODELS = [
    *((name, s) for name in ("depthwise_cnn", "plain_cnn") for s in range(3)),
    ("lstm", 0),
    *(("tinylm", s) for s in range(3)),
]


def weights_file(name: str, seed: int) -> str:
    """The shipped file name of `name` trained with `seed` (in `WEIGHTS_DIR`)."""
    return f"{_check_name(name)}-seed{check_int('seed', seed, 0)}.pt"


def _manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {"models": {}}


def _shipped_config(config: dict) -> dict:
    """What must match for a shipped file to stand for `config`: all of it but the torch
    version (a state dict loads the same in any torch)."""
    return {k: v for k, v in config.items() if k != "torch"}


def _load_shipped(name: str, seed: int, config: dict, folder: Path) -> nn.Module | None:
    """The shipped weights of (name, seed) if the manifest says they were trained with
    `config` and the file's sha256 matches; else None (a stale file: with a warning)."""
    entry = _manifest(folder)["models"].get(weights_file(name, seed))
    if entry is None:
        return None
    path = folder / weights_file(name, seed)
    if _shipped_config(entry["config"]) != _shipped_config(config):
        warnings.warn(f"shipped weights {path.name} were trained with another config than "
                      f"TRAINING[{name!r}] (run `make models`); training into the cache instead",
                      RuntimeWarning, stacklevel=3)
        return None
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
        warnings.warn(f"shipped weights {str(path)!r} are missing or do not match their sha256 "
                      "in the manifest; training into the cache instead", RuntimeWarning,
                      stacklevel=3)
        return None
    return _load(path, name)


def _fit(name: str, seed: int, unit: str, length: int, progress: bool | None,
         limit: int | None = None) -> nn.Module:
    """A new model of `name` trained with `TRAINING[name]` (`unit` = `length`) and `seed`, on
    `TRAIN_THREADS` threads; the image models also score the validation split every epoch
    (`history[i]["eval_acc"]`, which draws no random numbers)."""
    config = {**TRAINING[name], unit: length}
    model = build(name, seed=seed)
    if name in LANGUAGE_MODELS:
        return _on_train_threads(lm.train, model, seed=seed, progress=progress, **config)
    return train(model, seed=seed, progress=progress, limit=limit,
                 eval_loader=data.validation_loader(), **config)


def _retrain_one(name: str, seed: int, unit: str, length: int, limit: int | None) -> dict:
    """Train (name, seed) in this process; its weights, history and seconds."""
    start = time.perf_counter()
    model = _fit(name, seed, unit, length, progress=False, limit=limit)
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "history": model.history}, buffer)
    return {"weights": buffer.getvalue(), "seconds": time.perf_counter() - start,
            "history": model.history}


def retrain(
    pairs: Iterable[tuple[str, int]] | None = None,
    *,
    folder: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    limit: int | None = None,
) -> dict[tuple[str, int], float]:
    """Train every `(name, seed)` of `pairs` (default: `NOTEBOOK_MODELS`) from scratch with
    `TRAINING`, `jobs` at a time in fresh processes (default: one per core; each on
    `TRAIN_THREADS` threads), and write the weights and the manifest entries (sha256, config,
    data digest, torch version, seconds, machine) into `folder` (default `WEIGHTS_DIR`, the
    shipped weights). `epochs` / `steps` / `limit` (the first `limit` training images) make a
    short run for tests; the manifest records them, and `pretrained` only uses files whose
    config is the default one. Returns the seconds each training took."""
    from qnb import env  # the machine's description, only here

    pairs = list(NOTEBOOK_MODELS if pairs is None else pairs)
    plan = {}
    for pair in pairs:  # everything is checked before anything trains
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"pairs must hold (name, seed) pairs, got {pair!r}")
        name, seed = _check_name(pair[0]), check_int("seed", pair[1], 0)
        plan[name, seed] = _length(name, epochs if name not in LANGUAGE_MODELS else None,
                                   steps if name in LANGUAGE_MODELS else None)
    pairs = list(plan)
    if limit is not None:
        limit = check_int("limit", limit, 1)
    jobs = check_int("jobs", (os.cpu_count() or 1) if jobs is None else jobs, 1)
    folder = Path(WEIGHTS_DIR if folder is None else folder)
    folder.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch state
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = {pair: pool.submit(_retrain_one, *pair, *plan[pair], limit) for pair in pairs}
        results = {pair: future.result() for pair, future in futures.items()}
    manifest = _manifest(folder)
    machine = (f"{env.report().get('cpu')}, {os.cpu_count()} cores, {jobs} trainings at a time "
               f"on {TRAIN_THREADS} thread each")
    for (name, seed), result in results.items():
        unit, length = plan[name, seed]
        files.write_atomic(folder / weights_file(name, seed), result["weights"])
        last = result["history"][-1] if result["history"] else {}
        manifest["models"][weights_file(name, seed)] = {
            "sha256": hashlib.sha256(result["weights"]).hexdigest(),
            "config": _config(name, unit, length, seed) | ({"limit": limit} if limit else {}),
            "seconds": round(result["seconds"], 1),
            "machine": machine,
            "final": {k: round(v, 4) for k, v in last.items() if isinstance(v, float)},
        }
    manifest["models"] = dict(sorted(manifest["models"].items()))
    files.write_atomic(folder / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    return {pair: result["seconds"] for pair, result in results.items()}
