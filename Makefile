# Two entry points, each self-contained on a fresh machine: `make demo` and `make test`.
# Both create the virtual environment on first use. TORCH pins the CPU build that the
# machine has on disk so pip never pulls a multi-GB CUDA build; override it on a GPU box
# (e.g. `make test TORCH=torch`).
VENV ?= .venv
TORCH ?= torch==2.13.0
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test clean-venv

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/emotrace demo

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
