"""benchmarks/scaling.py: the sample-size row's CPU split by part (issue 28's accounting of that stage)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_parts_wrappers_keep_results_and_add_cpu_time(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import scaling

    class Owner:
        @classmethod
        def build(cls, x):
            return (cls.__name__, x * 2)

    class Module:
        @staticmethod
        def work(x, *, twice=False):
            deadline = time.process_time() + 0.05
            while time.process_time() < deadline:  # spend CPU time to be counted
                pass
            return x * (2 if twice else 1)

    module = Module()
    parts: dict[str, float] = {}
    monkeypatch.setattr(
        scaling,
        "SAMPLE_SIZE_PARTS",
        {"built": ("Owner", "build"), "worked": ("module", "work")},
    )
    scaling._count_cpu({"Owner": Owner, "module": module}, parts)
    assert Owner.build(3) == ("Owner", 6)  # still a class method
    assert module.work(5, twice=True) == 10
    assert module.work(5) == 5
    assert set(parts) == {"built", "worked"}
    assert parts["worked"] >= 0.09 and 0 <= parts["built"] < parts["worked"]
    before = dict(parts)
    Owner.build(1)
    assert parts["worked"] == before["worked"]  # each call counted in its own part only


def test_parts_count_concurrent_calls_once(monkeypatch):
    """Two threads in the same part at once (the sample-size stage's subset workers): each adds its own
    thread's CPU time, not the process's, which holds both."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import scaling

    class Module:
        @staticmethod
        def work():
            deadline = time.thread_time() + 0.1
            while time.thread_time() < deadline:
                pass

    module = Module()
    parts: dict[str, float] = {}
    monkeypatch.setattr(scaling, "SAMPLE_SIZE_PARTS", {"worked": ("module", "work")})
    scaling._count_cpu({"module": module}, parts)
    threads = [threading.Thread(target=module.work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 0.1 s in each thread; the process spent ~0.2 s within each call, so 0.4 if counted that way
    assert 0.2 <= parts["worked"] < 0.3


@pytest.mark.timeout(600)
def test_sample_size_row_reports_its_parts(tmp_path):
    out = tmp_path / "scaling.json"
    subprocess.run(
        [sys.executable, "scaling.py", "--sizes", "300", "--stages", "sample_size", "--json", str(out)],
        cwd=ROOT / "benchmarks",
        check=True,
        capture_output=True,
        text=True,
    )
    rows = json.loads(out.read_text())["rows"]
    assert [row["stage"] for row in rows] == ["sample_size/definition", "sample_size/authors"]
    for row in rows:
        parts = row["parts"]
        assert set(parts) == {
            "orbits",
            "epsilon",
            "pair_list",
            "pair_list_check",
            "nearest_check",
            "pairwise_kernel",
            "rest",
        }
        assert parts["orbits"] > 0 and parts["epsilon"] > 0
        assert np.isclose(sum(parts.values()), row["cpu_seconds"])
