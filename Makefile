# Two commands do everything on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export WANDB_SILENT := true

.PHONY: install demo lint test test-slow test-all browser clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,launchers]" --config-settings editable_mode=compat
	touch $@

install: $(BIN)/.installed

demo: install  ## train B0 (clean warm-up + Fast-AT) on the embedded dataset, run the suites, print the tables
	$(BIN)/trixai-train experiment=demo

lint: install  ## the layer contract (import-linter) and ruff
	$(BIN)/lint-imports
	$(BIN)/ruff check .

test: install browser  ## the default suite (<= 6 min on 2 cores)
	$(BIN)/pytest -m "not slow"

test-slow: install browser  ## end-to-end runs marked slow
	$(BIN)/pytest -m slow

# Debian's chromium for the browser test of report.html (tests/test_html_report.py, slow): installed with apt only
# where apt exists, chromium is missing and we are root (or sudo needs no password); a failed install never fails
# the build, the test is then skipped with a message saying how to install it.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
		|| command -v google-chrome >/dev/null 2>&1; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "make: no apt-get; the report.html browser test will be skipped"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else echo "make: not root; 'sudo apt-get install chromium' enables the report.html browser test"; exit 0; fi; \
	echo "make: installing Debian's chromium (apt-get) for the report.html browser test"; \
	{ $$sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
		|| { $$sudo apt-get update -qq >/dev/null 2>&1 \
		     && $$sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; }; } \
		|| echo "make: installing chromium failed; the report.html browser test will be skipped"

test-all: install
	$(BIN)/pytest

clean:
	rm -rf outputs/*/ data/ .pytest_cache
