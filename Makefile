# Two commands do everything on a fresh machine (Python 3.11+, PostgreSQL for the tests):
#   make demo   set up, then run the yearly job on built-in demo data
#   make test   set up, then run the gates (format, lint, types, lock, dependencies) and the whole test suite (what CI runs)
# `make test-unit` is the fast tier (no PostgreSQL, browser or end-to-end runs) on two workers: under a minute.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION ?= 0.13.9
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
# uv sync installs into this virtual environment (uv's default is .venv too)
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))

.PHONY: setup demo test test-unit lint typecheck browser bench lock

# The exact versions of uv.lock, as the Docker image installs them; --inexact keeps uv itself.
# --compile-bytecode writes the .pyc files once at install: with PYTHONDONTWRITEBYTECODE set (as here
# and in the image) Python would otherwise recompile every imported library on every run, about a
# quarter of `make test-unit`'s CPU time (pandas, scikit-learn, LightGBM, Prefect, Evidently).
$(BIN)/.installed: pyproject.toml uv.lock Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv sync --frozen --inexact --compile-bytecode --extra dev --python $(BIN)/python -q
	touch $@

setup: $(BIN)/.installed

# After changing dependencies in pyproject.toml: re-resolve uv.lock (then commit it).
lock: setup
	$(BIN)/uv lock

demo: setup
	$(BIN)/student-risk demo

# Debian's chromium renders the HTML reports in the browser tests (offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/deptry .
	$(BIN)/uv lock --check

# mypy over the packages ([tool.mypy] in pyproject.toml); part of `make test`.
typecheck: setup
	$(BIN)/mypy

# The fast tier on UNIT_WORKERS pytest-xdist processes, a test file per worker at a time (its
# module fixtures built once); session fixtures such as the trained demo champion are built once
# per worker. `make test-unit UNIT_WORKERS=0` runs it in this process.
UNIT_WORKERS ?= 2
test-unit: setup
	$(BIN)/python -m pytest -q -m "not postgres and not browser and not slow" -n $(UNIT_WORKERS) --dist loadfile

# The whole suite on TEST_WORKERS pytest-xdist processes, a test file per worker at a time: on the
# 2-core machine 531 s against 769 s in one process, measured when it ran slow (2026-12-07), where one
# process came within 15 s of CI's 15 minutes. `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2
test: setup browser lint typecheck
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile
