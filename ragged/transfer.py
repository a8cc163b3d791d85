"""Copying a collection between Chroma stores (embedded <-> server) without embedding again.

The copy keeps the catalog's rule (see ragged/catalog.py): a file's chunks are recorded in
the target's catalog as not yet embedded before any of their vectors is written, and marked
embedded once they are in the target's Chroma. So an interrupted copy leaves nothing that
a re-run (of `copy`, or of `ingest`) cannot finish.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragged.errors import EmbeddingMismatch, StoreError
from ragged.store import WRITE_BATCH

if TYPE_CHECKING:
    from ragged.catalog import Catalog
    from ragged.config import Settings
    from ragged.store import Store

EMBEDDED = "embedded"  # `--to embedded` / `--from embedded`: the store under the data dir

# (id, text, metadata) of one chunk, as Chroma keeps it: what a catalog row is rebuilt from.
ChunkRecord = tuple[str, str, dict[str, Any]]


@dataclass(frozen=True)
class CopyReport:
    """What `ragged copy` did."""

    collection: str
    source: str
    target: str
    embed_model: str
    dimensions: int
    chunks: int  # chunks written to the target this run
    unchanged: int  # chunks the target already held, recorded as they are: not sent again
    files: int  # files the target's local catalog lists after the copy
    pending_in_source: int  # chunks the source's catalog holds as text only: not copied
    seconds: float


def copy_collection(
    source: Store,
    target: Store,
    *,
    batch: int = WRITE_BATCH,
    catalog: Catalog | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Copy the chunks (id, vector, text, metadata) of `source` into `target`; returns how many.

    The target collection is created with the source's embedding model and dimension, and
    refused if it exists with others. Writes are upserts under the same ids, so no run makes
    duplicates. With `catalog` (the target's), the catalog is filled from the copied chunks,
    so `list` and keyword search work there, and files it already holds unchanged are skipped.
    """
    model, dim = _source_embedding(source)
    _check_target(source, target, model, dim)
    wanted: set[str] | None = None
    if catalog is not None:
        catalog.begin_run()  # if the copy dies, the next ingest compares catalog and store in full
    target.ensure(model, dim)
    if catalog is not None:
        wanted = record_chunks(catalog, target, _by_file(source.iter_texts(batch)), model)
    total = source.count() if wanted is None else len(wanted)
    done = 0
    if total:
        pending: list[tuple[str, list[float], str, dict[str, Any]]] = []

        def flush() -> None:
            nonlocal done
            ids = [p[0] for p in pending]
            target.add(
                ids, [p[1] for p in pending], [p[2] for p in pending], [p[3] for p in pending]
            )
            if catalog is not None:
                catalog.mark_embedded(ids, model)
            done += len(pending)
            pending.clear()
            if on_progress:
                on_progress(done, total)

        for chunk in source.iter_all(batch):
            # A chunk added to the source since the catalog rows were written is left out:
            # every vector written must already have its row.
            if wanted is None or chunk[0] in wanted:
                pending.append(chunk)
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
    if catalog is not None:
        catalog.end_run()
    return done


def _source_embedding(source: Store) -> tuple[str, int]:
    recorded = source.embedding
    if recorded is not None:
        return recorded
    if not source.exists:
        raise StoreError(
            f"collection '{source.name}' does not exist at {source.where}",
            hint="`ragged collections` lists the collections of a store",
        )
    raise StoreError(
        f"collection '{source.name}' at {source.where} records no embedding model: "
        "it was not made by ragged"
    )


def _check_target(source: Store, target: Store, model: str, dim: int) -> None:
    """Vectors of two models must never share a collection: refuse before writing anything."""
    from ragged.llm import full_name

    existing = target.embedding
    if existing is None:
        if target.exists:
            raise StoreError(
                f"collection '{target.name}' at {target.where} exists but records no embedding "
                "model: it was not made by ragged",
                hint="copy into another --collection",
            )
        return
    their_model, their_dim = existing
    if full_name(their_model) != full_name(model) or their_dim != dim:
        raise EmbeddingMismatch(
            f"collection '{target.name}' at {target.where} was built with embedding model "
            f"{their_model} ({their_dim} dimensions), not {model} ({dim} dimensions) like "
            f"the one at {source.where}",
            hint="copy into another --collection, or delete the target's collection first "
            "(`ragged reset --collection NAME` against that store)",
        )


def _by_file(chunks: Iterable[ChunkRecord]) -> list[list[ChunkRecord]]:
    """Group chunks by source file; Chroma returns them in insertion order, not by file."""
    files: dict[str, list[ChunkRecord]] = {}
    for chunk in chunks:
        files.setdefault(str(chunk[2].get("path", "")), []).append(chunk)
    return [files[path] for path in sorted(files)]


def record_chunks(
    catalog: Catalog, store: Store, files: Iterable[list[ChunkRecord]], embed_model: str
) -> set[str]:
    """Write catalog rows for chunks of `store`, one list per file; returns the ids to write.

    A file the catalog already lists with exactly these chunks, all of them in `store`,
    is left alone: its ids are not returned. Others are recorded as awaiting vectors, so
    the caller writes those and marks them embedded. Chroma keeps per chunk what
    `chunk_metadata` puts there; what it does not keep is filled so that a later `ragged
    ingest` of the same folder stays cheap: size and mtime 0 make ingest hash each file
    once, and an unchanged hash means nothing is embedded again.
    """
    from ragged.catalog import ChunkRow, FileRecord, now
    from ragged.ingest.chunking import count_tokens

    present = store.ids()
    wanted: set[str] = set()
    for chunks in files:
        meta0 = chunks[0][2]
        path, rel_path = str(meta0.get("path", "")), str(meta0.get("rel_path", ""))
        if not path:
            continue  # not a ragged chunk: no file to list it under
        rows = sorted(
            (
                ChunkRow(
                    id=id_,
                    path=path,
                    rel_path=rel_path,
                    idx=int(meta.get("chunk_index", 0)),
                    text=text,
                    page=int(meta["page"]) if meta.get("page") is not None else None,
                    heading=str(meta.get("heading", "")),
                    tokens=count_tokens(text),
                    content_hash=str(meta.get("content_hash", "")),
                )
                for id_, text, meta in chunks
            ),
            key=lambda r: r.idx,
        )
        ids = {r.id for r in rows}
        digest = Counter(r.content_hash for r in rows).most_common(1)[0][0]
        known = catalog.file(path)
        if (
            known is not None
            and known.status == "ok"
            and known.content_hash == digest
            and ids <= present
            and {c.id for c in catalog.chunks_of(path)} == ids
        ):
            continue
        pages = [r.page for r in rows if r.page is not None]
        record = FileRecord(
            path=path,
            root=_root(path, rel_path),
            rel_path=rel_path,
            size=0,
            mtime_ns=0,
            content_hash=digest,
            pages=max(pages) if pages else None,
            chunks=len(rows),
            status="pending",
            embed_model=embed_model,
            ingested_at=now(),
        )
        catalog.replace_file(record, rows)
        wanted |= ids
    # An older version of a copied file was in the target: its chunks are tombstoned now.
    stale = catalog.tombstones()
    if stale:
        store.delete(stale)
        catalog.clear_tombstones(stale)
    return wanted


def _root(path: str, rel_path: str) -> str:
    """The folder a file was ingested from: its path without the relative part.

    e.g. ("/home/ann/notes/guide/install.md", "guide/install.md") -> "/home/ann/notes"
    """
    for sep in ("/", "\\"):
        tail = sep + rel_path.replace("/", sep)
        if rel_path and path.endswith(tail):
            return path[: -len(tail)] or sep
    return path.rsplit("/", 1)[0] if "/" in path else path


def settings_for(settings: Settings, url: str) -> Settings:
    """The same settings pointed at another store: a server URL, or "embedded"."""
    chroma_url = None if url.strip().lower() == EMBEDDED else url.strip()
    return dataclasses.replace(settings, chroma_url=chroma_url or None)


def copy(
    source_settings: Settings,
    target_settings: Settings,
    collection: str | None = None,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> CopyReport:
    """Copy one collection from the store of `source_settings` to that of `target_settings`."""
    from ragged.catalog import catalog_path, open_catalog
    from ragged.store import open_store, store_location

    name = collection or source_settings.collection
    where = (store_location(source_settings), store_location(target_settings))
    if catalog_path(source_settings, name) == catalog_path(target_settings, name):
        raise StoreError(
            f"the source and the target are the same store ({where[0]})",
            hint="name the other store with --to URL or --from URL ('embedded' for the local one)",
        )
    started = time.perf_counter()
    source = open_store(source_settings, name)
    target = open_store(target_settings, name)
    pending = 0
    if catalog_path(source_settings, name).exists():
        source_catalog = open_catalog(source_settings, name)
        try:
            pending = source_catalog.pending_count()
        finally:
            source_catalog.close()
    catalog = open_catalog(target_settings, name)
    try:
        chunks = copy_collection(source, target, catalog=catalog, on_progress=on_progress)
        files = catalog.files()
    finally:
        catalog.close()
    model, dim = target.embedding or ("", 0)
    return CopyReport(
        collection=name,
        source=where[0],
        target=where[1],
        embed_model=model,
        dimensions=dim,
        chunks=chunks,
        unchanged=max(0, source.count() - chunks),
        files=len(files),
        pending_in_source=pending,
        seconds=time.perf_counter() - started,
    )
