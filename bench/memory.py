"""`make bench-memory`: peak memory of one huge text file, and of a 100k-chunk collection (issue 11).

Every figure is a real `ragged` command in a fresh process, against the Ollama stand-in in a
process of its own answering at once (so the run is as fast as ragged itself allows); peak
RSS is the child's own high-water mark (wait4's ru_maxrss, bench/timing.py).

    .venv/bin/python bench/memory.py                      # 200 MB file, 100k chunks (~30 min)
    .venv/bin/python bench/memory.py --huge-mb 5,20 --collection-chunks 2000   # a few minutes

- **huge**: one synthetic text file of each size in --huge-mb, `ragged ingest FILE
  --max-file-mb N`. Files over ragged.ingest.stream.STREAM_BYTES are read and chunked by
  blocks; --whole-mb sizes just under it show what the whole-file path costs per MB.
- **collection**: --collection-chunks chunks of synthetic markdown ingested, then the
  commands a user runs on such a collection: search, list, an unchanged re-ingest, the
  removal of one file (with the purge of its text from disk) and reset.

See docs/benchmarks.md ("## Memory") for the latest results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import corpus as synth  # noqa: E402
from bench.standin import StandInProcess  # noqa: E402
from bench.timing import RAGGED, Run, machine, run  # noqa: E402

CHAT_MODEL = "llama3.2:3b"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_huge(path: Path, megabytes: float, vocab: synth.Vocabulary, seed: int = 0) -> int:
    """A plain-text file of about `megabytes` MB of synthetic paragraphs; returns its size."""
    rng = np.random.default_rng(seed)
    target = int(megabytes * 1_000_000)
    written = 0
    with path.open("w", encoding="utf-8") as fh:
        while written < target:
            block = synth.markdown_file(vocab, rng, 50).replace("# ", "")
            fh.write(block + "\n")
            written += len(block.encode()) + 1
    return path.stat().st_size


def environ(home: Path, host: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RAGGED_") and k not in ("OLLAMA_HOST", "FORCE_COLOR")
    }
    env.update(
        RAGGED_HOME=str(home),
        OLLAMA_HOST=host,
        RAGGED_CHAT_MODEL=CHAT_MODEL,
        ANONYMIZED_TELEMETRY="False",
        TERMINAL_WIDTH="120",
        NO_COLOR="1",
    )
    return env


def checked(done: Run, what: str) -> Run:
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done


def row(rows: list[dict[str, Any]], section: str, measure: str, done: Run, note: str = "") -> None:
    rows.append(
        {
            "section": section,
            "measure": measure,
            "seconds": round(done.seconds, 1),
            "peak_rss_mb": round(done.peak_rss_mb),
            "note": note,
        }
    )
    log(f"{section}: {measure}: {done.seconds:.1f} s, peak RSS {done.peak_rss_mb:.0f} MB {note}")


def huge(args: argparse.Namespace, tmp: Path, host: str, rows: list[dict[str, Any]]) -> None:
    vocab = synth.vocabulary(args.corpus)
    for megabytes, way in [(m, "whole file") for m in args.whole_mb] + [
        (m, "streamed") for m in args.huge_mb
    ]:
        where = tmp / f"huge-{megabytes}"
        where.mkdir()
        path = where / "huge.txt"
        size = write_huge(path, megabytes, vocab, seed=int(megabytes * 10))
        log(f"huge: ingesting a {size / 1e6:.0f} MB text file ({way})")
        done = checked(
            run(
                [RAGGED, "ingest", str(path), "--max-file-mb", str(megabytes * 2), "--json"],
                environ(where / "home", host),
            ),
            "ingest",
        )
        report = json.loads(done.stdout)
        row(
            rows,
            "huge",
            f"ingest one {size / 1e6:.0f} MB .txt ({way})",
            done,
            f"{report['chunks']} chunks, {report['embedded']} embedded",
        )
        path.unlink()
        import shutil

        shutil.rmtree(where, ignore_errors=True)


def collection(args: argparse.Namespace, tmp: Path, host: str, rows: list[dict[str, Any]]) -> None:
    vocab = synth.vocabulary(args.corpus)
    docs, home = tmp / "collection" / "docs", tmp / "collection" / "home"
    files = synth.write_synthetic(docs, args.collection_chunks, vocab, seed=7)
    env = environ(home, host)
    label = (
        f"{args.collection_chunks // 1000}k"
        if args.collection_chunks >= 1000
        else str(args.collection_chunks)
    )
    log(f"collection: ingesting {files} files for about {args.collection_chunks} chunks")
    done = checked(run([RAGGED, "ingest", str(docs), "--quiet", "--json"], env), "ingest")
    chunks = json.loads(done.stdout)["chunks"]
    row(rows, "collection", f"ingest {label} chunks", done, f"{chunks} chunks, {files} files")
    query = " ".join(synth.queries(vocab, 1)[0].split())
    row(
        rows,
        "collection",
        "search (hybrid)",
        checked(run([RAGGED, "search", query], env), "search"),
    )
    row(rows, "collection", "list --json", checked(run([RAGGED, "list", "--json"], env), "list"))
    row(
        rows,
        "collection",
        "ingest, nothing changed",
        checked(run([RAGGED, "ingest", str(docs), "--quiet"], env), "re-ingest"),
    )
    size_before = _tree_mb(home)
    victim = next(docs.rglob("*.md"))
    done = checked(run([RAGGED, "remove", str(victim)], env), "remove")
    row(
        rows,
        "collection",
        "remove one file (its text purged from disk)",
        done,
        f"data dir {size_before:.0f} MB -> {_tree_mb(home):.0f} MB",
    )
    done = checked(run([RAGGED, "reset", "--yes"], env), "reset")
    row(rows, "collection", "reset", done, f"data dir -> {_tree_mb(home):.0f} MB")


def _tree_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--huge-mb", default="20,200", help="Sizes of the streamed file (MB).")
    p.add_argument(
        "--whole-mb", default="15", help="Sizes read whole, under the streaming threshold (MB)."
    )
    p.add_argument("--collection-chunks", type=int, default=100_000)
    p.add_argument("--sections", default="huge,collection")
    p.add_argument("--corpus", type=Path, default=synth.SHARED_CORPUS)
    p.add_argument("--json", action="store_true", help="Print the rows as JSON.")
    args = p.parse_args(argv)
    args.huge_mb = [float(m) for m in args.huge_mb.split(",") if m.strip()]
    args.whole_mb = [float(m) for m in args.whole_mb.split(",") if m.strip()]
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    info = machine()
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="ragged-bench-memory-") as tmp_name,
        StandInProcess(num_parallel=2) as server,
    ):
        tmp = Path(tmp_name)
        if "huge" in args.sections:
            huge(args, tmp, server.host, rows)
        if "collection" in args.sections:
            collection(args, tmp, server.host, rows)
    took = time.perf_counter() - started
    command = "bench/memory.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.json:
        print(
            json.dumps(
                {"command": command, "seconds": took, "machine": info, "rows": rows}, indent=2
            )
        )
        return 0
    print(f"command: {command.strip()}  ({took:.0f} s)")
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, {info['os']}, "
        f"Python {info['python']}, load {info['load_1min_at_start']:.2f} at start"
    )
    print()
    print("| section | measure | seconds | peak RSS | note |")
    print("| --- | --- | ---: | ---: | --- |")
    for r in rows:
        print(
            f"| {r['section']} | {r['measure']} | {r['seconds']:.1f} | {r['peak_rss_mb']} MB | {r['note']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
