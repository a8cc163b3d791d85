"""Prompts, packing passages into the model's context, streaming the answer, checking its citations."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ragged.errors import ConfigError, OllamaFailed

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.index import Hit, Index
    from ragged.llm import LLM
    from ragged.retrieve import Retrieval

# The sentinel a model is told to use when the sources do not hold the answer; tests assert on it.
CANNOT_ANSWER_PHRASE = "I don't know based on the provided sources."
NOTHING_RELEVANT = "Nothing relevant to that question was found in collection '{collection}'."

SYSTEM_PROMPT = f"""You answer questions using only the numbered sources the user gives you.
Rules:
- Use only facts stated in the sources. Do not use outside knowledge.
- After every sentence that uses a source, cite it with its number in square brackets, like [1] or [2][3].
- Cite only the numbers of sources you were given.
- If the sources do not contain the answer, reply exactly: {CANNOT_ANSWER_PHRASE}
- Be concise."""

USER_PROMPT = """Sources:

{sources}

Question: {question}"""

SOURCE_BLOCK = "[{n}] {label}\n{text}"
# Model tokenizers differ from cl100k; leave this share of the budget unused as a margin.
TOKEN_MARGIN = 0.10
CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")


@dataclass(frozen=True)
class Source:
    n: int
    hit: Hit

    @property
    def label(self) -> str:
        where = f" ({self.hit.location})" if self.hit.location else ""
        return f"{self.hit.label}{where}"


@dataclass
class Answer:
    question: str
    text: str
    model: str
    given: list[Source]  # every source put in the prompt, numbered as the model saw them
    cited: list[Source]  # the given sources the answer cites, in order of first citation
    unknown_citations: list[int]  # numbers cited that name no given source
    answered: bool  # False when nothing relevant was found and the model was not called
    timings: dict[str, float] = field(default_factory=dict)
    num_ctx: int | None = None


def source_label(hit: Hit) -> str:
    return Source(0, hit).label


def build_messages(
    question: str, hits: Sequence[Hit], budget: int, count_tokens: Callable[[str], int]
) -> tuple[list[dict[str, str]], list[Source]]:
    """Number the passages and keep as many, best first, as fit `budget` tokens.

    e.g. num_ctx 8192, 1024 kept for the answer, 180 for instructions and question:
    6988 tokens for sources, ~13 chunks of 512 tokens at most, fewer after the 10% margin.
    """
    fixed = count_tokens(SYSTEM_PROMPT) + count_tokens(
        USER_PROMPT.format(sources="", question=question)
    )
    room = int((budget - fixed) * (1 - TOKEN_MARGIN))
    sources: list[Source] = []
    blocks: list[str] = []
    for hit in hits:
        src = Source(len(sources) + 1, hit)
        block = SOURCE_BLOCK.format(n=src.n, label=src.label, text=hit.text.strip())
        cost = count_tokens(block) + 2
        if cost > room:
            break
        room -= cost
        sources.append(src)
        blocks.append(block)
    if hits and not sources:
        raise ConfigError(
            f"the context window ({budget} tokens after the answer's share) is too small for one passage",
            hint="raise RAGGED_NUM_CTX or lower RAGGED_CHUNK_TOKENS",
        )
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": USER_PROMPT.format(sources="\n\n".join(blocks), question=question),
        },
    ]
    return messages, sources


def parse_citations(text: str) -> list[int]:
    """Numbers cited as [1], [2][3] or [1, 4], in order of first appearance."""
    seen: list[int] = []
    for group in CITATION.findall(text):
        for part in re.split(r"[,;]", group):
            n = int(part)
            if n not in seen:
                seen.append(n)
    return seen


def warm_up() -> None:
    """Load the tokenizer (~0.2 s) in the background while retrieval waits on Ollama.

    The prompt cannot be packed without it, so loading it later would sit directly in
    front of the first token.
    """
    import threading

    from ragged.tokens import count_tokens

    threading.Thread(target=count_tokens, args=("",), daemon=True, name="warm-up").start()


def context_size(llm: LLM, model: str, wanted: int) -> int:
    """num_ctx to ask for: the configured window, never more than the model was trained for."""
    try:
        trained = llm.show(model).context_length
    except OllamaFailed:
        trained = None
    return min(wanted, trained) if trained else wanted


def answer(
    retrieval: Retrieval,
    llm: LLM,
    model: str,
    settings: Settings,
    *,
    on_token: Callable[[str], None] | None = None,
    num_ctx: int | None = None,
) -> Answer:
    """Ask the model to answer from the retrieved passages only, streaming as it writes.

    `num_ctx` is `context_size(...)` when the caller fetched it already (ask does, while
    retrieving); else it is asked of Ollama here.
    """
    from ragged.llm import ChatStats
    from ragged.tokens import count_tokens

    question = retrieval.question
    if not retrieval.hits:
        return Answer(
            question,
            NOTHING_RELEVANT.format(collection=settings.collection),
            model,
            [],
            [],
            [],
            False,
        )
    started = time.perf_counter()
    if num_ctx is None:
        num_ctx = context_size(llm, model, settings.context_window)
    budget = num_ctx - min(settings.answer_tokens, num_ctx // 4)
    messages, given = build_messages(question, retrieval.hits, budget, count_tokens)
    stats = ChatStats()
    pieces: list[str] = []
    for piece in llm.chat(
        model,
        messages,
        num_ctx=num_ctx,
        stats=stats,
        options={"temperature": 0.1, "num_predict": settings.answer_tokens},
    ):
        pieces.append(piece)
        if on_token:
            on_token(piece)
    text = "".join(pieces).strip()
    numbers = parse_citations(text)
    by_n = {s.n: s for s in given}
    timings = {"total_s": time.perf_counter() - started, "generation_s": stats.total_s}
    if stats.first_token_s is not None:
        timings["first_token_s"] = stats.first_token_s
    if stats.tokens_per_second:
        timings["tokens_per_s"] = stats.tokens_per_second
    return Answer(
        question=question,
        text=text,
        model=model,
        given=given,
        cited=[by_n[n] for n in numbers if n in by_n],
        unknown_citations=[n for n in numbers if n not in by_n],
        answered=True,
        timings=timings,
        num_ctx=num_ctx,
    )


@dataclass
class Asked:
    """What `ask` did: the passages, the answer (None when no model could write one)."""

    retrieval: Retrieval
    answer: Answer | None
    model: str

    @property
    def fell_back(self) -> bool:
        """Ollama could not be reached: the best passages stand in for an answer."""
        return self.answer is None


def ask(
    question: str,
    index: Index,
    llm: LLM,
    *,
    model: str | None = None,
    k: int | None = None,
    mode: str | None = None,
    path_glob: str | None = None,
    on_token: Callable[[str], None] | None = None,
) -> Asked:
    """Retrieve passages for a question and have the chat model answer from them."""
    from ragged.later import Later
    from ragged.models import resolve_chat_model
    from ragged.retrieve import retrieve

    warm_up()
    settings = index.settings
    chat_model = model or resolve_chat_model(settings)[0]
    # The model's context length (an /api/show round trip) is fetched while retrieving.
    num_ctx = Later(context_size, llm, chat_model, settings.context_window, name="show")
    retrieval = retrieve(question, index, llm, k=k, mode=mode, path_glob=path_glob)
    if retrieval.ollama_down:
        return Asked(retrieval, None, chat_model)
    reply = answer(
        retrieval, llm, chat_model, settings, on_token=on_token, num_ctx=num_ctx.result()
    )
    return Asked(retrieval, reply, chat_model)
