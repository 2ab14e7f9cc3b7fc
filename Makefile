# Two commands do everything on a fresh machine: `make demo` and `make test`.
# The virtual environment pins torch through constraints.txt (the local CPU build here); elsewhere, drop the
# constraint or edit it to keep your own torch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/styledrop: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

.PHONY: setup demo test
setup: $(BIN)/styledrop

demo: setup
	$(BIN)/styledrop demo

test: setup
	$(BIN)/python -m pytest
