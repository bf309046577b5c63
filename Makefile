# The README's commands. Each does the whole set-up on a fresh machine first:
# a virtual environment (unless one is active), torch, the build and install of pyadv.
SHELL := /bin/bash
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
TORCHATTACKS_SPEC ?= torchattacks==3.5.1
OUT ?= runs/demo

ifdef VIRTUAL_ENV
PY := python
VENV_DEP :=
else
PY := .venv/bin/python
VENV_DEP := .venv/bin/python
endif

DEPS_STAMP := build/.deps-$(notdir $(PY))-stamp

.PHONY: setup build demo test test-gpu lint bench cuda-check clean help

help:
	@echo "make demo        set up, then run 'pyadv demo --out $(OUT)'"
	@echo "make test        set up, then run the test suite"
	@echo "make test-gpu    set up, then run only the CUDA tests (on a GPU machine)"
	@echo "make lint        ruff over pyadv, tests and benchmarks"
	@echo "make bench       set up, then run the benchmarks (results in benchmarks/results/)"
	@echo "make cuda-check  compile every .cu file with nvcc for sm_80 and sm_90"

.venv/bin/python:
	$(PYTHON) -m venv .venv

# Python dependencies; redone when pyproject.toml changes.
$(DEPS_STAMP): pyproject.toml $(VENV_DEP)
	@mkdir -p build
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install --upgrade "setuptools>=64" wheel cmake ninja
	$(PY) -m pip install --no-build-isolation -e ".[test]"
	# torchattacks: the tests compare against it; --no-deps, since it declares torchvision
	$(PY) -m pip install --no-deps "$(TORCHATTACKS_SPEC)"
	@touch $@

# The extension: an incremental CMake/Ninja build every time, so sources never go stale.
build: $(DEPS_STAMP)
	$(PY) -m pip install --no-build-isolation --no-deps -e . -q

setup: build

demo: build
	$(PY) -m pyadv demo --out $(OUT)

test: build
	$(PY) -m pytest

# On a GPU machine: only the tests that put tensors on CUDA (tests/cuda_harness.py)
test-gpu: build
	$(PY) -m pytest -m cuda

# ruff with the rules in pyproject.toml; CI runs it after the tests
lint: $(DEPS_STAMP)
	$(PY) -m ruff check pyadv tests benchmarks

# The peers benchmarks/image.py compares against; --no-deps keeps the CPU torch in place (their
# declared dependencies would pull a CUDA torch and torchvision).
BENCH_PEERS := kornia kornia-rs pytorch-msssim piq torchmetrics lightning-utilities
# the attack benchmarks' peers: adv-lib (its torchvision/visdom imports are side-stepped by
# pyadv/bench/peers.py) and ART (imports six beyond what the venv has)
ATTACK_PEERS := adv-lib==0.2.8 adversarial-robustness-toolbox==1.20.1 six

bench: build
	$(PY) -m pip install --no-deps $(BENCH_PEERS) || echo "peers not installed: benchmarks/image.py skips them"
	$(PY) -m pip install --no-deps $(ATTACK_PEERS) || echo "attack peers not installed: the attack benchmarks skip them"
	$(PY) benchmarks/fi.py
	$(PY) benchmarks/fi_model.py
	$(PY) benchmarks/swarm.py
	$(PY) benchmarks/lbfgsb.py
	$(PY) benchmarks/image.py
	$(PY) benchmarks/attacks_sparse.py
	$(PY) benchmarks/attacks_gradient.py
	$(PY) benchmarks/attacks_optim.py
	$(PY) benchmarks/attacks_onepixel.py
	$(PY) benchmarks/generate.py
	$(PY) benchmarks/precision.py
	$(PY) benchmarks/reproduce_paper000.py

# Needs no torch; with the venv's torch present it also checks the torch-side CUDA glue.
cuda-check:
	PYTHON=$(PY) tools/cuda_check.sh

clean:
	rm -rf build pyadv/_C*.so
