"""`bench/serve.py` end to end on tiny inputs: the harness must keep working as ragged changes.

It checks that every section runs and that no request failed, not how fast anything is:
timings belong in `make bench-serve`, never in a unit test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_serve_runs_every_section_without_errors(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "bench" / "serve.py"), "--clients", "3", "--requests", "6"]
    cmd += ["--sequential", "3", "--chat-turns", "2", "--first-token-delay", "0.01", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout)
    sections = {row["section"] for row in payload["rows"]}
    assert sections == {"serve, 1 client", "serve, 3 clients", "chat warm path"}
    assert payload["data"]["serve_n"]["requests"] == 6
    assert payload["data"]["serve_1"]["errors"] == payload["data"]["serve_n"]["errors"] == 0
