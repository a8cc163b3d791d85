# Every target runs inside .venv, which `make install` creates from this project's own files.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export NO_COLOR ?=

.PHONY: install test test-live lint fix typecheck docs bench bench-retrieval bench-memory clean

install: $(BIN)/ragged

$(BIN)/ragged: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# The README's test command, and so CI's: the linters the team agreed on, then the suite.
test: lint
	$(BIN)/pytest -q

# The same end-to-end flow against a real Ollama at OLLAMA_HOST; skips when none answers.
test-live: install
	$(BIN)/pytest -q -m live tests/test_live.py

lint: install
	$(BIN)/ruff check ragged tests bench
	$(BIN)/ruff format --check ragged tests bench
	$(BIN)/mypy

fix: install
	$(BIN)/ruff check --fix ragged tests bench
	$(BIN)/ruff format ragged tests bench

docs: install
	$(BIN)/python scripts/gen_docs.py

bench: install
	$(BIN)/python bench/run.py

bench-retrieval: install
	$(BIN)/python bench/retrieval.py

bench-memory: install
	$(BIN)/python bench/memory.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
