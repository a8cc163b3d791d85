"""The `chroma run` test server: it starts, stores our vectors, and keeps them across restarts."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import chromadb
import httpx
import pytest
from chromadb.api import ClientAPI
from chromadb.config import Settings

from tests.chroma_server import ChromaServer, ChromaServerError

pytestmark = pytest.mark.server

# Three orthogonal directions and one between the first two: easy to predict nearest neighbours.
IDS = ["north", "east", "up", "north-east"]
VECTORS: list[Sequence[float]] = [
    [1.0, 0.0, 0.0],
    [0.0, 1.0, 0.0],
    [0.0, 0.0, 1.0],
    [0.7, 0.7, 0.0],
]
DOCS = ["goes north", "goes east", "goes up", "goes north-east"]


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """One server for the module: start-up costs about a second."""
    with ChromaServer(tmp_path_factory.mktemp("chroma") / "data") as server:
        yield server


def connect(server: ChromaServer) -> ClientAPI:
    """An HTTP client with the client side's telemetry switched off."""
    assert server.port is not None
    return chromadb.HttpClient(
        host=server.host, port=server.port, settings=Settings(anonymized_telemetry=False)
    )


def fill(client: ClientAPI, name: str) -> None:
    # embedding_function=None: Chroma's default one would download a model on first use.
    collection = client.create_collection(name, embedding_function=None)
    collection.add(
        ids=IDS,
        embeddings=VECTORS,
        documents=DOCS,
        metadatas=[{"source": f"{i}.md"} for i in IDS],
    )


def nearest(client: ClientAPI, name: str, vector: Sequence[float], n: int = 2) -> list[str]:
    collection = client.get_collection(name, embedding_function=None)
    result = collection.query(query_embeddings=[vector], n_results=n)
    return result["ids"][0]


def test_server_answers_heartbeat(chroma_server: ChromaServer) -> None:
    assert chroma_server.running
    assert chroma_server.heartbeat()
    assert chroma_server.url == f"http://127.0.0.1:{chroma_server.port}"
    assert chroma_server.startup_seconds is not None and chroma_server.startup_seconds < 30


def test_add_and_query(chroma_server: ChromaServer) -> None:
    client = connect(chroma_server)
    fill(client, "add-and-query")

    collection = client.get_collection("add-and-query", embedding_function=None)
    assert collection.count() == 4
    almost_north: list[Sequence[float]] = [[1.0, 0.1, 0.0]]
    result = collection.query(
        query_embeddings=almost_north, n_results=2, include=["documents", "metadatas"]
    )
    assert result["ids"] == [["north", "north-east"]]
    assert result["documents"] == [["goes north", "goes north-east"]]
    assert result["metadatas"] == [[{"source": "north.md"}, {"source": "north-east.md"}]]


def test_restart_keeps_data(chroma_server: ChromaServer) -> None:
    client = connect(chroma_server)
    fill(client, "restart")
    url = chroma_server.url

    chroma_server.stop()
    assert not chroma_server.running
    assert not chroma_server.heartbeat()
    chroma_server.start()

    # Same port after a restart, so the client made before it still works.
    assert chroma_server.url == url
    assert client.get_collection("restart", embedding_function=None).count() == 4
    assert nearest(client, "restart", [0.0, 0.0, 1.0], n=1) == ["up"]


def test_kill_then_restart(tmp_path: Path) -> None:
    """A server killed mid-run fails the client fast, and loses nothing it acknowledged."""
    with ChromaServer(tmp_path / "data") as server:
        client = connect(server)
        fill(client, "killed")
        collection = client.get_collection("killed", embedding_function=None)

        server.kill()
        assert not server.running
        # What ragged's store must translate into "Chroma isn't running at <url>".
        with pytest.raises(httpx.ConnectError):
            collection.count()

        server.start()
        assert collection.count() == 4
        assert nearest(client, "killed", [0.0, 1.0, 0.0], n=1) == ["east"]


def test_start_fails_clearly_when_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = ChromaServer(tmp_path / "data", port=port)
        with pytest.raises(ChromaServerError, match="exited") as info:
            server.start()
    # The log tail names the cause, so a failed run explains itself.
    assert "not available" in str(info.value)
    assert not server.running


def test_stop_and_kill_are_safe_when_not_running(tmp_path: Path) -> None:
    server = ChromaServer(tmp_path / "data")
    server.stop()
    server.kill()
    with pytest.raises(ChromaServerError, match="no port"):
        _ = server.url
