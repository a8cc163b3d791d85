"""`bench/run.py` end to end on tiny inputs: the harness must keep working as ragged changes.

This checks that every section runs and reports, not how fast anything is: timings belong
in `make bench`, never in a unit test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_runs_every_section(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "run.py"),
        "--quick",
        "--sizes",
        "200",
        "--reps",
        "1",
        "--queries",
        "3",
        "--reingest-files",
        "20",
        "--corpus",
        str(ROOT / "tests" / "data" / "docs"),
        "--no-peers",
        "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout)
    sections = {row["section"] for row in payload["rows"]}
    assert sections == {"start-up", "ingest", "re-ingest", "cold", "scale"}
    statuses = {row["status"] for row in payload["rows"]}
    assert statuses <= {"PASS", "MISS", "info"}
    (ragged,) = payload["data"]["ingest"]["corpus"]["ragged"]
    assert ragged["embedded"] == ragged["embedded_inputs"]


def test_bench_memory_runs_both_sections(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "memory.py"),
        "--huge-mb",
        "0.2",
        "--whole-mb",
        "0.1",
        "--collection-chunks",
        "30",
        "--corpus",
        str(ROOT / "tests" / "data" / "docs"),
        "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)["rows"]
    assert [r["section"] for r in rows] == ["huge", "huge"] + ["collection"] * 6
    assert all(r["peak_rss_mb"] > 0 for r in rows)
