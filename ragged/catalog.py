"""The local catalog of one collection: the file manifest, chunk texts and their BM25 index.

A file's chunks land here in one transaction (marked not yet embedded) before any vector is
written to Chroma, and Chroma writes are idempotent upserts keyed by the same chunk ids; so
after a crash at any moment the catalog says exactly what is missing, and chunk ids that
Chroma must forget are kept as tombstones until it has. FTS5 rows are kept in step by
triggers inside the same transactions, so the lexical index can never disagree with the
manifest. Only ragged/index.py writes through this class: it owns the catalog + store pair.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextlib import nullcontext as _nothing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

from ragged.errors import StoreError

if TYPE_CHECKING:
    from ragged.config import Settings

# Numbered migrations, applied in order inside one transaction each; `meta.schema_version`
# says how many a catalog has had. Never edit a released step: add the next one.
MIGRATIONS: tuple[str, ...] = (
    # 1: ragged 0.1.0
    """
    CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
    CREATE TABLE IF NOT EXISTS files(
        path TEXT PRIMARY KEY, root TEXT NOT NULL, rel_path TEXT NOT NULL,
        size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, content_hash TEXT NOT NULL,
        pages INTEGER, chunks INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL,
        embed_model TEXT, ingested_at REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS files_hash ON files(content_hash);
    CREATE INDEX IF NOT EXISTS files_root ON files(root);
    CREATE TABLE IF NOT EXISTS chunks(
        rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, path TEXT NOT NULL,
        rel_path TEXT NOT NULL, idx INTEGER NOT NULL, text TEXT NOT NULL, page INTEGER,
        heading TEXT NOT NULL DEFAULT '', tokens INTEGER NOT NULL, content_hash TEXT NOT NULL,
        embedded INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path, idx);
    CREATE INDEX IF NOT EXISTS chunks_pending ON chunks(embedded);
    CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
        text, heading, content='chunks', content_rowid='rowid',
        tokenize='porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, text, heading) VALUES (new.rowid, new.text, new.heading);
    END;
    CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text, heading)
        VALUES ('delete', old.rowid, old.text, old.heading);
    END;
    CREATE TABLE IF NOT EXISTS tombstones(id TEXT PRIMARY KEY);
    """,
    # 2: a file is its resolved absolute path alone (the root it was reached from and the
    # path relative to it made the same file two files); failures are remembered.
    """
    DROP INDEX IF EXISTS files_root;
    ALTER TABLE files DROP COLUMN root;
    ALTER TABLE files DROP COLUMN rel_path;
    ALTER TABLE chunks DROP COLUMN rel_path;
    CREATE TABLE failures(
        path TEXT PRIMARY KEY,
        signature TEXT NOT NULL,     -- size:mtime_ns:ctime_ns when it failed; a change retries it
        reason TEXT NOT NULL,
        failed_at REAL NOT NULL
    );
    """,
    # 3: a chunk shared by small sections keeps its later sections' headings (subheadings),
    # indexed beside its heading path. FTS5 cannot add a column, so the index is made anew
    # from the rows (rows stored before have none: their files are not read again for it).
    """
    ALTER TABLE chunks ADD COLUMN subheadings TEXT NOT NULL DEFAULT '';
    DROP TRIGGER chunks_ai;
    DROP TRIGGER chunks_ad;
    DROP TABLE chunks_fts;
    CREATE VIRTUAL TABLE chunks_fts USING fts5(
        text, heading, subheadings, content='chunks', content_rowid='rowid',
        tokenize='porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, text, heading, subheadings)
        VALUES (new.rowid, new.text, new.heading, new.subheadings);
    END;
    CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text, heading, subheadings)
        VALUES ('delete', old.rowid, old.text, old.heading, old.subheadings);
    END;
    INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild');
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
UNBLANKED_KEY = "unblanked_passages"  # meta: a JSON list of chunk ids
CHUNKING_KEY = "chunking"  # meta: "chunk_tokens/chunk_overlap", what the chunks were cut with
# meta: chunks were deleted since the files were last purged of deleted text (Index.purge);
# kept here so a run killed before its purge, or a watch stopped before its own, leaves it due.
PURGE_DUE_KEY = "purge_due"
# meta: why the last purge left deleted text readable (a full disk, a file it may not write,
# another Chroma's layout); `ragged doctor` names it, and a purge that succeeds clears it.
PURGE_FAILED_KEY = "purge_failed"
PURGE_TRIES = 3  # runs that try a purge that keeps failing before it waits for a new deletion
BUSY_TIMEOUT = 30.0  # seconds a write waits for another process's transaction
# A reader's purge (Catalog.purge without wait) waits this long for another process's brief
# transaction (a catch-up) before leaving the purge to the next command or the writer.
PURGE_WAIT_MS = 250

FILE_COLUMNS = "path, size, mtime_ns, content_hash, pages, chunks, status, embed_model, ingested_at"
CHUNK_COLUMNS = "id, path, idx, text, page, heading, tokens, content_hash, subheadings"
# Bound values one statement may take on every SQLite build (999 before SQLite 3.32), and so
# the chunk rows one INSERT carries (CHUNK_COLUMNS and `embedded`: 10 values a row).
MAX_VARIABLES = 999
_CHUNK_VALUES = len(CHUNK_COLUMNS.split(",")) + 1
_CHUNK_ROW = "(" + ",".join("?" * _CHUNK_VALUES) + ")"
ROWS_PER_STATEMENT = MAX_VARIABLES // _CHUNK_VALUES
_T = TypeVar("_T")

# Common English words carry no signal for BM25 and slow FTS5 OR-queries down.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves""".split()
)
WORD = re.compile(r"\w+", re.UNICODE)
# A keyword search scores the chunks that hold a word found in more than this share of the
# collection only if they hold a rarer word too (when that leaves at least k chunks): the
# "common terms" of Lucene's CommonTermsQuery. Chosen on SciFact and the 100k-chunk benchmark
# (docs/benchmarks.md).
COMMON_SHARE = 0.1
PREFIX_MIN = 4  # shorter keywords match as whole words only ("go" must not count "good")
# chunks_fts's tokenizer, as migrations 1 and 3 created it; a scratch index must split words alike.
TOKENIZER = "porter unicode61 remove_diacritics 2"
# BM25 column weights (text, heading, subheadings): a match in a chunk's heading path, whose
# first element is its document's title, counts three times a match in its text. Chosen on
# SciFact's train claims with titles as headings (lexical nDCG@10 0.703 at 1, 0.710 at 3, 0.707
# at 5); see docs/benchmarks.md. A later section's heading in a shared chunk weighs what it
# would as the heading of a chunk of its own.
BM25_WEIGHTS = (1.0, 3.0, 3.0)


class CatalogDamaged(StoreError):
    """The catalog file is not a readable SQLite database."""


@dataclass(frozen=True)
class FileRecord:
    path: str  # absolute and resolved: the file's identity, whatever folder reached it
    size: int
    mtime_ns: int
    content_hash: str
    pages: int | None
    chunks: int
    status: str  # 'ok' | 'pending' (chunks await embeddings)
    embed_model: str | None
    ingested_at: float


@dataclass(frozen=True)
class ChunkRow:
    id: str
    path: str
    idx: int
    text: str
    page: int | None
    heading: str
    tokens: int
    content_hash: str
    # Headings of the later sections that share this chunk (chunking.Chunk.subheadings).
    subheadings: str = ""


@dataclass(frozen=True)
class Failure:
    """A file that could not be stored, remembered so an unchanged one is not parsed again."""

    path: str
    signature: str
    reason: str
    failed_at: float


def keywords(text: str) -> list[str]:
    """The words a keyword search looks for: lowercased, once each, without stopwords.

    e.g. 'What is the CPU-only mode?' -> ['cpu', 'only', 'mode']
    """
    return [w for w in dict.fromkeys(WORD.findall(text.lower())) if w not in STOPWORDS]


def lexical_query(words: Sequence[str]) -> str:
    """An FTS5 OR-query of the words, each quoted so no word is read as syntax.

    e.g. ['cpu', 'only', 'mode'] -> '"cpu" OR "only" OR "mode"'
    """
    return " OR ".join(f'"{w}"' for w in words)


class Catalog:
    """One collection's SQLite catalog."""

    def __init__(self, path: Path) -> None:
        from ragged.config import private_dir, private_file
        from ragged.disk import full

        self.path = path
        self.batch_started: float | None = None  # when the open batch began (see open_batch)
        # A shared index mounted read-only still serves list, search and ask.
        self.read_only = not _writable(path)
        if self.read_only and not path.exists():
            raise StoreError(
                f"cannot create the catalog {path}: {_nearest(path.parent)} is not writable",
                hint="point RAGGED_HOME at a writable folder",
            )
        try:
            if self.read_only:
                self._db = _open_read_only(path)
            else:
                private_file(private_dir(path.parent) / path.name)
                # One connection used from one thread at a time; the ingest writer owns it.
                self._db = sqlite3.connect(
                    path, timeout=BUSY_TIMEOUT, check_same_thread=False, isolation_level=None
                )
        except (sqlite3.Error, OSError) as exc:
            raise full(exc, path, "cannot open the catalog") or StoreError(
                f"{path}: cannot open the catalog: {exc}"
            ) from exc
        try:
            if not self.read_only:
                _use_wal(self._db)
                # NORMAL is durable across a killed process (not a power cut) and much faster.
                self._db.execute("PRAGMA synchronous=NORMAL")
                # Deleted rows (a removed file, a replaced version) are overwritten with zeros
                # rather than left readable in free pages.
                self._db.execute("PRAGMA secure_delete=ON")
            self._migrate()
            # The file this connection holds: `reset` unlinks it, and a long-lived process
            # would otherwise go on reading the deleted one (see `replaced`).
            self._identity = _identity(path)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            # Not damage: SQLite could not grow the shared-memory file it needs even to read.
            # `doctor --fix` would have moved a sound catalog aside.
            if found := full(exc, path, "cannot open the catalog"):
                raise found from exc
            raise CatalogDamaged(
                f"{path}: the catalog is damaged ({exc})",
                hint="run `ragged doctor --fix` to rebuild it from the vector store",
            ) from exc

    def _version(self) -> int:
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            return 0
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION, one numbered step per transaction."""
        version = self._version()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: the catalog was written by a newer ragged "
                f"(schema {version}, this one knows {SCHEMA_VERSION})",
                hint="upgrade ragged",
            )
        if version < SCHEMA_VERSION and self.read_only:
            raise StoreError(
                f"{self.path}: the catalog needs an upgrade (schema {version} to "
                f"{SCHEMA_VERSION}) and its folder is read-only",
                hint="run any ragged command once where the data dir is writable",
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            # The version is read again under the write lock: another process opening the same
            # new catalog (a search started beside the first ingest) may have applied this step
            # since, and step 2 run twice drops a column that is gone ("no such column: root").
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._version() < number:
                    for statement in _statements(MIGRATIONS[number - 1]):
                        self._db.execute(statement)
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(number),)
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def replaced(self) -> bool:
        """Whether the file at `path` is no longer the one this connection reads: deleted
        (`reset`), or made anew since. A stat, ~5 µs: long-lived processes ask before each use."""
        return _identity(self.path) != self._identity

    def close(self) -> None:
        self.commit_batch()  # every step in it finished: what it holds is sound
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One step, all or nothing; inside an open batch, a savepoint of it."""
        if self.read_only:
            raise StoreError(
                f"cannot change the catalog {self.path}: its folder is read-only",
                hint="commands that change a collection need a writable data dir",
            )
        begin, end = "BEGIN IMMEDIATE", "COMMIT"
        undo: tuple[str, ...] = ("ROLLBACK",)
        if self.batch_started is not None:
            begin, undo, end = (
                "SAVEPOINT step",
                ("ROLLBACK TO step", "RELEASE step"),
                "RELEASE step",
            )
        self._db.execute(begin)
        try:
            yield self._db
        except BaseException:
            for statement in undo:
                self._db.execute(statement)
            raise
        self._db.execute(end)

    def open_batch(self) -> None:
        """Let the steps that follow share one commit, until `commit_batch`.

        Each commit writes a new FTS5 segment and syncs the WAL: an ingest of 1,500 small
        files spent a third of its main thread committing them one by one. The owner of the
        catalog + store pair commits before anything reaches the store (docs/design.md).
        """
        if self.batch_started is None:
            self._db.execute("BEGIN IMMEDIATE")
            self.batch_started = time.monotonic()

    def commit_batch(self) -> None:
        if self.batch_started is not None:
            self.batch_started = None
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")  # the connection stays usable
                raise

    # -- run bookkeeping -----------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row and row[0] else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- passages still to blank ---------------------------------------------------------

    def unblanked(self) -> set[str]:
        """Chunk ids deleted while a saved conversation that holds their passages could not
        be rewritten (ragged.index.Index.flush_tombstones tries them again)."""
        return set(json.loads(self.meta(UNBLANKED_KEY) or "[]"))

    def note_unblanked(self, add: Iterable[str] = (), done: Iterable[str] = ()) -> None:
        """Put ids on that list and take others off, in one step: readers of a shared server
        (outside the write lock) may do it at the same time."""
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (UNBLANKED_KEY,)).fetchone()
            ids = set(json.loads(row[0]) if row and row[0] else []) - set(done) | set(add)
            self.set_meta(UNBLANKED_KEY, json.dumps(sorted(ids)) if ids else None)

    def begin_run(self) -> None:
        """Mark a write in progress; if it is never ended, the next run checks Chroma in full."""
        self.set_meta("run_in_progress", "1")

    def settle_store_fingerprint(self, found: str, now: str) -> bool:
        """Record the store's fingerprint as a reader left it (`now`), if it is still the one
        the reader found and no run is under way: checked and written in one transaction,
        which never waits for a writer (a reader is not held up by an ingest, nor the other
        way round). Returns whether it was recorded."""
        try:
            with self._waiting(0), self.transaction():
                if self.store_fingerprint != found or self.interrupted:
                    return False
                self.set_meta("store_fingerprint", now)
                return True
        except sqlite3.OperationalError:  # locked: a writer is at work, and will record its own
            return False

    @contextmanager
    def _waiting(self, ms: int) -> Iterator[None]:
        """Wait at most `ms` for another connection's write, instead of BUSY_TIMEOUT."""
        (wait_ms,) = self._db.execute("PRAGMA busy_timeout").fetchone()
        self._db.execute(f"PRAGMA busy_timeout = {int(ms)}")
        try:
            yield
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")

    def end_run(self, store_fingerprint: str | None = None) -> None:
        """A clean end; the store's fingerprint then lets the next run trust it unopened."""
        with self.transaction():
            self.set_meta("run_in_progress", None)
            self.set_meta("store_fingerprint", store_fingerprint or "")

    @property
    def store_fingerprint(self) -> str | None:
        return self.meta("store_fingerprint")

    @property
    def interrupted(self) -> bool:
        return self.meta("run_in_progress") is not None

    def embed_model(self) -> str | None:
        """The embedding model the stored files were embedded with, if any."""
        row = self._db.execute(
            "SELECT embed_model FROM files WHERE status = 'ok' AND embed_model IS NOT NULL LIMIT 1"
        ).fetchone()
        return row[0] if row else None

    # -- files ---------------------------------------------------------------------------

    def file(self, path: str) -> FileRecord | None:
        row = self._db.execute(
            f"SELECT {FILE_COLUMNS} FROM files WHERE path = ?", (path,)
        ).fetchone()
        return FileRecord(*row) if row else None

    def files(self, under: str | None = None) -> list[FileRecord]:
        """Every stored file, or those inside the folder `under`."""
        if under is None:
            rows = self._db.execute(f"SELECT {FILE_COLUMNS} FROM files ORDER BY path").fetchall()
        else:
            prefix = under.rstrip("/") + "/"
            rows = self._db.execute(
                f"SELECT {FILE_COLUMNS} FROM files WHERE substr(path, 1, ?) = ? ORDER BY path",
                (len(prefix), prefix),
            ).fetchall()
        return [FileRecord(*r) for r in rows]

    def file_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM files").fetchone()[0])

    def files_with_hash(self, content_hash: str) -> list[FileRecord]:
        rows = self._db.execute(
            f"SELECT {FILE_COLUMNS} FROM files WHERE content_hash = ? AND status = 'ok'",
            (content_hash,),
        ).fetchall()
        return [FileRecord(*r) for r in rows]

    def touch(self, path: str, size: int, mtime_ns: int) -> None:
        """Same content, new stat: remember it so the next run need not hash the file."""
        with self.transaction() as db:
            db.execute(
                "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path)
            )

    def replace_file(
        self,
        record: FileRecord,
        chunks: Sequence[ChunkRow],
        embedded: bool = False,
        tombstone: bool = True,
    ) -> None:
        """Swap a file's chunks for new ones in one transaction; old ids become tombstones.

        `tombstone=False` is for a cache of a shared server taking the server's version: the
        old ids are already gone there, or are another machine's to delete.
        """
        with self.transaction() as db:
            if not tombstone:
                old = {
                    r[0] for r in db.execute("SELECT id FROM chunks WHERE path = ?", (record.path,))
                }
                if old - {c.id for c in chunks}:
                    # No tombstone will ask for the purge: the old text leaves this catalog now.
                    self._purge_due(db)
            self._forget(db, record.path, tombstone)
            self._insert(db, record, chunks, embedded)

    def append_chunks(self, path: str, chunks: Sequence[ChunkRow]) -> None:
        """More chunks of a file being stored in parts (a large file, streamed); not embedded."""
        with self.transaction() as db:
            self._insert_chunks(db, chunks, embedded=False)
            db.execute(
                "UPDATE files SET chunks = chunks + ?, status = 'pending' WHERE path = ?",
                (len(chunks), path),
            )

    def complete_file(self, record: FileRecord) -> None:
        """A file stored in parts is whole: its real stat and hash replace the placeholders."""
        with self.transaction() as db:
            db.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, content_hash = ?, pages = ? "
                "WHERE path = ?",
                (record.size, record.mtime_ns, record.content_hash, record.pages, record.path),
            )

    def _insert(
        self, db: sqlite3.Connection, record: FileRecord, chunks: Sequence[ChunkRow], embedded: bool
    ) -> None:
        db.execute(
            f"INSERT INTO files({FILE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                record.path,
                record.size,
                record.mtime_ns,
                record.content_hash,
                record.pages,
                len(chunks),
                record.status,
                record.embed_model,
                record.ingested_at,
            ),
        )
        self._insert_chunks(db, chunks, embedded)
        db.execute("DELETE FROM failures WHERE path = ?", (record.path,))

    def _insert_chunks(
        self, db: sqlite3.Connection, chunks: Sequence[ChunkRow], embedded: bool
    ) -> None:
        """A file's chunks in statements of up to ROWS_PER_STATEMENT rows, not one per row.

        Why: every statement step hands the GIL back, and while another thread holds it
        (chromadb's import, Ollama's replies being read) each step waits up to a switch
        interval (5 ms) to get it back: staging a 197-chunk PDF one row at a time took
        0.45 s beside the import, against a few ms alone (docs/benchmarks.md, "Seventh pass").
        """
        for part in _parts(chunks, ROWS_PER_STATEMENT):
            db.execute(
                f"INSERT INTO chunks({CHUNK_COLUMNS}, embedded) VALUES "
                + ",".join([_CHUNK_ROW] * len(part)),
                [
                    value
                    for c in part
                    for value in (c.id, c.path, c.idx, c.text, c.page, c.heading, c.tokens)
                    + (c.content_hash, c.subheadings, int(embedded))
                ],
            )
        # An id may have been tombstoned by an earlier version of this file: it lives again.
        for part in _parts(chunks, MAX_VARIABLES):
            db.execute(
                f"DELETE FROM tombstones WHERE id IN ({','.join('?' * len(part))})",
                [c.id for c in part],
            )

    def remove_files(self, paths: Iterable[str]) -> int:
        """Forget files and tombstone their chunks; returns how many files were known."""
        removed = 0
        with self.transaction() as db:
            for path in paths:
                removed += self._forget(db, path)
                db.execute("DELETE FROM failures WHERE path = ?", (path,))
        return removed

    def forget_chunks(self, ids: Iterable[str]) -> int:
        """Drop chunks the server no longer has (no tombstones); a file left empty goes too.
        Their words stay in the BM25 index until a purge, marked due in the same step."""
        ids = list(ids)
        with self.transaction() as db:
            if ids:
                self._purge_due(db)
            paths = set()
            for part in _parts(ids, MAX_VARIABLES):
                marks = ",".join("?" * len(part))
                paths |= {
                    r[0]
                    for r in db.execute(
                        f"SELECT DISTINCT path FROM chunks WHERE id IN ({marks})", part
                    )
                }
                db.execute(f"DELETE FROM chunks WHERE id IN ({marks})", part)
            for path in paths:
                left = db.execute("SELECT count(*) FROM chunks WHERE path = ?", (path,)).fetchone()[
                    0
                ]
                if left:
                    db.execute("UPDATE files SET chunks = ? WHERE path = ?", (left, path))
                else:
                    db.execute("DELETE FROM files WHERE path = ?", (path,))
        return len(ids)

    def mark_purge_due(self) -> None:
        """Chunks were deleted: their text is to be purged from the files (Index.purge)."""
        with self.transaction() as db:
            self._purge_due(db)

    @staticmethod
    def _purge_due(db: sqlite3.Connection) -> None:
        # A new value each time: a purge clears only the mark it saw (`clear_purge_due`), so a
        # reader's catch-up marking it meanwhile is not lost.
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (PURGE_DUE_KEY, uuid.uuid4().hex))

    def clear_purge_due(self, seen: str | None, wait: bool = True, purged: bool = True) -> None:
        """The mark goes, unless a deletion since set a new one, and if `purged`, the record
        of an earlier failure too. Without `wait`, as `purge`: a reader does not wait behind
        a writer's transaction for it."""
        with self._waiting(PURGE_WAIT_MS) if not wait else _nothing(), self.transaction() as db:
            db.execute("DELETE FROM meta WHERE key = ? AND value = ?", (PURGE_DUE_KEY, seen))
            if purged:
                db.execute("DELETE FROM meta WHERE key = ?", (PURGE_FAILED_KEY,))

    def purge_failed(self, seen: str | None, problem: str) -> None:
        """A purge that failed (a full disk, a file it may not write) stays due for the next
        runs, but not for ever: a failure that repeats would cost every later run a whole
        purge. After PURGE_TRIES, only a new deletion (a new mark) or `doctor --fix` tries
        again; `problem` stays on record for `doctor` until a purge succeeds."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (PURGE_FAILED_KEY, problem))
            if seen is None:
                return  # nothing was due (a `remove` purges whether or not)
            if seen.count("+") + 1 >= PURGE_TRIES:
                db.execute("DELETE FROM meta WHERE key = ? AND value = ?", (PURGE_DUE_KEY, seen))
            else:
                db.execute(
                    "UPDATE meta SET value = ? WHERE key = ? AND value = ?",
                    (seen + "+", PURGE_DUE_KEY, seen),
                )

    def _forget(self, db: sqlite3.Connection, path: str, tombstone: bool = True) -> int:
        if tombstone:
            db.execute(
                "INSERT OR IGNORE INTO tombstones SELECT id FROM chunks WHERE path = ?", (path,)
            )
        db.execute("DELETE FROM chunks WHERE path = ?", (path,))
        return db.execute("DELETE FROM files WHERE path = ?", (path,)).rowcount

    # -- failures ------------------------------------------------------------------------

    def failure(self, path: str) -> Failure | None:
        row = self._db.execute(
            "SELECT path, signature, reason, failed_at FROM failures WHERE path = ?", (path,)
        ).fetchone()
        return Failure(*row) if row else None

    def failures(self, under: str | None = None) -> list[Failure]:
        rows = self._db.execute(
            "SELECT path, signature, reason, failed_at FROM failures ORDER BY path"
        ).fetchall()
        found = [Failure(*r) for r in rows]
        if under is not None:
            prefix = under.rstrip("/") + "/"
            found = [f for f in found if f.path.startswith(prefix)]
        return found

    def record_failure(self, path: str, signature: str, reason: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)",
                (path, signature, reason, now()),
            )

    def clear_failures(self, paths: Iterable[str]) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM failures WHERE path = ?", [(p,) for p in paths])

    # -- chunks --------------------------------------------------------------------------

    def chunks_of(self, path: str) -> list[ChunkRow]:
        rows = self._db.execute(
            f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE path = ? ORDER BY idx", (path,)
        ).fetchall()
        return [ChunkRow(*r) for r in rows]

    def pending(self, limit: int | None = None) -> list[ChunkRow]:
        """Chunks stored as text whose vectors are not in Chroma yet."""
        rows = self._db.execute(
            f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE embedded = 0 ORDER BY path, idx"
            + (f" LIMIT {int(limit)}" if limit else "")
        ).fetchall()
        return [ChunkRow(*r) for r in rows]

    def pending_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM chunks WHERE embedded = 0").fetchone()[0])

    def mark_embedded(self, ids: Sequence[str], embed_model: str) -> None:
        """Record vectors as stored; a file whose chunks are all embedded becomes 'ok'."""
        with self.transaction() as db:
            self._set_embedded(db, ids, 1)
            # Only the files of these chunks can have just become whole: each is found by its
            # key, so a write costs the same whatever else is still pending (every store write
            # comes here). `+c.embedded` keeps SQLite on chunks_path: given chunks_pending, it
            # read every pending chunk for every pending file (1,538 files: 90 ms a write).
            for part in _parts(ids, MAX_VARIABLES - 1):  # and the model: one more variable
                marks = ",".join("?" * len(part))
                db.execute(
                    "UPDATE files SET status = 'ok', embed_model = ? WHERE status = 'pending' "
                    f"AND path IN (SELECT path FROM chunks WHERE id IN ({marks})) AND NOT EXISTS "
                    "(SELECT 1 FROM chunks c WHERE c.path = files.path AND +c.embedded = 0)",
                    (embed_model, *part),
                )

    def mark_unembedded(self, ids: Iterable[str]) -> None:
        with self.transaction() as db:
            self._set_embedded(db, list(ids), 0)
            # Every file, not only these chunks' files: one marked 'ok' with a chunk still
            # pending is put right too. `+c.embedded`: see mark_embedded.
            db.execute(
                "UPDATE files SET status = 'pending' WHERE EXISTS "
                "(SELECT 1 FROM chunks c WHERE c.path = files.path AND +c.embedded = 0)"
            )

    @staticmethod
    def _set_embedded(db: sqlite3.Connection, ids: Sequence[str], value: int) -> None:
        # A statement per MAX_VARIABLES ids, not one per id (see _insert_chunks).
        for part in _parts(ids, MAX_VARIABLES):
            marks = ",".join("?" * len(part))
            db.execute(f"UPDATE chunks SET embedded = {int(value)} WHERE id IN ({marks})", part)

    def embedded_count(self, paths: Sequence[str] | None = None) -> int:
        """Chunks whose vectors are in the store, of every file or of these files."""
        if paths is None:
            sql = "SELECT count(*) FROM chunks WHERE embedded = 1"
            return int(self._db.execute(sql).fetchone()[0])
        total = 0
        for part in _parts(list(paths), MAX_VARIABLES):  # a folder's files may be thousands
            marks = ",".join("?" * len(part))
            # `+embedded`: by the files' own chunks (chunks_path), not every embedded chunk.
            sql = f"SELECT count(*) FROM chunks WHERE +embedded = 1 AND path IN ({marks})"
            total += int(self._db.execute(sql, part).fetchone()[0])
        return total

    def embedded_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT id FROM chunks WHERE embedded = 1")}

    def pending_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT id FROM chunks WHERE embedded = 0")}

    def chunk_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def chunks_by_id(self, ids: Sequence[str]) -> dict[str, ChunkRow]:
        out: dict[str, ChunkRow] = {}
        for part in _parts(ids, MAX_VARIABLES):
            marks = ",".join("?" * len(part))
            for r in self._db.execute(
                f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE id IN ({marks})", part
            ):
                out[r[0]] = ChunkRow(*r)
        return out

    # -- tombstones ----------------------------------------------------------------------

    def tombstones(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT id FROM tombstones")]

    def clear_tombstones(self, ids: Sequence[str]) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM tombstones WHERE id = ?", [(i,) for i in ids])

    # -- lexical search ------------------------------------------------------------------

    def search(
        self, question: str, k: int, paths: Sequence[str] | None = None
    ) -> list[tuple[ChunkRow, float]]:
        """BM25 over chunk text and headings (weighted BM25_WEIGHTS); higher score is better.

        Chunks that hold only common words (COMMON_SHARE) are left out when at least k chunks
        hold a rarer word of the question; the chunks returned keep their full scores.
        """
        words = keywords(question)
        if not words or (paths is not None and not paths):
            return []
        try:
            common = self._common(words) if len(words) > 1 else set()
            rarer = [w for w in words if w not in common]
            if common and rarer:
                rows = self._ranked(words, k, paths, among=rarer)
                if len(rows) >= k:
                    return rows
            return self._ranked(words, k, paths)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.path}: lexical search failed: {exc}") from exc

    def _common(self, words: Sequence[str]) -> set[str]:
        """The words found in more than COMMON_SHARE of all chunks.

        Scoring is most of a keyword search's cost, one bm25() call per chunk that holds any
        of the words: a word found in most chunks was 60-90% of a search at 100k chunks, yet
        adds little to any score (bm25's idf: none at all from half of the chunks on). Counting
        where each word occurs only reads its posting list, ~4 ms for 84k chunks.
        """
        (total,) = self._db.execute("SELECT count(*) FROM chunks").fetchone()
        common = set()
        for word in words:
            (found,) = self._db.execute(
                "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (lexical_query([word]),)
            ).fetchone()
            if found > COMMON_SHARE * total:
                common.add(word)
        return common

    def _ranked(
        self,
        words: Sequence[str],
        k: int,
        paths: Sequence[str] | None,
        among: Sequence[str] = (),
    ) -> list[tuple[ChunkRow, float]]:
        """The k best chunks for all `words`, only among chunks that hold one of `among` if
        given: the common words still count in their scores, they only no longer widen the
        set of chunks scored."""
        cols = ", ".join(f"c.{c.strip()}" for c in CHUNK_COLUMNS.split(","))
        weights = ", ".join(map(str, BM25_WEIGHTS))
        args: list[object] = [lexical_query(words)]
        # The unary + keeps SQLite from handing this rowid list to FTS5 as lookups: FTS5 would
        # then run the whole OR-query once for every rowid in it.
        narrowed = ""
        if among:
            narrowed = (
                "AND +chunks_fts.rowid IN (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?) "
            )
            args.append(lexical_query(among))
        if paths is None:
            # Rank inside the FTS index alone, then fetch just the top k rows: joining every
            # match before sorting was 89% of a search at 100k chunks (docs/benchmarks.md).
            sql = (
                f"SELECT {cols}, top.rank FROM (SELECT rowid, bm25(chunks_fts, {weights}) AS rank "
                f"FROM chunks_fts WHERE chunks_fts MATCH ? {narrowed}ORDER BY rank LIMIT ?) AS top "
                "JOIN chunks c ON c.rowid = top.rowid ORDER BY top.rank"
            )
            args.append(k)
            rows = self._db.execute(sql, args).fetchall()
        else:
            # By parts of the file list: a statement takes at most MAX_VARIABLES values (SQLite
            # before 3.32), and `--path` may match thousands of files. bm25 scores a chunk the
            # same whichever files are asked for, so the best k of the parts' best are the best.
            rows = []
            for part in _parts(list(paths), MAX_VARIABLES - len(args) - 1):
                sql = (
                    f"SELECT {cols}, bm25(chunks_fts, {weights}) AS rank FROM chunks_fts "
                    "JOIN chunks c ON c.rowid = chunks_fts.rowid WHERE chunks_fts MATCH ? "
                    f"{narrowed}AND c.path IN ({','.join('?' * len(part))}) ORDER BY rank LIMIT ?"
                )
                rows += self._db.execute(sql, [*args, *part, k]).fetchall()
            rows = sorted(rows, key=lambda r: float(r[-1]))[:k]
        # FTS5's bm25() is negative, lower is better; flip it so all scores read the same way.
        return [(ChunkRow(*r[:-1]), -float(r[-1])) for r in rows]

    def sample(self, n: int) -> list[ChunkRow]:
        """Up to n embedded chunks, the same ones every time for the same chunks (ids are
        hashes, so their order is as good as random)."""
        rows = self._db.execute(
            f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE embedded = 1 ORDER BY id LIMIT ?", (n,)
        )
        return [ChunkRow(*r) for r in rows]

    def term_matches(
        self, question: str, ids: Sequence[str]
    ) -> tuple[dict[str, int], dict[str, set[str]]]:
        """For the question's keywords: in how many chunks each occurs (its document
        frequency), and which of them occur in each of the chunks `ids`.

        Words are matched as the BM25 index matches them (stemmed), and words of four or
        more letters as prefixes too, so "boiling" counts for "boil" and "swimmers" for
        "swim", which Porter stemming keeps apart. e.g. 'boil an egg', ids [a, b] ->
        ({"boil": 0, "egg": 3}, {"a": {"egg"}, "b": set()}).
        """
        terms = keywords(question)
        frequency: dict[str, int] = {}
        matched: dict[str, set[str]] = {id_: set() for id_ in ids}
        try:
            rowids = self._probe(ids)
            for term in terms:
                phrase = f'"{term}"*' if len(term) >= PREFIX_MIN else f'"{term}"'
                frequency[term] = int(
                    self._db.execute(
                        "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (phrase,)
                    ).fetchone()[0]
                )
                if rowids:
                    for (rowid,) in self._db.execute(
                        "SELECT rowid FROM temp.probe WHERE probe MATCH ?", (phrase,)
                    ):
                        matched[rowids[rowid]].add(term)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.path}: keyword statistics failed: {exc}") from exc
        return frequency, matched

    def _probe(self, ids: Sequence[str]) -> dict[int, str]:
        """Copy the chunks `ids` into a scratch full-text index (this connection's temp
        schema, the same tokenizer as chunks_fts); returns rowid -> id.

        Which of a few chunks hold a keyword is asked of it rather than of chunks_fts: FTS5
        answers `MATCH "word"* AND rowid IN (...)` by first merging the posting lists of
        every word with that prefix in the whole collection, up to 300 ms a keyword at 100k
        chunks, where the scratch index of ~50 chunks answers in well under a millisecond.
        The temp schema is written even when the catalog is opened read-only. The index keeps
        no copy of the text (content=''), so it is emptied at once by 'delete-all', where a
        DELETE read every row back to unindex it (a third of the probe's time at 100k chunks).
        """
        self._db.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.probe USING fts5("
            f"text, heading, subheadings, content='', tokenize='{TOKENIZER}')"
        )
        self._db.execute("INSERT INTO temp.probe(probe) VALUES ('delete-all')")
        if not ids:
            return {}
        rows = self._db.execute(
            "SELECT rowid, id, text, heading, subheadings FROM chunks "
            f"WHERE id IN ({','.join('?' * len(ids))})",
            list(ids),
        ).fetchall()
        self._db.executemany(
            "INSERT INTO temp.probe(rowid, text, heading, subheadings) VALUES (?, ?, ?, ?)",
            [(r[0], r[2], r[3], r[4]) for r in rows],
        )
        return {r[0]: r[1] for r in rows}

    def purge(self, wait: bool = True) -> bool:
        """Leave nothing of deleted chunks readable in the catalog's files.

        secure_delete has zeroed their rows; the BM25 index still holds their words until its
        segments are merged, and the WAL file old copies of the pages until a checkpoint,
        which a reader's open snapshot holds back. Without `wait` (a reader purging what its
        catch-up forgot) another process's write or snapshot makes it give up at once:
        returns False, the purge still due. Raises sqlite3.Error when it cannot be done.
        """
        try:
            with self._waiting(PURGE_WAIT_MS) if not wait else _nothing():
                self._db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
                (held, _, _) = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError as exc:
            if wait or exc.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            return False
        if held and wait:
            raise sqlite3.OperationalError(
                "another process kept its read of the catalog open past the busy timeout"
            )
        return not held

    def replace_all(self, files: Iterable[tuple[FileRecord, Sequence[ChunkRow]]]) -> None:
        """Make the catalog hold exactly these files and embedded chunks, in one transaction."""
        with self.transaction() as db:
            # The delete trigger needs an index that matches the rows (else "malformed"), and
            # the index may be what was damaged: rebuild it from the rows first.
            db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')")
            db.execute("DELETE FROM chunks")
            db.execute("DELETE FROM files")
            db.execute("DELETE FROM tombstones")
            db.execute("DELETE FROM meta WHERE key = 'run_in_progress'")
            for record, chunks in files:
                self._insert(db, record, chunks, embedded=True)


def _writable(path: Path) -> bool:
    """Whether SQLite can write here: the file (if any) and its folder, for the -wal and -shm.

    os.access reports a read-only mount (EROFS) even to root, who ignores mode bits.
    """
    folder = _nearest(path.parent)
    if not os.access(folder, os.W_OK):
        return False
    return not path.exists() or os.access(path, os.W_OK)


def _nearest(path: Path) -> Path:
    """`path`, or its nearest parent that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _open_read_only(path: Path) -> sqlite3.Connection:
    """The catalog opened for reading, with no file written beside it.

    `mode=ro` still needs the WAL's -shm file, which a read-only folder lacks once the last
    writer closed cleanly; then `immutable=1`, which reads the file as it is (a clean close
    leaves no WAL behind, so nothing is missed).
    """
    target = quote(str(path))
    db = sqlite3.connect(
        f"file:{target}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
    )
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        db.close()
    return sqlite3.connect(
        f"file:{target}?immutable=1", uri=True, check_same_thread=False, isolation_level=None
    )


def catalog_path(settings: Settings, collection: str | None = None) -> Path:
    """Catalogs live under the data dir, one folder per Chroma location so that an embedded
    store and a server never share a manifest."""
    where = location(settings)
    return Path(settings.home) / "catalog" / where / f"{collection or settings.collection}.sqlite"


def location(settings: Settings) -> str:
    """Which Chroma the collections are in: "embedded", or "server-" and a digest of the
    server's URL, tenant and database (two locations may hold collections of one name)."""
    if not settings.chroma_url:
        return "embedded"
    key = f"{settings.chroma_url}|{settings.chroma_tenant}|{settings.chroma_database}"
    return "server-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _use_wal(db: sqlite3.Connection) -> None:
    """Put the file in WAL mode (it stays so), waiting out another process doing the same.

    Switching a new file's journal needs it alone, and SQLite answers "database is locked" at
    once rather than through the busy timeout: seen when a search opened the catalog while
    the first ingest was creating it.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _statements(script: str) -> Iterator[str]:
    """A migration's statements one by one, for execute() inside a transaction we hold.

    executescript() would commit that transaction first. sqlite3.complete_statement knows a
    trigger's body (BEGIN ... END;) from the end of its statement, which splitting on ";" does not.
    """
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete statement in a migration: {pending.strip()[:60]}")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def open_catalog(settings: Settings, collection: str | None = None) -> Catalog:
    return Catalog(catalog_path(settings, collection))


def _parts(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def now() -> float:
    return time.time()
