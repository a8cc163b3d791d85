"""Is anything in this collection relevant to a question? Decided per collection, for any model.

A cosine similarity means nothing by itself: all-MiniLM-L6-v2 gives an unrelated question's
best passage about 0.23, nomic-embed-text about 0.45, hashed test vectors about 0.33. So each
collection is calibrated against its own behaviour, once, and the result kept in its catalog:

- **Unrelated references.** PROBES are everyday questions that a document collection is
  almost never about. Their best cosine against the collection (and the share of their
  keywords found in their best passage) is what "unrelated" scores *here, with this model*.
  A question must beat that by SIGMAS robust standard deviations: floor = median + 3 x MAD
  x 1.4826, an outlier test whose median and MAD stay put even if a few probes happen to be
  on topic (a cooking collection and the probe about pancakes).
- **Self-test.** Whether the vectors can tell this collection's passages from unrelated text
  at all: the first words of sampled passages as they were embedded (heading path, then
  text), asked as questions, must find passages above
  the dense floor (median). Trained models pass easily (MiniLM: ~0.75 against a floor of
  ~0.35); hashed bag-of-words vectors do not, and their cosines are then not used to refuse.

A question is relevant when its best passage beats the dense floor or, where the vectors
failed the self-test or there are none (lexical mode, Ollama down), when the share of its
keywords (weighted by BM25's idf) found in one of its best passages beats the keyword floor,
itself never under half. Measured in docs/benchmarks.md ("Relevance"): with MiniLM, 100% of
answerable docs questions answered and 90% of off-topic ones refused; SciFact 95% and 100%.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ragged.index import Hit, Index
    from ragged.llm import LLM

# Written for ragged, kept apart from the benchmark's questions (bench/questions.py); varied
# topics so that no one collection is about more than a few of them.
PROBES: tuple[str, ...] = (
    "What time does the bakery open on Sundays?",
    "How tall is the Eiffel Tower?",
    "Who wrote the novel Moby-Dick?",
    "What is a good name for a golden retriever puppy?",
    "How do I remove rust from a cast iron pan?",
    "Which planet is closest to the sun?",
    "How many players are on a rugby team?",
    "What should I pack for a beach holiday?",
    "How do I say thank you in Japanese?",
    "What is the best season to plant tulip bulbs?",
    "How do I iron a dress shirt?",
    "Who was the first person to walk on the moon?",
    "How do I make pancakes for breakfast?",
    "How do I stop my cat from scratching the sofa?",
    "What is the exchange rate between euros and dollars?",
    "Which wine goes with grilled salmon?",
    "How do I fold a paper airplane?",
    "How far is the moon from the earth?",
    "How do I unclog a bathroom sink?",
    "What is the weather like in Lisbon in March?",
    "How many calories are in an apple?",
    "When were the first modern Olympic Games held?",
    "How do I learn to juggle three balls?",
    "What is the plot of Hamlet?",
)
SIGMAS = 3.0  # how far above "unrelated" a question must score: a 3-sigma outlier test
MAD_TO_SIGMA = 1.4826  # MAD x this = standard deviation, for normally distributed scores
MIN_SPREAD = 0.01  # a collection where every probe scores alike still needs some margin
MIN_COVERAGE = 0.5  # never call a question relevant on less than half of its keywords
SELF_TEST = 24  # passages whose first words are asked as questions
SELF_TEST_WORDS = 12
CANDIDATES = 10  # best passages, per side, whose keywords are counted
RECALIBRATE = 0.2  # recalibrate when the chunk count has moved by more than this share
META_KEY = "relevance_calibration"
VERSION = 3  # bump when the calibration changes, so stored ones are redone


@dataclass(frozen=True)
class Calibration:
    """What unrelated questions score in one collection with one embedding model."""

    model: str
    chunks: int
    dense_floor: float | None  # None: no vectors, or they failed the self-test
    coverage_floor: float
    probe_dense_median: float | None = None
    self_test_median: float | None = None
    version: int = VERSION


@dataclass(frozen=True)
class Relevance:
    """The decision for one question, and the numbers it was made on."""

    relevant: bool
    basis: str  # "meaning" (dense floor) or "keywords" (coverage floor)
    best_cosine: float | None
    coverage: float
    dense_floor: float | None
    coverage_floor: float


def floor(scores: Sequence[float]) -> float:
    """median + SIGMAS robust standard deviations, e.g. probes scoring 0.20, 0.22, 0.23,
    0.25, 0.40: median 0.23, MAD 0.02 -> 0.23 + 3 x 0.02 x 1.4826 = 0.319."""
    median = statistics.median(scores)
    mad = statistics.median(abs(s - median) for s in scores)
    return median + SIGMAS * max(mad * MAD_TO_SIGMA, MIN_SPREAD)


def coverage(index: Index, question: str, hits: Sequence[Hit]) -> float:
    """The largest share of the question's keyword weight that one passage holds.

    Weights are BM25's idf, log(1 + (N - n + 0.5) / (n + 0.5)) for a word in n of N chunks,
    so a word the collection never uses weighs most: 'boil an egg' against documents that
    mention eggs but never boiling holds well under half.
    """
    freq, matched = index.catalog.term_matches(question, [h.id for h in hits])
    if not freq:
        return 0.0
    n = max(index.catalog.chunk_count(), 1)
    weight = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in freq.items()}
    total = sum(weight.values())
    return max((sum(weight[t] for t in terms) / total for terms in matched.values()), default=0.0)


def _best_cosine(index: Index, vector: Sequence[float]) -> float:
    found = index.dense(vector, 1)
    return found[0].score if found else 0.0


def calibrate(index: Index, llm: LLM | None, model: str) -> Calibration:
    """Score the probes and the self-test against this collection (one embedding request)."""
    chunks = index.catalog.chunk_count()
    vectors: list[list[float]] = []
    own: list[str] = []
    if llm is not None and index.catalog.embedded_count() > 0:
        from ragged.index import embed_text

        # The words the vector was made from: with the text alone, a chunk under a long title
        # (a paper as Markdown) is asked about words its vector holds diluted, and MiniLM
        # failed the test on SciFact written that way (self-test 0.65, 0.75 as embedded).
        own = [
            " ".join(embed_text(row).split()[:SELF_TEST_WORDS])
            for row in index.catalog.sample(SELF_TEST)
        ]
        vectors = llm.embed([*PROBES, *own], model, kind="query")
    probe_coverage = []
    probe_dense = []
    for i, probe in enumerate(PROBES):
        candidates = index.lexical(probe, CANDIDATES)
        if vectors:
            near = index.dense(vectors[i], CANDIDATES)
            probe_dense.append(near[0].score if near else 0.0)
            candidates += near
        probe_coverage.append(coverage(index, probe, candidates))
    coverage_floor = max(MIN_COVERAGE, floor(probe_coverage))
    if not probe_dense:
        return Calibration(model, chunks, None, coverage_floor)
    dense_floor = floor(probe_dense)
    tested = [_best_cosine(index, v) for v in vectors[len(PROBES) :]]
    self_test = statistics.median(tested) if tested else None
    # Trusted when a passage's own first words find it as far above the floor as the floor
    # sits above unrelated questions: a real model does (MiniLM: 0.70 against 0.22 / 0.35);
    # bag-of-words vectors over short chunks clear the floor alone but not this.
    informative = self_test is not None and self_test >= 2 * dense_floor - statistics.median(
        probe_dense
    )
    return Calibration(
        model,
        chunks,
        dense_floor if informative else None,
        coverage_floor,
        statistics.median(probe_dense),
        self_test,
    )


def calibration(index: Index, llm: LLM | None, model: str) -> Calibration:
    """The collection's calibration: kept in its catalog, redone when the embedding model
    changed or the chunk count moved by more than RECALIBRATE."""
    from ragged.models import full_name

    stored = _load(index)
    chunks = index.catalog.chunk_count()
    if (
        stored is not None
        and full_name(stored.model) == full_name(model)
        and abs(stored.chunks - chunks) <= RECALIBRATE * max(stored.chunks, 1)
        and (stored.dense_floor is not None or llm is None or stored.probe_dense_median is not None)
    ):
        return stored
    from ragged.errors import ModelMissing, OllamaFailed, OllamaUnavailable

    try:
        fresh = calibrate(index, llm, model)
    except (OllamaUnavailable, OllamaFailed, ModelMissing):
        # Ollama went away between the question's embedding and the probes': decide on
        # keywords this time, and calibrate properly next time.
        return calibrate(index, None, model)
    if llm is not None or stored is None:
        _save(index, fresh)
    return fresh


def _load(index: Index) -> Calibration | None:
    raw = index.catalog.meta(META_KEY)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        stored = Calibration(**data)
    except (ValueError, TypeError):
        return None
    return stored if stored.version == VERSION else None


def _save(index: Index, value: Calibration) -> None:
    import sqlite3

    try:
        index.catalog.set_meta(META_KEY, json.dumps(asdict(value)))
    except sqlite3.Error:
        pass  # a read-only catalog: calibrate again next time rather than fail a question


def judge(
    question: str,
    index: Index,
    cal: Calibration,
    dense: Sequence[Hit],
    lexical: Sequence[Hit],
    fixed_floor: float | None = None,
) -> Relevance:
    """Decide for one question from its unfiltered dense and lexical candidates.

    `fixed_floor` (the `min_score` setting, when set) replaces the calibrated dense floor.
    """
    best = max((h.score for h in dense), default=None) if dense else None
    dense_floor = fixed_floor if fixed_floor else cal.dense_floor
    share = coverage(index, question, [*lexical[:CANDIDATES], *dense[:CANDIDATES]])
    if best is not None and dense_floor is not None:
        return Relevance(
            best >= dense_floor, "meaning", best, share, dense_floor, cal.coverage_floor
        )
    return Relevance(
        share >= cal.coverage_floor, "keywords", best, share, dense_floor, cal.coverage_floor
    )
