"""One measured piece of ragged work in a fresh process: ingest, search or ask.

The benchmark runs this as a child (`python bench/worker.py '<json spec>'`) so that every
measurement starts from a cold interpreter, as a `ragged` command does, and so that the
Ollama stand-in (another process) never competes for this process's GIL. The result is
one JSON line prefixed with RESULT_MARK on stdout.

Timings are taken around ragged's own core calls (ingest(), retrieve(), answer()), after
the same set-up the CLI does (settings, then llm/store/catalog), so they are "in-process
time beyond start-up".
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULT_MARK = "BENCH-RESULT "


def peak_rss_mb() -> float:
    """This process's high-water RSS (VmHWM), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Profile:
    """pyinstrument around a block when asked for, else nothing."""

    def __init__(self, out: str | None) -> None:
        self.out = out
        self.profiler: Any = None

    def __enter__(self) -> Profile:
        if self.out:
            try:
                from pyinstrument import Profiler
            except ImportError:
                sys.exit(
                    "profiling needs pyinstrument: .venv/bin/pip install pyinstrument (it is in the bench extra)"
                )
            self.profiler = Profiler(interval=0.005)
            self.profiler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.profiler is not None and self.out:
            self.profiler.stop()
            Path(self.out).write_text(
                self.profiler.output_text(unicode=False, color=False, show_all=False)
            )
            Path(self.out).with_suffix(".html").write_text(self.profiler.output_html())


def _open(settings: Any, create: bool = False) -> tuple[Any, Any]:
    # The same two factories the CLI uses.
    from ragged.index import open_index
    from ragged.llm import connect

    return connect(settings), open_index(settings, create=create)


def do_ingest(spec: dict[str, Any]) -> dict[str, Any]:
    from ragged.config import load_settings

    started = time.perf_counter()
    settings = load_settings(spec.get("flags") or {})
    llm, index = _open(settings, create=True)
    opened = time.perf_counter()
    from ragged.ingest import ingest

    paths = [Path(p) for p in spec["paths"]]
    with Profile(spec.get("profile")):
        t0 = time.perf_counter()
        report = ingest(paths, index, llm)
        t1 = time.perf_counter()
    unchanged: list[float] = []
    for _ in range(int(spec.get("repeat_unchanged", 0))):
        t0 = time.perf_counter()
        again = ingest(paths, index, llm)
        unchanged.append(time.perf_counter() - t0)
        assert again.added == again.updated == 0, "a re-ingest of unchanged files did work"
    return {
        "open_s": opened - started,
        "ingest_s": t1 - t0,
        # perf_counter is CLOCK_MONOTONIC on Linux, shared by all processes: the stand-in's
        # work intervals can be placed on this run's timeline.
        "t0": t0,
        "t1": t1,
        "unchanged_s": unchanged,
        "files": report.added + report.updated + report.unchanged,
        "failed": report.failed,
        "chunks": report.chunks,
        "embedded": report.embedded,
        "embed_error": report.embed_error,
        "peak_rss_mb": peak_rss_mb(),
    }


def do_search(spec: dict[str, Any]) -> dict[str, Any]:
    """Time retrieve() per query, and inside it the one embedding call, to subtract it."""
    from ragged.config import load_settings
    from ragged.retrieve import retrieve

    settings = load_settings(spec.get("flags") or {})
    llm, index = _open(settings)
    embed_times: list[float] = []
    embed = llm.embed

    def timed_embed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return embed(*args, **kwargs)
        finally:
            embed_times.append(time.perf_counter() - t0)

    llm.embed = timed_embed
    queries: list[str] = spec["queries"]
    warmup = int(spec.get("warmup", 3))
    # The first queries in a process pay for loading Chroma's index and SQLite's pages;
    # they are timed apart, since a one-shot `ragged search` pays them every time.
    cold: list[float] = []
    for q in queries[:warmup]:
        embed_times.clear()
        t0 = time.perf_counter()
        retrieve(q, index, llm)
        cold.append(time.perf_counter() - t0 - sum(embed_times))
    totals: list[float] = []
    embeds: list[float] = []
    with Profile(spec.get("profile")):
        for q in queries[warmup:]:
            embed_times.clear()
            t0 = time.perf_counter()
            result = retrieve(q, index, llm)
            totals.append(time.perf_counter() - t0)
            embeds.append(sum(embed_times))
            assert result.mode == settings.mode, result.notice
    return {
        "chunks": index.store.count(),
        "total_s": totals,
        "embed_s": embeds,
        "cold_s": cold,
        "peak_rss_mb": peak_rss_mb(),
    }


def do_ask(spec: dict[str, Any]) -> dict[str, Any]:
    """The ask command's path, in its order: open, retrieve, answer; first token timed.

    The first question is what `ragged ask` pays: Chroma and the Ollama client are opened
    lazily inside it. The later ones are what a long-lived Python caller pays.
    """
    t_start = time.perf_counter()
    from ragged.answer import answer
    from ragged.config import load_settings
    from ragged.models import resolve_chat_model
    from ragged.retrieve import retrieve

    settings = load_settings(spec.get("flags") or {})
    llm, index = _open(settings)
    chat_model, _ = resolve_chat_model(settings)
    t_core = time.perf_counter()
    out: dict[str, Any] = {"setup_s": t_core - t_start, "ttft_s": [], "retrieve_s": []}
    for question in spec["questions"]:
        t0 = time.perf_counter()
        first: list[float] = []

        def on_token(piece: str, first: list[float] = first) -> None:
            if not first:
                first.append(time.perf_counter())

        result = retrieve(question, index, llm)
        out["retrieve_s"].append(time.perf_counter() - t0)
        reply = answer(result, llm, chat_model, settings, on_token=on_token)
        assert reply.answered and first, f"the stand-in gave no answer to {question!r}"
        out["ttft_s"].append(first[0] - t0)
    return out


OPS = {"ingest": do_ingest, "search": do_search, "ask": do_ask}

if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    os.environ.update(spec.get("env") or {})
    result = OPS[spec["op"]](spec)
    print(RESULT_MARK + json.dumps(result), flush=True)
