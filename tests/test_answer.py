"""Prompt packing and citation checking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragged.answer import SYSTEM_PROMPT, build_messages, parse_citations
from ragged.errors import ConfigError
from ragged.index import Hit
from tests.ollama_standin import OllamaStandIn

RAGGED = [sys.executable, "-m", "ragged"]


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


def counted(i: int, tokens: int, words: int = 100) -> Hit:
    """A hit whose token count the catalog knows, as every hit of an ingested chunk has."""
    from dataclasses import replace

    return replace(hit(i, words=words), tokens=tokens)


def test_passages_known_to_fit_are_packed_without_counting() -> None:
    calls: list[str] = []

    def spy(text: str) -> int:
        calls.append(text)
        return words(text)

    hits = [counted(0, 100), counted(1, 100), counted(2, 100)]
    quick, given = build_messages("why?", hits, budget=8_000, count_tokens=spy)
    assert calls == []  # nothing counted: the stored counts prove it fits
    exact, _ = build_messages("why?", [hit(0), hit(1), hit(2)], budget=8_000, count_tokens=spy)
    assert calls and quick == exact  # the same prompt exact counting builds
    assert [s.n for s in given] == [1, 2, 3]


def test_near_the_budget_every_block_is_counted() -> None:
    """Stored counts are bounds with slack: close to the limit, exact counts decide."""
    calls: list[str] = []

    def spy(text: str) -> int:
        calls.append(text)
        return words(text)

    fixed = words(SYSTEM_PROMPT) + words("Sources:\n\n\n\nQuestion: why?")
    budget = fixed + int(2 * 106 / 0.9) + 5  # room for two passages by exact count
    hits = [counted(0, 100), counted(1, 100), counted(2, 100)]
    _, given = build_messages("why?", hits, budget=budget, count_tokens=spy)
    assert calls and len(given) == 2


def test_a_cold_ask_never_loads_the_tokenizer(ollama: OllamaStandIn, env: Path) -> None:
    """The passages' token counts from ingest pack the prompt: a cold `ask` (one process,
    as from a shell) does not pay ~0.15 s of CPU loading cl100k before its first token."""
    docs = Path(__file__).parent / "data" / "docs"
    environ = {**os.environ, "RAGGED_HOME": str(env), "OLLAMA_HOST": ollama.host}
    subprocess.run([*RAGGED, "ingest", str(docs), "-q"], env=environ, check=True)
    script = (
        "import sys\n"
        "from ragged.cli import app\n"
        "sys.argv = ['ragged', 'ask', 'Which port does the Foxtrot daemon listen on?', '--json']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print('tiktoken' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=environ, capture_output=True, text=True, check=True
    )
    answer = json.loads(done.stdout)
    assert answer["answered"] and any(s["cited"] for s in answer["sources"])
    assert done.stderr.strip().splitlines()[-1] == "False"
