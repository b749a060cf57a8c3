# Two commands do everything on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export WANDB_SILENT := true

.PHONY: install demo lint test test-slow test-all clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,launchers]" --config-settings editable_mode=compat
	touch $@

install: $(BIN)/.installed

demo: install  ## train TRADES on the embedded dataset, test clean + PGD-10, print the tables
	$(BIN)/trixai-train experiment=demo

lint: install  ## the layer contract (import-linter) and ruff
	$(BIN)/lint-imports
	$(BIN)/ruff check .

test: install  ## the default suite (<= 6 min on 2 cores)
	$(BIN)/pytest -m "not slow"

test-slow: install  ## end-to-end runs marked slow
	$(BIN)/pytest -m slow

test-all: install
	$(BIN)/pytest

clean:
	rm -rf outputs/*/ data/ .pytest_cache
