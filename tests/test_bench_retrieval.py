"""bench/retrieval.py on a three-document BEIR set: the benchmark's own code runs in CI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from bench.retrieval import (
    MODES,
    RRF_ROW,
    bench_settings,
    doc_file,
    doc_id_of,
    evaluate,
    load_beir,
    main,
    rrf,
    run_benchmark,
)
from ragged.llm import connect
from tests.ollama_standin import OllamaStandIn

CORPUS = [
    {
        "_id": "d1",
        "title": "Capybara diet",
        "text": "Capybaras graze on grasses and aquatic plants.",
    },
    {"_id": "d2", "title": "Ferry timetable", "text": "The ferry to Stone Town leaves at dawn."},
    {"_id": "d/3", "title": "", "text": "Quorum sensing lets bacteria coordinate behaviour."},
]
QUERIES = [
    {"_id": "q1", "text": "what do capybaras eat", "metadata": {}},
    {"_id": "q2", "text": "how do bacteria coordinate with quorum sensing", "metadata": {}},
    {"_id": "q9", "text": "a query without judgements in this split", "metadata": {}},
]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    with gzip.open(folder / "corpus.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in CORPUS)
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    (folder / "qrels-test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td/3\t1\n")
    return folder


def test_load_beir(tiny: Path) -> None:
    data = load_beir(tiny)
    assert data.corpus["d1"] == ("Capybara diet", CORPUS[0]["text"])
    assert set(data.queries) == {"q1", "q2"}  # only judged queries are evaluated
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d/3": 1}}


def test_doc_ids_survive_the_file_name() -> None:
    for doc_id in ("4983", "d/3", "a b?c"):
        assert doc_id_of(f"sub/{doc_file(doc_id)}") == doc_id


def test_evaluate_counts_every_judged_query() -> None:
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    scores = evaluate(qrels, {"q1": ["d1", "d9"]})  # q2 found nothing: it scores 0
    assert scores["ndcg_cut_10"] == pytest.approx(0.5)
    assert scores["recall_100"] == pytest.approx(0.5)


def test_rrf_rewards_agreement() -> None:
    fused = rrf([{"q": ["a", "b", "c"]}, {"q": ["c", "a"]}])
    assert fused == {"q": ["a", "c", "b"]}


def test_run_benchmark_scores_every_mode(tiny: Path, tmp_path: Path) -> None:
    data = load_beir(tiny)
    with OllamaStandIn(models=("nomic-embed-text:latest",)) as server:
        settings = bench_settings(tmp_path / "home", server.host, None)
        report = run_benchmark(data, settings, connect(settings), tmp_path / "docs")
    assert report.documents == 3 and report.queries == 2 and report.chunks == 3
    rows = {r.mode: r for r in report.results}
    assert list(rows) == [*MODES, RRF_ROW]
    assert rows["lexical"].ndcg_10 == pytest.approx(1.0)
    assert rows["hybrid"].ndcg_10 == pytest.approx(1.0)
    assert all(0 <= r.ndcg_10 <= 1 and r.recall_100 == 1.0 for r in report.results)
    assert all(r.fell_back == 0 for r in report.results)


def test_main_prints_the_table_and_reuses_the_index(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data", str(tiny), "--standin", "--cache", str(tmp_path / "cache")]
    first = main(args)
    out = capsys.readouterr().out
    assert "nDCG@10" in out and "Recall@100" in out
    assert all(mode in out for mode in MODES)
    assert first.embedded == 3
    assert main(args).embedded == 0  # the cached index is complete: nothing to embed


def test_titles_as_headings_and_reranking(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data", str(tiny), "--standin", "--cache", str(tmp_path / "cache")]
    report = main([*args, "--titles", "heading", "--rerank", "2", "--modes", "lexical,hybrid"])
    written = sorted(p.name for p in (tmp_path / "cache").glob("*/docs/*"))
    assert written == ["d%2F3.md", "d1.md", "d2.md"]
    [first] = (tmp_path / "cache").glob("*/docs/d1.md")
    assert first.read_text().startswith("# Capybara diet\n\nCapybaras graze")
    rows = {r.mode: r for r in report.results}
    assert rows["lexical"].ndcg_10 == pytest.approx(1.0)  # ids survive the .md names
    # At most the best two passages of each query the collection looks relevant to are judged.
    hybrid = rows["hybrid"]
    assert 0 < hybrid.judged <= 4 and hybrid.judge_tokens > 20 * hybrid.judged
    assert "rerank (hybrid):" in capsys.readouterr().err
