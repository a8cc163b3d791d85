"""The opt-in rerank stage: the chat model judges passages yes/no by logprobs, through the real
CLI and the Ollama stand-in (whose judgement is the share of the question's words a passage
holds; see tests/ollama_standin.py `judge_yes_no`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.cli import app
from ragged.rerank import relevance
from tests.ollama_standin import OllamaStandIn

QUESTION = "Do birds like the kestrel nest on cliffs?"
# kestrel.txt wins on keywords (a rare word, many times); cliffs.txt holds more of the
# question's words (birds, nest, cliffs), so the stand-in's judge prefers it.
BIRDS = {
    "kestrel.txt": "Kestrel notes: the kestrel hovers, a kestrel hunts voles, and every kestrel "
    "is a small falcon. Kestrel, kestrel, kestrel.",
    "cliffs.txt": "Which birds nest on sea cliffs? Puffins and gulls raise their young on "
    "ledges high above the waves.",
    "f1.txt": "Garden birds visit the feeder; birds also bathe in shallow water near cliffs.",
    "f2.txt": "Most birds build a nest of twigs and grass in spring.",
    "f3.txt": "A nest on chalk cliffs is safe from foxes.",
    "f4.txt": "Migrating birds fly south in autumn.",
    "f5.txt": "Birds sing at dawn to mark their territory.",
    "f6.txt": "Young birds learn songs from their parents.",
    "g1.txt": "The river floods the meadow every winter.",
    "g2.txt": "Bread rises faster in a warm kitchen.",
}


def run(runner: CliRunner, *args: str, ok: bool = True):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args), catch_exceptions=not ok)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def judgements(ollama: OllamaStandIn) -> list[dict]:  # type: ignore[type-arg]
    """Chat requests that asked for logprobs: the reranker's yes/no judgements."""
    return [
        r.body
        for r in ollama.requests
        if r.path == "/api/chat" and r.body and r.body.get("logprobs")
    ]


def chats(ollama: OllamaStandIn) -> list[dict]:  # type: ignore[type-arg]
    return [r.body for r in ollama.requests if r.path == "/api/chat" and r.body]


@pytest.fixture
def birds(tmp_path: Path, runner: CliRunner, ollama: OllamaStandIn) -> Path:
    folder = tmp_path / "birds"
    folder.mkdir()
    for name, text in BIRDS.items():
        (folder / name).write_text(text + "\n", encoding="utf-8")
    run(runner, "ingest", str(folder), "--quiet")
    return folder


def names(data: dict) -> list[str]:  # type: ignore[type-arg]
    return [Path(h["path"]).name for h in data["hits"]]


def test_relevance_is_yes_against_no() -> None:
    assert relevance({"yes": -0.2, "no": -1.8}) == pytest.approx(1 / (1 + math.exp(-1.6)))
    assert relevance({"yes": -math.inf, "no": -math.inf}) == 0.5  # no opinion we can read
    assert relevance({"yes": -3.0, "no": -math.inf}) == 1.0
    assert relevance({"yes": -math.inf, "no": -0.1}) == 0.0


def test_search_reranks_only_when_asked(
    runner: CliRunner, ollama: OllamaStandIn, birds: Path
) -> None:
    plain = json.loads(run(runner, "search", QUESTION, "-k", "4", "--json").stdout)
    assert names(plain)[0] == "kestrel.txt" and plain["reranked"] == 0
    assert chats(ollama) == []  # search alone never calls the chat model

    data = json.loads(run(runner, "search", QUESTION, "-k", "4", "--rerank", "4", "--json").stdout)
    assert names(data)[0] == "cliffs.txt" and data["reranked"] == 4
    scores = [h["score"] for h in data["hits"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    sent = judgements(ollama)
    assert len(sent) == 4 and sent[0]["model"] == "llama3.2:3b"
    assert all(b["options"]["num_predict"] == 1 and b["stream"] is False for b in sent)
    # Each request judges one fenced passage, the question first.
    user = sent[0]["messages"][1]["content"]
    assert user.startswith(f"Question: {QUESTION}") and user.count('<source id="1"') == 1


def test_rerank_can_promote_a_passage_from_beyond_k(
    runner: CliRunner, ollama: OllamaStandIn, birds: Path
) -> None:
    data = json.loads(run(runner, "search", QUESTION, "-k", "1", "--rerank", "4", "--json").stdout)
    assert names(data) == ["cliffs.txt"] and len(judgements(ollama)) == 4


def test_rerank_setting_comes_from_the_environment(
    runner: CliRunner, ollama: OllamaStandIn, birds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGGED_RERANK", "2")
    data = json.loads(run(runner, "search", QUESTION, "--json").stdout)
    assert data["reranked"] == 2 and len(judgements(ollama)) == 2
    bad = run(runner, "search", QUESTION, "--rerank", "-1", ok=False)
    assert bad.exit_code == 2
    monkeypatch.setenv("RAGGED_RERANK", "-3")
    bad = run(runner, "search", QUESTION, ok=False)
    assert (
        bad.exit_code != 0
        and "rerank must be from 0 to 200 passages (0: off), not -3 (from env RAGGED_RERANK)"
        in bad.stderr
    )


def test_ask_reranks_before_answering_with_the_same_context(
    runner: CliRunner, ollama: OllamaStandIn, birds: Path
) -> None:
    data = json.loads(run(runner, "ask", QUESTION, "-k", "3", "--rerank", "5", "--json").stdout)
    assert data["answered"] is True and data["reranked"] == 5
    assert Path(data["sources"][0]["path"]).name == "cliffs.txt"
    assert data["timings"]["rerank_s"] > 0
    sent = chats(ollama)
    assert len(sent) == 6 and all(b.get("logprobs") for b in sent[:5])
    assert not sent[-1].get("logprobs")  # the answer itself comes last
    # One num_ctx for all: a different one would make Ollama reload the model in between.
    assert {b["options"]["num_ctx"] for b in sent} == {data["num_ctx"]}


def test_an_off_topic_question_calls_no_model_even_with_rerank(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    run(runner, "ingest", str(docs), "--quiet")
    result = run(runner, "ask", "How long should I boil an egg?", "--rerank", "5", "--json")
    data = json.loads(result.stdout)
    assert data["outcome"] == "not_relevant" and data["reranked"] == 0
    assert chats(ollama) == []
    assert "reranking skipped" in data["notice"]


def test_an_ollama_without_logprobs_keeps_the_order_and_says_why(
    runner: CliRunner, ollama: OllamaStandIn, birds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ollama._handle

    def no_logprobs(method: str, path: str, raw: bytes):  # type: ignore[no-untyped-def]
        reply = original(method, path, raw)
        if isinstance(reply.body, dict):
            reply.body.pop("logprobs", None)  # what Ollama before 0.12.11 sends
        return reply

    monkeypatch.setattr(ollama, "_handle", no_logprobs)
    result = run(runner, "search", QUESTION, "-k", "4", "--rerank", "4")
    assert result.stdout.index("kestrel.txt") < result.stdout.index("cliffs.txt")
    assert "reranking skipped" in result.stderr and "0.12.11" in result.stderr


def test_a_thinking_model_judges_with_thinking_off(
    runner: CliRunner, ollama: OllamaStandIn, birds: Path
) -> None:
    ollama.add_model("qwen3:8b")
    data = json.loads(
        run(runner, "search", QUESTION, "--rerank", "3", "-m", "qwen3:8b", "--json").stdout
    )
    assert names(data)[0] == "cliffs.txt"
    sent = judgements(ollama)
    assert len(sent) == 3 and all(b["think"] is False and b["model"] == "qwen3:8b" for b in sent)


def test_a_model_that_always_thinks_is_not_asked_to_judge(
    runner: CliRunner, ollama: OllamaStandIn, birds: Path
) -> None:
    ollama.add_model("gpt-oss:20b")
    result = run(runner, "ask", QUESTION, "--rerank", "3", "-m", "gpt-oss:20b", "--json")
    data = json.loads(result.stdout)
    assert data["answered"] is True and data["reranked"] == 0
    assert "always thinks" in data["notice"]
    assert judgements(ollama) == [] and len(chats(ollama)) == 1
