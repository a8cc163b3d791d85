"""Flaky services through the real CLI: an Ollama that resets, closes, stalls or fails, and a
Chroma server that is frozen (SIGSTOP). Each gets bounded time and one clear line (issue 11)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.cli import app
from tests.chroma_server import ChromaServer
from tests.ollama_standin import OllamaStandIn
from tests.test_ingest_robust import corpus, stored_ids

RAGGED = [sys.executable, "-m", "ragged"]


def run(runner: CliRunner, *args: str, ok: bool = True):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args), catch_exceptions=not ok)
    if ok:
        assert result.exit_code == 0, result.output
    return result


# -- Ollama drops connections ------------------------------------------------------------------


def test_dropped_connections_are_retried_and_the_run_converges(
    runner: CliRunner, ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    docs = corpus(tmp_path / "docs", n=30)
    # One request in five is reset by the server, as in the report.
    ollama.flaky("/api/embed", 0.2, seed=11)
    result = run(
        runner,
        "ingest",
        str(docs),
        "--json",
        "--embed-batch",
        "4",
        "--chunk-tokens",
        "64",
        "--chunk-overlap",
        "8",
    )
    report = json.loads(result.stdout)
    assert report["pending"] == 0 and report["embed_error"] is None
    assert report["embedded"] == report["chunks"] > 60
    requests = ollama.count("/api/embed")
    assert requests > report["chunks"] / 4 + 5  # resets happened, and were sent again
    chroma, catalog, pending = stored_ids(env)
    assert chroma == catalog and pending == 0


def test_a_closed_connection_is_retried_like_a_reset(ollama: OllamaStandIn) -> None:
    from ragged.llm import LLM

    llm = LLM(ollama.url, timeout=10, retry_delays=(0.01, 0.01))
    ollama.drop_next("/api/embed", reset=False)
    ollama.drop_next("/api/embed")
    assert len(llm.embed(["x"], "nomic-embed-text")) == 1
    assert ollama.count("/api/embed") == 3


def test_persistent_resets_end_in_one_line_naming_the_host(ollama: OllamaStandIn) -> None:
    from ragged.errors import OllamaFailed
    from ragged.llm import LLM

    llm = LLM(ollama.url, timeout=10, retry_delays=(0.01, 0.01))
    ollama.drop_next("/api/embed", times=10)
    with pytest.raises(OllamaFailed) as info:
        llm.embed(["x"], "nomic-embed-text")
    assert info.value.message.startswith(f"lost the connection to Ollama at {ollama.url} (")
    assert "3 attempts" in info.value.message
    assert ollama.count("/api/embed") == 3


# -- Ollama up but failing every embed during search / ask -----------------------------------


def _fail_every_embed(ollama: OllamaStandIn, kind: str) -> None:
    if kind == "http500":
        ollama.fail_next("/api/embed", status=500, times=1000)
    elif kind == "reset":
        ollama.drop_next("/api/embed", times=1000)
    elif kind == "close":
        ollama.drop_next("/api/embed", times=1000, reset=False)
    else:
        ollama.stall_next("/api/embed", times=1000)


@pytest.mark.parametrize("kind", ["http500", "reset", "close", "stall"])
def test_search_and_ask_fall_back_to_keywords_when_embeddings_fail(
    runner: CliRunner,
    ollama: OllamaStandIn,
    docs: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    run(runner, "ingest", str(docs), "--quiet")
    # A short timeout keeps the stall case quick; the retries of the others fit well inside it.
    monkeypatch.setenv("RAGGED_TIMEOUT", "2")
    _fail_every_embed(ollama, kind)
    began = time.monotonic()
    search = run(runner, "search", "capybara rodent", "--json")
    data = json.loads(search.stdout)
    assert data["mode"] == "lexical" and data["hits"]
    assert "notes.txt" in data["hits"][0]["path"]
    assert f"Ollama at http://{ollama.host}" in data["notice"]
    assert "showing lexical (keyword) results only" in data["notice"]

    asked = run(runner, "ask", "capybara rodent", ok=False)
    assert asked.exit_code == 1  # no answer was written, as with a stopped Ollama
    assert "Traceback" not in asked.output
    assert "showing lexical (keyword) results only" in " ".join(asked.stderr.split())
    assert "notes.txt" in asked.stdout
    # Two commands, each bounded by the 2 s timeout (a stall), with room for a slow machine.
    assert time.monotonic() - began < 20


def test_ollama_that_accepts_and_never_answers_is_bounded_by_the_timeout(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(runner, "ingest", str(docs), "--quiet")
    monkeypatch.setenv("RAGGED_TIMEOUT", "1.5")
    ollama.reset()
    # The first request fails fast (a reset), the retry stalls: the retry gets only what is
    # left of the 1.5 s, not a fresh 1.5 s, and nothing is tried after it.
    ollama.drop_next("/api/embed")
    ollama.stall_next("/api/embed", times=1000)
    began = time.monotonic()
    data = json.loads(run(runner, "search", "capybara", "--json").stdout)
    waited = time.monotonic() - began
    assert re.search(
        rf"Ollama at http://{re.escape(ollama.host)} did not answer within 1\.[5-9] s \(2 attempts\)",
        data["notice"],
    ), data["notice"]
    assert ollama.count("/api/embed") == 2
    assert waited < 1.5 + 3  # start-up, the catalog and a lexical search on top


def test_a_stalled_chat_is_bounded_and_named(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(runner, "ingest", str(docs), "--quiet")
    monkeypatch.setenv("RAGGED_TIMEOUT", "1")
    ollama.reset()
    ollama.stall_next("/api/chat", times=10)
    began = time.monotonic()
    result = run(runner, "ask", "capybara rodent", ok=False)
    assert result.exit_code == 1
    assert f"Error: Ollama at http://{ollama.host} did not answer within 1.0 s" in result.stderr
    assert "RAGGED_TIMEOUT" in result.stderr
    assert time.monotonic() - began < 1 + 4
    assert ollama.count("/api/chat") == 1


# -- Chroma server frozen ---------------------------------------------------------------------


@pytest.fixture
def frozen_chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    """A real `chroma run` of our own, to be stopped with SIGSTOP (the shared one stays well)."""
    server = ChromaServer(tmp_path / "chroma-frozen")
    server.start()
    try:
        yield server
    finally:
        if server._proc is not None:
            os.kill(server._proc.pid, signal.SIGCONT)
        server.stop()


def _freeze(server: ChromaServer) -> None:
    assert server._proc is not None
    os.kill(server._proc.pid, signal.SIGSTOP)


def _ragged(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RAGGED, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.server
def test_a_frozen_chroma_server_gives_one_line_not_a_hang(
    frozen_chroma: ChromaServer, ollama: OllamaStandIn, env: Path, docs: Path
) -> None:
    environ = {
        **os.environ,
        "RAGGED_HOME": str(env),
        "OLLAMA_HOST": ollama.host,
        "RAGGED_CHROMA_URL": frozen_chroma.url,
        # Bounded by the store's timeouts; shortened so the test is quick, as a user may.
        "RAGGED_CHROMA_TIMEOUT": "2",
    }
    first = _ragged(environ, "ingest", str(docs), "--json")
    assert first.returncode == 0, first.stderr
    _freeze(frozen_chroma)

    began = time.monotonic()
    # A fresh process: the client is created against the frozen server (its creation used to
    # hang too), then ingest (holding the write lock), search and collections.
    ingest = _ragged(environ, "ingest", str(docs / "notes.txt"))
    listing = _ragged(environ, "collections")
    search = _ragged(environ, "search", "capybara", "--json")
    assert time.monotonic() - began < 60
    frozen = f"the Chroma server at {frozen_chroma.url} did not answer within 2 s"
    for done in (ingest, listing):
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert frozen in " ".join(done.stderr.split())
    # Search still answers from the local keyword index, and says why.
    assert search.returncode == 0, search.stderr
    found = json.loads(search.stdout)
    assert found["mode"] == "lexical" and "notes.txt" in found["hits"][0]["path"]
    assert frozen in found["notice"]
    # Unfrozen, the next run works and the lock was released.
    os.kill(frozen_chroma._proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
    again = _ragged(environ, "ingest", str(docs), "--json")
    assert again.returncode == 0, again.stderr
