"""The torchvision source (resdyn/data.py, method §5) on small files in each dataset's real on-disk format.

The tests write, offline, the files torchvision's own classes read: MNIST-family idx files, EMNIST's
transposed idx files, QMNIST's int32 idx label tables, CIFAR's pickled batches, SVHN's MATLAB .mat, STL10's
column-major binaries and USPS's bz2-compressed libsvm text. The data stage then reads them through the
real ``torchvision.datasets`` classes with ``download: false``. Where a class verifies files against md5
sums it carries (CIFAR, SVHN, STL10, USPS), the test replaces those sums with the sums of the files it wrote
(``monkeypatch`` on the class's list of file names and sums): the reading code stays torchvision's own.
"""

from __future__ import annotations

import bz2
import hashlib
import pickle
import re
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torchvision.datasets as tvd
import yaml
from PIL import Image

from resdyn.artifacts import DatasetFile
from resdyn.data import RESIZE_MODES, TORCHVISION, TORCHVISION_NAMES
from resdyn.io import InputError
from resdyn.stages import prepare_data

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 5, 3


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (big-endian): magic 0x0000 <type> <ndim>, int32 dims, data (uint8 0x08, int32 0x0C)."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}[array.dtype]
    header = struct.pack(">I", (code << 8) + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).astype(array.dtype.newbyteorder(">")).tobytes()


def random_split(rng: np.random.Generator, n: int, shape: tuple[int, ...], classes: int):
    """``n`` random uint8 images (the true, upright ones) of ``shape`` and labels 0..classes−1."""
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    return images, rng.integers(0, classes, size=n).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# Writers: each returns {split: (upright images as stored by resdyn before conversion, labels)} and the
# paths it wrote (the files torchvision requires).
# ---------------------------------------------------------------------------------------------------------
def write_mnist_family(root: Path, name: str, rng: np.random.Generator, monkeypatch) -> tuple[dict, list]:
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out, paths = {}, []
    for split, prefix, n in (("train", "train", N_TRAIN), ("test", "t10k", N_TEST)):
        images, labels = random_split(rng, n, (28, 28), 10)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels.astype(np.uint8))):
            path = raw / f"{prefix}-{kind}-ubyte"
            path.write_bytes(idx_bytes(array))
            paths.append(path)
        out[split] = (images, labels)
    return out, paths


def write_emnist(root: Path, rng: np.random.Generator, monkeypatch) -> tuple[dict, list]:
    """EMNIST's files hold every image transposed; ``balanced`` has 47 classes."""
    raw = root / "EMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out, paths = {}, []
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        images, labels = random_split(rng, n, (28, 28), 47)
        stored = images.transpose(0, 2, 1)
        for kind, array in (("images-idx3", stored), ("labels-idx1", labels.astype(np.uint8))):
            path = raw / f"emnist-balanced-{split}-{kind}-ubyte"
            path.write_bytes(idx_bytes(array))
            paths.append(path)
        out[split] = (images, labels)
    return out, paths


def write_qmnist(root: Path, rng: np.random.Generator, monkeypatch) -> tuple[dict, list]:
    """QMNIST's labels are an int32 (N, 8) table; column 0 is the digit, the others NIST metadata."""
    raw = root / "QMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out, paths = {}, []
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        images, labels = random_split(rng, n, (28, 28), 10)
        table = rng.integers(0, 100_000, size=(n, 8)).astype(np.int32)
        table[:, 0] = labels
        for kind, array in (("images-idx3-ubyte", images), ("labels-idx2-int", table)):
            path = raw / f"qmnist-{split}-{kind}"
            path.write_bytes(idx_bytes(array))
            paths.append(path)
        out[split] = (images, labels)
    return out, paths


def _cifar(root: Path, rng, monkeypatch, cls, batches: dict, label_key: str, names_key: str, classes: int):
    folder = root / cls.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    out, paths, sums = {}, [], {}
    for split, files in batches.items():
        chunks = []
        for filename in files:
            images, labels = random_split(rng, 2, (3, 32, 32), classes)
            path = folder / filename
            path.write_bytes(pickle.dumps({"data": images.reshape(2, -1), label_key: labels.tolist()}))
            paths.append(path)
            sums[filename] = md5(path)
            chunks.append((images, labels))
        out[split] = tuple(np.concatenate(parts) for parts in zip(*chunks))
    meta = folder / cls.meta["filename"]
    meta.write_bytes(pickle.dumps({names_key: [f"class {k}" for k in range(classes)]}))
    paths.append(meta)
    monkeypatch.setattr(cls, "train_list", [[f, sums[f]] for f in batches["train"]])
    monkeypatch.setattr(cls, "test_list", [[f, sums[f]] for f in batches["test"]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(meta)})
    return out, paths


def write_cifar10(root: Path, rng, monkeypatch):
    batches = {"train": [f"data_batch_{k}" for k in range(1, 6)], "test": ["test_batch"]}
    return _cifar(root, rng, monkeypatch, tvd.CIFAR10, batches, "labels", "label_names", 10)


def write_cifar100(root: Path, rng, monkeypatch):
    batches = {"train": ["train"], "test": ["test"]}
    return _cifar(root, rng, monkeypatch, tvd.CIFAR100, batches, "fine_labels", "fine_label_names", 100)


def write_svhn(root: Path, rng, monkeypatch):
    """SVHN's .mat: X is (32, 32, 3, N) (height, width, channel, image), y is (N, 1) with 10 for digit 0."""
    root.mkdir(parents=True, exist_ok=True)
    out, paths, split_list = {}, [], dict(tvd.SVHN.split_list)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        images, labels = random_split(rng, n, (3, 32, 32), 10)
        labels[0] = 0  # stored as 10
        path = root / f"{split}_32x32.mat"
        scipy.io.savemat(
            path, {"X": images.transpose(2, 3, 1, 0), "y": np.where(labels == 0, 10, labels)[:, None]}
        )
        paths.append(path)
        split_list[split] = [split_list[split][0], path.name, md5(path)]
        out[split] = (images, labels)
    monkeypatch.setattr(tvd.SVHN, "split_list", split_list)
    return out, paths


def write_stl10(root: Path, rng, monkeypatch):
    """STL10's binaries: uint8 images 3×96×96 stored column-major (each channel transposed), labels 1..10;
    torchvision checks all five files, the unlabeled set included, so a tiny one is written too."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    out, paths, sums = {}, [], {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST), ("unlabeled", 1)):
        images, labels = random_split(rng, n, (3, 96, 96), 10)
        (folder / f"{split}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
        names = [f"{split}_X.bin"]
        if split != "unlabeled":
            (folder / f"{split}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
            names.append(f"{split}_y.bin")
            out[split] = (images, labels)
        for name in names:
            paths.append(folder / name)
            sums[name] = md5(folder / name)
    (folder / "class_names.txt").write_text("\n".join(f"stl {k}" for k in range(10)) + "\n")
    monkeypatch.setattr(
        tvd.STL10, "train_list", [[f, sums[f]] for f in ("train_X.bin", "train_y.bin", "unlabeled_X.bin")]
    )
    monkeypatch.setattr(tvd.STL10, "test_list", [[f, sums[f]] for f in ("test_X.bin", "test_y.bin")])
    return out, paths


def write_usps(root: Path, rng, monkeypatch):
    """USPS's libsvm lines ``label i:v ...`` (label 1..10, 256 values in [−1, 1]) in bz2 files. The values
    −1 + j/64 are exact in float32, so torchvision's uint8((v + 1)/2·255) is exactly ⌊255·j/128⌋."""
    root.mkdir(parents=True, exist_ok=True)
    out, paths, split_list = {}, [], dict(tvd.USPS.split_list)
    for split, filename, n in (("train", "usps.bz2", N_TRAIN), ("test", "usps.t.bz2", N_TEST)):
        steps = rng.integers(0, 129, size=(n, 16, 16))
        labels = rng.integers(0, 10, size=n).astype(np.int64)
        lines = [
            f"{label + 1} " + " ".join(f"{k + 1}:{-1 + j / 64:.10f}" for k, j in enumerate(row.ravel()))
            for label, row in zip(labels, steps)
        ]
        path = root / filename
        path.write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
        paths.append(path)
        split_list[split] = [split_list[split][0], filename, md5(path)]
        out[split] = (((255 * steps) // 128).astype(np.uint8), labels)
    monkeypatch.setattr(tvd.USPS, "split_list", split_list)
    return out, paths


WRITERS = {
    "MNIST": lambda root, rng, mp: write_mnist_family(root, "MNIST", rng, mp),
    "FashionMNIST": lambda root, rng, mp: write_mnist_family(root, "FashionMNIST", rng, mp),
    "KMNIST": lambda root, rng, mp: write_mnist_family(root, "KMNIST", rng, mp),
    "EMNIST": write_emnist,
    "QMNIST": write_qmnist,
    "CIFAR10": write_cifar10,
    "CIFAR100": write_cifar100,
    "SVHN": write_svhn,
    "STL10": write_stl10,
    "USPS": write_usps,
}
EXTRA = {"EMNIST": {"emnist_split": "balanced"}}


def entry(name: str, **more) -> dict:
    return {"source": "torchvision", "name": name, "download": False, **EXTRA.get(name, {}), **more}


# ---------------------------------------------------------------------------------------------------------
# Expected images, computed without resdyn
# ---------------------------------------------------------------------------------------------------------
def expected_32(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, 3, H, W) uint8 at 28×28, 32×32 or 16×16 as resdyn must store them: 28 → 2 px of
    zeros each side, 16 → every pixel a 2×2 block, grey → three equal channels."""
    if images.ndim == 3:
        images = images[:, None]
    size = images.shape[-1]
    if size == 28:
        out = np.zeros((*images.shape[:2], 32, 32), np.uint8)
        out[:, :, 2:30, 2:30] = images
    elif size == 16:
        out = images.repeat(2, axis=2).repeat(2, axis=3)
    else:
        out = images
    return np.repeat(out, 3 // out.shape[1], axis=1)


def pil_bilinear_32(image_chw: np.ndarray) -> np.ndarray:
    """PIL's antialiased bilinear resize to 32×32, channel by channel (an independent reference)."""
    return np.stack(
        [np.asarray(Image.fromarray(plane).resize((32, 32), Image.BILINEAR)) for plane in image_chw]
    )


# ---------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------
def test_the_table_and_the_schema_list_the_same_names_and_resize_modes():
    schema = yaml.safe_load((ROOT / "schemas" / "config.schema.yaml").read_text())
    dataset = schema["$defs"]["dataset"]["properties"]
    assert dataset["name"]["enum"] == list(TORCHVISION_NAMES)
    assert dataset["resize"]["enum"] == list(RESIZE_MODES)
    assert dataset["emnist_split"]["enum"] == list(tvd.EMNIST.splits)
    for name, reader in TORCHVISION.items():
        assert hasattr(tvd, name), name
        assert set(reader.split_args) == {"train", "test"}


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_each_dataset_reads_its_real_format_through_torchvision(tmp_path, monkeypatch, name):
    root = tmp_path / "downloads"
    written, paths = WRITERS[name](root, np.random.default_rng(TORCHVISION_NAMES.index(name)), monkeypatch)
    out = tmp_path / f"{name}.h5"
    prepare_data(name.lower(), entry(name), out, root)
    dataset = DatasetFile.load(out)
    for split in ("train", "test"):
        images, labels = dataset.splits[split]
        source_images, source_labels = written[split]
        np.testing.assert_array_equal(labels, source_labels)
        if name == "STL10":
            reference = np.stack([pil_bilinear_32(image) for image in source_images])
            # torchvision's antialiased bilinear resize of uint8 tensors agrees with PIL's to within 1.
            assert np.abs(images.astype(int) - reference.astype(int)).max() <= 1
        else:
            np.testing.assert_array_equal(images, expected_32(source_images))
        record = dataset.preprocessing[split]
        assert record["source_shape"] == list(
            {"STL10": (3, 96, 96), "USPS": (1, 16, 16)}.get(
                name, (3, 32, 32) if name in ("CIFAR10", "CIFAR100", "SVHN") else (1, 28, 28)
            )
        )
    assert dataset.source == "torchvision" and f"torchvision.datasets.{name}" in dataset.origin
    assert dataset.preprocessing["resize"] == "auto"
    steps = " | ".join(dataset.preprocessing["test"]["steps"])
    expected_step = {
        "STL10": "resized 96×96 → 32×32 by torchvision.transforms.v2.functional.resize(size=32, "
        "interpolation=InterpolationMode.BILINEAR, antialias=True)",
        "USPS": "interpolation=InterpolationMode.NEAREST",
        "CIFAR10": "kept as is (32×32)",
        "CIFAR100": "kept as is (32×32)",
        "SVHN": "kept as is (32×32)",
    }.get(name, "zero-padded 28×28 → 32×32")
    assert expected_step in steps
    assert ("transposed" in steps) == (name == "EMNIST")
    # Class names: torchvision's own where it has them, else the label numbers.
    names = {
        "EMNIST": list(tvd.EMNIST.classes_split_dict["balanced"]),
        "CIFAR10": [f"class {k}" for k in range(10)],
        "CIFAR100": [f"class {k}" for k in range(100)],
        "STL10": [f"stl {k}" for k in range(10)],
    }.get(name)
    if names is None:
        names = list(getattr(tvd, name).classes) if hasattr(getattr(tvd, name), "classes") else None
    if names is not None:
        assert dataset.class_names == names
    else:  # SVHN and USPS carry no class names
        top = max(int(written[s][1].max()) for s in ("train", "test"))
        assert dataset.class_names == [str(k) for k in range(top + 1)]


def _named_files(message: str) -> tuple[Path, list[str], list[str]]:
    found = re.search(
        r"Place these files in (.+?): (.+?) \(missing or failing their checksum: (.+?)\);", message
    )
    assert found, message
    missing = [] if found[3].startswith("none") else found[3].split(", ")
    return Path(found[1]), found[2].split(", "), missing


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_offline_error_names_exactly_the_files_torchvision_reads(tmp_path, monkeypatch, name):
    """Offline with nothing in place, the error names a folder and files; the files the writer puts there
    (the ones torchvision reads) are exactly those, and with them in place the same entry reads."""
    root = tmp_path / "downloads"
    out = tmp_path / "out.h5"
    with pytest.raises(InputError) as info:
        prepare_data("mine", entry(name), out, root)
    message = str(info.value)
    assert "dataset 'mine'" in message and "download: false" in message and not out.exists()
    folder, files, missing = _named_files(message)
    assert missing == files
    _, paths = WRITERS[name](root, np.random.default_rng(0), monkeypatch)
    assert sorted(folder / f for f in files) == sorted(paths)
    prepare_data("mine", entry(name), out, root)
    assert out.exists()


def test_offline_error_lists_only_what_is_missing(tmp_path, monkeypatch):
    root = tmp_path / "downloads"
    _, paths = write_usps(root, np.random.default_rng(0), monkeypatch)
    paths[1].unlink()
    with pytest.raises(InputError) as info:
        prepare_data("u", entry("USPS"), tmp_path / "u.h5", root)
    folder, files, missing = _named_files(str(info.value))
    assert folder == root and files == ["usps.bz2", "usps.t.bz2"] and missing == ["usps.t.bz2"]


def test_mnist_offline_error_also_names_the_archives(tmp_path):
    with pytest.raises(InputError) as info:
        prepare_data("m", entry("MNIST"), tmp_path / "m.h5", tmp_path / "dl")
    message = str(info.value)
    for archive in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert archive in message
    assert str(tmp_path / "dl" / "MNIST" / "raw") in message


def test_cifar_offline_error_names_the_archive(tmp_path):
    with pytest.raises(InputError) as info:
        prepare_data("c", entry("CIFAR10"), tmp_path / "c.h5", tmp_path / "dl")
    message = str(info.value)
    assert str(tmp_path / "dl" / "cifar-10-batches-py") in message and "cifar-10-python.tar.gz" in message
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch", "batches.meta"]:
        assert name in message


def test_checksum_mismatch_is_reported_as_failing(tmp_path, monkeypatch):
    root = tmp_path / "downloads"
    _, paths = write_svhn(root, np.random.default_rng(0), monkeypatch)
    paths[0].write_bytes(paths[0].read_bytes() + b"tampered")
    with pytest.raises(InputError) as info:
        prepare_data("s", entry("SVHN"), tmp_path / "s.h5", root)
    _, _, missing = _named_files(str(info.value))
    assert missing == ["train_32x32.mat"]


def test_corrupt_files_name_the_folder(tmp_path, monkeypatch):
    root = tmp_path / "downloads"
    write_usps(root, np.random.default_rng(0), monkeypatch)
    (root / "usps.bz2").write_bytes(b"not bz2 at all")
    with pytest.raises(InputError, match="torchvision said: OSError") as info:
        prepare_data("u", entry("USPS"), tmp_path / "u.h5", root)
    folder, _, missing = _named_files(str(info.value))
    assert folder == root and missing == ["usps.bz2"]  # it no longer matches its md5
    # MNIST's raw files carry no md5 (torchvision checks that they exist): "could not be read".
    write_mnist_family(root, "MNIST", np.random.default_rng(0), monkeypatch)
    (root / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03garbage")
    with pytest.raises(InputError, match="could not be read") as info:
        prepare_data("m", entry("MNIST"), tmp_path / "m.h5", root)
    assert str(root / "MNIST" / "raw") in str(info.value)


@pytest.mark.parametrize("value", [None, "everything"])
def test_emnist_needs_a_valid_split(tmp_path, value):
    bad = {**entry("EMNIST"), "emnist_split": value}
    with pytest.raises(InputError, match="needs 'emnist_split' .*balanced.*got") as info:
        prepare_data("e", bad, tmp_path / "e.h5", tmp_path)
    assert "dataset 'e'" in str(info.value)


def test_max_test_and_explicit_resize(tmp_path, monkeypatch):
    root = tmp_path / "downloads"
    written, _ = write_stl10(root, np.random.default_rng(1), monkeypatch)
    out = tmp_path / "stl.h5"
    prepare_data("stl", entry("STL10", max_test=2, resize="nearest"), out, root)
    dataset = DatasetFile.load(out)
    images, labels = dataset.splits["test"]
    assert len(images) == 2
    np.testing.assert_array_equal(labels, written["test"][1][:2])
    # Nearest from 96 to 32 samples source pixel 3k (torch's rule: floor(k · 96/32)).
    np.testing.assert_array_equal(images, written["test"][0][:2, :, ::3, ::3])
    assert "InterpolationMode.NEAREST," in dataset.preprocessing["test"]["steps"][0]
    with h5py.File(out, "r") as handle:
        assert '"resize": "nearest"' in handle.attrs["preprocessing"]
