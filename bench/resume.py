"""Embedding what an earlier run left pending: the run after Ollama was down.

`ragged ingest` with Ollama unreachable stores every chunk as text, pending; the next run
(here `ingest()` with no paths, as `ragged ingest` or `doctor --fix` does it) embeds them
all. That run is timed in a fresh process against an instant Ollama stand-in, so what it
measures is ragged's own work: Chroma's writes and the catalog's bookkeeping.

    .venv/bin/python bench/resume.py                        # 10k and 30k pending chunks
    .venv/bin/python bench/resume.py --sizes 2000 --against HEAD~1
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import corpus as synth  # noqa: E402
from bench.run import export_revision  # noqa: E402
from bench.standin import StandInProcess  # noqa: E402
from bench.timing import WORKER, machine, median, worker  # noqa: E402

DOWN = "http://127.0.0.1:9"  # the discard port: nothing answers there


def clean_env() -> dict[str, str]:
    """This environment without the user's ragged settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGGED_")}
    return {**env, "ANONYMIZED_TELEMETRY": "False", "RAGGED_EMBED_CONCURRENCY": "4"}


def pending_home(docs: Path, home: Path) -> None:
    """A data dir holding `docs` as pending chunks: ingested while Ollama was down."""
    env = {**clean_env(), "RAGGED_HOME": str(home), "OLLAMA_HOST": DOWN}
    res = worker({"op": "ingest", "paths": [str(docs)]}, env)
    if not res["embed_error"] or res["embedded"]:
        raise RuntimeError(f"expected every chunk left pending, got {res}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="10000,30000", help="Pending chunks (default %(default)s)."
    )
    parser.add_argument("--reps", type=int, default=3, help="Runs of each (default %(default)s).")
    parser.add_argument("--against", metavar="REV", help="Also time ragged at git revision REV.")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ragged-resume-") as tmp_name:
        tmp = Path(tmp_name)
        scripts = {"this checkout": WORKER}
        if args.against:
            scripts[args.against] = str(
                export_revision(args.against, tmp / "against") / "bench" / "worker.py"
            )
        vocab = synth.vocabulary()
        with StandInProcess(num_parallel=4) as server:
            for size in (int(s) for s in args.sizes.split(",")):
                docs, base = tmp / f"docs-{size}", tmp / f"pending-{size}"
                files = synth.write_synthetic(docs, size, vocab)
                pending_home(docs, base)
                seconds: dict[str, list[float]] = {name: [] for name in scripts}
                chunks: dict[str, int] = {}
                for _ in range(args.reps):
                    for name, script in scripts.items():  # interleaved
                        home = tmp / "home"
                        shutil.rmtree(home, ignore_errors=True)
                        shutil.copytree(base, home)
                        env = {**clean_env(), "RAGGED_HOME": str(home), "OLLAMA_HOST": server.host}
                        res = worker({"op": "ingest", "paths": []}, env, script)
                        assert res["embed_error"] is None, res["embed_error"]
                        chunks[name] = res["embedded"]
                        seconds[name].append(res["ingest_s"])
                for name, runs in seconds.items():
                    print(
                        f"{chunks[name]} pending chunks in {files} files, {name}: "
                        f"{median(runs):.1f} s (median of {len(runs)}; "
                        f"{median(runs) / chunks[name] * 1000:.2f} ms a chunk)",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
