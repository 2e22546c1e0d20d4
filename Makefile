# Two entry points for a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch; an unpinned torch pulls several GB of CUDA wheels.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python examples/demo.py

test: $(VENV)/.installed
	$(BIN)/python -m ruff check sk_slim tests examples
	$(BIN)/python -m pytest -n 2

lint: $(VENV)/.installed
	$(BIN)/python -m ruff check sk_slim tests examples
	$(BIN)/python -m ruff format --check sk_slim tests examples

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
