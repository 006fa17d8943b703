# The two commands: `make quickstart` (install + run the quickstart) and `make test` (install + run the tests).
# `make docs` builds the documentation site (mkdocs.yml, docs/) into site/, offline, failing on a broken link.
#
# Where things are installed: inside an active virtual environment (or a conda environment) that environment's
# python; otherwise a project virtual environment, .venv, created on first use. pip therefore never installs
# into a system Python, which Debian and Ubuntu refuse anyway (PEP 668, "externally-managed-environment").
PYTHON ?= python3
FMNIST := /usr/share/datasets/fashion-mnist
PYTEST_ARGS ?=

IN_ENV := $(shell $(PYTHON) -c 'import os, sys; print(int(sys.prefix != sys.base_prefix or "CONDA_PREFIX" in os.environ))' 2>/dev/null)
ifeq ($(IN_ENV),1)
PY := $(PYTHON)
ENV_TARGET :=
else
PY := .venv/bin/python
ENV_TARGET := .venv/bin/python
# As if activated: the recipes (and the tests they run) find `splitee` and the venv's python on PATH.
export VIRTUAL_ENV := $(abspath .venv)
export PATH := $(abspath .venv/bin):$(PATH)
endif
PIP := $(PY) -m pip
SPLITEE := $(PY) -m simulator.cli

.PHONY: install data quickstart test test-all docs

# Debian/Ubuntu ship `venv` without ensurepip unless python3-venv is installed: install it when we may.
.venv/bin/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python >= 3.10 is needed; PYTHON=... picks another)" >&2; exit 2; }
	@echo "creating the project virtual environment .venv (from $$(command -v $(PYTHON)))"
	@rm -rf .venv; $(PYTHON) -m venv .venv 2>/dev/null || { \
	  rm -rf .venv; \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    ver=$$($(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")'); \
	    echo "installing python$$ver-venv (apt-get) so that $(PYTHON) can create virtual environments"; \
	    (apt-get install -y -q python3-venv python$$ver-venv >/dev/null 2>&1 || \
	      (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q python3-venv python$$ver-venv >/dev/null)); \
	    $(PYTHON) -m venv .venv; \
	  else \
	    echo "error: '$(PYTHON) -m venv .venv' failed; install your distribution's venv package (Debian/Ubuntu: sudo apt-get install python3-venv), or activate a virtual environment of your own and run make again" >&2; exit 2; \
	  fi; }

install: $(ENV_TARGET)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[test]'

data:
	@if [ ! -d $(FMNIST) ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	      (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null); \
	  else echo "note: $(FMNIST) absent and apt-get unavailable; Fashion-MNIST will be downloaded on first use"; fi; \
	fi

# `splitee run` also writes runs/quickstart/report.html and its figures into the run folder.
quickstart: install data
	$(SPLITEE) run scenarios/quickstart.yaml --out runs/quickstart --overwrite

# pytest's exit status 5 (no test collected) fails the target like any failure, and says so.
test: install data
	@$(PY) -m pytest -q $(PYTEST_ARGS) || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest collected no tests" >&2; exit $$rc; }

test-all: install data
	$(PY) -m pytest -q -m '' $(PYTEST_ARGS)

# --strict: a broken link or anchor, or a page missing from nav, fails the build (mkdocs.yml's validation).
docs: install
	$(PY) -m mkdocs build --strict --site-dir site
