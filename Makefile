# pkgline: the two commands a newcomer needs.
#   make demo   install everything into .venv and run a simulated line end to end on SQLite
#   make test   install, then ruff, mypy --strict and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test check lint typecheck install bytecode clean

demo: install bytecode
	$(BIN)/pkgline demo

# The suite on one worker more than the cores (most tests wait on servers and subprocesses:
# on 2 cores, 3 workers ran it in 16 min, 4 in 19 with a third more CPU, 2 had taken longer);
# tests that share a fixed resource (the broker on 127.0.0.1:1883) are in one xdist_group.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: install bytecode lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

check: lint typecheck

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

install: $(BIN)/.installed

# The project's own modules compiled once (an editable install leaves them to the first run):
# where PYTHONDONTWRITEBYTECODE is set, every `pkgline` command compiled about 90 of them
# again (some 150 ms a command, and the suite starts hundreds). Only changed files are redone.
bytecode: install
	$(BIN)/python -m compileall -q flows mes drivers simulators pkgline

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
