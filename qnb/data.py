"""Offline MNIST: torchvision's `MNIST` over the shipped subset, and seeded loaders.

The shipped data (`data/MNIST/raw`, 4,000 train / 1,000 test, 10 balanced classes) is read with
`download=False`; nothing here ever downloads. Set `QNB_DATA` to read another root (for example
the opt-in full MNIST in `data/full`). The loaders serve images normalised once into tensors,
cached per process, so calling them again is cheap.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset
from torchvision import transforms
from torchvision.datasets import MNIST

from qnb.checks import check_bool as _check_bool
from qnb.checks import check_int as _check_int

__all__ = [
    "DATA_DIR",
    "MEAN",
    "STD",
    "TRANSFORM",
    "mnist",
    "tensors",
    "train_loader",
    "test_loader",
    "calibration_loader",
]

DATA_DIR = Path(os.environ.get("QNB_DATA") or Path(__file__).resolve().parent.parent / "data")
MEAN, STD = 0.1307, 0.3081
TRANSFORM = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
REBUILD = "python data/build_mnist_subset.py"


def _root(root: str | os.PathLike[str] | None) -> Path:
    """The data root: `root` if given, else $QNB_DATA, else DATA_DIR."""
    return Path(root if root is not None else os.environ.get("QNB_DATA") or DATA_DIR).resolve()


def mnist(train: bool = True, root: str | os.PathLike[str] | None = None) -> MNIST:
    """The train or test split as `torchvision.datasets.MNIST` (ToTensor + Normalize)."""
    _check_bool("train", train)
    path = _root(root)
    missing = [f for f in FILES if not (path / "MNIST" / "raw" / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"MNIST files {missing} not found in {path / 'MNIST' / 'raw'}; rebuild the shipped "
            f"subset with `{REBUILD}` from the repository root, or set QNB_DATA to a data root "
            "that holds MNIST/raw (nothing is downloaded)."
        )
    return MNIST(str(path), train=train, download=False, transform=TRANSFORM)


@functools.lru_cache(maxsize=8)
def _cached(path: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    ds = mnist(train, path)
    images = ds.data.unsqueeze(1).to(torch.float32).div(255).sub(MEAN).div(STD)
    return images, ds.targets.to(torch.int64)


def tensors(
    train: bool = True, root: str | os.PathLike[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images (N, 1, 28, 28) float32 and labels (N,) int64, cached per process.

    The tensors are shared between calls: do not modify them in place.
    """
    return _cached(_root(root), _check_bool("train", train))


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


def _limited(train: bool, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = tensors(train)
    if limit is not None:
        limit = _check_int("limit", limit, 1, len(labels))
    return images[:limit], labels[:limit]


def train_loader(
    batch_size: int = 64, shuffle: bool = True, seed: int = 0, limit: int | None = None
) -> DataLoader:
    """Batches of (images, labels) from the train split, or its first `limit` images.

    Shuffling uses a generator seeded with `seed`: two loaders built alike give the same order.
    """
    batch_size = _check_int("batch_size", batch_size)
    seed = _check_int("seed", seed, 0)
    images, labels = _limited(True, limit)
    return _loader(images, labels, batch_size, seed if _check_bool("shuffle", shuffle) else None)


def test_loader(batch_size: int = 256, limit: int | None = None) -> DataLoader:
    """Batches of (images, labels) from the test split (or its first `limit`), in file order."""
    batch_size = _check_int("batch_size", batch_size)
    return _loader(*_limited(False, limit), batch_size)


def calibration_loader(n_images: int = 256, batch_size: int = 32, seed: int = 0) -> DataLoader:
    """A fixed random subset of `n_images` train images, chosen with `seed`, in a fixed order."""
    batch_size = _check_int("batch_size", batch_size)
    seed = _check_int("seed", seed, 0)
    images, labels = tensors(True)
    n_images = _check_int("n_images", n_images, 1, len(labels))
    pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n_images]
    return _loader(images[pick], labels[pick], batch_size)
