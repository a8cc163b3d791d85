"""Long-lived processes (`serve`, `chat`) follow what other commands do to a collection.

Reproduced on main: after `ragged reset` in another shell, a running `serve` still returned
the deleted text (search and GET /sources/<id>), did not see the collection ingested next,
and said on every answer that the vector files were deleted; `chat` did the same.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ollama_standin import OllamaStandIn
from tests.ragged_server import RaggedServer, server_env

RAGGED = [sys.executable, "-m", "ragged"]
OLD = "Capybaras are the largest living rodents and graze beside rivers in South America."
NEW = "The kangaroo lighthouse on Cape Wickham was lit in 1861 and stands 48 metres tall."


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two folders, each one markdown file: the collection before and after the reset."""
    made = []
    for name, text in (("before", OLD), ("after", NEW)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{name}.md").write_text(f"# {name.title()}\n\n{text}\n")
        made.append(folder)
    return made[0], made[1]


def ragged(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*RAGGED, *args], env=environ, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


def served(home: Path, ollama: OllamaStandIn) -> dict[str, str]:
    # The stand-in's hashed word vectors score far lower than a trained model's: with one
    # passage in the collection, the relevance gate would otherwise call it unrelated.
    return server_env(home, ollama.host, RAGGED_MIN_SCORE="0.05")


def start_chat(environ: dict[str, str]) -> subprocess.Popen[str]:
    """`ragged chat --json` with pipes: one JSON line on stdout per answered question."""
    return subprocess.Popen(
        [*RAGGED, "chat", "--json"],
        env=environ,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def turn(chat: subprocess.Popen[str], lines: str) -> dict[str, Any]:
    """Send `lines` (commands, then one question) and read that question's answer."""
    assert chat.stdin is not None and chat.stdout is not None
    chat.stdin.write(lines)
    chat.stdin.flush()
    return json.loads(chat.stdout.readline())  # type: ignore[no-any-return]


def search(api: httpx.Client, query: str) -> httpx.Response:
    return api.post("/search", json={"query": query, "mode": "hybrid", "k": 3})


def texts(response: httpx.Response) -> str:
    return " ".join(hit["text"] for hit in response.json()["hits"])


def test_serve_follows_a_reset_and_the_collection_ingested_after_it(
    ollama: OllamaStandIn, tmp_path: Path, env: Path, folders: tuple[Path, Path]
) -> None:
    before, after = folders
    environ = served(env, ollama)
    ragged(environ, "ingest", str(before), "-q")
    with RaggedServer(environ, log=tmp_path / "serve.log") as server:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            found = search(api, "largest living rodents")
            assert found.status_code == 200 and "Capybaras" in texts(found)
            chunk = found.json()["hits"][0]["id"]
            assert api.get(f"/sources/{chunk}").status_code == 200

            ragged(environ, "reset", "--yes")
            gone = search(api, "largest living rodents")
            assert gone.status_code == 404, gone.text
            assert "collection 'default' does not exist" in gone.json()["error"]["message"]
            assert api.get(f"/sources/{chunk}").status_code == 404

            ragged(environ, "ingest", str(after), "-q")
            found = search(api, "kangaroo lighthouse")
            assert found.status_code == 200 and found.json()["notice"] is None
            assert "Cape Wickham" in texts(found) and "Capybaras" not in texts(found)
            asked = api.post("/ask", json={"question": "How tall is the kangaroo lighthouse?"})
            assert asked.status_code == 200 and asked.json()["notice"] is None
            sources = asked.json()["sources"]
            assert sources and all(s["path"].endswith("after.md") for s in sources)
            assert api.get(f"/sources/{chunk}").status_code == 404


def test_chat_follows_a_reset_and_the_collection_ingested_after_it(
    ollama: OllamaStandIn, env: Path, folders: tuple[Path, Path]
) -> None:
    before, after = folders
    environ = served(env, ollama)
    ragged(environ, "ingest", str(before), "-q")
    chat = start_chat(environ)
    try:
        first = turn(chat, "What are the largest living rodents?\n")
        assert any(s["path"].endswith("before.md") for s in first["sources"])
        ragged(environ, "reset", "--yes")
        ragged(environ, "ingest", str(after), "-q")
        second = turn(chat, "How tall is the kangaroo lighthouse?\n")
        assert second.get("notice") is None, second
        assert second["sources"], second
        assert all(s["path"].endswith("after.md") for s in second["sources"])
    finally:
        _, err = chat.communicate(timeout=60)  # closes stdin: the end of the conversation
    assert chat.returncode == 0, err
    assert "deleted" not in err


def test_chat_refuses_to_switch_to_a_collection_reset_since_it_was_opened(
    ollama: OllamaStandIn, env: Path, folders: tuple[Path, Path]
) -> None:
    """Reproduced: `/collection docs` back to a collection chat had opened before, after a
    `reset --collection docs` in another shell, said "now in collection 'docs'" from its
    cache, and the next question failed on the deleted collection instead of the switch."""
    before, after = folders
    environ = served(env, ollama)
    ragged(environ, "ingest", str(before), "-q")
    ragged(environ, "ingest", str(after), "-q", "--collection", "docs")
    chat = start_chat(environ)
    try:
        there = turn(chat, "/collection docs\nHow tall is the kangaroo lighthouse?\n")
        assert all(s["path"].endswith("after.md") for s in there["sources"]), there
        back = turn(chat, "/collection default\nWhat are the largest living rodents?\n")
        assert all(s["path"].endswith("before.md") for s in back["sources"]), back
        ragged(environ, "reset", "--collection", "docs", "--yes")
        assert chat.stdin is not None
        chat.stdin.write("/collection docs\nWhat are the largest living rodents?\n")
    finally:
        out, err = chat.communicate(timeout=60)
    assert chat.returncode == 0, err
    assert err.count("now in collection 'docs'") == 1, err
    assert "collection 'docs' does not exist" in err
    last = json.loads(out.splitlines()[-1])  # still in default, which answers
    assert last["sources"] and all(s["path"].endswith("before.md") for s in last["sources"])


def test_serve_answers_every_request_while_an_ingest_changes_the_collection(
    ollama: OllamaStandIn, tmp_path: Path, env: Path
) -> None:
    """Reproduced: 15-41 of 60 searches beside an ingest failed with 503 "cannot open
    Chroma": one request thread reopened the embedded store (to see the ingest's writes)
    while others were using it."""
    import threading

    folder = tmp_path / "quokkas"
    folder.mkdir()
    for i in range(10):
        (folder / f"n{i}.md").write_text(f"# N {i}\n\nGeneration zero quokka{i} text.\n")
    environ = served(env, ollama)
    ragged(environ, "ingest", str(folder), "-q")
    failures: list[str] = []
    answered = 0
    done = threading.Event()

    def hammer(mode: str) -> None:
        nonlocal answered
        with httpx.Client(base_url=server.url, timeout=60) as api:
            while not done.is_set():
                got = api.post("/search", json={"query": "quokka generation", "mode": mode})
                if got.status_code != 200 or got.json()["notice"]:
                    failures.append(got.text)
                answered += 1

    with RaggedServer(environ, log=tmp_path / "serve.log") as server:
        threads = [threading.Thread(target=hammer, args=(m,)) for m in ("dense", "hybrid") * 2]
        for thread in threads:
            thread.start()
        try:
            for generation in range(1, 4):
                for i in range(3):
                    (folder / f"n{i}.md").write_text(
                        f"# N {i}\n\nGeneration {generation} quokka{i} changed.\n"
                    )
                ragged(environ, "ingest", str(folder), "-q")
                with httpx.Client(base_url=server.url, timeout=60) as api:
                    seen = api.post("/search", json={"query": "quokka0 changed", "mode": "dense"})
                # Under load too, the next search sees what the ingest wrote.
                assert f"Generation {generation} quokka0 changed." in texts(seen)
        finally:
            done.set()
            for thread in threads:
                thread.join()
    assert answered > 20 and failures == [], failures[:3]
