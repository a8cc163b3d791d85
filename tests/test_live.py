"""The end-to-end flow against a real Ollama (`make test-live`); skipped when none answers.

Uses OLLAMA_HOST (and RAGGED_CHAT_MODEL, if set) from the shell that started pytest, read
at import time because the suite's autouse fixture clears them for every other test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragged.config import normalize_ollama_host
from tests.conftest import DATA, bench_dir

pytestmark = pytest.mark.live

LIVE_HOST = normalize_ollama_host(os.environ.get("OLLAMA_HOST"))
LIVE_CHAT_MODEL = os.environ.get("RAGGED_CHAT_MODEL")
EMBED_MODEL = "nomic-embed-text"


@pytest.fixture(scope="module")
def live() -> dict[str, str]:
    """Environment for a real `ragged`, or a skip saying what is missing."""
    from ragged.config import load_settings
    from ragged.errors import RaggedError
    from ragged.llm import LLM
    from ragged.models import resolve_chat_model

    llm = LLM(LIVE_HOST, timeout=600, retry_delays=())
    try:
        installed = llm.list_models()
    except RaggedError as exc:
        pytest.skip(f"no Ollama at {LIVE_HOST}: {exc.message}")
    chat = LIVE_CHAT_MODEL or resolve_chat_model(load_settings({"chat_model": None}))[0]
    for model in (EMBED_MODEL, chat):
        if not llm.has_model(model, installed):
            pytest.skip(f"{model} is not pulled into Ollama at {LIVE_HOST}: `ollama pull {model}`")
    return {"OLLAMA_HOST": LIVE_HOST, "RAGGED_CHAT_MODEL": chat}


def ragged(
    env: dict[str, str], *args: str, timeout: float = 3600
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "ragged", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_live_small_tree(live: dict[str, str], tmp_path: Path) -> None:
    env = {**live, "RAGGED_HOME": str(tmp_path / "home")}
    ragged(env, "ingest", str(DATA / "docs"))
    answer = ragged(env, "ask", "How much was the lighthouse keeper paid in 1890?", "--json")
    data = json.loads(answer.stdout)
    assert "40" in data["answer"]
    assert any(
        s["cited"] and s["path"].endswith("report.pdf") and s["page"] == 2 for s in data["sources"]
    )


def test_live_markdown_corpus(live: dict[str, str], tmp_path: Path) -> None:
    markdown = bench_dir("corpus", "markdown")
    env = {**live, "RAGGED_HOME": str(tmp_path / "home")}
    ragged(env, "ingest", str(markdown), "--quiet")
    hits = json.loads(
        ragged(env, "search", "generate a Tarsnap key file", "--json", "-k", "5").stdout
    )
    assert "tldr-common/tarsnap-keygen.md" in [h["rel_path"] for h in hits["hits"]]
    answer = ragged(env, "ask", "How do I generate a key file for Tarsnap?")
    assert "tarsnap-keygen" in answer.stdout.split("Sources", 1)[-1]
