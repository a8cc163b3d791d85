"""The relevance decision: calibrated per collection, refusing without a chat call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.cli import app
from ragged.config import load_settings
from ragged.index import open_index
from ragged.ingest import ingest
from ragged.llm import connect
from ragged.relevance import META_KEY, Calibration, floor, judge
from ragged.retrieve import retrieve
from tests.ollama_standin import OllamaStandIn


def run(runner: CliRunner, *args: str):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_floor_is_three_robust_sigmas_above_the_median() -> None:
    # the docstring's worked example: median 0.23, MAD 0.02
    assert floor([0.20, 0.22, 0.23, 0.25, 0.40]) == pytest.approx(0.23 + 3 * 0.02 * 1.4826)
    # one probe that happens to be on topic moves it little
    assert floor([0.20, 0.22, 0.23, 0.25, 0.95]) == pytest.approx(
        floor([0.2, 0.22, 0.23, 0.25, 0.4])
    )


@pytest.mark.parametrize(
    ("best", "share", "dense_floor", "relevant", "basis"),
    [
        (0.50, 0.0, 0.35, True, "meaning"),  # a paraphrase: no shared word, close meaning
        (0.30, 1.0, 0.35, False, "meaning"),  # every word matches, the meaning does not
        (0.30, 0.9, None, True, "keywords"),  # vectors that failed the self-test
        (0.30, 0.3, None, False, "keywords"),
    ],
)
def test_judge(
    best: float, share: float, dense_floor: float | None, relevant: bool, basis: str
) -> None:
    class Catalog:
        def term_matches(self, q: str, ids: list[str]):  # type: ignore[no-untyped-def]
            # two keywords of equal weight; `share` of them in the passage
            return {"a": 1, "b": 1}, {
                "x": {"a", "b"} if share > 0.5 else ({"a"} if share else set())
            }

        def chunk_count(self) -> int:
            return 10

    class Index:
        catalog = Catalog()

    class Hit:
        id = "x"
        score = best

    cal = Calibration("m", 10, dense_floor, 0.6)
    decision = judge("a b", Index(), cal, [Hit()], [Hit()])  # type: ignore[arg-type]
    assert (decision.relevant, decision.basis) == (relevant, basis)


def test_off_topic_question_is_refused_without_calling_the_model(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    run(runner, "ingest", str(docs), "--quiet")
    ollama.reset()
    result = run(runner, "ask", "How long should I boil an egg?", "--json")
    data = json.loads(result.stdout)
    assert data["answered"] is False and data["outcome"] == "not_relevant"
    assert data["answer"] is None and "Nothing relevant" in data["message"]
    assert "--mode lexical" in data["hint"] and "collection 'default'" in data["hint"]
    assert ollama.count("/api/chat") == 0
    plain = run(runner, "ask", "How long should I boil an egg?")
    assert "Nothing relevant" in plain.stdout and "--mode lexical" in plain.stderr
    # and an answerable question still reaches the model
    answered = json.loads(run(runner, "ask", "Do capybaras live near rivers?", "--json").stdout)
    assert answered["answered"] is True and ollama.count("/api/chat") == 1


def test_calibration_is_kept_and_redone_when_the_collection_grows(
    ollama: OllamaStandIn, docs: Path, tmp_path: Path
) -> None:
    settings = load_settings()
    llm, index = connect(settings), open_index(settings, create=True)
    assert ingest([docs], index, llm).ok
    retrieve("Do capybaras live near rivers?", index, llm)
    first = json.loads(index.catalog.meta(META_KEY) or "{}")
    assert first["model"] == "nomic-embed-text" and first["chunks"] == index.catalog.chunk_count()
    probes = ollama.embedded_inputs
    retrieve("Which port does the Foxtrot daemon listen on?", index, llm)
    assert ollama.embedded_inputs == probes + 1  # only the question: the calibration was kept
    more = tmp_path / "more"
    more.mkdir()
    for i in range(6):
        (more / f"note{i}.md").write_text(f"# Note {i}\n\nOtters hold hands while sleeping {i}.")
    assert ingest([more], index, llm).ok
    retrieve("Do otters hold hands?", index, llm)
    second = json.loads(index.catalog.meta(META_KEY) or "{}")
    assert second["chunks"] == index.catalog.chunk_count() > first["chunks"]
    index.close()


def test_lexical_mode_decides_on_keywords(ollama: OllamaStandIn, docs: Path) -> None:
    settings = load_settings()
    llm, index = connect(settings), open_index(settings, create=True)
    assert ingest([docs], index, llm).ok
    off = retrieve("xylophone quantum zeppelin capybara", index, llm, mode="lexical")
    assert off.hits and not off.relevant and off.relevance and off.relevance.basis == "keywords"
    on = retrieve("capybaras rivers lakes", index, llm, mode="lexical")
    assert on.relevant
    index.close()


def test_the_self_test_asks_the_words_each_vector_was_made_from(
    ollama: OllamaStandIn, docs: Path
) -> None:
    """A chunk's vector is made from its heading path and text; asking about the text alone
    dilutes the match for chunks under long titles (MiniLM failed the test on SciFact written
    as Markdown: docs/benchmarks.md)."""
    from ragged.index import embed_text

    settings = load_settings()
    llm, index = connect(settings), open_index(settings, create=True)
    assert ingest([docs], index, llm).ok
    ollama.reset()
    retrieve("Do capybaras live near rivers?", index, llm)
    asked = {
        text
        for r in ollama.requests
        if r.path == "/api/embed" and r.body
        for text in r.body["input"]
    }
    sampled = index.catalog.sample(24)
    assert any(row.heading for row in sampled)
    for row in sampled:
        words = " ".join(embed_text(row).split()[:12])
        assert f"search_query: {words}" in asked
    index.close()


def test_keyword_matches_of_candidates_are_those_of_the_whole_index(tmp_path: Path) -> None:
    """term_matches asks a scratch index of the candidates which keywords they hold (the
    collection-wide query took up to 300 ms a keyword at 100k chunks); the answer must be
    what the collection's own index says, stems, prefixes, headings and accents included."""
    import sqlite3

    from ragged.catalog import PREFIX_MIN, Catalog, ChunkRow, FileRecord

    texts = [
        ("Boiling eggs", "Boil the water, then the eggs for nine minutes."),
        ("Summer", "Swimmers boiled in the summer heat; the café was closed."),
        ("Go", "Good things go to those who wait; going is half."),
        ("Cafe", "Le café, crème brûlée and naïve résumés."),
        ("", "Nothing of interest: a list of eggs, water and time."),
    ]
    catalog = Catalog(tmp_path / "catalog.sqlite")
    rows = []
    for i, (heading, text) in enumerate(texts):
        record = FileRecord(f"/d/f{i}.md", 1, i, f"h{i}", None, 1, "ok", "m", 0.0)
        row = ChunkRow(f"c{i}", record.path, 0, text, None, heading, 12, f"h{i}")
        catalog.replace_file(record, [row], embedded=True)
        rows.append(row)
    # "boiling" and "swimming" reach "boiled" and "swimmers" only through Porter stems.
    question = "How long to keep boiling eggs? cafe resume swimming go good water"
    ids = [r.id for r in rows[:4]]  # one chunk left out: never reported
    frequency, matched = catalog.term_matches(question, ids)

    db = sqlite3.connect(tmp_path / "catalog.sqlite")
    rowid = {r[1]: r[0] for r in db.execute("SELECT rowid, id FROM chunks")}
    for term, df in frequency.items():
        phrase = f'"{term}"*' if len(term) >= PREFIX_MIN else f'"{term}"'
        hits = {
            r[0]
            for r in db.execute("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?", (phrase,))
        }
        assert df == len(hits), term
        for id_ in ids:
            assert (term in matched[id_]) == (rowid[id_] in hits), (term, id_)
    assert set(matched) == set(ids)
    assert {"boiling", "eggs"} <= matched["c0"]
    assert {"boiling", "swimming"} <= matched["c1"]
    assert "cafe" in matched["c3"] and "resume" in matched["c3"]
    catalog.close()
