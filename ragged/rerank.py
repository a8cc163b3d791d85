"""rerank(question, hits, ...): the chat model judges each passage, yes or no, and the passages
are put in the order of its judgement.

Ollama has no rerank endpoint, but since 0.12.11 a chat reply carries `logprobs`. Asked for a
one-word yes/no, the log-probabilities of "yes" and "no" as its first token give how sure the
model is that the passage helps: P = e^yes / (e^yes + e^no), e.g. yes -0.2, no -1.8: 0.83.

It is opt-in (`rerank = N`, `--rerank N`) because it costs one chat request per passage, each
about a passage's worth of prompt and one generated token, all before the answer can start
(docs/benchmarks.md, "Reranking"). Its gain could not be measured offline: it needs a real
chat model, and the Ollama stand-in's judgement is word overlap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ragged.errors import ModelMissing, OllamaFailed, OllamaUnavailable

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.index import Hit
    from ragged.llm import LLM

ANSWERS = ("yes", "no")


@dataclass(frozen=True)
class Reranked:
    """Passages in the chat model's order; `judged` of them were re-scored."""

    hits: list[Hit]
    judged: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0  # summed over the requests, as Ollama counted them
    notice: str | None = None  # why reranking was skipped, when it was


def relevance(logprobs: dict[str, float]) -> float:
    """P(yes) against P(no) from their log-probabilities; 0.5 when neither was among the
    model's likely first tokens (it has no opinion we can read).

    e.g. {"yes": -0.2, "no": -1.8} -> 1 / (1 + e^(-1.8 + 0.2)) = 0.83.
    """
    yes, no = logprobs.get("yes", -math.inf), logprobs.get("no", -math.inf)
    if yes == -math.inf and no == -math.inf:
        return 0.5
    if no == -math.inf:
        return 1.0
    if yes == -math.inf:
        return 0.0
    return 1.0 / (1.0 + math.exp(no - yes))


def judge_messages(question: str, hit: Hit) -> list[dict[str, str]]:
    """The request for one passage: fenced like the answer's sources, the question first."""
    from ragged.answer import (
        RERANK_SYSTEM_PROMPT,
        RERANK_USER_PROMPT,
        SOURCE_BLOCK,
        attribute,
        fence,
        source_label,
    )

    source = SOURCE_BLOCK.format(
        n=1, label=attribute(source_label(hit)), text=fence(hit.text.strip())
    )
    return [
        {"role": "system", "content": RERANK_SYSTEM_PROMPT},
        {"role": "user", "content": RERANK_USER_PROMPT.format(question=question, source=source)},
    ]


def rerank(
    question: str,
    hits: Sequence[Hit],
    llm: LLM,
    model: str,
    settings: Settings,
    *,
    on_judged: Callable[[int, int], None] | None = None,
) -> Reranked:
    """Judge every passage in `hits` with the chat model and sort them by P(relevant).

    Ties keep the retrieval order, and each hit's score becomes its P(relevant). When the
    model cannot judge (Ollama older than 0.12.11, a model that always thinks, the model not
    pulled, Ollama gone) the passages come back as they were, with a notice saying why.
    `on_judged(done, total)` hears about each passage as it is judged.
    """
    from ragged.answer import context_and_think
    from ragged.llm import ChatStats

    if not hits:
        return Reranked([])
    started = time.perf_counter()
    try:
        # The answer's own num_ctx: a different one would make Ollama reload the model
        # between reranking and answering.
        num_ctx, think = context_and_think(llm, model, settings.context_window)
        if isinstance(think, str):
            return Reranked(
                list(hits),
                notice=f"reranking skipped: {model} always thinks first, so its first token "
                "is not a yes/no judgement",
            )
        scored: list[tuple[float, int, Hit]] = []
        tokens = 0
        for n, hit in enumerate(hits):
            stats = ChatStats()
            found = llm.judge(
                model,
                judge_messages(question, hit),
                num_ctx=num_ctx,
                answers=ANSWERS,
                think=think,
                stats=stats,
            )
            tokens += stats.prompt_eval_count or 0
            scored.append((relevance(found), n, hit))
            if on_judged:
                on_judged(n + 1, len(hits))
    except (OllamaFailed, OllamaUnavailable, ModelMissing) as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        return Reranked(list(hits), notice=f"reranking skipped: {exc.message}{hint}")
    scored.sort(key=lambda s: (-s[0], s[1]))
    return Reranked(
        [replace(hit, score=p) for p, _, hit in scored],
        judged=len(scored),
        seconds=time.perf_counter() - started,
        prompt_tokens=tokens,
    )
