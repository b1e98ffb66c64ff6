"""Offline Fashion-MNIST: torchvision's `FashionMNIST` over the shipped files, seeded loaders.

The shipped data (`data/FashionMNIST/raw`: Zalando Research's Fashion-MNIST, 60,000 training and
10,000 test images of 28x28 grey clothing, 10 balanced classes; see `data/README.md`) is read
with `download=False`; nothing here ever downloads. Set `QNB_DATA` to read another root that
holds `FashionMNIST/raw`. The loaders serve images normalised once into tensors, cached per
process, so calling them again is cheap.

Three disjoint splits:

- **validation**: `VALIDATION_PER_CLASS` (500) images of each class, 5,000 in all, held out of
  the 60,000 training images. Every choice (learning rates, clip values, estimators, bit
  allocations) is made on it. It is fixed: the images at evenly spaced positions among each
  class's images in file order (the file is already shuffled), so it depends on no seed and no
  RNG algorithm. One image is 0.02 points of validation accuracy; training keeps 55,000.
- **train**: the other 55,000 training images; `tensors(True)`, `train_loader` and
  `calibration_loader` serve only these.
- **test**: the 10,000 test images, only to report (`tensors(False)`, `test_loader`).

`fashion_mnist(train)` is the raw torchvision dataset (all 60,000 training images, validation
included). `CLASSES` names the ten classes.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset
from torchvision import transforms
from torchvision.datasets import FashionMNIST

from qnb import files
from qnb.checks import check_bool, check_int

__all__ = [
    "DATA_DIR",
    "MEAN",
    "STD",
    "TRANSFORM",
    "CLASSES",
    "fashion_mnist",
    "VALIDATION_PER_CLASS",
    "validation_indices",
    "tensors",
    "validation_tensors",
    "train_loader",
    "validation_loader",
    "test_loader",
    "calibration_loader",
]

DATA_DIR = Path(os.environ.get("QNB_DATA") or files.REPO / "data")
# Mean and standard deviation of the 60,000 training images' pixels (in 0..1), rounded.
MEAN, STD = 0.2860, 0.3530
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
TRANSFORM = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
REBUILD = "python data/build_fashion_mnist.py"
VALIDATION_PER_CLASS = 500


def _root(root: str | os.PathLike[str] | None) -> Path:
    """The data root: `root` if given, else $QNB_DATA, else DATA_DIR."""
    return Path(root if root is not None else os.environ.get("QNB_DATA") or DATA_DIR).resolve()


def fashion_mnist(
    train: bool = True, root: str | os.PathLike[str] | None = None
) -> FashionMNIST:
    """The train or test file as `torchvision.datasets.FashionMNIST` (ToTensor + Normalize)."""
    check_bool("train", train)
    path = _root(root)
    missing = [f for f in FILES if not (path / "FashionMNIST" / "raw" / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files {missing} not found in {path / 'FashionMNIST' / 'raw'}; "
            f"rebuild them with `{REBUILD}` from the repository root, or set QNB_DATA to a data "
            "root that holds FashionMNIST/raw (nothing is downloaded)."
        )
    return FashionMNIST(str(path), train=train, download=False, transform=TRANSFORM)


@functools.lru_cache(maxsize=8)
def _file_tensors(path: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of one file pair, normalised (the training file still holds validation)."""
    ds = fashion_mnist(train, path)
    images = ds.data.unsqueeze(1).to(torch.float32).div(255).sub(MEAN).div(STD)
    return images, ds.targets.to(torch.int64)


def _validation_rows(labels: torch.Tensor) -> torch.Tensor:
    """Rows of the validation images: per class, VALIDATION_PER_CLASS evenly spaced positions
    among that class's rows in file order; sorted."""
    picked = []
    for label in range(10):
        rows = torch.nonzero(labels == label).flatten()
        if len(rows) < 2 * VALIDATION_PER_CLASS:
            raise ValueError(
                f"the training file must hold at least {2 * VALIDATION_PER_CLASS} images of each "
                f"class to hold {VALIDATION_PER_CLASS} out for validation, got {len(rows)} of "
                f"class {label}"
            )
        positions = torch.arange(VALIDATION_PER_CLASS) * len(rows) // VALIDATION_PER_CLASS
        picked.append(rows[positions])
    return torch.cat(picked).sort().values


@functools.lru_cache(maxsize=8)
def _split(path: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if split == "test":
        return _file_tensors(path, False)
    images, labels = _file_tensors(path, True)
    held_out = torch.zeros(len(labels), dtype=torch.bool)
    held_out[_validation_rows(labels)] = True
    keep = held_out if split == "validation" else ~held_out
    return images[keep], labels[keep]


def validation_indices(root: str | os.PathLike[str] | None = None) -> torch.Tensor:
    """Positions (sorted, int64) of the validation images in the training file, i.e. in
    `fashion_mnist(True)`. The same on every call and machine: no seed is involved."""
    return _validation_rows(_file_tensors(_root(root), True)[1])


def tensors(
    train: bool = True, root: str | os.PathLike[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images (N, 1, 28, 28) float32 and labels (N,) int64, cached per process:
    the train split (the training file without the validation images: 55,000 of the
    60,000) or, with `train=False`, the test split.

    The tensors are shared between calls: do not modify them in place.
    """
    return _split(_root(root), "train" if check_bool("train", train) else "test")


def validation_tensors(
    root: str | os.PathLike[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation split's images and labels (`VALIDATION_PER_CLASS` images of each class,
    in file order), as `tensors`."""
    return _split(_root(root), "validation")


def _loader(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int | None = None
) -> DataLoader:
    """A DataLoader over the tensors; shuffled with a seeded generator when `seed` is given."""
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(
        TensorDataset(images, labels),
        batch_size=batch_size,
        shuffle=seed is not None,
        generator=gen,
    )


def _limited(split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = _split(_root(None), split)
    if limit is not None:
        limit = check_int("limit", limit, 1, len(labels))
    return images[:limit], labels[:limit]


def train_loader(
    batch_size: int = 64, shuffle: bool = True, seed: int = 0, limit: int | None = None
) -> DataLoader:
    """Batches of (images, labels) from the train split (the training images without the
    validation ones: 55,000 of the 60,000), or its first `limit` images.

    Shuffling uses a generator seeded with `seed`: two loaders built alike give the same order.
    """
    batch_size = check_int("batch_size", batch_size)
    seed = check_int("seed", seed, 0)
    images, labels = _limited("train", limit)
    return _loader(images, labels, batch_size, seed if check_bool("shuffle", shuffle) else None)


def test_loader(batch_size: int = 256, limit: int | None = None) -> DataLoader:
    """Batches of (images, labels) from the test split (or its first `limit`), in file order."""
    batch_size = check_int("batch_size", batch_size)
    return _loader(*_limited("test", limit), batch_size)


def validation_loader(batch_size: int = 256, limit: int | None = None) -> DataLoader:
    """Batches of (images, labels) from the validation split (or its first `limit`), in file
    order. Make choices on these images; report on the test split."""
    batch_size = check_int("batch_size", batch_size)
    return _loader(*_limited("validation", limit), batch_size)


def calibration_loader(n_images: int = 256, batch_size: int = 32, seed: int = 0) -> DataLoader:
    """A fixed random subset of `n_images` images of the train split (never validation or
    test images), chosen with `seed`, in a fixed order."""
    batch_size = check_int("batch_size", batch_size)
    seed = check_int("seed", seed, 0)
    images, labels = tensors(True)
    n_images = check_int("n_images", n_images, 1, len(labels))
    pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n_images]
    return _loader(images[pick], labels[pick], batch_size)
