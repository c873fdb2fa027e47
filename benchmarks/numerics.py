"""Which CPU numerics give the same weights on every x86-64 CPU with AVX2 (issue 26), and at what cost.

One forward/backward + Adam step of the revised ResNet-18 (config.yaml's `resnet18` entry, width 64) on a
fixed batch, each candidate in fresh subprocesses (the ISA caps are environment variables that must be set
before torch initialises oneDNN, MKL and its own kernel dispatch):

- threads: the gradients and the weights after the steps under 1 and under 2 intra-op threads;
- ISA: under the host's native ISA and under an emulated AVX2-only host, i.e. with every library capped at
  AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``, ``ATEN_CPU_CAPABILITY=avx2``, ``MKL_CBWR=AVX2``) on top of the
  candidate's own settings. On a host without AVX-512 the ISA column can only say "capped = default".

Seconds per step are timed in the candidate's own setting (its thread count, native ISA); the ratio is
against ``fast`` (today's behaviour: all cores, oneDNN on, nothing capped), measured in the same run.

    nice -n 10 python benchmarks/numerics.py [--steps 3] [--threads 2] [--model resnet18]

The load average is printed: on a shared machine the seconds are depressed, the ratios less so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

AVX2_HOST = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
"""Environment that makes this host compute as an AVX2-only host would (every library capped)."""

# name: (environment, threads (None = all cores), oneDNN: "on" | "off" | "fwd" (off in the backward pass))
CANDIDATES: dict[str, tuple[dict[str, str], int | None, str]] = {
    "fast (today)": ({}, None, "on"),
    "(a) oneDNN cap": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, None, "on"),
    "(a') all caps": (dict(AVX2_HOST, MKL_CBWR="AVX2,STRICT"), None, "on"),
    "(b) 1 thread": ({}, 1, "on"),
    "(a+b) oneDNN cap, 1 thr": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 1, "on"),
    "(a'+b) all caps, 1 thr": (dict(AVX2_HOST, MKL_CBWR="AVX2,STRICT"), 1, "on"),
    "(c) CBWR, oneDNN off": ({"MKL_CBWR": "AVX2,STRICT"}, None, "off"),
    "(a'+c+d) caps, oneDNN bwd off": (dict(AVX2_HOST, MKL_CBWR="AVX2,STRICT"), None, "fwd"),
}


def worker(args: argparse.Namespace) -> None:
    """One candidate in this process: time ``steps`` steps and hash the gradients and weights."""
    import torch
    from torch.nn import functional as F

    sys.path.insert(0, str(ROOT))
    from resdyn.model import build_model

    torch.set_num_threads(args.threads)
    if args.onednn == "off":
        torch.backends.mkldnn.enabled = False
    import yaml

    entry = yaml.safe_load((ROOT / "config.yaml").read_text())["models"][args.model]
    torch.manual_seed(0)
    model = build_model(entry, 10).train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (args.batch_size, 3, 32, 32), generator=gen).float() / 255
    y = torch.randint(0, 10, (args.batch_size,), generator=gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def digest(tensors) -> str:
        h = hashlib.sha256()
        for t in tensors:
            h.update(t.detach().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    grads, seconds = None, []
    for _ in range(args.steps + 1):  # the first step warms up (oneDNN primitive creation) and is not timed
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        if args.onednn == "fwd":
            with torch.backends.mkldnn.flags(enabled=False):
                loss.backward()
        else:
            loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - started)
        if grads is None:
            grads = digest(p.grad for p in model.parameters())
    print(
        json.dumps(
            {
                "grads": grads,
                "weights": digest(model.state_dict().values()),
                "seconds": sorted(seconds[1:])[len(seconds[1:]) // 2],
                "capability": torch.backends.cpu.get_cpu_capability(),
            }
        )
    )


def run(env: dict[str, str], threads: int, onednn: str, args: argparse.Namespace, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--onednn", onednn]
    cmd += ["--steps", str(steps), "--model", args.model, "--batch-size", str(args.batch_size)]
    clean = {k: v for k, v in os.environ.items() if k not in AVX2_HOST and k != "OMP_NUM_THREADS"}
    out = subprocess.run(cmd, env={**clean, **env}, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--onednn", default="on", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="all cores (fast's setting)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (median), after one warm-up")
    parser.add_argument(
        "--rounds", type=int, default=3, help="timing rounds, candidates interleaved; best kept"
    )
    parser.add_argument("--model", default="resnet18", help="a config.yaml model entry")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--only", nargs="*", help="candidate names (prefixes) to run")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import torch

    print(
        f"torch {torch.__version__}, host ISA {torch.backends.cpu.get_cpu_capability()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {args.model}, batch "
        f"{args.batch_size}, median of {args.steps} steps"
    )
    header = f"| {'candidate':<31} | threads | s/step | × fast | bits 1 = 2 threads | bits native = AVX2 |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    chosen = {
        name: spec
        for name, spec in CANDIDATES.items()
        if not args.only or any(name.startswith(prefix) for prefix in args.only)
    }
    bits: dict[str, tuple[str, str]] = {}
    for name, (env, threads, onednn) in chosen.items():
        n = threads or args.threads
        own = run(env, n, onednn, args, steps=1)
        avx2 = run(
            {**env, **AVX2_HOST, **{k: v for k, v in env.items() if k == "MKL_CBWR"}}, n, onednn, args, 1
        )
        same_isa = (own["grads"], own["weights"]) == (avx2["grads"], avx2["weights"])
        if threads is None:  # all cores: does the machine's core count change the bits?
            other = run(env, 1, onednn, args, steps=1)
            same_threads = (
                "yes" if (own["grads"], own["weights"]) == (other["grads"], other["weights"]) else "NO"
            )
        else:
            same_threads = f"fixed ({threads})"
        bits[name] = (same_threads, "yes" if same_isa else "NO")
    # Timing: every candidate once per round, rounds interleaved, the best round kept (a loaded machine
    # slows some rounds; the minimum is the least disturbed).
    seconds: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, (env, threads, onednn) in chosen.items():
            got = run(env, threads or args.threads, onednn, args, steps=args.steps)["seconds"]
            seconds[name] = min(seconds.get(name, got), got)
    fast = seconds.get("fast (today)", next(iter(seconds.values())))
    for name, (_env, threads, _onednn) in chosen.items():
        n = threads or args.threads
        print(
            f"| {name:<31} | {n:>7} | {seconds[name]:6.3f} | {seconds[name] / fast:6.2f} | "
            f"{bits[name][0]:<18} | {bits[name][1]:<18} |"
        )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
