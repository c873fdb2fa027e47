# Two commands do all the set-up on a fresh machine with Python 3.11 and pip:
#   make run    creates .venv if missing, installs resdyn and its dependencies, runs the default workflow
#   make test   the same set-up, then the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.resdyn-installed
CORES ?= all
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run report test test-fast test-slurm benchmarks clean-results

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --cores 1 --report results/report.html

report: $(STAMP)
	$(BIN)/snakemake --cores 1 --report results/report.html

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
