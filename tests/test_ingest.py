"""ragged.ingest on the core API: incremental, safe against bad files and outages, never duplicating."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from ragged.catalog import ROWS_PER_STATEMENT, ChunkRow
from ragged.config import load_settings
from ragged.index import chunk_id, open_index
from ragged.ingest import Embedder, ingest
from ragged.ingest.chunking import chunk
from ragged.ingest.loaders import load
from ragged.llm import LLM, connect
from tests.conftest import bench_dir
from tests.ollama_standin import OllamaStandIn
from tests.pdfgen import write_pdf

# Every test runs against the embedded store and against a real `chroma run` server.
pytestmark = pytest.mark.usefixtures("chroma_mode")


class Env:
    """The services one test uses, opened the way the CLI opens them."""

    def __init__(self, **flags: object) -> None:
        self.settings = load_settings(flags)
        self.llm: LLM = connect(self.settings)
        self.index = open_index(self.settings, create=True)
        self.store = self.index.store
        self.catalog = self.index.catalog

    def ingest(self, *paths: Path, **kw: object):  # type: ignore[no-untyped-def]
        return ingest(list(paths), self.index, self.llm, **kw)  # type: ignore[arg-type]

    def consistent(self) -> int:
        """Chroma holds exactly the catalog's chunks, each once; returns how many."""
        ids = self.store.ids()
        assert ids == {c.id for f in self.catalog.files() for c in self.catalog.chunks_of(f.path)}
        assert self.catalog.pending_count() == 0
        return len(ids)


@pytest.fixture
def rag(ollama: OllamaStandIn) -> Env:
    return Env()


def test_ingest_stores_chunks_with_their_provenance(rag: Env, docs: Path) -> None:
    report = rag.ingest(docs)
    assert report.ok and report.added == 5
    n = rag.consistent()
    assert n == report.chunks == report.embedded
    md = rag.catalog.chunks_of(str(docs / "guide" / "install.md"))
    assert md[0].path == str(docs / "guide" / "install.md")
    brew = next(c for c in md if "brew install" in c.text)
    assert brew.heading.startswith("Installing Foxtrot")
    pdf = rag.catalog.chunks_of(str(docs / "report.pdf"))
    assert [c.page for c in pdf] == [1, 2]
    vector = rag.llm.embed(["lighthouse keeper"], "nomic-embed-text", "query")[0]
    hit = rag.index.dense(vector, 1)[0]
    assert (hit.path, hit.page) == (str(docs / "report.pdf"), 2)


def test_changed_file_replaces_its_chunks(rag: Env, docs: Path) -> None:
    rag.ingest(docs)
    notes = docs / "notes.txt"
    old_ids = {c.id for c in rag.catalog.chunks_of(str(notes))}
    notes.write_text("Okapis are related to giraffes, not zebras.\n")
    report = rag.ingest(docs)
    assert (report.updated, report.unchanged, report.added) == (1, 4, 0)
    new = rag.catalog.chunks_of(str(notes))
    assert "Okapis" in new[0].text and not old_ids & {c.id for c in new}
    rag.consistent()
    assert not old_ids & rag.store.ids()


def test_touched_but_identical_file_is_not_reembedded(
    rag: Env, docs: Path, ollama: OllamaStandIn
) -> None:
    rag.ingest(docs)
    notes = docs / "notes.txt"
    os.utime(notes, ns=(notes.stat().st_atime_ns, notes.stat().st_mtime_ns + 10**9))
    before = ollama.embedded_inputs
    report = rag.ingest(docs)
    assert report.unchanged == 5 and ollama.embedded_inputs == before


def test_deleted_file_is_pruned_unless_told_not_to(rag: Env, docs: Path) -> None:
    rag.ingest(docs)
    (docs / "notes.txt").unlink()
    kept = rag.ingest(docs, prune=False)
    assert kept.removed == 0 and rag.catalog.file(str(docs / "notes.txt")) is not None
    report = rag.ingest(docs)
    assert report.removed == 1 and rag.catalog.file(str(docs / "notes.txt")) is None
    rag.consistent()


def test_moved_file_is_not_embedded_again(rag: Env, docs: Path, ollama: OllamaStandIn) -> None:
    rag.ingest(docs)
    before = ollama.embedded_inputs
    (docs / "archive").mkdir()
    shutil.move(docs / "notes.txt", docs / "archive" / "renamed.txt")
    report = rag.ingest(docs)
    assert report.added == 1 and report.removed == 1 and report.reused > 0
    assert ollama.embedded_inputs == before
    assert report.moved == 1
    assert rag.catalog.chunks_of(str(docs / "archive" / "renamed.txt"))
    rag.consistent()


def test_bad_file_is_reported_and_the_rest_stored(rag: Env, docs: Path) -> None:
    (docs / "empty.md").write_bytes(b"")
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 8)
    seen = []
    report = rag.ingest(docs, on_file=seen.append)
    assert report.added == 5 and report.failed == 2 and not report.ok
    reasons = {Path(o.path).name: o.reason for o in seen if o.status == "failed"}
    assert reasons == {"empty.md": "empty file", "binary.txt": "binary content, not text"}
    rag.consistent()


def test_a_stored_file_that_turns_bad_keeps_its_old_chunks(rag: Env, docs: Path) -> None:
    rag.ingest(docs)
    notes = docs / "notes.txt"
    old = rag.catalog.chunks_of(str(notes))
    notes.write_bytes(b"\x00\x01\x02" * 100)
    report = rag.ingest(docs)
    assert report.failed == 1 and report.removed == 0
    assert rag.catalog.chunks_of(str(notes)) == old
    rag.consistent()


def test_ollama_outage_keeps_text_pending_then_resumes(docs: Path, ollama: OllamaStandIn) -> None:
    rag = Env(embed_batch=2)
    ollama.fail_next("/api/embed", status=500, times=1000)
    rag.llm.retry_delays = ()
    report = rag.ingest(docs)
    assert report.embed_error and report.pending == report.chunks > 0
    assert {f.status for f in rag.catalog.files()} == {"pending"}
    # keyword search works on pending text already
    assert rag.catalog.search("capybara", 3)
    ollama.reset()
    again = rag.ingest(docs)
    assert again.ok and again.unchanged == 5 and again.embedded == report.pending
    assert ollama.embedded_inputs == report.pending
    rag.consistent()


def test_reconcile_repairs_what_a_crash_can_leave(rag: Env, docs: Path) -> None:
    rag.ingest(docs)
    notes = str(docs / "notes.txt")
    meta = {"heading": "", "chunk_index": 0, "content_hash": "x"}
    # Vectors the catalog does not know: of a file it never heard of (a catalog that lost a
    # commit) and an older version of a file it holds (a crash in the middle of an update).
    rag.store.add(
        ["orphan", "stale"],
        [[0.1] * 768, [0.2] * 768],
        ["orphan text", "stale text"],
        [{**meta, "path": "/gone"}, {**meta, "path": notes}],
    )
    # and a crash after the catalog marked chunks embedded but before Chroma had them
    victim = rag.catalog.chunks_of(notes)[0].id
    rag.store.delete([victim])
    rag.catalog.begin_run()  # what the interrupted run would have left behind
    rag.index.reconcile()
    if rag.store.shared:
        # on a server an id this catalog never wrote may be another machine's: left alone
        assert {"orphan", "stale"} <= rag.store.ids()
        rag.store.delete(["orphan", "stale"])
    else:
        # the stale version goes; the unknown file is adopted, never deleted
        assert "stale" not in rag.store.ids() and "orphan" in rag.store.ids()
        assert [c.text for c in rag.catalog.chunks_of("/gone")] == ["orphan text"]
        rag.index.remove(["/gone"])
    assert rag.catalog.pending_count() == 1
    rag.ingest(docs)
    rag.consistent()


def test_chunk_ids_are_deterministic() -> None:
    assert chunk_id("/a", "h", 0) == chunk_id("/a", "h", 0) != chunk_id("/a", "h", 1)


def test_bad_corpus_files_each_named(rag: Env, tmp_path: Path) -> None:
    bad = bench_dir("corpus", "bad")
    mixed = tmp_path / "mixed"
    shutil.copytree(bad, mixed)
    (mixed / "good.md").write_text("# Good\n\nA perfectly fine markdown file about herons.\n")
    seen = []
    report = rag.ingest(mixed, on_file=seen.append)
    assert not report.ok
    failed = {Path(o.path).name for o in seen if o.status == "failed"}
    assert {
        "empty.md",
        "empty.pdf",
        "binary-renamed.md",
        "truncated-30pct.pdf",
        "encrypted-aes256-password-ragged-secret.pdf",
        "encrypted-rc4-password-ragged-secret.pdf",
    } <= failed
    assert all(o.reason for o in seen if o.status == "failed")
    assert rag.catalog.file(str(mixed / "good.md")) is not None
    assert rag.catalog.file(str(mixed / "latin1-encoded.txt")) is not None
    rag.consistent()


def test_chunk_longer_than_the_embedding_context_is_not_truncated(
    docs: Path, ollama: OllamaStandIn
) -> None:
    rag = Env(chunk_tokens=4000, chunk_overlap=0)  # nomic-embed-text's context is 2048
    long = docs / "long.txt"
    common = "apple river stone cloud green table music paper light house".split()
    # ~2,500 tokens by both counts: one chunk for ragged, too long for the embedding model
    long.write_text("firstword " + " ".join(common[i % 10] for i in range(2500)) + " lastword")
    report = rag.ingest(long)
    assert report.ok and report.chunks == 1
    inputs = [r.body["input"] for r in ollama.requests if r.path == "/api/embed"]
    assert all(r.body["truncate"] is False for r in ollama.requests if r.path == "/api/embed")
    # refused whole, then embedded in parts that between them hold every word
    assert any("firstword" in i[0] and "lastword" in i[0] for i in inputs)
    assert any("firstword" in i[0] and "lastword" not in i[0] for i in inputs)
    assert any("lastword" in i[0] and "firstword" not in i[0] for i in inputs)
    rag.consistent()


def test_a_long_pdf_is_chunked_in_its_worker_as_it_would_be_here(
    ollama: OllamaStandIn, tmp_path: Path
) -> None:
    """PDFs are chunked in the parsing workers: with this run's chunk sizes, into exactly the
    chunks chunking the same text here gives, and all of them stored (more chunks than one
    catalog statement carries)."""
    pages = [
        [
            f"Page {p} line {n}: the harbour ledger lists mooring fee {p * 100 + n}."
            for n in range(12)
        ]
        for p in range(1, 41)
    ]
    pdf = write_pdf(tmp_path / "ledger.pdf", pages)
    rag = Env(chunk_tokens=64, chunk_overlap=8)
    report = rag.ingest(pdf)
    expected = chunk(load(pdf), 64, 8)
    stored = rag.catalog.chunks_of(str(pdf.resolve()))
    assert len(expected) > ROWS_PER_STATEMENT
    assert report.chunks == len(stored) == len(expected)
    assert [(c.idx, c.text, c.page, c.heading, c.tokens) for c in stored] == [
        (c.index, c.text, c.page, c.heading, c.tokens) for c in expected
    ]
    assert rag.consistent() == len(expected)


def test_replies_are_stored_as_they_come_not_behind_a_slow_first_one(
    ollama: OllamaStandIn,
) -> None:
    # Ollama's slots answer out of order. Replies were taken in the order sent, so one slow
    # reply held back every later one: no store write, then all of them at the end.
    llm = LLM(ollama.host, timeout=3.0, retry_delays=())  # the stalled request: an error in 3 s
    got: list[str] = []
    embedder = Embedder(llm, "nomic-embed-text", 1, 2, lambda rows, _: got.append(rows[0].text))
    first, second, third = (
        ChunkRow(chunk_id("/n.md", "h", i), "/n.md", i, text, None, "", 1, "h")
        for i, text in enumerate(("first", "second", "third"))
    )
    ollama.stall_next("/api/embed")
    embedder.add([first])
    deadline = time.monotonic() + 2.5
    while ollama.count("/api/embed") < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ollama.count("/api/embed") == 1, "the first request never reached the stand-in"
    embedder.add([second, third])
    while len(got) < 2 and time.monotonic() < deadline:
        embedder.poll()
        time.sleep(0.01)
    # The two are sent at once; which of them answers first is the stand-in's affair.
    assert sorted(got) == ["second", "third"]
    # With nothing left to send, the time spent waiting for the slow one is given to the
    # store: `on_idle` runs with what came back so far already handed on.
    idle: list[list[str]] = []
    embedder.finish(on_idle=lambda: idle.append(list(got)))
    assert idle and sorted(idle[0]) == ["second", "third"]
    assert embedder.error is not None and sorted(got) == ["second", "third"]  # "first" waits
