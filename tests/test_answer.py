"""Prompt packing and citation checking."""

from __future__ import annotations

import pytest

from ragged.answer import SYSTEM_PROMPT, build_messages, parse_citations
from ragged.errors import ConfigError
from ragged.index import Hit


def hit(i: int, words: int = 100, page: int | None = None) -> Hit:
    return Hit(
        id=str(i),
        text=" ".join(["word"] * words),
        score=1.0 / (i + 1),
        path=f"/d/f{i}.md",
        page=page,
        heading="Intro" if page is None else "",
        chunk_index=0,
    )


def words(text: str) -> int:
    return len(text.split())


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("A [1]. B [2][3].", [1, 2, 3]),
        ("A [1, 4] and [4; 2]", [1, 4, 2]),
        ("no citations", []),
        ("[12] then [1]", [12, 1]),
        ("not a citation [a] or [ 1 ]", []),
    ],
)
def test_parse_citations(text: str, numbers: list[int]) -> None:
    assert parse_citations(text) == numbers


def test_sources_are_numbered_labelled_and_packed_best_first() -> None:
    hits = [hit(0), hit(1, page=3), hit(2)]
    messages, given = build_messages("why?", hits, budget=10_000, count_tokens=words)
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    user = messages[1]["content"]
    assert '<source id="1" file="/d/f0.md (Intro)">' in user
    assert '<source id="2" file="/d/f1.md (page 3)">' in user
    assert user.rstrip().endswith("Question: why?")
    assert [s.n for s in given] == [1, 2, 3]


def test_packing_stops_at_the_budget() -> None:
    fixed = words(SYSTEM_PROMPT) + words("Sources:\n\n\n\nQuestion: why?")
    # room for two 100-word passages (plus label and margin) but not three
    budget = fixed + int(2 * 106 / 0.9) + 5
    _, given = build_messages("why?", [hit(0), hit(1), hit(2)], budget=budget, count_tokens=words)
    assert len(given) == 2


def test_a_context_too_small_for_one_passage_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="too small for one passage"):
        build_messages("why?", [hit(0, words=5000)], budget=1000, count_tokens=words)
