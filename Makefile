# The two commands of the README: `make demo` and `make test`. Both create .venv and install
# into it on first use; nothing else needs to be set up by hand.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# How PyTorch is installed. The default is a normal install (a CUDA build on Linux from PyPI, the
# CPU build already on disk where the machine has one). For another build, e.g. CPU-only wheels:
#   make demo TORCH_INSTALL="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH_INSTALL ?= torch==2.13.0
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet
DEMO ?= demo
DEMO_PATIENTS ?= 24
DEMO_EPOCHS ?= 40
PYTEST_ARGS ?= -n 2

.PHONY: demo test lint bench clean install install-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install $(TORCH_INSTALL)
	$(PIP) install -e ".[train]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install $(TORCH_INSTALL)
	$(PIP) install -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/lvseg data phantom $(DEMO)/phantom --patients $(DEMO_PATIENTS) --seed 0 --overwrite
	$(BIN)/lvseg data inspect $(DEMO)/phantom --out $(DEMO)/phantom-montage.png
	$(BIN)/lvseg data inspect $(DEMO)/phantom --json > $(DEMO)/.phantom-summary.json.tmp
	mv $(DEMO)/.phantom-summary.json.tmp $(DEMO)/phantom-summary.json
	rm -rf $(DEMO)/runs/lvnet
	$(BIN)/lvseg train --data $(DEMO)/phantom --out $(DEMO)/runs/lvnet --epochs $(DEMO_EPOCHS)
	$(BIN)/lvseg select $(DEMO)/runs/lvnet
	$(BIN)/lvseg evaluate $(DEMO)/runs/lvnet $(DEMO)/phantom --out $(DEMO)/evaluation --overwrite
	$(BIN)/lvseg export $(DEMO)/runs/lvnet --out $(DEMO)/export --int8 --overwrite
	$(BIN)/lvseg predict $(DEMO)/export $(DEMO)/phantom/dicoms --out $(DEMO)/prediction --overwrite
	$(BIN)/lvseg runs list $(DEMO)/runs
	$(BIN)/lvseg data phantom-truth $(DEMO)/phantom $(DEMO)/prediction --run $(DEMO)/runs/lvnet
	@echo "demo: phantom in $(DEMO)/phantom (inspection: $(DEMO)/phantom-montage.png, $(DEMO)/phantom-summary.json)"
	@echo "demo: run store $(DEMO)/runs/lvnet/run.db; selected model: $(DEMO)/runs/lvnet/selected.json"
	@echo "demo: evaluation of the held-out patients: $(DEMO)/evaluation/report.html"
	@echo "demo: ONNX + int8 export and its model card: $(DEMO)/export/model-card.md"
	@echo "demo: every phantom study segmented with ONNX Runtime (volumes, EF): $(DEMO)/prediction/studies.csv"
	@echo "demo: to see how it learned (curves, gradient flow, alerts, watch slices): $(BIN)/lvseg dashboard $(DEMO)/runs"

test: $(VENV)/.installed-dev
	sh scripts/install-browser.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check lvseg tests benchmarks
	$(BIN)/ruff format --check lvseg tests benchmarks

bench: $(VENV)/.installed-dev
	for script in $(filter-out benchmarks/__init__.py benchmarks/timing.py,$(wildcard benchmarks/*.py)); do \
		$(BIN)/python -m benchmarks.$$(basename $$script .py) || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .hypothesis *.egg-info
