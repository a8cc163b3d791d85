"""Shared fixtures: an isolated data dir for every test, the Ollama stand-in, tiny documents."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.ollama_standin import OllamaStandIn

DATA = Path(__file__).parent / "data"
SHARED_BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"
CHAT_MODEL = "llama3.2:3b"
EMBED_MODEL = "nomic-embed-text"


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own RAGGED_HOME, and nothing from the developer's shell leaks in."""
    for var in list(os.environ):
        if var.startswith("RAGGED_") or var in ("OLLAMA_HOST", "NO_COLOR", "FORCE_COLOR"):
            monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("RAGGED_HOME", str(home))
    # The machine's memory would otherwise pick the chat model; tests must not depend on it.
    monkeypatch.setenv("RAGGED_CHAT_MODEL", CHAT_MODEL)
    monkeypatch.setenv("TERMINAL_WIDTH", "160")
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")
    # Nothing in the suite may reach the network; an unroutable proxy makes any attempt fail fast.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))
    return home


@pytest.fixture
def ollama(monkeypatch: pytest.MonkeyPatch) -> Iterator[OllamaStandIn]:
    """A running Ollama stand-in with the default embedding and chat models pulled."""
    with OllamaStandIn(models=(f"{EMBED_MODEL}:latest", CHAT_MODEL)) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        yield server


@pytest.fixture
def ollama_down(monkeypatch: pytest.MonkeyPatch) -> str:
    """OLLAMA_HOST pointing at a port nothing listens on."""
    with OllamaStandIn() as server:
        host = server.host
    monkeypatch.setenv("OLLAMA_HOST", host)
    return host


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A small tree of md, txt, rst, pdf and html documents with known facts in them."""
    root = tmp_path / "docs"
    shutil.copytree(DATA / "docs", root)
    return root


@pytest.fixture
def settings(env: Path):  # type: ignore[no-untyped-def]
    from ragged.config import load_settings

    return load_settings()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def bench_dir(*parts: str) -> Path:
    """A folder of ../shared/bench, or a skip when this checkout has none beside it."""
    path = SHARED_BENCH.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (shared benchmark data is not beside this checkout)")
    return path
