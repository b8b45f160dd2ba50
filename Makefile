# pipeyard — two commands from a fresh clone: `make demo` and `make test`.
#
# TORCH_SPEC picks the torch build installed before the project (default: plain `torch`;
# CI sets torch==2.13.0, the CPU build on its disk). It is installed first so that pip does
# not resolve `torch` on its own and pull a multi-GB CUDA build. TORCH_INDEX is the package
# index torch comes from; a CPU-only machine gets the small CPU build with
#     make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu

PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch
TORCH_INDEX ?=
PYTEST_ARGS ?=

BIN  := $(VENV)/bin
PIP  := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test reliability docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamps: reinstall when pyproject.toml changes. The torch stamp's name carries a checksum of
# TORCH_SPEC and TORCH_INDEX, so changing either installs torch again (and the project after it).
TORCH_KEY   := $(firstword $(shell printf '%s|%s' '$(TORCH_SPEC)' '$(TORCH_INDEX)' | cksum))
TORCH_STAMP := $(VENV)/.torch-installed-$(TORCH_KEY)

$(TORCH_STAMP): | $(BIN)/python
	rm -f $(VENV)/.torch-installed*
	$(PIP) install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)")
	touch $@

$(VENV)/.runtime-installed: pyproject.toml $(TORCH_STAMP)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.runtime-installed
	$(PIP) install -q -e ".[test]"
	touch $@

demo: $(VENV)/.runtime-installed
	$(BIN)/pipeyard demo

test: $(VENV)/.test-installed
	$(BIN)/pipeyard registry check
	$(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site
	$(BIN)/python -m pytest -n 2 -q $(PYTEST_ARGS)

# The reliability suite's long profile (sweeps, longer hypothesis runs), then its table.
RELIABILITY_REPORT := $(VENV)/reliability.jsonl
reliability: $(VENV)/.test-installed
	rm -f $(RELIABILITY_REPORT)
	PIPEYARD_RELIABILITY_PROFILE=long PIPEYARD_RELIABILITY_REPORT=$(abspath $(RELIABILITY_REPORT)) \
		$(BIN)/python -m pytest -n 2 -q tests/reliability $(PYTEST_ARGS)
	$(BIN)/python scripts/reliability_table.py $(RELIABILITY_REPORT)

docs: $(VENV)/.test-installed
	$(BIN)/mkdocs build --strict --site-dir site

bench: $(VENV)/.test-installed
	$(BIN)/python bench/import_time.py

clean:
	rm -rf $(VENV) site build *.egg-info core/*.egg-info
