"""The shipped MNIST subset and the qnb.data loaders (offline, a few seconds)."""

import hashlib
import importlib.util
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import MNIST

import qnb.data as qd

REPO = Path(__file__).resolve().parents[2]
RAW = REPO / "data" / "MNIST" / "raw"
SHA256 = {
    "train-images-idx3-ubyte": "7012b1658b1983723392fc80f8d6ccc652d4b2c4c4e0ce3dc4bd81bc692eee35",
    "train-labels-idx1-ubyte": "d26d914e90d658a22168176473b4dc7c430a431d25253a746b8f795d5b4e6ccc",
    "t10k-images-idx3-ubyte": "0b1274013398c19de155db078bb99eee3b67b76d57d14ce34b40acc73ff123e8",
    "t10k-labels-idx1-ubyte": "e520526e9ad85a24738ae4b68f1f8e80a583a55a927663b535d01607887ad0d9",
}
SIZES = {True: 4000, False: 1000}  # digits in the training and test files
SPLIT_SIZES = {True: 3500, False: 1000}  # tensors(train): the train split lacks validation
QNB_DATA_AT_IMPORT = os.environ.get("QNB_DATA")


@pytest.fixture(autouse=True)
def shipped_data(monkeypatch):
    """Read the shipped subset whatever QNB_DATA the caller's environment sets."""
    monkeypatch.setenv("QNB_DATA", str(REPO / "data"))


def batches(loader):
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels)


def build_script():
    spec = importlib.util.spec_from_file_location("build", REPO / "data" / "build_mnist_subset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the shipped files ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SHA256)
def test_checksum(name):
    assert hashlib.sha256((RAW / name).read_bytes()).hexdigest() == SHA256[name]


def test_readme_lists_the_same_checksums():
    readme = (REPO / "data" / "README.md").read_text()
    for name, digest in SHA256.items():
        assert f"`MNIST/raw/{name}` | `{digest}`" in readme


@pytest.mark.parametrize("prefix, n", [("train", 4000), ("t10k", 1000)])
def test_idx_headers(prefix, n):
    images = (RAW / f"{prefix}-images-idx3-ubyte").read_bytes()
    labels = (RAW / f"{prefix}-labels-idx1-ubyte").read_bytes()
    assert struct.unpack(">4I", images[:16]) == (2051, n, 28, 28)
    assert len(images) == 16 + n * 28 * 28
    assert struct.unpack(">2I", labels[:8]) == (2049, n)
    assert len(labels) == 8 + n


@pytest.mark.parametrize("train", [True, False])
def test_torchvision_reads_the_files_balanced(train):
    ds = MNIST(str(REPO / "data"), train=train, download=False)
    n = SIZES[train]
    assert ds.data.shape == (n, 28, 28) and ds.data.dtype == torch.uint8
    assert ds.targets.shape == (n,) and ds.targets.dtype == torch.int64
    assert ds.targets.bincount().tolist() == [n // 10] * 10
    assert 0.12 < ds.data.float().mean().item() / 255 < 0.14  # MNIST's mean ink is ~0.13


def test_splits_are_disjoint():
    train, test = (MNIST(str(REPO / "data"), train=t).data.flatten(1) for t in (True, False))
    assert torch.unique(torch.cat([train, test]), dim=0).shape[0] == 5000


# --- qnb.data ------------------------------------------------------------------------------


def test_data_dir_and_constants():
    assert qd.DATA_DIR.resolve() == Path(QNB_DATA_AT_IMPORT or REPO / "data").resolve()
    assert (qd.MEAN, qd.STD) == (0.1307, 0.3081)


@pytest.mark.parametrize("train", [True, False])
def test_tensors_shapes_dtypes_and_cache(train):
    images, labels = qd.tensors(train)
    n = SPLIT_SIZES[train]
    assert images.shape == (n, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert qd.tensors(train)[0] is images  # cached per process


def _file_rows(train=True):
    """Rows of the raw file (normalised like the loaders), keyed by their bytes."""
    images = qd.mnist(train).data.unsqueeze(1).float().div(255).sub(qd.MEAN).div(qd.STD)
    return {img.numpy().tobytes(): i for i, img in enumerate(images)}


def _rows_in_file(images, train=True):
    """Each image's row in the raw file; KeyError if an image is not in it."""
    row_of = _file_rows(train)
    return [row_of[img.numpy().tobytes()] for img in images]


@pytest.mark.parametrize("train", [True, False])
def test_tensors_match_the_dataset_transform(train):
    ds = qd.mnist(train)
    images, labels = qd.tensors(train)
    rows = torch.arange(len(ds))
    if train:  # the train split is the training file without the validation rows
        rows = rows[~torch.isin(rows, qd.validation_indices())]
    idx = range(0, len(rows), 7)
    expected = torch.stack([ds[int(rows[i])][0] for i in idx])
    torch.testing.assert_close(images[list(idx)], expected, rtol=0, atol=1e-6)
    assert labels[list(idx)].tolist() == [ds[int(rows[i])][1] for i in idx]
    assert ds.transform is qd.TRANSFORM


# --- the validation split ------------------------------------------------------------------


def test_validation_split_is_balanced_and_sized():
    assert qd.VALIDATION_PER_CLASS == 50
    images, labels = qd.validation_tensors()
    assert images.shape == (500, 1, 28, 28) and images.dtype == torch.float32
    assert labels.bincount().tolist() == [50] * 10
    assert qd.tensors(True)[1].bincount().tolist() == [350] * 10
    assert qd.validation_tensors()[0] is images  # cached per process


def test_validation_indices_are_fixed_evenly_spaced_rows_of_each_class():
    rows = qd.validation_indices()
    assert rows.dtype == torch.int64 and len(rows) == 500
    assert torch.equal(rows, rows.sort().values) and len(rows.unique()) == 500
    assert torch.equal(rows, qd.validation_indices())
    file_labels = qd.mnist(True).targets
    for digit in range(10):  # positions 0, 8, 16, ..., 392 among the 400 digits of the class
        of_class = torch.nonzero(file_labels == digit).flatten()
        assert torch.equal(rows[file_labels[rows] == digit], of_class[::8])
    images, labels = qd.validation_tensors()
    assert _rows_in_file(images) == rows.tolist()  # in file order
    assert torch.equal(labels, file_labels[rows])


def test_validation_does_not_depend_on_any_seed():
    before = qd.validation_indices()
    torch.manual_seed(12345)
    np.random.seed(6789)
    qd._split.cache_clear()  # recompute from the files, after touching the global RNGs
    qd._file_tensors.cache_clear()
    assert torch.equal(qd.validation_indices(), before)
    assert torch.equal(qd.validation_tensors()[1], qd.mnist(True).targets[before])
    for seed in (0, 1, 7):  # no loader seed reaches the validation digits
        assert not set(_rows_in_file(batches(qd.train_loader(500, seed=seed))[0])) & set(
            before.tolist()
        )


def test_train_validation_and_test_are_disjoint_and_cover_the_files():
    train = _rows_in_file(batches(qd.train_loader(batch_size=500))[0])
    validation = _rows_in_file(batches(qd.validation_loader())[0])
    assert len(set(train)) == 3500 and len(set(validation)) == 500
    assert not set(train) & set(validation)
    assert set(train) | set(validation) == set(range(4000))
    test = {img.numpy().tobytes() for img in qd.tensors(False)[0]}
    assert len(test) == 1000
    seen = {img.numpy().tobytes() for img in qd.tensors(True)[0]}
    seen |= {img.numpy().tobytes() for img in qd.validation_tensors()[0]}
    assert not seen & test  # no test digit in train or validation


def test_validation_loader_is_in_file_order_and_limited():
    images, labels = qd.validation_tensors()
    x, y = batches(qd.validation_loader())
    assert torch.equal(x, images) and torch.equal(y, labels)
    loader = qd.validation_loader(batch_size=64, limit=100)
    assert [len(b) for b, _ in loader] == [64, 36]
    assert torch.equal(batches(loader)[1], labels[:100])


def test_a_training_file_with_too_few_digits_of_a_class_is_refused():
    labels = torch.arange(10).repeat(120)
    labels[labels == 3] = 4  # no 3s at all
    with pytest.raises(ValueError, match="at least 100 digits of each class.*got 0 of class 3"):
        qd._validation_rows(labels)


def test_train_loader_is_seeded():
    x1, y1 = batches(qd.train_loader(batch_size=500))
    x2, y2 = batches(qd.train_loader(batch_size=500))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    _, y3 = batches(qd.train_loader(batch_size=500, seed=1))
    assert not torch.equal(y1, y3)
    assert y1.bincount().tolist() == [350] * 10  # a permutation of the whole train split


def test_train_loader_unshuffled_and_limit():
    images, labels = qd.tensors(True)
    loader = qd.train_loader(batch_size=64, shuffle=False, limit=100)
    x, y = batches(loader)
    assert [len(b) for b, _ in loader] == [64, 36]
    assert torch.equal(x, images[:100]) and torch.equal(y, labels[:100])


def test_test_loader_is_in_file_order():
    images, labels = qd.tensors(False)
    x, y = batches(qd.test_loader())
    assert torch.equal(x, images) and torch.equal(y, labels)
    assert len(batches(qd.test_loader(batch_size=10, limit=30))[1]) == 30


def test_calibration_loader_is_a_fixed_train_subset():
    x1, y1 = batches(qd.calibration_loader())
    x2, _ = batches(qd.calibration_loader(batch_size=7))
    assert x1.shape == (256, 1, 28, 28) and torch.equal(x1, x2)
    images, labels = qd.tensors(True)
    row_of = {img.numpy().tobytes(): i for i, img in enumerate(images)}
    rows = [row_of[img.numpy().tobytes()] for img in x1]  # KeyError if not a train-split image
    assert len(set(rows)) == 256 and torch.equal(labels[rows], y1)
    x3, _ = batches(qd.calibration_loader(n_images=256, seed=1))
    assert not torch.equal(x1, x3)
    everything = batches(qd.calibration_loader(n_images=3500))[0]
    assert len(everything) == 3500
    held_out = set(qd.validation_indices().tolist())
    assert not set(_rows_in_file(everything)) & held_out  # never a validation digit


BAD = [
    (qd.train_loader, {"batch_size": 0}, ValueError, "batch_size", "0"),
    (qd.train_loader, {"batch_size": 2.5}, TypeError, "batch_size", "2.5"),
    (qd.train_loader, {"batch_size": True}, TypeError, "batch_size", "True"),
    (qd.train_loader, {"limit": 0}, ValueError, "limit", "1..3500"),
    (qd.train_loader, {"limit": 3501}, ValueError, "limit", "3501"),
    (qd.train_loader, {"limit": "10"}, TypeError, "limit", "'10'"),
    (qd.train_loader, {"seed": -1}, ValueError, "seed", "-1"),
    (qd.train_loader, {"shuffle": 1}, TypeError, "shuffle", "1"),
    (qd.test_loader, {"batch_size": -5}, ValueError, "batch_size", "-5"),
    (qd.test_loader, {"limit": False}, TypeError, "limit", "False"),
    (qd.test_loader, {"limit": 1001}, ValueError, "limit", "1..1000"),
    (qd.validation_loader, {"batch_size": 0}, ValueError, "batch_size", "0"),
    (qd.validation_loader, {"batch_size": 1.0}, TypeError, "batch_size", "1.0"),
    (qd.validation_loader, {"limit": 0}, ValueError, "limit", "1..500, got 0"),
    (qd.validation_loader, {"limit": 501}, ValueError, "limit", "1..500, got 501"),
    (qd.validation_loader, {"limit": "all"}, TypeError, "limit", "'all'"),
    (qd.calibration_loader, {"n_images": 0}, ValueError, "n_images", "1..3500, got 0"),
    (qd.calibration_loader, {"n_images": 3501}, ValueError, "n_images", "3501"),
    (qd.calibration_loader, {"n_images": 10.0}, TypeError, "n_images", "10.0"),
    (qd.calibration_loader, {"batch_size": None}, TypeError, "batch_size", "None"),
    (qd.calibration_loader, {"seed": 1.5}, TypeError, "seed", "1.5"),
    (qd.mnist, {"train": "yes"}, TypeError, "train", "'yes'"),
]


@pytest.mark.parametrize("func, kwargs, exc, name, value", BAD)
def test_bad_input(func, kwargs, exc, name, value):
    with pytest.raises(exc) as info:
        func(**kwargs)
    message = str(info.value)
    assert message.startswith(f"{name} must be ") and value in message


def test_numpy_ints_are_accepted():
    assert len(batches(qd.calibration_loader(n_images=np.int64(8)))[1]) == 8


@pytest.mark.parametrize(
    "call",
    [
        lambda: qd.mnist(),
        lambda: qd.tensors(False),
        lambda: qd.train_loader(),
        lambda: qd.test_loader(),
        lambda: qd.calibration_loader(),
        lambda: qd.validation_loader(),
        lambda: qd.validation_tensors(),
        lambda: qd.validation_indices(),
    ],
)
def test_missing_data_dir(call, tmp_path, monkeypatch):
    monkeypatch.setenv("QNB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as info:
        call()
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in str(info.value)
    assert "build_mnist_subset.py" in str(info.value)


def test_root_argument_wins_over_env_var(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        qd.mnist(True, root=tmp_path)
    monkeypatch.setenv("QNB_DATA", str(tmp_path))
    assert len(qd.mnist(False, root=REPO / "data")) == 1000


# --- the build script (on synthetic data; no network) --------------------------------------


def test_split_is_stratified_and_deterministic():
    build = build_script()
    labels = np.repeat(np.arange(10), 500)
    train, test = build.split(labels)
    assert np.bincount(labels[train]).tolist() == [400] * 10
    assert np.bincount(labels[test]).tolist() == [100] * 10
    assert len(np.union1d(train, test)) == 5000
    again = build.split(labels)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])


def test_write_idx_round_trips(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    build = build_script()
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    build.write_idx(tmp_path / "i", images)
    build.write_idx(tmp_path / "l", np.array([3, 7], dtype=np.uint8))
    assert np.array_equal(read_image_file(str(tmp_path / "i")).numpy(), images)
    assert read_label_file(str(tmp_path / "l")).tolist() == [3, 7]


def test_check_rejects_a_bad_table():
    build = build_script()
    table = np.zeros((5000, 785), dtype=np.int64)
    table[:, -1] = np.repeat(np.arange(10), 500)
    build.check(table)
    table[0, 0] = 256
    with pytest.raises(ValueError, match="0..255"):
        build.check(table)
    table[0, 0], table[0, -1] = 0, 1
    with pytest.raises(ValueError, match="500 images of each class"):
        build.check(table)
