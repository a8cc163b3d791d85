"""Copying a collection between Chroma stores (embedded <-> server) without embedding again.

The copy keeps the catalog's rule (see ragged/catalog.py): a file's chunks are recorded in
the target's catalog as not yet embedded before any of their vectors is written, and marked
embedded once they are in the target's Chroma. So an interrupted copy leaves nothing that
a re-run (of `copy`, or of `ingest`) cannot finish.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragged.errors import EmbeddingMismatch, StoreError
from ragged.store import WRITE_BATCH

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.index import Index
    from ragged.store import Store

EMBEDDED = "embedded"  # `--to embedded` / `--from embedded`: the store under the data dir


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
    # A saved conversation whose passages of replaced chunks could not be blanked (Index.unblanked).
    unblanked: str | None = None
    # Why the text of replaced chunks may stay readable in the target's files (Index.purge).
    purge_problem: str | None = None


def copy_collection(
    source: Store,
    target: Store,
    *,
    batch: int = WRITE_BATCH,
    index: Index | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Copy the chunks (id, vector, text, metadata) of `source` into `target`; returns how many.

    The target collection is created with the source's embedding model and dimension, and
    refused if it exists with others. Writes are upserts under the same ids, so no run makes
    duplicates. With `index` (the target's), its catalog is filled from the copied chunks, so
    `list` and keyword search work there, and files it already holds unchanged are skipped.
    """
    from ragged.index import files_from_store, row_from_store

    model, dim = _source_embedding(source)
    _check_target(source, target, model, dim)
    wanted: set[str] | None = None
    if index is not None:
        index.catalog.begin_run()  # if the copy dies, the next ingest compares in full
    target.ensure(model, dim)
    if index is not None:
        wanted = index.adopt(files_from_store(source.iter_texts(batch), model))
    total = source.count() if wanted is None else len(wanted)
    done = 0
    if total:
        pending: list[tuple[str, list[float], str, dict[str, Any]]] = []

        def flush() -> None:
            nonlocal done
            ids = [p[0] for p in pending]
            vectors = [p[1] for p in pending]
            texts = [p[2] for p in pending]
            metas = [p[3] for p in pending]
            if index is not None:
                rows = [row_from_store(*chunk) for chunk in zip(ids, texts, metas, strict=True)]
                index.write_vectors(rows, vectors, model)  # also marks them embedded
            else:
                target.add(ids, vectors, texts, metas)
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
    if index is not None:
        index.end_run()
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
    from ragged.models import full_name

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
    from ragged.index import missing_collection, open_index
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
    if not source.exists:
        raise missing_collection(source_settings, name)
    pending = 0
    if catalog_path(source_settings, name).exists():
        source_catalog = open_catalog(source_settings, name)
        try:
            pending = source_catalog.pending_count()
        finally:
            source_catalog.close()
    with open_index(target_settings, name, create=True) as index:
        chunks = copy_collection(source, index.store, index=index, on_progress=on_progress)
        files = index.files()
        model, dim = index.store.embedding or ("", 0)
        unblanked = index.unblanked
        # An older version of a file replaced: its text goes from the files, as after `remove`.
        purge_problem = index.purge_if_due()
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
        unblanked=unblanked,
        purge_problem=purge_problem,
    )
