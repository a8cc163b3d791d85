"""The local catalog of one collection: the file manifest, chunk texts and their BM25 index.

SQLite is the source of truth for what is stored. A file's chunks land here in one
transaction (marked not yet embedded) before any vector is written to Chroma, and Chroma
writes are idempotent upserts keyed by the same chunk ids; so after a crash at any moment
the catalog says exactly what is missing, and chunk ids that Chroma must forget are kept
as tombstones until it has. FTS5 rows are kept in step by triggers inside the same
transactions, so the lexical index can never disagree with the manifest.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ragged.errors import StoreError

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.store import Store

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS files(
    path TEXT PRIMARY KEY,       -- absolute, resolved
    root TEXT NOT NULL,          -- the folder it was ingested from
    rel_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    pages INTEGER,
    chunks INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,        -- 'ok' | 'pending' (chunks await embeddings)
    embed_model TEXT,
    ingested_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_hash ON files(content_hash);
CREATE INDEX IF NOT EXISTS files_root ON files(root);
CREATE TABLE IF NOT EXISTS chunks(
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    rel_path TEXT NOT NULL,
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    page INTEGER,
    heading TEXT NOT NULL DEFAULT '',
    tokens INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
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
"""

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


@dataclass(frozen=True)
class FileRecord:
    path: str
    root: str
    rel_path: str
    size: int
    mtime_ns: int
    content_hash: str
    pages: int | None
    chunks: int
    status: str
    embed_model: str | None
    ingested_at: float


@dataclass(frozen=True)
class ChunkRow:
    id: str
    path: str
    rel_path: str
    idx: int
    text: str
    page: int | None
    heading: str
    tokens: int
    content_hash: str


def lexical_query(text: str) -> str:
    """An FTS5 OR-query of the question's words, each quoted so no word is read as syntax.

    e.g. 'What is the CPU-only mode?' -> '"cpu" OR "only" OR "mode"'
    """
    words = []
    for w in WORD.findall(text.lower()):
        if w in STOPWORDS or w in words:
            continue
        words.append(w)
    return " OR ".join(f'"{w}"' for w in words)


class Catalog:
    """One collection's SQLite catalog."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # One connection used from one thread at a time; the ingest writer owns it.
            self._db = sqlite3.connect(
                path, timeout=30, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across a killed process (not a power cut) and much faster.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the catalog: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- run bookkeeping -----------------------------------------------------------------

    def begin_run(self) -> None:
        """Mark a write in progress; if it is never ended, the next run checks Chroma in full."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('run_in_progress', '1')")

    def end_run(self, store_fingerprint: str | None = None) -> None:
        """A clean end; the store's fingerprint then lets the next run trust it unopened."""
        with self.transaction() as db:
            db.execute("DELETE FROM meta WHERE key = 'run_in_progress'")
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('store_fingerprint', ?)",
                (store_fingerprint or "",),
            )

    @property
    def store_fingerprint(self) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'store_fingerprint'").fetchone()
        return row[0] if row and row[0] else None

    def embed_model(self) -> str | None:
        """The embedding model the stored files were embedded with, if any."""
        row = self._db.execute(
            "SELECT embed_model FROM files WHERE status = 'ok' AND embed_model IS NOT NULL LIMIT 1"
        ).fetchone()
        return row[0] if row else None

    @property
    def interrupted(self) -> bool:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'run_in_progress'").fetchone()
        return row is not None

    # -- files ---------------------------------------------------------------------------

    def file(self, path: str) -> FileRecord | None:
        row = self._db.execute("SELECT * FROM files WHERE path = ?", (path,)).fetchone()
        return FileRecord(*row) if row else None

    def files(self, root: str | None = None) -> list[FileRecord]:
        if root is None:
            rows = self._db.execute("SELECT * FROM files ORDER BY path").fetchall()
        else:
            prefix = root.rstrip("/") + "/"
            rows = self._db.execute(
                "SELECT * FROM files WHERE root = ? OR substr(path, 1, ?) = ? ORDER BY path",
                (root, len(prefix), prefix),
            ).fetchall()
        return [FileRecord(*r) for r in rows]

    def files_with_hash(self, content_hash: str) -> list[FileRecord]:
        rows = self._db.execute(
            "SELECT * FROM files WHERE content_hash = ? AND status = 'ok'", (content_hash,)
        ).fetchall()
        return [FileRecord(*r) for r in rows]

    def touch(self, path: str, size: int, mtime_ns: int) -> None:
        """Same content, new stat: remember it so the next run need not hash the file."""
        with self.transaction() as db:
            db.execute(
                "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path)
            )

    def replace_file(
        self, record: FileRecord, chunks: Sequence[ChunkRow], embedded: bool = False
    ) -> None:
        """Swap a file's chunks for new ones in one transaction; old ids become tombstones."""
        with self.transaction() as db:
            self._forget(db, record.path)
            self._insert(db, record, chunks, embedded)

    def _insert(
        self, db: sqlite3.Connection, record: FileRecord, chunks: Sequence[ChunkRow], embedded: bool
    ) -> None:
        db.execute(
            "INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.path,
                record.root,
                record.rel_path,
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
        db.executemany(
            "INSERT INTO chunks(id, path, rel_path, idx, text, page, heading, tokens, "
            "content_hash, embedded) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    c.id,
                    c.path,
                    c.rel_path,
                    c.idx,
                    c.text,
                    c.page,
                    c.heading,
                    c.tokens,
                    c.content_hash,
                    int(embedded),
                )
                for c in chunks
            ],
        )
        # An id may have been tombstoned by an earlier version of this file: it lives again.
        db.executemany("DELETE FROM tombstones WHERE id = ?", [(c.id,) for c in chunks])

    def remove_files(self, paths: Iterable[str]) -> int:
        """Forget files and tombstone their chunks; returns how many files were known."""
        removed = 0
        with self.transaction() as db:
            for path in paths:
                removed += self._forget(db, path)
        return removed

    def _forget(self, db: sqlite3.Connection, path: str) -> int:
        db.execute("INSERT OR IGNORE INTO tombstones SELECT id FROM chunks WHERE path = ?", (path,))
        db.execute("DELETE FROM chunks WHERE path = ?", (path,))
        return db.execute("DELETE FROM files WHERE path = ?", (path,)).rowcount

    # -- chunks --------------------------------------------------------------------------

    def chunks_of(self, path: str) -> list[ChunkRow]:
        rows = self._db.execute(
            "SELECT id, path, rel_path, idx, text, page, heading, tokens, content_hash "
            "FROM chunks WHERE path = ? ORDER BY idx",
            (path,),
        ).fetchall()
        return [ChunkRow(*r) for r in rows]

    def pending(self, limit: int | None = None) -> list[ChunkRow]:
        """Chunks stored as text whose vectors are not in Chroma yet."""
        rows = self._db.execute(
            "SELECT id, path, rel_path, idx, text, page, heading, tokens, content_hash "
            "FROM chunks WHERE embedded = 0 ORDER BY path, idx"
            + (f" LIMIT {int(limit)}" if limit else "")
        ).fetchall()
        return [ChunkRow(*r) for r in rows]

    def pending_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM chunks WHERE embedded = 0").fetchone()[0])

    def mark_embedded(self, ids: Sequence[str], embed_model: str) -> None:
        """Record vectors as stored; a file whose chunks are all embedded becomes 'ok'."""
        with self.transaction() as db:
            db.executemany("UPDATE chunks SET embedded = 1 WHERE id = ?", [(i,) for i in ids])
            db.execute(
                "UPDATE files SET status = 'ok', embed_model = ? WHERE status = 'pending' AND "
                "NOT EXISTS (SELECT 1 FROM chunks c WHERE c.path = files.path AND c.embedded = 0)",
                (embed_model,),
            )

    def mark_unembedded(self, ids: Iterable[str]) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE chunks SET embedded = 0 WHERE id = ?", [(i,) for i in ids])
            db.execute(
                "UPDATE files SET status = 'pending' WHERE EXISTS "
                "(SELECT 1 FROM chunks c WHERE c.path = files.path AND c.embedded = 0)"
            )

    def embedded_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM chunks WHERE embedded = 1").fetchone()[0])

    def embedded_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT id FROM chunks WHERE embedded = 1")}

    def chunk_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def chunks_by_id(self, ids: Sequence[str]) -> dict[str, ChunkRow]:
        out: dict[str, ChunkRow] = {}
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            marks = ",".join("?" * len(part))
            for r in self._db.execute(
                "SELECT id, path, rel_path, idx, text, page, heading, tokens, content_hash "
                f"FROM chunks WHERE id IN ({marks})",
                part,
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
        """BM25 over chunk text and headings; higher score is better."""
        query = lexical_query(question)
        if not query:
            return []
        cols = (
            "c.id, c.path, c.rel_path, c.idx, c.text, c.page, c.heading, c.tokens, c.content_hash"
        )
        args: list[object] = [query]
        if paths is None:
            # Rank inside the FTS index alone, then fetch just the top k rows: joining every
            # match before sorting was 89% of a search at 100k chunks (docs/benchmarks.md).
            sql = (
                f"SELECT {cols}, top.rank FROM (SELECT rowid, bm25(chunks_fts) AS rank "
                "FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?) AS top "
                "JOIN chunks c ON c.rowid = top.rowid ORDER BY top.rank"
            )
            args.append(k)
        else:
            if not paths:
                return []
            sql = (
                f"SELECT {cols}, bm25(chunks_fts) AS rank FROM chunks_fts "
                "JOIN chunks c ON c.rowid = chunks_fts.rowid WHERE chunks_fts MATCH ? "
                f"AND c.path IN ({','.join('?' * len(paths))}) ORDER BY rank LIMIT ?"
            )
            args.extend([*paths, k])
        try:
            rows = self._db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.path}: lexical search failed: {exc}") from exc
        # FTS5's bm25() is negative, lower is better; flip it so all scores read the same way.
        return [(ChunkRow(*r[:9]), -float(r[9])) for r in rows]

    def rebuild_lexical(self) -> None:
        """Rebuild the BM25 index from the chunk table (after a damaged index or a schema change)."""
        with self.transaction() as db:
            db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')")

    def replace_all(self, files: Sequence[tuple[FileRecord, Sequence[ChunkRow]]]) -> None:
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


def rebuild_catalog_from_store(store: Store, catalog: Catalog) -> int:
    """Refill a lost or damaged catalog (manifest, chunk texts, BM25 index) from Chroma.

    Chroma keeps every chunk's text and metadata, so only what it never had stays unknown: a
    file's size and mtime become 0, and the next ingest hashes each file once, finds the
    same content and keeps its chunks. Returns the number of chunks restored.
    """
    from ragged.ingest.chunking import count_tokens

    recorded = store.embedding
    model = recorded[0] if recorded else None
    by_path: dict[str, list[ChunkRow]] = {}
    for id_, _vector, text, meta in store.iter_all():
        path = str(meta.get("path") or "")
        if not path:
            continue  # not written by ragged: nothing to tie it to a file
        page = meta.get("page")
        by_path.setdefault(path, []).append(
            ChunkRow(
                id=id_,
                path=path,
                rel_path=str(meta.get("rel_path") or Path(path).name),
                idx=int(meta.get("chunk_index", 0)),
                text=text,
                page=int(page) if page is not None else None,
                heading=str(meta.get("heading") or ""),
                tokens=count_tokens(text),
                content_hash=str(meta.get("content_hash") or ""),
            )
        )
    files = []
    for path, rows in sorted(by_path.items()):
        rows.sort(key=lambda r: r.idx)
        rel = rows[0].rel_path
        # e.g. /home/me/docs/guide/a.md with rel_path guide/a.md came from /home/me/docs
        root = path[: -len(rel) - 1] if path.endswith("/" + rel) else str(Path(path).parent)
        record = FileRecord(
            path=path,
            root=root,
            rel_path=rel,
            size=0,
            mtime_ns=0,
            content_hash=rows[0].content_hash,
            pages=None,
            chunks=len(rows),
            status="ok",
            embed_model=model,
            ingested_at=now(),
        )
        files.append((record, rows))
    catalog.replace_all(files)
    return sum(len(rows) for _, rows in files)


def catalog_path(settings: Settings, collection: str | None = None) -> Path:
    """Catalogs live under the data dir, one folder per Chroma location so that an embedded
    store and a server never share a manifest."""
    where = "embedded"
    if settings.chroma_url:
        key = f"{settings.chroma_url}|{settings.chroma_tenant}|{settings.chroma_database}"
        where = "server-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(settings.home) / "catalog" / where / f"{collection or settings.collection}.sqlite"


def open_catalog(settings: Settings, collection: str | None = None) -> Catalog:
    return Catalog(catalog_path(settings, collection))


def now() -> float:
    return time.time()
