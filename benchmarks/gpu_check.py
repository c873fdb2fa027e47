"""The prepared GPU check of issue 20: CPU against GPU on the default data, and the GPU's speed.

    bash benchmarks/gpu_check.sh                     # on a machine with one CUDA GPU (≤ 8 minutes)
    python benchmarks/gpu_check.py --device cpu --quick --out DIR   # its CPU-only self-test (the tests)

Sections (each prints a table; the checks with a tolerance decide the exit status):

1. **Training** — both revised ResNets of config.yaml, ``EPOCHS`` epochs on the default data (sklearn
   digits, offline), Adam lr 1e-3, batch 128, seed 0, once on the CPU and once on the GPU (TF32 as PyTorch
   allows by default for training): per epoch loss and accuracy side by side. Tolerance (``LOSS_RTOL``,
   ``LOSS_ATOL``): |loss_gpu − loss_cpu| ≤ 0.05·loss_cpu + 0.02 every epoch. Float32 kernels differ
   between oneDNN and cuDNN in their last bits and SGD amplifies that, so the curves agree in shape, not in
   bits; a broken GPU path (wrong data, wrong labels) misses by far more. The GPU runs with
   ``channels_last`` and ``bf16_autocast`` are printed beside (no tolerance: they are meant to differ).
2. **Trajectories** — the CPU-trained models' probabilities p_t(i) on the 450 test images recorded on the
   CPU and on the GPU (full float32, :func:`resdyn.device.full_float32`): max |Δp| ≤ ``PROBS_ATOL`` (1e-4)
   and the same predictions for ≥ 99% of the images.
3. **Pairwise constants** — the pairwise stage on the CPU trajectories of section 2 with the CPU kernel
   and the CUDA path: every field identical (values bitwise, pairs, t*), also on a synthetic C = 1000 head.
4. **Throughput** — images/s of forward + backward at batch 400 (the paper's): the revised ResNets
   against torchvision's ResNet-18/50 (the named baseline, ratio = revised / torchvision), in float32 and
   under bf16 autocast.
5. **Pairwise timings** — the CUDA pairwise stage over all rows at N = 10,000 and 50,000 with C = 10 and
   1000 (synthetic heads of benchmarks/pairwise.py), seconds, rows per chunk and peak device memory; the
   CPU kernel at N = 10,000, C = 10 beside it (ratio CPU / GPU).
6. **Determinism** — the revised ResNet-18 trained twice for one epoch under ``numerics: portable``
   (on CUDA: deterministic algorithms, cudnn.deterministic, no cudnn.benchmark, no TF32,
   CUBLAS_WORKSPACE_CONFIG=:4096:8; :mod:`resdyn.numerics`); the weights must be bitwise equal. A third run
   with ``fast`` gives the cost of those settings (printed in seconds). Run after section 3.

``--quick`` shrinks every size (a few hundred images, one epoch, tiny batches) so the whole script runs in
about a minute on a CPU; ``--device cpu`` runs the "GPU" side on the CPU (the comparisons are then
trivially met; what is tested is the script). Results also go to ``OUT/gpu_check.json``.
Exit status: 0 all checks met, 1 a check failed, 2 no CUDA device visible for ``--device cuda``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODELS = {"resnet18": [2, 2, 2, 2], "resnet50": [3, 4, 6, 3]}
EPOCHS = 3
LOSS_RTOL, LOSS_ATOL = 0.05, 0.02
PROBS_ATOL = 1e-4
PRED_AGREEMENT = 0.99
BATCH = 128
CHUNK = 256  # rows per block of the pairwise kernel (results do not depend on it)
THROUGHPUT_BATCH = 400
PAIRWISE_SIZES = [(10_000, 10), (10_000, 1000), (50_000, 10), (50_000, 1000)]
QUICK_PAIRWISE_SIZES = [(300, 10), (300, 50)]


def _say(*parts: object) -> None:
    print(*parts, flush=True)


def _section(title: str) -> float:
    _say(f"\n== {title} ==")
    return time.perf_counter()


def load_digits(folder: Path, quick: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The default data (config.yaml: sklearn digits, seed 0) as {split: (images, labels)}."""
    from resdyn.artifacts import DatasetFile
    from resdyn.data import read_dataset

    path = folder / "digits.h5"
    read_dataset("digits", {"source": "sklearn-digits"}, folder).save(path)
    splits = {}
    for split in ("train", "test"):
        images, labels, _ = DatasetFile.load_split(path, split)
        keep = 64 if quick else len(labels)
        splits[split] = (images[:keep], labels[:keep])
    return splits


def training(data, device: str, epochs: int, folder: Path, checks: dict) -> dict:
    """Section 1; returns the CPU-trained models for section 2."""
    import torch

    from resdyn.model import build_model
    from resdyn.train import train

    began = _section(
        f"1. training, {epochs} epochs, CPU vs {device} (|Δloss| ≤ {LOSS_RTOL}·loss + {LOSS_ATOL})"
    )
    images, labels = data["train"]
    models, report = {}, {}
    variants = [
        ("cpu", "cpu", {}),
        (device, device, {}),
        (f"{device}+channels_last", device, {"channels_last": True}),
        (f"{device}+bf16", device, {"bf16_autocast": True}),
    ]
    if device == "cpu":  # the self-test: keep the labels apart
        variants[1] = ("cpu (device run)", "cpu", {})
    for name, blocks in MODELS.items():
        curves = {}
        for k, (label, dev, options) in enumerate(variants):
            torch.manual_seed(0)
            model = build_model({"blocks": blocks}, 10)
            # bf16 on a CPU without bf16 units is ~50x slower: the self-test gives the variants 16 images
            keep = 16 if dev == "cpu" and options else len(labels)
            started = time.perf_counter()
            rows = train(
                model,
                images[:keep],
                labels[:keep],
                epochs=epochs,
                lr=1e-3,
                batch_size=BATCH,
                seed=0,
                device=dev,
                checkpoint_path=folder / f"{name}_{k}.ckpt",
                log_path=folder / f"{name}_{k}.csv",
                **options,
            )
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            curves[label] = {"loss": [r["loss"] for r in rows], "seconds": time.perf_counter() - started}
            if k == 0:
                models[name] = model.cpu().eval()
        cpu, gpu = curves[variants[0][0]]["loss"], curves[variants[1][0]]["loss"]
        ok = all(abs(g - c) <= LOSS_RTOL * c + LOSS_ATOL for c, g in zip(cpu, gpu))
        checks[f"training {name}: loss curves CPU vs {device}"] = ok
        _say(f"{name}: epoch | " + " | ".join(f"{k} loss" for k in curves))
        for e in range(epochs):
            _say(f"  {e + 1:>5} | " + " | ".join(f"{c['loss'][e]:.5f}" for c in curves.values()))
        _say(
            "  seconds | "
            + " | ".join(f"{c['seconds']:.1f}" for c in curves.values())
            + f"  -> {'ok' if ok else 'FAIL'}"
        )
        report[name] = curves
    _say(f"({time.perf_counter() - began:.0f} s)")
    return {"models": models, "report": report}


def trajectories(data, models, device: str, checks: dict) -> dict:
    """Section 2; returns the CPU probabilities for section 3."""
    import torch

    from resdyn.device import full_float32
    from resdyn.trajectories import batch_for_device, trajectory_batches

    began = _section(
        f"2. trajectories, CPU vs {device} (max |Δp| ≤ {PROBS_ATOL}, predictions ≥ {PRED_AGREEMENT})"
    )
    images, labels = data["test"]
    out, report = {}, {}
    for name, model in models.items():
        probs = {}
        for dev in ("cpu", device):
            target = torch.device(dev)
            model.to(target)
            batch = batch_for_device(model, target, 256, len(images), store_states=False)
            with full_float32(target):
                parts = [
                    p.cpu().numpy() for _, _, _, p, _ in trajectory_batches(model, images, batch, target)
                ]
            probs[dev] = np.concatenate(parts)
        model.cpu()
        delta = float(np.abs(probs["cpu"] - probs[device]).max())
        agree = float(np.mean(probs["cpu"][:, -1].argmax(1) == probs[device][:, -1].argmax(1)))
        ok = delta <= PROBS_ATOL and agree >= PRED_AGREEMENT
        checks[f"trajectories {name}: probabilities CPU vs {device}"] = ok
        _say(f"{name}: max |Δp| = {delta:.2e}, predictions agree on {agree:.2%}  -> {'ok' if ok else 'FAIL'}")
        out[name] = (probs["cpu"], labels)
        report[name] = {"max_abs_delta": delta, "prediction_agreement": agree}
    _say(f"({time.perf_counter() - began:.0f} s)")
    return {"probs": out, "report": report}


def _same_pairs(a, b) -> bool:
    fields = ("E", "E_mean", "depth_min", "nn_distance", "E_pair", "E_mean_pair", "E_t_star")
    fields += ("depth_min_pair", "nn_index", "expansive_pair", "close_value", "close_pair", "close_bound")
    same = all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True) for f in fields)
    return (
        same
        and a.expansive_t_star == b.expansive_t_star
        and np.array_equal(a.expansive, b.expansive, equal_nan=True)
    )


def pairwise_identity(probs, device: str, quick: bool, checks: dict) -> dict:
    """Section 3."""
    from pairwise import synthetic_trajectories

    from resdyn.distances import pairwise_shard

    began = _section(f"3. pairwise constants, CPU kernel vs {device} path (identical)")
    cases = {f"{name} trajectories": (p, y, 10) for name, (p, y) in probs.items()}
    n_syn = 300 if quick else 2000
    cases[f"synthetic N={n_syn}, C=1000"] = (*synthetic_trajectories(n_syn, 17, 1000), 1000)
    report = {}
    for label, (p, y, n_classes) in cases.items():
        # with the close pairs the sample-size stage reads (under max, the definition's reduction)
        cpu = pairwise_shard(p, y, 0, len(y), n_classes=n_classes, chunk=CHUNK, device="cpu", close="max")
        gpu = pairwise_shard(p, y, 0, len(y), n_classes=n_classes, chunk=CHUNK, device=device, close="max")
        ok = _same_pairs(cpu, gpu)
        checks[f"pairwise {label}: CPU vs {device} identical"] = ok
        pair = tuple(int(i) for i in cpu.expansive_pair)
        _say(f"{label}: e = {cpu.expansive:.6g} (pair {pair}), identical = {ok}")
        report[label] = {"expansive": cpu.expansive, "identical": ok}
    _say(f"({time.perf_counter() - began:.0f} s)")
    return report


def throughput(device: str, quick: bool) -> dict:
    """Section 4."""
    import torch
    import torchvision
    from train_throughput import images_per_second

    from resdyn.model import RevisedResNet

    batch, steps, warmup = (4, 1, 0) if quick else (THROUGHPUT_BATCH, 20, 3)
    began = _section(
        f"4. training throughput on {device}, batch {batch} (img/s, ratio = revised / torchvision)"
    )
    baselines = {"resnet18": torchvision.models.resnet18, "resnet50": torchvision.models.resnet50}
    _say(f"{'model':<10}{'precision':<11}{'revised':>10}{'torchvision':>13}{'ratio':>8}")
    report = {}
    target = torch.device(device)
    for name, blocks in list(MODELS.items())[: 1 if quick else None]:
        for precision in ("fp32", "bf16"):
            bf16 = precision == "bf16"
            torch.manual_seed(0)
            ours = images_per_second(RevisedResNet(blocks=blocks), target, batch, steps, warmup, bf16=bf16)
            theirs = images_per_second(
                baselines[name](num_classes=10), target, batch, steps, warmup, bf16=bf16
            )
            _say(f"{name:<10}{precision:<11}{ours:>10.0f}{theirs:>13.0f}{ours / theirs:>8.2f}")
            report[f"{name} {precision}"] = {"revised": ours, "torchvision": theirs, "ratio": ours / theirs}
    _say(f"({time.perf_counter() - began:.0f} s)")
    return report


def pairwise_timings(device: str, quick: bool) -> dict:
    """Section 5."""
    import torch
    from pairwise import synthetic_trajectories

    from resdyn.distances import pairwise_shard

    sizes = QUICK_PAIRWISE_SIZES if quick else PAIRWISE_SIZES
    began = _section(f"5. pairwise stage over all rows on {device} (T+1 = 17)")
    _say(f"{'N':>8}{'C':>6}{'device':>8}{'seconds':>10}{'peak device MB':>16}{'e':>14}")
    report = {}
    warm_p, warm_y = synthetic_trajectories(64, 17, 10, seed=1)
    for dev in {device, "cpu"}:
        pairwise_shard(warm_p, warm_y, 0, 64, n_classes=10, chunk=CHUNK, device=dev)
    for n, n_classes in sizes:
        p, y = synthetic_trajectories(n, 17, n_classes)
        runs = [device] + (["cpu"] if (n, n_classes) == sizes[0] and device != "cpu" else [])
        for dev in runs:
            if dev.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            result = pairwise_shard(p, y, 0, n, n_classes=n_classes, chunk=CHUNK, device=dev)
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            peak = torch.cuda.max_memory_allocated() / 2**20 if dev.startswith("cuda") else float("nan")
            _say(f"{n:>8}{n_classes:>6}{dev:>8}{seconds:>10.2f}{peak:>16.0f}{result.expansive:>14.6g}")
            report[f"N={n} C={n_classes} {dev}"] = {"seconds": seconds, "peak_device_mb": peak}
        del p, y
    first = f"N={sizes[0][0]} C={sizes[0][1]}"
    if f"{first} cpu" in report:
        ratio = report[f"{first} cpu"]["seconds"] / report[f"{first} {device}"]["seconds"]
        _say(f"ratio CPU ({os.cpu_count()} cores) / {device} at {first}: {ratio:.1f}")
    _say(f"({time.perf_counter() - began:.0f} s)")
    return report


def determinism(data, device: str, quick: bool, folder: Path, checks: dict) -> dict:
    """Section 6: the revised ResNet-18 trained twice on ``device`` under the numerics ``portable`` applies
    there (:func:`resdyn.numerics.applied`: deterministic algorithms, cudnn.deterministic, no benchmark, no
    TF32, CUBLAS_WORKSPACE_CONFIG=:4096:8); the weights must agree bitwise. Also times one run with the
    default (``fast``) settings, so the cost of determinism is measured (docs/numerics.md)."""
    import torch

    from resdyn.model import build_model
    from resdyn.numerics import applied
    from resdyn.train import train

    began = _section(f"6. determinism on {device}: portable numerics, trained twice, weights bitwise equal")
    images, labels = data["train"]
    keep = 64 if quick else len(labels)
    runs = {}
    for k, mode in enumerate(("portable", "portable", "fast")):
        with applied(mode, torch.device(device)) as record:
            torch.manual_seed(0)
            model = build_model({"blocks": MODELS["resnet18"]}, 10)
            started = time.perf_counter()
            train(
                model,
                images[:keep],
                labels[:keep],
                epochs=1,
                lr=1e-3,
                batch_size=BATCH,
                seed=0,
                device=device,
                checkpoint_path=folder / f"determinism_{k}.ckpt",
                log_path=folder / f"determinism_{k}.csv",
                numerics=mode,
            )
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
        runs[k] = (
            mode,
            {n: t.detach().cpu().clone() for n, t in model.state_dict().items()},
            seconds,
            record,
        )
    same = all(torch.equal(runs[0][1][n], runs[1][1][n]) for n in runs[0][1])
    checks[f"determinism on {device}: portable runs bitwise equal"] = same
    report = {
        "bitwise_equal": same,
        "seconds": {f"{mode} run {k + 1}": sec for k, (mode, _, sec, _) in runs.items()},
        "record": runs[0][3],
    }
    _say(
        f"portable run 1 {runs[0][2]:.1f} s, run 2 {runs[1][2]:.1f} s, fast {runs[2][2]:.1f} s; "
        f"weights bitwise equal: {'yes' if same else 'NO'} ({time.perf_counter() - began:.0f} s)"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="the device under test (default cuda)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the CPU self-test of this script")
    parser.add_argument(
        "--out", type=Path, default=Path("results/gpu_check"), help="folder for gpu_check.json"
    )
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        _say(
            "gpu_check: no CUDA device visible (torch.cuda.is_available() is False; "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}, torch {torch.__version__}). "
            "Run it on a GPU node, or `--device cpu --quick` for the script's CPU self-test.",
        )
        return 2
    started = time.perf_counter()
    name = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "CPU"
    _say(
        f"gpu_check on {args.device} ({name}), torch {torch.__version__}, {os.cpu_count()} CPU cores, "
        f"{'quick' if args.quick else 'full'} sizes"
    )
    checks: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = load_digits(folder, args.quick)
        trained = training(data, args.device, 1 if args.quick else EPOCHS, folder, checks)
        traj = trajectories(data, trained["models"], args.device, checks)
        identity = pairwise_identity(traj["probs"], args.device, args.quick, checks)
        determinism_report = determinism(data, args.device, args.quick, folder, checks)
    speed = throughput(args.device, args.quick)
    timings = pairwise_timings(args.device, args.quick)
    failed = [k for k, ok in checks.items() if not ok]
    _section("summary")
    for key, ok in checks.items():
        _say(f"{'ok  ' if ok else 'FAIL'} {key}")
    _say(f"total {time.perf_counter() - started:.0f} s; {len(failed)} of {len(checks)} checks failed")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "device": args.device,
        "device_name": name,
        "quick": args.quick,
        "checks": checks,
        "training": trained["report"],
        "trajectories": traj["report"],
        "pairwise_identity": identity,
        "throughput": speed,
        "pairwise_timings": timings,
        "determinism": determinism_report,
        "seconds": time.perf_counter() - started,
    }
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
