"""The shipped Fashion-MNIST, its build script's checks, and the qnb.data loaders (offline)."""

import hashlib
import importlib.util
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import FashionMNIST

import qnb.data as qd

REPO = Path(__file__).resolve().parents[2]
RAW = REPO / "data" / "FashionMNIST" / "raw"
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FILE_SIZES = {True: 60_000, False: 10_000}  # images in the training and test files
SPLIT_SIZES = {True: 55_000, False: 10_000}  # tensors(train): the train split lacks validation
N_VALIDATION = 5_000
QNB_DATA_AT_IMPORT = os.environ.get("QNB_DATA")


@pytest.fixture(autouse=True)
def shipped_data(monkeypatch):
    """Read the shipped data whatever QNB_DATA the caller's environment sets."""
    monkeypatch.setenv("QNB_DATA", str(REPO / "data"))


def batches(loader):
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels)


def build_script():
    path = REPO / "data" / "build_fashion_mnist.py"
    spec = importlib.util.spec_from_file_location("build_fashion_mnist", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# integers below 2**30 as float64: a dot product with 784 pixels (< 2**38 * 784 < 2**53) is
# exact, whatever order the sum is taken in
_WEIGHTS = torch.from_numpy(np.random.default_rng(0).integers(1, 2**30, 28 * 28).astype(np.float64))


def pixels(images: torch.Tensor) -> torch.Tensor:
    """Normalised images back to their uint8 pixels (exact: one grey level is ~0.011 after
    normalisation, float32 rounding ~1e-7)."""
    return images.mul(qd.STD * 255).add_(qd.MEAN * 255).round_().to(torch.uint8)


def keys(images: torch.Tensor) -> np.ndarray:
    """One number per image that identifies its pixels (an exact dot product with random integer
    weights). Works on uint8 (raw) or normalised images."""
    if images.dtype != torch.uint8:
        images = pixels(images)
    return (images.reshape(len(images), -1).to(torch.float64) @ _WEIGHTS).numpy()


@pytest.fixture(scope="module")
def raw_files():
    """The training and test files' uint8 images and labels, straight from torchvision."""
    return {t: FashionMNIST(str(REPO / "data"), train=t, download=False) for t in (True, False)}


# --- the shipped files ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SHA256)
def test_checksum(name):
    assert hashlib.sha256((RAW / name).read_bytes()).hexdigest() == SHA256[name]


def test_build_script_and_readme_list_the_same_checksums():
    assert build_script().SHA256 == SHA256
    readme = (REPO / "data" / "README.md").read_text()
    for name, digest in SHA256.items():
        assert f"`FashionMNIST/raw/{name}` | `{digest}`" in readme
    assert "MNIST/raw/" not in readme.replace("FashionMNIST/raw/", "")  # the subset is gone
    assert (REPO / "data" / "FashionMNIST" / "LICENSE").is_file()


@pytest.mark.parametrize("prefix, n", [("train", 60_000), ("t10k", 10_000)])
def test_idx_headers(prefix, n):
    images = (RAW / f"{prefix}-images-idx3-ubyte").read_bytes()
    labels = (RAW / f"{prefix}-labels-idx1-ubyte").read_bytes()
    assert struct.unpack(">4I", images[:16]) == (2051, n, 28, 28)
    assert len(images) == 16 + n * 28 * 28
    assert struct.unpack(">2I", labels[:8]) == (2049, n)
    assert len(labels) == 8 + n


@pytest.mark.parametrize("train", [True, False])
def test_torchvision_reads_the_files_balanced(train, raw_files):
    ds = raw_files[train]
    n = FILE_SIZES[train]
    assert ds.data.shape == (n, 28, 28) and ds.data.dtype == torch.uint8
    assert ds.targets.shape == (n,) and ds.targets.dtype == torch.int64
    assert ds.targets.bincount().tolist() == [n // 10] * 10  # 6,000 / 1,000 per class
    assert ds.classes == list(qd.CLASSES)


def test_mean_and_std_are_the_training_files_rounded(raw_files):
    pixels01 = raw_files[True].data.double() / 255
    assert qd.MEAN == round(pixels01.mean().item(), 4) == 0.2860
    assert qd.STD == round(pixels01.std().item(), 4) == 0.3530


def test_no_image_is_in_both_files_or_twice(raw_files):
    train, test = (keys(raw_files[t].data) for t in (True, False))
    assert len(set(train.tolist())) == 60_000 and len(set(test.tolist())) == 10_000
    assert not set(train.tolist()) & set(test.tolist())


# --- the build script (no network: its checks on the shipped and on broken files) ------------


def test_build_script_check_accepts_the_shipped_files():
    build = build_script()
    build.check(RAW)
    for name in SHA256:
        data = build.read_idx((RAW / name).read_bytes(), name)
        assert data.shape == ((60_000 if name.startswith("train") else 10_000),
                              *((28, 28) if "images" in name else ()))


def _label_file(labels, magic=2049, count=None):
    labels = np.asarray(labels, dtype=np.uint8)
    count = len(labels) if count is None else count
    return struct.pack(">II", magic, count) + labels.tobytes()


@pytest.mark.parametrize(
    "raw, name, match",
    [
        (_label_file(np.zeros(10_000), magic=2051), "t10k-labels",
         "t10k-labels: header magic 2051, 10000 items; expected 2049, 10000"),
        (_label_file(np.zeros(9_999)), "t10k-labels", "9999 items; expected 2049, 10000"),
        (_label_file(np.zeros(10_000))[:-1], "t10k-labels", "10007 bytes for 10000 labels"),
        (struct.pack(">IIII", 2049, 10_000, 28, 28), "t10k-images",
         "header magic 2049, 10000 items; expected 2051, 10000"),
        (struct.pack(">IIII", 2051, 10_000, 32, 32) + bytes(10_000 * 32 * 32), "t10k-images",
         "32x32 images .*expected 28x28"),
        (struct.pack(">IIII", 2051, 10_000, 28, 28) + bytes(100), "t10k-images",
         "28x28 images in 116 bytes"),
    ],
)
def test_read_idx_rejects_a_bad_header_or_length(raw, name, match):
    with pytest.raises(ValueError, match=match):
        build_script().read_idx(raw, name)


def _folder_with(tmp_path, name, raw):
    """A copy of the shipped folder (symlinks) with one file replaced by `raw`."""
    for other in SHA256:
        (tmp_path / other).symlink_to(RAW / other)
    (tmp_path / name).unlink()
    (tmp_path / name).write_bytes(raw)
    return tmp_path


def test_check_rejects_a_file_with_a_bad_header(tmp_path):
    raw = bytearray((RAW / "train-labels-idx1-ubyte").read_bytes())
    raw[3] = 0x03  # magic 2049 -> 2051 (the image magic)
    folder = _folder_with(tmp_path, "train-labels-idx1-ubyte", bytes(raw))
    with pytest.raises(ValueError, match="train-labels: header magic 2051"):
        build_script().check(folder)


def test_check_rejects_unbalanced_classes_and_a_wrong_checksum(tmp_path):
    labels = np.frombuffer((RAW / "t10k-labels-idx1-ubyte").read_bytes(), np.uint8, offset=8)
    unbalanced = labels.copy()
    unbalanced[np.flatnonzero(labels == 3)[0]] = 4
    (tmp_path / "a").mkdir()
    folder = _folder_with(tmp_path / "a", "t10k-labels-idx1-ubyte", _label_file(unbalanced))
    with pytest.raises(ValueError, match=r"t10k: images per class .*expected 1000 each"):
        build_script().check(folder)
    swapped = labels.copy()  # still 1,000 per class, but not the shipped labels
    i, j = np.flatnonzero(labels == 3)[0], np.flatnonzero(labels == 4)[0]
    swapped[i], swapped[j] = swapped[j], swapped[i]
    (tmp_path / "b").mkdir()
    folder = _folder_with(tmp_path / "b", "t10k-labels-idx1-ubyte", _label_file(swapped))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte: sha256 .*expected 0402a96d"):
        build_script().check(folder)


# --- qnb.data ------------------------------------------------------------------------------


def test_data_dir_and_constants():
    assert qd.DATA_DIR.resolve() == Path(QNB_DATA_AT_IMPORT or REPO / "data").resolve()
    assert (qd.MEAN, qd.STD) == (0.2860, 0.3530)
    assert qd.CLASSES == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                          "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert not hasattr(qd, "mnist")  # renamed: fashion_mnist


@pytest.mark.parametrize("train", [True, False])
def test_fashion_mnist_is_torchvisions_dataset_over_the_shipped_files(train, raw_files):
    ds = qd.fashion_mnist(train)
    assert isinstance(ds, FashionMNIST) and len(ds) == FILE_SIZES[train]
    assert ds.transform is qd.TRANSFORM
    assert torch.equal(ds.data, raw_files[train].data)
    image, label = ds[0]
    assert image.shape == (1, 28, 28) and label == int(raw_files[train].targets[0])


@pytest.mark.parametrize("train", [True, False])
def test_tensors_shapes_dtypes_and_cache(train):
    images, labels = qd.tensors(train)
    n = SPLIT_SIZES[train]
    assert images.shape == (n, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert qd.tensors(train)[0] is images  # cached per process


def test_split_sizes():
    sizes = [len(qd.tensors(True)[1]), len(qd.validation_tensors()[1]), len(qd.tensors(False)[1])]
    assert sizes == [55_000, 5_000, 10_000]


@pytest.mark.parametrize("train", [True, False])
def test_tensors_match_the_dataset_transform(train):
    ds = qd.fashion_mnist(train)
    images, labels = qd.tensors(train)
    rows = torch.arange(len(ds))
    if train:  # the train split is the training file without the validation rows
        rows = rows[~torch.isin(rows, qd.validation_indices())]
    idx = range(0, len(rows), 997)
    expected = torch.stack([ds[int(rows[i])][0] for i in idx])
    torch.testing.assert_close(images[list(idx)], expected, rtol=0, atol=1e-6)
    assert labels[list(idx)].tolist() == [ds[int(rows[i])][1] for i in idx]


def test_pixels_are_recovered_exactly(raw_files):
    """The helper the tests below identify images with."""
    assert torch.equal(pixels(qd.tensors(False)[0]).squeeze(1), raw_files[False].data)


# --- the validation split ------------------------------------------------------------------


def test_validation_split_is_balanced_and_sized():
    assert qd.VALIDATION_PER_CLASS == 500
    images, labels = qd.validation_tensors()
    assert images.shape == (N_VALIDATION, 1, 28, 28) and images.dtype == torch.float32
    assert labels.bincount().tolist() == [500] * 10
    assert qd.tensors(True)[1].bincount().tolist() == [5_500] * 10
    assert qd.validation_tensors()[0] is images  # cached per process


def test_validation_indices_are_fixed_evenly_spaced_rows_of_each_class(raw_files):
    rows = qd.validation_indices()
    assert rows.dtype == torch.int64 and len(rows) == N_VALIDATION
    assert torch.equal(rows, rows.sort().values) and len(rows.unique()) == N_VALIDATION
    assert torch.equal(rows, qd.validation_indices())
    file_labels = raw_files[True].targets
    for label in range(10):  # positions 0, 12, 24, ..., 5988 among the 6,000 of the class
        of_class = torch.nonzero(file_labels == label).flatten()
        assert torch.equal(rows[file_labels[rows] == label], of_class[::12])
    images, labels = qd.validation_tensors()
    assert torch.equal(pixels(images).squeeze(1), raw_files[True].data[rows])  # in file order
    assert torch.equal(labels, file_labels[rows])


def test_validation_does_not_depend_on_any_seed(raw_files):
    before = qd.validation_indices()
    torch.manual_seed(12345)
    np.random.seed(6789)
    qd._split.cache_clear()  # recompute from the files, after touching the global RNGs
    qd._file_tensors.cache_clear()
    assert torch.equal(qd.validation_indices(), before)
    assert torch.equal(qd.validation_tensors()[1], raw_files[True].targets[before])


def test_train_validation_and_test_are_disjoint_and_cover_the_files(raw_files):
    rows = qd.validation_indices()
    held_out = torch.zeros(60_000, dtype=torch.bool)
    held_out[rows] = True
    train_images, train_labels = qd.tensors(True)
    assert torch.equal(pixels(train_images).squeeze(1), raw_files[True].data[~held_out])
    assert torch.equal(train_labels, raw_files[True].targets[~held_out])
    validation_images, _ = batches(qd.validation_loader())
    assert torch.equal(pixels(validation_images).squeeze(1), raw_files[True].data[held_out])
    # every image of the two files is distinct (test_no_image_is_in_both_files_or_twice), so
    # rows of the training file split by `held_out` and the test file are disjoint sets of images
    assert int(held_out.sum()) == 5_000 and int((~held_out).sum()) == 55_000


def test_validation_loader_is_in_file_order_and_limited():
    images, labels = qd.validation_tensors()
    x, y = batches(qd.validation_loader())
    assert torch.equal(x, images) and torch.equal(y, labels)
    loader = qd.validation_loader(batch_size=64, limit=100)
    assert [len(b) for b, _ in loader] == [64, 36]
    assert torch.equal(batches(loader)[1], labels[:100])


def test_a_training_file_with_too_few_images_of_a_class_is_refused():
    labels = torch.arange(10).repeat(1_200)
    labels[labels == 3] = 4  # no 3s at all
    with pytest.raises(ValueError, match="at least 1000 images of each class.*got 0 of class 3"):
        qd._validation_rows(labels)
    labels = torch.arange(10).repeat(999)  # 999 of each: one short
    with pytest.raises(ValueError, match="got 999 of class 0"):
        qd._validation_rows(labels)
    assert len(qd._validation_rows(torch.arange(10).repeat(1_000))) == N_VALIDATION


def test_train_loader_serves_a_seeded_permutation_of_the_train_split():
    images, labels = qd.tensors(True)
    x1, y1 = batches(qd.train_loader(batch_size=5_000))
    served, split = keys(x1).tolist(), keys(images).tolist()
    assert sorted(served) == sorted(split)  # each train image once, so no validation image
    position = {k: i for i, k in enumerate(split)}
    order = [position[k] for k in served]
    assert order != sorted(order) and torch.equal(y1, labels[order])  # shuffled, labels kept
    first = next(iter(qd.train_loader(batch_size=5_000)))
    assert torch.equal(first[0], x1[:5_000]) and torch.equal(first[1], y1[:5_000])
    other = next(iter(qd.train_loader(batch_size=5_000, seed=1)))
    assert not torch.equal(other[1], y1[:5_000])


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


def test_calibration_loader_is_a_fixed_train_subset(raw_files):
    x1, y1 = batches(qd.calibration_loader())
    x2, _ = batches(qd.calibration_loader(batch_size=7))
    assert x1.shape == (256, 1, 28, 28) and torch.equal(x1, x2)
    held_out = torch.zeros(60_000, dtype=torch.bool)
    held_out[qd.validation_indices()] = True
    train_rows = torch.nonzero(~held_out).flatten().tolist()
    row_of = dict(zip(keys(raw_files[True].data[~held_out]).tolist(), train_rows, strict=True))
    rows = [row_of[k] for k in keys(x1).tolist()]  # KeyError if not a train-split image
    assert len(set(rows)) == 256
    assert torch.equal(raw_files[True].targets[rows], y1)
    x3, _ = batches(qd.calibration_loader(n_images=256, seed=1))
    assert not torch.equal(x1, x3)
    assert len(qd.calibration_loader(n_images=55_000).dataset) == 55_000  # all of the split


BAD = [
    (qd.train_loader, {"batch_size": 0}, ValueError, "batch_size", "0"),
    (qd.train_loader, {"batch_size": 2.5}, TypeError, "batch_size", "2.5"),
    (qd.train_loader, {"batch_size": True}, TypeError, "batch_size", "True"),
    (qd.train_loader, {"limit": 0}, ValueError, "limit", "1..55000"),
    (qd.train_loader, {"limit": 55_001}, ValueError, "limit", "1..55000, got 55001"),
    (qd.train_loader, {"limit": "10"}, TypeError, "limit", "'10'"),
    (qd.train_loader, {"seed": -1}, ValueError, "seed", "-1"),
    (qd.train_loader, {"shuffle": 1}, TypeError, "shuffle", "1"),
    (qd.test_loader, {"batch_size": -5}, ValueError, "batch_size", "-5"),
    (qd.test_loader, {"limit": False}, TypeError, "limit", "False"),
    (qd.test_loader, {"limit": 10_001}, ValueError, "limit", "1..10000, got 10001"),
    (qd.validation_loader, {"batch_size": 0}, ValueError, "batch_size", "0"),
    (qd.validation_loader, {"batch_size": 1.0}, TypeError, "batch_size", "1.0"),
    (qd.validation_loader, {"limit": 0}, ValueError, "limit", "1..5000, got 0"),
    (qd.validation_loader, {"limit": 5_001}, ValueError, "limit", "1..5000, got 5001"),
    (qd.validation_loader, {"limit": "all"}, TypeError, "limit", "'all'"),
    (qd.calibration_loader, {"n_images": 0}, ValueError, "n_images", "1..55000, got 0"),
    (qd.calibration_loader, {"n_images": 55_001}, ValueError, "n_images", "55001"),
    (qd.calibration_loader, {"n_images": 10.0}, TypeError, "n_images", "10.0"),
    (qd.calibration_loader, {"batch_size": None}, TypeError, "batch_size", "None"),
    (qd.calibration_loader, {"seed": 1.5}, TypeError, "seed", "1.5"),
    (qd.fashion_mnist, {"train": "yes"}, TypeError, "train", "'yes'"),
    (qd.tensors, {"train": 1}, TypeError, "train", "1"),
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
        lambda: qd.fashion_mnist(),
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
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "FashionMNIST" / "raw") in message
    assert "python data/build_fashion_mnist.py" in message and "nothing is downloaded" in message
    assert "train-images-idx3-ubyte" in message


def test_one_missing_file_is_named(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in SHA256:
        if name != "t10k-labels-idx1-ubyte":
            (raw / name).symlink_to(RAW / name)
    with pytest.raises(FileNotFoundError, match=r"\['t10k-labels-idx1-ubyte'\] not found"):
        qd.fashion_mnist(True, root=tmp_path)


def test_root_argument_wins_over_env_var(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        qd.fashion_mnist(True, root=tmp_path)
    monkeypatch.setenv("QNB_DATA", str(tmp_path))
    assert len(qd.fashion_mnist(False, root=REPO / "data")) == 10_000
