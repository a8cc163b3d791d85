"""retrieve(question, ...): dense, lexical (BM25) or hybrid passages, deduplicated and capped per file."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ragged.catalog import ChunkRow
from ragged.errors import ModelMissing, OllamaUnavailable
from ragged.store import Hit

if TYPE_CHECKING:
    from ragged.catalog import Catalog
    from ragged.config import Settings
    from ragged.llm import LLM
    from ragged.store import Store

RRF_K = 60  # the constant from Cormack et al. (2009); damps the head of each ranking
CANDIDATES = 50  # per ranking, before fusion and caps
NEAR_DUPLICATE = 0.9  # Jaccard similarity of word shingles above which two passages are one
SHINGLE = 5


@dataclass(frozen=True)
class Retrieval:
    question: str
    hits: list[Hit]
    mode: str  # the mode actually used (hybrid falls back to lexical without Ollama)
    notice: str | None = None  # one line for the user, e.g. why dense retrieval was skipped
    considered: int = 0  # candidates before the floor, dedup and caps


def hit_from_row(row: ChunkRow, score: float) -> Hit:
    return Hit(
        id=row.id,
        text=row.text,
        score=score,
        path=row.path,
        rel_path=row.rel_path,
        page=row.page,
        heading=row.heading,
        chunk_index=row.idx,
    )


def matching_paths(catalog: Catalog, pattern: str) -> list[str]:
    """Stored files whose relative or absolute path matches a glob (`*.pdf`, `guides/*`)."""
    return [
        f.path
        for f in catalog.files()
        if fnmatch.fnmatch(f.rel_path, pattern)
        or fnmatch.fnmatch(f.path, pattern)
        or fnmatch.fnmatch(f.path, f"*/{pattern}")
    ]


def rrf(rankings: Sequence[tuple[float, Sequence[Hit]]], k: int = RRF_K) -> list[tuple[Hit, float]]:
    """Weighted reciprocal rank fusion: score(d) = sum over rankings of w / (k + rank(d)).

    e.g. a passage 1st in dense and 3rd in lexical, equal weights: 1/61 + 1/63 = 0.0323.
    """
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for weight, hits in rankings:
        for rank, hit in enumerate(hits, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + weight / (k + rank)
            first.setdefault(hit.id, hit)
    return sorted(((first[i], s) for i, s in scores.items()), key=lambda p: -p[1])


def _shingles(text: str) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    if len(words) <= SHINGLE:
        return {" ".join(words)}
    return {" ".join(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def diversify(hits: Sequence[Hit], k: int, max_per_source: int) -> list[Hit]:
    """Keep the best k, dropping near-duplicate passages and capping passages per file."""
    kept: list[Hit] = []
    kept_shingles: list[set[str]] = []
    per_source: dict[str, int] = {}
    for hit in hits:
        if per_source.get(hit.path, 0) >= max_per_source:
            continue
        sh = _shingles(hit.text)
        if any(
            len(sh & other) / max(1, len(sh | other)) >= NEAR_DUPLICATE for other in kept_shingles
        ):
            continue
        kept.append(hit)
        kept_shingles.append(sh)
        per_source[hit.path] = per_source.get(hit.path, 0) + 1
        if len(kept) == k:
            break
    return kept


def retrieve(
    question: str,
    settings: Settings,
    llm: LLM | None,
    store: Store,
    catalog: Catalog,
    *,
    k: int | None = None,
    mode: str | None = None,
    path_glob: str | None = None,
    min_score: float | None = None,
) -> Retrieval:
    """The best passages for a question; falls back to lexical search when Ollama is not there."""
    k = k or settings.top_k
    mode = mode or settings.mode
    floor = settings.min_score if min_score is None else min_score
    paths = matching_paths(catalog, path_glob) if path_glob else None
    pool = max(CANDIDATES, k * 5)
    notice = None

    dense: list[Hit] = []
    if mode in ("dense", "hybrid"):
        if llm is None:
            notice = "no Ollama connection: showing lexical (keyword) results only"
        else:
            try:
                store.check_model(settings.embed_model)
                vector = llm.embed([question], settings.embed_model, kind="query")[0]
                where = {"path": {"$in": paths}} if paths else None
                dense = [] if paths == [] else store.query(vector, pool, where)
            except (OllamaUnavailable, ModelMissing) as exc:
                notice = f"{exc.message}: showing lexical (keyword) results only"
        if notice:
            mode = "lexical"

    lexical: list[Hit] = []
    if mode in ("lexical", "hybrid"):
        lexical = [hit_from_row(row, s) for row, s in catalog.search(question, pool, paths)]

    if mode == "dense":
        ranked = [h for h in dense if h.score >= floor]
        considered = len(dense)
    elif mode == "lexical":
        ranked, considered = lexical, len(lexical)
    else:
        # A passage below the dense floor survives only if the words matched too.
        lexical_ids = {h.id for h in lexical}
        relevant = [h for h in dense if h.score >= floor or h.id in lexical_ids]
        fused = rrf([(settings.dense_weight, relevant), (settings.lexical_weight, lexical)])
        ranked = [replace(h, score=s) for h, s in fused]
        considered = len({h.id for h in dense} | lexical_ids)
    return Retrieval(
        question, diversify(ranked, k, settings.max_per_source), mode, notice, considered
    )
