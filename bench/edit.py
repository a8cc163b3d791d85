"""An ingest after one edited file, purge included, at scale: this checkout beside another revision.

The scale section of bench/run.py times this once per size; this runs it side by side. A
synthetic folder of about N chunks (bench/corpus.py, as the scale section writes it) is
ingested once into a data dir, which is copied for --against's revision. Then, REPS times:
one file gets a paragraph more, and each revision's `ragged ingest` of the folder runs in
its own data dir, the two alternating which goes first. The stand-in answers at once, so
what is timed is ragged's own work: the walk, the edited file's chunks, the write, and the
purge of the old version's text (which costs in proportion to the store).

    .venv/bin/python bench/edit.py --against HEAD~1            # 100k chunks (~6 min)
    .venv/bin/python bench/edit.py --size 10000 --reps 9       # this checkout alone
"""

from __future__ import annotations

import argparse
import json
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
from bench.timing import machine, median, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="chunks (default 100,000)")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--against", metavar="REV", help="a git revision to run beside this one")
    args = parser.parse_args()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()), flush=True)
    with tempfile.TemporaryDirectory(prefix="ragged-edit-") as scratch, StandInProcess() as srv:
        tmp = Path(scratch)
        docs = tmp / "docs"
        vocab = synth.vocabulary()
        files = synth.write_synthetic(
            docs, args.size, vocab, seed=args.size, per_file=synth.chunks_per_file(vocab)
        )
        trees = {"this": ROOT}
        if args.against:
            trees[args.against] = export_revision(args.against, tmp / "against")

        def env(tree: Path, home: Path) -> dict[str, str]:
            keep = {k: v for k, v in os.environ.items() if not k.startswith("RAGGED_")}
            return keep | {
                "RAGGED_HOME": str(home),
                "OLLAMA_HOST": srv.host,
                "ANONYMIZED_TELEMETRY": "False",
                "NO_COLOR": "1",
                "PYTHONPATH": str(tree),  # that revision's ragged before the installed one
            }

        def ingest(tree: Path, home: Path) -> tuple[float, dict[str, object]]:
            # -P: not the working directory first on sys.path, which would put this
            # checkout's ragged before the revision's on PYTHONPATH.
            cmd = [sys.executable, "-P", "-m", "ragged", "ingest", str(docs), "--quiet", "--json"]
            done = run(cmd, env(tree, home))
            if done.returncode != 0:
                raise SystemExit(f"ragged ingest failed:\n{done.stderr[-2000:]}")
            return done.seconds, json.loads(done.stdout)

        first = tmp / "home-this"
        seconds, report = ingest(ROOT, first)
        print(f"{files} files, {report['chunks']} chunks, first ingest {seconds:.1f} s", flush=True)
        homes = {"this": first}
        for name in trees:
            if name != "this":
                homes[name] = tmp / "home-against"
                shutil.copytree(first, homes[name])
        edited = min(docs.rglob("*.md"))
        original = edited.read_text()
        times: dict[str, list[float]] = {name: [] for name in trees}
        for rep in range(args.reps):
            edited.write_text(original + f"\n\nOne more paragraph, added later ({rep}).\n")
            order = list(trees) if rep % 2 == 0 else list(reversed(trees))
            for name in order:
                seconds, report = ingest(trees[name], homes[name])
                if not report.get("purged"):
                    raise SystemExit(f"{name}: the ingest of an edited file did not purge")
                times[name].append(seconds)
        for name, xs in times.items():
            runs = " ".join(f"{x:.2f}" for x in xs)
            print(f"{name}: median {median(xs):.2f} s ({runs})")
        if args.against:
            ratio = median(times["this"]) / median(times[args.against])
            print(f"this / {args.against}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
