"""The one device resolver: every stage that runs torch turns its ``device`` setting into a torch
device here."""

from __future__ import annotations

import torch

from resdyn.io import InputError


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cpu"``; ``"cuda"`` or ``"cuda:k"`` (an error when CUDA
    is absent). A :class:`torch.device` passes through."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or str(device).startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(
                f"device {device!r} requested but torch sees no CUDA device (use 'auto' or 'cpu')"
            )
        return torch.device(device)
    raise InputError(f"device {device!r}: choose 'auto', 'cpu' or 'cuda'")
