"""Tests of the data stage (resdyn/data.py; method §5, ARCHITECTURE "Data"). All offline and fast."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from resdyn.artifacts import DatasetFile, array_checksum
from resdyn.data import images_to_tensor
from resdyn.io import InputError
from resdyn.stages import prepare_data as prepare_dataset

load_split = DatasetFile.load_split

DIGITS = {"source": "sklearn-digits"}


# ---------------------------------------------------------------------------------------------------------
# Plain references, written without the module's helpers
# ---------------------------------------------------------------------------------------------------------
def reference_digit_image(pixels8: np.ndarray) -> np.ndarray:
    """3×32×32 uint8 from one 8×8 digits image, pixel by pixel:
    out[c, r, s] = rint(255·v[r // 4, s // 4] / 16)."""
    out = np.zeros((3, 32, 32), dtype=np.uint8)
    for r in range(32):
        for s in range(32):
            value = int(np.rint(255.0 * pixels8[r // 4, s // 4] / 16.0))
            for c in range(3):
                out[c, r, s] = value
    return out


def reference_to_chw32(image: np.ndarray) -> np.ndarray:
    """One image of any accepted layout, as (3, 32, 32) uint8, by explicit loops (channel-last input when
    the last axis is the channel, as the tests below build them)."""
    image = np.asarray(image)
    if image.ndim == 2:
        planes = [image]
    elif image.shape[0] in (1, 3) and image.shape[1] == image.shape[2]:
        planes = [image[c] for c in range(image.shape[0])]
    else:
        planes = [image[:, :, c] for c in range(image.shape[2])]
    size = planes[0].shape[0]
    offset = (32 - size) // 2
    out = np.zeros((3, 32, 32), dtype=np.uint8)
    for c in range(3):
        plane = planes[c if len(planes) == 3 else 0]
        for r in range(size):
            for s in range(size):
                v = plane[r, s]
                out[c, r + offset, s + offset] = (
                    int(round(float(v) * 255)) if plane.dtype.kind == "f" else int(v)
                )
    return out


def reference_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with h5py.File(path, "r") as handle:
        for key in ("train/images", "train/labels", "test/images", "test/labels"):
            digest.update(handle[key][()].tobytes())
    return digest.hexdigest()


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file as in MNIST's raw folder: magic 0x0000 08 nd, big-endian int32 dims,
    uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


# ---------------------------------------------------------------------------------------------------------
# sklearn digits
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "digits.h5"
    prepare_dataset("digits", DIGITS, out, tmp_path_factory.mktemp("downloads"))
    return out


def test_digits_shapes_dtypes_and_attrs(digits_file):
    train_x, train_y, names = load_split(digits_file, "train")
    test_x, test_y, test_names = load_split(digits_file, "test")
    assert train_x.shape == (1347, 3, 32, 32) and test_x.shape == (450, 3, 32, 32)
    assert train_x.dtype == np.uint8 and test_x.dtype == np.uint8
    assert train_y.dtype == np.int64 and test_y.dtype == np.int64
    assert train_y.shape == (1347,) and test_y.shape == (450,)
    assert names == test_names == [str(k) for k in range(10)]
    with h5py.File(digits_file, "r") as handle:
        assert handle.attrs["source"] == "sklearn-digits"
        assert handle.attrs["dataset"] == "digits"
        assert handle.attrs["checksum"] == reference_checksum(digits_file)


def test_digits_split_is_stratified_partition_in_source_order(digits_file):
    digits = load_digits()
    source_index = {row.tobytes(): k for k, row in enumerate(digits.images.reshape(len(digits.images), -1))}
    assert len(source_index) == len(digits.images)  # no duplicate images, so content identifies the index
    found = {}
    for split in ("train", "test"):
        images, labels, _ = load_split(digits_file, split)
        # Undo the scaling exactly: rint(255 v / 16) is injective on v = 0..16.
        lookup = {int(np.rint(255.0 * v / 16.0)): float(v) for v in range(17)}
        small = np.vectorize(lookup.__getitem__)(images[:, 0, ::4, ::4]).astype(np.float64)
        idx = np.array([source_index[row.tobytes()] for row in small.reshape(len(small), -1)])
        assert np.all(np.diff(idx) > 0), f"{split} split is not in source order"
        np.testing.assert_array_equal(labels, digits.target[idx])
        found[split] = idx
    assert len(np.intersect1d(found["train"], found["test"])) == 0
    assert len(found["train"]) + len(found["test"]) == len(digits.images)
    for c in range(10):
        n_c = int(np.sum(digits.target == c))
        n_test = int(np.sum(digits.target[found["test"]] == c))
        assert abs(n_test - 0.25 * n_c) <= 1.0, (c, n_test, n_c)


def test_digits_upscaling_is_nearest_x4(digits_file):
    digits = load_digits()
    images, _, _ = load_split(digits_file, "test")
    source_rows = {
        row.tobytes(): k for k, row in enumerate(np.rint(digits.images * 255 / 16).reshape(1797, -1))
    }
    for image in images[::45]:  # 10 images, each compared pixel by pixel with the loop reference
        k = source_rows[image[0, ::4, ::4].astype(np.float64).tobytes()]
        np.testing.assert_array_equal(image, reference_digit_image(digits.images[k]))


def test_digits_checksum_stable_and_seed_dependent(tmp_path, digits_file):
    again = tmp_path / "again.h5"
    prepare_dataset("digits", {"source": "sklearn-digits", "seed": 0}, again, tmp_path)
    other = tmp_path / "seed1.h5"
    prepare_dataset("digits", {"source": "sklearn-digits", "seed": 1}, other, tmp_path)
    with h5py.File(digits_file, "r") as a, h5py.File(again, "r") as b, h5py.File(other, "r") as c:
        assert a.attrs["checksum"] == b.attrs["checksum"]
        assert a.attrs["checksum"] != c.attrs["checksum"]
        assert c["train/images"].shape == (1347, 3, 32, 32) and c["test/images"].shape == (450, 3, 32, 32)
    train = load_split(digits_file, "train")
    test = load_split(digits_file, "test")
    assert array_checksum(train[0], train[1], test[0], test[1]) == reference_checksum(digits_file)


def test_max_train_max_test_keep_first_images(tmp_path, digits_file):
    out = tmp_path / "tiny.h5"
    prepare_dataset("tiny", {"source": "sklearn-digits", "max_train": 7, "max_test": 3}, out, tmp_path)
    for split, k in (("train", 7), ("test", 3)):
        small_x, small_y, names = load_split(out, split)
        full_x, full_y, _ = load_split(digits_file, split)
        assert len(small_x) == k
        np.testing.assert_array_equal(small_x, full_x[:k])
        np.testing.assert_array_equal(small_y, full_y[:k])
        assert names == [str(c) for c in range(10)]  # C comes from the full source


def test_class_names_override(tmp_path):
    out = tmp_path / "named.h5"
    names = [f"digit {k}" for k in range(10)]
    prepare_dataset(
        "named",
        {"source": "sklearn-digits", "class_names": names, "max_train": 2, "max_test": 2},
        out,
        tmp_path,
    )
    assert load_split(out, "test")[2] == names
    with pytest.raises(InputError, match="class_names.*3 names.*10 classes"):
        prepare_dataset("named", {"source": "sklearn-digits", "class_names": ["a", "b", "c"]}, out, tmp_path)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"source": "kaggle"}, "unknown source 'kaggle'"),
        ({}, "unknown source None"),
        ({"source": "torchvision", "name": "SVHN"}, "unknown torchvision name 'SVHN'"),
        ({"source": "npz"}, "needs a 'path'"),
        ({"source": "sklearn-digits", "max_train": 0}, "'max_train' must be an integer ≥ 1"),
        ({"source": "sklearn-digits", "max_test": True}, "'max_test' must be an integer ≥ 1"),
        ({"source": "sklearn-digits", "seed": -1}, "'seed' must be an integer ≥ 0"),
        ({"source": "torchvision", "name": "MNIST", "download": "yes"}, "'download' must be true or false"),
    ],
)
def test_bad_entry(tmp_path, entry, message):
    with pytest.raises(InputError, match=message) as info:
        prepare_dataset("mydata", entry, tmp_path / "out.h5", tmp_path)
    assert "mydata" in str(info.value)
    assert not (tmp_path / "out.h5").exists()


# ---------------------------------------------------------------------------------------------------------
# npz
# ---------------------------------------------------------------------------------------------------------
def _layout(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    size = 28 if "28" in kind else 32
    channels = 3 if "rgb" in kind else 1
    if kind.endswith("float"):
        base = rng.random((n, size, size, channels))
        base[0, 0, 0, 0], base[-1, -1, -1, -1] = 0.0, 1.0  # the exact ends of [0, 1]
    else:
        base = rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)
        base[0, 0, 0, 0], base[-1, -1, -1, -1] = 0, 255
    if kind.startswith("nhw_"):
        return base[..., 0]
    if kind.startswith("nhwc_"):
        return base
    return np.ascontiguousarray(base.transpose(0, 3, 1, 2))  # nchw_


LAYOUTS = [
    "nhw_28_uint8",
    "nhw_32_float",
    "nhwc_28_float",
    "nhwc_32_rgb_uint8",
    "nhwc_28_rgb_uint8",
    "nchw_28_uint8",
    "nchw_32_rgb_float",
    "nchw_32_uint8",
]


@pytest.mark.parametrize("kind", LAYOUTS)
def test_npz_layouts(tmp_path, kind):
    rng = np.random.default_rng(LAYOUTS.index(kind))
    x_train, x_test = _layout(kind, 4, rng), _layout(kind, 3, rng)
    y_train, y_test = np.array([0, 2, 1, 2]), np.array([1, 0, 2], dtype=np.int32)
    src = write_npz(tmp_path / "mine.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    out = tmp_path / "mine.h5"
    prepare_dataset("mine", {"source": "npz", "path": str(src)}, out, tmp_path)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        images, labels, names = load_split(out, split)
        assert images.shape == (len(x), 3, 32, 32) and images.dtype == np.uint8
        for k in range(len(x)):
            np.testing.assert_array_equal(images[k], reference_to_chw32(x[k]))
        np.testing.assert_array_equal(labels, y)
        assert names == ["0", "1", "2"]
    with h5py.File(out, "r") as handle:
        assert handle.attrs["source"] == "npz" and handle.attrs["checksum"] == reference_checksum(out)


def test_npz_adversarial_sizes_and_class_names(tmp_path):
    """N = 2 training images, one test image, a single class, float labels with integral values."""
    x = np.zeros((2, 28, 28), dtype=np.uint8)
    x[1, 5, 7] = 200
    src = write_npz(
        tmp_path / "one.npz",
        x_train=x,
        y_train=np.array([0.0, 0.0]),
        x_test=x[1:],
        y_test=np.array([0]),
        class_names=np.array(["only"]),
    )
    out = tmp_path / "one.h5"
    prepare_dataset("one", {"source": "npz", "path": src}, out, tmp_path)
    images, labels, names = load_split(out, "train")
    assert names == ["only"] and labels.tolist() == [0, 0]
    assert images[1, :, 5 + 2, 7 + 2].tolist() == [200, 200, 200] and int(images.sum()) == 3 * 200
    test_images, _, _ = load_split(out, "test")
    np.testing.assert_array_equal(test_images[0], images[1])
    # The config's names win over the file's.
    prepare_dataset("one", {"source": "npz", "path": src, "class_names": ["solo"]}, out, tmp_path)
    assert load_split(out, "test")[2] == ["solo"]


def _good_npz() -> dict:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
        "y_train": np.array([0, 1, 2, 1]),
        "x_test": rng.random((2, 28, 28)),
        "y_test": np.array([2, 0]),
    }


def _nan_images():
    bad = _good_npz()["x_test"].copy()
    bad[1, 3, 3] = np.nan
    return bad


BAD_NPZ = [
    ("nan", {"x_test": _nan_images()}, "x_test", "NaN"),
    ("negative float", {"x_test": -_good_npz()["x_test"]}, "x_test", r"\[0, 1\]"),
    ("float above 1", {"x_test": _good_npz()["x_test"] * 255}, "x_test", r"\[0, 1\]"),
    ("negative int", {"x_train": _good_npz()["x_train"].astype(np.int16) - 1}, "x_train", "0..255"),
    ("int above 255", {"x_train": _good_npz()["x_train"].astype(np.int16) + 1}, "x_train", "0..255"),
    ("bool images", {"x_train": np.zeros((4, 32, 32), dtype=bool)}, "x_train", "dtype bool"),
    ("size 30", {"x_train": np.zeros((4, 30, 30), dtype=np.uint8)}, "x_train", "28×28 or 32×32"),
    ("not square", {"x_train": np.zeros((4, 28, 32), dtype=np.uint8)}, "x_train", "28×28 or 32×32"),
    ("two channels", {"x_train": np.zeros((4, 32, 32, 2), dtype=np.uint8)}, "x_train", "cannot read images"),
    ("5-d images", {"x_train": np.zeros((4, 1, 1, 32, 32), dtype=np.uint8)}, "x_train", "must have shape"),
    ("fractional label", {"y_train": np.array([0, 1.5, 2, 1])}, "y_train", "integers, found 1.5"),
    ("nan label", {"y_test": np.array([np.nan, 0])}, "y_test", "integers"),
    ("string labels", {"y_test": np.array(["a", "b"])}, "y_test", "integers"),
    ("negative label", {"y_test": np.array([-1, 0])}, "y_test", "≥ 0"),
    ("2-d labels", {"y_train": np.zeros((4, 2), dtype=np.int64)}, "y_train", "one-dimensional"),
    ("short labels", {"y_train": np.array([0, 1, 2])}, "y_train", "3 labels.*x_train"),
    ("long labels", {"y_test": np.array([0, 1, 2])}, "y_test", "3 labels.*x_test"),
    ("empty test", {"x_test": np.zeros((0, 28, 28)), "y_test": np.zeros(0, np.int64)}, "x_test", "empty"),
    (
        "empty train",
        {"x_train": np.zeros((0, 32, 32), np.uint8), "y_train": np.zeros(0, np.int64)},
        "x_train",
        "empty",
    ),
    ("few class names", {"class_names": np.array(["a", "b"])}, "class_names", "label 2"),
    ("numeric class names", {"class_names": np.array([1, 2, 3])}, "class_names", "strings"),
]


@pytest.mark.parametrize("case, change, key, message", BAD_NPZ, ids=[c[0] for c in BAD_NPZ])
def test_npz_bad_values(tmp_path, case, change, key, message):
    src = write_npz(tmp_path / "bad.npz", **{**_good_npz(), **change})
    out = tmp_path / "bad.h5"
    with pytest.raises(InputError, match=message) as info:
        prepare_dataset("bad", {"source": "npz", "path": str(src)}, out, tmp_path)
    assert str(src) in str(info.value) and f"'{key}'" in str(info.value)
    assert not out.exists()


@pytest.mark.parametrize("missing", ["x_train", "y_test"])
def test_npz_missing_key(tmp_path, missing):
    arrays = _good_npz()
    del arrays[missing]
    src = write_npz(tmp_path / "partial.npz", **arrays)
    with pytest.raises(InputError, match=f"missing key.*'{missing}'") as info:
        prepare_dataset("p", {"source": "npz", "path": src}, tmp_path / "p.h5", tmp_path)
    assert str(src) in str(info.value)


def test_npz_corrupt_truncated_missing_and_npy(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip archive at all" * 10)
    truncated = tmp_path / "truncated.npz"
    whole = write_npz(tmp_path / "whole.npz", **_good_npz()).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    for path, message in (
        (garbage, "not a readable .npz"),
        (truncated, "not a readable .npz|cannot read key"),
        (tmp_path / "absent.npz", "not found"),
        (single, "not an .npz archive"),
    ):
        with pytest.raises(InputError, match=message) as info:
            prepare_dataset("c", {"source": "npz", "path": str(path)}, tmp_path / "c.h5", tmp_path)
        assert str(path) in str(info.value)
        assert not (tmp_path / "c.h5").exists()


# ---------------------------------------------------------------------------------------------------------
# torchvision (offline, on files in torchvision's own raw layout)
# ---------------------------------------------------------------------------------------------------------
def _write_mnist_raw(root: Path, folder: str, rng: np.random.Generator, which=("train", "t10k")) -> dict:
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    written = {}
    for prefix, n in (("train", 5), ("t10k", 3)):
        if prefix not in which:
            continue
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        written[prefix] = (images, labels)
    return written


@pytest.mark.parametrize("tv_name", ["MNIST", "FashionMNIST"])
def test_torchvision_mnist_like_from_raw_idx(tmp_path, tv_name):
    import torchvision.datasets as tvd

    root = tmp_path / "downloads"
    written = _write_mnist_raw(root, tv_name, np.random.default_rng(7))
    out = tmp_path / "mnist.h5"
    prepare_dataset("mnist", {"source": "torchvision", "name": tv_name, "download": False}, out, root)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels, names = load_split(out, split)
        source_images, source_labels = written[prefix]
        assert images.shape == (len(source_images), 3, 32, 32)
        for k in range(len(source_images)):
            np.testing.assert_array_equal(images[k], reference_to_chw32(source_images[k]))
        # The 2-pixel frame is zero in every channel.
        assert not images[:, :, :2].any() and not images[:, :, -2:].any()
        assert not images[:, :, :, :2].any() and not images[:, :, :, -2:].any()
        np.testing.assert_array_equal(labels, source_labels.astype(np.int64))
        assert names == list(getattr(tvd, tv_name).classes)
    with h5py.File(out, "r") as handle:
        assert handle.attrs["source"] == "torchvision"
        assert tv_name in handle.attrs["origin"]


def test_torchvision_max_test(tmp_path):
    root = tmp_path / "downloads"
    written = _write_mnist_raw(root, "MNIST", np.random.default_rng(3))
    out = tmp_path / "m.h5"
    prepare_dataset(
        "m", {"source": "torchvision", "name": "MNIST", "download": False, "max_test": 2}, out, root
    )
    images, labels, _ = load_split(out, "test")
    assert len(images) == 2
    np.testing.assert_array_equal(labels, written["t10k"][1][:2].astype(np.int64))
    assert len(load_split(out, "train")[0]) == 5


def test_torchvision_mnist_missing_offline_says_what_to_place_where(tmp_path):
    root = tmp_path / "downloads"
    entry = {"source": "torchvision", "name": "MNIST", "download": False}
    with pytest.raises(InputError) as info:
        prepare_dataset("mnist", entry, tmp_path / "m.h5", root)
    message = str(info.value)
    assert str(root / "MNIST" / "raw") in message and "download: false" in message
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "train-images-idx3-ubyte.gz",
    ):
        assert name in message
    # With the training files in place, the message lists exactly the two test files as missing.
    _write_mnist_raw(root, "MNIST", np.random.default_rng(0), which=("train",))
    with pytest.raises(InputError) as info:
        prepare_dataset("mnist", entry, tmp_path / "m.h5", root)
    missing = str(info.value).split("missing or failing their checksum: ")[1].split(")")[0]
    assert missing == "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
    assert not (tmp_path / "m.h5").exists()


def test_torchvision_corrupt_idx_names_the_folder(tmp_path):
    root = tmp_path / "downloads"
    _write_mnist_raw(root, "MNIST", np.random.default_rng(0))
    (root / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03garbage")
    with pytest.raises(InputError, match="could not be read") as info:
        prepare_dataset(
            "mnist", {"source": "torchvision", "name": "MNIST", "download": False}, tmp_path / "m.h5", root
        )
    assert str(root / "MNIST" / "raw") in str(info.value)


def test_torchvision_cifar_missing_offline_says_what_to_place_where(tmp_path):
    root = tmp_path / "downloads"
    with pytest.raises(InputError) as info:
        prepare_dataset(
            "cifar10",
            {"source": "torchvision", "name": "CIFAR10", "download": False},
            tmp_path / "c.h5",
            root,
        )
    message = str(info.value)
    assert str(root / "cifar-10-batches-py") in message and "cifar-10-python.tar.gz" in message
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch", "batches.meta"]:
        assert name in message


# ---------------------------------------------------------------------------------------------------------
# load_split and the written file
# ---------------------------------------------------------------------------------------------------------
def _write_h5(path: Path, images, labels, class_names=("a", "b")) -> Path:
    with h5py.File(path, "w") as handle:
        for split in ("train", "test"):
            handle[f"{split}/images"] = images
            handle[f"{split}/labels"] = labels
        if class_names is not None:
            handle.attrs["class_names"] = list(class_names)
    return path


GOOD_IMAGES = np.zeros((2, 3, 32, 32), dtype=np.uint8)
GOOD_LABELS = np.array([0, 1], dtype=np.int64)


@pytest.mark.parametrize(
    "images, labels, class_names, message",
    [
        (GOOD_IMAGES.astype(np.float32), GOOD_LABELS, ("a", "b"), "'test/images' must be uint8"),
        (GOOD_IMAGES, GOOD_LABELS.astype(np.int32), ("a", "b"), "'test/labels' must be int64"),
        (np.zeros((2, 1, 32, 32), np.uint8), GOOD_LABELS, ("a", "b"), r"\(N, 3, 32, 32\)"),
        (np.zeros((2, 3, 28, 28), np.uint8), GOOD_LABELS, ("a", "b"), r"\(N, 3, 32, 32\)"),
        (np.zeros((0, 3, 32, 32), np.uint8), np.zeros(0, np.int64), ("a", "b"), "empty"),
        (GOOD_IMAGES, np.array([0, 1, 1]), ("a", "b"), "match the images"),
        (GOOD_IMAGES, np.array([0, 2]), ("a", "b"), r"label 2 at index 1 lies outside 0..1"),
        (GOOD_IMAGES, np.array([-1, 0]), ("a", "b"), r"label -1 at index 0"),
        (GOOD_IMAGES, GOOD_LABELS, None, "missing attr 'class_names'"),
    ],
)
def test_load_split_rejects_bad_files(tmp_path, images, labels, class_names, message):
    path = _write_h5(tmp_path / "bad.h5", images, labels, class_names)
    with pytest.raises(InputError, match=message) as info:
        load_split(path, "test")
    assert str(path) in str(info.value)


def test_load_split_missing_corrupt_and_bad_split(tmp_path, digits_file):
    with pytest.raises(InputError, match="not found"):
        load_split(tmp_path / "absent.h5", "train")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5"):
        load_split(text, "train")
    truncated = tmp_path / "truncated.h5"
    whole = digits_file.read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=str(truncated)):
        load_split(truncated, "train")
    # A damaged compressed chunk: the file opens, the read fails.
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(digits_file.read_bytes())
    with h5py.File(damaged, "r") as handle:
        chunk = handle["train/images"].id.get_chunk_info(0)
    with open(damaged, "r+b") as raw:
        raw.seek(chunk.byte_offset)
        raw.write(b"\xff" * 64)
    with pytest.raises(InputError, match=f"{damaged}: cannot read 'train' arrays"):
        load_split(damaged, "train")
    no_test = tmp_path / "no_test.h5"
    with h5py.File(no_test, "w") as handle:
        handle["train/images"] = GOOD_IMAGES
        handle["train/labels"] = GOOD_LABELS
        handle.attrs["class_names"] = ["a", "b"]
    with pytest.raises(InputError, match="missing HDF5 key 'test/images'"):
        load_split(no_test, "test")
    with pytest.raises(InputError, match="unknown split 'val'"):
        load_split(digits_file, "val")


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    out = tmp_path / "atomic.h5"
    real_create = h5py.Group.create_dataset
    calls = []

    def fail_on_third(self, *args, **kwargs):
        calls.append(args[0] if args else kwargs.get("name"))
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        return real_create(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", fail_on_third)
    with pytest.raises(OSError, match="disk full"):
        prepare_dataset("digits", {"source": "sklearn-digits", "max_train": 5, "max_test": 5}, out, tmp_path)
    assert len(calls) == 3  # the writer did start writing before it failed
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # An earlier complete file survives a failed rewrite untouched.
    monkeypatch.setattr(h5py.Group, "create_dataset", real_create)
    prepare_dataset("digits", {"source": "sklearn-digits", "max_train": 5, "max_test": 5}, out, tmp_path)
    before = out.read_bytes()
    calls.clear()
    monkeypatch.setattr(h5py.Group, "create_dataset", fail_on_third)
    with pytest.raises(OSError):
        prepare_dataset("digits", {"source": "sklearn-digits", "max_train": 6, "max_test": 6}, out, tmp_path)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.h5"]


# ---------------------------------------------------------------------------------------------------------
# Model input
# ---------------------------------------------------------------------------------------------------------
def test_images_to_tensor():
    images = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16).repeat(3, axis=1)
    tensor = images_to_tensor(images)
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == images.shape
    expected = np.array([np.float32(v) / np.float32(255) for v in images.ravel()], dtype=np.float32)
    np.testing.assert_array_equal(tensor.numpy().ravel(), expected)
    assert float(tensor.min()) == 0.0 and float(tensor.max()) == 1.0
    # A non-contiguous view is accepted and the source array is left unchanged.
    view = images[:, ::-1]
    np.testing.assert_array_equal(images_to_tensor(view).numpy(), view.astype(np.float32) / 255)
    assert images.dtype == np.uint8 and images.max() == 255
    with pytest.raises(ValueError, match="uint8"):
        images_to_tensor(images.astype(np.float32))
