"""ragged.catalog: rows written many to a statement land exactly as written, one at a time."""

from __future__ import annotations

from pathlib import Path

from ragged.catalog import MAX_VARIABLES, ROWS_PER_STATEMENT, ChunkRow, FileRecord, open_catalog
from ragged.config import load_settings
from ragged.index import chunk_id

PATH = "/docs/long.md"
# More rows than one statement takes, for both the chunk INSERT and the id lists.
MANY = MAX_VARIABLES + ROWS_PER_STATEMENT + 3


def version(content_hash: str, n: int = MANY) -> tuple[FileRecord, list[ChunkRow]]:
    record = FileRecord(PATH, 10, 20, content_hash, None, n, "pending", None, 0.0)
    rows = [
        ChunkRow(
            chunk_id(PATH, content_hash, i),
            PATH,
            i,
            f"text {i} of {content_hash}",
            i % 7 or None,
            f"Heading {i % 3}",
            5 + i % 11,
            content_hash,
            f"sub {i}" if i % 5 == 0 else "",
        )
        for i in range(n)
    ]
    return record, rows


def test_a_large_file_is_stored_row_for_row_and_its_old_ids_tombstoned(env: Path) -> None:
    catalog = open_catalog(load_settings({}))
    a, a_rows = version("a" * 64)
    b, b_rows = version("b" * 64, n=ROWS_PER_STATEMENT + 1)
    catalog.replace_file(a, a_rows)
    assert catalog.chunks_of(PATH) == a_rows
    catalog.replace_file(b, b_rows)
    assert catalog.chunks_of(PATH) == b_rows
    assert set(catalog.tombstones()) == {r.id for r in a_rows}
    # Back to the first version before Chroma forgot it: its ids live again, b's are to go.
    catalog.replace_file(a, a_rows)
    assert catalog.chunks_of(PATH) == a_rows
    assert set(catalog.tombstones()) == {r.id for r in b_rows}
    assert catalog.pending_count() == MANY


def test_marking_many_chunks_embedded_and_back(env: Path) -> None:
    catalog = open_catalog(load_settings({}))
    record, rows = version("c" * 64)
    catalog.replace_file(record, rows)
    ids = [r.id for r in rows]
    catalog.mark_embedded(ids[:-1], "nomic-embed-text")
    assert catalog.pending_count() == 1
    assert catalog.file(PATH).status == "pending"  # type: ignore[union-attr]
    catalog.mark_embedded(ids[-1:], "nomic-embed-text")
    assert catalog.pending_count() == 0
    assert catalog.file(PATH).status == "ok"  # type: ignore[union-attr]
    catalog.mark_unembedded(ids)
    assert catalog.pending_count() == MANY
    assert catalog.file(PATH).status == "pending"  # type: ignore[union-attr]
