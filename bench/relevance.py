"""Does `ask` say "not in your documents" when it should, and only then? (issue 12)

Answerable and off-topic questions (bench/questions.py) go through `ragged.retrieve.retrieve`
over two collections: the shared corpus's FastAPI, Typer and SQLModel docs plus its HTML pages,
and BEIR SciFact. A question counts as refused when retrieval judges nothing relevant, which is
when `ask` answers "not in your documents" without calling the chat model.

    python bench/relevance.py                       # hashed stand-in vectors, both collections
    python bench/relevance.py --embedder minilm     # real all-MiniLM-L6-v2 vectors (bench extra)
    python bench/relevance.py --titles heading      # SciFact as Markdown, titles as headings

Reported per collection: answerable questions answered, off-topic ones refused (refusal
recall), and refusal precision (refused questions that were off-topic), for ragged's decision
and for 0.1.0's (a fixed 0.4 cosine floor that keyword matches bypass in hybrid mode).
Indexes are cached like bench/retrieval.py's (`--cache`); set RAGGED_BENCH_MINILM_CACHE to a
file to keep MiniLM's vectors between runs (bench/minilm.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import questions as Q  # noqa: E402
from bench.retrieval import MINILM, TITLES, build_index, cache_dir, load_beir, standin  # noqa: E402

SHARED = ROOT.parent / "shared" / "bench"
DOC_FOLDERS = ("markdown/fastapi", "markdown/typer", "markdown/sqlmodel", "html")
OLD_FLOOR = 0.4  # ragged 0.1.0's min_score


@dataclass(frozen=True)
class Outcome:
    collection: str
    rule: str
    answered: int
    answerable: int
    refused: int
    off_topic: int
    wrongly_refused: int

    @property
    def answer_rate(self) -> float:
        return self.answered / self.answerable

    @property
    def refusal_recall(self) -> float:
        return self.refused / self.off_topic

    @property
    def refusal_precision(self) -> float:
        total = self.refused + self.wrongly_refused
        return self.refused / total if total else 1.0


def judge_all(
    index, llm, answerable: Sequence[str], off_topic: Sequence[str], collection: str
) -> list[Outcome]:  # type: ignore[no-untyped-def]
    """Both rules over both question sets."""
    from ragged.retrieve import retrieve

    outcomes = []
    for rule in ("ragged", "0.1.0"):
        floor = OLD_FLOOR if rule == "0.1.0" else None

        def relevant(q: str, floor: float | None = floor) -> bool:
            result = retrieve(q, index, llm, min_score=floor)
            return bool(result.hits) if floor is not None else result.relevant

        answered = sum(relevant(q) for q in answerable)
        refused = sum(not relevant(q) for q in off_topic)
        outcomes.append(
            Outcome(
                collection,
                rule,
                answered,
                len(answerable),
                refused,
                len(off_topic),
                len(answerable) - answered,
            )
        )
    return outcomes


def docs_collection(args: argparse.Namespace, host: str, model: str):  # type: ignore[no-untyped-def]
    from ragged.config import load_settings
    from ragged.index import open_index
    from ragged.ingest import ingest
    from ragged.llm import connect

    home = args.cache / f"relevance-docs-{args.embedder}" / "home"
    settings = load_settings({"home": home, "ollama_host": host, "embed_model": model})
    llm = connect(settings)
    with open_index(settings, create=True) as index:
        report = ingest([args.data / "corpus" / f for f in DOC_FOLDERS], index, llm)
    if not report.ok:
        raise SystemExit(f"ingest failed: {report.embed_error or report.failed}")
    return open_index(settings), llm


def scifact_collection(args: argparse.Namespace, host: str, model: str, backend: str):  # type: ignore[no-untyped-def]
    from bench.retrieval import bench_settings
    from ragged.config import load_settings
    from ragged.index import open_index
    from ragged.llm import connect

    data = load_beir(args.data / "scifact")
    probe = bench_settings(Path(tempfile.gettempdir()), host, model)
    where = cache_dir(args.cache, data, backend, probe, args.titles)
    build_index(
        data,
        bench_settings(where / "home", host, model),
        connect(probe),
        where / "docs",
        args.titles,
    )
    settings = load_settings({"home": where / "home", "ollama_host": host, "embed_model": model})
    return open_index(settings), connect(settings), list(data.queries.values())


def main(argv: Sequence[str] | None = None) -> list[Outcome]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=SHARED, help="the shared bench folder")
    p.add_argument("--embedder", choices=("hashed", "minilm"), default="hashed")
    p.add_argument("--collections", default="docs,scifact")
    p.add_argument(
        "--titles",
        choices=tuple(TITLES),
        default="body",
        help="SciFact titles as the first line of a .txt (body) or a Markdown heading",
    )
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ragged-bench")
    args = p.parse_args(argv)
    wanted = [c.strip() for c in args.collections.split(",") if c.strip()]
    model = MINILM if args.embedder == "minilm" else "nomic-embed-text"
    outcomes: list[Outcome] = []
    calibrations = {}
    with ExitStack() as stack:
        host = stack.enter_context(standin(args.embedder, model))
        if "docs" in wanted:
            index, llm = docs_collection(args, host, model)
            stack.callback(index.close)
            outcomes += judge_all(index, llm, Q.DOCS_ANSWERABLE, Q.DOCS_OFF_TOPIC, "docs")
            calibrations["docs"] = _calibration(index)
        if "scifact" in wanted:
            backend = f"stand-in ({args.embedder})"
            index, llm, claims = scifact_collection(args, host, model, backend)
            stack.callback(index.close)
            off = [*Q.SCIFACT_OFF_TOPIC_EVERYDAY, *Q.DOCS_ANSWERABLE]
            outcomes += judge_all(index, llm, claims, off, "scifact")
            calibrations["scifact"] = _calibration(index)
    render(outcomes, calibrations, args.embedder)
    return outcomes


def _calibration(index) -> str:  # type: ignore[no-untyped-def]
    from ragged.relevance import _load

    cal = _load(index)
    if cal is None:
        return "none"
    dense = f"{cal.dense_floor:.3f}" if cal.dense_floor is not None else "not used"
    self_test = f"{cal.self_test_median:.3f}" if cal.self_test_median is not None else "-"
    median = f"{cal.probe_dense_median:.3f}" if cal.probe_dense_median is not None else "-"
    return (
        f"dense floor {dense} (probe median {median}, self-test {self_test}); "
        f"keyword floor {cal.coverage_floor:.3f}"
    )


def render(outcomes: list[Outcome], calibrations: dict[str, str], embedder: str) -> None:
    print(f"embeddings: {embedder}")
    print("| collection | rule | answerable answered | off-topic refused | refusal precision |")
    print("| --- | --- | ---: | ---: | ---: |")
    for o in outcomes:
        print(
            f"| {o.collection} | {o.rule} | {o.answered}/{o.answerable} ({o.answer_rate:.0%}) "
            f"| {o.refused}/{o.off_topic} ({o.refusal_recall:.0%}) | {o.refusal_precision:.0%} |"
        )
    for name, text in calibrations.items():
        print(f"{name}: {text}")


if __name__ == "__main__":
    main()
