"""The one device resolver: every stage that runs torch turns its ``device`` setting into a torch
device here.

torch is imported only when a GPU may be present: on a machine without an NVIDIA driver ``"auto"``
resolves to the CPU without importing torch, so the light analysis jobs (pairwise shards, gathers,
Lipschitz of a linear head, constants, tables, figures) start in about a second instead of four.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
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


def free_memory(device: str | torch.device) -> int | None:
    """Free bytes on a CUDA device (``torch.cuda.mem_get_info``), or None for the CPU (no budget to
    respect there: the stages keep their configured batch sizes)."""
    if str(device) == "cpu" or getattr(device, "type", None) == "cpu":
        return None
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


def fit_count(
    device: str | torch.device, bytes_per_item: int, *, default: int, limit: int, fraction: float = 0.5
) -> int:
    """How many items (images of a batch, rows of a chunk) to process at once on ``device``.

    On the CPU: ``default`` (the configured batch or chunk), unchanged. On a CUDA device: as many as fit in
    ``fraction`` of the free memory at ``bytes_per_item`` each (the caller's estimate of its peak use per
    item), at most ``limit`` (e.g. N) and at least 1; the configured value, tuned for a CPU, does not
    apply there.
    """
    free = free_memory(device)
    if free is None:
        return int(default)
    return int(max(1, min(int(limit), int(fraction * free) // max(1, int(bytes_per_item)))))


@contextlib.contextmanager
def full_float32(device: str | torch.device) -> Iterator[None]:
    """Within the block, CUDA convolutions and matrix products run in full float32, not TF32.

    PyTorch lets cuDNN convolutions use TF32 (10-bit mantissa) by default on Ampere and later GPUs, which
    moves a state by ~1e-3 relative; the trajectories feed distances down to ~1e-7 (method §6), so the
    stages that record them (and the evaluation) turn it off. Training keeps PyTorch's default. No-op on
    the CPU; the previous flags are restored on exit."""
    if resolve_device(device).type != "cuda":
        yield
        return
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
