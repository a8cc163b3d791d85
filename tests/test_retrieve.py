"""Fusion, diversity, filters, the relevance floor and the offline fallback."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ragged.catalog import catalog_path
from ragged.config import load_settings
from ragged.index import Hit, open_index
from ragged.ingest import ingest
from ragged.llm import connect
from ragged.retrieve import diversify, fuse, retrieve, rrf
from tests.ollama_standin import OllamaStandIn

# Every test runs against the embedded store and against a real `chroma run` server.
pytestmark = pytest.mark.usefixtures("chroma_mode")


def h(id_: str, path: str = "/a", text: str | None = None, score: float = 0.0) -> Hit:
    return Hit(
        id=id_,
        text=text or f"passage {id_} " * 3,
        score=score,
        path=path,
        page=None,
        heading="",
        chunk_index=0,
    )


def test_fuse_averages_cosine_and_bm25_scaled_by_the_best() -> None:
    dense = [h("a", score=0.62), h("b", score=0.40)]
    lexical = [h("c", score=12.0), h("a", score=9.0)]
    fused = {x.id: s for x, s in fuse(dense, lexical, 1.0, 1.0)}
    assert fused["a"] == pytest.approx((0.62 + 9.0 / 12.0) / 2)
    # Missing from a list: that list's lowest score (b: 9/12, c: 0.40).
    assert fused["b"] == pytest.approx((0.40 + 0.75) / 2)
    assert fused["c"] == pytest.approx((0.40 + 1.0) / 2)


def test_fuse_a_passage_without_any_of_the_words_scores_zero_for_them() -> None:
    # The keyword search returned fewer than asked: it found every passage with the words,
    # so the one it did not find has none of them, not "the lowest score found".
    dense = [h("a", score=0.45), h("b", score=0.40)]
    lexical = [h("b", score=5.0)]
    fused = {x.id: s for x, s in fuse(dense, lexical, 1.5, 1.0, every_match=True)}
    assert fused["a"] == pytest.approx(1.5 * 0.45 / 2.5)
    assert fused["b"] == pytest.approx((1.5 * 0.40 + 1.0) / 2.5)
    # Cut at the pool, a missing passage may hold the words with a lower score: the floor.
    assert [x.id for x, _ in fuse(dense, lexical, 1.5, 1.0)] == ["a", "b"]


def test_fuse_unsure_dense_cannot_overturn_a_clear_lexical_winner() -> None:
    # Low, close cosines (a weak model) against a clear BM25 gap: rank fusion would let the
    # dense order decide as much as the lexical one; score fusion keeps the lexical winner.
    dense = [h("b", score=0.31), h("a", score=0.29)]
    lexical = [h("a", score=12.0), h("b", score=3.0)]
    assert [x.id for x, _ in fuse(dense, lexical, 1.0, 1.0)] == ["a", "b"]


def test_rrf_rewards_agreement_and_weights() -> None:
    def hit(i: str) -> Hit:
        return Hit(id=i, text=i, score=0.0, path="/" + i, page=None, heading="", chunk_index=0)

    fused = rrf([hit("a"), hit("b"), hit("c")], [hit("c"), hit("a")], 1.0, 1.0)
    assert [x.id for x, _ in fused] == ["a", "c", "b"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert rrf([hit("a")], [hit("b")], 0.1, 1.0)[0][0].id == "b"


@pytest.mark.parametrize("fusion", ["score", "rrf"])
def test_hybrid_with_either_fusion_finds_the_obvious_file(indexed, fusion: str) -> None:  # type: ignore[no-untyped-def]
    index, llm = indexed
    index.settings = dataclasses.replace(index.settings, fusion=fusion)
    result = retrieve("Stone Town guesthouses ferry terminal", index, llm)
    assert Path(result.hits[0].path).name == "travel.html"


def test_fuse_weights() -> None:
    dense = [h("a", score=0.9), h("b", score=0.1)]
    lexical = [h("b", score=10.0), h("a", score=1.0)]
    assert fuse(dense, lexical, 1.0, 1.0)[0][0].id == "b"
    assert fuse(dense, lexical, 3.0, 1.0)[0][0].id == "a"
    assert fuse(dense, lexical, 0.0, 0.0)[0][0].id == "b"  # no weights: equal ones
    assert [x.id for x, _ in fuse([], lexical, 1.0, 1.0)] == ["b", "a"]


def test_diversify_caps_per_source_and_drops_near_duplicates() -> None:
    same = "the quick brown fox jumps over the lazy dog near the river bank today"
    hits = [
        h("1", "/a"),
        h("2", "/a"),
        h("3", "/a"),
        h("4", "/b", same),
        h("5", "/c", same + " again"),
        h("6", "/d"),
    ]
    kept = diversify(hits, k=10, max_per_source=2)
    assert [x.id for x in kept] == ["1", "2", "4", "6"]


def test_diversify_keeps_distinct_passages_that_share_phrases() -> None:
    common = "randomized controlled trial of vitamin d supplementation in older adults "
    hits = [
        h("1", "/a", common + "showed fewer falls over two years of follow up"),
        h("2", "/b", common + "found no change in bone mineral density at the hip"),
    ]
    assert [x.id for x in diversify(hits, k=10, max_per_source=1)] == ["1", "2"]


@pytest.fixture
def indexed(ollama: OllamaStandIn, docs: Path):  # type: ignore[no-untyped-def]
    # The stand-in's hashed word vectors score far lower than a trained model's.
    settings = load_settings({"min_score": 0.05})
    llm, index = connect(settings), open_index(settings, create=True)
    assert ingest([docs], index, llm).ok
    return index, llm


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_every_mode_finds_the_obvious_file(indexed, mode: str) -> None:  # type: ignore[no-untyped-def]
    index, llm = indexed
    result = retrieve("Stone Town guesthouses ferry terminal", index, llm, mode=mode)
    assert result.mode == mode and Path(result.hits[0].path).name == "travel.html"


def test_exact_rare_word_found_lexically(indexed) -> None:  # type: ignore[no-untyped-def]
    index, llm = indexed
    result = retrieve("sync_interval", index, llm, mode="lexical")
    assert Path(result.hits[0].path).name == "install.md"


def test_path_filter(indexed) -> None:  # type: ignore[no-untyped-def]
    index, llm = indexed
    for mode in ("hybrid", "dense", "lexical"):
        result = retrieve("ferry capybara quorum", index, llm, mode=mode, path_glob="*.txt")
        assert result.hits and {Path(x.path).name for x in result.hits} == {"notes.txt"}
    none = retrieve("ferry", index, llm, path_glob="*.docx")
    assert none.hits == []


def test_relevance_floor(indexed) -> None:  # type: ignore[no-untyped-def]
    index, llm = indexed
    found = retrieve("capybara rodent", index, llm, mode="dense", min_score=0.1)
    assert Path(found.hits[0].path).name == "notes.txt"
    assert all(h.score >= 0.1 for h in found.hits)
    nothing = retrieve("xylophone zeppelin", index, llm, mode="dense", min_score=0.1)
    assert nothing.hits == [] and nothing.considered > 0


def test_relevance_floor_in_hybrid(indexed) -> None:  # type: ignore[no-untyped-def]
    index, llm = indexed
    # No word matches and every vector is under the floor: nothing, so `ask` does not guess.
    nothing = retrieve("xylophone zeppelin", index, llm, min_score=0.5)
    assert nothing.mode == "hybrid" and nothing.hits == [] and nothing.considered > 0
    found = retrieve("capybara rodent", index, llm, min_score=0.5)
    assert Path(found.hits[0].path).name == "notes.txt"


def test_hybrid_is_the_default_and_scores_are_fused(indexed) -> None:  # type: ignore[no-untyped-def]
    index, llm = indexed
    result = retrieve("Stone Town guesthouses ferry terminal", index, llm)
    assert result.mode == "hybrid" and result.notice is None
    scores = [x.score for x in result.hits]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1


def test_catalog_rebuilt_from_the_store(indexed, docs: Path) -> None:  # type: ignore[no-untyped-def]
    index, llm = indexed
    catalog = index.catalog
    before = {c.id: c for f in catalog.files() for c in catalog.chunks_of(f.path)}
    files_before = {f.path: (f.content_hash, f.chunks, f.pages) for f in catalog.files()}
    index.close()
    for suffix in ("", "-wal", "-shm"):  # the catalog is lost
        Path(f"{catalog_path(index.settings)}{suffix}").unlink(missing_ok=True)

    index = open_index(index.settings)
    assert index.rebuilt == len(before)
    catalog = index.catalog
    after = {c.id: c for f in catalog.files() for c in catalog.chunks_of(f.path)}
    assert after == before
    assert {f.path: (f.content_hash, f.chunks, f.pages) for f in catalog.files()} == files_before
    assert catalog.embedded_count() == len(before) and catalog.pending_count() == 0
    lexical = retrieve("sync_interval", index, llm, mode="lexical")
    assert Path(lexical.hits[0].path).name == "install.md"

    # The next ingest finds the same bytes and embeds nothing again.
    report = ingest([docs], index, llm)
    assert report.ok and report.embedded == 0 and report.added == report.updated == 0


def test_rebuild_replaces_whatever_the_catalog_held(indexed) -> None:  # type: ignore[no-untyped-def]
    index, llm = indexed
    count = index.catalog.chunk_count()
    # A damaged BM25 index: the rebuild must not trip over it.
    index.catalog._db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('delete-all')")
    assert index.rebuild_from_store() == count
    index.catalog._db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    result = retrieve("capybara rodent", index, llm, mode="lexical")
    assert Path(result.hits[0].path).name == "notes.txt"


def test_falls_back_to_lexical_without_ollama(indexed, ollama: OllamaStandIn) -> None:  # type: ignore[no-untyped-def]
    index, llm = indexed
    ollama.remove_model("nomic-embed-text:latest")
    result = retrieve("capybara rodent", index, llm)
    assert result.mode == "lexical" and "nomic-embed-text" in (result.notice or "")
    assert Path(result.hits[0].path).name == "notes.txt"
    ollama.stop()
    result = retrieve("capybara rodent", index, llm)
    assert result.mode == "lexical" and "isn't running" in (result.notice or "")


@pytest.mark.parametrize("path_glob", [None, "*.md"])
def test_a_word_in_a_heading_outweighs_the_same_word_in_the_text(
    ollama: OllamaStandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path_glob: str | None,
) -> None:
    """A chunk's heading path starts with its document's title, so a keyword there says more
    about the chunk than the same keyword in passing (SciFact: docs/benchmarks.md)."""
    import json

    from typer.testing import CliRunner

    from ragged import catalog
    from ragged.cli import app

    folder = tmp_path / "birds"
    folder.mkdir()
    (folder / "titled.md").write_text(
        "# Kestrel\n\nA small falcon that hovers over open fields while it hunts voles.\n"
    )
    (folder / "mentions.md").write_text(
        "# Birds of prey\n\nA kestrel, then a second kestrel, then a third kestrel flew past.\n"
    )
    (folder / "other.md").write_text("# Gardens\n\nRoses need sun and well-drained soil.\n")
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(folder), "--quiet"]).exit_code == 0
    args = ["search", "kestrel", "--mode", "lexical", "--json"]
    args += ["--path", path_glob] if path_glob else []

    def first() -> str:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        return Path(json.loads(result.stdout)["hits"][0]["path"]).name

    assert first() == "titled.md"
    # Unweighted, three mentions in the text beat one in the title: the weight decides.
    monkeypatch.setattr(catalog, "BM25_WEIGHTS", (1.0, 1.0))
    assert first() == "mentions.md"


@pytest.mark.parametrize("new_version", ["embedded", "pending"])
def test_a_file_changed_between_the_two_searches_shows_one_version(
    ollama: OllamaStandIn, tmp_path: Path, new_version: str
) -> None:
    """Reproduced with `serve` during an ingest: 2-9 of ~1,700 hybrid searches returned the
    old and the new text of one file. The keyword search read the catalog before the ingest
    committed the new version, the vector search after it."""
    from ragged.index import Index
    from tests.chroma_server import free_port

    ollama_gone = f"http://127.0.0.1:{free_port()}"
    folder = tmp_path / "quokkas"
    folder.mkdir()
    note = folder / "note.md"
    note.write_text("# Quokkas\n\nGeneration zero: quokkas smile on Rottnest Island.\n")
    settings = load_settings()
    llm = connect(settings)
    with open_index(settings, create=True) as index:
        assert ingest([folder], index, llm).ok

    class ChangedMeanwhile(Index):
        def lexical(self, question, k, paths=None):  # type: ignore[no-untyped-def]
            found = super().lexical(question, k, paths)
            note.write_text("# Quokkas\n\nGeneration one: quokkas smile on Rottnest Island.\n")
            # Another process's ingest, landing now; "pending": its text is committed, its
            # vectors not yet (QA: the file was then in neither ranking, and vanished).
            writer_llm = llm
            if new_version == "pending":
                writer_llm = connect(dataclasses.replace(settings, ollama_host=ollama_gone))
            with open_index(settings) as writer:
                ingest([folder], writer, writer_llm)
            return found

    with open_index(settings) as opened:
        index = ChangedMeanwhile(settings, opened.catalog, opened.store)
        result = retrieve("quokkas smile on Rottnest Island", index, llm, mode="hybrid", k=5)
    texts = [hit.text for hit in result.hits if hit.path == str(note)]
    assert texts == ["Generation one: quokkas smile on Rottnest Island."], texts


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_a_search_opened_before_a_reset_and_asked_after_it_finds_the_collection_gone(
    ollama: OllamaStandIn, tmp_path: Path, mode: str
) -> None:
    """QA: CLI searches started just before a `reset` said "the vector store returned 0 of
    the 10 chunks ...: its vectors are lost or damaged" and showed the deleted passages by
    keyword (or failed): they had opened the collection before the reset marked it."""
    from ragged.index import CollectionMissing

    folder = tmp_path / "quokkas"
    folder.mkdir()
    (folder / "note.md").write_text("# Quokkas\n\nQuokkas smile on Rottnest Island.\n")
    settings = load_settings()
    llm = connect(settings)
    with open_index(settings, create=True) as index:
        assert ingest([folder], index, llm).ok
    with open_index(settings) as reader:
        with open_index(settings) as resetting:
            resetting.drop()
        with pytest.raises(CollectionMissing, match="collection 'default' does not exist"):
            retrieve("quokkas smile", reader, llm, mode=mode, k=5)
