# The two commands: `make quickstart` (install + run the quickstart) and `make test` (install + run the tests).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: install data quickstart test test-all

install:
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[test]'

data:
	@if [ ! -d $(FMNIST) ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	      (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null); \
	  else echo "note: $(FMNIST) absent and apt-get unavailable; Fashion-MNIST will be downloaded on first use"; fi; \
	fi

quickstart: install data
	splitee run scenarios/quickstart.yaml --out runs/quickstart --overwrite
	splitee report runs/quickstart --out runs/quickstart/report.html

test: install data
	$(PYTHON) -m pytest -q

test-all: install data
	$(PYTHON) -m pytest -q -m ''
