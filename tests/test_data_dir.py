"""The data dir as other users and other mounts see it: what deletion leaves on disk, who may
read it, and a data dir mounted read-only (issue 11)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.cli import app
from tests.ollama_standin import OllamaStandIn
from tests.test_ingest_robust import environ, stored_ids

RAGGED = [sys.executable, "-m", "ragged"]
SECRET = "quetzalvault"  # a word no other file holds


def run(runner: CliRunner, *args: str, ok: bool = True):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args), catch_exceptions=not ok)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def secret_docs(root: Path, n: int = 30) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        words = " ".join(f"word{i}x{j} about river deltas and sediment" for j in range(60))
        (root / f"doc{i:02}.md").write_text(f"# Doc {i}\n\n{words}\n")
    (root / "secret.md").write_text(
        f"# Payroll\n\nThe vault code is {SECRET}-{SECRET}. " + "Salaries and bonuses. " * 200
    )
    return root


def files_holding(home: Path, needle: str) -> list[str]:
    """Every file under the data dir whose bytes contain `needle` (text as stored: UTF-8)."""
    found = []
    for path in sorted(home.rglob("*")):
        if path.is_file() and needle.encode() in path.read_bytes():
            found.append(str(path.relative_to(home)))
    return found


# -- what "deleted" leaves on disk -------------------------------------------------------------


def test_removed_text_is_gone_from_every_file_and_the_rest_still_works(
    runner: CliRunner, ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    docs = secret_docs(tmp_path / "docs")
    run(runner, "ingest", str(docs), "--quiet")
    assert files_holding(env, SECRET)  # the catalog and Chroma's SQLite file hold it

    run(runner, "remove", str(docs / "secret.md"))
    assert files_holding(env, SECRET) == []
    assert files_holding(env, "Salaries and bonuses") == []
    # The other files are intact, in the catalog and in Chroma, and a fresh process (which
    # replays Chroma's log) agrees.
    assert files_holding(env, "word3x7") == [
        "catalog/embedded/default.sqlite",
        "chroma/chroma.sqlite3",
    ]
    chroma, catalog, pending = stored_ids(env)
    assert chroma == catalog and pending == 0 and len(chroma) >= 30
    done = subprocess.run(
        [*RAGGED, "search", " ".join(f"word5x{j}" for j in range(20)), "--mode", "dense", "--json"],
        env=environ(env, ollama, RAGGED_MIN_SCORE="0"),  # hashed vectors: low cosines
        capture_output=True,
        text=True,
    )
    hits = json.loads(done.stdout)["hits"]
    assert hits and hits[0]["path"].endswith("doc05.md")
    assert SECRET not in done.stdout


def test_reset_leaves_no_text_and_no_vector_files(
    runner: CliRunner,
    ollama: OllamaStandIn,
    env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = secret_docs(tmp_path / "docs", n=5)
    run(runner, "ingest", str(docs), "--quiet")
    chroma_dir = env / "chroma"
    segments = {p.name for p in chroma_dir.iterdir() if p.is_dir()}
    assert segments  # the HNSW folder of the collection

    run(runner, "reset", "--yes")
    assert files_holding(env, SECRET) == []
    assert files_holding(env, "sediment") == []
    assert not {p.name for p in chroma_dir.iterdir() if p.is_dir()} & segments
    # The store is still a working store: a new collection goes in and is found.
    monkeypatch.setenv("RAGGED_MIN_SCORE", "0")
    run(runner, "ingest", str(docs / "doc01.md"), "--quiet")
    query = " ".join(f"word1x{j}" for j in range(20))
    found = json.loads(run(runner, "search", query, "--mode", "dense", "--json").stdout)
    assert found["hits"][0]["path"].endswith("doc01.md")
