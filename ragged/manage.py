"""Managing what is stored: listing sources, removing files, resetting a collection."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ragged.catalog import catalog_path

if TYPE_CHECKING:
    from ragged.catalog import Catalog
    from ragged.config import Settings
    from ragged.store import Store


@dataclass(frozen=True)
class SourceInfo:
    path: str
    rel_path: str
    chunks: int
    pages: int | None
    ingested_at: float
    status: str  # ok | pending (chunks await embeddings)


def list_sources(catalog: Catalog) -> list[SourceInfo]:
    return [
        SourceInfo(f.path, f.rel_path, f.chunks, f.pages, f.ingested_at, f.status)
        for f in catalog.files()
    ]


def remove(paths: Sequence[Path], store: Store, catalog: Catalog) -> list[str]:
    """Forget stored files given by path (a folder means every stored file under it)."""
    targets: list[str] = []
    stored = [f.path for f in catalog.files()]
    for given in paths:
        p = os.path.abspath(os.path.expanduser(given))
        resolved = str(Path(p).resolve()) if Path(p).exists() else p
        for candidate in {p, resolved}:
            prefix = candidate.rstrip("/") + "/"
            targets.extend(s for s in stored if s == candidate or s.startswith(prefix))
    targets = sorted(set(targets))
    catalog.remove_files(targets)
    tomb = catalog.tombstones()
    store.delete(tomb)
    catalog.clear_tombstones(tomb)
    return targets


def reset(settings: Settings, store: Store, collection: str | None = None) -> None:
    """Drop the collection's vectors and its catalog."""
    store.drop()
    path = catalog_path(settings, collection)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
