"""Training numerics (docs/numerics.md): ``portable`` gives the same trained weights on every x86-64
CPU with AVX2, whatever its core count or wider vector extensions; ``fast`` is PyTorch's default (all the
threads the job was given, each library's widest ISA), whose bits change with both.

What ``portable`` does on the CPU (the cheapest combination that held in ``benchmarks/numerics.py``):

- one intra-op thread (:data:`PORTABLE_THREADS`): oneDNN's convolution backward and MKL's products split
  their sums across threads, so the bits followed the thread count; the workflow runs training jobs side
  by side instead (one core each);
- every library capped at AVX2 (:data:`PORTABLE_ENV`): oneDNN (``ONEDNN_MAX_CPU_ISA``), PyTorch's own
  vectorised kernels (``ATEN_CPU_CAPABILITY``, e.g. the normal draws of the initial weights, BatchNorm's
  sums) and MKL (``MKL_CBWR=AVX2,STRICT``, its conditional numerical reproducibility). The libraries read
  these variables when they run their first kernel, not when torch is imported, so :func:`applied` sets
  them before the stage builds the model; a process that already ran a kernel keeps its ISA, and the
  record then says so (and a warning is logged).

On a CUDA device ``portable`` makes a run repeatable on one GPU model and software stack: deterministic
algorithms, cuDNN without autotuning, no TF32, a fixed cuBLAS workspace (:data:`CUDA_ENV`). GPUs of other
models, and ARM CPUs, give other bits (docs/numerics.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from resdyn.io import InputError

log = logging.getLogger(__name__)

MODES = ("portable", "fast")
PORTABLE_ISA = "AVX2"
PORTABLE_THREADS = 1
PORTABLE_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT"}
"""The ISA caps of ``portable`` on the CPU; each library reads its variable once, at its first kernel."""
CUDA_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
"""cuBLAS's fixed workspace, which deterministic matrix products on CUDA need (read at the first product)."""


def check_mode(mode: Any) -> str:
    """``mode`` if it is one of :data:`MODES`, else :class:`InputError`."""
    if mode not in MODES:
        raise InputError(f"training settings: numerics must be one of {list(MODES)}, got {mode!r}")
    return str(mode)


@contextlib.contextmanager
def applied(mode: str, device: Any) -> Iterator[dict[str, Any]]:
    """Within the block, torch computes with the numerics ``mode`` on ``device``; yields :func:`record`.

    ``portable`` on the CPU: :data:`PORTABLE_ENV` set (before the first kernel of the process, see the
    module docstring) and :data:`PORTABLE_THREADS` intra-op threads; on CUDA: deterministic algorithms,
    ``cudnn.deterministic``, no ``cudnn.benchmark``, no TF32, :data:`CUDA_ENV`. ``fast`` changes nothing.
    The thread count, the flags and the environment are restored on exit (the ISA a library has chosen
    stays for the process: it cannot be changed once read).
    """
    import torch

    mode = check_mode(mode)
    device = torch.device(device)
    saved_env = {key: os.environ.get(key) for key in (*PORTABLE_ENV, *CUDA_ENV)}
    saved_threads = torch.get_num_threads()
    saved_cuda = _cuda_flags()
    try:
        if mode == "portable" and device.type == "cpu":
            os.environ.update(PORTABLE_ENV)
            torch.set_num_threads(PORTABLE_THREADS)
        elif mode == "portable" and device.type == "cuda":
            os.environ.update(CUDA_ENV)
            _set_cuda_flags(**PORTABLE_CUDA_FLAGS)
        info = record(mode, device)
        if mode == "portable" and device.type == "cpu" and not info["portable"]:
            log.warning(
                "numerics 'portable' requested, but this process computes with %s: the weights may differ "
                "from other machines' (see docs/numerics.md)",
                info["isa"],
            )
        yield info
    finally:
        torch.set_num_threads(saved_threads)
        _set_cuda_flags(**saved_cuda)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def record(mode: str, device: Any) -> dict[str, Any]:
    """What a training run computed with: {mode, device, portable (whether the portable guarantee holds:
    x86-64, every library at AVX2, one thread), isa {aten, onednn, mkl_cbwr}, threads, versions {torch,
    mkl, onednn}} and, on CUDA, the GPU and the determinism flags. Runs one tiny oneDNN convolution the
    first time (to read oneDNN's ISA), which fixes the ISA of every library for the process."""
    import torch

    device = torch.device(device)
    isa = {
        "aten": torch.backends.cpu.get_cpu_capability(),
        "onednn": _onednn_isa(),
        "mkl_cbwr": os.environ.get("MKL_CBWR"),
    }
    out: dict[str, Any] = {
        "mode": mode,
        "device": device.type,
        "machine": platform.machine(),
        "isa": isa,
        "threads": torch.get_num_threads(),
        "versions": library_versions(),
    }
    if device.type == "cpu":
        out["portable"] = (
            platform.machine() in ("x86_64", "AMD64")
            and isa["aten"] == PORTABLE_ISA
            and (isa["onednn"] is None or PORTABLE_ISA in isa["onednn"].replace("-", "").upper().split())
            and isa["mkl_cbwr"] == PORTABLE_ENV["MKL_CBWR"]
            and out["threads"] == PORTABLE_THREADS
        )
    else:
        flags = _cuda_flags()
        out["cuda"] = {
            "name": torch.cuda.get_device_name(device) if torch.cuda.is_available() else None,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            **flags,
            "cublas_workspace": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        }
        out["portable"] = False  # repeatable on one GPU model at best, never across machines
    return out


@functools.cache
def library_versions() -> dict[str, str | None]:
    """{torch, mkl, onednn} versions of the running torch (MKL and oneDNN are linked into it)."""
    import torch

    config = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version ([^\s]+)", config)
    onednn = re.search(r"MKL-DNN v([^\s]+)", config)
    return {
        "torch": str(torch.__version__),
        "mkl": mkl[1] if mkl else None,
        "onednn": onednn[1] if onednn else None,
    }


@functools.cache
def _onednn_isa() -> str | None:
    """The ISA oneDNN dispatches to in this process (its verbose header, e.g. "Intel AVX2"), or None
    without oneDNN. Runs a tiny convolution with verbose output on and file descriptor 1 captured."""
    import torch

    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return None
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        try:
            with torch.no_grad(), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                torch.nn.functional.conv2d(torch.zeros(2, 4, 8, 8), torch.zeros(4, 4, 3, 3))
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    found = re.search(r"info,cpu,isa:([^\n,]+)", text)
    return found[1].strip() if found else None


def _cuda_flags() -> dict[str, bool]:
    import torch

    return {
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
    }


def _set_cuda_flags(
    deterministic: bool, cudnn_deterministic: bool, cudnn_benchmark: bool, matmul_tf32: bool, cudnn_tf32: bool
) -> None:
    import torch

    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = cudnn_deterministic
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
    torch.backends.cudnn.allow_tf32 = cudnn_tf32


PORTABLE_CUDA_FLAGS = {
    "deterministic": True,
    "cudnn_deterministic": True,
    "cudnn_benchmark": False,
    "matmul_tf32": False,
    "cudnn_tf32": False,
}
"""The flags ``portable`` sets on CUDA (with :data:`CUDA_ENV`); benchmarks/gpu_check.py trains twice with
them."""
