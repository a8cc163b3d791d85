"""Retrieval quality on a BEIR dataset: nDCG@10 and Recall@100 of ragged's dense, lexical and hybrid.

The corpus goes through ragged's own ingest (one .txt file per document: title, blank line,
text) and every query through `ragged.retrieve.retrieve`, so the numbers are what users get.
Metrics come from pytrec_eval (the TREC tool's code), over every judged query.

    python bench/retrieval.py                    # SciFact test split, against the Ollama stand-in
    OLLAMA_HOST=127.0.0.1:11434 RAGGED_EMBED_MODEL=nomic-embed-text python bench/retrieval.py
    python bench/retrieval.py --embedder minilm  # the stand-in serving all-MiniLM-L6-v2 vectors
                                                 # (needs `pip install -e '.[bench]'`)
    python bench/retrieval.py --titles heading   # documents as Markdown, the title a heading
    OLLAMA_HOST=... RAGGED_CHAT_MODEL=llama3.2:3b python bench/retrieval.py --rerank 20
                                                 # the chat model reranks the best 20

Which Ollama: the stand-in (tests/ollama_standin.py, hashed bag-of-words vectors) unless an
Ollama host is configured (OLLAMA_HOST, RAGGED_OLLAMA_HOST or the config file) or `--ollama`
is given; `--standin` forces it. The ingested index is cached per corpus, embedder and
chunking settings (see `--cache`): embedding 5,183 abstracts is the slow part, and ragged's
re-ingest of unchanged files costs next to nothing.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

# The stand-in lives in tests/, so the repo root must be importable when run as a script.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.llm import LLM

DEFAULT_DATA = ROOT.parent / "shared" / "bench" / "scifact"
MODES = ("dense", "lexical", "hybrid")
DEPTH = 100  # documents retrieved per query: Recall@100 needs a hundred
METRICS = {"ndcg_cut_10": "nDCG@10", "recall_100": "Recall@100"}
RRF_K = 60  # Cormack et al. (2009)
RRF_ROW = "plain RRF (reference)"
CACHE_VERSION = 1  # bump when the way documents are written or ingested changes
# How a document's title is written: as the first line of a .txt file (BEIR's title + text),
# or as the Markdown heading of a .md file, which ragged carries into every chunk's heading.
TITLES = {"body": "txt", "heading": "md"}
RERANK_MODEL = "llama3.2:3b"  # the stand-in's chat model when --rerank asks for one
MINILM = "all-minilm"  # the Ollama name of all-MiniLM-L6-v2, which takes no instruction prefix


@dataclass(frozen=True)
class BeirSet:
    """A BEIR-format dataset: documents, the judged queries of one split, and their qrels."""

    name: str
    corpus: dict[str, tuple[str, str]]  # doc id -> (title, text)
    queries: dict[str, str]  # only queries that have judgements in this split
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> relevance grade
    fingerprint: str  # hash of the corpus file, for the index cache


@dataclass(frozen=True)
class ModeResult:
    mode: str
    ndcg_10: float
    recall_100: float
    ms_per_query: float
    fell_back: int  # queries answered in another mode (hybrid/dense without embeddings)
    judged: int = 0  # passages the chat model reranked, over all queries
    judge_tokens: int = 0  # prompt tokens those judgements took, as Ollama counted them


@dataclass(frozen=True)
class BenchReport:
    dataset: str
    documents: int
    chunks: int
    queries: int
    ingest_seconds: float
    embedded: int  # chunks embedded by this run (0 when the cached index was complete)
    results: list[ModeResult]


def load_beir(folder: Path, split: str = "test") -> BeirSet:
    """Read corpus.jsonl(.gz), queries.jsonl and qrels-<split>.tsv (header line, tab-separated)."""
    corpus_file = folder / "corpus.jsonl.gz"
    if not corpus_file.exists():
        corpus_file = folder / "corpus.jsonl"
    raw = corpus_file.read_bytes()
    text = gzip.decompress(raw) if corpus_file.suffix == ".gz" else raw
    corpus: dict[str, tuple[str, str]] = {}
    for line in text.decode("utf-8").splitlines():
        if line.strip():
            doc = json.loads(line)
            corpus[str(doc["_id"])] = (doc.get("title") or "", doc.get("text") or "")
    qrels: dict[str, dict[str, int]] = {}
    with (folder / f"qrels-{split}.tsv").open(encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            parts = line.rstrip("\n").split("\t")
            if n == 0 and not parts[-1].lstrip("-").isdigit():
                continue  # the header line
            if len(parts) == 3:
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    queries: dict[str, str] = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                q = json.loads(line)
                if str(q["_id"]) in qrels:
                    queries[str(q["_id"])] = q["text"]
    missing = set(qrels) - set(queries)
    if missing:
        raise SystemExit(f"{folder}: {len(missing)} judged queries are not in queries.jsonl")
    return BeirSet(folder.name, corpus, queries, qrels, hashlib.sha256(raw).hexdigest()[:16])


def doc_file(doc_id: str, suffix: str = "txt") -> str:
    """A file name that maps back to the id: BEIR ids may hold '/' or other awkward characters."""
    return f"{quote(doc_id, safe='')}.{suffix}"


def doc_id_of(rel_path: str) -> str:
    return unquote(Path(rel_path).name.rsplit(".", 1)[0])


def write_corpus(data: BeirSet, folder: Path, titles: str = "body") -> None:
    """One file per document: the title on the first line of a .txt file (BEIR's title +
    text), or with `titles="heading"` as the heading of a .md file."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = TITLES[titles]
    for doc_id, (title, text) in data.corpus.items():
        path = folder / doc_file(doc_id, suffix)
        heading = "# " if suffix == "md" else ""
        body = f"{heading}{title}\n\n{text}\n" if title else f"{text}\n"
        # Rewriting an unchanged file would change its mtime and make ingest hash it again.
        if not path.exists() or path.read_text(encoding="utf-8") != body:
            path.write_text(body, encoding="utf-8")


def evaluate(qrels: dict[str, dict[str, int]], run: dict[str, list[str]]) -> dict[str, float]:
    """Mean nDCG@10 and Recall@100 over all judged queries (a query with no hits scores 0)."""
    import pytrec_eval

    # pytrec_eval ranks by score; descending integers keep ragged's order and break no ties.
    scored = {q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in run.items()}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, set(METRICS)).evaluate(scored)
    return {m: sum(per_query.get(q, {}).get(m, 0.0) for q in qrels) / len(qrels) for m in METRICS}


def rrf(runs: Sequence[dict[str, list[str]]], k: int = RRF_K) -> dict[str, list[str]]:
    """Textbook reciprocal rank fusion, sum of 1 / (k + rank), of whole runs: the baseline that
    ragged's hybrid is measured against (e.g. 1st and 3rd: 1/61 + 1/63 = 0.0323)."""
    fused: dict[str, list[str]] = {}
    for qid in runs[0]:
        scores: dict[str, float] = {}
        for run in runs:
            for rank, doc in enumerate(run.get(qid, []), start=1):
                scores[doc] = scores.get(doc, 0.0) + 1 / (k + rank)
        fused[qid] = sorted(scores, key=lambda d: -scores[d])
    return fused


def search_all(
    data: BeirSet,
    settings: Settings,
    llm: LLM | None,
    mode: str,
    on_query: Callable[[int], None] | None = None,
) -> tuple[dict[str, list[str]], float, int, int, int]:
    """Every query through ragged's retrieve: doc ids in rank order, mean ms/query, fallbacks,
    and the passages reranked with the prompt tokens that took (0 without `rerank`)."""
    from ragged.index import open_index
    from ragged.retrieve import retrieve

    index = open_index(settings)
    run: dict[str, list[str]] = {}
    fell_back = judged = tokens = 0
    started = time.perf_counter()
    try:
        for n, (qid, question) in enumerate(data.queries.items(), start=1):
            result = retrieve(question, index, llm, k=DEPTH, mode=mode)
            fell_back += result.mode != mode
            if result.reranked is not None:
                judged += result.reranked.judged
                tokens += result.reranked.prompt_tokens
            docs: list[str] = []
            for hit in result.hits:  # a document ranks where its best chunk does
                doc = doc_id_of(hit.path)
                if doc not in docs:
                    docs.append(doc)
            run[qid] = docs
            if on_query:
                on_query(n)
    finally:
        index.close()
    ms = (time.perf_counter() - started) * 1000 / max(1, len(data.queries))
    return run, ms, fell_back, judged, tokens


def build_index(
    data: BeirSet, settings: Settings, llm: LLM, docs_dir: Path, titles: str = "body"
) -> tuple[float, int]:
    """Write the corpus as files and ingest them with ragged; returns (seconds, chunks embedded)."""
    from ragged.index import open_index
    from ragged.ingest import ingest

    started = time.perf_counter()
    write_corpus(data, docs_dir, titles)
    with open_index(settings, create=True) as index:
        report = ingest([docs_dir], index, llm)
    if not report.ok:
        problem = report.embed_error or f"{report.failed} documents failed"
        raise SystemExit(f"ingest of {data.name} failed: {problem}")
    return time.perf_counter() - started, report.embedded


def run_benchmark(
    data: BeirSet,
    settings: Settings,
    llm: LLM,
    docs_dir: Path,
    modes: Sequence[str] = MODES,
    on_status: Callable[[str], None] | None = None,
    titles: str = "body",
) -> BenchReport:
    """Ingest `data` under settings.home and score each retrieval mode on its judged queries."""
    from ragged.catalog import open_catalog

    say = on_status or (lambda _msg: None)
    say(f"ingesting {len(data.corpus)} documents")
    seconds, embedded = build_index(data, settings, llm, docs_dir, titles)
    catalog = open_catalog(settings)
    chunks = catalog.chunk_count()
    catalog.close()
    results = []
    runs: dict[str, dict[str, list[str]]] = {}
    for mode in modes:
        say(f"{mode}: {len(data.queries)} queries")
        runs[mode], ms, fell_back, judged, tokens = search_all(data, settings, llm, mode)
        scores = evaluate(data.qrels, runs[mode])
        results.append(
            ModeResult(
                mode, scores["ndcg_cut_10"], scores["recall_100"], ms, fell_back, judged, tokens
            )
        )
    if "dense" in runs and "lexical" in runs:
        # What hybrid would score with rank fusion of the same two runs, for comparison.
        scores = evaluate(data.qrels, rrf([runs["dense"], runs["lexical"]]))
        results.append(ModeResult(RRF_ROW, scores["ndcg_cut_10"], scores["recall_100"], 0.0, 0))
    return BenchReport(
        data.name, len(data.corpus), chunks, len(data.queries), seconds, embedded, results
    )


def bench_settings(
    home: Path,
    ollama_host: str | None,
    embed_model: str | None,
    rerank: int | None = None,
    chat_model: str | None = None,
) -> Settings:
    """The user's configuration, with what evaluation needs: DEPTH distinct documents per query
    and no relevance floor (it decides when `ask` gives up; it is not part of the ranking)."""
    from ragged.config import load_settings

    return load_settings(
        {
            "home": home,
            "ollama_host": ollama_host,
            "embed_model": embed_model,
            "top_k": DEPTH,
            "max_per_source": 1,
            "min_score": 0.0,
            "rerank": rerank,
            "chat_model": chat_model,
        }
    )


@contextmanager
def standin(embedder: str, model: str, chat_model: str | None = None) -> Iterator[str]:
    """An Ollama stand-in serving `model` (and `chat_model`, for reranking); yields its host."""
    models = (f"{model}:latest", *([chat_model] if chat_model else []))
    if embedder == "minilm":
        from bench.minilm import MiniLMStandIn

        server: Any = MiniLMStandIn(models=models)
    else:
        from tests.ollama_standin import OllamaStandIn

        server = OllamaStandIn(models=models)
    with server:
        yield server.host


def cache_dir(
    root: Path, data: BeirSet, backend: str, settings: Settings, titles: str = "body"
) -> Path:
    """One index per corpus, embedder, chunking and title format: anything else would change
    the vectors."""
    key = "|".join(
        map(
            str,
            (
                CACHE_VERSION,
                data.fingerprint,
                backend,
                settings.embed_model,
                settings.chunk_tokens,
                settings.chunk_overlap,
                *([] if titles == "body" else [titles]),  # keeps the older caches' keys
            ),
        )
    )
    return root / f"{data.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def render(report: BenchReport, backend: str, settings: Settings) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    out.print(
        f"{report.dataset}: {report.queries} queries, {report.documents} documents "
        f"({report.chunks} chunks); embeddings: {settings.embed_model} via {backend}",
        soft_wrap=True,
    )
    table = Table()
    table.add_column("mode")
    for label in METRICS.values():
        table.add_column(label, justify="right")
    table.add_column("ms/query", justify="right")
    for r in report.results:
        note = f" ({r.fell_back} fell back)" if r.fell_back else ""
        ms = f"{r.ms_per_query:.0f}" if r.mode in MODES else ""
        table.add_row(r.mode + note, f"{r.ndcg_10:.3f}", f"{r.recall_100:.3f}", ms)
    out.print(table)
    what = "cached index" if report.embedded == 0 else f"embedded {report.embedded} chunks"
    err = Console(stderr=True)
    err.print(
        f"ingest: {report.ingest_seconds:.0f} s ({what}); fusion: weights dense "
        f"{settings.dense_weight:g}, lexical {settings.lexical_weight:g}"
    )
    for r in report.results:
        if r.judged:
            err.print(
                f"rerank ({r.mode}): {r.judged / report.queries:.1f} passages judged per query "
                f"by {settings.chat_model}, {r.judge_tokens / r.judged:.0f} prompt tokens each"
            )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR dataset folder")
    p.add_argument("--split", default="test", help="qrels-<split>.tsv to evaluate (test, train)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--standin", action="store_true", help="use the Ollama stand-in")
    where.add_argument(
        "--ollama", action="store_true", help="use the configured Ollama (OLLAMA_HOST)"
    )
    p.add_argument(
        "--embedder",
        choices=("hashed", "minilm"),
        default="hashed",
        help="stand-in vectors: hashed words, or all-MiniLM-L6-v2 (the `bench` extra)",
    )
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated modes to score")
    p.add_argument(
        "--titles",
        choices=tuple(TITLES),
        default="body",
        help="a document's title as the first line of a .txt (body) or a Markdown heading",
    )
    p.add_argument(
        "--rerank",
        type=int,
        default=None,
        metavar="N",
        help="the chat model (RAGGED_CHAT_MODEL; the stand-in's judges by word overlap) "
        "reranks the best N passages of each query",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ragged-bench",
        help="where ingested indexes are kept between runs",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> BenchReport:
    from ragged.config import load_settings
    from ragged.llm import connect

    args = parse_args(argv)
    configured = load_settings()
    # An Ollama host the user chose (env or config file) is a real one; the default may be
    # nothing at all, and the benchmark should then still run.
    use_standin = args.standin or not (
        args.ollama or configured.sources.get("ollama_host", "default") != "default"
    )
    if args.embedder == "minilm" and not use_standin:
        raise SystemExit("--embedder minilm runs in the stand-in; drop --ollama / OLLAMA_HOST")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES):
        raise SystemExit(f"--modes takes some of {', '.join(MODES)}, not {args.modes!r}")
    data = load_beir(args.data, args.split)
    err = sys.stderr

    with ExitStack() as stack:
        host = model = None
        backend = "ollama"
        chat = None
        if use_standin:
            # all-MiniLM-L6-v2 is `all-minilm` in Ollama; hashed vectors take the configured name.
            model = MINILM if args.embedder == "minilm" else configured.embed_model
            chat = RERANK_MODEL if args.rerank else None
            host = stack.enter_context(standin(args.embedder, model, chat))
            backend = f"stand-in ({args.embedder})"
        probe = bench_settings(Path(tempfile.gettempdir()), host, model)
        where = cache_dir(
            args.cache, data, backend if use_standin else "ollama", probe, args.titles
        )
        settings = bench_settings(where / "home", host, model, args.rerank, chat)
        print(f"index: {where}", file=err)
        report = run_benchmark(
            data,
            settings,
            connect(settings),
            where / "docs",
            modes,
            on_status=lambda msg: print(msg, file=err, flush=True),
            titles=args.titles,
        )
    render(report, backend, settings)
    return report


if __name__ == "__main__":
    main()
