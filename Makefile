# Two commands do everything on a fresh machine (Python 3.11+, PostgreSQL for the tests):
#   make demo   set up, then run the yearly job on built-in demo data
#   make test   set up, then run lint and the whole test suite (what CI runs)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: setup demo test lint browser bench

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install --python $(BIN)/python -q -e ".[dev]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/student-risk demo

# Debian's chromium renders the HTML reports in the browser tests (offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

lint: setup
	$(BIN)/ruff check .

test: setup browser lint
	$(BIN)/python -m pytest -q
