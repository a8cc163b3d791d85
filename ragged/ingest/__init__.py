"""ingest(paths, ...): walk, skip what is unchanged, load, chunk, embed in batches, store.

The order of writes is what makes an interrupted run safe (see ragged/catalog.py): a
file's chunks are committed to the catalog as "pending" in one transaction, vectors are
upserted into Chroma under deterministic ids, and only then are the chunks marked
embedded. A rerun embeds whatever is still pending and deletes whatever Chroma holds that
the catalog does not, so it ends with exactly the chunks a clean run makes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from ragged.catalog import ChunkRow, FileRecord, now
from ragged.errors import RaggedError, UnreadableDocument

if TYPE_CHECKING:
    from ragged.catalog import Catalog
    from ragged.config import Settings
    from ragged.ingest.chunking import Chunk
    from ragged.ingest.walk import Candidate
    from ragged.llm import LLM
    from ragged.store import Store

SPLIT_DEPTH = 6  # an over-long input is halved at most this often (1/64 of it per request)


@dataclass(frozen=True)
class FileOutcome:
    path: str
    status: str  # added | updated | unchanged | removed | skipped | failed
    chunks: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Progress:
    files_done: int
    files_total: int
    chunks_done: int
    chunks_total: int
    current: str


@dataclass
class _Tally:
    files: int = 0
    chunks_done: int = 0
    chunks_total: int = 0
    current: str = ""


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    failed: int = 0
    pending: int = 0  # chunks stored as text whose embeddings are still to come
    chunks: int = 0  # chunks written this run
    embedded: int = 0  # embeddings computed this run
    reused: int = 0  # embeddings copied from an identical file (moved or renamed)
    seconds: float = 0.0
    embed_error: str | None = None  # why embedding stopped early (Ollama down, model missing)
    embed_hint: str | None = None
    problems: list[FileOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.embed_error is None

    def count(self, outcome: FileOutcome) -> None:
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        if outcome.status in ("failed", "skipped"):
            self.problems.append(outcome)


def chunk_id(path: str, content_hash: str, index: int) -> str:
    """Deterministic, so re-adding the same chunk after a crash overwrites instead of duplicating."""
    return hashlib.sha256(f"{path}\0{content_hash}\0{index}".encode()).hexdigest()[:32]


def embed_text(row: ChunkRow) -> str:
    """What the embedding model sees: the heading path gives a section its context."""
    return f"{row.heading}\n\n{row.text}" if row.heading else row.text


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Embedder:
    """Batches pending chunks and keeps a few embedding requests in flight while files are parsed.

    Workers only make the HTTP call; every write (Chroma, catalog) happens on the calling
    thread when it collects results, so the stores see one writer.
    """

    def __init__(
        self,
        llm: LLM,
        store: Store,
        catalog: Catalog,
        model: str,
        batch: int,
        concurrency: int,
        on_embedded: Callable[[int], None],
    ) -> None:
        self.llm, self.store, self.catalog, self.model = llm, store, catalog, model
        self.batch, self.concurrency = batch, concurrency
        self.on_embedded = on_embedded
        self.buffer: list[ChunkRow] = []
        self.in_flight: deque[tuple[list[ChunkRow], Future[list[list[float]]]]] = deque()
        # Twice as many requests as Ollama has slots: its own queue then covers the moments
        # when a Chroma write holds the GIL (busy ratio 1.21 -> 1.17, docs/benchmarks.md).
        self.pool = ThreadPoolExecutor(max_workers=concurrency * 2, thread_name_prefix="embed")
        self.error: RaggedError | None = None
        self.embedded = 0
        self._ensured = False

    def add(self, rows: Sequence[ChunkRow]) -> None:
        if self.error is not None:
            return
        self.buffer.extend(rows)
        while len(self.buffer) >= self.batch:
            self._submit(self.buffer[: self.batch])
            del self.buffer[: self.batch]

    def _submit(self, rows: list[ChunkRow]) -> None:
        # Back-pressure: parsing may run ahead of Ollama by a bounded number of batches.
        while len(self.in_flight) >= self.concurrency * 4:
            self._collect(block=True)
        if self.error is None:
            self.in_flight.append(
                (rows, self.pool.submit(self._embed, [embed_text(r) for r in rows]))
            )

    def _embed(self, texts: list[str]) -> list[list[float]]:
        from ragged.llm import InputTooLong

        try:
            return self.llm.embed(texts, self.model)
        except InputTooLong:
            return [self._embed_long(t, 0) for t in texts]

    def _embed_long(self, text: str, depth: int) -> list[float]:
        """Embed a text longer than the model's context as the mean of its halves' vectors.

        Nothing is truncated: every part of the chunk contributes, and the stored text stays whole.
        """
        from ragged.llm import InputTooLong

        try:
            return self.llm.embed([text], self.model)[0]
        except InputTooLong:
            if depth >= SPLIT_DEPTH or len(text) < 2:
                raise
        middle = text.rfind(" ", 0, len(text) // 2 + 1)
        middle = middle if middle > 0 else len(text) // 2
        left = self._embed_long(text[:middle], depth + 1)
        right = self._embed_long(text[middle:], depth + 1)
        w = middle / len(text)
        mean = [w * a + (1 - w) * b for a, b in zip(left, right, strict=True)]
        norm = math.sqrt(sum(x * x for x in mean)) or 1.0
        return [x / norm for x in mean]

    def _collect(self, block: bool) -> None:
        while self.in_flight and (block or self.in_flight[0][1].done()):
            rows, future = self.in_flight.popleft()
            block = False
            try:
                vectors = future.result()
            except RaggedError as exc:  # Ollama gone, model missing, retries exhausted
                self._stop(exc)
                return
            self._write(rows, vectors)

    def _write(self, rows: list[ChunkRow], vectors: list[list[float]]) -> None:
        from ragged.store import chunk_metadata

        if not self._ensured:
            self.store.ensure(self.model, len(vectors[0]))
            self._ensured = True
        self.store.add(
            [r.id for r in rows],
            vectors,
            [r.text for r in rows],
            [
                chunk_metadata(r.path, r.rel_path, r.page, r.heading, r.idx, r.content_hash)
                for r in rows
            ],
        )
        self.catalog.mark_embedded([r.id for r in rows], self.model)
        self.embedded += len(rows)
        self.on_embedded(len(rows))

    def _stop(self, exc: RaggedError) -> None:
        """Ollama is gone: keep the text (already in the catalog as pending) and stop asking."""
        self.error = exc
        for _, future in self.in_flight:
            future.cancel()
        self.in_flight.clear()
        self.buffer.clear()

    def poll(self) -> None:
        self._collect(block=False)

    def finish(self) -> None:
        if self.buffer and self.error is None:
            self._submit(self.buffer)
            self.buffer = []
        while self.in_flight:
            self._collect(block=True)
        self.pool.shutdown(wait=True, cancel_futures=True)


def _check_model(model: str, store: Store, catalog: Catalog) -> None:
    """Refuse another embedding model before any work, from the catalog if it knows."""
    from ragged.llm import full_name

    recorded = catalog.embed_model()
    if recorded is None or store.shared:
        store.check_model(model)  # the store is the authority; a server may hold others' work
    elif full_name(recorded) != full_name(model):
        store.check_model(model)  # raises with the collection's own record and the fix


def reconcile(catalog: Catalog, store: Store) -> None:
    """Make Chroma hold exactly the catalog's embedded chunks, whatever a crash left behind."""
    tomb = catalog.tombstones()
    if tomb:
        store.delete(tomb)
        catalog.clear_tombstones(tomb)
    if not catalog.interrupted:
        # Untouched since our last clean run: nothing to compare, and Chroma stays unopened.
        fingerprint = store.fingerprint()
        if fingerprint is not None and fingerprint == catalog.store_fingerprint:
            return
        # Otherwise matching counts are enough to skip the id-by-id comparison.
        if store.count() == catalog.embedded_count():
            return
    embedded = catalog.embedded_ids()
    in_store = store.ids()
    if not store.shared:
        # Only an embedded store is this catalog's alone; on a server an id this catalog
        # never wrote may be another machine's chunk.
        store.delete(sorted(in_store - embedded))
    missing = embedded - in_store
    if missing:
        catalog.mark_unembedded(missing)


def ingest(
    paths: Sequence[Path],
    settings: Settings,
    llm: LLM,
    store: Store,
    catalog: Catalog,
    *,
    prune: bool = True,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    on_progress: Callable[[Progress], None] | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
) -> IngestReport:
    """Bring the collection up to date with the files under `paths`."""
    from ragged.ingest.walk import walk

    started = time.perf_counter()
    report = IngestReport()
    _check_model(settings.embed_model, store, catalog)
    reconcile(catalog, store)
    catalog.begin_run()

    found = walk(
        paths,
        include=include,
        exclude=exclude,
        max_bytes=int(settings.max_file_mb * 1_000_000) if settings.max_file_mb > 0 else None,
    )
    files_total = len(found.candidates)
    state = _Tally(chunks_total=catalog.pending_count())

    def progress() -> None:
        if on_progress:
            on_progress(
                Progress(
                    state.files, files_total, state.chunks_done, state.chunks_total, state.current
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
        record(FileOutcome(s.path, "failed" if s.failed else "skipped", reason=s.reason))

    embedder = Embedder(
        llm,
        store,
        catalog,
        settings.embed_model,
        settings.embed_batch,
        settings.embed_concurrency,
        embedded,
    )
    parsers = Parsers(settings)

    def finish(record: FileRecord, parsed: Parsed, status: str) -> None:
        outcome, rows = _store_parsed(record, parsed, status, catalog, report)
        if rows:
            state.chunks_total += len(rows)
            embedder.add(rows)
        record_outcome(outcome)

    def record_outcome(outcome: FileOutcome) -> None:
        record(outcome)
        state.files += 1
        progress()

    try:
        # Chunks left pending by an earlier run (Ollama was down, or the run was killed) go first.
        embedder.add(catalog.pending())
        seen: set[str] = set()
        for cand in found.candidates:
            state.current = cand.rel_path
            progress()
            seen.add(str(cand.path))
            prepared = _prepare(cand, settings, store, catalog, report)
            if isinstance(prepared, FileOutcome):
                record_outcome(prepared)
            else:
                parsers.submit(*prepared)
            for done in parsers.ready():
                finish(*done)
            embedder.poll()
        for done in parsers.drain():
            finish(*done)
        embedder.finish()
        progress()

        if prune:
            for root in found.complete_roots:
                gone = [f.path for f in catalog.files(str(root)) if f.path not in seen]
                # A stored file that failed to load this time is kept (it is in `seen`).
                catalog.remove_files(gone)
                for path in gone:
                    record(FileOutcome(path, "removed"))
        tomb = catalog.tombstones()
        if tomb:
            store.delete(tomb)
            catalog.clear_tombstones(tomb)
        catalog.end_run(store.fingerprint())
    finally:
        embedder.pool.shutdown(wait=False, cancel_futures=True)
        parsers.close()

    report.embedded = embedder.embedded
    report.pending = catalog.pending_count()
    if embedder.error is not None:
        report.embed_error = embedder.error.message
        report.embed_hint = embedder.error.hint
    report.seconds = time.perf_counter() - started
    return report


# What parsing a file gives: its page count and chunks, or why it could not be read.
Parsed: TypeAlias = "tuple[int | None, list[Chunk]] | str"


def parse_file(path: str, data: bytes, max_tokens: int, overlap: int) -> Parsed:
    """Load and chunk one file. Runs in a worker process for PDFs, so it returns, never raises."""
    from ragged.ingest.chunking import chunk
    from ragged.ingest.loaders import load

    try:
        document = load(Path(path), data)
        pieces = chunk(document, max_tokens, overlap)
    except UnreadableDocument as exc:
        return exc.reason
    if not pieces:
        return "no extractable text"
    return document.pages, pieces


class Parsers:
    """Parses files: text formats inline, PDFs in a pool of processes while the run goes on.

    pypdf is pure Python and CPU-bound, so threads would not help; the pool is started only
    when the first PDF needs parsing, since spawning workers costs a few hundred ms.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers = max(1, min(4, os.cpu_count() or 1))
        self.pool: ProcessPoolExecutor | None = None
        self.queue: deque[tuple[FileRecord, str, Future[Parsed]]] = deque()
        self.done: list[tuple[FileRecord, Parsed, str]] = []

    def submit(self, record: FileRecord, data: bytes, status: str) -> None:
        args = (record.path, data, self.settings.chunk_tokens, self.settings.chunk_overlap)
        if not record.path.lower().endswith(".pdf"):
            self.done.append((record, parse_file(*args), status))
            return
        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
        # Bounded look-ahead keeps memory flat on folders of large PDFs.
        while len(self.queue) >= 2 * self.workers:
            self._take(block=True)
        self.queue.append((record, status, self.pool.submit(parse_file, *args)))

    def _take(self, block: bool) -> None:
        while self.queue and (block or self.queue[0][2].done()):
            record, status, future = self.queue.popleft()
            block = False
            try:
                parsed = future.result()
            except Exception as exc:  # a worker that died (out of memory, a crash in pypdf)
                parsed = f"parser crashed: {exc.__class__.__name__}: {exc}"
            self.done.append((record, parsed, status))

    def ready(self) -> list[tuple[FileRecord, Parsed, str]]:
        self._take(block=False)
        out, self.done = self.done, []
        return out

    def drain(self) -> list[tuple[FileRecord, Parsed, str]]:
        while self.queue:
            self._take(block=True)
        return self.ready()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _prepare(
    cand: Candidate, settings: Settings, store: Store, catalog: Catalog, report: IngestReport
) -> FileOutcome | tuple[FileRecord, bytes, str]:
    """Settle a file without parsing if possible; else return what parsing needs."""
    path = str(cand.path)
    known = catalog.file(path)
    same_root = known is not None and known.root == str(cand.root)
    if known and same_root and known.size == cand.size and known.mtime_ns == cand.mtime_ns:
        return FileOutcome(path, "unchanged", known.chunks)
    try:
        data = cand.path.read_bytes()
    except FileNotFoundError:
        return FileOutcome(path, "failed", reason="vanished during the run")
    except PermissionError:
        return FileOutcome(path, "failed", reason="permission denied")
    except OSError as exc:
        return FileOutcome(path, "failed", reason=f"cannot read: {exc.strerror}")
    digest = file_hash(data)
    if known and same_root and known.content_hash == digest:
        catalog.touch(path, cand.size, cand.mtime_ns)
        return FileOutcome(path, "unchanged", known.chunks)
    status = "updated" if known else "added"
    record = FileRecord(
        path=path,
        root=str(cand.root),
        rel_path=cand.rel_path,
        size=cand.size,
        mtime_ns=cand.mtime_ns,
        content_hash=digest,
        pages=None,
        chunks=0,
        status="pending",
        embed_model=settings.embed_model,
        ingested_at=now(),
    )
    reused = _reuse_identical(record, store, catalog)
    if reused is not None:
        report.reused += reused
        report.chunks += reused
        return FileOutcome(path, status, reused, reason="identical content already embedded")
    return record, data, status


def _store_parsed(
    record: FileRecord,
    parsed: Parsed,
    status: str,
    catalog: Catalog,
    report: IngestReport,
) -> tuple[FileOutcome, list[ChunkRow]]:
    """Commit a parsed file's chunks as pending; returns its outcome and the rows to embed."""
    if isinstance(parsed, str):
        return FileOutcome(record.path, "failed", reason=parsed), []
    pages, pieces = parsed
    rows = [_row(record, c.index, c.text, c.page, c.heading, c.tokens) for c in pieces]
    catalog.replace_file(dataclasses.replace(record, pages=pages), rows)
    report.chunks += len(rows)
    return FileOutcome(record.path, status, len(rows)), rows


def _row(
    record: FileRecord, idx: int, text: str, page: int | None, heading: str, tokens: int
) -> ChunkRow:
    """A chunk of this version of this file, under its deterministic id."""
    return ChunkRow(
        id=chunk_id(record.path, record.content_hash, idx),
        path=record.path,
        rel_path=record.rel_path,
        idx=idx,
        text=text,
        page=page,
        heading=heading,
        tokens=tokens,
        content_hash=record.content_hash,
    )


def _reuse_identical(record: FileRecord, store: Store, catalog: Catalog) -> int | None:
    """A moved, renamed or copied file: copy the vectors of a stored file with the same bytes."""
    from ragged.store import chunk_metadata

    for donor in catalog.files_with_hash(record.content_hash):
        # The donor may be this very path, ingested before under another root.
        if donor.embed_model != record.embed_model:
            continue
        old = catalog.chunks_of(donor.path)
        vectors = store.vectors([c.id for c in old])
        if not old or len(vectors) != len(old):
            continue
        rows = [_row(record, c.idx, c.text, c.page, c.heading, c.tokens) for c in old]
        # Catalog first (as pending), then vectors, then the mark: the same order as a
        # parsed file, so a crash in between leaves nothing the next run cannot see.
        catalog.replace_file(dataclasses.replace(record, pages=donor.pages), rows)
        store.add(
            [r.id for r in rows],
            [vectors[c.id] for c in old],
            [r.text for r in rows],
            [
                chunk_metadata(r.path, r.rel_path, r.page, r.heading, r.idx, r.content_hash)
                for r in rows
            ],
        )
        catalog.mark_embedded([r.id for r in rows], record.embed_model or "")
        return len(rows)
    return None
