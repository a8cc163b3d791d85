"""ragged.catalog: rows written many to a statement land exactly as written, one at a time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ragged.catalog import (
    MAX_VARIABLES,
    ROWS_PER_STATEMENT,
    Catalog,
    ChunkRow,
    FileRecord,
    open_catalog,
)
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


def pending_files(where: Path, n: int) -> tuple[Catalog, list[ChunkRow]]:
    """A fresh catalog of n one-chunk files, every chunk awaiting its vector."""
    catalog = Catalog(where / f"pending-{n}.db")
    catalog.open_batch()
    rows = []
    for i in range(n):
        path, digest = f"/docs/note{i}.md", f"{i:064x}"
        row = ChunkRow(chunk_id(path, digest, 0), path, 0, f"note {i}", None, "", 3, digest)
        catalog.replace_file(FileRecord(path, 10, 20, digest, None, 1, "pending", None, 0.0), [row])
        rows.append(row)
    catalog.commit_batch()
    return catalog, rows


def steps_to_mark(catalog: Catalog, rows: list[ChunkRow]) -> int:
    """SQLite virtual-machine instructions (in hundreds) that marking these rows embedded took."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    catalog._db.set_progress_handler(count, 100)
    try:
        catalog.mark_embedded([r.id for r in rows], "nomic-embed-text")
    finally:
        catalog._db.set_progress_handler(None, 100)
    return steps


def test_marking_a_batch_embedded_does_not_grow_with_the_files_still_pending(
    tmp_path: Path,
) -> None:
    # Every store write marks its batch embedded. SQLite once checked each pending file
    # against every pending chunk (the chunks_pending index): 90 ms a write at 1,538 files,
    # growing with the square of an ingest's size. Counted in VM steps, not timed.
    few, few_rows = pending_files(tmp_path, 200)
    many, many_rows = pending_files(tmp_path, 2_000)
    batch = slice(0, 32)
    assert steps_to_mark(many, many_rows[batch]) < 2 * steps_to_mark(few, few_rows[batch]) + 50
    for catalog, rows in ((few, few_rows), (many, many_rows)):
        assert catalog.file(rows[0].path).status == "ok"  # type: ignore[union-attr]
        assert catalog.file(rows[32].path).status == "pending"  # type: ignore[union-attr]
        assert catalog.pending_count() == len(rows) - 32


# -- keyword search: common words --------------------------------------------------------

FILES = [f"/docs/part{n}.md" for n in range(4)]


def keyword_collection(rare_every: int) -> Catalog:
    """1,000 chunks over four files: "guide" in an eighth of them (a common word), "zebra"
    in every `rare_every`-th; lengths differ so that no two scores tie."""
    catalog = open_catalog(load_settings({}))
    per_file = 250
    for n, path in enumerate(FILES):
        content_hash = f"{n}" * 64
        rows = []
        for j in range(per_file):
            i = n * per_file + j
            words = ["guide"] * (i % 8 == 0) * (1 + i // 8 % 4) + [f"filler{i}"]
            if i % rare_every == 0:
                words += ["zebra"] * (1 + i // rare_every % 3) + ["padding"] * (8 * i // rare_every)
            else:
                words += ["padding"] * (i // 4)
            text = " ".join(words)
            rows.append(
                ChunkRow(chunk_id(path, content_hash, j), path, j, text, None, "", 5, content_hash)
            )
        catalog.replace_file(
            FileRecord(path, 1, 1, content_hash, None, per_file, "ok", None, 0), rows
        )
    return catalog


def ranking(found: list[tuple[ChunkRow, float]]) -> list[tuple[str, float]]:
    return [(row.id, score) for row, score in found]


def test_chunks_with_only_common_words_are_left_out_when_enough_hold_a_rarer_one(
    env: Path,
) -> None:
    catalog = keyword_collection(rare_every=11)  # 91 chunks hold "zebra", 125 "guide"
    # Asked for more than hold "zebra", the search scores every chunk with either word.
    every = catalog.search("zebra guide", 1000)
    assert len(every) == 91 + 125 - 12
    assert any("zebra" not in row.text for row, _ in every[:91])  # "guide" alone ranks too
    found = catalog.search("zebra guide", 50)
    with_zebra = [hit for hit in every if "zebra" in hit[0].text]
    # The same chunks and scores as the full search gives those holding "zebra": "guide"
    # still counts in their scores.
    assert ranking(found) == ranking(with_zebra[:50])
    in_two = catalog.search("zebra guide", 20, FILES[:2])
    assert ranking(in_two) == ranking([h for h in with_zebra if h[0].path in FILES[:2]][:20])


def test_too_few_chunks_with_a_rarer_word_and_common_words_fill_the_list(env: Path) -> None:
    catalog = keyword_collection(rare_every=100)  # 10 chunks hold "zebra"
    every = catalog.search("zebra guide", 1000)
    found = catalog.search("zebra guide", 50)
    assert ranking(found) == ranking(every[:50])
    assert sum("zebra" in row.text for row, _ in found) == 10
    assert ranking(catalog.search("zebra guide", 50, FILES[:1])) == ranking(
        [h for h in every if h[0].path == FILES[0]][:50]
    )


def test_keyword_statistics_for_one_set_of_chunks_then_another(env: Path) -> None:
    catalog = keyword_collection(rare_every=11)
    zebra = [row for row, _ in catalog.search("zebra", 3)]
    guide = [row for row, _ in catalog.search("guide", 3) if "zebra" not in row.text]
    frequency, first = catalog.term_matches("zebra guides", [r.id for r in zebra])
    assert frequency == {"zebra": 91, "guides": 125}  # a word matches as a prefix: "guide"
    assert first == {r.id: {"zebra", "guides"} if "guide" in r.text else {"zebra"} for r in zebra}
    # The scratch index holds only the chunks asked about now, not those of the last call.
    _, second = catalog.term_matches("zebra guides", [r.id for r in guide])
    assert second == {r.id: {"guides"} for r in guide}


def test_as_many_ids_or_paths_as_a_statement_takes_on_an_older_sqlite(tmp_path: Path) -> None:
    # SQLite before 3.32 takes at most 999 variables a statement (MAX_VARIABLES); the
    # statement that turns whole files 'ok' binds the model name beside the ids.
    catalog, rows = pending_files(tmp_path, MAX_VARIABLES + 201)
    catalog._db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, MAX_VARIABLES)
    catalog.mark_embedded([r.id for r in rows], "nomic-embed-text")
    assert catalog.pending_count() == 0
    assert {f.status for f in catalog.files()} == {"ok"}
    # A search filtered to more files than that counts their chunks the same way.
    assert catalog.embedded_count([r.path for r in rows]) == len(rows)


def test_keyword_search_among_more_files_than_a_statement_takes(tmp_path: Path) -> None:
    # `ragged search --path GLOB` hands the keyword search every matching file; on SQLite
    # before 3.32 a statement takes at most 999 values. bm25 scores a chunk the same whichever
    # files are asked for, so the search runs by parts and keeps the best of their best.
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old, rows = pending_files(tmp_path / "old", MAX_VARIABLES + 201)
    new, _ = pending_files(tmp_path / "new", MAX_VARIABLES + 201)
    old._db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, MAX_VARIABLES)
    paths = [r.path for r in rows]
    found = ranking(old.search("note", 20, paths))
    assert found == ranking(new.search("note", 20, paths))
    assert len(found) == 20
