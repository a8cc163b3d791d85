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


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """bench/run.py on the tests' small docs folder, without the peers."""
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), *args, "--no-peers"]
    cmd += ["--corpus", str(ROOT / "tests" / "data" / "docs")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_bench_quick_runs_every_section(tmp_path: Path) -> None:
    done = run_bench(
        tmp_path,
        *("--quick", "--sizes", "200", "--reps", "1", "--queries", "3"),
        *("--reingest-files", "20", "--json"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout)
    sections = {row["section"] for row in payload["rows"]}
    assert sections == {"start-up", "ingest", "re-ingest", "cold", "scale"}
    statuses = {row["status"] for row in payload["rows"]}
    assert statuses <= {"PASS", "MISS", "info"}
    (ragged,) = payload["data"]["ingest"]["corpus"]["ragged"]
    assert ragged["embedded"] == ragged["embedded_inputs"]


def test_bench_against_ingests_another_revision_beside_this_checkout(tmp_path: Path) -> None:
    # HEAD exported with git archive: the same code as this checkout when nothing is
    # uncommitted, but run from its own tree (bench/run.py --against measures changes).
    done = run_bench(
        tmp_path, "--quick", "--sections", "ingest", "--reps", "1", "--against", "HEAD", "--json"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout)
    measures = [row["measure"] for row in payload["rows"]]
    assert "corpus: ragged at HEAD (medians)" in measures
    assert "corpus: this checkout's wall / HEAD's" in measures
    runs = payload["data"]["ingest"]["corpus"]
    (mine,), (theirs,) = runs["ragged"], runs["against"]
    assert mine["chunks"] == theirs["chunks"] > 0
    assert theirs["embedded"] == theirs["embedded_inputs"] == mine["embedded"]


def test_bench_against_names_a_revision_git_does_not_know(tmp_path: Path) -> None:
    done = run_bench(tmp_path, "--sections", "ingest", "--against", "no-such-revision")
    assert done.returncode != 0
    assert "--against no-such-revision: git archive failed" in done.stderr


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


def test_bench_edit_times_an_edited_files_ingest_beside_another_revision(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "bench" / "edit.py"), "--size", "150", "--reps", "1"]
    done = subprocess.run(
        [*cmd, "--against", "HEAD"], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("this: median ") for line in lines), done.stdout
    assert any(line.startswith("HEAD: median ") for line in lines), done.stdout
    assert any(line.startswith("this / HEAD: ") for line in lines), done.stdout


def test_bench_page_size_measures_each_page_size(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "bench" / "page_size.py"), "--tokens", "512"]
    cmd += ["--corpus", str(ROOT / "tests" / "data" / "docs")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("| 512 |")]
    sizes = [cell.strip() for cell in row.strip("|").split("|")[1:]]
    assert len(sizes) == 5 and sum(cell.startswith("**") for cell in sizes) >= 1, row
    assert all(float(cell.strip("*")) > 0 for cell in sizes), row
