#!/usr/bin/env bash
# The prepared GPU check of issue 20 (benchmarks/gpu_check.py says what it checks and with which
# tolerances): CPU vs GPU training curves, trajectories and pairwise constants on the default data, then
# training throughput (revised ResNets vs torchvision, fp32 and bf16) and pairwise timings at N = 10,000 and
# 50,000 with 10 and 1000 classes. About 5 minutes on one H100/H200-class GPU; it stops after 8.
#
#   bash benchmarks/gpu_check.sh                       # needs one visible CUDA GPU
#   bash benchmarks/gpu_check.sh --device cpu --quick  # the CPU self-test the test suite runs
#
# PYTHON selects the interpreter (default: the project's .venv, else python3). Exit status: 0 all checks
# met, 1 a check failed, 2 no GPU visible, 124 over the time limit.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
LIMIT="${GPU_CHECK_LIMIT_S:-480}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ " $* " != *" --device cpu "* ]]; then
  if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to $PYTHON (torch.cuda.is_available() is False)." >&2
    echo "Run it on a GPU node, or 'bash benchmarks/gpu_check.sh --device cpu --quick' for the self-test." >&2
    exit 2
  fi
fi
exec timeout "$LIMIT" "$PYTHON" benchmarks/gpu_check.py "$@"
