"""Benchmark: LipSDP with the exact first-block reduction against the unreduced LMI (method §3.3).

A seeded random ReLU head 1024 → 64 → 10 (the shape of a multi-layer head on a smaller state): the
unreduced LMI has order 1024 + 64 = 1088, the reduced one rank(W_0) + 64 = 128. Both are solved in the
same run with the same solver and tolerance; the table prints both values, the times and the ratio
unreduced / reduced (baseline: the unreduced formulation). "Same answer" means: the reduced solve's
multipliers, certified in float64 in the full unreduced LMI, give the reduced certified value to 1e-9
(exactness of the reduction), and, when the unreduced solve converged within --time-limit, both solver
values agree to 100 × eps.

    .venv/bin/python benchmarks/lipsdp_reduction.py [--form neuron] [--solver SCS] [--eps 1e-6]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

from resdyn.lipschitz import certify_multipliers, lipsdp, spectral_product


def random_head(seed: int, dims: tuple[int, ...]) -> list[np.ndarray]:
    """He-initialised weights (out, in) of a ReLU net with layer widths ``dims``."""
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((dims[k + 1], dims[k])) * math.sqrt(2.0 / dims[k]) for k in range(len(dims) - 1)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--form", default="neuron", choices=("neuron", "layer"))
    parser.add_argument("--solver", default="SCS", type=str.upper, choices=("SCS", "CLARABEL"))
    parser.add_argument("--eps", type=float, default=1e-6)
    parser.add_argument("--dims", default="1024,64,10", help="layer widths, input first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--time-limit",
        type=float,
        default=600.0,
        help="seconds per solve; a solve stopped by it is reported, not optimal",
    )
    args = parser.parse_args(argv)
    dims = tuple(int(d) for d in args.dims.split(","))
    weights = random_head(args.seed, dims)

    rows = []
    for reduce in (False, True):
        result = lipsdp(
            weights,
            args.form,
            args.solver,
            args.eps,
            reduce=reduce,
            require_optimal=False,
            time_limit=args.time_limit,
        )
        rows.append(("reduced" if reduce else "unreduced (baseline)", result))
    base, reduced = rows[0][1], rows[1][1]

    print(
        f"LipSDP-{args.form}, {args.solver} eps={args.eps:g}, ReLU net {'→'.join(map(str, dims))}, "
        f"seed {args.seed}, threads OMP={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(f"spectral-norm product (naive upper bound): {spectral_product(weights):.6f}")
    header = (
        f"| {'formulation':<22} | {'LMI order':>9} | {'status':<18} | {'value':>12} | {'certified':>12} "
        f"| {'seconds':>8} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, r in rows:
        print(
            f"| {name:<22} | {r.lmi_size:>9} | {r.status:<18} | {r.value:>12.6f} | {r.certified:>12.6f} | "
            f"{r.seconds:>8.2f} |"
        )
    # A baseline stopped by the time limit only bounds the ratio from below.
    bound = ">= " if base.status != "optimal" else ""
    print(f"speed-up (unreduced / reduced time): {bound}{base.seconds / reduced.seconds:.1f}x")
    # The reduced solve's multipliers, checked in the full (unreduced) LMI in float64: the exactness of the
    # reduction, measured without waiting for the slow unreduced solve to converge.
    cross = certify_multipliers(weights, reduced.multipliers)
    cross_rel = abs(cross - reduced.certified) / reduced.certified
    print(
        f"reduced multipliers certified in the unreduced LMI: {cross:.9f} "
        f"(reduced LMI: {reduced.certified:.9f}, relative difference {cross_rel:.1e})"
    )
    same = reduced.status == "optimal" and cross_rel <= 1e-9
    if base.status == "optimal":
        rel = abs(base.value - reduced.value) / max(base.value, 1e-300)
        print(f"relative difference of the solver values: {rel:.2e} (solver tolerance {args.eps:g})")
        same = same and rel <= 100 * args.eps
    else:
        print(f"unreduced solve not converged ({base.status}): compared through the certificate only")
    print("same answer: " + ("yes" if same else "NO"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
