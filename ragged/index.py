"""Index: one collection, its catalog (SQLite) and its vectors (Chroma), kept in step.

Everything that writes a collection goes through an Index, in the one order that makes a
crash at any moment repairable (docs/design.md):

1. `stage`: a file's chunks, its manifest row and its FTS5 rows are committed to the catalog
   in one transaction, marked not yet embedded; the chunk ids of the file's previous version
   become tombstones in the same transaction.
2. `write_vectors`: vectors are upserted into Chroma under ids derived from (path, content,
   position), so writing them twice is harmless; then the chunks are marked embedded.
3. `flush_tombstones`: tombstoned ids are deleted from Chroma, then the tombstones.

`reconcile` finishes whatever an interrupted run left, and reads never serve a chunk the
catalog does not hold, so a file removed is never cited again, even before Chroma forgot it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragged.catalog import ChunkRow, FileRecord, now
from ragged.errors import StoreError

if TYPE_CHECKING:
    from ragged.catalog import Catalog
    from ragged.config import Settings
    from ragged.store import Store


@dataclass(frozen=True)
class Hit:
    """One retrieved passage."""

    id: str
    text: str
    score: float  # cosine similarity for dense hits; fused or BM25-based for others
    path: str  # absolute path of the source file: its identity
    page: int | None
    heading: str
    chunk_index: int

    @property
    def label(self) -> str:
        return label(self.path)

    @property
    def location(self) -> str:
        if self.page:
            return f"page {self.page}"
        return self.heading


def label(path: str) -> str:
    """How a stored file is shown: from `~` when it lies under the home dir, else absolute.

    e.g. /home/ann/notes/ops/keys.md -> ~/notes/ops/keys.md. Unlike a path relative to the
    folder that was typed, it is the same whichever folder reached the file, and the
    `tutorial/testing.md` of two projects never look alike.
    """
    home = _home()
    if home and path.startswith(home + os.sep):
        return "~" + path[len(home) :]
    return path


def _home() -> str:
    try:
        return str(Path.home())
    except RuntimeError:  # no HOME and no passwd entry
        return ""


# -- identity and the conversions between chunk, row, metadata and hit ------------------------


def chunk_id(path: str, content_hash: str, index: int) -> str:
    """Deterministic, so re-adding the same chunk after a crash overwrites instead of duplicating."""
    return hashlib.sha256(f"{path}\0{content_hash}\0{index}".encode()).hexdigest()[:32]


def make_row(
    record: FileRecord, idx: int, text: str, page: int | None, heading: str, tokens: int
) -> ChunkRow:
    """A chunk of this version of this file, under its deterministic id."""
    return ChunkRow(
        id=chunk_id(record.path, record.content_hash, idx),
        path=record.path,
        idx=idx,
        text=text,
        page=page,
        heading=heading,
        tokens=tokens,
        content_hash=record.content_hash,
    )


def embed_text(row: ChunkRow) -> str:
    """What the embedding model sees: the heading path gives a section its context."""
    return f"{row.heading}\n\n{row.text}" if row.heading else row.text


def chunk_metadata(row: ChunkRow) -> dict[str, Any]:
    """Chroma metadata for a chunk; Chroma rejects None values, so absent fields are left out.

    With the text Chroma keeps, this is all a catalog row is rebuilt from.
    """
    meta: dict[str, Any] = {
        "path": row.path,
        "heading": row.heading,
        "chunk_index": row.idx,
        "content_hash": row.content_hash,
    }
    if row.page is not None:
        meta["page"] = row.page
    return meta


def row_from_store(id_: str, text: str, meta: dict[str, Any], tokens: int = 0) -> ChunkRow:
    page = meta.get("page")
    return ChunkRow(
        id=id_,
        path=str(meta.get("path") or ""),
        idx=int(meta.get("chunk_index", 0)),
        text=text,
        page=int(page) if page is not None else None,
        heading=str(meta.get("heading") or ""),
        tokens=tokens,
        content_hash=str(meta.get("content_hash") or ""),
    )


def hit_from_row(row: ChunkRow, score: float) -> Hit:
    return Hit(row.id, row.text, score, row.path, row.page, row.heading, row.idx)


# -- the collection ---------------------------------------------------------------------------


class CollectionMissing(StoreError):
    """A command named a collection that does not exist."""


class Index:
    """One collection's catalog + store pair; open it with `open_index`."""

    def __init__(self, settings: Settings, catalog: Catalog, store: Store) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.name = store.name
        # Chunks restored from the store when the index was opened with a lost catalog.
        self.rebuilt: int | None = None

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the embedding model stamp ---------------------------------------------------------

    def check_model(self, model: str) -> None:
        """Refuse another embedding model before any work; the catalog answers if it knows."""
        from ragged.models import full_name

        recorded = self.catalog.embed_model()
        if recorded is None or self.store.shared or full_name(recorded) != full_name(model):
            # The store is the authority: it raises with the collection's own record and the
            # fix. A server may hold other machines' work under another model.
            self.store.check_model(model)

    # -- writes (the caller holds the write lock) -------------------------------------------

    def stage(self, record: FileRecord, rows: Sequence[ChunkRow]) -> None:
        """Step 1: commit a file's chunks as text awaiting vectors."""
        self.catalog.replace_file(record, rows)

    def stage_more(self, path: str, rows: Sequence[ChunkRow]) -> None:
        """Step 1 again for a file staged in parts (a large file read in blocks).

        The file was first staged with a placeholder stat and hash, which `complete` replaces
        once the last part is in: a run killed half way leaves a file that the next run sees
        as changed and reads again.
        """
        self.catalog.append_chunks(path, rows)

    def complete(self, record: FileRecord) -> None:
        self.catalog.complete_file(record)

    def write_vectors(
        self, rows: Sequence[ChunkRow], vectors: Sequence[Sequence[float]], model: str
    ) -> None:
        """Step 2: upsert vectors for staged chunks, then mark them embedded."""
        if not rows:
            return
        self.store.ensure(model, len(vectors[0]))
        self.store.add(
            [r.id for r in rows], vectors, [r.text for r in rows], [chunk_metadata(r) for r in rows]
        )
        self.catalog.mark_embedded([r.id for r in rows], model)

    def flush_tombstones(self) -> None:
        """Step 3: make Chroma forget what the catalog already has."""
        tomb = self.catalog.tombstones()
        if tomb:
            self.store.delete(tomb)
            self.catalog.clear_tombstones(tomb)

    def touch(self, path: str, size: int, mtime_ns: int) -> None:
        self.catalog.touch(path, size, mtime_ns)

    def reuse(self, record: FileRecord) -> int | None:
        """A moved, renamed or copied file: copy the vectors of a stored file with the same bytes.

        Returns the chunks written, or None when no stored file can give its vectors.
        """
        for donor in self.catalog.files_with_hash(record.content_hash):
            # The donor may be this very path, ingested before under another model.
            if donor.embed_model != record.embed_model:
                continue
            old = self.catalog.chunks_of(donor.path)
            vectors = self.store.vectors([c.id for c in old])
            if not old or len(vectors) != len(old):
                continue
            rows = [make_row(record, c.idx, c.text, c.page, c.heading, c.tokens) for c in old]
            # Same order as a parsed file: catalog first (as pending), then the vectors.
            self.stage(dataclasses.replace(record, pages=donor.pages), rows)
            self.write_vectors(rows, [vectors[c.id] for c in old], record.embed_model or "")
            return len(rows)
        return None

    def remove(self, paths: Iterable[str]) -> int:
        """Forget files: the catalog first (so reads stop serving them), then Chroma."""
        removed = self.catalog.remove_files(paths)
        self.flush_tombstones()
        return removed

    def begin_run(self) -> None:
        """Finish what an interrupted run left, then mark this one as under way."""
        self.reconcile()
        self.catalog.begin_run()

    def end_run(self) -> None:
        self.flush_tombstones()
        self.catalog.end_run(self.store.fingerprint())

    def reconcile(self) -> None:
        """Make Chroma and the catalog agree again, whatever a crash left behind.

        - ids the catalog tombstoned are deleted from Chroma;
        - vectors Chroma holds for chunks the catalog still has as pending are kept (the
          id says they are of this very text) and the chunks marked embedded;
        - embedded chunks Chroma lacks go back to pending, to be embedded again;
        - vectors of a file the catalog knows in another version are stale: deleted;
        - vectors of a file the catalog has never heard of are adopted with their text and
          metadata, never deleted: a lost catalog must not cost the store its data.
        """
        self.flush_tombstones()
        catalog, store = self.catalog, self.store
        if not catalog.interrupted:
            # Untouched since our last clean run: nothing to compare, and Chroma stays unopened.
            fingerprint = store.fingerprint()
            if fingerprint is not None and fingerprint == catalog.store_fingerprint:
                return
            # Otherwise matching counts are enough to skip the id-by-id comparison.
            if store.count() == catalog.embedded_count() and not catalog.pending_count():
                return
        embedded = catalog.embedded_ids()
        pending = catalog.pending_ids()
        in_store = store.ids()
        if in_store & pending:
            model = (store.embedding or (self.settings.embed_model, 0))[0]
            catalog.mark_embedded(sorted(in_store & pending), model)
        missing = embedded - in_store
        if missing:
            catalog.mark_unembedded(missing)
        unknown = sorted(in_store - embedded - pending)
        if unknown and not store.shared:
            # On a server an id this catalog never wrote may be another machine's chunk.
            self._settle_unknown(unknown)

    def _settle_unknown(self, ids: list[str]) -> None:
        stale: list[str] = []
        orphans: list[list[ChunkRow]] = []
        for rows in rows_by_file(self.store.get(ids)):
            if self.catalog.file(rows[0].path) is not None:
                stale += [r.id for r in rows]
            else:
                orphans.append(rows)
        self.store.delete(stale)
        if orphans:
            model = (self.store.embedding or (self.settings.embed_model, 0))[0]
            for rows in orphans:
                self.catalog.replace_file(file_record(rows, model), rows, embedded=True)

    def drop(self) -> str | None:
        """Delete the collection: its vectors, its manifest and its keyword index.

        Returns why deleted text may remain in the store's files, if it may (see `purge`).
        """
        problem = self.store.drop()
        self.catalog.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.catalog.path}{suffix}").unlink(missing_ok=True)
        return problem

    def purge(self) -> str | None:
        """After a removal: make the removed text unreadable in the catalog's and the store's files.

        Returns why deleted text may remain in the store's files, if it may.
        """
        self.catalog.purge()
        return self.store.purge()

    def rebuild_from_store(self) -> int:
        """Refill a lost or damaged catalog (manifest, chunk texts, BM25 index) from Chroma.

        Chroma keeps every chunk's text and metadata, so only what it never had stays unknown:
        a file's size and mtime become 0, and the next ingest hashes each file once, finds the
        same content and keeps its chunks. Returns the number of chunks restored.
        """
        recorded = self.store.embedding
        model = recorded[0] if recorded else None
        files = [(file_record(rows, model), rows) for rows in rows_by_file(self.store.iter_texts())]
        self.catalog.replace_all(files)
        return sum(len(rows) for _, rows in files)

    def adopt(self, files: Iterable[list[ChunkRow]], model: str) -> set[str]:
        """Record chunks that another store holds, one list per file; returns ids to write here.

        A file this catalog already lists with exactly these chunks, all of them in this
        store, is left alone. Others are staged, so the caller writes their vectors with
        `write_vectors`.
        """
        present = self.store.ids()
        wanted: set[str] = set()
        for rows in files:
            ids = {r.id for r in rows}
            record = file_record(rows, model, status="pending")
            known = self.catalog.file(record.path)
            if (
                known is not None
                and known.status == "ok"
                and known.content_hash == record.content_hash
                and ids <= present
                and {c.id for c in self.catalog.chunks_of(record.path)} == ids
            ):
                continue
            self.stage(record, rows)
            wanted |= ids
        # An older version of a copied file was here: its chunks are tombstoned now.
        self.flush_tombstones()
        return wanted

    # -- reads ------------------------------------------------------------------------------

    def files(self, under: str | None = None) -> list[FileRecord]:
        return self.catalog.files(under)

    def matching(self, pattern: str) -> list[str]:
        """Stored files whose path or label matches a glob (`*.pdf`, `guides/*`)."""
        return [
            f.path
            for f in self.catalog.files()
            if fnmatch.fnmatch(f.path, pattern)
            or fnmatch.fnmatch(label(f.path), pattern)
            or fnmatch.fnmatch(f.path, f"*/{pattern}")
        ]

    def lexical(self, question: str, k: int, paths: Sequence[str] | None = None) -> list[Hit]:
        return [hit_from_row(row, s) for row, s in self.catalog.search(question, k, paths)]

    def dense(
        self, vector: Sequence[float], k: int, paths: Sequence[str] | None = None
    ) -> list[Hit]:
        """Nearest chunks by cosine; only those the catalog holds, so nothing removed is served."""
        if paths == []:
            return []
        where = {"path": {"$in": list(paths)}} if paths else None
        found = self.store.query(vector, k, where)
        known = self.catalog.chunks_by_id([id_ for id_, *_ in found])
        return [hit_from_row(known[id_], score) for id_, _, _, score in found if id_ in known]

    def vectors_lost(self) -> str | None:
        """Why a dense search that found nothing should have: the store lost the vectors."""
        expected = self.catalog.embedded_count()
        if expected and self.store.count() == 0:
            return (
                f"the vector store holds none of the {expected} embedded chunks of "
                f"collection '{self.name}'"
            )
        return None


def rows_by_file(chunks: Iterable[tuple[str, str, dict[str, Any]]]) -> list[list[ChunkRow]]:
    """Chunks as Chroma keeps them (id, text, metadata), grouped by file in chunk order."""
    from ragged.tokens import count_tokens

    files: dict[str, list[ChunkRow]] = {}
    for id_, text, meta in chunks:
        row = row_from_store(id_, text, meta, count_tokens(text))
        if row.path:  # not written by ragged: nothing to tie it to a file
            files.setdefault(row.path, []).append(row)
    return [sorted(files[path], key=lambda r: r.idx) for path in sorted(files)]


def file_record(rows: Sequence[ChunkRow], model: str | None, status: str = "ok") -> FileRecord:
    """A manifest row for chunks read back from a store; what it never kept is filled so that
    a later ingest stays cheap: size and mtime 0 make it hash each file once."""
    pages = [r.page for r in rows if r.page is not None]
    return FileRecord(
        path=rows[0].path,
        size=0,
        mtime_ns=0,
        content_hash=Counter(r.content_hash for r in rows).most_common(1)[0][0],
        pages=max(pages) if pages else None,
        chunks=len(rows),
        status=status,
        embed_model=model,
        ingested_at=now(),
    )


def open_index(settings: Settings, collection: str | None = None, *, create: bool = False) -> Index:
    """The one factory for a collection's catalog + store pair.

    A collection that does not exist is refused, naming those that do, unless `create`
    (only `ingest` and `copy` make collections). A catalog that was lost or emptied while
    the store still holds the collection is rebuilt from the store: Chroma keeps every
    chunk's text and metadata, so nothing needs to be embedded again.
    """
    from ragged.catalog import catalog_path, open_catalog
    from ragged.store import open_store

    name = collection or settings.collection
    store = open_store(settings, name)
    had_catalog = catalog_path(settings, name).exists()
    if not create and not had_catalog and not store.exists:
        raise missing_collection(settings, name)
    index = Index(settings, open_catalog(settings, name), store)
    try:
        if index.catalog.file_count() == 0 and index.catalog.chunk_count() == 0:
            if store.exists and store.count() > 0:
                index.rebuilt = index.rebuild_from_store()
            elif not create and not store.exists:
                raise missing_collection(settings, name)
    except BaseException:
        index.close()
        raise
    return index


def collection_names(settings: Settings) -> list[str]:
    """Collections that exist: in the store, or only in a catalog (text awaiting vectors)."""
    from ragged.catalog import CatalogDamaged, catalog_path, open_catalog
    from ragged.store import list_collections

    names = {name for name, _, _ in list_collections(settings)}
    folder = catalog_path(settings).parent
    for path in folder.glob("*.sqlite") if folder.is_dir() else ():
        if path.stem in names:
            continue
        try:
            catalog = open_catalog(settings, path.stem)
        except CatalogDamaged:
            names.add(path.stem)  # it held something once; doctor --fix can tell what
            continue
        try:
            if catalog.file_count():
                names.add(path.stem)
        finally:
            catalog.close()
    return sorted(names)


def missing_collection(settings: Settings, name: str) -> CollectionMissing:
    others = [n for n in collection_names(settings) if n != name]
    where = "" if not settings.chroma_url else f" at {settings.chroma_url}"
    return CollectionMissing(
        f"collection '{name}' does not exist{where}; "
        + (f"collections: {', '.join(others)}" if others else "there are no collections yet"),
        hint="`ragged ingest PATH --collection NAME` creates one",
    )
