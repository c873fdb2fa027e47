"""The data stage: every dataset as 3×32×32 uint8 images in one HDF5 file (method §5, ARCHITECTURE "Data").

A dataset is one config entry. Its ``source`` picks the reader:

- ``sklearn-digits``: scikit-learn's bundled 8×8 digits (offline), values 0..16 scaled to 0..255, upscaled ×4
  by nearest neighbour, stratified 75/25 split with a fixed seed, each split kept in source order.
- ``torchvision``: MNIST, FashionMNIST or CIFAR-10 through torchvision's own download and checksum code.
- ``npz``: a user's file with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (optional ``class_names``).

The result is a :class:`resdyn.artifacts.DatasetFile` (``results/data/{dataset}.h5``; layout and checks
there). The test split keeps its source order, because "order within class" (Table 3) is the rank among
test images of the same class in that order.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resdyn.artifacts import SPLITS, DatasetFile, decode_class_names
from resdyn.config import schema_defaults
from resdyn.io import InputError

SOURCES = ("sklearn-digits", "torchvision", "npz")
IMAGE_SIZE = 32
CHANNELS = 3
MNIST_LIKE = ("MNIST", "FashionMNIST")
CIFAR_LIKE = ("CIFAR10",)
TORCHVISION_NAMES = MNIST_LIKE + CIFAR_LIKE
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

# Only a 28×28 source is padded; any other size would need a resampling choice method §5 does not make.
_PAD_28 = (IMAGE_SIZE - 28) // 2


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------
def read_dataset(name: str, entry: Mapping[str, Any], download_dir: str | os.PathLike) -> DatasetFile:
    """Read the dataset described by ``entry`` as 3×32×32 uint8 images (method §5).

    Entry keys read: ``source`` (``sklearn-digits`` | ``torchvision`` | ``npz``); ``name`` (torchvision:
    ``MNIST``, ``FashionMNIST``, ``CIFAR10``); ``path`` (npz); ``seed`` (digits split, default 0);
    ``class_names`` (optional, overrides the source's names; its length must equal the number of classes);
    ``max_train`` / ``max_test`` (optional: keep the first K images of a split in source order);
    ``download`` (torchvision, default true). Other keys (e.g. ``training``) are not the data stage's and are
    ignored. The number of classes C comes from the full source, before ``max_*`` truncation.

    Bad input raises :class:`InputError` naming the dataset, file, key or value.
    """
    if not isinstance(entry, Mapping):
        raise InputError(f"dataset '{name}': the config entry must be a mapping, got {type(entry).__name__}")
    entry = {**schema_defaults("dataset"), **entry}
    # Options are checked before any reading, so a typo never waits for a download.
    keep = {split: _int_option(name, entry, f"max_{split}", default=None, minimum=1) for split in SPLITS}
    source = entry.get("source")
    if source == "sklearn-digits":
        seed = _int_option(name, entry, "seed", default=None, minimum=0)
        arrays, class_names, origin = _read_digits(seed)
    elif source == "torchvision":
        download = entry["download"]
        if not isinstance(download, bool):
            raise InputError(f"dataset '{name}': 'download' must be true or false, got {download!r}")
        arrays, class_names, origin = _read_torchvision(name, entry.get("name"), Path(download_dir), download)
    elif source == "npz":
        path = entry.get("path")
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise InputError(f"dataset '{name}': source npz needs a 'path' to the .npz file, got {path!r}")
        arrays, class_names, origin = _read_npz(Path(path))
    else:
        raise InputError(f"dataset '{name}': unknown source {source!r} (choose one of {', '.join(SOURCES)})")

    class_names = _override_class_names(name, entry, class_names)
    for split in SPLITS:
        if keep[split] is not None:
            images, labels = arrays[split]
            arrays[split] = (images[: keep[split]], labels[: keep[split]])
    dataset = DatasetFile(arrays, class_names, dataset=name, source=str(source), origin=origin)
    dataset.validate()
    return dataset


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """Model input from stored images: ``float32(x) / 255`` in [0, 1], same shape (ARCHITECTURE "Data")."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images_to_tensor expects uint8 images, got {images.dtype}")
    return torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)


def to_chw32(images: np.ndarray, where: str) -> np.ndarray:
    """Bring images to uint8 (N, 3, 32, 32): the conversion of method §5 shared by every source.

    Accepts (N, H, W), (N, H, W, 1|3) or (N, 1|3, H, W) with H = W ∈ {28, 32}; uint8 (or another integer
    type with values in 0..255) or float in [0, 1], mapped to ``rint(255·x)``. 28×28 is zero-padded by 2 px
    on each side; one channel is repeated to three. Anything else raises :class:`InputError` naming ``where``.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise InputError(
            f"{where}: images must have shape (N, H, W), (N, H, W, C) or (N, C, H, W), got {images.shape}"
        )
    if images.ndim == 3:
        images = images[:, None]
    elif images.shape[1] in (1, 3) and images.shape[2] == images.shape[3]:
        pass  # already channel-first
    elif images.shape[3] in (1, 3) and images.shape[1] == images.shape[2]:
        images = images.transpose(0, 3, 1, 2)
    else:
        raise InputError(
            f"{where}: cannot read images of shape {images.shape}: expected (N, H, W, 1|3) or (N, 1|3, H, W) "
            "with square H = W"
        )
    height, width = images.shape[2:]
    if (height, width) not in ((28, 28), (IMAGE_SIZE, IMAGE_SIZE)):
        raise InputError(f"{where}: images must be 28×28 or 32×32, got {height}×{width}")
    images = _to_uint8(images, where)
    if height == 28:
        images = np.pad(images, ((0, 0), (0, 0), (_PAD_28, _PAD_28), (_PAD_28, _PAD_28)))
    if images.shape[1] == 1:
        images = np.repeat(images, CHANNELS, axis=1)
    return np.ascontiguousarray(images)


# ---------------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------------
Arrays = dict[str, tuple[np.ndarray, np.ndarray]]


def _read_digits(seed: int) -> tuple[Arrays, list[str], str]:
    """scikit-learn digits: 0..16 → rint(255·v/16), 8×8 → 32×32 by nearest ×4, grey → 3 channels; a
    stratified 75/25 split (``random_state=seed``) with each split's indices sorted so it keeps source order.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    big = np.repeat(np.repeat(pixels, 4, axis=1), 4, axis=2)
    images = np.ascontiguousarray(np.repeat(big[:, None], CHANNELS, axis=1))
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.25, stratify=labels, random_state=seed
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    arrays = {"train": (images[train_idx], labels[train_idx]), "test": (images[test_idx], labels[test_idx])}
    class_names = [str(k) for k in range(10)]
    origin = f"sklearn.datasets.load_digits, stratified 75/25 split, random_state={seed}"
    return arrays, class_names, origin


def _read_torchvision(
    dataset: str, tv_name: Any, root: Path, download: bool
) -> tuple[Arrays, list[str], str]:
    """MNIST-like (28×28 grey: zero-pad to 32, repeat the channel) or CIFAR-10 (HWC → CHW) via torchvision,
    whose own code downloads into ``root`` and verifies checksums."""
    if tv_name not in TORCHVISION_NAMES:
        raise InputError(
            f"dataset '{dataset}': unknown torchvision name {tv_name!r} (choose one of "
            f"{', '.join(TORCHVISION_NAMES)})"
        )
    import torchvision.datasets as tvd

    cls = getattr(tvd, tv_name)
    arrays: Arrays = {}
    class_names: list[str] = []
    for split in SPLITS:
        try:
            ds = cls(root=str(root), train=split == "train", download=download)
        except Exception as err:  # noqa: BLE001 -- network, missing-file and corrupt-file errors all map here
            raise InputError(_torchvision_help(dataset, cls, root, download, err)) from err
        where = f"dataset '{dataset}': torchvision {tv_name} {split} split under {root}"
        data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
        targets = ds.targets.numpy() if isinstance(ds.targets, torch.Tensor) else np.asarray(ds.targets)
        arrays[split] = (to_chw32(data, where), _to_labels(targets, where))
        class_names = [str(c) for c in ds.classes]
    return arrays, class_names, f"torchvision.datasets.{tv_name} (root {root})"


def _torchvision_help(dataset: str, cls: type, root: Path, download: bool, err: BaseException) -> str:
    """Say exactly which files torchvision 0.29 expects where, which are missing, and how to fix it."""
    tv_name = cls.__name__
    if tv_name in MNIST_LIKE:
        folder = root / tv_name / "raw"
        expected = [os.path.splitext(fname)[0] for fname, _ in cls.resources]
        present = [f for f in expected if (folder / f).is_file()]
        archives = ", ".join(fname for fname, _ in cls.resources)
        alternative = (
            f"or put the archives {archives} (from {cls.mirrors[0]}) in that folder and keep download: true, "
            "so torchvision verifies their md5 and unpacks them without a network"
        )
        missing = [f for f in expected if f not in present]
    else:
        from torchvision.datasets.utils import check_integrity

        folder = root / cls.base_folder
        entries = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
        expected = [fname for fname, _ in entries]
        missing = [fname for fname, md5 in entries if not check_integrity(str(folder / fname), md5)]
        alternative = (
            f"or put the archive {cls.filename} (from {cls.url}) in {root} and keep download: true, so "
            "torchvision verifies its md5 and unpacks it without a network"
        )
    state = "download disabled (download: false)" if not download else "download failed or is not possible"
    missing_text = ", ".join(missing) if missing else "none (the files exist but could not be read)"
    return (
        f"dataset '{dataset}': torchvision {tv_name} data not usable in {folder} ({state}). "
        f"Place these files in {folder}: {', '.join(expected)} (missing or failing their checksum: "
        f"{missing_text}); {alternative}. torchvision said: {type(err).__name__}: {err}".strip()
    )


def _read_npz(path: Path) -> tuple[Arrays, list[str], str]:
    """x_train, y_train, x_test, y_test (and optional class_names) from a user's .npz, checked key by key."""
    if not path.is_file():
        raise InputError(f"{path}: npz file not found")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: not a readable .npz archive ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InputError(f"{path}: a single .npy array, not an .npz archive with keys {', '.join(NPZ_KEYS)}")
    with archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise InputError(
                f"{path}: missing key(s) {', '.join(repr(k) for k in missing)} "
                f"(found: {', '.join(archive.files) or 'none'})"
            )
        raw = {key: _npz_array(archive, path, key) for key in NPZ_KEYS}
        names_raw = _npz_array(archive, path, "class_names") if "class_names" in archive.files else None

    arrays: Arrays = {}
    for split in SPLITS:
        x_key, y_key = f"x_{split}", f"y_{split}"
        if raw[x_key].ndim == 0 or len(raw[x_key]) == 0:
            raise InputError(f"{path}: key '{x_key}' holds no images; the {split} set must not be empty")
        labels = _to_labels(raw[y_key], f"{path}: key '{y_key}'")
        if len(labels) != len(raw[x_key]):
            raise InputError(
                f"{path}: key '{y_key}' has {len(labels)} labels "
                f"but key '{x_key}' has shape {raw[x_key].shape}"
            )
        arrays[split] = (to_chw32(raw[x_key], f"{path}: key '{x_key}'"), labels)

    top = max(int(arrays[s][1].max()) for s in SPLITS)
    if names_raw is not None:
        if names_raw.ndim != 1 or names_raw.dtype.kind not in "US":
            raise InputError(
                f"{path}: key 'class_names' must be a 1-D array of strings, got {names_raw.dtype}"
            )
        class_names = decode_class_names(names_raw)
        if top >= len(class_names):
            split = "train" if int(arrays["train"][1].max()) == top else "test"
            raise InputError(
                f"{path}: key 'y_{split}' has label {top} but key 'class_names' names only "
                f"{len(class_names)} classes"
            )
    else:
        class_names = [str(k) for k in range(top + 1)]
    return arrays, class_names, f"npz {path}"


def _npz_array(archive: np.lib.npyio.NpzFile, path: Path, key: str) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: cannot read key '{key}' ({err})") from None


# ---------------------------------------------------------------------------------------------------------
# Checks and conversions
# ---------------------------------------------------------------------------------------------------------
def _to_uint8(images: np.ndarray, where: str) -> np.ndarray:
    kind = images.dtype.kind
    if images.dtype == np.uint8:
        return images
    if kind in "iu":
        low, high = (int(images.min()), int(images.max())) if images.size else (0, 0)
        if low < 0 or high > 255:
            raise InputError(f"{where}: integer pixel values must lie in 0..255, found {low}..{high}")
        return images.astype(np.uint8)
    if kind == "f":
        if not np.all(np.isfinite(images)):
            raise InputError(f"{where}: images contain NaN or infinite values")
        low, high = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
        if low < 0.0 or high > 1.0:
            raise InputError(
                f"{where}: float pixel values must lie in [0, 1], found {low:g}..{high:g} "
                "(store uint8 0..255 or divide by 255)"
            )
        return np.rint(images.astype(np.float64) * 255.0).astype(np.uint8)
    raise InputError(f"{where}: images must be uint8 or float in [0, 1], got dtype {images.dtype}")


def _to_labels(labels: np.ndarray, where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise InputError(f"{where}: labels must be one-dimensional, got shape {labels.shape}")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            bad = float(labels[~(np.isfinite(labels) & (labels == np.round(labels)))][0])
            raise InputError(f"{where}: labels must be integers, found {bad}")
    elif labels.dtype.kind not in "iu":
        raise InputError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise InputError(f"{where}: labels must be ≥ 0, found {int(labels.min())}")
    return labels.astype(np.int64)


def _override_class_names(dataset: str, entry: Mapping[str, Any], class_names: list[str]) -> list[str]:
    override = entry.get("class_names")
    if override is None:
        return class_names
    if isinstance(override, str) or not all(isinstance(n, str) for n in override):
        raise InputError(f"dataset '{dataset}': 'class_names' must be a list of strings, got {override!r}")
    if len(override) != len(class_names):
        raise InputError(
            f"dataset '{dataset}': 'class_names' lists {len(override)} names but the source has "
            f"{len(class_names)} classes"
        )
    return list(override)


def _int_option(
    dataset: str, entry: Mapping[str, Any], key: str, *, default: int | None, minimum: int
) -> int | None:
    value = entry.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"dataset '{dataset}': '{key}' must be an integer ≥ {minimum}, got {value!r}")
    return int(value)
