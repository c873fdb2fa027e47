"""The one device resolver: every stage that runs torch turns its ``device`` setting into a torch
device here.

torch is imported only when a GPU may be present: on a machine without an NVIDIA driver ``"auto"``
resolves to the CPU without importing torch, so the light analysis jobs (pairwise shards, gathers,
Lipschitz of a linear head, constants, tables, figures) start in about a second instead of four.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from resdyn.io import InputError

if TYPE_CHECKING:
    import torch


def gpu_may_be_present() -> bool:
    """False when this machine certainly has no usable GPU: no NVIDIA driver (``/proc/driver/nvidia``,
    ``nvidia-smi``) nor ROCm's ``/dev/kfd``, or ``CUDA_VISIBLE_DEVICES`` set to hide every device.
    Cheap: no torch import. True means only that torch must be asked."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return False
    return (
        os.path.exists("/proc/driver/nvidia/version")
        or shutil.which("nvidia-smi") is not None
        or os.path.exists("/dev/kfd")
    )


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cpu"``; ``"cuda"`` or ``"cuda:k"`` (an error when CUDA
    is absent). A :class:`torch.device` passes through."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if gpu_may_be_present() and torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or str(device).startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(
                f"device {device!r} requested but torch sees no CUDA device (use 'auto' or 'cpu')"
            )
        return torch.device(device)
    raise InputError(f"device {device!r}: choose 'auto', 'cpu' or 'cuda'")


def device_name(device: str) -> str:
    """:func:`resolve_device` as a string (``"cpu"``, ``"cuda:0"``), for the numpy/numba stages: ``"cpu"``
    and ``"auto"`` on a machine without a GPU are answered without importing torch."""
    if device == "cpu" or (device == "auto" and not gpu_may_be_present()):
        return "cpu"
    return str(resolve_device(device))
