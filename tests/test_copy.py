"""`ragged copy`: a collection moves between embedded and a real `chroma run` server, unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.catalog import open_catalog
from ragged.cli import app
from ragged.config import load_settings
from ragged.errors import EmbeddingMismatch, StoreError
from ragged.index import open_index
from ragged.store import open_store
from ragged.transfer import copy_collection
from tests.chroma_server import ChromaServer
from tests.conftest import new_chroma_database
from tests.ollama_standin import OllamaStandIn
from tests.test_chat_cli import saved_passages
from tests.test_data_dir import files_holding

pytestmark = pytest.mark.server

QUERIES = [
    "largest living rodent capybara",
    "lighthouse keeper salary",
    "How long does the ferry to Zanzibar take?",
    "Which port does the Foxtrot daemon listen on?",
]


def run(runner: CliRunner, *args: str, ok: bool = True):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args), catch_exceptions=not ok)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def search(runner: CliRunner, query: str, mode: str, *flags: str) -> list[dict]:  # type: ignore[type-arg]
    out = run(runner, *flags, "search", query, "--mode", mode, "--json").stdout
    return json.loads(out)["hits"]


def same_hits(a: list[dict], b: list[dict]) -> None:  # type: ignore[type-arg]
    assert [h["id"] for h in a] == [h["id"] for h in b]
    for x, y in zip(a, b, strict=True):
        assert x["score"] == pytest.approx(y["score"], abs=1e-6)
        assert {k: v for k, v in x.items() if k != "score"} == {
            k: v for k, v in y.items() if k != "score"
        }


def listing(runner: CliRunner, *flags: str) -> list[dict]:  # type: ignore[type-arg]
    files = json.loads(run(runner, *flags, "list", "--json").stdout)
    return [{k: f[k] for k in ("path", "label", "chunks", "pages", "status")} for f in files]


@pytest.fixture
def server_db(chroma_server: ChromaServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database on the shared server, named by RAGGED_CHROMA_DATABASE; returns the URL.

    RAGGED_CHROMA_URL stays unset, so the configured store is the embedded one.
    """
    monkeypatch.setenv("RAGGED_CHROMA_DATABASE", new_chroma_database(chroma_server))
    # The stand-in's hashed word vectors score far lower than a trained model's.
    monkeypatch.setenv("RAGGED_MIN_SCORE", "0.05")
    return chroma_server.url


def test_copied_collection_answers_search_identically(
    runner: CliRunner,
    ollama: OllamaStandIn,
    docs: Path,
    server_db: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    run(runner, "ingest", str(docs), "--quiet")
    embedded = {(q, m): search(runner, q, m) for q in QUERIES for m in ("dense", "hybrid")}
    assert all(embedded.values())
    files = listing(runner)

    report = json.loads(run(runner, "copy", "--to", server_db, "--json").stdout)
    settings = load_settings()
    stored = open_store(settings).count()
    assert report["chunks"] == stored and report["files"] == 5
    assert report["source"] == str(settings.home / "chroma") and report["target"] == server_db
    assert (report["embed_model"], report["dimensions"]) == ("nomic-embed-text", 768)

    on_server = ("--chroma-url", server_db)
    for (query, mode), hits in embedded.items():
        same_hits(search(runner, query, mode, *on_server), hits)
    hit = search(runner, "sync_interval", "lexical", *on_server)[0]
    assert hit["path"] == str(docs / "guide" / "install.md")
    assert listing(runner, *on_server) == files
    cols = json.loads(run(runner, *on_server, "collections", "--json").stdout)
    assert cols == [{"name": "default", "chunks": stored, "embed_model": "nomic-embed-text"}]

    # And back, into a machine that has never seen these files: the same answers again.
    monkeypatch.setenv("RAGGED_HOME", str(tmp_path / "fresh-home"))
    back = json.loads(run(runner, "copy", "--from", server_db, "--json").stdout)
    assert back["chunks"] == stored and back["target"] == str(tmp_path / "fresh-home" / "chroma")
    for (query, mode), hits in embedded.items():
        same_hits(search(runner, query, mode), hits)
    assert listing(runner) == files

    # The rebuilt catalog is good enough for ingest: same files, nothing embedded again.
    before = ollama.count("/api/embed")
    again = json.loads(run(runner, "ingest", str(docs), "--json").stdout)
    assert again["unchanged"] == 5 and again["added"] == again["updated"] == 0
    assert ollama.count("/api/embed") == before


def test_copy_keeps_vectors_texts_and_metadata(
    ollama: OllamaStandIn, docs: Path, server_db: str
) -> None:
    from ragged.ingest import ingest
    from ragged.llm import connect

    settings = load_settings()
    index = open_index(settings, create=True)
    source = index.store
    assert ingest([docs], index, connect(settings)).ok
    target = open_store(load_settings({"chroma_url": server_db}))

    assert copy_collection(source, target, batch=3) == source.count()
    before = {id_: (v, text, meta) for id_, v, text, meta in source.iter_all()}
    after = {id_: (v, text, meta) for id_, v, text, meta in target.iter_all()}
    assert after.keys() == before.keys()
    for id_, (vector, text, meta) in before.items():
        assert (after[id_][1], after[id_][2]) == (text, meta)
        # Equal to float32 precision: a cosine collection normalises each vector it is given
        # (embedded and server alike), and normalising a float32 unit vector again may move
        # an element by one unit in the last place.
        assert after[id_][0] == pytest.approx(vector, abs=1e-7)
    assert target.embedding == source.embedding == ("nomic-embed-text", 768)


def test_copy_again_writes_no_duplicates(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path, server_db: str
) -> None:
    run(runner, "ingest", str(docs), "--quiet")
    first = json.loads(run(runner, "copy", "--to", server_db, "--json").stdout)
    second = json.loads(run(runner, "copy", "--to", server_db, "--json").stdout)
    assert first["files"] == second["files"] == 5 and first["unchanged"] == 0
    # Nothing is sent again: the target's catalog and store already hold every chunk.
    assert second["chunks"] == 0 and second["unchanged"] == first["chunks"]

    settings = load_settings({"chroma_url": server_db})
    store, catalog = open_store(settings), open_catalog(settings)
    ids = {c.id for f in catalog.files() for c in catalog.chunks_of(f.path)}
    assert store.count() == len(store.ids()) == len(ids) == first["chunks"]
    assert store.ids() == ids and catalog.pending_count() == 0


def test_copy_replaces_an_older_version_of_a_file(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path, server_db: str
) -> None:
    run(runner, "ingest", str(docs), "--quiet")
    run(runner, "copy", "--to", server_db, "--quiet")
    (docs / "notes.txt").write_text("Okapis are related to giraffes, not zebras.\n")
    run(runner, "ingest", str(docs), "--quiet")
    run(runner, "copy", "--to", server_db, "--quiet")

    settings = load_settings({"chroma_url": server_db})
    store, catalog = open_store(settings), open_catalog(settings)
    notes = catalog.chunks_of(str(docs / "notes.txt"))
    assert len(notes) == 1 and "Okapis" in notes[0].text
    # The old version's chunks are gone from the server, not left beside the new ones.
    assert store.ids() == {c.id for f in catalog.files() for c in catalog.chunks_of(f.path)}
    assert store.count() == open_store(load_settings()).count()


def test_copy_into_a_collection_of_another_model_is_refused(
    runner: CliRunner,
    ollama: OllamaStandIn,
    docs: Path,
    server_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ollama.add_model("all-minilm:latest")
    run(runner, "--chroma-url", server_db, "ingest", str(docs), "--embed-model", "all-minilm", "-q")
    run(runner, "ingest", str(docs), "--quiet")
    target = open_store(load_settings({"chroma_url": server_db}))
    before = target.count()

    result = run(runner, "copy", "--to", server_db, ok=False)
    assert result.exit_code == 1
    assert "was built with embedding model all-minilm (384 dimensions)" in result.stderr
    assert "not nomic-embed-text (768 dimensions)" in result.stderr
    assert "another --collection" in result.stderr
    assert target.count() == before and target.embedding == ("all-minilm", 384)
    with pytest.raises(EmbeddingMismatch):
        copy_collection(open_store(load_settings()), target)


def test_copy_from_embedded_into_a_configured_server(
    runner: CliRunner,
    ollama: OllamaStandIn,
    docs: Path,
    server_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAGGED_CHROMA_URL", server_db)
    # An empty --chroma-url means the embedded store, whatever the environment says.
    run(runner, "--chroma-url", "", "ingest", str(docs), "--quiet")
    report = json.loads(run(runner, "copy", "--from", "embedded", "--json").stdout)
    assert report["target"] == server_db and report["files"] == 5
    same_hits(
        search(runner, "capybara", "hybrid"),
        search(runner, "capybara", "hybrid", "--chroma-url", ""),
    )


def test_chunks_still_pending_are_named(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path, server_db: str
) -> None:
    run(runner, "ingest", str(docs), "--quiet")
    (docs / "late.md").write_text("# Late\n\nWritten while Ollama was away.\n")
    ollama.remove_model("nomic-embed-text:latest")
    run(runner, "ingest", str(docs), "--quiet", ok=False)
    result = run(runner, "copy", "--to", server_db)
    assert "1 chunks of 'default' await embeddings" in result.stderr
    assert "copied" in result.stdout and "(5 files, nomic-embed-text" in result.stdout


def test_copy_errors_are_clear(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path, server_db: str
) -> None:
    result = run(runner, "copy", "--to", server_db, "--collection", "nothing-here", ok=False)
    assert result.exit_code == 1
    assert "collection 'nothing-here' does not exist at" in result.stderr

    result = run(runner, "copy", "--to", "embedded", ok=False)
    assert result.exit_code == 1 and "the same store" in result.stderr

    result = run(runner, "copy", ok=False)
    assert result.exit_code == 2 and "--to URL or --from URL" in result.output

    with pytest.raises(StoreError, match="does not exist"):
        copy_collection(open_store(load_settings(), "absent"), open_store(load_settings(), "x"))


@pytest.mark.parametrize("flag", ["--to", "--from"])
def test_a_server_named_by_the_flag_that_is_down_is_blamed_on_the_flag(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path, flag: str
) -> None:
    """Reproduced: `copy --to URL` of a server that is down hinted "unset RAGGED_CHROMA_URL",
    a variable that was not set: the URL came from --to."""
    from tests.chroma_server import free_port

    run(runner, "ingest", str(docs), "-q")
    url = f"http://127.0.0.1:{free_port()}"
    result = run(runner, "copy", flag, url, ok=False)
    assert result.exit_code == 1
    assert f"the Chroma server at {url} is not running" in result.stderr
    assert "RAGGED_CHROMA_URL" not in result.stderr
    assert f"the URL given to {flag}" in result.stderr


def test_a_conversation_that_cannot_be_rewritten_is_named_by_copy(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path, server_db: str, env: Path
) -> None:
    """A copy over an older version of a file blanks its passages in saved conversations as an
    ingest does; one it cannot rewrite now (a full disk) is named, as by ingest."""
    run(runner, "ingest", str(docs), "--quiet")
    run(runner, "copy", "--to", server_db, "--quiet")
    asked = runner.invoke(
        app, ["--chroma-url", server_db, "chat"], input="What is the largest living rodent?\n"
    )
    assert asked.exit_code == 0, asked.output
    saved = next((env / "conversations").glob("*.json"))
    assert saved_passages(env, "notes.txt")
    (docs / "notes.txt").write_text("Okapis are related to giraffes, not zebras.\n")
    run(runner, "ingest", str(docs), "--quiet")
    assert saved_passages(env, "notes.txt")  # the server's copy is still the old one
    # Where the rewrite goes first (this process writes it): a directory there makes it fail.
    blocker = saved.with_suffix(f".tmp{os.getpid()}")
    blocker.mkdir()
    try:
        result = run(runner, "copy", "--to", server_db, "--json")
        report = json.loads(result.stdout)
        assert report["unblanked"].startswith(
            f"could not blank the passages of deleted text in the saved conversation {saved}: "
        )
        assert " ".join(result.stderr.split()).count(f"saved conversation {saved}:") == 1
    finally:
        blocker.rmdir()
    assert saved_passages(env, "notes.txt")
    # The ids wait in the server collection's catalog: its next removal blanks them.
    run(runner, "--chroma-url", server_db, "remove", str(docs / "reference.rst"), "--yes")
    assert saved_passages(env, "notes.txt") == []


def test_copy_over_an_older_version_leaves_its_text_in_no_file_here(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path, server_db: str, env: Path
) -> None:
    """A copy that replaces a file's older version deletes its chunks here: their text goes
    from the embedded store's and the catalog's files, as after `remove` or `ingest`."""
    run(runner, "--chroma-url", server_db, "ingest", str(docs), "--quiet")
    run(runner, "copy", "--from", server_db, "--quiet")
    assert "chroma/chroma.sqlite3" in files_holding(env, "underwater for five minutes")
    (docs / "notes.txt").write_text("Okapis are related to giraffes, not zebras.\n")
    run(runner, "--chroma-url", server_db, "ingest", str(docs), "--quiet")
    run(runner, "copy", "--from", server_db, "--quiet")
    assert files_holding(env, "underwater for five minutes") == []
    assert "chroma/chroma.sqlite3" in files_holding(env, "related to giraffes")
