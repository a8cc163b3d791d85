"""Commands started together on a brand-new data dir: each one works or says what is missing.

Reproduced on the real CLI: a first `ragged ingest` with three `ragged search` started beside
it failed a search in two rounds out of five with "cannot open Chroma ... table collections
already exists" (Chroma's own migrations racing), or "the catalog is damaged (no such column:
root)" (two processes upgrading the catalog's schema one after the other).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ragged.catalog import SCHEMA_VERSION, open_catalog
from ragged.config import load_settings
from ragged.store import open_store
from tests.ollama_standin import OllamaStandIn

RAGGED = [sys.executable, "-m", "ragged"]
# Neither failure below ever came with "damaged" or "cannot open"; a search that started
# before the ingest made the collection may say that it does not exist yet.
NOT_YET = "does not exist"


def test_a_first_ingest_and_searches_started_together_all_work(
    ollama: OllamaStandIn, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(3):
        (docs / f"note{n}.md").write_text(f"# Note {n}\n\nThe quetzal nests in cloud forest {n}.\n")
    for round_ in range(3):
        environ = {**os.environ, "RAGGED_HOME": str(tmp_path / f"home{round_}")}
        environ["OLLAMA_HOST"] = ollama.host
        procs = [subprocess.Popen([*RAGGED, "ingest", str(docs), "--json"], **_pipes(environ))]
        procs += [
            subprocess.Popen([*RAGGED, "search", "quetzal", "--json"], **_pipes(environ))
            for _ in range(3)
        ]
        outcomes = [(p, *p.communicate(timeout=120)) for p in procs]
        ingest, out, err = outcomes[0]
        assert ingest.returncode == 0, err
        assert json.loads(out)["added"] == 3
        for search, out, err in outcomes[1:]:
            if search.returncode:
                assert NOT_YET in err and len(err.strip().splitlines()) <= 2, err
            else:
                assert json.loads(out)["query"] == "quetzal"
        after = subprocess.run(
            [*RAGGED, "search", "quetzal", "--json"], env=environ, capture_output=True, text=True
        )
        assert after.returncode == 0, after.stderr
        assert len(json.loads(after.stdout)["hits"]) == 3


def _pipes(environ: dict[str, str]) -> dict[str, Any]:
    return {"env": environ, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}


# -- the same moment, made exact: processes released together by a barrier -------------------


def _open_on_cue(home: str, barrier: Any, what: str, results: Any) -> None:
    os.environ["RAGGED_HOME"] = home
    settings = load_settings()
    barrier.wait()
    try:
        if what == "catalog":
            catalog = open_catalog(settings)
            version = catalog.meta("schema_version")
            catalog.close()
            results.put(f"ok {version}")
        else:
            open_store(settings).exists  # noqa: B018 - opening the client is the point
            results.put("ok")
    except Exception as exc:  # reported to the parent, which asserts on it
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.skipif(sys.platform == "win32", reason="fork() releases the processes together")
@pytest.mark.parametrize("what", ["catalog", "chroma"])
def test_processes_opening_a_new_store_at_the_same_moment_all_succeed(
    what: str, tmp_path: Path
) -> None:
    # fork, so every process has its imports done and only the opening itself races.
    context = multiprocessing.get_context("fork")
    if what == "chroma":
        import chromadb  # noqa: F401 - imported before fork, as the note above says
    workers = 4
    for round_ in range(4):
        home = str(tmp_path / f"home{round_}")
        if what == "chroma":
            # As a first ingest leaves it for a moment (ragged makes the file private before
            # Chroma fills it): a reader opens Chroma rather than find no store at all.
            (Path(home) / "chroma").mkdir(parents=True)
            (Path(home) / "chroma" / "chroma.sqlite3").touch()
        barrier, results = context.Barrier(workers), context.Queue()
        procs = [
            context.Process(target=_open_on_cue, args=(home, barrier, what, results))
            for _ in range(workers)
        ]
        for proc in procs:
            proc.start()
        outcomes = sorted(results.get(timeout=120) for _ in procs)
        for proc in procs:
            proc.join(timeout=60)
        want = f"ok {SCHEMA_VERSION}" if what == "catalog" else "ok"
        assert outcomes == [want] * workers
