"""Rebuild the shipped Fashion-MNIST (data/FashionMNIST/raw) from Debian's package.

Debian's `dataset-fashion-mnist` package (version 0.0~git20200523.55506a9-1, architecture
`all`) holds the full Fashion-MNIST of Zalando Research as four gzip'd IDX files under
`usr/share/datasets/fashion-mnist/`. This script fetches the package with
`apt-get download` (nothing is installed), unpacks it with `dpkg-deb -x`, decompresses the four
files into torchvision's layout (`FashionMNIST/raw/<name>`, uncompressed, as
`torchvision.datasets.FashionMNIST(root, download=False)` reads them), checks them and prints
their sha256.

Debian recompressed the `.gz` files, so their md5 differs from the upstream checksums that
torchvision lists; the uncompressed IDX files are what is checked here: the IDX headers (magic
2051 for images, 2049 for labels; 60,000 / 10,000 items of 28x28), 6,000 training and 1,000
test images per class, and the sha256 recorded in `data/README.md` (and in `SHA256` below).

    python data/build_fashion_mnist.py              # apt-get download into a temp dir
    python data/build_fashion_mnist.py --deb PATH   # use a .deb already on disk
    python data/build_fashion_mnist.py --check      # only check the shipped files
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "FashionMNIST" / "raw"
PACKAGE = "dataset-fashion-mnist"
PACKAGE_DIR = "usr/share/datasets/fashion-mnist"
COPYRIGHT = "usr/share/doc/dataset-fashion-mnist/copyright"
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
SPLITS = {"train": 60_000, "t10k": 10_000}
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_deb(dest: Path) -> Path:
    """`apt-get download` the package into dest (no root needed, nothing installed)."""
    subprocess.run(["apt-get", "download", PACKAGE], check=True, cwd=dest)
    (deb,) = dest.glob(f"{PACKAGE}_*.deb")
    return deb


def read_idx(raw: bytes, name: str) -> np.ndarray:
    """The array in an uncompressed IDX file, its header checked against the file name."""
    images = "images" in name
    magic, count = struct.unpack(">II", raw[:8])
    want_magic = IMAGE_MAGIC if images else LABEL_MAGIC
    want_count = SPLITS[name.split("-")[0]]
    if (magic, count) != (want_magic, want_count):
        raise ValueError(f"{name}: header magic {magic}, {count} items; expected "
                         f"{want_magic}, {want_count}")
    if images:
        rows, cols = struct.unpack(">II", raw[8:16])
        if (rows, cols) != (28, 28) or len(raw) != 16 + count * 784:
            raise ValueError(f"{name}: {rows}x{cols} images in {len(raw)} bytes; expected 28x28")
        return np.frombuffer(raw, np.uint8, offset=16).reshape(count, 28, 28)
    if len(raw) != 8 + count:
        raise ValueError(f"{name}: {len(raw)} bytes for {count} labels")
    return np.frombuffer(raw, np.uint8, offset=8)


def check(folder: Path) -> None:
    """Fail unless the four files are Fashion-MNIST as shipped: headers, balance, sha256."""
    for split, count in SPLITS.items():
        labels = read_idx((folder / f"{split}-labels-idx1-ubyte").read_bytes(), f"{split}-labels")
        read_idx((folder / f"{split}-images-idx3-ubyte").read_bytes(), f"{split}-images")
        per_class = np.bincount(labels, minlength=10)
        if len(per_class) != 10 or (per_class != count // 10).any():
            raise ValueError(f"{split}: images per class {per_class.tolist()}, expected "
                             f"{count // 10} each")
    for name, want in SHA256.items():
        got = sha256(folder / name)
        if got != want:
            raise ValueError(f"{name}: sha256 {got}, expected {want} (data/README.md)")


def build(deb: Path) -> None:
    """Unpack `deb`, decompress its four IDX files into OUT, copy the license, check."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        OUT.mkdir(parents=True, exist_ok=True)
        for name in SHA256:
            raw = gzip.decompress((Path(tmp) / PACKAGE_DIR / f"{name}.gz").read_bytes())
            read_idx(raw, name)
            (OUT / name).write_bytes(raw)
        shutil.copyfile(Path(tmp) / COPYRIGHT, OUT.parent / "LICENSE")
    check(OUT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deb", type=Path, help="the dataset-fashion-mnist .deb, if on disk")
    parser.add_argument("--check", action="store_true", help="only check the shipped files")
    args = parser.parse_args(argv)
    if not args.check:
        if args.deb is None:
            with tempfile.TemporaryDirectory() as tmp:
                build(fetch_deb(Path(tmp)))
        else:
            build(args.deb)
    check(OUT)
    for name in SHA256:
        print(f"{sha256(OUT / name)}  FashionMNIST/raw/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
