"""retrieve(question, ...): dense, lexical (BM25) or hybrid passages, deduplicated and capped per file."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ragged.errors import ModelMissing, OllamaFailed, OllamaUnavailable, StoreError
from ragged.later import Later

if TYPE_CHECKING:
    from ragged.index import Hit, Index
    from ragged.llm import LLM
    from ragged.relevance import Relevance
    from ragged.rerank import Reranked

CANDIDATES = 50  # per ranking, before fusion and caps
NEAR_DUPLICATE = 0.9  # Jaccard similarity of word shingles above which two passages are one
SHINGLE = 5


_ESCAPED_BYTES = re.compile("[\udc80-\udcff]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def well_formed(text: str) -> str:
    """Text as valid Unicode, which a JSON request and a UTF-8 file need.

    Bytes that were not UTF-8 (typed on a Latin-1 terminal, piped from a cp1252 file) reach
    Python as lone surrogates (PEP 383); they are read as cp1252, the encoding such text most
    often is ("caf\\udce9" -> "café"). Any other lone surrogate (a JSON "\\ud800") becomes
    U+FFFD.
    """
    if not _SURROGATE.search(text):
        return text

    def as_cp1252(match: re.Match[str]) -> str:
        return match.group().encode("utf-8", "surrogateescape").decode("cp1252", "replace")

    return _SURROGATE.sub("\ufffd", _ESCAPED_BYTES.sub(as_cp1252, text))


@dataclass(frozen=True)
class Retrieval:
    question: str
    hits: list[Hit]
    mode: str  # the mode actually used (hybrid falls back to lexical without Ollama)
    notice: str | None = None  # one line for the user, e.g. why dense retrieval was skipped
    considered: int = 0  # candidates before the floor, dedup and caps
    ollama_down: bool = False  # the fallback was for want of Ollama: no model can answer either
    relevance: Relevance | None = None  # whether anything found is relevant (ragged/relevance.py)
    reranked: Reranked | None = None  # what the chat model's reranking did, when it ran

    @property
    def relevant(self) -> bool:
        """Something found is relevant enough to ask a model about."""
        return bool(self.hits) and (self.relevance is None or self.relevance.relevant)


def fuse(
    dense: Sequence[Hit],
    lexical: Sequence[Hit],
    dense_weight: float,
    lexical_weight: float,
    *,
    every_match: bool = False,
) -> list[tuple[Hit, float]]:
    """Weighted mean of cosine similarity and BM25 scaled by the question's best BM25.

    e.g. equal weights, a passage with cosine 0.62 whose BM25 is 9.0 where the best is 12.0:
    (0.62 + 9.0 / 12.0) / 2 = 0.685. A passage missing from one list gets that list's lowest
    score, since it ranked below every candidate there; but when `lexical` holds every
    passage with any of the question's words (`every_match`: the search returned fewer than
    it was asked for), one missing from it has none of them, and gets 0. Otherwise a word
    only one passage holds gave every other passage that passage's own keyword score.

    Why scores and not reciprocal ranks: BM25 has no fixed scale, so it is divided by the
    question's best (its floor is 0), but cosine already has one, so it is left as it is. A
    model that is unsure, whose similarities are low and close together, then moves the
    ranking little, while rank fusion would give its guesses as much say as BM25's best
    matches. On SciFact this beats plain RRF with a real embedding model and, unlike RRF, stays
    above lexical alone when the vectors are weak (docs/benchmarks.md).
    """
    total = dense_weight + lexical_weight
    if total <= 0:
        dense_weight = lexical_weight = total = 1.0
    best = max((h.score for h in lexical), default=0.0)
    scaled = {h.id: h.score / best if best > 0 else 0.0 for h in lexical}
    cosine = {h.id: h.score for h in dense}
    lexical_floor = 0.0 if every_match else min(scaled.values(), default=0.0)
    dense_floor = min(cosine.values(), default=0.0)
    first: dict[str, Hit] = {}
    for hit in [*dense, *lexical]:
        first.setdefault(hit.id, hit)
    fused = [
        (
            hit,
            (
                dense_weight * cosine.get(id_, dense_floor)
                + lexical_weight * scaled.get(id_, lexical_floor)
            )
            / total,
        )
        for id_, hit in first.items()
    ]
    return sorted(fused, key=lambda p: -p[1])


def rrf(
    dense: Sequence[Hit],
    lexical: Sequence[Hit],
    dense_weight: float,
    lexical_weight: float,
    k: int = 60,
    *,
    every_match: bool = False,  # `fuse`'s signature; here a missing passage adds 0 anyway
) -> list[tuple[Hit, float]]:
    """Weighted reciprocal rank fusion (Cormack et al. 2009): sum of w / (k + rank).

    e.g. 1st in dense and 3rd in lexical, equal weights: 1/61 + 1/63 = 0.0323. Kept as
    `fusion = "rrf"`; `fuse` is the default because it measured better (docs/benchmarks.md).
    """
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for weight, hits in ((dense_weight, dense), (lexical_weight, lexical)):
        for rank, hit in enumerate(hits, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + weight / (k + rank)
            first.setdefault(hit.id, hit)
    return sorted(((first[i], sc) for i, sc in scores.items()), key=lambda p: -p[1])


FUSIONS = {"score": fuse, "rrf": rrf}


def _shingles(text: str) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    if len(words) <= SHINGLE:
        return {" ".join(words)}
    return {" ".join(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def _near_duplicate(a: set[str], b: set[str]) -> bool:
    """Jaccard similarity |a & b| / |a | b| at least NEAR_DUPLICATE, without building the union.

    Jaccard is at most small / large, so sets of very different sizes need no intersection:
    e.g. 80 and 100 shingles can reach 0.8 at best, under the 0.9 needed.
    """
    small, large = sorted((len(a), len(b)))
    if small < NEAR_DUPLICATE * large:
        return False
    common = len(a & b)
    return common >= NEAR_DUPLICATE * (len(a) + len(b) - common)


def diversify(hits: Sequence[Hit], k: int, max_per_source: int) -> list[Hit]:
    """Keep the best k, dropping near-duplicate passages and capping passages per file."""
    kept: list[Hit] = []
    kept_shingles: list[set[str]] = []
    per_source: dict[str, int] = {}
    for hit in hits:
        if per_source.get(hit.path, 0) >= max_per_source:
            continue
        sh = _shingles(hit.text)
        if any(_near_duplicate(sh, other) for other in kept_shingles):
            continue
        kept.append(hit)
        kept_shingles.append(sh)
        per_source[hit.path] = per_source.get(hit.path, 0) + 1
        if len(kept) == k:
            break
    return kept


def _embed_query(llm: LLM, question: str, model: str) -> list[float]:
    return llm.embed([question], model, kind="query")[0]


def retrieve(
    question: str,
    index: Index,
    llm: LLM | None,
    *,
    k: int | None = None,
    mode: str | None = None,
    path_glob: str | None = None,
    min_score: float | None = None,
    rerank: int | None = None,
    chat_model: str | None = None,
    on_rerank: Callable[[int, int], None] | None = None,
) -> Retrieval:
    """The best passages for a question, and whether they are relevant to it; falls back to
    lexical search, and says so, when Ollama or the vector store cannot answer.

    `min_score` (else the setting; 0 = none) is a fixed cosine floor: hits under it are
    dropped in dense mode, kept in hybrid only if their words matched, and it replaces the
    collection's calibrated floor in the relevance decision.

    `rerank` (else the setting; 0 = off) is how many of the best passages `chat_model` (else
    the machine's choice) re-judges before the best k are kept (ragged/rerank.py); it runs
    only when something relevant was found, since otherwise no model is asked anything.
    `on_rerank(done, total)` hears each judgement.
    """
    from ragged.relevance import calibration, judge

    question = well_formed(question)
    settings = index.settings
    k = k or settings.top_k
    mode = mode or settings.mode
    floor = settings.min_score if min_score is None else min_score
    paths = index.matching(path_glob) if path_glob else None
    pool = max(CANDIDATES, k * 5)
    notice = None
    ollama_down = False

    lexical: list[Hit] = []
    searched = False  # lexical is this question's keyword search already (it may be empty)
    if mode in ("dense", "hybrid") and llm is not None:
        # The question is embedded on a thread while the store opens (in a fresh process
        # both are slow: an Ollama round trip; importing chromadb and opening its client),
        # and the keyword search runs meanwhile: none of the three needs another.
        embedding = Later(_embed_query, llm, question, settings.embed_model, name="embed")
        index.store.prefetch()
        if mode == "hybrid":
            lexical, searched = index.lexical(question, pool, paths), True

    dense: list[Hit] = []
    if mode in ("dense", "hybrid"):
        if llm is None:
            notice = "no Ollama connection: showing lexical (keyword) results only"
            ollama_down = True
        else:
            from ragged.index import CollectionMissing
            from ragged.llm import InputTooLong

            try:
                index.store.check_model(settings.embed_model)
                dense = index.dense(embedding.result(), pool, paths)
            except InputTooLong:
                # The question's fault, not Ollama's: a model can still answer it from the
                # keyword passages (the question alone is checked against its window later).
                notice = (
                    f"the question is too long to embed ({settings.embed_model} takes at most "
                    "its context length): showing lexical (keyword) results only"
                )
            except (OllamaUnavailable, ModelMissing, OllamaFailed) as exc:
                # Down, missing the model, or up but failing (HTTP 500s, resets, a stall
                # beyond the timeout): keyword search still answers, and says why.
                notice = f"{exc.message}: showing lexical (keyword) results only"
                ollama_down = True
            except CollectionMissing:
                raise  # deleted by a `reset` meanwhile: no keyword results from its remains
            except StoreError as exc:
                notice = (
                    f"{exc.message}: showing lexical (keyword) results only "
                    "(`ragged doctor` checks the store)"
                )
        if notice:
            mode = "lexical"

    if mode in ("lexical", "hybrid") and not searched:
        lexical = index.lexical(question, pool, paths)
    every_match = len(lexical) < pool  # the keyword search found all it could
    if mode == "hybrid" and lexical:
        held, dense = index.held_now(lexical, dense)
        if len(held) < len(lexical):
            # An ingest replaced a file between the two reads: its old passages are gone,
            # and its new ones may be missing from the vectors yet. Ask the keywords again,
            # or the file would be in neither ranking.
            lexical = index.lexical(question, pool, paths)
            every_match = len(lexical) < pool
            held, dense = index.held_now(lexical, dense)
        lexical = held

    if mode == "dense":
        ranked = [h for h in dense if h.score >= floor]
        considered = len(dense)
    elif mode == "lexical":
        ranked, considered = lexical, len(lexical)
    else:
        # With a fixed floor, a passage below it survives only if the words matched too.
        lexical_ids = {h.id for h in lexical}
        relevant = [h for h in dense if h.score >= floor or h.id in lexical_ids]
        fused = FUSIONS[settings.fusion](
            relevant,
            lexical,
            settings.dense_weight,
            settings.lexical_weight,
            every_match=every_match,
        )
        ranked = [replace(h, score=s) for h, s in fused]
        considered = len({h.id for h in dense} | lexical_ids)
    relevance = None
    if dense or lexical:
        cal = calibration(index, None if mode == "lexical" else llm, settings.embed_model)
        relevance = judge(question, index, cal, dense, lexical, floor or None)
    judge_n = settings.rerank if rerank is None else rerank
    hits = diversify(ranked, max(k, judge_n), settings.max_per_source)
    reranked = None
    if judge_n and hits and llm is not None and not ollama_down:
        if relevance is not None and not relevance.relevant:
            skipped = "reranking skipped: nothing found looks relevant to the question"
            notice = f"{notice}; {skipped}" if notice else skipped
        else:
            from ragged.models import resolve_chat_model
            from ragged.rerank import rerank as rerank_hits

            model = chat_model or resolve_chat_model(settings)[0]
            reranked = rerank_hits(
                question, hits[:judge_n], llm, model, settings, on_judged=on_rerank
            )
            hits = reranked.hits + hits[judge_n:]
            if reranked.notice:
                notice = f"{notice}; {reranked.notice}" if notice else reranked.notice
    return Retrieval(
        question,
        hits[:k],
        mode,
        notice,
        considered,
        ollama_down,
        relevance,
        reranked,
    )
