"""What keeping a machine's catalog in step with a shared Chroma server costs (issue 13).

Machine A writes N chunks into a real `chroma run` server through ragged's Index; machine
B (another data dir) then opens the collection, which refreshes its catalog from the server:

- first copy: B has never seen the collection (every chunk's text and metadata fetched);
- unchanged: nothing was written since B's last look (one request for the revision token);
- one file changed: A replaced one file's 10 chunks (ids compared, 10 chunks fetched).

    .venv/bin/python bench/refresh.py                  # 10k and 100k chunks (~15 min)
    .venv/bin/python bench/refresh.py --sizes 2000     # a quick look
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.timing import machine, median  # noqa: E402
from ragged.catalog import FileRecord, now  # noqa: E402
from ragged.config import load_settings  # noqa: E402
from ragged.index import Index, make_row, open_index  # noqa: E402
from tests.chroma_server import ChromaServer  # noqa: E402
from tests.conftest import new_chroma_database  # noqa: E402

CHUNKS_PER_FILE = 10
DIM = 384  # all-MiniLM-L6-v2's; the vector size only changes how long A's writes take
WORDS = "apple river stone cloud green table music paper light house quartz ember".split()


def write_file(index: Index, n: int, version: int, rng: random.Random) -> None:
    path = f"/bench/docs/file{n:06}.md"
    record = FileRecord(
        path,
        1000 + version,
        10**18 + version,
        f"h{n}-{version}",
        None,
        0,
        "pending",
        "bench",
        now(),
    )
    rows = [
        make_row(record, i, " ".join(rng.choice(WORDS) for _ in range(60)), None, f"Part {i}", 80)
        for i in range(CHUNKS_PER_FILE)
    ]
    index.stage(record, rows)
    vectors = [[rng.random() for _ in range(DIM)] for _ in rows]
    index.write_vectors(rows, vectors, "bench")


def fill(settings: object, chunks: int) -> None:
    rng = random.Random(7)
    with open_index(settings, create=True) as a:  # type: ignore[arg-type]
        a.begin_run()
        for n in range(chunks // CHUNKS_PER_FILE):
            write_file(a, n, 0, rng)
        a.end_run()


def timed_open(settings: object) -> tuple[float, int]:
    began = time.perf_counter()
    with open_index(settings) as b:  # type: ignore[arg-type]
        took = time.perf_counter() - began
        return took, b.catalog.chunk_count()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ragged-refresh-") as tmp:
        server = ChromaServer(Path(tmp) / "chroma").start()
        try:
            for size in args.sizes:
                database = new_chroma_database(server)
                common = {"chroma_url": server.url, "chroma_database": database}
                a = load_settings({**common, "home": Path(tmp) / f"a-{size}"})
                b = load_settings({**common, "home": Path(tmp) / f"b-{size}"})
                began = time.perf_counter()
                fill(a, size)
                print(f"{size} chunks written by A in {time.perf_counter() - began:.0f} s")
                first, count = timed_open(b)
                assert count == size, (count, size)
                unchanged = median([timed_open(b)[0] for _ in range(args.repeat)])
                changed = []
                rng = random.Random(11)
                for version in range(1, args.repeat + 1):
                    with open_index(a) as index:
                        index.begin_run()
                        write_file(index, 0, version, rng)
                        index.end_run()
                    took, count = timed_open(b)
                    assert count == size, (count, size)
                    changed.append(took)
                rows.append((size, first, unchanged, median(changed)))
        finally:
            server.stop()
    print()
    print("| chunks | first copy | unchanged | one file changed |")
    print("|---:|---:|---:|---:|")
    for size, first, unchanged, changed in rows:
        print(f"| {size:,} | {first:.2f} s | {unchanged * 1000:.0f} ms | {changed * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
