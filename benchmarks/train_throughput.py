"""Training throughput of the revised ResNets, images/s for forward + backward at batch 400 (issue 10).

Baseline, timed in the same run on the same device: torchvision's standard ResNet-18/-50 (10 classes) at
the same 3×32×32 input, i.e. the conventional models whose downsampling the revised ones replace by
patching. The ratio column is revised / baseline (> 1: the revised model is faster).

    python benchmarks/train_throughput.py [--batch-size 400] [--steps 3] [--threads N] [--devices cpu cuda]

The load average is printed: on a shared machine it says how much the figures may be depressed.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torchvision
from torch.nn import functional as F

from resdyn.model import RevisedResNet

MODELS = {
    "resnet18": ((2, 2, 2, 2), torchvision.models.resnet18),
    "resnet50": ((3, 4, 6, 3), torchvision.models.resnet50),
}


def images_per_second(
    model: torch.nn.Module,
    device: torch.device,
    batch_size: int,
    steps: int,
    warmup: int,
    *,
    bf16: bool = False,
    channels_last: bool = False,
) -> float:
    """Mean images/s over ``steps`` timed forward + backward passes (after ``warmup`` untimed ones);
    ``bf16``: forward and loss under ``torch.autocast(dtype=torch.bfloat16)`` (as ``training.bf16_autocast``),
    ``channels_last``: model and input in NHWC."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format).train()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 3, 32, 32, generator=gen).to(device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (batch_size,), generator=gen).to(device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch_size * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=400)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    print(
        f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, batch {args.batch_size}, "
        f"{args.steps} timed steps after {args.warmup} warm-up; load average {os.getloadavg()[0]:.2f}"
    )
    if "cuda" in devices:
        print(f"CUDA device: {torch.cuda.get_device_name(0)}")
    header = (
        f"{'device':<7}{'model':<10}{'params':>12}{'revised img/s':>15}{'torchvision img/s':>19}{'ratio':>8}"
    )
    print(header)
    print("-" * len(header))
    for device_name in devices:
        device = torch.device(device_name)
        for name, (blocks, baseline_fn) in MODELS.items():
            torch.manual_seed(0)
            revised = RevisedResNet(blocks=blocks)
            params = sum(p.numel() for p in revised.parameters())
            ours = images_per_second(revised, device, args.batch_size, args.steps, args.warmup)
            del revised
            baseline = images_per_second(
                baseline_fn(num_classes=10), device, args.batch_size, args.steps, args.warmup
            )
            ratio = ours / baseline
            print(f"{device_name:<7}{name:<10}{params:>12,}{ours:>15.1f}{baseline:>19.1f}{ratio:>8.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f} (2 CPU cores here are shared with other jobs)")


if __name__ == "__main__":
    main()
