"""Small I/O helpers shared by every stage: atomic outputs, JSON, checked HDF5 opening.

Every result file is written under a temporary sibling name and renamed when complete, so an interrupted
job never leaves a file that a later run (or Snakemake) would take as finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import h5py


class InputError(ValueError):
    """Bad input: the message names the file, key or value at fault."""


TEMP_SUFFIX_MAX = len(".tmp-") + 1 + len(str(2**22))
"""Bytes :func:`atomic_output` adds to a file name: a leading dot and ``.tmp-<pid>`` (Linux pids reach
2^22 = 4194304, seven digits). Output names must leave this much room under the file system's 255 bytes."""


def temporary_siblings(path: str | os.PathLike) -> list[Path]:
    """The temporaries :func:`atomic_output` may have left for ``path``: ``.<name>.tmp-<pid>`` beside it."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    prefix = f".{path.name}.tmp-"
    return sorted(
        p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit()
    )


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete every temporary an earlier writer of ``path`` left behind (a job killed by SIGKILL, an OOM
    kill or a wall-time limit never reaches its cleanup) and return them.

    All of them go, not only those of dead processes: a target has one writer at a time (Snakemake runs
    one job per output and its lock refuses a second Snakemake on the same outputs), and a process id
    says nothing on a shared file system where the killed job ran on another node, or after the id was
    reused.
    """
    removed = []
    for stale in temporary_siblings(path):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
            removed.append(stale)
    return removed


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` on success, delete it on error.

    Temporaries of ``path`` left by an earlier, killed writer are removed first
    (:func:`remove_stale_temporaries`), so a rerun leaves no debris."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _check_finite(obj: Any, where: str = "$") -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"non-finite number {obj!r} at {where}; JSON results must be finite or null")
    if isinstance(obj, dict):
        for key, value in obj.items():
            _check_finite(value, f"{where}.{key}")
    elif isinstance(obj, (list, tuple)):
        for k, value in enumerate(obj):
            _check_finite(value, f"{where}[{k}]")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (sorted keys, indent 2); NaN and inf are refused."""
    _check_finite(obj)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a malformed file raises :class:`InputError` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None


def open_h5(path: str | os.PathLike, required: Iterable[str] = ()) -> h5py.File:
    """Open an HDF5 file read-only, checking that every key in ``required`` exists.

    Raises :class:`InputError` naming the file (and the key) when the file is missing, is not HDF5,
    is truncated, or lacks a required dataset or group.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 file ({err})") from None
    for key in required:
        if key not in handle:
            handle.close()
            raise InputError(f"{path}: missing HDF5 key '{key}'")
    return handle


SHA256_CACHE_NAME = "sha256-cache.json"
"""The file, in the data stage's output folder, that caches the SHA-256 of the user's data files by (path,
size, mtime_ns) (:func:`resdyn.data.source_digest`)."""


def file_checksum(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def log_to(path: str | os.PathLike | None) -> Iterator[None]:
    """Send stdout, stderr (tqdm bars, warnings, tracebacks) and ``logging`` to the file ``path``.

    The workflow entry points wrap their one call in this so that every rule's log file holds what the job
    printed; ``None`` leaves the streams alone.
    """
    if path is None:
        yield
        return
    import logging
    import sys
    import traceback

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as handle:
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = handle
        logging.basicConfig(
            stream=handle, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
        )
        try:
            yield
        except BaseException:
            traceback.print_exc(file=handle)
            raise
        finally:
            sys.stdout, sys.stderr = saved
