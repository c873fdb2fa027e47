"""Which software made a result: the versions recorded in ``metrics.json`` and ``constants.json``.

Read from the installed distributions' metadata (``importlib.metadata``), so asking costs no import of
torch or cvxpy. A package that is not installed is recorded as ``None``.
"""

from __future__ import annotations

import platform
from importlib import metadata

RECORDED_PACKAGES = ("torch", "numpy", "cvxpy", "scs", "snakemake")
"""The packages whose versions decide the numbers: training and trajectories (torch), every reduction
(numpy), LipSDP (cvxpy, scs), and the workflow that scheduled them (snakemake)."""


def software_versions(packages: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str | None]:
    """``{"python": "3.11.7", "torch": "2.14.1", ...}`` for the running interpreter and ``packages``."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
