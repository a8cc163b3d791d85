"""A shared Chroma server works from every machine (issue 13): the server is the truth.

Two data dirs (`--home A`, `--home B`) stand in for two machines sharing one real Chroma
server database; each machine's catalog is a cache that must follow what the other writes.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ragged.cli import app
from ragged.config import load_settings
from ragged.lock import write_lock
from ragged.store import Store, open_store
from tests.chroma_server import ChromaServer, ChromaTokenServer
from tests.conftest import new_chroma_database
from tests.ollama_standin import OllamaStandIn
from tests.ragged_server import RaggedServer, server_env
from tests.test_chat_cli import chat_answering, saved_passages
from tests.test_data_dir import files_holding

pytestmark = pytest.mark.server
RAGGED = [sys.executable, "-m", "ragged"]
QUERIES = [
    "largest living rodent capybara",
    "lighthouse keeper salary",
    "How long does the ferry to Zanzibar take?",
    "Which port does the Foxtrot daemon listen on?",
]


@pytest.fixture
def server(chroma_server: ChromaServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[ChromaServer]:
    """A fresh database on the session's `chroma run`, named in the environment of both."""
    if not chroma_server.running:
        chroma_server.start()
    monkeypatch.setenv("RAGGED_CHROMA_URL", chroma_server.url)
    monkeypatch.setenv("RAGGED_CHROMA_DATABASE", new_chroma_database(chroma_server))
    # The stand-in's hashed word vectors score far lower than a trained model's.
    monkeypatch.setenv("RAGGED_MIN_SCORE", "0.05")
    yield chroma_server


class Machine:
    """One machine: its own data dir, the shared server from the environment."""

    def __init__(self, runner: CliRunner, home: Path) -> None:
        self.runner, self.home = runner, home

    def run(self, *args: str, ok: bool = True):  # type: ignore[no-untyped-def]
        result = self.runner.invoke(app, ["--home", str(self.home), *args], catch_exceptions=not ok)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str) -> dict | list:  # type: ignore[type-arg]
        return json.loads(self.run(*args, "--json").stdout)

    def search(self, query: str, *args: str) -> list[dict]:  # type: ignore[type-arg]
        return self.json("search", query, *args)["hits"]  # type: ignore[call-overload,no-any-return]

    def listing(self) -> list[dict]:  # type: ignore[type-arg]
        return self.json("list")  # type: ignore[return-value]


@pytest.fixture
def a(runner: CliRunner, tmp_path: Path, server: ChromaServer) -> Machine:
    return Machine(runner, tmp_path / "machine-a")


@pytest.fixture
def b(runner: CliRunner, tmp_path: Path, server: ChromaServer) -> Machine:
    return Machine(runner, tmp_path / "machine-b")


def server_ids() -> list[str]:
    """Every chunk id the server holds, read from the server itself (duplicates included)."""
    store = open_store(load_settings())
    return [id_ for id_, _, _ in store.iter_texts()]


def test_a_second_machine_searches_and_asks_like_the_first(
    ollama: OllamaStandIn, docs: Path, a: Machine, b: Machine
) -> None:
    a.run("ingest", str(docs), "-q")
    for query in QUERIES:
        for mode in ("hybrid", "dense", "lexical"):
            theirs, ours = a.search(query, "--mode", mode), b.search(query, "--mode", mode)
            assert ours and [h["id"] for h in ours] == [h["id"] for h in theirs], (query, mode)
            assert [h["label"] for h in ours] == [h["label"] for h in theirs]
            assert [h["score"] for h in ours] == pytest.approx([h["score"] for h in theirs])
    filtered = b.search("ferry capybara quorum", "--path", "*.txt")
    assert {Path(h["path"]).name for h in filtered} == {"notes.txt"}
    fields = ("path", "label", "chunks", "pages", "status")
    assert [{k: f[k] for k in fields} for f in b.listing()] == [
        {k: f[k] for k in fields} for f in a.listing()
    ]
    asked_a = a.json("ask", "How long does the ferry to Zanzibar take?")
    asked_b = b.json("ask", "How long does the ferry to Zanzibar take?")
    assert asked_b["answered"] and asked_b["answer"] == asked_a["answer"]
    assert [s["label"] for s in asked_b["sources"]] == [s["label"] for s in asked_a["sources"]]

    # B's own ingest of the same folder (a shared mount) finds everything in place.
    embeds = ollama.count("/api/embed")
    again = b.json("ingest", str(docs))
    assert again["unchanged"] == 5 and again["added"] == again["updated"] == 0
    assert ollama.count("/api/embed") == embeds


def test_what_one_machine_removes_or_changes_the_other_follows(
    ollama: OllamaStandIn, docs: Path, a: Machine, b: Machine
) -> None:
    a.run("ingest", str(docs), "-q")
    assert b.search("largest living rodent capybara")[0]["path"].endswith("notes.txt")

    a.run("remove", str(docs / "notes.txt"))
    for mode in ("hybrid", "dense", "lexical"):
        found = b.search("largest living rodent capybara", "--mode", mode)
        assert all(not h["path"].endswith("notes.txt") for h in found), mode
    asked = b.json("ask", "What is the largest living rodent?")
    assert all(not s["path"].endswith("notes.txt") for s in asked["sources"])
    assert all(not f["path"].endswith("notes.txt") for f in b.listing())

    (docs / "reference.rst").write_text("Okapis\n======\n\nOkapis are related to giraffes.\n")
    a.run("ingest", str(docs), "-q")
    top = b.search("okapis giraffes", "--mode", "lexical")[0]
    assert top["path"].endswith("reference.rst") and "Okapis are related" in top["text"]
    ids = server_ids()
    assert len(ids) == len(set(ids))  # the old version's chunks are gone, not beside the new


def test_what_another_machine_changes_or_resets_leaves_no_passage_in_this_ones_chats(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path, a: Machine, b: Machine
) -> None:
    """Machine B's saved conversations kept the passages of a file that machine A changed,
    and of a collection A reset, though B's searches no longer found them."""
    a.run("ingest", str(docs), "-q")
    questions = "What is the largest living rodent?\nHow long does the ferry to Zanzibar take?\n"
    chatted = runner.invoke(app, ["--home", str(b.home), "chat"], input=questions)
    assert chatted.exit_code == 0, chatted.output
    assert saved_passages(b.home, "notes.txt") and saved_passages(b.home, "travel.html")
    notes = docs / "notes.txt"
    notes.write_text(notes.read_text().replace("five minutes", "a few minutes"))
    a.run("ingest", str(docs), "-q")
    b.search("capybara")  # B's cache catches up with the server
    assert saved_passages(b.home, "notes.txt") == [] and saved_passages(b.home, "travel.html")
    a.run("reset", "--yes")
    assert b.run("search", "capybara", ok=False).exit_code == 1
    assert saved_passages(b.home, "travel.html") == []


def test_a_running_chat_on_the_other_machine_does_not_write_the_old_passages_back(
    ollama: OllamaStandIn, docs: Path, a: Machine, b: Machine
) -> None:
    """Found in review: B's chat catches up with the server before each question, which
    blanked the passages on disk, and then saved its whole conversation from memory."""
    a.run("ingest", str(docs), "-q")
    proc = chat_answering(ollama, b.home, "What is the largest living rodent?", "notes.txt")
    try:
        notes = docs / "notes.txt"
        notes.write_text(notes.read_text().replace("five minutes", "a few minutes"))
        a.run("ingest", str(docs), "-q")
        _, err = proc.communicate("How long does the ferry to Zanzibar take?\n", timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    # The old version's passage is blank (the second answer may have given the new one).
    assert not [t for t in saved_passages(b.home, "notes.txt") if "five minutes" in t]
    assert saved_passages(b.home, "travel.html")


def test_a_change_in_a_collection_of_the_same_name_elsewhere_leaves_these_passages(
    runner: CliRunner,
    ollama: OllamaStandIn,
    docs: Path,
    server: ChromaServer,
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found in review: saved turns named only their collection, so a file changed in the
    server's 'default' blanked the passages a chat had from the embedded 'default', which
    still holds them."""
    url = os.environ["RAGGED_CHROMA_URL"]
    monkeypatch.delenv("RAGGED_CHROMA_URL")
    assert runner.invoke(app, ["ingest", str(docs), "-q"]).exit_code == 0
    asked = runner.invoke(app, ["chat"], input="What is the largest living rodent?\n")
    assert asked.exit_code == 0, asked.output
    assert saved_passages(env, "notes.txt")
    assert runner.invoke(app, ["copy", "--to", url]).exit_code == 0
    monkeypatch.setenv("RAGGED_CHROMA_URL", url)
    notes = docs / "notes.txt"
    notes.write_text(notes.read_text().replace("five minutes", "a few minutes"))
    assert runner.invoke(app, ["ingest", str(docs), "-q"]).exit_code == 0  # on the server
    assert saved_passages(env, "notes.txt")  # the embedded collection still holds them
    monkeypatch.delenv("RAGGED_CHROMA_URL")
    assert runner.invoke(app, ["ingest", str(docs), "-q"]).exit_code == 0  # and now here
    assert saved_passages(env, "notes.txt") == []


def test_a_collection_reset_on_one_machine_is_gone_on_the_other(
    ollama: OllamaStandIn, docs: Path, a: Machine, b: Machine
) -> None:
    a.run("ingest", str(docs), "-q")
    assert b.listing()
    a.run("reset", "--yes")
    gone = b.run("search", "capybara", ok=False)
    assert gone.exit_code == 1 and "collection 'default' does not exist" in gone.stderr


def test_serve_on_one_machine_follows_the_other_machine(
    ollama: OllamaStandIn, docs: Path, tmp_path: Path, a: Machine, server: ChromaServer
) -> None:
    """A long-lived `serve` on machine B sees what A ingests, removes and resets, as a new
    command on B would: its keyword index (B's catalog) included."""
    import httpx

    from tests.ragged_server import RaggedServer, server_env

    a.run("ingest", str(docs), "-q")
    environ = server_env(
        tmp_path / "machine-b",
        ollama.host,
        RAGGED_CHROMA_URL=os.environ["RAGGED_CHROMA_URL"],
        RAGGED_CHROMA_DATABASE=os.environ["RAGGED_CHROMA_DATABASE"],
        RAGGED_MIN_SCORE="0.05",
    )
    with RaggedServer(environ, log=tmp_path / "serve-b.log") as served:
        with httpx.Client(base_url=served.url, timeout=60) as api:

            def lexical(query: str) -> httpx.Response:
                return api.post("/search", json={"query": query, "mode": "lexical"})

            assert lexical("largest living rodent capybara").json()["hits"]
            (docs / "okapi.md").write_text("# Okapis\n\nOkapis are related to giraffes.\n")
            a.run("ingest", str(docs), "-q")
            found = lexical("okapis giraffes").json()["hits"]
            assert found and found[0]["path"].endswith("okapi.md"), found
            a.run("remove", str(docs / "okapi.md"))
            assert not any(h["path"].endswith("okapi.md") for h in lexical("okapis").json()["hits"])
            a.run("reset", "--yes")
            gone = lexical("largest living rodent capybara")
            assert gone.status_code == 404, gone.text
            assert "collection 'default' does not exist" in gone.json()["error"]["message"]


def corpus(root: Path, name: str, n: int) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        (root / f"{name}-{i:03}.md").write_text(
            f"# {name} {i}\n\n" + f"Document {i} of {name} is about topic{i % 5}. " * 30
        )
    return root


def environ(home: Path, ollama: OllamaStandIn) -> dict[str, str]:
    return {**os.environ, "RAGGED_HOME": str(home), "OLLAMA_HOST": ollama.host}


def ingest_at_once(ollama: OllamaStandIn, jobs: list[tuple[Path, Path]]) -> None:
    """Run `ragged ingest` for every (home, folder) at the same time, as machines would."""
    ollama.embed_delay = 0.005  # long enough for the runs to overlap
    procs = [
        subprocess.Popen(
            [*RAGGED, "ingest", str(folder), "-q", "--embed-batch", "4"],
            env=environ(home, ollama),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for home, folder in jobs
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    ollama.embed_delay = 0.0


def clean_ids(tmp_path: Path, ollama: OllamaStandIn, *folders: Path) -> set[str]:
    """The chunk ids one machine alone makes of these folders, in a database of its own."""
    home = tmp_path / "alone"
    env = {
        **environ(home, ollama),
        "RAGGED_CHROMA_DATABASE": os.environ["RAGGED_CHROMA_DATABASE"] + "-alone",
    }
    for folder in folders:
        subprocess.run([*RAGGED, "ingest", str(folder), "-q"], env=env, check=True)
    settings = load_settings({"home": home, "chroma_database": env["RAGGED_CHROMA_DATABASE"]})
    return open_store(settings).ids()


def test_two_machines_ingesting_different_folders_at_once_end_with_the_union(
    ollama: OllamaStandIn, tmp_path: Path, server: ChromaServer, b: Machine
) -> None:
    x = corpus(tmp_path / "x", "xenon", 30)
    y = corpus(tmp_path / "y", "yttrium", 30)
    ingest_at_once(ollama, [(tmp_path / "machine-a", x), (tmp_path / "machine-b", y)])
    ids = server_ids()
    assert len(ids) == len(set(ids))  # no duplicates
    assert set(ids) == clean_ids(tmp_path, ollama, x, y)  # nothing lost, nothing orphaned
    listed = {Path(f["path"]).parent for f in b.listing()}
    assert listed == {x, y}  # and B's catalog knows A's files


def test_machines_creating_the_collection_at_the_same_moment_all_use_it(
    tmp_path: Path, server: ChromaServer
) -> None:
    """Two first ingests on two machines both see no collection and both create it: the one
    that loses the race must use the winner's collection, not fail with "already exists"."""
    for n in range(5):
        stores = [
            open_store(load_settings({"home": tmp_path / f"m{i}"}), f"race-{n}") for i in range(4)
        ]
        assert not any(store.exists for store in stores)  # each has looked, as ingest does
        assert create_at_once(stores) == []
        assert all(store.embedding == ("nomic-embed-text", 768) for store in stores)


def create_at_once(stores: list[Store]) -> list[Exception]:
    """`ensure` the collection from every store at the same moment; what they raised."""
    import threading

    barrier, failures = threading.Barrier(len(stores)), []

    def create(store: Store) -> None:
        barrier.wait()
        try:
            store.ensure("nomic-embed-text", 768)
        except Exception as exc:  # noqa: BLE001 - the test reports what any machine raised
            failures.append(exc)

    threads = [threading.Thread(target=create, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_the_same_folder_from_both_machines_is_stored_once(
    ollama: OllamaStandIn, tmp_path: Path, server: ChromaServer, a: Machine
) -> None:
    shared = corpus(tmp_path / "mount", "shared", 40)
    ingest_at_once(ollama, [(tmp_path / "machine-a", shared), (tmp_path / "machine-b", shared)])
    ids = server_ids()
    assert len(ids) == len(set(ids)) == len(clean_ids(tmp_path, ollama, shared))
    assert len(a.listing()) == 40


def test_doctor_in_server_mode_reports_the_server_and_the_cache(
    ollama: OllamaStandIn, docs: Path, a: Machine, b: Machine
) -> None:
    a.run("ingest", str(docs), "-q")
    checks = {c["name"]: c for c in b.json("doctor")["checks"]}  # type: ignore[call-overload]
    chroma = checks["chroma"]
    assert chroma["status"] == "ok" and "Chroma 1." in chroma["detail"]
    assert chroma["data"]["heartbeat_ms"] >= 0
    first = checks["collection default"]
    assert first["status"] == "ok" and "no local cache yet" in first["detail"], first
    b.run("list")
    collection = {c["name"]: c for c in b.json("doctor")["checks"]}["collection default"]  # type: ignore[call-overload]
    assert collection["status"] == "ok", collection
    assert collection["data"]["stored"] == collection["data"]["chunks"] == len(server_ids())
    assert "local cache current" in collection["detail"]

    a.run("remove", str(docs / "notes.txt"))
    stale = {c["name"]: c for c in b.json("doctor")["checks"]}["collection default"]  # type: ignore[call-overload]
    assert "local cache behind the server" in stale["detail"]
    b.run("list")  # any command brings it up to date
    current = {c["name"]: c for c in b.json("doctor")["checks"]}["collection default"]  # type: ignore[call-overload]
    assert "local cache current" in current["detail"]


# -- a server that checks a token --------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaTokenServer]:
    pytest.importorskip("fastapi", reason="Chroma's Python server needs fastapi (make install)")
    server = ChromaTokenServer(tmp_path_factory.mktemp("chroma-token") / "data", token="s3cret")
    server.start()
    yield server
    server.stop()


def test_a_server_with_token_authentication(
    runner: CliRunner,
    ollama: OllamaStandIn,
    docs: Path,
    token_server: ChromaTokenServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAGGED_CHROMA_URL", token_server.url)
    monkeypatch.setenv("RAGGED_CHROMA_TOKEN", "s3cret")
    result = runner.invoke(app, ["ingest", str(docs), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 5
    hits = json.loads(runner.invoke(app, ["search", "capybara", "--json"]).stdout)["hits"]
    assert hits[0]["path"].endswith("notes.txt")

    for wrong in ("not-the-token", ""):
        monkeypatch.setenv("RAGGED_CHROMA_TOKEN", wrong)
        monkeypatch.setenv("RAGGED_HOME", str(Path(os.environ["RAGGED_HOME"]).parent / "other"))
        refused = runner.invoke(app, ["search", "capybara"])
        assert refused.exit_code == 1
        lines = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
        assert len(lines) == 1 and "refused the request" in lines[0], refused.stderr
        assert token_server.url in lines[0] and "RAGGED_CHROMA_TOKEN" in refused.stderr
        assert "s3cret" not in refused.output and "Traceback" not in refused.output
    shutil.rmtree(Path(os.environ["RAGGED_HOME"]), ignore_errors=True)


def test_serve_names_a_conversation_it_cannot_blank_in_its_log(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path, a: Machine, b: Machine, tmp_path: Path
) -> None:
    """`serve` catches up with the server before each request, which blanks the passages of
    what another machine replaced; a conversation it cannot rewrite (a full disk) is named
    in its log once, as commands name it on stderr."""
    a.run("ingest", str(docs), "-q")
    question = "What is the largest living rodent?\n"
    chatted = runner.invoke(app, ["--home", str(b.home), "chat"], input=question)
    assert chatted.exit_code == 0, chatted.output
    saved = next((b.home / "conversations").glob("*.json"))
    log = tmp_path / "serve.log"
    shared = {k: os.environ[k] for k in ("RAGGED_CHROMA_URL", "RAGGED_CHROMA_DATABASE")}
    with RaggedServer(server_env(b.home, ollama.host, **shared), log=log) as served:
        search = {"query": "largest living rodent capybara"}
        httpx.post(served.url + "/search", json=search, timeout=60).raise_for_status()
        notes = docs / "notes.txt"
        notes.write_text(notes.read_text().replace("five minutes", "a few minutes"))
        a.run("ingest", str(docs), "-q")
        assert served.proc is not None
        blocker = saved.with_suffix(f".tmp{served.proc.pid}")  # the rewrite fails there
        blocker.mkdir()
        try:
            for _ in range(2):
                httpx.post(served.url + "/search", json=search, timeout=60).raise_for_status()
        finally:
            blocker.rmdir()
    assert saved_passages(b.home, "notes.txt")
    shown = " ".join(log.read_text().split())
    said = f"could not blank the passages of deleted text in the saved conversation {saved}:"
    assert shown.count(said) == 1


def purge_due(home: Path) -> bool:
    """Whether this machine's catalog of the server's 'default' has a purge due."""
    [path] = (home / "catalog").glob("server-*/default.sqlite")
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT 1 FROM meta WHERE key = 'purge_due'").fetchone() is not None


def test_what_another_machine_removes_or_edits_out_is_unreadable_on_a_machine_that_only_reads(
    ollama: OllamaStandIn, docs: Path, a: Machine, b: Machine
) -> None:
    """B's catch-up forgets what A removed or edited out, and its keyword index held their
    words: B purges its own catalog then, even if it never runs a writing command. It takes
    no write lock (a writer started meanwhile was refused) and does not wait behind another
    process's write or open read: the purge stays due for the next command."""
    a.run("ingest", str(docs), "-q")
    b.search("capybara")
    # As the keyword index holds them: lower case, stemmed.
    assert files_holding(b.home, "underwat") and files_holding(b.home, "zanzibar")
    notes = docs / "notes.txt"
    notes.write_text(notes.read_text().replace("underwater for five minutes", "a while"))
    a.run("ingest", str(docs), "-q")
    a.run("remove", str(docs / "travel.html"))
    [path] = (b.home / "catalog").glob("server-*/default.sqlite")
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN")
        other.execute("SELECT count(*) FROM chunks").fetchone()  # a read left open
        searched = b.run("search", "capybara", "--json")
        assert json.loads(searched.stdout)["hits"][0]["path"].endswith("notes.txt")
        assert purge_due(b.home) and files_holding(b.home, "zanzibar")
        other.execute("COMMIT")
        other.execute("BEGIN IMMEDIATE")  # another process writing
        searched = b.run("search", "capybara")
        assert purge_due(b.home) and "purge" not in searched.stderr
        other.execute("COMMIT")
    with write_lock(b.home):  # a writer elsewhere in the data dir: no matter to a reader
        b.search("capybara")
    assert files_holding(b.home, "underwat") == [] and files_holding(b.home, "zanzibar") == []
    assert not purge_due(b.home)
    assert not [hit for hit in b.search("ferry Zanzibar") if hit["path"].endswith("travel.html")]


def test_a_collection_another_machine_reset_leaves_nothing_readable_on_this_one(
    ollama: OllamaStandIn, docs: Path, a: Machine, b: Machine
) -> None:
    """Found in review: after a reset elsewhere, B's catch-up forgot every chunk but each of
    its commands then stopped at "does not exist", before any purge."""
    a.run("ingest", str(docs), "-q")
    b.search("capybara")
    a.run("reset", "--yes")
    refused = b.run("search", "capybara", ok=False)
    assert refused.exit_code == 1 and "does not exist" in refused.stderr
    assert files_holding(b.home, "zanzibar") == [] and files_holding(b.home, "underwat") == []


def test_serve_purges_what_another_machine_removed_from_this_ones_catalog(
    ollama: OllamaStandIn, docs: Path, a: Machine, b: Machine, tmp_path: Path
) -> None:
    """A long-lived `serve` catches up before each request: what it forgot is purged from its
    catalog then, not only when it stops."""
    a.run("ingest", str(docs), "-q")
    shared = {k: os.environ[k] for k in ("RAGGED_CHROMA_URL", "RAGGED_CHROMA_DATABASE")}
    with RaggedServer(server_env(b.home, ollama.host, **shared), log=tmp_path / "serve.log") as s:
        search = {"query": "ferry to Zanzibar"}
        httpx.post(s.url + "/search", json=search, timeout=60).raise_for_status()
        assert files_holding(b.home, "zanzibar")
        a.run("remove", str(docs / "travel.html"))
        hits = httpx.post(s.url + "/search", json=search, timeout=60).json()["hits"]
        assert not [hit for hit in hits if hit["path"].endswith("travel.html")]
        assert files_holding(b.home, "zanzibar") == []


def test_a_running_chat_purges_what_another_machine_removed_before_it_ends(
    ollama: OllamaStandIn, docs: Path, a: Machine, b: Machine
) -> None:
    """A chat may stay open for days: what its catch-up before a question forgot is purged
    from this machine's catalog after that answer, not when the chat ends."""
    a.run("ingest", str(docs), "-q")
    proc = chat_answering(ollama, b.home, "What is the largest living rodent?", "notes.txt")
    try:
        assert files_holding(b.home, "zanzibar")
        a.run("remove", str(docs / "travel.html"))
        assert proc.stdin is not None
        proc.stdin.write("And how fast can it swim?\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while files_holding(b.home, "zanzibar") and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        assert files_holding(b.home, "zanzibar") == []
        assert proc.poll() is None  # still chatting
    finally:
        proc.kill()


def test_a_read_only_data_dir_with_a_purge_due_still_answers(
    ollama: OllamaStandIn, docs: Path, a: Machine, b: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: a data dir mounted read-only (it still reads the server) whose
    catalog had a purge due made every search, ask, list, chat and serve request fail."""
    a.run("ingest", str(docs), "-q")
    b.search("capybara")
    a.run("remove", str(docs / "travel.html"))
    [path] = (b.home / "catalog").glob("server-*/default.sqlite")
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN")
        other.execute("SELECT count(*) FROM chunks").fetchone()  # the purge stays due
        b.search("capybara")
        other.execute("COMMIT")
    assert purge_due(b.home)
    monkeypatch.setattr("ragged.catalog._writable", lambda path: False)  # as a read-only mount
    assert b.search("capybara")[0]["path"].endswith("notes.txt")
    assert b.json("list")
