"""The embedded store's file size at each SQLite page size, by chunk size (issue 15).

For each `chunk_tokens` and each page size, a fresh data dir ingests the shared markdown
corpus through the real CLI with that page size forced in place of ragged's own choice
(`ragged.store.page_size_for`), and the file's size as built is printed. It is how the
rule in ragged/store.py (LARGE_PAGE) was chosen: docs/benchmarks.md, fifteenth pass.

    .venv/bin/python bench/page_size.py                     # 256 ... 2,000 tokens (~4 min)
    .venv/bin/python bench/page_size.py --tokens 512 2000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.standin import StandInProcess  # noqa: E402

CORPUS = ROOT.parent / "shared" / "bench" / "corpus" / "markdown"
SIZES = (4096, 8192, 16384, 32768, 65536)
# ragged's CLI with page_size_for replaced: the size is the script's first argument.
FORCED = (
    "import sys, ragged.store as store; size = int(sys.argv.pop(1)); "
    "store.page_size_for = lambda tokens: size; "
    "from ragged.cli import app; sys.argv[0] = 'ragged'; app()"
)


def built_size(host: str, tokens: int, page_size: int, corpus: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="ragged-page-") as home:
        env = dict(os.environ, RAGGED_HOME=home, OLLAMA_HOST=host, ANONYMIZED_TELEMETRY="False")
        subprocess.run(
            [sys.executable, "-c", FORCED, str(page_size), "ingest", str(corpus)]
            + ["--chunk-tokens", str(tokens), "--quiet"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return (Path(home) / "chroma" / "chroma.sqlite3").stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[256, 512, 768, 1000, 1500, 2000])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"no corpus at {args.corpus} (the shared bench material)")
    print("| `chunk_tokens` | " + " | ".join(f"{s // 1024} KB" for s in SIZES) + " |")
    print("| --- " * (len(SIZES) + 1) + "|")
    with StandInProcess() as server:
        for tokens in args.tokens:
            sizes = [built_size(server.host, tokens, size, args.corpus) for size in SIZES]
            smallest = min(sizes)
            cells = [f"**{s / 1e6:.1f}**" if s == smallest else f"{s / 1e6:.1f}" for s in sizes]
            print(f"| {tokens:,} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
