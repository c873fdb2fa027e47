"""The repository stands alone: nothing tracked names or reads a path outside it, and the tests that need
vendored data run (never skip) in a copy of the tracked files with no sibling folders."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Built from pieces so that this file does not match its own patterns.
_SIB = "sha" + "red"
FORBIDDEN = {
    "a sibling folder": re.compile(re.escape(".." + "/" + _SIB)),
    "the source design notes": re.compile("DES" + "IGN" + r"(\.md|\s*§)"),
    "the paper as a file": re.compile(re.escape("paper" + ".txt")),
    "notes on the authors' code as a file": re.compile(re.escape("authors" + "_code")),
    "external data outside the repository": re.compile(re.escape(_SIB + "/" + "external")),
    "an absolute path on the development machine": re.compile(r"(?:^|[\s\"'`(=:,\[])/" + "work" + "/"),
    "a path component naming the sibling folder": re.compile(r"[\"']" + _SIB + r"[\"']"),
}


def tracked_files() -> list[Path]:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: the tracked files are unknown")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_tracked_file_names_a_path_outside_the_repository():
    findings = []
    for path in tracked_files():
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:  # binary (HDF5/MATLAB data, images)
            continue
        for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            for what, pattern in FORBIDDEN.items():
                if pattern.search(line):
                    findings.append(f"{path.relative_to(ROOT)}:{lineno}: {what}: {line.strip()[:120]}")
    assert not findings, "tracked files refer outside the repository:\n" + "\n".join(findings)


def test_vendored_lipsdp_data_with_origin_and_licence():
    folder = ROOT / "tests" / "data" / "lipsdp"
    for name in ("random_weights.mat", "mnist_weights.mat", "README.md", "LICENSE"):
        assert (folder / name).is_file(), name
    assert "arobey1/LipSDP" in (folder / "README.md").read_text()
    assert "Copyright (c) 2019 Alex Robey" in (folder / "LICENSE").read_text()


def test_published_lipsdp_tests_run_in_a_copy_without_sibling_folders(tmp_path):
    """Copy the tracked files alone into an empty folder and run the published-value tests there."""
    isolated = tmp_path / "empty_parent" / "repo"
    for path in tracked_files():
        if path.is_file():
            dest = isolated / path.relative_to(ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    assert sorted(p.name for p in isolated.parent.iterdir()) == ["repo"]
    env = dict(os.environ, PYTHONPATH=str(isolated))
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        "tests/test_lipschitz.py",
        "-k",
        "published or certified_value or cli_prints",
    ]
    proc = subprocess.run(cmd, cwd=isolated, env=env, capture_output=True, text=True, timeout=600)
    report = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, report
    assert "skipped" not in proc.stdout and re.search(r"\b6 passed\b", proc.stdout), report


def test_conda_environment_is_generated_from_the_lock():
    """envs/resdyn.yaml carries exactly the pins of requirements.lock (`make lock` writes both)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "envs" / "from_lock.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
