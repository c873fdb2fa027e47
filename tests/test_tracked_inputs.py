"""The user's data files as inputs by content (resdyn.data.source_content; docs/reliability.md): the digest
follows the bytes, not the path or the mtime, and a torchvision download does not count as a change.
Fast and offline: nothing here reads a dataset."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from resdyn.data import (
    IDX_FILES,
    expected_files,
    source_content,
    source_digest,
    source_files,
    write_source_record,
)
from resdyn.io import InputError

MNIST = {"source": "torchvision", "name": "MNIST"}


def _npz(path: Path, labels: list[int]) -> Path:
    np.savez(
        path, x_train=np.zeros((3, 8, 8), np.uint8), y_train=np.array(labels), x_test=np.zeros((2, 8, 8))
    )
    return path


def test_digest_follows_the_bytes_not_the_path_or_mtime(tmp_path):
    one = _npz(tmp_path / "one.npz", [0, 1, 2])
    first = source_digest(source_files({"source": "npz", "path": str(one)}, tmp_path))
    os.utime(one, (1, 1))
    assert source_digest({"npz": one}) == first
    copy = tmp_path / "elsewhere" / "copy.npz"
    copy.parent.mkdir()
    shutil.copyfile(one, copy)
    assert source_digest({"npz": copy}) == first
    _npz(one, [2, 1, 0])
    assert source_digest({"npz": one}) != first


def test_idx_digest_covers_all_four_files_by_their_role(tmp_path):
    stems = [stem for split in ("train", "test") for stem in IDX_FILES[split]]
    for stem in stems:
        (tmp_path / stem).write_bytes(stem.encode())
    files = source_files({"source": "idx", "path": str(tmp_path)}, "unused")
    assert sorted(files) == sorted(stems)
    before = source_digest(files)
    (tmp_path / stems[1]).write_bytes(b"other labels")
    assert source_digest(files) != before


def test_bundled_sources_have_no_files_and_a_missing_npz_is_named(tmp_path):
    assert source_files({"source": "sklearn-digits"}, tmp_path) == {}
    with pytest.raises(InputError, match="no.npz: npz file not found"):
        source_files({"source": "npz", "path": str(tmp_path / "no.npz")}, tmp_path)


def test_cached_checksum_is_used_while_size_and_mtime_stay(tmp_path):
    """The cache is keyed by (path, size, mtime_ns): a file rewritten with the same size and mtime would
    not be seen, any real edit changes the mtime. A planted entry proves the cache is read."""
    data = _npz(tmp_path / "data.npz", [0, 1, 2])
    cache = tmp_path / "cache.json"
    honest = source_digest({"npz": data}, cache)
    entries = json.loads(cache.read_text())
    assert list(entries.values()) == [hashlib.sha256(data.read_bytes()).hexdigest()]
    cache.write_text(json.dumps({key: "0" * 64 for key in entries}))
    assert source_digest({"npz": data}, cache) != honest
    os.utime(data, ns=(1, 1))  # another mtime: hashed again
    assert source_digest({"npz": data}, cache) == honest
    cache.write_text("not json")
    assert source_digest({"npz": data}, cache) == honest


def _mnist_raw(root: Path) -> list[Path]:
    folder, files, _ = expected_files("MNIST", MNIST, root)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name, _ in files]
    for path in paths:
        path.write_bytes(path.name.encode())
    return paths


def test_torchvision_download_is_not_a_change_but_an_edit_is(tmp_path):
    """Before the download there is nothing to digest: the job runs with content "download" and records
    the digest of what it read; those same files then keep "download", edited files give their digest,
    and files deleted after the run keep the recorded value (torchvision fetches the same files again)."""
    root, record = tmp_path / "downloads", tmp_path / "MNIST.source.json"
    assert source_files(MNIST, root) is None
    assert source_content(MNIST, root, record) == "download"
    raw = _mnist_raw(root)  # what the job's download leaves
    write_source_record(record, MNIST, root, "download")
    assert json.loads(record.read_text())["files"] == sorted(p.name for p in raw)
    assert source_content(MNIST, root, record) == "download"
    raw[1].write_bytes(b"edited labels")
    edited = source_content(MNIST, root, record)
    assert edited == source_digest(source_files(MNIST, root))
    write_source_record(record, MNIST, root, edited)  # the rerun's record
    for path in raw:
        path.unlink()
    assert source_content(MNIST, root, record) == edited


def test_npz_content_ignores_a_record_of_other_bytes(tmp_path):
    entry = {"source": "npz", "path": str(_npz(tmp_path / "d.npz", [0, 1, 2]))}
    record = tmp_path / "d.source.json"
    first = source_content(entry, tmp_path, record)
    write_source_record(record, entry, tmp_path, first)
    assert source_content(entry, tmp_path, record) == first
    _npz(tmp_path / "d.npz", [1, 2, 0])
    assert source_content(entry, tmp_path, record) not in (first, None)
    record.write_text("{broken")
    assert source_content(entry, tmp_path, record) == source_digest(source_files(entry, tmp_path))
