# Every target runs inside .venv, which `make install` creates from this project's own files.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export NO_COLOR ?=

.PHONY: install browser test test-live lint fix typecheck docs bench bench-peers bench-retrieval bench-serve bench-memory clean

install: $(BIN)/ragged browser

# Debian's chromium for the page's browser test; never fails the install (see the script).
browser:
	@sh scripts/ensure_chromium.sh

# With the OCR extra (about 95 MB to download), so its tests run here and in CI too.
$(BIN)/ragged: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,ocr]'
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

# LlamaIndex and LangChain, for `make bench` to ingest beside ragged: a venv of their own,
# never ragged's, so nothing of theirs can leak into ragged's install or its timings.
PEERS_VENV := .venv-peers
bench-peers: $(PEERS_VENV)/bin/python

$(PEERS_VENV)/bin/python: bench/peers-requirements.txt
	$(PY) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/pip install --quiet -r bench/peers-requirements.txt
	@touch $@

bench-retrieval: install
	$(BIN)/python bench/retrieval.py

bench-serve: install
	$(BIN)/python bench/serve.py

bench-memory: install
	$(BIN)/python bench/memory.py

clean:
	rm -rf $(VENV) $(PEERS_VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
