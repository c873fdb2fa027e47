"""Triton kernel behind the CUDA path of :mod:`resdyn.distances`: squared distances of a chunk of rows to
all N points at one depth, with the module's arithmetic (method §6).

``sq[r, j] = Σ_c (X[c, row0 + r] − X[c, j])²`` summed sequentially over c = 0..C−1 in float64, each product
and sum rounded on its own: the kernel is compiled with ``enable_fp_fusion=False``, so the compiler may not
contract ``acc + d*d`` into a fused multiply-add (which rounds once and would change the bits). The result
is therefore bitwise the CPU kernel's (``resdyn._kernels``) and the float64 brute force's.

Why a kernel: the same sum as torch operations is one elementwise pass over the (rows, N) chunk per class,
about 48 bytes of memory traffic per pair and class; at N = 50,000 and C = 1000 that is ~1,700 TB, many
minutes on any GPU, where the fused kernel keeps the running sums in registers.

Triton is imported only when the kernel is first used (it ships with torch's Linux wheels and is pinned in
requirements.lock); :func:`available` says whether it can be. Under ``TRITON_INTERPRET=1`` the kernel runs
on CPU tensors (the tests check it there against the brute force).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

BLOCK_ROWS = 64
BLOCK_COLS = 64


@functools.cache
def available() -> bool:
    """Whether Triton can be imported (then :func:`sq_distances` can run on a CUDA device)."""
    try:
        import triton  # noqa: F401
    except Exception:  # ImportError, or a broken install raising something else
        return False
    return True


@functools.cache
def _kernel() -> Any:
    import triton
    import triton.language as tl

    @triton.jit
    def sq_kernel(xt_ptr, out_ptr, n, n_feat, row0, rows, BI: tl.constexpr, BJ: tl.constexpr):
        ri = (tl.program_id(0) * BI + tl.arange(0, BI)).to(tl.int64)
        cj = (tl.program_id(1) * BJ + tl.arange(0, BJ)).to(tl.int64)
        mi = ri < rows
        mj = cj < n
        acc = tl.zeros((BI, BJ), dtype=tl.float64)
        for c in range(0, n_feat):
            a = tl.load(xt_ptr + c * n + row0 + ri, mask=mi, other=0.0)
            b = tl.load(xt_ptr + c * n + cj, mask=mj, other=0.0)
            d = a[:, None] - b[None, :]
            acc = acc + d * d
        tl.store(out_ptr + ri[:, None] * n + cj[None, :], acc, mask=mi[:, None] & mj[None, :])

    return sq_kernel


def sq_distances(xt: torch.Tensor, row0: int, row1: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """(row1 − row0, N) float64 squared distances of the points row0..row1−1 to all N points.

    Args:
        xt: (C, N) float64, contiguous: one depth of the points, coordinate-major.
        row0, row1: the rows of the chunk.
        out: optional (row1 − row0, N) float64 contiguous output on ``xt``'s device.
    """
    import torch
    import triton

    n_feat, n = xt.shape
    rows = row1 - row0
    if xt.dtype != torch.float64 or not xt.is_contiguous():
        raise ValueError("sq_distances expects a contiguous float64 (C, N) tensor")
    if out is None:
        out = torch.empty((rows, n), dtype=torch.float64, device=xt.device)
    grid = (triton.cdiv(rows, BLOCK_ROWS), triton.cdiv(n, BLOCK_COLS))
    _kernel()[grid](xt, out, n, n_feat, row0, rows, BI=BLOCK_ROWS, BJ=BLOCK_COLS, enable_fp_fusion=False)
    return out
