"""ingest(paths, index, llm): walk, skip what is unchanged, load, chunk, embed in batches, store.

Every write goes through the Index, in the order that makes an interrupted run safe
(ragged/index.py): chunks staged as text, vectors upserted, chunks marked embedded. A rerun
embeds whatever is still pending and finishes whatever a crash left, so it ends with exactly
the chunks a clean run makes.

A file is its resolved absolute path, whichever folder reached it: ingesting overlapping
folders never rewrites an unchanged file. A stored file is removed only when it is gone from
a folder that was walked, or a persistent ignore rule (.gitignore, .raggedignore) now
excludes it; never because of a command-line filter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import sqlite3
import time
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from ragged.catalog import CHUNKING_KEY, ChunkRow, FileRecord, now
from ragged.disk import raise_if_full
from ragged.errors import RaggedError, StoreError, UnreadableDocument
from ragged.index import embed_text, embed_title, make_row
from ragged.ingest.writer import BATCHES_PER_WRITE, MIN_BATCHES_PER_WRITE, VectorWriter

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.index import Index
    from ragged.ingest.chunking import Chunk
    from ragged.ingest.loaders import Document
    from ragged.ingest.walk import Candidate, Walk
    from ragged.llm import LLM

SPLIT_DEPTH = 6  # an over-long input is halved at most this often (1/64 of it per request)


class ChunkingChanged(RaggedError):
    """chunk_tokens or chunk_overlap differ from what the collection's chunks were cut with."""


@dataclass(frozen=True)
class FileOutcome:
    path: str
    status: str  # added | updated | unchanged | removed | skipped | failed
    chunks: int = 0
    reason: str = ""
    known: bool = False  # a failure remembered from an earlier run: the file did not change


@dataclass(frozen=True)
class Move:
    """A stored file gone from disk whose bytes a run stored under a new path."""

    old: str
    new: str


@dataclass(frozen=True)
class HeldBack:
    """A walked folder that yielded no files at all while the collection holds files from it."""

    folder: str
    files: int


@dataclass(frozen=True)
class Progress:
    files_done: int
    files_total: int
    chunks_done: int
    chunks_total: int
    current: str
    # Bytes of the files that need parsing: the ETA's measure of work, fixed from the start
    # (the chunk total only grows as files are parsed). A file found unchanged leaves it.
    bytes_done: int = 0
    bytes_total: int = 0


@dataclass
class _Tally:
    files: int = 0
    chunks_done: int = 0
    chunks_total: int = 0
    current: str = ""
    bytes_done: int = 0
    bytes_total: int = 0


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0  # files stored under a new path with the vectors of their old one
    removed: int = 0
    skipped: int = 0
    failed: int = 0
    known_failures: int = 0  # of `failed`: unchanged since an earlier run, not parsed again
    pending: int = 0  # chunks stored as text whose embeddings are still to come
    chunks: int = 0  # chunks written this run
    embedded: int = 0  # embeddings computed this run
    reused: int = 0  # embeddings copied from an identical file (moved or renamed)
    seconds: float = 0.0
    embed_error: str | None = None  # why embedding stopped early (Ollama down, model missing)
    embed_hint: str | None = None
    held_back: list[HeldBack] = field(default_factory=list)
    # Old paths are removed at the end of the run, as a walked folder's deleted files are.
    moves: list[Move] = field(default_factory=list)
    # A saved conversation that could not be rid of deleted passages (ragged.index.Index).
    unblanked: str | None = None
    # Whether this run purged deleted text (a changed or pruned file's old chunks) from the
    # files; whether it is still to be (ingest(purge=False), or a purge that failed); and why
    # deleted text may stay readable, if it may.
    purged: bool = False
    purge_due: bool = False
    purge_problem: str | None = None
    problems: list[FileOutcome] = field(default_factory=list)

    @property
    def new_failures(self) -> int:
        return self.failed - self.known_failures

    @property
    def ok(self) -> bool:
        """Nothing new went wrong: remembered failures alone don't fail a scheduled re-run."""
        return self.new_failures == 0 and self.embed_error is None and not self.held_back

    def count(self, outcome: FileOutcome) -> None:
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        if outcome.known:
            self.known_failures += 1
        if outcome.status in ("failed", "skipped"):
            self.problems.append(outcome)


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signature(cand: Candidate) -> str:
    """What must change for a failed file to be tried again (ctime: a chmod counts too)."""
    return f"{cand.size}:{cand.mtime_ns}:{cand.ctime_ns}"


# Embedding requests in flight per Ollama slot (embed_concurrency), and batches parsing may
# run ahead of Ollama. Ollama's own queue must cover the moments when a store write holds
# the GIL (a 512-row upsert: a few hundred ms) so that its slots never run dry.
REQUESTS_PER_SLOT = 4
AHEAD_PER_SLOT = 8


class Embedder:
    """Batches pending chunks and keeps embedding requests in flight while files are parsed.

    Workers only make the HTTP call; results go to `sink` (a VectorWriter) on the calling
    thread when it collects them, so the stores see one writer.
    """

    def __init__(
        self,
        llm: LLM,
        model: str,
        batch: int,
        concurrency: int,
        sink: Callable[[list[ChunkRow], Sequence[Sequence[float]]], None],
        on_wait: Callable[[], None] = lambda: None,
    ) -> None:
        self.llm, self.model = llm, model
        self.batch, self.concurrency = batch, concurrency
        self.sink = sink
        self.on_wait = on_wait  # called before the parsing thread blocks on Ollama
        self.buffer: list[ChunkRow] = []
        self.in_flight: deque[tuple[list[ChunkRow], Future[list[array[float]]]]] = deque()
        self.pool = ThreadPoolExecutor(
            max_workers=concurrency * REQUESTS_PER_SLOT, thread_name_prefix="embed"
        )
        self.error: RaggedError | None = None
        self.embedded = 0

    def add(self, rows: Sequence[ChunkRow]) -> None:
        if self.error is not None:
            return
        self.buffer.extend(rows)
        while len(self.buffer) >= self.batch:
            self._submit(self.buffer[: self.batch])
            del self.buffer[: self.batch]

    def _submit(self, rows: list[ChunkRow]) -> None:
        # Back-pressure: parsing may run ahead of Ollama by a bounded number of batches.
        while len(self.in_flight) >= self.concurrency * AHEAD_PER_SLOT:
            self.on_wait()
            self._collect(block=True)
        if self.error is None:
            self.in_flight.append(
                (
                    rows,
                    self.pool.submit(
                        self._embed, [embed_text(r) for r in rows], [embed_title(r) for r in rows]
                    ),
                )
            )

    def _embed(self, texts: list[str], titles: list[str | None]) -> list[array[float]]:
        """The texts' vectors, kept as float32 arrays until they are written: 3 KB a vector
        (768 numbers) where Python floats take 24 KB, for every vector buffered or in flight."""
        from ragged.llm import InputTooLong

        try:
            vectors = self.llm.embed(texts, self.model, titles=titles)
        except InputTooLong:
            vectors = [
                self._embed_long(t, title, 0) for t, title in zip(texts, titles, strict=True)
            ]
        return [array("f", v) for v in vectors]

    def _embed_long(self, text: str, title: str | None, depth: int) -> list[float]:
        """Embed a text longer than the model's context as the mean of its halves' vectors.

        Nothing is truncated: every part of the chunk contributes, and the stored text stays whole.
        """
        from ragged.llm import InputTooLong

        try:
            return self.llm.embed([text], self.model, titles=[title])[0]
        except InputTooLong:
            if depth >= SPLIT_DEPTH or len(text) < 2:
                raise
        middle = text.rfind(" ", 0, len(text) // 2 + 1)
        middle = middle if middle > 0 else len(text) // 2
        left = self._embed_long(text[:middle], title, depth + 1)
        right = self._embed_long(text[middle:], title, depth + 1)
        w = middle / len(text)
        mean = [w * a + (1 - w) * b for a, b in zip(left, right, strict=True)]
        norm = math.sqrt(sum(x * x for x in mean)) or 1.0
        return [x / norm for x in mean]

    def _collect(self, block: bool) -> None:
        """Hand every reply that is in to the sink, in the order they were sent; with `block`,
        wait for one first. Every reply in, not only those at the head of the queue: Ollama's
        slots answer out of order, and one slow reply held back all that came after it (the
        store then wrote nothing for 0.45 s, and twice as much after Ollama's last reply)."""
        if block and self.in_flight and not any(f.done() for _, f in self.in_flight):
            wait([f for _, f in self.in_flight], return_when=FIRST_COMPLETED)
        ready: list[tuple[list[ChunkRow], Future[list[array[float]]]]] = []
        waiting: deque[tuple[list[ChunkRow], Future[list[array[float]]]]] = deque()
        for item in self.in_flight:
            (ready if item[1].done() else waiting).append(item)
        self.in_flight = waiting
        for rows, future in ready:
            try:
                vectors = future.result()
            except RaggedError as exc:  # Ollama gone, model missing, retries exhausted
                self._stop(exc)
                return
            self.embedded += len(rows)
            self.sink(rows, vectors)

    def _stop(self, exc: RaggedError) -> None:
        """Ollama is gone: keep the text (already in the catalog as pending) and stop asking."""
        self.error = exc
        for _, future in self.in_flight:
            future.cancel()
        self.in_flight.clear()
        self.buffer.clear()

    @property
    def answered(self) -> bool:
        """Ollama has answered at least one of this run's requests."""
        return self.embedded > 0 or any(f.done() for _, f in self.in_flight)

    def poll(self) -> None:
        """Collect what came back; send a short batch rather than leave Ollama's queue short.

        At the start of a run, and while the main thread waits for a PDF, fewer chunks than a
        batch may be waiting while Ollama has nothing to do: a partial batch costs one
        request's overhead (~20 ms on a GPU), an idle Ollama costs the whole wait.
        """
        self._collect(block=False)
        if self.buffer and self.error is None and len(self.in_flight) < self.concurrency:
            self._submit(self.buffer)
            self.buffer = []

    def finish(self, on_idle: Callable[[], None] = lambda: None) -> None:
        """Send what is buffered and collect every reply. `on_idle` runs whenever no reply
        is in yet, for work that would otherwise wait for one (a store write)."""
        if self.buffer and self.error is None:
            self._submit(self.buffer)
            self.buffer = []
        while self.in_flight:
            if not any(f.done() for _, f in self.in_flight):
                on_idle()
            self._collect(block=True)
        self.pool.shutdown(wait=True, cancel_futures=True)


def ingest(
    paths: Sequence[Path],
    index: Index,
    llm: LLM,
    *,
    prune: bool = True,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    confirm_prune: Callable[[HeldBack], bool] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
    rechunk: bool = False,
    purge: bool = True,
) -> IngestReport:
    """Bring the collection up to date with the files under `paths`.

    Text this run deleted (the old chunks of changed and pruned files) is then made
    unreadable in the catalog's and the store's files, as `remove` does; with `purge=False`
    (watch, which purges once the folders are quiet) `report.purge_due` says it still is to be.

    With no paths, only what earlier runs left pending is embedded. `confirm_prune` is asked
    before the files of a folder that yielded nothing at all are removed (an unmounted disk
    looks exactly like that); without it they are kept and listed in `held_back`.

    A collection's chunks are all cut with one chunk_tokens/chunk_overlap: other values are
    refused (ChunkingChanged) unless `rechunk`, which re-chunks every stored file.
    """
    from ragged.ingest.walk import walk

    settings = index.settings
    started = time.perf_counter()
    report = IngestReport()
    index.check_model(settings.embed_model)
    # Only files parsed now take this run's chunk sizes: with no path (embedding what is
    # pending, as `doctor --fix` does), nothing is cut, so there is nothing to check or record.
    chunks_now = bool(paths) or rechunk
    if chunks_now:
        rechunk = check_chunking(index, rechunk)
    index.begin_run()

    found = walk(
        paths,
        include=include,
        exclude=exclude,
        max_bytes=int(settings.max_file_mb * 1_000_000) if settings.max_file_mb > 0 else None,
    )
    gone: list[FileOutcome] = []
    if rechunk:
        gone = _add_stored_files(found, index)
    files_total = len(found.candidates)
    state = _Tally(
        chunks_total=index.catalog.pending_count(),
        bytes_total=sum(c.size for c in found.candidates),
    )

    def progress() -> None:
        if on_progress:
            on_progress(
                Progress(
                    state.files,
                    files_total,
                    state.chunks_done,
                    state.chunks_total,
                    state.current,
                    state.bytes_done,
                    state.bytes_total,
                )
            )

    def embedded(n: int) -> None:
        state.chunks_done += n
        progress()

    def record(outcome: FileOutcome) -> None:
        report.count(outcome)
        if on_file:
            on_file(outcome)

    for s in found.skipped:
        reason = s.reason + (_still_held(index, s.missing) if s.missing else "")
        record(FileOutcome(s.path, "failed" if s.failed else "skipped", reason=reason))
    for outcome in gone:
        record(outcome)

    writer = VectorWriter(
        index, settings.embed_model, embedded, settings.embed_batch * BATCHES_PER_WRITE
    )
    embedder = Embedder(
        llm,
        settings.embed_model,
        settings.embed_batch,
        settings.embed_concurrency,
        writer.add,
        # Waiting on Ollama (a model still loading, say) leaves the CPU free for the import.
        on_wait=index.store.prefetch,
    )
    parsers = Parsers(settings)

    def finish(job: Job, parsed: Parsed) -> None:
        if isinstance(parsed, str):
            # A stored file that fails to load this time keeps its old chunks.
            index.catalog.record_failure(job.record.path, job.signature, parsed)
            state.bytes_done += job.record.size
            record_outcome(FileOutcome(job.record.path, "failed", reason=parsed))
            return
        pages, pieces = parsed
        rows = [
            make_row(job.record, c.index, c.text, c.page, c.heading, c.tokens, c.subheadings)
            for c in pieces
        ]
        index.stage(dataclasses.replace(job.record, pages=pages), rows)
        report.chunks += len(rows)
        state.chunks_total += len(rows)
        embedder.add(rows)
        state.bytes_done += job.record.size
        record_outcome(FileOutcome(job.record.path, job.status, len(rows)))

    def on_chunks(n: int) -> None:
        state.chunks_total += n
        progress()

    def record_outcome(outcome: FileOutcome) -> None:
        record(outcome)
        state.files += 1
        progress()

    def warm_up(chunking_here: bool = True) -> None:
        """Work is coming: import the Ollama client here and now (the first request needs it),
        then, if a file is to be chunked in this process, load the tokenizer on a thread while
        it is read (PDFs are chunked in their workers). Not before: an unchanged re-ingest
        needs neither."""
        from ragged.tokens import warm_up as load_tokenizer

        llm.load()
        if chunking_here:
            load_tokenizer()

    def open_store(now: bool = False) -> None:
        """Open the store (import chromadb: 0.5-1 s of CPU, holding the GIL) on a thread while
        Ollama embeds. It is first needed at the first write, a few hundred chunks later.
        Not before Ollama has answered (or the parsing has to wait for it anyway): started
        earlier, the import held the GIL while the first requests were being built and sent,
        and Ollama sat idle 0.4 s longer at the start of a run (docs/benchmarks.md)."""
        if now or embedder.answered:
            index.store.prefetch()

    def write_while_waiting() -> None:
        """About to wait for the PDF workers: write the vectors buffered so far, if the store
        is open already and there are enough of them for a write to be worth its fixed cost.
        Otherwise a PDF run, whose chunks rarely fill a full write, stored every vector after
        Ollama's last reply (0.25-0.3 s of its end, docs/benchmarks.md, "Seventh pass")."""
        small = settings.embed_batch * MIN_BATCHES_PER_WRITE
        if index.store.opened and len(writer.rows) >= small:
            writer.flush()

    def handle(cand: Candidate) -> None:
        state.current = cand.rel_path
        progress()
        prepared = _prepare(cand, index, report, found.complete_roots, force=rechunk)
        if isinstance(prepared, FileOutcome):
            if prepared.status == "failed" and not prepared.known:
                index.catalog.record_failure(prepared.path, signature(cand), prepared.reason)
            state.bytes_total -= cand.size  # settled without parsing: no work after all
            record_outcome(prepared)
        elif prepared[1] is None:
            # A large text file, read and chunked by blocks here: memory stays flat.
            warm_up()
            job = prepared[0]
            before = state.bytes_done

            def read(n: int) -> None:
                # Its bytes count as they are read: a 200 MB file is most of a run, and the
                # ETA, which goes by bytes, stood still until it was done.
                state.bytes_done = before + min(n, cand.size)

            outcome = _stream_file(job, index, embedder, on_chunks, read)
            if outcome.status == "failed":
                index.catalog.record_failure(job.record.path, job.signature, outcome.reason)
            else:
                report.chunks += outcome.chunks
            state.bytes_done = before + cand.size
            record_outcome(outcome)
        else:
            # A PDF goes to its worker first, to be parsed while the client library imports;
            # a text file is parsed here, after it.
            pooled = Parsers.pooled(cand.path)
            if not pooled:
                warm_up()
            parsers.submit(prepared[0], prepared[1])
            if pooled:
                warm_up(chunking_here=False)
        for done in parsers.ready():
            finish(*done)
        embedder.poll()
        open_store()

    # PDFs go to the worker processes first, largest first, and the pool is kept full while
    # text files are parsed here: the longest parse starts at once instead of last.
    pdfs = deque(sorted((c for c in found.candidates if Parsers.pooled(c.path)), key=_larger))
    texts = [c for c in found.candidates if not Parsers.pooled(c.path)]
    try:
        # Chunks left pending by an earlier run (Ollama was down, or the run was killed) go first.
        pending = index.catalog.pending()
        if pending:
            warm_up()
            embedder.add(pending)
            open_store()
        for cand in texts:
            while pdfs and parsers.has_room():
                handle(pdfs.popleft())
            handle(cand)
        while pdfs:
            while not parsers.has_room():
                embedder.poll()
                open_store()
                write_while_waiting()
                parsers.wait()
                for done in parsers.ready():
                    finish(*done)
            handle(pdfs.popleft())
        while parsers.busy:
            embedder.poll()
            open_store()
            write_while_waiting()
            parsers.wait()
            for done in parsers.ready():
                finish(*done)
        parsers.close(wait=False)
        open_store(now=bool(embedder.in_flight))  # overlaps with the last requests
        # Nothing left to parse: write whatever is buffered each time no reply is in yet.
        # Writes then happen while Ollama works, grow (a write costs 14-30 ms before its
        # first row) only when replies come faster than they can be stored, and the last one
        # holds only what came back during the one before it.
        embedder.finish(on_idle=writer.flush)
        writer.flush()
        progress()
        if prune:
            for outcome in _prune(found, index, report, confirm_prune) + _moved(index, report):
                record(outcome)
        # Every file was cut with these values now (those that could not be are reported).
        if chunks_now:
            index.catalog.set_meta(CHUNKING_KEY, _chunking(settings))
        index.end_run()
        if purge and index.purge_due:
            state.current = "purging deleted text…"  # a rewrite of the store's file: say so
            progress()
            report.purge_problem = index.purge()
            report.purged = True
        report.purge_due = index.purge_due
    except (StoreError, sqlite3.Error, OSError) as exc:
        # A full disk, met by the catalog's commit, a Chroma write or an open: said once, of
        # the whole run. Files are staged before they are embedded, so the next run finishes.
        raise_if_full(
            exc,
            settings.home,
            lambda: (
                f"ingest stopped after {state.files} of {files_total} files; what it stored is kept"
            ),
        )
        raise
    finally:
        embedder.pool.shutdown(wait=False, cancel_futures=True)
        parsers.close()
        # Files staged since the last write: whole, so kept (a long-lived `watch` must not
        # sit on an open transaction after a failed batch either). On a clean run nothing is
        # left to commit; after a failure, that failure is the one to report, not this.
        try:
            index.commit()
        except sqlite3.Error:
            pass  # those files are simply read again by the next run

    report.embedded = writer.written
    report.pending = index.catalog.pending_count()
    report.unblanked = index.unblanked
    if embedder.error is not None:
        report.embed_error = embedder.error.message
        report.embed_hint = embedder.error.hint
    report.seconds = time.perf_counter() - started
    return report


def _chunking(settings: Settings) -> str:
    return f"{settings.chunk_tokens}/{settings.chunk_overlap}"


def check_chunking(index: Index, rechunk: bool) -> bool:
    """Whether every stored file must be re-chunked; refuses other chunk sizes without `rechunk`.

    A collection whose chunks have different sizes ranks unevenly (a long chunk matches more
    words) and cites unevenly, so a change applies to all files or to none. A collection
    without a record (made before ragged recorded it) takes this run's values.
    """
    settings = index.settings
    recorded = index.catalog.meta(CHUNKING_KEY)
    current = _chunking(settings)
    files = index.catalog.file_count()
    if recorded is None or recorded == current or files == 0:
        return False
    if rechunk:
        return True
    tokens, overlap = recorded.split("/")
    raise ChunkingChanged(
        f"collection '{index.name}' was chunked with chunk_tokens {tokens} and chunk_overlap "
        f"{overlap}; this run asks for {settings.chunk_tokens} and {settings.chunk_overlap}, "
        "which would leave it with chunks of two sizes",
        hint=f"run with --rechunk to re-chunk (and embed again) all {files} stored files, or "
        f"set chunk_tokens = {tokens} and chunk_overlap = {overlap} back (`ragged config` "
        "shows where the values come from)",
    )


def _add_stored_files(found: Walk, index: Index) -> list[FileOutcome]:
    """Make every stored file a candidate, wherever it lies: a re-chunk leaves none behind.

    Returns the stored files that cannot be read again (gone from disk): they keep their
    old chunks until removed.
    """
    from ragged.ingest.walk import Candidate

    have = {str(c.path) for c in found.candidates}
    gone: list[FileOutcome] = []
    for record in index.files():
        if record.path in have:
            continue
        path = Path(record.path)
        try:
            st = path.stat()
        except OSError:
            if not os.path.lexists(record.path) and any(
                path.is_relative_to(root) for root in found.complete_roots
            ):
                continue  # pruned below, as gone from a walked folder
            gone.append(
                FileOutcome(
                    record.path,
                    "failed",
                    reason="cannot re-chunk: the file is gone from disk (its old chunks stay "
                    "until `ragged remove`)",
                )
            )
            continue
        found.candidates.append(
            Candidate(path, path, path.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        )
    return gone


def _still_held(index: Index, missing: Path) -> str:
    """What the collection still holds from a path given that does not exist. It is kept, as
    an unmounted disk's files are (on macOS its mount point is gone too), but said."""
    where = str(missing)
    if index.catalog.file(where) is not None:
        return f"; the collection still holds it from an earlier run (`ragged remove {where}` forgets it)"
    held = len(index.catalog.files(where))
    if not held:
        return ""
    files, them = ("1 file", "it") if held == 1 else (f"{held:,} files", "them")
    return (
        f"; the collection still holds {files} from it, kept as an unmounted disk's would "
        f"be (`ragged remove {where}` forgets {them})"
    )


def _prune(
    found: Walk,
    index: Index,
    report: IngestReport,
    confirm: Callable[[HeldBack], bool] | None,
) -> list[FileOutcome]:
    """Stored files (and remembered failures) a walked folder no longer has, with the reason."""
    catalog = index.catalog
    out: list[FileOutcome] = []
    for root in found.complete_roots:
        stored = catalog.files(str(root))
        if root in found.empty_roots and stored:
            held = HeldBack(str(root), len(stored))
            if confirm is None or not confirm(held):
                report.held_back.append(held)
                continue
        gone: list[tuple[str, str]] = []
        for path in [f.path for f in stored] + [f.path for f in catalog.failures(str(root))]:
            if path in found.present:
                continue  # still there: a command-line filter or the size limit left it out
            rule = found.ignored_by(path)
            if rule is not None:
                gone.append((path, f"now excluded by {rule}"))
            elif not os.path.lexists(path):
                gone.append((path, "deleted from disk"))
        if not gone:
            continue  # the usual case; remove() of nothing still costs ~5 ms at the run's end
        stored_paths = {f.path for f in stored}
        catalog.clear_failures([p for p, _ in gone if p not in stored_paths])
        index.remove([p for p, _ in gone if p in stored_paths])
        out += [FileOutcome(p, "removed", reason=why) for p, why in gone if p in stored_paths]
    return out


def _unpacks_too_large(path: Path, data: bytes | None, limit_mb: float) -> str | None:
    """The size limit (max_file_mb) applied to what a Word or PowerPoint file unpacks to: a
    zip bomb of a few KB would otherwise take parsing to gigabytes."""
    from ragged.ingest.loaders import ZIP_SUFFIXES

    if data is None or limit_mb <= 0 or not path.name.lower().endswith(ZIP_SUFFIXES):
        return None
    from ragged.ingest.office import unpacked_size

    size = unpacked_size(data)
    if size is None or size <= limit_mb * 1_000_000:
        return None
    return f"unpacks to {size / 1e6:.1f} MB, larger than the {limit_mb:g} MB limit"


def _moved(index: Index, report: IngestReport) -> list[FileOutcome]:
    """Remove the old paths of files this run found moved (`IngestReport.moves`) that are still
    stored (a walked folder's were pruned already) and still gone: a moved folder ingested
    under its new name leaves no copy behind, wherever the old one was."""
    moved: dict[str, str] = {}
    for move in report.moves:
        old = move.old
        if old not in moved and not os.path.lexists(old) and index.catalog.file(old):
            moved[old] = move.new
    if not moved:
        return []
    index.remove(list(moved))
    return [FileOutcome(old, "removed", reason=f"moved to {new}") for old, new in moved.items()]


def _stream_file(
    job: Job,
    index: Index,
    embedder: Embedder,
    on_chunks: Callable[[int], None],
    on_read: Callable[[int], None],
) -> FileOutcome:
    """Store a large text file a segment at a time: memory stays flat whatever its size.

    The first segment's chunks replace the stored version under a placeholder stat and hash
    (a run killed half way leaves a file the next run reads again); the rest are appended;
    `complete` then records the real ones. Chunks are embedded as they come.
    """
    from ragged.ingest.stream import stream_chunks

    record = job.record
    settings = index.settings
    placeholder = dataclasses.replace(
        record, size=-1, mtime_ns=-1, content_hash=f"partial:{record.content_hash}"
    )
    count = 0
    try:
        for pieces in stream_chunks(
            Path(record.path), settings.chunk_tokens, settings.chunk_overlap, on_read
        ):
            rows = [
                make_row(record, c.index, c.text, c.page, c.heading, c.tokens, c.subheadings)
                for c in pieces
            ]
            if count == 0:
                index.stage(placeholder, rows)
            else:
                index.stage_more(record.path, rows)
            count += len(rows)
            on_chunks(len(rows))
            embedder.add(rows)
            embedder.poll()
    except UnreadableDocument as exc:
        reason = exc.reason
    except OSError as exc:  # read failed half way (a disk error, a file truncated meanwhile)
        reason = f"cannot read: {exc.strerror or exc}"
    else:
        index.complete(record)
        return FileOutcome(record.path, job.status, count)
    if count:
        # Half a file is worse than none: the part stored so far goes.
        index.remove([record.path])
    return FileOutcome(record.path, "failed", reason=reason)


# What parsing a file gives: its page count and chunks, or why it could not be read.
Parsed: TypeAlias = "tuple[int | None, list[Chunk]] | str"


@dataclass(frozen=True)
class Job:
    """A file to parse: the manifest row it will get, and what it is to the run."""

    record: FileRecord
    status: str  # added | updated
    signature: str


def parse_file(path: str, data: bytes, max_tokens: int, overlap: int) -> Parsed:
    """Load and chunk one file. Runs in a worker process for PDFs and images, so it returns
    why a file cannot be read instead of raising."""
    loaded = load_file(path, data)
    return loaded if isinstance(loaded, str) else chunk_document(loaded, max_tokens, overlap)


def load_file(path: str, data: bytes) -> Document | str:
    """One file's text, or why it cannot be read (returned, never raised)."""
    from ragged.ingest.loaders import load

    try:
        return load(Path(path), data)
    except UnreadableDocument as exc:
        return exc.reason


def chunk_document(document: Document, max_tokens: int, overlap: int) -> Parsed:
    from ragged.ingest.chunking import chunk

    pieces = chunk(document, max_tokens, overlap)
    if not pieces:
        return "no extractable text"
    return document.pages, pieces


class Parsers:
    """Parses files: text formats inline, PDFs in a pool of processes meanwhile.

    Extracting a PDF's text is CPU-bound (pdfium, or pure-Python pypdf), so threads would not
    help; a crash in pdfium's C++, or a file past the memory ceiling (ragged.ingest.guard),
    then costs one file, not the run (`_recover`). Workers chunk what they
    extract too: every tokenizer call hands the GIL back, and in this process another thread
    (chromadb's import, Ollama's replies) keeps it for up to a switch interval each time, so a
    117-page PDF that chunks in 0.09 s alone took 0.6 s here (docs/benchmarks.md, "Seventh
    pass"). Each worker loads the tokenizer once (~0.1 s, beside this process's work). The
    pool is started when the first PDF needs parsing, since spawning workers costs a few
    hundred ms.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers = max(1, min(4, os.cpu_count() or 1))
        self.pool: ProcessPoolExecutor | None = None
        # The bytes stay with each file until it is parsed: a file a dying process took with
        # it is parsed again.
        self.queue: list[tuple[Job, bytes, Future[Parsed]]] = []
        self.done: list[tuple[Job, Parsed]] = []

    @staticmethod
    def pooled(path: str | Path) -> bool:
        """Extracted in a worker process: PDFs and images (CPU-bound; OCR takes seconds)."""
        from ragged.ingest.loaders import HEAVY_SUFFIXES

        return str(path).lower().endswith(HEAVY_SUFFIXES)

    def has_room(self) -> bool:
        """The pool can take another file without waiting (bounded look-ahead)."""
        return len(self.queue) < 2 * self.workers

    def submit(self, job: Job, data: bytes) -> None:
        path = job.record.path
        if not self.pooled(path):
            self.done.append(
                (
                    job,
                    parse_file(path, data, self.settings.chunk_tokens, self.settings.chunk_overlap),
                )
            )
            return
        # Bounded look-ahead keeps memory flat on folders of large PDFs.
        while not self.has_room():
            self._take(block=True)
        try:
            future = self._pool().submit(parse_file, path, data, *self._sizes())
        except BrokenProcessPool:  # a process died since the last look
            self._recover([])
            future = self._pool().submit(parse_file, path, data, *self._sizes())
        self.queue.append((job, data, future))

    def _sizes(self) -> tuple[int, int]:
        return self.settings.chunk_tokens, self.settings.chunk_overlap

    def _pool(self) -> ProcessPoolExecutor:
        """The pool, started on first use."""
        if self.pool is None:
            self.pool = self._start(self.workers)
        return self.pool

    def _start(self, workers: int, note: str | None = None) -> ProcessPoolExecutor:
        """A pool of `workers` processes, each under the memory ceiling (ragged.ingest.guard),
        which writes `note` when it ends one."""
        from ragged.ingest import guard

        return ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),
            initializer=guard.start,
            initargs=(guard.ceiling(self.settings.parser_memory_mb), note),
        )

    def _take(self, block: bool) -> None:
        """Collect the files whose text is ready, in whatever order they finished."""
        if not self.queue:
            return
        if block:
            wait([f for _, _, f in self.queue], return_when=FIRST_COMPLETED)
        waiting = []
        lost: list[tuple[Job, bytes]] = []
        for job, data, future in self.queue:
            if not future.done():
                waiting.append((job, data, future))
                continue
            try:
                parsed = future.result()
            except BrokenProcessPool:
                lost.append((job, data))
                continue
            except Exception as exc:  # a bug in a loader, raised rather than returned
                parsed = f"parser crashed: {exc.__class__.__name__}: {exc}"
            self.done.append((job, parsed))
        self.queue = waiting
        if lost:
            self._recover(lost)

    def _recover(self, lost: list[tuple[Job, bytes]]) -> None:
        """A parser process died (past the memory ceiling, killed, a crash in pdfium), and
        every file the pool held failed with it, innocent or not. Each is parsed again in a
        process of its own, so only the one that kills it again fails; the run goes on with
        a fresh pool."""
        wait([f for _, _, f in self.queue])  # a broken pool fails the rest at once
        for job, data, future in self.queue:
            if future.exception() is not None:
                lost.append((job, data))
            else:
                self.done.append((job, future.result()))
        self.queue = []
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
        for job, data in lost:
            self.done.append((job, self._alone(job.record.path, data)))

    def _alone(self, path: str, data: bytes) -> Parsed:
        import tempfile

        from ragged.ingest import guard

        fd, note = tempfile.mkstemp(prefix="ragged-parser-")
        os.close(fd)
        os.unlink(note)  # the process writes it only if it ends itself at the ceiling
        pool = self._start(1, note)
        try:
            return pool.submit(parse_file, path, data, *self._sizes()).result()
        except BrokenProcessPool:
            if guard.over_ceiling(note):
                limit = guard.ceiling(self.settings.parser_memory_mb)
                return (
                    f"its parser process needed more than {limit / 1e6:,.0f} MB of memory for "
                    "it (parser_memory_mb)"
                )
            return "its parser process died on it (killed, or a crash in the PDF library)"
        except Exception as exc:
            return f"parser crashed: {exc.__class__.__name__}: {exc}"
        finally:
            pool.shutdown(wait=True)
            with contextlib.suppress(OSError):
                os.unlink(note)

    def ready(self) -> list[tuple[Job, Parsed]]:
        self._take(block=False)
        out, self.done = self.done, []
        return out

    @property
    def busy(self) -> bool:
        """Files are still being parsed in the pool."""
        return bool(self.queue)

    def wait(self) -> None:
        """Block until the pool has finished at least one file."""
        self._take(block=True)

    def close(self, wait: bool = True) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=wait, cancel_futures=True)


def _larger(cand: Candidate) -> int:
    return -cand.size


def _prepare(
    cand: Candidate,
    index: Index,
    report: IngestReport,
    walked: Sequence[Path] = (),
    force: bool = False,
) -> FileOutcome | tuple[Job, bytes | None]:
    """Settle a file without parsing if possible; else return what parsing needs: the job
    and the file's bytes, or None for a large file that is read again by blocks.

    `walked` are the folders walked whole (a moved file's old path under one of them is
    known to be gone from this machine, even on a shared server).

    `force` (a re-chunk) parses every file again, even unchanged ones, and copies no vectors.
    """
    path = str(cand.path)
    catalog = index.catalog
    known = catalog.file(path)
    if known and known.size == cand.size and known.mtime_ns == cand.mtime_ns and not force:
        return FileOutcome(path, "unchanged", known.chunks)
    failure = catalog.failure(path)
    if failure is not None and failure.signature == signature(cand):
        return FileOutcome(path, "failed", reason=failure.reason, known=True)
    from ragged.ingest.loaders import read_regular
    from ragged.ingest.stream import file_digest, streamed

    large = streamed(cand.path, cand.size)
    data: bytes | None = None
    try:
        if large:
            digest = file_digest(cand.path)  # the bytes are read again, by blocks, to parse
        else:
            data = read_regular(cand.path)
            digest = file_hash(data)
    except UnreadableDocument as exc:  # swapped for a FIFO or a device since the walk
        return FileOutcome(path, "failed", reason=exc.reason)
    except FileNotFoundError:
        return FileOutcome(path, "failed", reason="vanished during the run")
    except PermissionError:
        return FileOutcome(path, "failed", reason="permission denied")
    except OSError as exc:
        return FileOutcome(path, "failed", reason=f"cannot read: {exc.strerror}")
    if (too_large := _unpacks_too_large(cand.path, data, index.settings.max_file_mb)) is not None:
        return FileOutcome(path, "skipped", reason=too_large)
    if (
        known
        and known.content_hash != digest
        and index.store.shared
        and known.mtime_ns > cand.mtime_ns
        and not force
    ):
        # Another machine stored a newer copy of this path on the shared server: an older
        # one here must not overwrite it (and the two machines must not take turns).
        return FileOutcome(path, "skipped", reason="a newer version from another machine is stored")
    if known and known.content_hash == digest and not force:
        index.touch(path, cand.size, cand.mtime_ns)
        if failure is not None:
            catalog.clear_failures([path])
        return FileOutcome(path, "unchanged", known.chunks)
    status = "updated" if known else "added"
    record = FileRecord(
        path=path,
        size=cand.size,
        mtime_ns=cand.mtime_ns,
        content_hash=digest,
        pages=None,
        chunks=0,
        status="pending",
        embed_model=index.settings.embed_model,
        ingested_at=now(),
    )
    donors = catalog.files_with_hash(digest)
    # The same bytes stored under a path gone from disk: this file was moved or renamed from
    # there. On a shared server, only from a folder walked here: its collection holds other
    # machines' files, whose paths are missing here, and this file may be a copy of theirs.
    gone = [
        d.path
        for d in donors
        if d.path != path
        and not os.path.lexists(d.path)
        and (not index.store.shared or any(Path(d.path).is_relative_to(r) for r in walked))
    ]
    report.moves += [Move(old, path) for old in gone]
    if status == "added" and gone:
        report.moved += 1
    # A large file's vectors are not copied: that would hold all of them in memory at once.
    reused = None if force or large or not donors else index.reuse(record, donors)
    if reused is not None:
        report.reused += reused
        report.chunks += reused
        return FileOutcome(path, status, reused, reason="identical content already embedded")
    return Job(record, status, signature(cand)), data
