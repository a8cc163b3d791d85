"""Ingest against what real folders and real users do: kill -9, a second run, vanishing files."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ragged.catalog import open_catalog
from ragged.config import load_settings
from ragged.lock import write_lock
from ragged.store import open_store
from tests.conftest import bench_dir
from tests.ollama_standin import OllamaStandIn
from tests.pdfgen import bomb_pdf_bytes, write_pdf
from tests.terminal import run_in_terminal

RAGGED = [sys.executable, "-m", "ragged"]


def corpus(root: Path, n: int = 40) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        body = "\n\n".join(
            f"## Part {j}\n\nDocument {i} part {j} talks about topic{i % 7} and item{j}. " * 3
            for j in range(4)
        )
        (root / f"doc{i:03}.md").write_text(f"# Document {i}\n\n{body}\n")
    return root


def environ(home: Path, ollama: OllamaStandIn, **extra: str) -> dict[str, str]:
    return {**os.environ, "RAGGED_HOME": str(home), "OLLAMA_HOST": ollama.host, **extra}


def stored_ids(home: Path) -> tuple[set[str], set[str], int]:
    """(ids in Chroma, ids in the catalog, chunks still pending) of a data dir."""
    settings = load_settings({"home": home})
    catalog = open_catalog(settings)
    ids = {c.id for f in catalog.files() for c in catalog.chunks_of(f.path)}
    return open_store(settings).ids(), ids, catalog.pending_count()


def ingest_json(home: Path, ollama: OllamaStandIn, path: Path, *args: str) -> dict:  # type: ignore[type-arg]
    done = subprocess.run(
        [*RAGGED, "ingest", str(path), "--json", *args],
        env=environ(home, ollama),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def embedded_so_far(home: Path) -> int:
    """Chunks a running ingest has marked embedded, read from its catalog without locking it."""
    path = home / "catalog" / "embedded" / "default.sqlite"
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT count(*) FROM chunks WHERE embedded = 1").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:  # created but not yet migrated
        return 0


def test_sigkill_mid_run_then_rerun_equals_a_clean_run(
    ollama: OllamaStandIn, tmp_path: Path
) -> None:
    docs = corpus(tmp_path / "docs")
    clean_home, killed_home = tmp_path / "clean", tmp_path / "killed"
    small = ("--chunk-tokens", "64", "--chunk-overlap", "8")  # several chunks per file
    ingest_json(clean_home, ollama, docs, *small)
    clean_chroma, clean_catalog, _ = stored_ids(clean_home)
    assert clean_chroma == clean_catalog and len(clean_chroma) > 100

    ollama.embed_delay = 0.01  # slow enough to be killed half way
    ollama.reset()
    proc = subprocess.Popen(
        [*RAGGED, "ingest", str(docs), "--embed-batch", "4", *small],
        env=environ(killed_home, ollama),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Killed once the first vectors are in Chroma (the catalog marks chunks embedded only
    # after Chroma holds them; writes gather several embedding batches), long before the end.
    deadline = time.monotonic() + 60
    while embedded_so_far(killed_home) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial_chroma, _, pending = stored_ids(killed_home)
    assert 0 < len(partial_chroma) < len(clean_chroma)

    ollama.embed_delay = 0.0
    report = ingest_json(killed_home, ollama, docs, *small)
    assert report["failed"] == 0 and report["pending"] == 0
    chroma, catalog, pending = stored_ids(killed_home)
    # ids are derived from path + content + position, so equal sets mean equal chunks
    assert chroma == catalog == clean_chroma and pending == 0


def test_second_ingest_while_one_runs_exits_clearly(
    ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    with write_lock(env):
        done = subprocess.run(
            [*RAGGED, "ingest", str(docs)],
            env=environ(env, ollama),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"another ragged process (pid {os.getpid()}) is writing to {env}" in done.stderr
    assert "--wait" in done.stderr
    assert ollama.count("/api/embed") == 0


def test_an_ingest_told_to_wait_says_whom_it_waits_for_then_runs(
    ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    """`ingest --wait` behind another writer printed nothing until that one finished: in a
    script or a terminal it looked hung. It says once, on stderr, whom it waits for."""
    with write_lock(env):
        proc = subprocess.Popen(
            [*RAGGED, "ingest", str(docs), "--wait", "--json"],
            env=environ(env, ollama),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(proc.stderr.readline()))
        reader.start()
        reader.join(timeout=30)  # the lock is held all the while: the line comes before
        assert first and proc.poll() is None, "no word from an ingest that waits"
    stdout, rest = proc.communicate(timeout=60)
    line = first[0]
    assert line == f"! waiting for another ragged process (pid {os.getpid()}) writing to {env}\n"
    assert proc.returncode == 0, rest
    report = json.loads(stdout)
    assert report["chunks"] == report["embedded"] > 0
    assert "waiting" not in rest


@pytest.mark.parametrize("argv", [["remove", "notes.txt"], ["reset", "--yes"]])
def test_a_command_without_wait_is_not_told_to_use_it(
    ollama: OllamaStandIn, docs: Path, env: Path, argv: list[str]
) -> None:
    """Reproduced: `remove` and `reset` under another's lock hinted "run again with --wait",
    an option they do not have."""
    subprocess.run([*RAGGED, "ingest", str(docs), "-q"], env=environ(env, ollama), check=True)
    with write_lock(env):
        done = subprocess.run(
            [*RAGGED, *argv], env=environ(env, ollama), capture_output=True, text=True, cwd=docs
        )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"Error: another ragged process (pid {os.getpid()}) is writing to {env}",
        "hint: run this again when it has finished",
    ]


def test_a_file_that_vanishes_during_the_run(ollama: OllamaStandIn, docs: Path) -> None:
    from ragged.index import open_index
    from ragged.ingest import ingest
    from ragged.llm import connect

    settings = load_settings()
    victim = docs / "travel.html"
    seen = []

    def on_progress(p):  # type: ignore[no-untyped-def]
        if p.current == "travel.html" and victim.exists():
            victim.unlink()

    report = ingest(
        [docs],
        open_index(settings, create=True),
        connect(settings),
        on_progress=on_progress,
        on_file=seen.append,
    )
    assert report.failed == 1 and report.added == 4
    assert [(Path(o.path).name, o.reason) for o in seen if o.status == "failed"] == [
        ("travel.html", "vanished during the run")
    ]


def test_unreadable_file_is_named(ollama: OllamaStandIn, docs: Path, env: Path) -> None:
    secret = docs / "secret.md"
    secret.write_text("# Secret\n\nnobody may read this\n")
    secret.chmod(0)
    command = [*RAGGED, "ingest", str(docs)]
    if os.geteuid() == 0:
        # root reads everything; without these two capabilities the permission bits apply
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and util-linux's setpriv is missing")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--", *command]
    done = subprocess.run(
        command, env=environ(env, ollama), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert f"{secret}: permission denied" in done.stderr
    assert "added" in done.stdout and "Traceback" not in done.stderr
    listing = subprocess.run(
        [*RAGGED, "list", "--json"], env=environ(env, ollama), capture_output=True
    )
    statuses = {
        Path(s["path"]).name: (s["status"], s["reason"]) for s in json.loads(listing.stdout)
    }
    assert len(statuses) == 6 and statuses["secret.md"] == ("failed", "permission denied")


def test_a_pdf_that_needs_more_memory_than_allowed_fails_alone_and_the_run_goes_on(
    ollama: OllamaStandIn, tmp_path: Path, env: Path
) -> None:
    """0.2: a 1.1 MB PDF whose one page shows 300 MB of text took its parser process past
    10 GB, and on until the system's OOM killer stopped it (or another program). A parser
    process that died made every PDF queued beside it fail as "parser crashed", and the next
    one submitted ended the run with a traceback (BrokenProcessPool)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(30):
        write_pdf(docs / f"report{i:02}.pdf", [[f"Report {i} on harbour item{i}."]])
    bomb = docs / "bomb.pdf"
    bomb.write_bytes(bomb_pdf_bytes(text_mb=60, pad_mb=1))  # the largest: parsed first
    done = subprocess.run(
        [*RAGGED, "ingest", str(docs), "--json"],
        env=environ(env, ollama, RAGGED_PARSER_MEMORY_MB="400"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "parser crashed" not in done.stderr, done.stderr
    report = json.loads(done.stdout)
    assert (report["added"], report["failed"]) == (30, 1), done.stderr
    assert (
        f"✗ {bomb}: its parser process needed more than 400 MB of memory for it "
        "(parser_memory_mb)" in " ".join(done.stderr.split())
    ), done.stderr


def test_progress_shows_on_a_terminal_only(ollama: OllamaStandIn, docs: Path, env: Path) -> None:
    text = _run_in_terminal(
        [*RAGGED, "ingest", str(docs)], environ(env, ollama, TERM="xterm", COLUMNS="120")
    )
    assert "files" in text and "chunks" in text and "━" in text  # the live bar
    assert "added" in text  # then the summary table
    quiet = subprocess.run(
        [*RAGGED, "ingest", str(docs)], env=environ(env, ollama), capture_output=True, text=True
    )
    assert "━" not in quiet.stderr and "\x1b[" not in quiet.stderr


def test_unchanged_markdown_corpus_makes_no_embedding_requests(
    ollama: OllamaStandIn, env: Path
) -> None:
    markdown = bench_dir("corpus", "markdown")
    first = ingest_json(env, ollama, markdown)
    assert first["failed"] == 0 and first["added"] > 1000
    ollama.reset()
    second = ingest_json(env, ollama, markdown)
    assert second["unchanged"] == first["added"] and second["added"] == 0
    assert ollama.count("/api/embed") == 0


@pytest.mark.parametrize("flag", ["--no-prune"])
def test_no_prune_keeps_deleted_files(
    ollama: OllamaStandIn, docs: Path, env: Path, flag: str
) -> None:
    ingest_json(env, ollama, docs)
    (docs / "notes.txt").unlink()
    done = subprocess.run(
        [*RAGGED, "ingest", str(docs), flag, "--json"],
        env=environ(env, ollama),
        capture_output=True,
        text=True,
    )
    assert json.loads(done.stdout)["removed"] == 0


def _run_in_terminal(argv: list[str], env: dict[str, str]) -> str:
    return run_in_terminal(argv, env).output


def test_no_color_is_honoured_on_a_terminal(ollama: OllamaStandIn, docs: Path, env: Path) -> None:
    ingest_json(env, ollama, docs / "notes.txt")
    base = environ(env, ollama, TERM="xterm-256color", COLUMNS="120")
    argv = [*RAGGED, "search", "capybara", "--mode", "lexical"]
    coloured = _run_in_terminal(argv, base)
    plain = _run_in_terminal(argv, {**base, "NO_COLOR": "1"})
    assert "notes.txt" in coloured and has_colour(coloured)
    assert "notes.txt" in plain and not has_colour(plain)


def has_colour(text: str) -> bool:
    """Any SGR escape that sets a foreground or background colour (bold and italic are not)."""
    for params in re.findall(r"\x1b\[([0-9;]*)m", text):
        codes = [int(p) for p in params.split(";") if p]
        if any(30 <= c <= 49 or 90 <= c <= 107 for c in codes):
            return True
    return False


def test_unchanged_reingest_does_not_open_chroma(
    ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    ingest_json(env, ollama, docs)
    assert modules_loaded_by_unchanged_reingest(env, ollama, docs) == "[]"


def test_searching_between_ingests_does_not_make_the_next_one_open_chroma(
    ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    """Reading moves embedded Chroma's own files. A search or ask in between made the next
    unchanged ingest take that for another writer's work and open Chroma (~0.5-1 s) to compare."""
    ingest_json(env, ollama, docs)
    for command in (["search", "capybara"], ["ask", "what do capybaras eat?"]):
        done = subprocess.run(
            [*RAGGED, *command],
            env=environ(env, ollama),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    assert modules_loaded_by_unchanged_reingest(env, ollama, docs) == "[]"


def test_a_purge_does_not_make_the_next_unchanged_ingest_open_chroma(
    ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    """Found in review: an ingest that purged deleted text (an edited file) rewrote the store's
    files after recording their fingerprint, so the next unchanged ingest opened Chroma."""
    ingest_json(env, ollama, docs)
    (docs / "notes.txt").write_text("Okapis are related to giraffes, not zebras.\n")
    assert ingest_json(env, ollama, docs)["purged"]
    assert modules_loaded_by_unchanged_reingest(env, ollama, docs) == "[]"


# What an unchanged re-ingest has no use for: the store, the Ollama client, the PDF parser and
# the tokenizer.
HEAVY = ("chromadb", "ollama", "pypdf", "tiktoken")


def modules_loaded_by_unchanged_reingest(env: Path, ollama: OllamaStandIn, docs: Path) -> str:
    """Which of the heavy libraries an unchanged re-ingest of `docs` imported."""
    probe = (
        "import sys\n"
        "from ragged.cli import app\n"
        "try:\n"
        f"    app(['ingest', {str(docs)!r}, '--quiet'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=environ(env, ollama), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_deleted_chroma_dir_is_noticed_and_refilled(
    ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    first = ingest_json(env, ollama, docs)
    shutil.rmtree(env / "chroma")
    ollama.reset()
    again = ingest_json(env, ollama, docs)
    assert again["unchanged"] == 5 and again["embedded"] == first["chunks"]
    chroma, catalog, pending = stored_ids(env)
    assert chroma == catalog and pending == 0
