# Entry points for a fresh machine: `make demo`, `make test` and `make docs` (README);
# `make wheel-check` builds and checks the sdist and wheel (.ci/run runs all four).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch; an unpinned torch pulls several GB of CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
# What `make docs` generates besides docs/_build (sphinx-gallery, autosummary).
DOCS_GENERATED := docs/auto_examples docs/gen_modules docs/generated \
	docs/sg_execution_times.rst

.PHONY: demo test lint docs wheel-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# Extras on top of the test environment, so that `make test` stays light.
$(VENV)/.installed-demo: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[demo]"
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $@

$(VENV)/.installed-release: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[release]"
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/python examples/demo.py

test: $(VENV)/.installed
	$(BIN)/python -m ruff check sk_slim tests examples benchmarks
	$(BIN)/python -m pytest -n 2

lint: $(VENV)/.installed
	$(BIN)/python -m ruff check sk_slim tests examples benchmarks
	$(BIN)/python -m ruff format --check sk_slim tests examples benchmarks

# A clean build every time: the gallery re-runs the examples against the current
# code (sphinx-gallery would otherwise keep the output of unchanged examples).
docs: $(VENV)/.installed-docs
	rm -rf docs/_build $(DOCS_GENERATED)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html
	@echo "Open docs/_build/html/index.html"

# `python -m build` into dist/ (sdist, and the wheel built from it), their contents
# checked, then the wheel (not editable) installed into a fresh build/wheel-venv, CPU
# torch first, and the four estimators fitted from outside the source tree.
wheel-check: $(VENV)/.installed-release
	BUILD_PYTHON=$(BIN)/python PYTHON=$(PYTHON) TORCH_SPEC="$(TORCH_SPEC)" \
		WHEEL_VENV=build/wheel-venv bash .ci/check_wheel.sh

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache docs/_build $(DOCS_GENERATED) build/demo \
		dist build/wheel-venv build/wheel-build.log
