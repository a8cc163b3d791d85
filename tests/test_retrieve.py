"""Fusion, diversity, filters, the relevance floor and the offline fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragged.catalog import open_catalog
from ragged.config import load_settings
from ragged.ingest import ingest
from ragged.llm import connect
from ragged.retrieve import diversify, retrieve, rrf
from ragged.store import Hit, open_store
from tests.ollama_standin import OllamaStandIn


def h(id_: str, path: str = "/a", text: str | None = None) -> Hit:
    return Hit(
        id=id_,
        text=text or f"passage {id_} " * 3,
        score=0.0,
        path=path,
        rel_path=path,
        page=None,
        heading="",
        chunk_index=0,
    )


def test_rrf_rewards_agreement() -> None:
    fused = rrf([(1.0, [h("a"), h("b"), h("c")]), (1.0, [h("c"), h("a")])])
    assert [x.id for x, _ in fused] == ["a", "c", "b"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_rrf_weights() -> None:
    fused = rrf([(0.1, [h("a")]), (1.0, [h("b")])])
    assert [x.id for x, _ in fused] == ["b", "a"]


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


@pytest.fixture
def indexed(ollama: OllamaStandIn, docs: Path):  # type: ignore[no-untyped-def]
    # The stand-in's hashed word vectors score far lower than a trained model's.
    settings = load_settings({"min_score": 0.05})
    llm, store, catalog = connect(settings), open_store(settings), open_catalog(settings)
    assert ingest([docs], settings, llm, store, catalog).ok
    return settings, llm, store, catalog


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_every_mode_finds_the_obvious_file(indexed, mode: str) -> None:  # type: ignore[no-untyped-def]
    settings, llm, store, catalog = indexed
    result = retrieve(
        "Stone Town guesthouses ferry terminal", settings, llm, store, catalog, mode=mode
    )
    assert result.mode == mode and Path(result.hits[0].path).name == "travel.html"


def test_exact_rare_word_found_lexically(indexed) -> None:  # type: ignore[no-untyped-def]
    settings, llm, store, catalog = indexed
    result = retrieve("sync_interval", settings, llm, store, catalog, mode="lexical")
    assert Path(result.hits[0].path).name == "install.md"


def test_path_filter(indexed) -> None:  # type: ignore[no-untyped-def]
    settings, llm, store, catalog = indexed
    for mode in ("hybrid", "dense", "lexical"):
        result = retrieve(
            "ferry capybara quorum", settings, llm, store, catalog, mode=mode, path_glob="*.txt"
        )
        assert result.hits and {Path(x.path).name for x in result.hits} == {"notes.txt"}
    none = retrieve("ferry", settings, llm, store, catalog, path_glob="*.docx")
    assert none.hits == []


def test_relevance_floor(indexed) -> None:  # type: ignore[no-untyped-def]
    settings, llm, store, catalog = indexed
    found = retrieve("capybara rodent", settings, llm, store, catalog, mode="dense", min_score=0.1)
    assert Path(found.hits[0].path).name == "notes.txt"
    assert all(h.score >= 0.1 for h in found.hits)
    nothing = retrieve(
        "xylophone zeppelin", settings, llm, store, catalog, mode="dense", min_score=0.1
    )
    assert nothing.hits == [] and nothing.considered > 0


def test_falls_back_to_lexical_without_ollama(indexed, ollama: OllamaStandIn) -> None:  # type: ignore[no-untyped-def]
    settings, llm, store, catalog = indexed
    ollama.remove_model("nomic-embed-text:latest")
    result = retrieve("capybara rodent", settings, llm, store, catalog)
    assert result.mode == "lexical" and "nomic-embed-text" in (result.notice or "")
    assert Path(result.hits[0].path).name == "notes.txt"
    ollama.stop()
    result = retrieve("capybara rodent", settings, llm, store, catalog)
    assert result.mode == "lexical" and "isn't running" in (result.notice or "")
