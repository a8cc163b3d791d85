"""The conversation core: a follow-up is condensed, retrieved with, and answered with history."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ragged.config import Settings
from ragged.conversation import (
    CONDENSE_PROMPT,
    Exchange,
    clean_rewrite,
    fit_history,
    latest_conversation,
    load_conversation,
    new_conversation,
    plain_answer,
    reply,
    save_conversation,
)
from ragged.index import open_index
from ragged.ingest import ingest
from ragged.llm import connect
from tests.ollama_standin import OllamaStandIn

LIMITS = """# Rate limiting

Rate limiting caps each client at 100 requests per minute.

## Turning it off

To disable rate limiting, set `limits.enabled = false` in gateway.toml.
"""
TELEMETRY = """# Telemetry

To disable telemetry, set `telemetry = false`; nothing is sent after that.
"""


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture
def faq(tmp_path: Path) -> Path:
    """Two files that both say how to disable something: only context tells them apart."""
    root = tmp_path / "faq"
    root.mkdir()
    (root / "limits.md").write_text(LIMITS)
    (root / "telemetry.md").write_text(TELEMETRY)
    return root


def ingested(settings: Settings, folder: Path) -> None:
    with open_index(settings, create=True) as index:
        assert ingest([folder], index, connect(settings)).ok


def chats(ollama: OllamaStandIn) -> list[list[dict[str, str]]]:
    return [r.body["messages"] for r in ollama.requests if r.path == "/api/chat" and r.body]


def test_fit_history_keeps_the_newest_that_fit() -> None:
    history = [Exchange("a " * 400, "b " * 500), Exchange("c " * 200, "d " * 300)]
    history.append(Exchange("e " * 300, "f " * 300))
    # 900 + 8, 500 + 8 and 600 + 8 tokens: the last two fit 1200, all three do not.
    assert fit_history(history, 1200, words) == history[1:]
    assert fit_history(history, 600, words) == []
    assert fit_history(history, 10_000, words) == history


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("How do I disable rate limiting?", "How do I disable rate limiting?"),
        ('"How do I disable rate limiting?"\n', "How do I disable rate limiting?"),
        ("Standalone question: How do I disable X?", "How do I disable X?"),
        ("<think>the user means X</think>\nHow do I disable X?", "How do I disable X?"),
        ("", "and it?"),
        ("word " * 500, "and it?"),
    ],
)
def test_clean_rewrite(text: str, expected: str) -> None:
    assert clean_rewrite(text, "and it?") == expected


def test_earlier_answers_lose_their_citation_marks() -> None:
    assert plain_answer("It caps requests [1]. Off by default [2][3] and [1, 4].") == (
        "It caps requests. Off by default and."
    )


def test_a_follow_up_is_condensed_and_the_rewrite_is_retrieved(
    ollama: OllamaStandIn, settings: Settings, faq: Path
) -> None:
    ingested(settings, faq)
    llm = connect(settings)
    with open_index(settings) as index:
        first = reply("What is rate limiting?", [], index, llm)
        assert not first.condensed and "100 requests" in first.answer.text  # type: ignore[union-attr]
        assert "condense_s" not in first.timings
        history = [Exchange(first.question, first.answer.text)]  # type: ignore[union-attr]
        shown: list[str] = []
        follow = reply("And how do I disable it?", history, index, llm, on_standalone=shown.append)
    assert follow.standalone == "And how do I disable rate limiting?" == shown[0]
    assert follow.retrieval.question == follow.standalone
    assert Path(follow.retrieval.hits[0].path).name == "limits.md"
    assert follow.answer is not None and "limits.enabled = false" in follow.answer.text
    assert [Path(s.hit.path).name for s in follow.answer.cited] == ["limits.md"]
    assert follow.in_documents and follow.history_used == 1
    # The condense request showed the model the conversation, and the answer got it too.
    condense, answer = chats(ollama)[-2:]
    assert condense[0]["content"] == CONDENSE_PROMPT
    assert "User: What is rate limiting?" in condense[1]["content"]
    assert [m["role"] for m in answer] == ["system", "user", "assistant", "user"]
    assert answer[1]["content"] == "What is rate limiting?"
    assert "[1]" not in answer[2]["content"]  # the old turn's numbers are not this turn's


def test_without_the_rewrite_the_follow_up_finds_the_wrong_file(
    ollama: OllamaStandIn, settings: Settings, faq: Path
) -> None:
    """Why condensing matters: the follow-up alone is about "disable", which both files say."""
    ingested(settings, faq)
    with open_index(settings) as index:
        alone = reply("And how do I disable it?", [], index, connect(settings))
    assert alone.answer is not None and "limits.enabled" not in alone.answer.text


def test_history_is_trimmed_to_fit_the_context(
    ollama: OllamaStandIn, settings: Settings, faq: Path
) -> None:
    ingested(settings, faq)
    small = dataclasses.replace(settings, context_window=2048, answer_tokens=256)
    long_turns = [Exchange(f"old question {i}?", "filler words " * 150) for i in range(8)]
    long_turns.append(Exchange("What is rate limiting?", "It caps each client."))
    with open_index(small) as index:
        result = reply("And how do I disable it?", long_turns, index, connect(small))
    assert result.standalone == "And how do I disable rate limiting?"
    condense, answer = chats(ollama)[-2:]
    # Both prompts keep the newest turn and drop the oldest ones that would not fit.
    assert "What is rate limiting?" in condense[1]["content"]
    assert "old question 0?" not in condense[1]["content"]
    kept = [m["content"] for m in answer if m["role"] == "user"][:-1]
    assert kept and kept[-1] == "What is rate limiting?" and "old question 0?" not in kept
    assert 0 < result.history_used < len(long_turns)
    assert ollama.prompt_truncations == 0  # Ollama never had to cut a prompt itself


def test_ollama_down_gives_the_passages_and_no_answer(
    ollama: OllamaStandIn, settings: Settings, faq: Path, ollama_down: str
) -> None:
    ingested(settings, faq)
    down = dataclasses.replace(settings, ollama_host=ollama_down)
    with open_index(down) as index:
        result = reply(
            "And how do I disable it?",
            [Exchange("What is rate limiting?", "")],
            index,
            connect(down),
        )
    assert result.answer is None and result.retrieval.ollama_down
    assert result.standalone == result.question  # nothing could condense it
    assert result.retrieval.hits and not result.in_documents


def test_conversations_are_saved_and_the_latest_is_found(
    ollama: OllamaStandIn, settings: Settings, faq: Path
) -> None:
    ingested(settings, faq)
    assert latest_conversation(settings.home) is None
    first = new_conversation("default")
    with open_index(settings) as index:
        first.record(reply("What is rate limiting?", [], index, connect(settings)), "default")
        path = save_conversation(first, settings.home)
        second = new_conversation("default")
        second.record(reply("What about telemetry?", [], index, connect(settings)), "default")
        save_conversation(second, settings.home)
    assert path.parent == settings.home / "conversations"
    assert latest_conversation(settings.home) == second
    again = load_conversation(path)
    assert again == first
    assert again.history == [Exchange("What is rate limiting?", first.turns[0].answer)]
    cited = [s for s in again.turns[0].sources if s.cited]
    assert (
        cited
        and "100 requests" in cited[0].text
        and cited[0].label.endswith("limits.md (Rate limiting)")
    )
    assert json.loads(path.read_text())["id"] == first.id
    assert not list(path.parent.glob("*.tmp*"))
