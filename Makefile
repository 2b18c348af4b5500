# cvos: common tasks. `make help` lists them.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
STAMP := .cache/installed.stamp

.PHONY: help install test test-all train davis16 bench format lint clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-9s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml cvos/codec/_kernels.c cvos/models/_samplers.c cvos/models/_loops.c cvos/data/_segments.c
	$(PYTHON) -m pip install "torch==$(TORCH_VERSION)"
	$(PYTHON) -m pip install -e ".[dev]"
	@mkdir -p $(dir $@) && touch $@

install: $(STAMP)  ## install torch (pinned) and cvos with dev extras

# OpenMP threads that busy-wait make small PyTorch ops 10-100x slower when the cores are shared.
RUN_ENV := OMP_WAIT_POLICY=PASSIVE

test: $(STAMP)  ## the fast lane: unit tests and in-process runs (about a minute)
	$(RUN_ENV) $(PYTHON) -m pytest -q -m "not slow"

test-all: $(STAMP)  ## every test, the slow end-to-end runs included (what CI runs)
	$(RUN_ENV) $(PYTHON) -m pytest -q

train: $(STAMP)  ## train the default model on the embedded synthetic dataset
	$(RUN_ENV) $(PYTHON) -m cvos.train

DAVIS ?= ../shared/data/davis2016
RECIPE_RUN := outputs/davis16_cpu/recipe

davis16: $(STAMP)  ## the DAVIS-2016 CPU recipe from scratch (DAVIS=<folder>), exported to models/
	$(RUN_ENV) $(PYTHON) -m cvos.train experiment=davis16_cpu data.root=$(DAVIS) hydra.run.dir=$(RECIPE_RUN)
	$(PYTHON) -m cvos.export ckpt=$(RECIPE_RUN)/checkpoints/last.ckpt out=models/davis16_cpu.pt

bench: $(STAMP)  ## run every benchmark script and print the figures
	$(RUN_ENV) $(PYTHON) scripts/bench_codec.py
	$(RUN_ENV) $(PYTHON) scripts/bench_data.py
	$(RUN_ENV) $(PYTHON) scripts/bench_model.py
	$(RUN_ENV) $(PYTHON) scripts/bench_evaluate.py
	$(RUN_ENV) $(PYTHON) scripts/bench_segment.py

format: $(STAMP)  ## format the code in place
	$(PYTHON) -m ruff format cvos tests scripts
	$(PYTHON) -m ruff check --fix cvos tests scripts

lint: $(STAMP)  ## check style without changing files
	$(PYTHON) -m ruff format --check cvos tests scripts
	$(PYTHON) -m ruff check cvos tests scripts

clean:  ## remove caches, run outputs and the compiled C loops
	rm -rf .cache outputs/* multirun .pytest_cache build cvos/*/*.so
