"""Tests of the ``idx`` dataset source (resdyn/data.py, resdyn/config.py): a folder of the four MNIST-format
files, plain or gzipped, read by torchvision's idx readers. The files are written here, byte by byte, from
the idx format's definition; nothing depends on an installed dataset."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from resdyn.artifacts import DatasetFile
from resdyn.config import check_entries
from resdyn.data import IDX_FILES, read_dataset
from resdyn.io import InputError
from resdyn.schema import SCHEMA_PATH
from resdyn.stages import prepare_data

IMAGES_TRAIN, LABELS_TRAIN = IDX_FILES["train"]
IMAGES_TEST, LABELS_TEST = IDX_FILES["test"]


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An idx file of unsigned bytes: magic 0x000008{ndim}, the dimensions as big-endian uint32, the data."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x00000800 + array.ndim if magic is None else magic
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape) + array.tobytes()


def tiny_arrays(seed: int = 0, n_train: int = 12, n_test: int = 7, classes: int = 4):
    rng = np.random.default_rng(seed)
    return {
        IMAGES_TRAIN: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        LABELS_TRAIN: np.arange(n_train, dtype=np.uint8) % classes,
        IMAGES_TEST: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        LABELS_TEST: (np.arange(n_test, dtype=np.uint8) * 3) % classes,
    }


def write_idx_folder(folder: Path, arrays: dict, gz: bool | dict = False) -> Path:
    """The four files of ``arrays`` in ``folder``; ``gz`` gzips all of them, or those it maps to True."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = array if isinstance(array, bytes) else idx_bytes(array)
        zipped = gz if isinstance(gz, bool) else gz.get(name, False)
        if zipped:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize(
    "gz", [False, True, {IMAGES_TRAIN: True, LABELS_TEST: True}], ids=["plain", "gz", "mixed"]
)
def test_idx_folder_reads_like_the_files_say(tmp_path, gz):
    arrays = tiny_arrays()
    folder = write_idx_folder(tmp_path / "raw", arrays, gz)
    out = tmp_path / "mine.h5"
    prepare_data("mine", {"source": "idx", "path": str(folder)}, out, tmp_path)
    for split, (image_name, label_name) in IDX_FILES.items():
        images, labels, class_names = DatasetFile.load_split(out, split)
        source = arrays[image_name]
        # 28×28 zero-padded by 2 px, grey repeated to 3 channels; source order kept
        expected = np.zeros((len(source), 3, 32, 32), np.uint8)
        expected[:, :, 2:30, 2:30] = source[:, None]
        np.testing.assert_array_equal(images, expected)
        np.testing.assert_array_equal(labels, arrays[label_name].astype(np.int64))
        assert class_names == ["0", "1", "2", "3"]
    dataset = read_dataset("mine", {"source": "idx", "path": str(folder)}, tmp_path)
    assert dataset.source == "idx" and str(folder) in dataset.origin
    assert ("t10k-images-idx3-ubyte.gz" in dataset.origin) == (gz is True)


def test_idx_class_names_and_max_options(tmp_path):
    folder = write_idx_folder(tmp_path / "raw", tiny_arrays())
    entry = {"source": "idx", "path": str(folder), "class_names": ["a", "b", "c", "d"], "max_train": 5}
    dataset = read_dataset("mine", entry, tmp_path)
    assert dataset.class_names == ["a", "b", "c", "d"]
    assert len(dataset.splits["train"][0]) == 5 and len(dataset.splits["test"][0]) == 7
    with pytest.raises(InputError, match="'class_names' lists 3 names but the source has 4 classes"):
        read_dataset("mine", {**entry, "class_names": ["a", "b", "c"]}, tmp_path)


def test_plain_file_wins_over_its_gz_twin(tmp_path):
    arrays = tiny_arrays()
    folder = write_idx_folder(tmp_path / "raw", arrays)
    other = tiny_arrays(seed=1)[IMAGES_TEST]
    (folder / f"{IMAGES_TEST}.gz").write_bytes(gzip.compress(idx_bytes(other)))
    dataset = read_dataset("mine", {"source": "idx", "path": str(folder)}, tmp_path)
    np.testing.assert_array_equal(dataset.splits["test"][0][:, 0, 2:30, 2:30], arrays[IMAGES_TEST])


def _bad(arrays: dict, name: str, data: bytes) -> dict:
    return {**arrays, name: data}


GOOD = tiny_arrays()
BAD_FILES = [
    (
        "labels magic on images",
        _bad(GOOD, IMAGES_TRAIN, idx_bytes(GOOD[IMAGES_TRAIN], magic=0x00000801)),
        IMAGES_TRAIN,
        r"wrong magic number 0x00000801; idx images start with 0x00000803",
    ),
    (
        "int32 labels",
        _bad(GOOD, LABELS_TEST, idx_bytes(GOOD[LABELS_TEST], magic=0x00000C01)),
        LABELS_TEST,
        r"wrong magic number 0x00000C01; idx labels start with 0x00000801",
    ),
    ("not idx at all", _bad(GOOD, IMAGES_TEST, b"PK\x03\x04 a zip"), IMAGES_TEST, "wrong magic number"),
    ("empty file", _bad(GOOD, LABELS_TRAIN, b""), LABELS_TRAIN, "0 bytes, too short"),
    (
        "truncated images",
        _bad(GOOD, IMAGES_TRAIN, idx_bytes(GOOD[IMAGES_TRAIN])[:-100]),
        IMAGES_TRAIN,
        r"truncated: the header declares 12 × 28 × 28 images \(9424 bytes\) but the file holds 9324 bytes",
    ),
    (
        "truncated header",
        _bad(GOOD, IMAGES_TEST, idx_bytes(GOOD[IMAGES_TEST])[:10]),
        IMAGES_TEST,
        r"truncated idx header \(10 of 16 bytes\)",
    ),
    (
        "trailing bytes",
        _bad(GOOD, LABELS_TEST, idx_bytes(GOOD[LABELS_TEST]) + b"\x00\x01"),
        LABELS_TEST,
        "2 bytes after the 7 labels",
    ),
    (
        "count mismatch",
        _bad(GOOD, LABELS_TRAIN, GOOD[LABELS_TRAIN][:-1]),
        IMAGES_TRAIN,
        f"holds 12 images but .*{LABELS_TRAIN}(.gz)? holds 11 labels",
    ),
    (
        "no images",
        {**GOOD, IMAGES_TEST: np.zeros((0, 28, 28), np.uint8), LABELS_TEST: np.zeros(0, np.uint8)},
        IMAGES_TEST,
        "holds no images",
    ),
]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("case, arrays, culprit, message", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_idx_files_are_named(tmp_path, case, arrays, culprit, message, gz):
    folder = write_idx_folder(tmp_path / "raw", arrays, gz)
    with pytest.raises(InputError, match=message) as err:
        read_dataset("mine", {"source": "idx", "path": str(folder)}, tmp_path)
    assert str(folder / (f"{culprit}.gz" if gz else culprit)) in str(err.value)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"not gzip at all", "not a readable gzip file"),
        (gzip.compress(idx_bytes(GOOD[IMAGES_TRAIN]))[:-20], "not a readable gzip file"),
    ],
    ids=["not gzip", "cut gzip"],
)
def test_bad_gzip_is_named(tmp_path, data, message):
    folder = write_idx_folder(tmp_path / "raw", {k: v for k, v in GOOD.items() if k != IMAGES_TRAIN})
    (folder / f"{IMAGES_TRAIN}.gz").write_bytes(data)
    with pytest.raises(InputError, match=message) as err:
        read_dataset("mine", {"source": "idx", "path": str(folder)}, tmp_path)
    assert f"{IMAGES_TRAIN}.gz" in str(err.value)


# ---------------------------------------------------------------------------------------------------------
# Parse-time checks (resdyn.config.check_entries) and the schema
# ---------------------------------------------------------------------------------------------------------
def _config(entry: dict) -> dict:
    """The parts of a validated config that check_entries reads for one dataset entry."""
    return {"datasets": {"mine": entry}, "models": {}, "readings": {}, "analysis": {"labels": "true"}}


def test_parse_time_check_accepts_a_complete_folder(tmp_path):
    folder = write_idx_folder(tmp_path / "raw", GOOD, gz={IMAGES_TRAIN: True})
    check_entries(_config({"source": "idx", "path": str(folder)}))


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_parse_time_check_names_the_missing_file(tmp_path, gz):
    folder = write_idx_folder(tmp_path / "raw", {k: v for k, v in GOOD.items() if k != LABELS_TEST}, gz)
    with pytest.raises(InputError) as err:
        check_entries(_config({"source": "idx", "path": str(folder)}))
    text = str(err.value)
    assert text.startswith("config: datasets.mine.path: ")
    assert f"idx file(s) missing: {LABELS_TEST} (or {LABELS_TEST}.gz)" in text
    assert IMAGES_TEST in text  # what the folder does hold


def test_parse_time_check_names_a_missing_folder(tmp_path):
    with pytest.raises(InputError, match=r"datasets.mine.path: .*no/such: idx folder not found"):
        check_entries(_config({"source": "idx", "path": str(tmp_path / "no" / "such")}))
    with pytest.raises(InputError, match="idx folder not found"):
        read_dataset("mine", {"source": "idx", "path": str(tmp_path / "nothing")}, tmp_path)


def test_path_belongs_to_npz_and_idx_only(tmp_path):
    with pytest.raises(InputError, match="key 'path' belongs to source 'npz' or 'idx', not 'sklearn-digits'"):
        check_entries(_config({"source": "sklearn-digits", "path": str(tmp_path)}))
    with pytest.raises(InputError, match="source idx needs a 'path'"):
        read_dataset("mine", {"source": "idx"}, tmp_path)


def test_schema_knows_the_idx_source():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    dataset = schema["$defs"]["dataset"]
    assert "idx" in dataset["properties"]["source"]["enum"]
    assert {"if": {"properties": {"source": {"const": "idx"}}}, "then": {"required": ["path"]}} in dataset[
        "allOf"
    ]
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(
        validator.iter_errors({"datasets": {"f": {"source": "idx", "path": "x"}}, "models": {"r": {}}})
    )
    errors = list(validator.iter_errors({"datasets": {"f": {"source": "idx"}}, "models": {"r": {}}}))
    assert any("'path' is a required property" in e.message for e in errors)


def test_fashion_config_reads_with_the_schema():
    """configs/fashion.yaml: the idx source on Debian's folder, all 10,000 test images (no max_test)."""
    config = yaml.safe_load((SCHEMA_PATH.parent.parent / "configs" / "fashion.yaml").read_text())
    entry = config["datasets"]["fashion"]
    assert entry["source"] == "idx" and entry["path"] == "/usr/share/datasets/fashion-mnist"
    assert "max_test" not in entry and len(entry["class_names"]) == 10
    assert set(config["models"]) == {"resnet18", "resnet50"}
    jsonschema = pytest.importorskip("jsonschema")
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert not list(jsonschema.Draft202012Validator(schema).iter_errors(config))
