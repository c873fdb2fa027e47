# Two commands do all the set-up on a fresh machine with Python 3.11 and pip:
#   make run    creates .venv if missing, installs the pinned dependencies and resdyn, runs the default workflow
#   make test   the same set-up, then the test suite
# Every dependency (test and lint tools included) is pinned in requirements.lock, generated from
# pyproject.toml by `make lock` (uv pip compile); envs/resdyn.yaml is generated from the lock.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.resdyn-installed
LOCK := requirements.lock
CORES ?= all
LOCK_FLAGS ?= --upgrade
LINT_PY := resdyn workflow_scripts tests benchmarks envs
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install lock lint run report test test-fast test-slurm benchmarks clean-results

# The lock's own pip installs the lock; --no-deps installs exactly the pinned set (pip check: it is complete).
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$$(grep '^pip==' $(LOCK))"
	$(BIN)/python -m pip install --quiet --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --cores 1 --report results/report.html

report: $(STAMP)
	$(BIN)/snakemake --cores 1 --report results/report.html

# Regenerate the pins from pyproject.toml at the newest versions it allows (docs/development.md);
# `make lock LOCK_FLAGS=` keeps the current pins wherever pyproject.toml still allows them.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra test --extra dev --universal --python-version 3.11 \
		--fork-strategy fewest $(LOCK_FLAGS) --custom-compile-command "make lock" --quiet -o $(LOCK)
	$(BIN)/python envs/from_lock.py

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PY)
	$(BIN)/ruff format --check $(LINT_PY)
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint
	$(BIN)/python envs/from_lock.py --check

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-slurm: $(STAMP)
	tests/slurm/run.sh

benchmarks: $(STAMP)
	$(BIN)/python benchmarks/pairwise.py --n 10000 --depths 17 --json results/benchmarks/pairwise.json
	$(BIN)/python benchmarks/lipsdp_reduction.py
	$(BIN)/python benchmarks/train_throughput.py

clean-results:
	rm -rf results/* .snakemake/metadata .snakemake/incomplete
	touch results/.gitkeep
