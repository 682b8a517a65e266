# Two entry points, each self-contained on a fresh machine: `make demo` and `make test`.
# Both create the virtual environment on first use. TORCH pins torch, and TORCH_INDEX adds
# PyTorch's CPU wheel index, whose `+cpu` builds pip prefers to PyPI's CUDA ones: so pip never
# pulls a multi-GB CUDA build onto a machine without a GPU (where the index is unreachable, a
# local or mirrored CPU wheel is used). On a GPU box: `make test TORCH=torch TORCH_INDEX=`.
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test clean-venv

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/emotrace demo

test: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
