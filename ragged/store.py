"""The vector store: Chroma, embedded under the data dir or a Chroma server. Only module importing chromadb."""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import sqlite3
import struct
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

from ragged.errors import RUN_AGAIN, EmbeddingMismatch, StoreError
from ragged.tls import CertificatesUnreadable, plain_http_dropped, plain_http_refused
from ragged.tls import trouble as tls_trouble

if TYPE_CHECKING:
    import httpx

    from ragged.config import Settings

# Chroma phones home unless told not to; a local-first tool must not. The variable covers
# code paths that build their own chromadb Settings.
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

EMBED_MODEL_KEY = "ragged:embed_model"
EMBED_DIM_KEY = "ragged:embed_dim"
# A chunk's text is kept in its metadata, not as a Chroma "document": Chroma indexes every
# document for its own full-text search (trigram FTS5, which ragged never uses: it keeps its
# own BM25 index), and that indexing was 2.6 s of every 1,800 chunks written where the same
# text in metadata costs 1.1 s, and took 9x the disk. Documents written by earlier versions
# are still read.
TEXT_KEY = "ragged:text"
# Replaced by every writer after it wrote: other machines' catalogs compare it to know when
# to refresh. A random token, not a counter: two writers cannot both bump a counter safely.
REVISION_KEY = "ragged:revision"
# Chroma's SQLite indexes every string of a chunk's metadata by (key, value), the chunk's
# text included (ragged never filters on it; the index is Chroma's, as is the schema). With
# SQLite's default 4 KB pages an index entry keeps ~1 KB; the rest of a longer text spills
# to an overflow page of its own, mostly empty. Three texts in four are longer at 512 tokens,
# and that index was 489 MB of a 747 MB file at 100k chunks, which each purge's VACUUM
# rewrites. 16 KB pages keep ~4 KB in an entry: a typical text up to ~1,000 tokens, and the
# longest at 512 (the shared corpus has 3.8 UTF-8 bytes per token, 6.5 at most). Longer
# chunks spill at 16 KB too, wasting more of each larger overflow page, so they keep 4 KB;
# 8, 32 and 64 KB were never clearly the smallest (docs/benchmarks.md, fifteenth pass). At
# 10k chunks of 512 tokens the file was 43% smaller and an edit's ingest, purge included, 23%
# faster. A new file takes the size for the configured chunk_tokens; a purge's VACUUM, which
# rewrites the file anyway, the size for the texts the file holds, all collections' (a median
# of a sample: one collection's chunking, or a command's settings, would flip a shared file).
LARGE_PAGE = 16384
SMALL_PAGE = 4096  # SQLite's default
TEXT_BYTES_PER_TOKEN = 4  # UTF-8 bytes per cl100k token in a typical text
INDEX_ENTRY_BYTES = 32  # the entry's record header, the key "ragged:text" and the row id
SAMPLED_TEXTS = 500  # spread over the rows: ~10-35 ms at 100k chunks, against seconds of VACUUM
DOCUMENT_KEY = "chroma:document"  # where Chroma keeps a document: the text, in earlier versions
WRITE_BATCH = 1000  # well under Chroma's max batch size, and bounded memory per request
DEFAULT_SERVER_PORT = 8000  # `chroma run`'s port; the compose file maps it to 8001
# chromadb's HTTP client waits forever by default (httpx timeout=None). A wrong host should
# fail within seconds; a big upsert over a slow link may legitimately take a minute or two
# (the `chroma_timeout` setting, REQUEST_TIMEOUT by default).
CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 120.0
HEARTBEAT_PATH = "/api/v2/heartbeat"
CHROMA_SQLITE = "chroma.sqlite3"  # the embedded store's SQLite file, in its folder
OPEN_LOCK = "chroma.lock"  # beside the store, not in it: its files are fingerprinted (see Store)
LOG_DELETE = 3  # the `operation` code of a delete in Chroma's log (0 add, 1 update, 2 upsert)
# What a command's hint asks once the server is back; `watch`, which tries again by itself,
# says so in its place (cli/watch.py).
SERVER_DOWN_HINT = (
    "start it (`docker compose up -d chromadb`, or `chroma run --path DIR --port PORT`)"
    f"{RUN_AGAIN}; or unset RAGGED_CHROMA_URL to use the embedded store"
)


# Bumped when embedded Chroma is reopened in this process: every Store then reopens its client
# too, since chromadb shares one system per path and reopening stops the old one.
_generation = 0


class _Gate:
    """Threads hold it shared while they use a Chroma client; reopening holds it alone.

    chromadb keeps one system per process (`SharedSystemClient`), and reopening it stops the
    system every client of that process uses: a request thread of `serve` using a client at
    that moment failed ("cannot open Chroma", a KeyError beneath). Readers never wait for
    each other and may nest; a reopening waits until no thread is inside, and readers that
    come meanwhile wait for it to finish (~ms).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inside = 0
        self._waiting = 0  # reopenings waiting for the threads inside to leave
        self._mine = threading.local()  # how deep this thread is inside

    @contextmanager
    def shared(self) -> Iterator[None]:
        depth = getattr(self._mine, "depth", 0)
        with self._cond:
            if not depth:  # a new reader lets a waiting reopening go first, or under steady
                self._cond.wait_for(lambda: not self._waiting)  # load it might never run
            self._inside += 1
        self._mine.depth = depth + 1
        try:
            yield
        finally:
            self._mine.depth -= 1
            with self._cond:
                self._inside -= 1
                if not self._inside:
                    self._cond.notify_all()

    @contextmanager
    def alone(self) -> Iterator[bool]:
        """Yields False, without waiting, to a thread that is itself inside (it would wait
        for itself): that one goes on with the clients it has."""
        if getattr(self._mine, "depth", 0):
            yield False
            return
        with self._cond:
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: not self._inside)
                yield True
            finally:
                self._waiting -= 1
                self._cond.notify_all()


_gate = _Gate()
_F = TypeVar("_F", bound=Callable[..., Any])


def _using_chroma(method: _F) -> _F:
    """Run a Store method inside the gate (shared), from its first client use to its last."""

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def walking(*args: Any, **kwargs: Any) -> Any:
            with _gate.shared():  # for as long as the caller walks the pages
                yield from method(*args, **kwargs)

        return cast(_F, walking)

    @functools.wraps(method)
    def inside(*args: Any, **kwargs: Any) -> Any:
        with _gate.shared():
            return method(*args, **kwargs)

    return cast(_F, inside)


class Store:
    """One Chroma collection, with the embedding model it was built with recorded on it."""

    def __init__(
        self, client: Any, name: str, where: str, *, factory: Callable[[], Any] | None = None
    ) -> None:
        self._made = client
        self._factory = factory
        self._generation = _generation
        # The embedded store's fingerprint as this process last left it (see _catch_up), and
        # as it was before this process first opened it (see Index.close).
        self._seen: str | None = None
        self.found: str | None = None
        self.name = name
        self.where = where  # a path or URL, for messages
        self._collection: Any = None
        self._opening = threading.Lock()
        self._prefetch: threading.Thread | None = None

    @property
    def _client(self) -> Any:
        """The Chroma client, opened on first use: importing chromadb alone takes ~0.7 s."""
        if self._generation != _generation and self._factory is not None:
            self._made, self._collection, self._generation = None, None, _generation
        if self._made is None and self._factory is not None:
            with self._opening:  # a prefetch may be making it right now: one client, not two
                if self._made is None:
                    if self.found is None:
                        self.found = self.fingerprint()  # opening moves the files
                    self._made = self._factory()
        return self._made

    def _catch_up(self) -> None:
        """Reopen an embedded store another process wrote to since this one last looked.

        An open embedded Chroma answers queries from the vectors it loaded (its count moves,
        its search results do not), so a long-lived process (serve, chat, watch) would miss
        files ingested beside it. Its files' fingerprint says when that happened: ~0.2 ms.
        """
        global _generation
        if self.shared or self._factory is None or self._generation != _generation:
            return  # reopened since this store last looked: its next use opens the files anew
        now = self.fingerprint()
        if self._seen is not None and now != self._seen:
            from chromadb.api.client import SharedSystemClient

            with _gate.alone() as alone:
                if alone and self._generation == _generation:  # not reopened meanwhile
                    SharedSystemClient.clear_system_cache()
                    _generation += 1

    def _settled(self) -> None:
        """Remember the files as this process left them (opening and writing change them)."""
        if not self.shared and self._factory is not None:
            self._seen = self.fingerprint()

    def left_alone(self) -> str | None:
        """The embedded store's fingerprint now, if this process is the last to have changed
        its files (reading does); None if it never opened it, or another process wrote since."""
        if self.shared or self._made is None or self._seen is None:
            return None
        now = self.fingerprint()
        return now if now == self._seen else None

    @property
    def opened(self) -> bool:
        """The client is open: a write now does not wait for chromadb's import."""
        return self._made is not None

    def prefetch(self) -> None:
        """Import chromadb and open the client on a thread, while the caller does other work.

        The import is ~0.5-1 s of a fresh process; an ingest starts it once Ollama has
        answered a first request (or parsing has to wait for Ollama), so it overlaps with the
        embedding without delaying the first requests. A failure is left for the first real
        use, which tries again and raises it with its usual message.
        """
        if self._made is not None or self._factory is None or self._prefetch is not None:
            return

        def run() -> None:
            try:
                with _gate.shared():
                    _ = self._client
            except BaseException:  # the first real use tries again and raises it
                pass

        self._prefetch = threading.Thread(target=run, name="chroma-open", daemon=True)
        self._prefetch.start()

    def _absent(self) -> bool:
        """The embedded store certainly has no such collection, told without importing chromadb.

        Read from Chroma's own SQLite (as `vector_files` does), so a new collection's first
        ingest does not pay the import before its first file is parsed. False when unsure.
        """
        if self.shared or self._made is not None:
            return False
        db_path = Path(self.where) / "chroma.sqlite3"
        if not db_path.exists():
            return True
        try:
            db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
            try:
                row = db.execute("SELECT 1 FROM collections WHERE name = ?", (self.name,))
                return row.fetchone() is None
            finally:
                db.close()
        except sqlite3.Error:
            return False

    def _get(self) -> Any | None:
        if self._generation != _generation:
            self._collection = None  # reopened: the old handle belongs to a stopped system
        if self._collection is None:
            if self._absent():
                return None
            # The client first: a prefetch may be importing chromadb on its thread right now.
            client = self._client
            from chromadb.errors import NotFoundError

            try:
                self._collection = client.get_collection(self.name, embedding_function=None)
            except NotFoundError:
                return None
            except Exception as exc:
                raise explain(exc, self.where) from exc
            self._settled()  # opening changed the files, as reading does
        return self._collection

    def reload(self) -> None:
        """Forget the collection handle, so the next use asks the server again: the handle
        keeps the collection's metadata (revision, model) as it was when it was fetched."""
        self._collection = None

    @property
    @_using_chroma
    def exists(self) -> bool:
        return self._get() is not None

    def fingerprint(self) -> str | None:
        """Sizes and times of the embedded store's files, read without opening Chroma.

        Equal fingerprints mean nothing wrote to the store in between, so an unchanged
        re-ingest need not import chromadb at all (~0.7 s). None for a server: others write there.
        """
        if self.shared:
            return None
        root = Path(self.where)
        if not root.is_dir():
            return "absent"
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*")):
            try:
                st = path.stat()
            except OSError:
                continue
            digest.update(f"{path.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def vector_files(self) -> list[str] | None:
        """This collection's vector (HNSW) files, relative to the store's folder; None for a server.

        Read from Chroma's own SQLite, without opening Chroma, so that a clean run can record
        them cheaply and a search can notice they were deleted: past 1,000 vectors Chroma keeps
        them only there, and without them it answers from what is left, silently.
        """
        if self.shared:
            return None
        root = Path(self.where)
        if not (root / "chroma.sqlite3").exists():
            return []
        try:
            db = sqlite3.connect(f"file:{root / 'chroma.sqlite3'}?mode=ro", uri=True)
            try:
                segments = db.execute(
                    "SELECT s.id FROM segments s JOIN collections c ON s.collection = c.id "
                    "WHERE c.name = ? AND s.scope = 'VECTOR'",
                    (self.name,),
                ).fetchall()
            finally:
                db.close()
        except sqlite3.Error:
            return None  # a Chroma whose tables we do not know: nothing to check against
        return sorted(
            f"{segment}/{entry.name}"
            for (segment,) in segments
            if (root / segment).is_dir()
            for entry in (root / segment).iterdir()
            if entry.is_file()
        )

    @property
    def shared(self) -> bool:
        """A server may hold other machines' chunks, which no local catalog knows about."""
        return self.where.startswith(("http://", "https://"))

    @property
    @_using_chroma
    def embedding(self) -> tuple[str, int] | None:
        """(model, dimension) the collection was built with, or None if it does not exist yet."""
        col = self._get()
        if col is None:
            return None
        meta = col.metadata or {}
        if EMBED_MODEL_KEY not in meta:
            return None
        return str(meta[EMBED_MODEL_KEY]), int(meta[EMBED_DIM_KEY])

    @property
    @_using_chroma
    def revision(self) -> str | None:
        """The token the last writer left on the collection (None: none, or no collection)."""
        col = self._get()
        value = (col.metadata or {}).get(REVISION_KEY) if col is not None else None
        return str(value) if value is not None else None

    @_using_chroma
    def bump_revision(self) -> None:
        """Say that the collection changed: a new random revision token."""
        import uuid

        col = self._get()
        if col is None:
            return
        # Chroma replaces the whole metadata (and refuses hnsw:* keys after creation, which
        # live on in the collection's configuration): keep ragged's own keys.
        meta = {k: v for k, v in (col.metadata or {}).items() if k.startswith("ragged:")}
        meta[REVISION_KEY] = uuid.uuid4().hex
        self._guard(lambda: col.modify(metadata=meta))

    def check_model(self, model: str, dim: int | None = None) -> None:
        """Refuse to mix vectors of two models: the similarities would be garbage."""
        from ragged.models import full_name

        recorded = self.embedding
        if recorded is None:
            return
        rec_model, rec_dim = recorded
        if full_name(rec_model) != full_name(model) or (dim is not None and dim != rec_dim):
            raise EmbeddingMismatch(
                f"collection '{self.name}' was built with embedding model {rec_model} "
                f"({rec_dim} dimensions), not {model}" + (f" ({dim} dimensions)" if dim else ""),
                hint=f"use --embed-model {rec_model}, or another --collection, "
                f"or `ragged reset --collection {self.name}` and ingest again",
            )

    @_using_chroma
    def ensure(self, model: str, dim: int) -> None:
        """Create the collection for this model, or check that it was made with it."""
        self.check_model(model, dim)
        if self._get() is None:
            try:
                self._collection = self._client.create_collection(
                    self.name,
                    metadata={"hnsw:space": "cosine", EMBED_MODEL_KEY: model, EMBED_DIM_KEY: dim},
                    embedding_function=None,
                )
            except Exception as exc:
                # Another machine (or process) sharing the server created it since we looked:
                # use theirs, if it was made with this model. Chroma names the race "already
                # exists" in an error class that differs by client, so look rather than parse.
                if self._get() is None:
                    raise explain(
                        exc, self.where, f"cannot create collection '{self.name}'"
                    ) from exc
                self.check_model(model, dim)

    @_using_chroma
    def add(
        self,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]],
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        """Upsert, so re-adding after an interrupted run never makes duplicates."""
        col = self._require()
        for start in range(0, len(ids), WRITE_BATCH):
            end = start + WRITE_BATCH
            self._guard(
                lambda s=start, e=end: col.upsert(
                    ids=list(ids[s:e]),
                    embeddings=_matrix(vectors[s:e]),
                    metadatas=[
                        {**meta, TEXT_KEY: text}
                        for meta, text in zip(metadatas[s:e], texts[s:e], strict=True)
                    ],
                )
            )

    def query(
        self, vector: Sequence[float], k: int, where: dict[str, Any] | None = None
    ) -> list[tuple[str, str, dict[str, Any], float]]:
        """The k nearest chunks as (id, text, metadata, cosine similarity), best first."""
        self._catch_up()  # outside the gate: it may need the gate alone
        return self._nearest(vector, k, where)

    @_using_chroma
    def _nearest(
        self, vector: Sequence[float], k: int, where: dict[str, Any] | None
    ) -> list[tuple[str, str, dict[str, Any], float]]:
        col = self._get()
        if col is None:
            return []
        # Chroma 1.x returns what it has when asked for more, so no count() round trip first.
        res = self._guard(
            lambda: col.query(
                query_embeddings=[list(vector)],
                n_results=k,
                where=where,
                include=["documents", "metadatas", "distances"],
            )
        )
        return [
            # cosine distance is 1 - similarity
            (id_, *_unpack(doc, meta), 1.0 - float(dist))
            for id_, doc, meta, dist in zip(
                res["ids"][0],
                res["documents"][0],
                res["metadatas"][0],
                res["distances"][0],
                strict=True,
            )
        ]

    def vectors(self, ids: Sequence[str]) -> dict[str, list[float]]:
        return {
            id_: [float(x) for x in vec]
            for res in self._by_ids(ids, ["embeddings"])
            for id_, vec in zip(res["ids"], res["embeddings"], strict=True)
        }

    def get(self, ids: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
        """(id, text, metadata) of these chunks, those that exist."""
        return [
            (id_, *_unpack(doc, meta))
            for res in self._by_ids(ids, ["documents", "metadatas"])
            for id_, doc, meta in zip(res["ids"], res["documents"], res["metadatas"], strict=True)
        ]

    def present(self, ids: Sequence[str]) -> set[str]:
        """Those of these ids the collection holds."""
        return {id_ for res in self._by_ids(ids, []) for id_ in res["ids"]}

    @_using_chroma
    def _by_ids(self, ids: Sequence[str], include: list[str]) -> Iterator[dict[str, Any]]:
        """Chroma's replies for these ids, in parts of WRITE_BATCH."""
        col = self._get()
        if col is None or not ids:
            return
        for start in range(0, len(ids), WRITE_BATCH):
            part = list(ids[start : start + WRITE_BATCH])
            yield self._guard(lambda p=part: col.get(ids=p, include=include))

    @_using_chroma
    def _pages(self, include: list[str], batch: int) -> Iterator[dict[str, Any]]:
        """The whole collection, `batch` records at a time, so memory stays flat."""
        col = self._get()
        if col is None:
            return
        offset = 0
        while True:
            res = self._guard(lambda o=offset: col.get(limit=batch, offset=o, include=include))
            if not res["ids"]:
                return
            yield res
            offset += len(res["ids"])

    def iter_all(
        self, batch: int = WRITE_BATCH
    ) -> Iterator[tuple[str, list[float], str, dict[str, Any]]]:
        """Every (id, vector, text, metadata), in pages: for copying a collection elsewhere."""
        for res in self._pages(["embeddings", "documents", "metadatas"], batch):
            for id_, vec, doc, meta in zip(
                res["ids"], res["embeddings"], res["documents"], res["metadatas"], strict=True
            ):
                yield id_, [float(x) for x in vec], *_unpack(doc, meta)

    def iter_texts(self, batch: int = WRITE_BATCH) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Every (id, text, metadata) without vectors: a quarter of the bytes of `iter_all`."""
        for res in self._pages(["documents", "metadatas"], batch):
            for id_, doc, meta in zip(res["ids"], res["documents"], res["metadatas"], strict=True):
                yield (id_, *_unpack(doc, meta))

    @_using_chroma
    def ids(self) -> set[str]:
        # Ids alone are small: big pages mean few round trips (100k ids: 0.4 s on a server).
        return {id_ for res in self._pages([], 50_000) for id_ in res["ids"]}

    @_using_chroma
    def delete(self, ids: Sequence[str]) -> None:
        col = self._get()
        if col is None or not ids:
            return
        for start in range(0, len(ids), WRITE_BATCH):
            self._guard(lambda s=start: col.delete(ids=list(ids[s : s + WRITE_BATCH])))

    @_using_chroma
    def count(self) -> int:
        col = self._get()
        return 0 if col is None else int(self._guard(col.count))

    @_using_chroma
    def drop(self) -> str | None:
        """Delete the collection; embedded, also what Chroma leaves of it on disk (`purge`).

        Returns why the purge could not be completed, if it could not.
        """
        from chromadb.errors import NotFoundError

        client = self._client
        try:
            client.delete_collection(self.name)
        except NotFoundError:
            pass  # gone already: a reset stopped after this step, whose purge is still owed
        except Exception as exc:
            raise explain(exc, self.where) from exc
        self._collection = None
        # Also when the collection was gone: what a reset stopped in its purge left (Ctrl-C
        # or a kill in the VACUUM) is cleared by the reset or ingest that finishes it.
        return self.purge()

    def purge_space(self) -> int:
        """Bytes of disk a purge may need while it runs: its VACUUM builds a copy of the file
        (in the temporary directory, often the same disk) and journals the whole file beside
        it. 0 for a server, whose files are the server's."""
        if self.shared:
            return 0
        try:
            return 2 * (Path(self.where) / CHROMA_SQLITE).stat().st_size
        except OSError:
            return 0

    def purge(self) -> str | None:
        """Make text Chroma was told to delete unreadable in the embedded store's files.

        Chroma deletes rows but its SQLite file keeps what it wrote: every upsert (text
        included) in its write-ahead log (`embeddings_queue`) until the vector index has been
        persisted past it, the words of deleted chunks in its full-text index until a merge,
        and the deleted rows in free pages. So: the logged text of every chunk deleted since
        is blanked (the log keeps its shape, so a replay still ends without the chunk), the
        log entries and index folders of dropped collections go (Chroma leaves both; any
        collection's, so that a drop whose purge was stopped is purged by the next one),
        then the full-text index is merged and the file vacuumed, as `chroma vacuum` does.
        The rewrite takes the page size for the texts the file holds (see LARGE_PAGE) at no
        extra cost. Nothing to do for a server, whose disk is the server's (run `chroma
        vacuum` there). Returns a reason if the files were not as expected (another Chroma
        version): deleted text may then remain.
        """
        if self.shared:
            return None
        import shutil
        import sqlite3

        root = Path(self.where)
        path = root / CHROMA_SQLITE
        if not path.exists():
            return None
        try:
            db = sqlite3.connect(path, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            return f"cannot open {path}: {exc}"
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                # A topic ends in its collection's id; a collection is made before its
                # first write, so a topic without one is a dropped collection's.
                live = {str(r[0]) for r in db.execute("SELECT id FROM collections")}
                for (topic,) in db.execute(
                    "SELECT DISTINCT topic FROM embeddings_queue"
                ).fetchall():
                    if str(topic).rsplit("/", 1)[-1] not in live:
                        db.execute("DELETE FROM embeddings_queue WHERE topic = ?", (topic,))
                segments = {str(r[0]) for r in db.execute("SELECT id FROM segments")}
                # Upserts followed by a delete of the same id: the text is never needed again.
                db.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS ragged_deleted(topic, id, seq, "
                    "PRIMARY KEY (topic, id))"
                )
                db.execute("DELETE FROM ragged_deleted")
                db.execute(
                    "INSERT INTO ragged_deleted SELECT topic, id, max(seq_id) FROM embeddings_queue "
                    f"WHERE operation = {LOG_DELETE} GROUP BY topic, id"
                )
                db.execute(
                    "UPDATE embeddings_queue SET metadata = '{}' "
                    f"WHERE operation != {LOG_DELETE} AND metadata != '{{}}' AND EXISTS ("
                    "SELECT 1 FROM ragged_deleted d WHERE d.topic = embeddings_queue.topic "
                    "AND d.id = embeddings_queue.id AND d.seq > embeddings_queue.seq_id)"
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            for folder in root.iterdir():
                # A vector segment's HNSW files are in a folder named by its id; Chroma
                # forgets a dropped collection's segments but leaves their folders.
                if folder.is_dir() and _is_uuid(folder.name) and folder.name not in segments:
                    shutil.rmtree(folder, ignore_errors=True)
            db.execute(
                "INSERT INTO embedding_fulltext_search(embedding_fulltext_search) VALUES('optimize')"
            )
            page_size = _page_size_for_texts(db)
            if page_size is not None:  # else no text left to lay out for: the size it has
                db.execute(f"PRAGMA page_size = {page_size}")
            db.execute("VACUUM")
        except sqlite3.Error as exc:
            problem = f"could not purge deleted text from {path}: {exc}"
            # A table or column this version of ragged expects and Chroma's file lacks.
            return Lasting(problem) if "no such" in str(exc) else problem
        finally:
            db.close()
        # Every collection's folder, not only this one's: the bytes are whatever the writing
        # process had freed, which may be any collection's text.
        # One folder Chroma laid out differently does not leave the others uncleared.
        problems = [zero_unused_hnsw_slots(h.parent) for h in sorted(root.glob(f"*/{HNSW_HEADER}"))]
        return next((p for p in problems if p), None)

    def _require(self) -> Any:
        col = self._get()
        if col is None:
            raise StoreError(f"collection '{self.name}' does not exist at {self.where}")
        return col

    def _guard(self, fn: Any) -> Any:
        try:
            return fn()
        except StoreError:
            raise
        except Exception as exc:
            raise explain(exc, self.where) from exc
        finally:
            # Embedded Chroma touches its files even to read (the first query of a segment
            # rewrites its HNSW files, SQLite's mtime moves): what this process did must not
            # look, at the next query, like another process's write (see _catch_up).
            self._settled()


def _is_uuid(name: str) -> bool:
    import uuid

    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False


# hnswlib's persisted header (chroma-core/hnswlib, HEADER_FIELDS): int32 version, then size_t
# offsetLevel0, max_elements, cur_element_count, size_data_per_element, ... (native order).
HNSW_HEADER = "header.bin"
_HNSW_HEAD = struct.Struct("=iQQQQ")
_HNSW_VERSION = 1
_ZEROS = bytes(1 << 16)


class Lasting(str):
    """A purge problem that trying again cannot mend: the files are laid out by a Chroma this
    version of ragged does not know. Other problems (a full disk, a lock) pass."""


def zero_unused_hnsw_slots(folder: Path) -> str | None:
    """Zero what an HNSW folder's files hold past their last element.

    hnswlib allocates its vector and norm buffers with malloc for the index's whole capacity
    and writes them out whole when it creates the index (and Chroma re-creates an empty one
    at each open), so the slots past the last element hold whatever the process had freed:
    seen here as a logged record with a chunk's text, and open upstream as
    chroma-core/chroma#7688. No reader looks past the element count, which the header
    gives, so zeroing those bytes changes nothing else. Returns a reason if the files are not
    laid out as expected (another Chroma version): they are then left as they are.
    """
    try:
        head = (folder / HNSW_HEADER).read_bytes()
        version, _, capacity, count, per_element = _HNSW_HEAD.unpack_from(head)
    except OSError as exc:
        return f"cannot read the vector index header in {folder}: {exc}"
    except struct.error as exc:
        return Lasting(f"cannot read the vector index header in {folder}: {exc}")
    if version != _HNSW_VERSION or per_element == 0 or count > capacity:
        return Lasting(
            f"the vector index in {folder} is not laid out as this version of ragged knows"
        )
    for name, size in (("data_level0.bin", per_element), ("length.bin", 4)):
        try:
            _zero_from(folder / name, count * size)
        except OSError as exc:
            return f"cannot clear unused space in {folder / name}: {exc}"
    return None


def _zero_from(path: Path, start: int) -> None:
    """Overwrite path's bytes from `start` to its end with zeros, in place (same inode, same
    size: Chroma may hold the file open), writing only blocks that are not zero already."""
    if not path.exists():
        return
    with open(path, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        pos = start
        while pos < end:
            f.seek(pos)
            block = f.read(min(len(_ZEROS), end - pos))
            if block.count(0) != len(block):
                f.seek(pos)
                f.write(_ZEROS[: len(block)])
            pos += len(block)
        f.flush()
        os.fsync(f.fileno())


def _matrix(vectors: Sequence[Sequence[float]]) -> Any:
    """Vectors as the float32 matrix Chroma stores: it checks a list of lists element by
    element in Python (~70 us a vector), an array at once. An ingest's vectors arrive as
    array("f") already (4 bytes a number instead of a Python float's 32), joined here as is."""
    import numpy as np

    packed = [v for v in vectors if isinstance(v, array) and v.typecode == "f"]
    if packed and len(packed) == len(vectors):
        return np.frombuffer(b"".join(packed), dtype=np.float32).reshape(len(packed), -1)
    return np.asarray([np.asarray(v, dtype=np.float32) for v in vectors], dtype=np.float32)


def _unpack(document: str | None, metadata: Any) -> tuple[str, dict[str, Any]]:
    """(text, metadata) of a chunk as Chroma returns it: the text in the metadata, or in the
    document for chunks written before ragged 0.2."""
    meta = dict(metadata or {})
    text = meta.pop(TEXT_KEY, None)
    return str(text if text is not None else document or ""), meta


def _body(response: httpx.Response) -> str:
    """A reply's text, or "" if it was streamed and never read."""
    import httpx

    try:
        return str(response.text)
    except httpx.ResponseNotRead:
        return ""


def explain(exc: BaseException, where: str, doing: str | None = None) -> StoreError:
    """Turn whatever chromadb or httpx raised into one StoreError that says what to do.

    A server that is down or goes away mid-run surfaces as several httpx errors (refused,
    reset, "server disconnected", a timeout) or as chromadb's own ValueError at connect time.
    """
    import httpx

    from ragged.disk import ServerFull, full, says_full

    if isinstance(exc, StoreError):
        return exc  # already said (e.g. the client could not be opened)
    prefix = f"{doing}: " if doing else ""  # the messages below name `where` themselves
    general = f"{doing} at {where}: " if doing else f"Chroma at {where} failed: "
    text = str(exc) or type(exc).__name__
    if not where.startswith(("http://", "https://")):
        return full(exc, where, doing or "Chroma failed") or StoreError(general + text)
    if says_full(exc):
        return ServerFull(
            f"{prefix}the Chroma server at {where} has run out of disk space: {text[:200]}",
            hint="free some space on the server's disk (where `chroma run --path` keeps its "
            f"data){RUN_AGAIN}",
        )
    # chromadb re-raises some httpx errors as a bare ValueError or Exception: look beneath.
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, httpx.HTTPError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        exc, text = cause, str(cause) or type(cause).__name__
    refused = False
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status in (401, 403):
            refused = True
            text = f"HTTP {status} {exc.response.reason_phrase}"
        elif tls := plain_http_refused(status, _body(exc.response), where, "RAGGED_CHROMA_URL"):
            return StoreError(prefix + tls[0], tls[1])
        else:
            return StoreError(
                f"{prefix}{where} answered HTTP {status} {exc.response.reason_phrase} "
                f"to {exc.request.url.path}: is it a Chroma 1.x server?",
                hint="check the host and port in RAGGED_CHROMA_URL (`ragged config`); the "
                "server's version should match the chromadb package (`pip show chromadb`)",
            )
    request_timeout, connect_timeout = _timeouts(where)
    if isinstance(exc, httpx.ConnectTimeout):
        # chromadb's client follows the environment's proxies, this machine included.
        found = tls_trouble(exc, where, "RAGGED_CHROMA_URL", "the Chroma server", connect_timeout)
        if found is not None:
            return StoreError(prefix + found[0], found[1])
        return StoreError(
            f"{prefix}cannot reach the Chroma server at {where} "
            f"(no connection within {connect_timeout:g} s)",
            hint="check the host name and port in RAGGED_CHROMA_URL and that a firewall lets "
            "the port through; " + SERVER_DOWN_HINT,
        )
    if isinstance(exc, httpx.TimeoutException):
        return StoreError(
            f"{prefix}the Chroma server at {where} did not answer within {request_timeout:g} s",
            hint="check the server's load and log (a stopped or frozen process looks like "
            f"this){RUN_AGAIN}; RAGGED_CHROMA_TIMEOUT sets the wait",
        )
    if isinstance(exc, httpx.ConnectError):
        found = tls_trouble(exc, where, "RAGGED_CHROMA_URL", "the Chroma server")
        if found is not None:
            return StoreError(prefix + found[0], found[1])
        return StoreError(f"{prefix}the Chroma server at {where} is not running", SERVER_DOWN_HINT)
    if isinstance(exc, httpx.TransportError):
        # Reset, "Server disconnected without sending a response": it went away mid-request,
        # or it speaks only TLS. Asked on this error path only; chromadb's client does not retry.
        found = plain_http_dropped(where, "RAGGED_CHROMA_URL", connect_timeout)
        if found is not None:
            return StoreError(prefix + found[0], found[1])
        return StoreError(
            f"{prefix}lost the connection to the Chroma server at {where} ({text})",
            SERVER_DOWN_HINT,
        )
    # Chroma's own auth errors, or a 401/403 found above (a proxy guarding the server).
    from chromadb.errors import AuthorizationError, ChromaAuthError

    if refused or isinstance(exc, AuthorizationError | ChromaAuthError):
        return StoreError(
            f"{prefix}the Chroma server at {where} refused the request: {text[:200]}",
            hint="set RAGGED_CHROMA_TOKEN to the token the server (or its proxy) expects",
        )
    return StoreError(general + text, hint="see the Chroma server's log for the cause")


@_using_chroma
def list_collections(settings: Settings) -> list[tuple[str, int, str | None]]:
    """(name, chunk count, embedding model) of every collection in the configured Chroma."""
    client = _client(settings)
    out = []
    try:
        for col in client.list_collections():
            meta = col.metadata or {}
            out.append((col.name, int(col.count()), meta.get(EMBED_MODEL_KEY)))
    except Exception as exc:
        raise explain(exc, store_location(settings)) from exc
    return sorted(out)


# Timeouts per server URL, as the settings gave them, for the messages `explain` writes.
_TIMEOUTS: dict[str, tuple[float, float]] = {}


def _timeouts(where: str) -> tuple[float, float]:
    """(request, connect) timeouts in force for the server at `where`."""
    return _TIMEOUTS.get(where, (REQUEST_TIMEOUT, CONNECT_TIMEOUT))


# One HttpClient per server and database for the life of the process: chromadb keeps every
# HttpClient's connection pool alive in a class-level registry, so making a fresh one per
# call would leak connections in a long-lived process (a test run, a Python user's loop).
_HTTP_CLIENTS: dict[tuple[str, str | None, str, str], Any] = {}


def http_options(settings: Settings) -> dict[str, Any]:
    """HttpClient arguments from the settings: URL -> host, port, TLS; token -> headers.

    e.g. "https://chroma.example" -> port 443 with TLS; "gpu-box:8001" -> http on 8001;
    "http://h" -> port 8000, Chroma's own default, not 80.
    """
    url = settings.chroma_url or ""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https"):
        raise StoreError(
            f"RAGGED_CHROMA_URL has an unsupported scheme: {url!r}",
            hint="use http://host:port or https://host[:port]",
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise StoreError(f"RAGGED_CHROMA_URL has a bad port: {url!r}") from exc
    headers = None
    if settings.chroma_token:
        # Both places a token may be looked for: `Authorization: Bearer` is what reverse
        # proxies (and Chroma's own 0.x token auth by default) check; Chroma Cloud and 0.x
        # servers configured for it read X-Chroma-Token.
        headers = {
            "Authorization": f"Bearer {settings.chroma_token}",
            "X-Chroma-Token": settings.chroma_token,
        }
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": port or (443 if parts.scheme == "https" else DEFAULT_SERVER_PORT),
        "ssl": parts.scheme == "https",
        "headers": headers,
        "tenant": settings.chroma_tenant,
        "database": settings.chroma_database,
    }


def _client(settings: Settings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=True)
    if not settings.chroma_url:
        from ragged.config import private_dir, private_file
        from ragged.lock import opening

        path = Path(settings.home) / "chroma"
        if path.is_dir() and not os.access(path, os.W_OK):
            # Chroma writes to its SQLite file even to read (migrations, locks): no read-only mode.
            raise StoreError(
                f"cannot open the embedded Chroma store at {path}: the folder is read-only, "
                "and Chroma opens its store for writing even to read it",
                hint="keyword search (`--mode lexical`) works without it; to search by meaning, "
                "copy the data dir somewhere writable and point RAGGED_HOME at the copy",
            )
        try:
            # Chroma would create its file as the umask says (0644): made private first.
            private_file(private_dir(path) / CHROMA_SQLITE)
            with opening(path.parent / OPEN_LOCK):
                _lay_out(path / CHROMA_SQLITE, page_size_for(settings.chunk_tokens))
                return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
        except Exception as exc:
            from ragged.disk import full

            raise full(exc, path, "cannot open Chroma") or StoreError(
                f"cannot open Chroma at {path}: {exc}", hint="check that the data dir is writable"
            ) from exc

    options = http_options(settings)
    key = (
        settings.chroma_url,
        settings.chroma_token,
        settings.chroma_tenant,
        settings.chroma_database,
    )
    if key in _HTTP_CLIENTS:
        return _HTTP_CLIENTS[key]
    from chromadb.errors import NotFoundError

    timeout = settings.chroma_timeout
    _TIMEOUTS[settings.chroma_url] = (timeout, min(CONNECT_TIMEOUT, timeout))
    # Creating a client already sends requests (tenant and database checks) on a session
    # without any timeout, which a frozen server never answers: ask its heartbeat first,
    # with ours.
    _preflight(settings.chroma_url, options, timeout)
    try:
        client = chromadb.HttpClient(settings=chroma_settings, **options)
    except NotFoundError as exc:
        # The database (the tenant exists by default): like a collection, a database is made
        # on first use rather than by hand.
        client = _create_database(settings, options, chroma_settings, exc)
    except Exception as exc:
        raise explain(exc, settings.chroma_url, "cannot open Chroma") from exc
    _set_timeout(client, timeout)
    _HTTP_CLIENTS[key] = client
    return client


def page_size_for(chunk_tokens: int) -> int:
    """The SQLite page size for a store of chunks of this size (see LARGE_PAGE)."""
    return _page_size_holding(chunk_tokens * TEXT_BYTES_PER_TOKEN)


def _page_size_holding(text_bytes: int) -> int:
    """The large page size if a typical text of this many bytes fits one of its index
    entries, else SQLite's default (see LARGE_PAGE)."""
    fits = text_bytes + INDEX_ENTRY_BYTES <= _largest_local_payload(LARGE_PAGE)
    return LARGE_PAGE if fits else SMALL_PAGE


def _page_size_for_texts(db: sqlite3.Connection) -> int | None:
    """The page size for the chunk texts in Chroma's file (see LARGE_PAGE): the large one when
    the median of an even sample of them fits one of its index entries; None without texts."""
    (rows,) = db.execute("SELECT count(*) FROM embeddings").fetchone()
    step = max(1, rows // SAMPLED_TEXTS)
    # The rows whose id is a multiple of `step`: one in `step` of the rows that exist, spread
    # over them however their ids cluster (a reset leaves gaps), found by a scan of the small
    # `embeddings` table; each text then by the metadata's primary key (id, key), not by a
    # scan of the metadata (0.4 s at 100k chunks).
    lengths = sorted(
        n
        for (n,) in db.execute(
            # CROSS JOIN: SQLite then keeps this order, where it would rather walk the
            # string index's every text for the key.
            "SELECT length(CAST(m.string_value AS BLOB)) FROM embeddings e "
            "CROSS JOIN embedding_metadata m ON m.id = e.id AND m.key IN (?, ?) "
            "WHERE e.id % ? = 0 AND m.string_value IS NOT NULL",
            (TEXT_KEY, DOCUMENT_KEY, step),
        )
    )
    return _page_size_holding(lengths[len(lengths) // 2]) if lengths else None


def _largest_local_payload(page_size: int) -> int:
    # SQLite's file format: an index b-tree cell keeps at most ((U - 12) * 64 / 255) - 23
    # bytes of its payload in its page (U, the usable size, is the page size here: Chroma
    # reserves none); a longer payload keeps less in the page and spills the rest.
    return (page_size - 12) * 64 // 255 - 23


def _lay_out(path: Path, page_size: int) -> None:
    """Give a new embedded store's file its page size before Chroma writes the first page
    (an empty file: ragged made it, private, just before; see LARGE_PAGE)."""
    if path.stat().st_size:
        return
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f"PRAGMA page_size = {int(page_size)}")
        db.execute("VACUUM")  # writes the header, with that size, into the empty file
    finally:
        db.close()


def _preflight(url: str, options: dict[str, Any], timeout: float) -> None:
    """The server's heartbeat within the timeouts; raises StoreError as any call would."""
    import httpx

    scheme = "https" if options["ssl"] else "http"
    host = options["host"]
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    try:
        probe = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
            headers=options["headers"] or {},
        )  # the environment counts as for chromadb's own session (SSL_CERT_FILE)
    except OSError as exc:  # httpx reads the CA certificates as it makes a client
        problem = CertificatesUnreadable.now(exc)
        raise StoreError(problem.message, problem.hint) from exc
    try:
        with probe:
            probe.get(f"{scheme}://{host}:{options['port']}{HEARTBEAT_PATH}")
    except httpx.HTTPError as exc:
        raise explain(exc, url) from exc


def _create_database(
    settings: Settings, options: dict[str, Any], chroma_settings: Any, cause: Exception
) -> Any:
    import chromadb

    where = str(settings.chroma_url)
    try:
        admin = chromadb.AdminClient(
            chromadb.config.Settings(
                chroma_api_impl="chromadb.api.fastapi.FastAPI",
                chroma_server_host=options["host"],
                chroma_server_http_port=options["port"],
                chroma_server_ssl_enabled=options["ssl"],
                chroma_server_headers=options["headers"],
                anonymized_telemetry=False,
            )
        )
        _set_timeout(admin, settings.chroma_timeout)
        admin.create_database(settings.chroma_database, tenant=settings.chroma_tenant)
        return chromadb.HttpClient(settings=chroma_settings, **options)
    except Exception as exc:
        raise explain(
            exc, where, f"cannot create database '{settings.chroma_database}' ({cause})"
        ) from exc


def _set_timeout(client: Any, timeout: float = REQUEST_TIMEOUT) -> None:
    """Bound every request; chromadb offers no setting for it, so set it on its httpx session."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))


def store_location(settings: Settings) -> str:
    return settings.chroma_url or str(Path(settings.home) / "chroma")


def open_store(settings: Settings, collection: str | None = None) -> Store:
    """The one factory for the vector store: embedded by default, a server when a URL is set."""
    return Store(
        None,
        collection or settings.collection,
        store_location(settings),
        factory=lambda: _client(settings),
    )


@_using_chroma
def describe(settings: Settings) -> dict[str, Any]:
    """What `ragged doctor` reports about the store: mode, location, version, health.

    Embedded: `writable` and `size_bytes` of the directory. Server: `heartbeat_ns` and the
    server's `version`. Opening the client is itself part of the check, so a store that cannot
    be opened raises StoreError with a hint, as everywhere else.
    """
    import chromadb

    client = _client(settings)
    where = store_location(settings)
    if settings.chroma_url:
        import time

        try:
            began = time.perf_counter()
            heartbeat = int(client.heartbeat())
            heartbeat_ms = (time.perf_counter() - began) * 1000
            version = str(client.get_version())
        except Exception as exc:
            raise explain(exc, where) from exc
        return {
            "mode": "server",
            "location": where,
            "version": version,
            "heartbeat_ns": heartbeat,
            "heartbeat_ms": round(heartbeat_ms, 1),
        }
    path = Path(where)
    return {
        "mode": "embedded",
        "location": where,
        "version": str(chromadb.__version__),
        "writable": _writable(path),
        "size_bytes": _tree_size(path),
    }


def _writable(path: Path) -> bool:
    """Try it: os.access lies about read-only mounts and some network filesystems."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".ragged-write-test-"):
            return True
    except OSError:
        return False


def _tree_size(path: Path) -> int:
    """Bytes of every file under `path`; files vanishing meanwhile count as nothing."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue
    return total
