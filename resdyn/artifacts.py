"""The artifact layer: one typed reader/writer per file a stage writes (docs/ARCHITECTURE.md, "Artifacts").

Each artifact is a dataclass with ``save(path)`` (atomic, through :func:`resdyn.io.atomic_output`) and a
classmethod ``load(path)`` that checks the whole layout once and raises :class:`resdyn.io.InputError`
naming the file and the key at fault. No other module opens these files, so a layout and its checks live
in exactly one place. ``FORMAT_VERSION`` is the layout version: HDF5 artifacts store it as the root attr
``format_version`` (a file without it is version 1, the layout before the attr existed), ``model.pt``
stores it as ``format``; the JSON artifacts do not store it, because their bytes are compared across
reruns and their keys are the contract of method §7.

Class names travel through HDF5 attrs in one encoding (:func:`encode_class_names`), read back by one
decoder (:func:`decode_class_names`) that also accepts the older spellings (bytes, a JSON string).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np

from resdyn.io import InputError, atomic_output, open_h5, read_json, write_json

PathLike = str | os.PathLike
SPLITS = ("train", "test")
IMAGE_SHAPE = (3, 32, 32)
LABEL_SOURCES = ("true", "predicted")
_FORMAT_ATTR = "format_version"

log = logging.getLogger(__name__)


class _Artifact:
    @classmethod
    def of(cls, source: Any) -> Any:
        """``source`` itself when it already is this artifact, else ``load(source)`` (a path)."""
        return source if isinstance(source, cls) else cls.load(source)


# ---------------------------------------------------------------------------------------------------------
# Shared helpers: the class-name codec and array checks
# ---------------------------------------------------------------------------------------------------------
def encode_class_names(names: Sequence[str]) -> np.ndarray:
    """Class names as an HDF5 attr value: a 1-D array of variable-length UTF-8 strings."""
    return np.array([str(n) for n in names], dtype=h5py.string_dtype())


def decode_class_names(raw: Any) -> list[str]:
    """The inverse of :func:`encode_class_names`; also reads bytes, str arrays and a JSON-encoded list."""
    if isinstance(raw, bytes):
        raw = raw.decode()
    if isinstance(raw, str):
        raw = json.loads(raw) if raw.startswith("[") else [raw]
    return [
        v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(np.asarray(raw, dtype=object))
    ]


def _plain(value: Any) -> Any:
    """An HDF5 attr as a plain Python value (str, int, float, list)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_version(path: PathLike, handle: h5py.File, version: int) -> None:
    found = int(handle.attrs.get(_FORMAT_ATTR, 1))
    if found != version:
        raise InputError(f"{path}: format version {found}, this resdyn reads version {version}")


def _read(
    path: PathLike, handle: h5py.File, key: str, dtype: Any = None, what: str | None = None
) -> np.ndarray:
    """Dataset ``key`` as an array; a truncated or bit-flipped chunk (it only surfaces when read) names it."""
    node = handle[key]
    if not isinstance(node, h5py.Dataset):
        raise InputError(f"{path}: '{key}' must be a dataset, not a group")
    if dtype is not None and node.dtype != dtype:
        raise InputError(f"{path}: '{key}' must be {np.dtype(dtype)}, got {node.dtype}")
    try:
        return node[()]
    except OSError as err:
        raise InputError(f"{path}: cannot read {what or repr(key)}, the file is corrupt ({err})") from None


def _require_attrs(path: PathLike, attrs: Mapping[str, Any], keys: Sequence[str], where: str = "") -> None:
    for key in keys:
        if key not in attrs:
            raise InputError(f"{path}: missing {where}attr '{key}'")


def _check_shape(path: PathLike, key: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != shape:
        raise InputError(f"{path}: '{key}' has shape {array.shape}, expected {shape}")


def _check_finite(path: PathLike, key: str, array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        raise InputError(f"{path}: '{key}' holds NaN or inf")


def _check_labels(where: str, labels: np.ndarray, n_classes: int) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if bad.size:
        raise InputError(f"{where} label {labels[bad[0]]} at index {bad[0]} lies outside 0..{n_classes - 1}")


@contextlib.contextmanager
def _write_h5(path: PathLike, version: int) -> Iterator[h5py.File]:
    """An HDF5 file opened for writing under a temporary name, renamed onto ``path`` when complete."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs[_FORMAT_ATTR] = version
        yield handle


# ---------------------------------------------------------------------------------------------------------
# results/data/{dataset}.h5
# ---------------------------------------------------------------------------------------------------------
def array_checksum(
    train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray
) -> str:
    """sha256 hex of the raw bytes of the four arrays in the order train images, train labels, test images,
    test labels, each as C-contiguous little-endian (uint8 images, int64 labels).

    It depends only on the content, not on HDF5 layout or compression, so later stages can record which data
    they were computed from.
    """
    digest = hashlib.sha256()
    for array, dtype in (
        (train_images, np.uint8),
        (train_labels, np.dtype("<i8")),
        (test_images, np.uint8),
        (test_labels, np.dtype("<i8")),
    ):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return digest.hexdigest()


def check_split(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], where: str) -> None:
    """One split as method §5 fixes it: uint8 (N, 3, 32, 32) images, int64 (N,) labels in 0..C−1, N ≥ 1."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise InputError(f"{where} images must be uint8 (N, 3, 32, 32), got {images.dtype} {images.shape}")
    if labels.dtype != np.int64 or labels.shape != (len(images),):
        raise InputError(
            f"{where} labels must be int64 ({len(images)},) to match the images, "
            f"got {labels.dtype} {labels.shape}"
        )
    if len(images) == 0:
        raise InputError(f"{where} split is empty")
    if len(class_names) == 0:
        raise InputError(f"{where}: no class names")
    _check_labels(where, labels, len(class_names))


@dataclass
class DatasetFile:
    """``results/data/{dataset}.h5``: ``/{train,test}/images`` uint8 (N, 3, 32, 32) gzip-1 in chunks of 256
    images, ``/{train,test}/labels`` int64 (N,); attrs ``class_names``, ``source``, ``dataset``, ``origin``,
    ``checksum`` (:func:`array_checksum`) and ``preprocessing``: a JSON object saying how the source's
    images became 3×32×32 (method §5): ``resize`` (the setting) and, per split, ``source_shape`` [C, H, W],
    ``source_dtype`` and ``steps`` (every operation in order, e.g. the torchvision resize with its
    interpolation). The test split keeps its source order ("order within class").

    ``preprocessing`` is ``{}`` when read from a file written before the attr existed (an added attr, so
    the layout version stays 1: older readers ignore it, this reader does not require it)."""

    FORMAT_VERSION: ClassVar[int] = 1
    # gzip level 1 over chunks of 256 whole images: measured on sklearn digits (3×32×32) tiled to 70 000
    # images, it shrank the file 215 MB → 10 MB at the same write time and halved the read time; on
    # incompressible (CIFAR-like) noise it costs ~0.06 s per 1 000 images on write, nothing on read.
    CHUNK_IMAGES: ClassVar[int] = 256
    GZIP_LEVEL: ClassVar[int] = 1

    splits: Mapping[str, tuple[np.ndarray, np.ndarray]]
    class_names: list[str]
    dataset: str
    source: str
    origin: str
    preprocessing: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        for split in SPLITS:
            if split not in self.splits:
                raise InputError(f"dataset '{self.dataset}': no '{split}' split")
            check_split(*self.splits[split], self.class_names, f"dataset '{self.dataset}': '{split}'")

    @property
    def checksum(self) -> str:
        return array_checksum(*self.splits["train"], *self.splits["test"])

    def save(self, path: PathLike) -> None:
        self.validate()
        with _write_h5(path, self.FORMAT_VERSION) as handle:
            for split in SPLITS:
                images, labels = self.splits[split]
                group = handle.create_group(split)
                group.create_dataset(
                    "images",
                    data=images,
                    chunks=(min(len(images), self.CHUNK_IMAGES), *IMAGE_SHAPE),
                    compression="gzip",
                    compression_opts=self.GZIP_LEVEL,
                )
                group.create_dataset("labels", data=labels)
            handle.attrs["class_names"] = encode_class_names(self.class_names)
            handle.attrs["source"] = self.source
            handle.attrs["dataset"] = self.dataset
            handle.attrs["origin"] = self.origin
            handle.attrs["checksum"] = self.checksum
            handle.attrs["preprocessing"] = json.dumps(self.preprocessing, ensure_ascii=False)

    @classmethod
    def load_split(cls, path: PathLike, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """One split: ``(images uint8 (N, 3, 32, 32), labels int64 (N,), class_names)``, fully checked."""
        if split not in SPLITS:
            raise InputError(f"{path}: unknown split {split!r} (choose 'train' or 'test')")
        images_key, labels_key = f"{split}/images", f"{split}/labels"
        with open_h5(path, required=[images_key, labels_key]) as handle:
            _check_version(path, handle, cls.FORMAT_VERSION)
            _require_attrs(path, handle.attrs, ["class_names"])
            class_names = decode_class_names(handle.attrs["class_names"])
            what = f"'{split}' arrays"
            images = _read(path, handle, images_key, np.uint8, what)
            labels = _read(path, handle, labels_key, np.int64, what)
        check_split(images, labels, class_names, f"{path}: '{split}'")
        return images, labels, class_names

    @classmethod
    def load(cls, path: PathLike) -> DatasetFile:
        splits, names = {}, []
        for split in SPLITS:
            images, labels, names = cls.load_split(path, split)
            splits[split] = (images, labels)
        with open_h5(path) as handle:
            attrs = {k: str(_plain(handle.attrs.get(k, ""))) for k in ("dataset", "source", "origin")}
            raw = _plain(handle.attrs.get("preprocessing", "{}"))
        try:
            preprocessing = json.loads(raw)
        except (TypeError, ValueError) as err:
            raise InputError(f"{path}: attr 'preprocessing' is not a JSON object ({err})") from None
        if not isinstance(preprocessing, dict):
            raise InputError(
                f"{path}: attr 'preprocessing' is not a JSON object, got {type(preprocessing).__name__}"
            )
        return cls(splits, names, **attrs, preprocessing=preprocessing)

    @classmethod
    def test_images(cls, path: PathLike, test_indices: Sequence[int]) -> np.ndarray:
        """Test images (K, 32, 32, 3) uint8, ready for imshow, read one by one (not the whole split)."""
        with open_h5(path, required=["test/images"]) as handle:
            images = handle["test/images"]
            shape = images.shape
            if images.ndim != 4 or shape[1] not in (1, 3):
                raise InputError(f"{path}: '/test/images' has shape {shape}, expected (N, 3, H, W)")
            out = []
            for index in test_indices:
                if not 0 <= int(index) < shape[0]:
                    raise InputError(f"{path}: test index {index} outside 0..{shape[0] - 1}")
                out.append(np.asarray(images[int(index)]))
        stacked = np.stack(out) if out else np.zeros((0, shape[1]) + tuple(shape[2:]), np.uint8)
        if stacked.shape[1] == 1:
            stacked = np.repeat(stacked, 3, axis=1)
        return np.ascontiguousarray(stacked.transpose(0, 2, 3, 1))


# ---------------------------------------------------------------------------------------------------------
# model.pt
# ---------------------------------------------------------------------------------------------------------
def rebuild_hint(path: PathLike) -> str:
    """How to rebuild a corrupt result file: force the job that writes it (the path names it, whatever
    the rule), or delete the file and rerun."""
    return f"rebuild it with `snakemake --forcerun {path}` (or delete the file and rerun snakemake)"


def tensors_checksum(tensors: Mapping[str, Any]) -> str:
    """sha256 hex over named tensors in sorted name order: each name, dtype, shape and the tensor's raw
    bytes (CPU, contiguous). It depends on the values only, not on how ``torch.save`` lays out the file."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name]
        if not isinstance(tensor, torch.Tensor):
            raise InputError(f"entry '{name}' is a {type(tensor).__name__}, not a tensor")
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


CHECKSUM_KEY = "tensors_sha256"
"""Payload key of a torch artifact's :func:`tensors_checksum`, verified on every load."""


def _load_torch_payload(
    path: PathLike, what: str, keys: Sequence[str], version: int, tensors: Sequence[str] = ()
) -> dict[str, Any]:
    """The dict a ``torch.save`` artifact holds (loaded with ``weights_only=True``), checked for its keys,
    format version and, where the payload records one, the :func:`tensors_checksum` of its ``tensors``
    entries (each a tensor or a dict of tensors); any failure is an InputError naming the file and how to
    rebuild it. A file written before the checksum existed loads with a warning (it cannot be verified)."""
    import torch

    path = Path(path)
    hint = rebuild_hint(path)
    if not path.exists():
        raise InputError(f"{path}: {what} file not found")
    if path.is_dir():
        raise InputError(f"{path}: a directory, not a {what} file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for a corrupt file
        raise InputError(
            f"{path}: not a readable {what} file, truncated or corrupt ({type(err).__name__}: {err}); {hint}"
        ) from None
    missing = [k for k in keys if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise InputError(f"{path}: not a resdyn {what} file, it lacks key(s) {missing}; {hint}")
    if payload["format"] != version:
        raise InputError(f"{path}: {what} file format {payload['format']!r}, expected {version}; {hint}")
    if tensors:
        recorded = payload.get(CHECKSUM_KEY)
        if recorded is None:
            log.warning(
                "%s: %s file written before resdyn recorded its checksum; loaded unverified (%s to add one)",
                path,
                what,
                hint,
            )
        else:
            try:
                found = tensors_checksum(_flat_tensors(payload, tensors))
            except InputError as err:
                raise InputError(f"{path}: {what} file: {err}; {hint}") from None
            if found != recorded:
                raise InputError(
                    f"{path}: {what} file is corrupt: its tensors have sha256 {found}, the file recorded "
                    f"{recorded} when it was written (a changed bit or a modified file); {hint}"
                )
    return payload


def _flat_tensors(payload: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The payload's tensors under ``keys`` as one name → tensor mapping (dicts flattened as key.name)."""
    flat: dict[str, Any] = {}
    for key in keys:
        value = payload[key]
        if isinstance(value, Mapping):
            flat.update({f"{key}.{name}": tensor for name, tensor in value.items()})
        else:
            flat[key] = value
    return flat


def _save_torch_payload(
    path: PathLike, version: int, payload: Mapping[str, Any], tensors: Sequence[str] = ()
) -> None:
    """Write ``{"format": version, **payload}`` with ``torch.save``, atomically (the counterpart of
    :func:`_load_torch_payload`), with the :func:`tensors_checksum` of the ``tensors`` entries."""
    import torch

    record = {"format": version, **payload}
    if tensors:
        record[CHECKSUM_KEY] = tensors_checksum(_flat_tensors(record, tensors))
    with atomic_output(path) as tmp:
        torch.save(record, tmp)


@dataclass
class ModelCheckpoint:
    """``model.pt``: {format, state_dict (CPU tensors), model_entry (defaults filled), num_classes,
    class_names, tensors_sha256} and, from the training stage, ``numerics`` (:func:`resdyn.numerics.record`:
    the mode, ISA, threads and library versions it trained with; absent in older files), a plain dict that
    loads with ``torch.load(weights_only=True)``.

    ``tensors_sha256`` (:func:`tensors_checksum` of the state_dict, key ``state_dict.<name>``) is checked
    on every load: a changed bit fails with the file named and the command that rebuilds it. Files
    written before it existed (same format version, the key added) load with a warning, unverified."""

    FORMAT_VERSION: ClassVar[int] = 1
    KEYS: ClassVar[tuple[str, ...]] = ("format", "state_dict", "model_entry", "num_classes", "class_names")

    state_dict: dict[str, Any]
    model_entry: dict[str, Any]
    num_classes: int
    class_names: list[str]
    numerics: dict[str, Any] | None = None

    @property
    def meta(self) -> dict[str, Any]:
        meta = {
            "model_entry": self.model_entry,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
        }
        return meta if self.numerics is None else {**meta, "numerics": self.numerics}

    def save(self, path: PathLike) -> None:
        _save_torch_payload(
            path,
            self.FORMAT_VERSION,
            {
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
                "model_entry": self.model_entry,
                "num_classes": int(self.num_classes),
                "class_names": [str(name) for name in self.class_names],
            }
            | ({} if self.numerics is None else {"numerics": self.numerics}),
            tensors=("state_dict",),
        )

    @classmethod
    def load(cls, path: PathLike) -> ModelCheckpoint:
        payload = _load_torch_payload(path, "model", cls.KEYS, cls.FORMAT_VERSION, tensors=("state_dict",))
        return cls(
            payload["state_dict"],
            payload["model_entry"],
            payload["num_classes"],
            payload["class_names"],
            payload.get("numerics"),
        )


def save_model(
    path: PathLike,
    model: Any,
    model_entry: Mapping[str, Any],
    num_classes: int,
    class_names: Sequence[str],
    numerics: Mapping[str, Any] | None = None,
) -> None:
    """Write ``model``'s weights (a module or its state dict) and its architecture (the entry with defaults
    filled) to ``model.pt``, with the ``numerics`` record of its training when given
    (:func:`resdyn.numerics.record`)."""
    from resdyn.model import normalize_model_entry

    ModelCheckpoint(
        dict(model) if isinstance(model, Mapping) else model.state_dict(),
        normalize_model_entry(model_entry),
        int(num_classes),
        list(class_names),
        None if numerics is None else dict(numerics),
    ).save(path)


def load_model(path: PathLike, device: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """The :class:`resdyn.model.RevisedResNet` of ``model.pt`` in eval mode on ``device``, and its meta
    (``model_entry``, ``num_classes``, ``class_names``); weights that do not fit the stored architecture
    raise :class:`InputError` naming the file."""
    from resdyn.model import build_model

    checkpoint = ModelCheckpoint.load(path)
    try:
        model = build_model(checkpoint.model_entry, checkpoint.num_classes)
        model.load_state_dict(checkpoint.state_dict)
    except (InputError, RuntimeError) as err:
        raise InputError(
            f"{path}: weights do not match the stored architecture ({err}); {rebuild_hint(path)}"
        ) from None
    return model.to(device).eval(), checkpoint.meta


# ---------------------------------------------------------------------------------------------------------
# probes.pt and probes.csv (per-depth heads, method §3.5)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class ProbeHeads:
    """``probes.pt``: {format, weight (T+1, C, n) float32, bias (T+1, C) float32, class_names, settings,
    log, tensors_sha256 (of weight and bias, checked on load as for model.pt)}, a plain dict that loads
    with ``torch.load(weights_only=True)``. Probe t maps the state x_t to the logits W_t x_t + b_t
    (:mod:`resdyn.probes`); ``log`` holds one row per depth {depth, iterations, loss, grad_norm,
    converged} of its L-BFGS fit (files written before 2026-12-05 also hold its seconds)."""

    FORMAT_VERSION: ClassVar[int] = 1
    KEYS: ClassVar[tuple[str, ...]] = ("format", "weight", "bias", "class_names", "settings", "log")

    weight: Any  # torch.Tensor (T+1, C, n)
    bias: Any  # torch.Tensor (T+1, C)
    class_names: list[str]
    settings: dict[str, Any]
    log: list[dict[str, float]]

    def save(self, path: PathLike) -> None:
        _save_torch_payload(
            path,
            self.FORMAT_VERSION,
            {
                "weight": self.weight.detach().cpu().float(),
                "bias": self.bias.detach().cpu().float(),
                "class_names": [str(name) for name in self.class_names],
                "settings": dict(self.settings),
                "log": [dict(row) for row in self.log],
            },
            tensors=("weight", "bias"),
        )

    @classmethod
    def load(cls, path: PathLike) -> ProbeHeads:
        """Read and check keys and shapes (one probe per depth, C × n each)."""
        payload = _load_torch_payload(
            path, "probes", cls.KEYS, cls.FORMAT_VERSION, tensors=("weight", "bias")
        )
        weight, bias = payload["weight"], payload["bias"]
        if weight.ndim != 3 or tuple(bias.shape) != tuple(weight.shape[:2]):
            raise InputError(
                f"{path}: probe weight {tuple(weight.shape)} and bias {tuple(bias.shape)} must be "
                "(T+1, C, n) and (T+1, C)"
            )
        if weight.shape[1] != len(payload["class_names"]):
            raise InputError(
                f"{path}: {weight.shape[1]} probe outputs but {len(payload['class_names'])} class names"
            )
        return cls(weight, bias, payload["class_names"], payload["settings"], payload["log"])


PROBE_TABLE_COLUMNS = [
    "depth",
    "train_accuracy",
    "train_loss",
    "test_accuracy",
    "test_loss",
    "head_test_accuracy",
    "weight_norm",
    "lip_g",
    "iterations",
    "grad_norm",
]


def save_probe_table(path: PathLike, table: Any) -> None:
    """Write ``probes.csv`` (a DataFrame with :data:`PROBE_TABLE_COLUMNS`, one row per depth t = 0..T) at
    full precision."""
    if list(table.columns) != PROBE_TABLE_COLUMNS:
        raise InputError(f"probe table columns {list(table.columns)} must be {PROBE_TABLE_COLUMNS}")
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.17g")


def load_probe_table(path: PathLike) -> Any:
    """Read ``probes.csv`` back as a DataFrame, checking its columns and that depths run 0..T."""
    import pandas as pd

    try:
        table = pd.read_csv(path, float_precision="round_trip")  # the default parser may lose an ulp
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read the probe table ({err})") from None
    if list(table.columns) != PROBE_TABLE_COLUMNS:
        raise InputError(f"{path}: columns {list(table.columns)}, expected {PROBE_TABLE_COLUMNS}")
    if table["depth"].tolist() != list(range(len(table))):
        raise InputError(f"{path}: depths must run 0..T in order, got {table['depth'].tolist()}")
    return table


# ---------------------------------------------------------------------------------------------------------
# trajectories.h5
# ---------------------------------------------------------------------------------------------------------
HeadLayers = list[tuple[np.ndarray, np.ndarray]]


@dataclass
class Trajectories(_Artifact):
    """``trajectories.h5`` (ARCHITECTURE "Trajectories"): ``/logits`` (N, T+1, C) float64 = the head z_t
    in float64 (files written before readings existed hold float32, see :meth:`require_float64_logits`);
    ``/probs`` (N, T+1, C) float64 = softmax(z_t); ``/labels``, ``/pred`` (the model's prediction: argmax
    of its float32 head at t = T), ``/index`` (test index), ``/order_in_class`` (1-based rank among test
    images of the same true class), all int64 (N,); the head as ``/head/weight`` (C, n), ``/head/bias``
    (C,) float64 for a linear head, or ``/head/layers/<k>/weight|bias`` (ReLU between layers, none after
    the last), or, for per-depth probes (method §3.5), ``/head/depths/weight`` (T+1, C, n) and
    ``/head/depths/bias`` (T+1, C) float64 (then ``head`` is None and ``depth_heads`` holds them);
    optional ``/states`` (N, T+1, n) float32 chunked (1, T+1, n) with gzip (read lazily,
    :meth:`open_states`); attrs ``dataset``, ``model``, ``T``, ``n``, ``class_names``,
    ``model_checksum``, ``data_checksum`` (and ``probes_checksum`` with per-depth probes)."""

    FORMAT_VERSION: ClassVar[int] = 1
    ROW_KEYS: ClassVar[tuple[str, ...]] = ("labels", "pred", "index", "order_in_class")
    STATES_GZIP: ClassVar[int] = 4

    probs: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    pred: np.ndarray
    index: np.ndarray
    order_in_class: np.ndarray
    head: HeadLayers | None
    class_names: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    depth_heads: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def T(self) -> int:
        return int(self.probs.shape[1] - 1)

    def require_float64_logits(self, why: str) -> None:
        """Raise InputError when ``/logits`` is float32 (written by a resdyn before readings existed):
        p_t = softmax(z_t / τ) must come from the float64 numbers the stored probabilities come from."""
        if self.logits.dtype != np.float64:
            raise InputError(
                f"{self.path}: '/logits' is {self.logits.dtype} (an older trajectory file); {why} needs "
                "float64 logits: rerun its trajectories (snakemake -R trajectories)"
            )

    def class_labels(self, source: str = "true") -> np.ndarray:
        """The labels y_i the constants use: the true test labels, or the predictions at depth T."""
        if source not in LABEL_SOURCES:
            raise InputError(f"analysis.labels = {source!r}; expected one of {LABEL_SOURCES}")
        return self.pred if source == "predicted" else self.labels

    @classmethod
    def load(cls, path: PathLike) -> Trajectories:
        """Every dataset but ``/states``, checked: keys, dtypes, shapes, finite probabilities, labels in
        0..C−1 and a head whose layers chain."""
        with open_h5(path, required=["logits", "probs", *cls.ROW_KEYS, "head"]) as handle:
            _check_version(path, handle, cls.FORMAT_VERSION)
            _require_attrs(path, handle.attrs, ["class_names"])
            names = decode_class_names(handle.attrs["class_names"])
            probs = _read(path, handle, "probs")
            logits = _read(path, handle, "logits")
            rows = {key: _read(path, handle, key) for key in cls.ROW_KEYS}
            depth_heads = cls._read_depth_heads(path, handle["head"], probs.shape[1:], names)
            head = None if depth_heads is not None else cls._read_head(path, handle["head"])
            attrs = {k: _plain(v) for k, v in handle.attrs.items() if k not in ("class_names", _FORMAT_ATTR)}
        if probs.dtype != np.float64 or probs.ndim != 3 or probs.shape[2] != len(names):
            raise InputError(
                f"{path}: 'probs' must be float64 (N, T+1, {len(names)}), got {probs.dtype} {probs.shape}"
            )
        _check_finite(path, "probs", probs)
        _check_shape(path, "logits", logits, probs.shape)
        for key, values in rows.items():
            if values.dtype != np.int64 or values.shape != (probs.shape[0],):
                raise InputError(
                    f"{path}: '{key}' must be int64 ({probs.shape[0]},) as /probs, got "
                    f"{values.dtype} {values.shape}"
                )
        _check_labels(f"{path}: '/labels'", rows["labels"], len(names))
        return cls(
            probs,
            logits,
            head=head,
            class_names=names,
            attrs=attrs,
            path=str(path),
            depth_heads=depth_heads,
            **rows,
        )

    @staticmethod
    def _read_depth_heads(
        path: PathLike, group: h5py.Group, shape: tuple[int, ...], names: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The per-depth probes (weight (T+1, C, n), bias (T+1, C)) when the file holds them, else None."""
        if "depths" not in group:
            return None
        for part in ("weight", "bias"):
            if part not in group["depths"]:
                raise InputError(f"{path}: missing HDF5 key 'head/depths/{part}'")
        weight = np.asarray(group["depths"]["weight"][()], dtype=np.float64)
        bias = np.asarray(group["depths"]["bias"][()], dtype=np.float64)
        depths, classes = shape[0], len(names)
        if weight.ndim != 3 or weight.shape[:2] != (depths, classes) or bias.shape != (depths, classes):
            raise InputError(
                f"{path}: 'head/depths' holds weight {weight.shape} and bias {bias.shape}, expected "
                f"({depths}, {classes}, n) and ({depths}, {classes})"
            )
        return weight, bias

    @staticmethod
    def _read_head(path: PathLike, group: h5py.Group) -> HeadLayers:
        if "weight" in group:
            if "bias" not in group:
                raise InputError(f"{path}: missing HDF5 key 'head/bias'")
            layers = [(group["weight"][()], group["bias"][()])]
        elif "layers" in group:
            keys = sorted(group["layers"], key=int)
            if keys != [str(k) for k in range(len(keys))]:
                raise InputError(f"{path}: 'head/layers' must be numbered 0..K-1, found {keys}")
            layers = []
            for k in keys:
                for part in ("weight", "bias"):
                    if part not in group["layers"][k]:
                        raise InputError(f"{path}: missing HDF5 key 'head/layers/{k}/{part}'")
                layers.append((group["layers"][k]["weight"][()], group["layers"][k]["bias"][()]))
        else:
            raise InputError(f"{path}: 'head' holds neither 'weight' nor 'layers'")
        fan_in = None
        for k, (weight, bias) in enumerate(layers):
            if (
                weight.ndim != 2
                or bias.shape != (weight.shape[0],)
                or (fan_in is not None and weight.shape[1] != fan_in)
            ):
                raise InputError(
                    f"{path}: head layer {k} has weight {weight.shape} and bias {bias.shape}, "
                    "which do not chain"
                )
            fan_in = weight.shape[0]
        return [(np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)) for w, b in layers]

    @staticmethod
    @contextlib.contextmanager
    def open_states(path: PathLike) -> Iterator[h5py.Dataset | None]:
        """The ``/states`` dataset for chunked reading (2.8 GB at paper scale), or None when not stored."""
        with open_h5(path) as handle:
            yield handle["states"] if "states" in handle else None

    @classmethod
    @contextlib.contextmanager
    def writer(
        cls, path: PathLike, *, N: int, T: int, n: int, C: int, store_states: bool
    ) -> Iterator[TrajectoryWriter]:
        """Write the file batch by batch (memory bounded by one batch); renamed onto ``path`` on success."""
        with _write_h5(path, cls.FORMAT_VERSION) as handle:
            yield TrajectoryWriter(handle, N=N, T=T, n=n, C=C, store_states=store_states)


class TrajectoryWriter:
    """Incremental writer of :class:`Trajectories`: :meth:`write_batch` per batch of rows, then
    :meth:`finish`."""

    def __init__(self, handle: h5py.File, *, N: int, T: int, n: int, C: int, store_states: bool) -> None:
        self.handle = handle
        self.logits = handle.create_dataset("logits", (N, T + 1, C), dtype=np.float64)
        self.probs = handle.create_dataset("probs", (N, T + 1, C), dtype=np.float64)
        self.states = None
        if store_states:
            self.states = handle.create_dataset(
                "states",
                (N, T + 1, n),
                dtype=np.float32,
                chunks=(1, T + 1, n),
                compression="gzip",
                compression_opts=Trajectories.STATES_GZIP,
            )

    def write_batch(
        self, start: int, logits: np.ndarray, probs: np.ndarray, states: np.ndarray | None
    ) -> None:
        stop = start + len(logits)
        self.logits[start:stop] = logits
        self.probs[start:stop] = probs
        if self.states is not None:
            self.states[start:stop] = states

    def finish(
        self,
        *,
        labels: np.ndarray,
        pred: np.ndarray,
        order_in_class: np.ndarray,
        head: HeadLayers | None,
        class_names: Sequence[str],
        attrs: Mapping[str, Any],
        depth_heads: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Write the per-image rows, the head (``head`` layers, or per-depth ``depth_heads`` = (weight,
        bias)) and the attrs."""
        h5 = self.handle
        h5.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
        h5.create_dataset("pred", data=pred)
        h5.create_dataset("index", data=np.arange(len(labels), dtype=np.int64))
        h5.create_dataset("order_in_class", data=order_in_class)
        if depth_heads is not None:
            h5.create_dataset("head/depths/weight", data=np.asarray(depth_heads[0], dtype=np.float64))
            h5.create_dataset("head/depths/bias", data=np.asarray(depth_heads[1], dtype=np.float64))
        elif len(head) == 1:
            h5.create_dataset("head/weight", data=head[0][0])
            h5.create_dataset("head/bias", data=head[0][1])
        else:
            for k, (weight, bias) in enumerate(head):
                h5.create_dataset(f"head/layers/{k}/weight", data=weight)
                h5.create_dataset(f"head/layers/{k}/bias", data=bias)
        for key in ("dataset", "model", "T", "n"):
            h5.attrs[key] = attrs[key]
        h5.attrs["class_names"] = encode_class_names(class_names)
        for key in ("model_checksum", "data_checksum"):
            h5.attrs[key] = attrs[key]
        if "probes_checksum" in attrs:
            h5.attrs["probes_checksum"] = attrs["probes_checksum"]


# ---------------------------------------------------------------------------------------------------------
# pairs.h5 (and its shards)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Pairs(_Artifact):
    """``pairs.h5`` or one shard of it (ARCHITECTURE "Pairwise"): ``/expansive`` (a group with attrs value,
    i, j, t_star), ``/E/value|pair|t_star``, ``/E_mean/value|pair``, ``/depth_min/value|pair``,
    ``/nearest/index|distance``, optionally ``/close/value|pair`` (the close pairs, sorted, with attr
    ``bound``: every different-class pair left off has its reduced distance ≥ bound; absent in files
    written before the list existed, read as no list); attrs ``C``, ``N``, ``T`` (the number of depths
    minus one), ``n_shards``,
    ``labels`` ("true" or "predicted"), ``first_depth`` (the model depth of depth index 0: 1 under a reading
    with ``depths: blocks``, method §3.4; 0 when absent), ``temperature`` (τ of p_t = softmax(z_t/τ); 1 when
    absent) and, for a shard file only, ``shard``, ``start``, ``stop`` (its rows of the pair matrix).
    """

    FORMAT_VERSION: ClassVar[int] = 1
    DATASETS: ClassVar[dict[str, str]] = {
        "E/value": "E",
        "E/pair": "E_pair",
        "E/t_star": "E_t_star",
        "E_mean/value": "E_mean",
        "E_mean/pair": "E_mean_pair",
        "depth_min/value": "depth_min",
        "depth_min/pair": "depth_min_pair",
        "nearest/index": "nn_index",
        "nearest/distance": "nn_distance",
    }

    result: Any  # resdyn.distances.PairwiseResult
    labels: str = "true"
    first_depth: int = 0
    temperature: float = 1.0
    shard: int | None = None
    start: int | None = None
    stop: int | None = None
    path: str | None = None

    def save(self, path: PathLike) -> None:
        r = self.result
        with _write_h5(path, self.FORMAT_VERSION) as handle:
            group = handle.create_group("expansive")
            group.attrs["value"] = float(r.expansive)
            group.attrs["i"] = int(r.expansive_pair[0])
            group.attrs["j"] = int(r.expansive_pair[1])
            group.attrs["t_star"] = int(r.expansive_t_star)
            for key, name in self.DATASETS.items():
                handle.create_dataset(key, data=np.asarray(getattr(r, name)))
            if math.isfinite(r.close_bound):
                close = handle.create_group("close")
                close.create_dataset("value", data=np.asarray(r.close_value, np.float64))
                close.create_dataset("pair", data=np.asarray(r.close_pair, np.int64).reshape(-1, 2))
                close.attrs["bound"] = float(r.close_bound)
            handle.attrs["C"] = int(r.E.shape[0])
            handle.attrs["N"] = int(r.nn_index.shape[1])
            handle.attrs["T"] = int(r.nn_index.shape[0] - 1)
            handle.attrs["n_shards"] = int(r.n_shards)
            handle.attrs["labels"] = self.labels
            handle.attrs["first_depth"] = int(self.first_depth)
            handle.attrs["temperature"] = float(self.temperature)
            if self.shard is not None:
                handle.attrs.update(shard=self.shard, start=self.start, stop=self.stop)

    @classmethod
    def load(cls, path: PathLike, *, shard: bool = False) -> Pairs:
        """Read and check a gathered file, or a shard file (``shard=True``: ``start``/``stop`` required)."""
        from resdyn.distances import PairwiseResult

        with open_h5(path, required=[*cls.DATASETS, "expansive"]) as handle:
            _check_version(path, handle, cls.FORMAT_VERSION)
            group = handle["expansive"]
            _require_attrs(path, group.attrs, ("value", "i", "j", "t_star"), "/expansive ")
            arrays = {name: _read(path, handle, key) for key, name in cls.DATASETS.items()}
            attrs = {key: _plain(value) for key, value in handle.attrs.items()}
            if shard:
                _require_attrs(path, attrs, ("start", "stop"), "pairwise shard ")
            if "close" in handle:
                _require_attrs(path, handle["close"].attrs, ("bound",), "/close ")
                arrays |= {
                    "close_value": _read(path, handle, "close/value", np.float64),
                    "close_pair": _read(path, handle, "close/pair", np.int64),
                    "close_bound": float(handle["close"].attrs["bound"]),
                }
            result = PairwiseResult(
                expansive=float(group.attrs["value"]),
                expansive_pair=np.array([group.attrs["i"], group.attrs["j"]], np.int64),
                expansive_t_star=int(group.attrs["t_star"]),
                n_shards=int(attrs.get("n_shards", 1)),
                **arrays,
            )
        n_cls, n_images, depths = result.E.shape[0], result.nn_index.shape[1], result.nn_index.shape[0]
        expected = {
            "E/value": (n_cls, n_cls),
            "E/pair": (n_cls, n_cls, 2),
            "E/t_star": (n_cls, n_cls),
            "E_mean/value": (n_cls, n_cls),
            "E_mean/pair": (n_cls, n_cls, 2),
            "depth_min/value": (depths,),
            "depth_min/pair": (depths, 2),
            "nearest/distance": (depths, n_images),
        }
        for key, shape in expected.items():
            _check_shape(path, key, arrays[cls.DATASETS[key]], shape)
        if "close_value" in arrays:
            listed = result.close_value.shape[0]
            _check_shape(path, "close/value", result.close_value, (listed,))
            _check_shape(path, "close/pair", result.close_pair, (listed, 2))
            pair = result.close_pair
            if listed and not ((0 <= pair[:, 0]) & (pair[:, 0] < pair[:, 1]) & (pair[:, 1] < n_images)).all():
                raise InputError(f"{path}: 'close/pair' holds pairs outside 0 <= i < j < N = {n_images}")
            if not (math.isfinite(result.close_bound) and (result.close_value < result.close_bound).all()):
                raise InputError(
                    f"{path}: 'close' lists values at or above its bound {result.close_bound!r} "
                    "(or the bound is not finite)"
                )
        labels = str(attrs.get("labels", "true"))
        # Older files spelled the predicted-label source "pred".
        labels = "predicted" if labels == "pred" else labels
        span = {k: (int(attrs[k]) if k in attrs else None) for k in ("shard", "start", "stop")}
        view = {
            "first_depth": int(attrs.get("first_depth", 0)),
            "temperature": float(attrs.get("temperature", 1.0)),
        }
        return cls(result, labels, **view, **span, path=str(path))


# ---------------------------------------------------------------------------------------------------------
# shadowing.h5, its shards and shadowing_curve.csv
# ---------------------------------------------------------------------------------------------------------
@dataclass
class ShadowingShard:
    """One shard file: the pseudo-orbits starting at images ``start..stop-1`` (``/orbits`` (M, D) int64,
    ``/hops`` (M, D−1) float64) and their ``/epsilon`` (M,) float64 and ``/shadow_image`` (M,) int64;
    attrs ``start``, ``stop``, ``N`` (the number of orbits over all shards), ``shard``, ``n_shards``."""

    FORMAT_VERSION: ClassVar[int] = 2
    KEYS: ClassVar[tuple[str, ...]] = ("orbits", "hops", "epsilon", "shadow_image")

    start: int
    stop: int
    orbits: np.ndarray
    hops: np.ndarray
    epsilon: np.ndarray
    shadow_image: np.ndarray
    N: int
    shard: int = 0
    n_shards: int = 1

    def save(self, path: PathLike) -> None:
        with _write_h5(path, self.FORMAT_VERSION) as handle:
            for key in self.KEYS:
                handle.create_dataset(key, data=getattr(self, key))
            handle.attrs.update(
                start=self.start, stop=self.stop, N=self.N, shard=self.shard, n_shards=self.n_shards
            )

    @classmethod
    def load(cls, path: PathLike) -> ShadowingShard:
        """Read and check that every array has one row per orbit ``start..stop-1``."""
        with open_h5(path, required=cls.KEYS) as handle:
            _check_version(path, handle, cls.FORMAT_VERSION)
            _require_attrs(path, handle.attrs, ("start", "stop", "N"), "shadowing shard ")
            attrs = {
                key: int(_plain(handle.attrs[key]))
                for key in ("start", "stop", "N", "shard", "n_shards")
                if key in handle.attrs
            }
            arrays = {key: _read(path, handle, key) for key in cls.KEYS}
        rows = attrs["stop"] - attrs["start"]
        depths = arrays["orbits"].shape[1] if arrays["orbits"].ndim == 2 else -1
        for key, shape in (
            ("orbits", (rows, depths)),
            ("hops", (rows, depths - 1)),
            ("epsilon", (rows,)),
            ("shadow_image", (rows,)),
        ):
            _check_shape(path, key, arrays[key], shape)
        return cls(**arrays, **attrs)


@dataclass
class Shadowing(_Artifact):
    """``shadowing.h5``: ``/orbits`` (N, T+1) int64, ``/hops`` (N, T) float64, ``/delta`` = max_t hops,
    ``/epsilon`` (N,) float64, ``/shadow_image`` (N,) int64; attrs ``N``, ``T`` and the summaries
    ``best_tracing``, ``independent`` and ``curve`` as JSON strings (:func:`resdyn.shadowing.best_tracing`,
    :func:`resdyn.shadowing.independent_pairing`, :func:`resdyn.shadowing.shadowing_curve`), plus any extra
    ``attrs`` (a reading's ``first_depth``: the model depth of orbit position 0)."""

    FORMAT_VERSION: ClassVar[int] = 1
    KEYS: ClassVar[tuple[str, ...]] = ("orbits", "hops", "delta", "epsilon", "shadow_image")
    SUMMARIES: ClassVar[tuple[str, ...]] = ("best_tracing", "independent", "curve")

    orbits: np.ndarray
    hops: np.ndarray
    epsilon: np.ndarray
    shadow_image: np.ndarray
    best_tracing: dict[str, Any] | None = None
    curve: dict[str, Any] | None = None
    independent: dict[str, Any] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def delta(self) -> np.ndarray:
        return self.hops.max(axis=1)

    def summaries(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(best_tracing, independent, curve); a file written without one raises InputError naming it
        (shadowing.h5 files from before readings existed lack ``independent``: rerun their gather)."""
        for key in self.SUMMARIES:
            if getattr(self, key) is None:
                raise InputError(f"{self.path}: missing attribute '{key}'")
        return self.best_tracing, self.independent, self.curve

    def save(self, path: PathLike) -> None:
        orbits = np.asarray(self.orbits, dtype=np.int64)
        hops = np.asarray(self.hops, dtype=np.float64)
        epsilon = np.asarray(self.epsilon, dtype=np.float64)
        shadow_image = np.asarray(self.shadow_image, dtype=np.int64)
        n_orbits = orbits.shape[0]
        if orbits.ndim != 2 or hops.shape != (n_orbits, orbits.shape[1] - 1) or hops.shape[1] < 1:
            raise InputError(
                f"orbits {orbits.shape} and hops {hops.shape} must be (N, T+1) and (N, T), T >= 1"
            )
        if epsilon.shape != (n_orbits,) or shadow_image.shape != (n_orbits,):
            raise InputError(
                f"epsilon {epsilon.shape} and shadow_image {shadow_image.shape} must be ({n_orbits},)"
            )
        attrs = dict(self.attrs)
        for key in self.SUMMARIES:
            if getattr(self, key) is not None:
                attrs[key] = json.dumps(getattr(self, key))
        with _write_h5(path, self.FORMAT_VERSION) as handle:
            handle.create_dataset("orbits", data=orbits)
            handle.create_dataset("hops", data=hops)
            handle.create_dataset("delta", data=hops.max(axis=1))
            handle.create_dataset("epsilon", data=epsilon)
            handle.create_dataset("shadow_image", data=shadow_image)
            handle.attrs["N"] = n_orbits
            handle.attrs["T"] = orbits.shape[1] - 1
            for key, value in attrs.items():
                handle.attrs[key] = value

    @classmethod
    def load(cls, path: PathLike) -> Shadowing:
        """Read and check shapes, /delta = max_t /hops, finite hops and ε."""
        with open_h5(path, required=cls.KEYS) as handle:
            _check_version(path, handle, cls.FORMAT_VERSION)
            data = {key: _read(path, handle, key) for key in cls.KEYS}
            attrs = {key: _plain(value) for key, value in handle.attrs.items() if key != _FORMAT_ATTR}
        orbits, hops = data["orbits"], data["hops"]
        n_orbits = orbits.shape[0] if orbits.ndim == 2 else -1
        expected = {
            "orbits": (n_orbits, hops.shape[-1] + 1 if hops.ndim == 2 else -1),
            "hops": (n_orbits, orbits.shape[-1] - 1),
            "delta": (n_orbits,),
            "epsilon": (n_orbits,),
            "shadow_image": (n_orbits,),
        }
        for key, shape in expected.items():
            _check_shape(path, f"/{key}", data[key], shape)
        if not np.array_equal(data["delta"], hops.max(axis=1)):
            raise InputError(f"{path}: /delta is not the row maximum of /hops")
        for key in ("hops", "epsilon"):
            _check_finite(path, f"/{key}", data[key])
        summaries = {key: json.loads(attrs.pop(key)) if key in attrs else None for key in cls.SUMMARIES}
        return cls(
            orbits.astype(np.int64),
            hops.astype(np.float64),
            data["epsilon"].astype(np.float64),
            data["shadow_image"].astype(np.int64),
            attrs=attrs,
            path=str(path),
            **summaries,
        )


CURVE_COLUMNS = ["epsilon", "delta_star", "ratio"]


def save_shadowing_curve(path: PathLike, curve: Any) -> None:
    """Write ``shadowing_curve.csv`` (a DataFrame epsilon, delta_star, ratio) at full precision."""
    if list(curve.columns) != CURVE_COLUMNS:
        raise InputError(f"curve columns {list(curve.columns)} must be {CURVE_COLUMNS}")
    with atomic_output(path) as tmp:
        curve.to_csv(tmp, index=False, float_format="%.17g")


# ---------------------------------------------------------------------------------------------------------
# sample_size.csv (method §3.6)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _CsvTable(_Artifact):
    """A CSV result table (``table``, a pandas DataFrame): written at full float precision (``%.17g``,
    read back bit for bit) with empty cells for NaN, and checked by the subclass's ``_check(where)`` on
    both save and load."""

    table: Any  # pandas.DataFrame
    path: str | None = None
    # Columns that files of an earlier version hold and this one no longer writes: dropped on load.
    RETIRED_COLUMNS: ClassVar[tuple[str, ...]] = ()

    def _check(self, where: str) -> None:
        raise NotImplementedError

    def save(self, path: PathLike) -> None:
        self._check(str(path))
        with atomic_output(path) as tmp:
            self.table.to_csv(tmp, index=False, float_format="%.17g", na_rep="")

    @classmethod
    def load(cls, path: PathLike) -> Any:
        """Read the CSV and check it (the subclass's ``_check``); a missing or unreadable file is an
        InputError naming it."""
        import pandas as pd

        if not Path(path).is_file():
            raise InputError(f"{path}: file not found")
        try:
            table = pd.read_csv(path, float_precision="round_trip")
        except (ValueError, pd.errors.ParserError) as err:
            raise InputError(f"{path}: not a readable CSV ({err})") from None
        table = table.drop(columns=[c for c in cls.RETIRED_COLUMNS if c in table.columns])
        artifact = cls(table, str(path))
        artifact._check(str(path))
        return artifact


@dataclass
class SampleSizeTable(_CsvTable):
    """``sample_size.csv``: one row per subset, columns :attr:`COLUMNS` = ``n`` (subset size), ``subset``
    (0..B−1), ``g_expansive``, ``pair_i``, ``pair_j`` (its pair, test indices), ``sh_paper``,
    ``orbit_start`` (the best-traced orbit's start, a test index), ``sh_curve``, ``sh_independent``
    (:mod:`resdyn.sample_size`). Floats at full precision (``%.17g``, read back bit for bit); an undefined
    estimate is an empty cell (NaN), an index −1. The largest ``n`` is the whole test set (one row)."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "n",
        "subset",
        "g_expansive",
        "pair_i",
        "pair_j",
        "sh_paper",
        "orbit_start",
        "sh_curve",
        "sh_independent",
    )
    ESTIMATES: ClassVar[tuple[str, ...]] = ("g_expansive", "sh_paper", "sh_curve", "sh_independent")
    INTEGERS: ClassVar[tuple[str, ...]] = ("n", "subset", "pair_i", "pair_j", "orbit_start")

    def _check(self, where: str) -> None:
        table = self.table
        if list(table.columns) != list(self.COLUMNS):
            raise InputError(f"{where}: columns {list(table.columns)}, expected {list(self.COLUMNS)}")
        if not len(table):
            raise InputError(f"{where}: no rows")
        for column in self.INTEGERS:
            values = np.asarray(table[column])
            if not np.issubdtype(values.dtype, np.integer):
                raise InputError(f"{where}: column '{column}' must hold integers, got {values.dtype}")
        for column in self.ESTIMATES:
            values = np.asarray(table[column], dtype=np.float64)
            bad = np.flatnonzero(np.isinf(values) | (values < 0))
            if bad.size:
                raise InputError(
                    f"{where}: '{column}' = {float(values[bad[0]])!r} in row {bad[0]}; expected >= 0"
                )
        n = np.asarray(table["n"])
        if n.min() < 2 or (np.asarray(table["subset"]) < 0).any():
            raise InputError(f"{where}: sizes must be >= 2 and subset numbers >= 0")
        if int((n == n.max()).sum()) != 1:
            raise InputError(
                f"{where}: the largest size n = {n.max()} (the whole test set) must have one row"
            )


# ---------------------------------------------------------------------------------------------------------
# robustness.csv (issue 27; docs/robustness.md)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class RobustnessTable(_CsvTable):
    """``robustness.csv`` of a trained network: one row per measure and level, the columns of
    :attr:`COLUMNS` (written by :func:`resdyn.robustness.measure_robustness`). Floats at full precision
    (``%.17g``); a measure's unused cell is empty (NaN); a minimal perturbation the attack never found
    is ``inf``. Every row records the same ``seed`` and ``n_images``. Files written before 2026-12-06 also
    hold each measure's wall-clock ``seconds`` (now in the job's log); it is dropped on load."""

    RETIRED_COLUMNS: ClassVar[tuple[str, ...]] = ("seconds",)

    MEASURES: ClassVar[tuple[str, ...]] = (
        "clean",
        "noise",
        "pgd_linf",
        "pgd_l2",
        "minimal_l2",
        "minimal_linf",
    )
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "measure",  # one of MEASURES
        "level",  # σ (noise), ε (pgd); NaN for clean and minimal
        "accuracy",  # clean / noise / pgd (cumulative over the ε grid); NaN for minimal
        "accuracy_single_run",  # pgd: this ε's attack alone; else = accuracy
        "value",  # minimal: median distance over all images (misclassified = 0); NaN otherwise
        "value_correct",  # minimal: median distance over the correctly classified images
        "n_images",
        "n_failed",  # minimal: images the attack did not fool (distance inf); 0 otherwise
        "attack",  # e.g. "foolbox 3.3.4 LinfPGD steps=10 rel_stepsize=0.25"
        "seed",
    )

    def _check(self, where: str) -> None:
        COLUMNS, MEASURES = self.COLUMNS, self.MEASURES
        table = self.table
        if list(table.columns) != list(COLUMNS):
            raise InputError(f"{where}: columns {list(table.columns)}, expected {list(COLUMNS)}")
        if not len(table):
            raise InputError(f"{where}: no rows")
        unknown = sorted(set(table["measure"]) - set(MEASURES))
        if unknown:
            raise InputError(f"{where}: measure(s) {unknown}; expected some of {list(MEASURES)}")
        if int((table["measure"] == "clean").sum()) != 1:
            raise InputError(f"{where}: expected exactly one 'clean' row")
        for column in ("accuracy", "accuracy_single_run"):
            values = np.asarray(table[column], dtype=np.float64)
            bad = np.flatnonzero(~np.isnan(values) & ((values < 0) | (values > 1)))
            if bad.size:
                raise InputError(
                    f"{where}: '{column}' = {float(values[bad[0]])!r} in row {bad[0]}; expected in [0, 1]"
                )
        for column in ("seed", "n_images"):
            values = np.asarray(table[column])
            if not np.issubdtype(values.dtype, np.integer) or len(set(values.tolist())) != 1:
                raise InputError(
                    f"{where}: column '{column}' must hold one integer, got {sorted(set(values))}"
                )

    def measures(self) -> dict[str, float]:
        """The network's robustness as named scalars, in row order (for the correlation across runs):
        ``clean_accuracy``, ``noise_accuracy@σ``, ``pgd_linf_accuracy@ε``, ``pgd_l2_accuracy@ε`` (σ, ε > 0
        only: level 0 is the clean accuracy) and ``minimal_l2_median`` / ``minimal_linf_median`` (the
        median over all images, misclassified ones at 0)."""
        out: dict[str, float] = {}
        for row in self.table.itertuples(index=False):
            if row.measure == "clean":
                out["clean_accuracy"] = float(row.accuracy)
            elif row.measure in ("noise", "pgd_linf", "pgd_l2") and row.level > 0:
                out[f"{row.measure}_accuracy@{row.level:g}"] = float(row.accuracy)
            elif row.measure.startswith("minimal_"):
                out[f"{row.measure}_median"] = float(row.value)
        return out


# ---------------------------------------------------------------------------------------------------------
# JSON artifacts: lipschitz.json, constants.json, metrics.json
# ---------------------------------------------------------------------------------------------------------
@dataclass
class JsonArtifact(_Artifact):
    """A JSON result file: a top-level object written with sorted keys, indent 2 and no NaN
    (:func:`resdyn.io.write_json`); ``name`` is what error messages cite (the path, or a description of
    an in-memory dict). Subclasses list the keys ``load`` requires in ``REQUIRED``."""

    REQUIRED: ClassVar[tuple[str, ...]] = ()

    data: dict[str, Any]
    name: str = "<memory>"

    def save(self, path: PathLike) -> None:
        write_json(path, self.data)

    @classmethod
    def load(cls, path: PathLike) -> JsonArtifact:
        data = read_json(path)
        if not isinstance(data, Mapping):
            raise InputError(f"{path}: expected a JSON object at the top level")
        artifact = cls(dict(data), str(path))
        for key in cls.REQUIRED:
            artifact.get(key)
        return artifact

    @classmethod
    def from_source(cls, source: Mapping[str, Any] | PathLike, name: str) -> JsonArtifact:
        """A path is loaded; a dict already in memory is taken as it is, cited as ``name``."""
        return cls(dict(source), name) if isinstance(source, Mapping) else cls.of(source)

    def get(self, dotted: str) -> Any:
        """``data[a][b]...`` for ``dotted`` = "a.b..."; a missing key raises InputError naming it."""
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise InputError(f"{self.name}: missing key '{dotted}'")
            node = node[part]
        return node

    def number(self, dotted: str, integer: bool = False) -> int | float | None:
        """A number (None for JSON null) at ``dotted``; anything else is an InputError naming it."""
        value = self.get(dotted)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{self.name}: key '{dotted}' must be a number or null, got {value!r}")
        if integer:
            if float(value) != int(value):
                raise InputError(f"{self.name}: key '{dotted}' must be an integer, got {value!r}")
            return int(value)
        return float(value)


class Metrics(JsonArtifact):
    """``metrics.json`` (Table 1): precision, recall, f1 (macro), accuracy, loss, n_test, ``versions``
    (python, torch, numpy, cvxpy, scs, snakemake: :mod:`resdyn.provenance`) and ``numerics``, the record
    of the model's training (:func:`resdyn.numerics.record`; absent for models saved without one)."""


class Lipschitz(JsonArtifact):
    """``lipschitz.json``: fc, g, certified, softmax_factor, lipsdp_neuron, lipsdp_layer, spectral_product,
    jacobian_lower and details (:func:`resdyn.lipschitz.head_lipschitz`; files written before 2026-12-05
    also hold the job's seconds)."""

    REQUIRED = ("fc", "g")

    @property
    def certified(self) -> bool:
        """Whether ``fc`` is a certified upper bound; files written before the flag existed held only
        certified values."""
        return bool(self.data.get("certified", True))


class SampleSizeSummary(JsonArtifact):
    """``sample_size.json`` (method §3.6, :func:`resdyn.sample_size.summarize`): ``N``, ``band`` (the
    quantiles), ``sizes`` (per size n: subsets and, per estimate, {median, low, high, n_defined}),
    ``slope`` (per estimate: the log-log slope of the median against n, {value, intercept, sizes,
    undefined_reason}), ``reference`` {n, available, undefined_reason, and the size's entry when
    available}, ``reading`` and ``settings``."""

    REQUIRED = ("N", "sizes", "slope", "reference.n", "reference.available")

    def at_reference(self, estimate: str) -> dict[str, Any] | None:
        """{median, low, high, n_defined} of ``estimate`` at the reference size; None when the test set is
        smaller than it (:meth:`reference_reason` says so)."""
        if not self.get("reference.available"):
            return None
        found = self.get(f"reference.{estimate}")
        for key in ("median", "low", "high"):
            self.number(f"reference.{estimate}.{key}")
        return dict(found)

    def reference_reason(self) -> str | None:
        """Why there is no value at the reference size (None when there is)."""
        reason = self.data.get("reference", {}).get("undefined_reason")
        return None if reason is None else str(reason)


class Constants(JsonArtifact):
    """``constants.json`` (method §7): g_expansive, g_shadowing {paper, curve}, lip, t_g_lower, versions;
    image indices are test indices. Undefined values are null with an ``undefined_reason``, never NaN."""

    @property
    def lip_certified(self) -> bool:
        """Whether ``lip.fc`` (and so ``t_g_lower``) rests on a certified Lipschitz upper bound."""
        return bool(self.data.get("lip", {}).get("certified", True))

    def undefined_reason(self, dotted: str) -> str | None:
        """The ``undefined_reason`` that explains a null at ``dotted``: the one in the value's own object
        (``g_expansive``, ``t_g_lower``) or in the object above it (``g_shadowing.paper`` for its
        epsilon); None when there is none."""
        parts = dotted.split(".")
        for depth in (len(parts) - 1, len(parts) - 2):
            try:
                node = self.get(".".join(parts[:depth])) if depth > 0 else self.data
            except InputError:
                continue
            if isinstance(node, Mapping) and node.get("undefined_reason"):
                return str(node["undefined_reason"])
        return None
