"""Helpers of tests/slurm/run.sh: workflow copies, the test's derivation of profiles/slurm, and the checks.

Subcommands (run.sh calls them; each prints what it did and exits non-zero with a message on failure):

  copy-workflow DEST           a copy of the workflow (tests/conftest.py's copy_workflow) with TINY_CONFIG
  derive-profile SRC DEST --cpus N --mem-mb M
                               profiles/slurm/config.yaml with the few overrides a one-node test cluster
                               without a GPU needs (listed below); prints each override and the partitions
  partitions PROFILE           the partition names PROFILE uses, one per line (for the test's slurm.conf)
  threads PROFILE              PROFILE's set-threads as rule=N words (the local run uses the same threads)
  check-slurm --log LOG --profile PROFILE
                               the jobs Snakemake submitted are exactly the jobs sacct reports for its run,
                               all COMPLETED with exit code 0:0, each in the partition the profile assigns
  compare-constants A B        every results/*/*/constants.json under workflow copy A equals the one under B

The test changes nothing but resource sizes and the GPU request (the node has no GPU): every other line of
profiles/slurm/config.yaml, executor settings included, runs as written.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

TESTS = Path(__file__).resolve().parents[1]
GPU_RULES = ("train", "trajectories", "pairwise_shard")
# The plugin waits 40 s before its first status query by default; a test of ~30 short jobs in a chain
# would spend most of its time waiting.
TEST_EXECUTOR_SETTINGS = {
    "slurm-init-seconds-before-status-checks": 2,
    "slurm-keep-successful-logs": True,
}


class HarnessError(RuntimeError):
    """A check failed; the message says which and with what values."""


def copy_workflow(dest: Path) -> None:
    """Copy the workflow the way the pytest fixtures do and write TINY_CONFIG as its config.yaml."""
    sys.path.insert(0, str(TESTS))
    from conftest import TINY_CONFIG
    from conftest import copy_workflow as conftest_copy

    conftest_copy(dest).write_config(TINY_CONFIG)
    print(f"workflow copied to {dest} with TINY_CONFIG")


def derive_profile(src: Path, dest: Path, cpus: int, mem_mb: int) -> list[str]:
    """Write the test's copy of a SLURM profile and return the overrides it applied, one line each.

    Overrides: threads capped at the node's `cpus`; mem_mb capped at `mem_mb` (the node's memory per CPU,
    so CPUs stay the limiting resource); `gres` dropped and `gpu` kept at 0 (no GPU on the test node);
    TEST_EXECUTOR_SETTINGS added (status polling, kept job logs).
    """
    profile = yaml.safe_load(src.read_text())
    if not isinstance(profile, dict) or profile.get("executor") != "slurm":
        raise HarnessError(f"{src}: not a SLURM profile (executor: {profile.get('executor')!r})")
    changes: list[str] = []

    def cap(section: str, key: str, value: Any, limit: int) -> Any:
        if isinstance(value, int) and value > limit:
            changes.append(f"{section}: {key} {value} -> {limit}")
            return limit
        return value

    for rule, threads in (profile.get("set-threads") or {}).items():
        profile["set-threads"][rule] = cap("set-threads", rule, threads, cpus)
    blocks = [("default-resources", profile.get("default-resources") or {})]
    blocks += [(f"set-resources {rule}", res) for rule, res in (profile.get("set-resources") or {}).items()]
    for section, resources in blocks:
        if "mem_mb" in resources:
            resources["mem_mb"] = cap(section, "mem_mb", resources["mem_mb"], mem_mb)
        if "cpus_per_task" in resources:
            resources["cpus_per_task"] = cap(section, "cpus_per_task", resources["cpus_per_task"], cpus)
        if "gres" in resources:
            changes.append(f"{section}: gres {resources.pop('gres')!r} dropped (no GPU on the test node)")
        if resources.get("gpu"):
            changes.append(f"{section}: gpu {resources['gpu']} -> 0 (no GPU on the test node)")
            resources["gpu"] = 0
    for key, value in TEST_EXECUTOR_SETTINGS.items():
        changes.append(f"{key}: {profile.get(key)!r} -> {value!r}")
        profile[key] = value
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(
        "# Written by tests/slurm/harness.py from "
        + str(src)
        + "; overrides:\n"
        + "".join(f"#   {line}\n" for line in changes)
        + yaml.safe_dump(profile, sort_keys=False)
    )
    return changes


def profile_partitions(profile_path: Path) -> dict[str, str]:
    """Rule name -> partition the profile assigns ("*" for the default-resources partition)."""
    profile = yaml.safe_load(profile_path.read_text())
    default = (profile.get("default-resources") or {}).get("slurm_partition")
    if not default:
        raise HarnessError(f"{profile_path}: default-resources has no slurm_partition")
    partitions = {"*": str(default)}
    for rule, resources in (profile.get("set-resources") or {}).items():
        if "slurm_partition" in resources:
            partitions[rule] = str(resources["slurm_partition"])
    return partitions


def profile_threads(profile_path: Path) -> list[str]:
    """The profile's set-threads as `rule=N` arguments for `snakemake --set-threads`.

    The local reference run gets the same thread counts as the SLURM run: Snakemake exports
    OMP_NUM_THREADS = threads to every script job, and a float64 matrix product on 1 or 2 threads can
    differ in the last bit, which would make the two constants.json differ for a reason unrelated to SLURM.
    """
    profile = yaml.safe_load(profile_path.read_text())
    return [f"{rule}={threads}" for rule, threads in (profile.get("set-threads") or {}).items()]


def _submitted_jobs(log_text: str) -> tuple[str, dict[str, str]]:
    """The SLURM run ID and {SLURM job id: rule} from Snakemake's console output.

    Snakemake prints a `rule <name>:` block with `jobid: <n>` for every job it sends to the executor
    (`localrule` for local ones) and the plugin prints `Job <n> has been submitted with SLURM jobid <id>`.
    """
    run_ids = re.findall(r"SLURM run ID: (\S+)", log_text)
    if len(set(run_ids)) != 1:
        raise HarnessError(f"expected one 'SLURM run ID' line in Snakemake's output, found {run_ids}")
    rule_of_job: dict[str, str] = {}
    for block in re.finditer(r"^(local)?rule (\w+):\n(?:    .*\n)*?    jobid: (\d+)", log_text, re.M):
        if not block.group(1):
            rule_of_job[block.group(3)] = block.group(2)
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log_text))
    if set(submitted) != set(rule_of_job):
        raise HarnessError(
            f"Snakemake scheduled remote jobs {sorted(rule_of_job, key=int)} but reports SLURM submissions "
            f"for {sorted(submitted, key=int)}"
        )
    return run_ids[0], {slurm_id: rule_of_job[job] for job, slurm_id in submitted.items()}


def check_slurm(log_path: Path, profile_path: Path) -> str:
    """Check that every remote job went through SLURM and finished there; return sacct's table.

    Compares Snakemake's submissions with `sacct --name <run id>` (the plugin names every job by its run
    ID and comments it `rule_<name>...`): same job ids, all COMPLETED with exit code 0:0, each job in the
    partition the profile assigns to its rule, and the GPU rules among them.
    """
    run_id, rule_of_slurm_job = _submitted_jobs(log_path.read_text())
    fields = "JobIDRaw,JobName,Partition,State,ExitCode,AllocCPUS,ReqMem,Elapsed,Comment"
    proc = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--starttime", "now-1days", "--name", run_id, "-o", fields],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise HarnessError(f"sacct failed ({proc.returncode}): {proc.stderr.strip()}")
    rows = [dict(zip(fields.split(","), line.split("|"))) for line in proc.stdout.splitlines() if line]
    by_id = {row["JobIDRaw"]: row for row in rows}
    if set(by_id) != set(rule_of_slurm_job):
        raise HarnessError(
            f"sacct lists jobs {sorted(by_id, key=int)} for run {run_id}, Snakemake submitted "
            f"{sorted(rule_of_slurm_job, key=int)}"
        )
    partitions = profile_partitions(profile_path)
    problems = []
    for slurm_id, rule in rule_of_slurm_job.items():
        row = by_id[slurm_id]
        expected_partition = partitions.get(rule, partitions["*"])
        if row["State"] != "COMPLETED" or row["ExitCode"] != "0:0":
            problems.append(f"job {slurm_id} ({rule}): {row['State']} exit {row['ExitCode']}")
        if row["Partition"] != expected_partition:
            problems.append(
                f"job {slurm_id} ({rule}): partition {row['Partition']}, profile says {expected_partition}"
            )
        if not row["Comment"].startswith(f"rule_{rule}"):
            problems.append(f"job {slurm_id}: comment {row['Comment']!r} does not name rule {rule}")
    missing_gpu_rules = set(GPU_RULES) - set(rule_of_slurm_job.values())
    if missing_gpu_rules:
        problems.append(f"GPU rules never submitted to SLURM: {sorted(missing_gpu_rules)}")
    if problems:
        raise HarnessError("sacct check failed:\n  " + "\n  ".join(problems))
    counts = Counter(rule_of_slurm_job.values())
    table = subprocess.run(
        [
            "sacct",
            "-X",
            "--starttime",
            "now-1days",
            "--name",
            run_id,
            "-o",
            "JobID,Partition,State,ExitCode,AllocCPUS,ReqMem,Elapsed,Comment%60",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    print(
        f"SLURM run {run_id}: {len(rule_of_slurm_job)} jobs COMPLETED through SLURM, matching "
        f"Snakemake's submissions; per rule: {dict(sorted(counts.items()))}"
    )
    return table


def compare_constants(a: Path, b: Path) -> list[Path]:
    """Check that every results/*/*/constants.json in workflow copy `a` equals its twin in `b` exactly."""
    files = sorted(p.relative_to(a) for p in a.glob("results/*/*/constants.json"))
    twins = sorted(p.relative_to(b) for p in b.glob("results/*/*/constants.json"))
    if not files or files != twins:
        raise HarnessError(f"constants.json files differ: {a}: {files}; {b}: {twins}")
    for rel in files:
        left, right = json.loads((a / rel).read_text()), json.loads((b / rel).read_text())
        if left != right:
            differing = sorted(k for k in set(left) | set(right) if left.get(k) != right.get(k))
            raise HarnessError(f"{rel} differs between {a} and {b} in keys {differing}")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("copy-workflow")
    p.add_argument("dest", type=Path)
    p = sub.add_parser("derive-profile")
    p.add_argument("src", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--cpus", type=int, required=True)
    p.add_argument("--mem-mb", type=int, required=True)
    p = sub.add_parser("partitions")
    p.add_argument("profile", type=Path)
    p = sub.add_parser("threads")
    p.add_argument("profile", type=Path)
    p = sub.add_parser("check-slurm")
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--profile", type=Path, required=True)
    p = sub.add_parser("compare-constants")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "copy-workflow":
            copy_workflow(args.dest)
        elif args.command == "derive-profile":
            for line in derive_profile(args.src, args.dest, args.cpus, args.mem_mb):
                print(f"  override {line}")
        elif args.command == "partitions":
            print("\n".join(dict.fromkeys(profile_partitions(args.profile).values())))
        elif args.command == "threads":
            print(" ".join(profile_threads(args.profile)))
        elif args.command == "check-slurm":
            print(check_slurm(args.log, args.profile))
        elif args.command == "compare-constants":
            for rel in compare_constants(args.a, args.b):
                print(f"  {rel}: identical in both runs")
    except HarnessError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
