"""Shared fixtures: an isolated data dir for every test, the Ollama stand-in, tiny documents."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.chroma_server import ChromaServer
from tests.ollama_standin import OllamaStandIn

DATA = Path(__file__).parent / "data"
SHARED_BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"
CHAT_MODEL = "llama3.2:3b"
EMBED_MODEL = "nomic-embed-text"


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own RAGGED_HOME, and nothing from the developer's shell leaks in."""
    proxies = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    for var in list(os.environ):
        if (
            var.startswith("RAGGED_")
            or var in ("OLLAMA_HOST", "NO_COLOR", "FORCE_COLOR", "SSL_CERT_FILE", "SSL_CERT_DIR")
            or var.lower() in proxies  # the stand-in's traffic must not go through a proxy
        ):
            monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("RAGGED_HOME", str(home))
    # The machine's memory would otherwise pick the chat model; tests must not depend on it.
    monkeypatch.setenv("RAGGED_CHAT_MODEL", CHAT_MODEL)
    monkeypatch.setenv("TERMINAL_WIDTH", "160")
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")
    # tiktoken's own cache, not the developer's: the encoding must come from what ragged ships.
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


# -- Chroma server mode ----------------------------------------------------------------------
# The suite's end-to-end modules run twice: against the embedded store and against one real
# `chroma run` server per session, each test in a database of its own (a database costs a
# few milliseconds; a server start about a second).


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """One `chroma run` on 127.0.0.1, a free port and a temporary path, for the whole session."""
    server = ChromaServer(tmp_path_factory.mktemp("chroma-server") / "data")
    server.start()
    yield server
    server.stop()


_database_numbers = itertools.count()


def new_chroma_database(server: ChromaServer) -> str:
    """A fresh, empty database on the server (names: 3-512 of [a-zA-Z0-9._-])."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    name = f"test-{os.getpid()}-{next(_database_numbers)}"
    admin = chromadb.AdminClient(
        ChromaSettings(
            chroma_api_impl="chromadb.api.fastapi.FastAPI",
            chroma_server_host=server.host,
            chroma_server_http_port=server.port,
            anonymized_telemetry=False,
        )
    )
    admin.create_database(name)
    return name


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def chroma_mode(request: pytest.FixtureRequest, env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once with the embedded store and once against a real Chroma server."""
    if request.param == "server":
        server: ChromaServer = request.getfixturevalue("chroma_server")
        if not server.running:
            # A test that stopped or killed the shared server must not break the ones after it.
            server.start()
        monkeypatch.setenv("RAGGED_CHROMA_URL", server.url)
        monkeypatch.setenv("RAGGED_CHROMA_DATABASE", new_chroma_database(server))
    return str(request.param)
