# The two quick-start commands: `make demo` and `make test`. Each sets up .venv on first use,
# with the exact versions of uv.lock (`make lock` refreshes it after pyproject.toml changes).

# The newest Python >= 3.11 on PATH (a pyenv shim that cannot run is skipped), or PYTHON=...
PYTHON_CANDIDATES := python3.14 python3.13 python3.12 python3.11 python3
ifndef PYTHON
PYTHON := $(shell for p in $(PYTHON_CANDIDATES); do \
	found=$$("$$p" -c 'import sys; sys.version_info >= (3, 11) and print(sys.executable)' \
	2>/dev/null) && [ -n "$$found" ] && { echo "$$found"; break; }; done)
endif

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.runtime
# uv comes from PyPI into a bootstrap venv, at the version pinned in pyproject's test group.
UV_HOME := .uv
UV := $(UV_HOME)/bin/uv
UV_VERSION = $(shell sed -n 's/^ *"uv==\([0-9.]*\)".*/\1/p' pyproject.toml)
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
# bytecode compiled at install, as pip does: otherwise each process compiles what it imports
# (where PYTHONDONTWRITEBYTECODE is set, every time: `import litellm` 11 s instead of 6 s)
export UV_COMPILE_BYTECODE := 1
SYNC := $(UV) sync --locked --python "$(PYTHON)"

.PHONY: demo test lint bench lock check-lock check-python print-python clean

check-python:
	$(if $(shell "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo ok),,$(error rlm-tui needs Python 3.11 or newer, $(or $(PYTHON:%=% is not),none is on PATH); set PYTHON=/path/to/python3.X))

print-python: check-python
	@echo "$(PYTHON)"

$(UV): | check-python
	"$(PYTHON)" -m venv $(UV_HOME)
	$(UV_HOME)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

check-lock: $(UV)
	$(if $(shell $(UV) lock --check --offline --quiet 2>/dev/null && echo ok),,$(error uv.lock does not match pyproject.toml: run 'make lock' and commit uv.lock))

# Runtime dependencies only (what `pip install rlm-tui` gets); kept if the full set is there.
$(RUNTIME_STAMP): pyproject.toml uv.lock | check-lock
	$(SYNC) --quiet --no-default-groups --inexact
	touch $(RUNTIME_STAMP)

$(STAMP): pyproject.toml uv.lock | check-lock
	$(SYNC) --quiet --all-groups
	touch $(RUNTIME_STAMP) $(STAMP)

demo: $(RUNTIME_STAMP)
	$(BIN)/rlm-tui demo

lint: $(STAMP)
	$(BIN)/ruff check rlm_tui tests bench
	$(BIN)/ruff format --check rlm_tui tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

test: check-lock lint
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/run_bench.py

# After a dependency change in pyproject.toml; `make lock LOCK_FLAGS=--upgrade` for newer versions.
lock: $(UV)
	$(UV) lock --python "$(PYTHON)" $(LOCK_FLAGS)

clean:
	rm -rf $(VENV) $(UV_HOME) .pytest_cache .mypy_cache .ruff_cache
