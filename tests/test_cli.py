"""The `ragged` command end to end: real ollama client -> Ollama stand-in, real embedded Chroma."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.__main__ import main
from ragged.answer import CANNOT_ANSWER_PHRASE
from ragged.cli import app
from tests.chroma_server import ChromaServer
from tests.fixed_reply import fixed_reply
from tests.ollama_standin import OllamaStandIn
from tests.pdfgen import write_pdf

# Every test runs against the embedded store and against a real `chroma run` server.
pytestmark = pytest.mark.usefixtures("chroma_mode")


def run(runner: CliRunner, *args: str, ok: bool = True, input: str | None = None):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args), catch_exceptions=not ok, input=input)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def ingested(runner: CliRunner, docs: Path) -> None:
    run(runner, "ingest", str(docs), "--quiet")


def test_ingest_reports_every_file_type(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    result = run(runner, "ingest", str(docs), "--json")
    report = json.loads(result.stdout)
    assert report["added"] == 5 and report["failed"] == 0 and report["pending"] == 0
    assert report["chunks"] >= 5
    listing = json.loads(run(runner, "list", "--json").stdout)
    names = sorted(Path(s["path"]).name for s in listing)
    assert names == ["install.md", "notes.txt", "reference.rst", "report.pdf", "travel.html"]
    pdf = next(s for s in listing if s["path"].endswith("report.pdf"))
    assert pdf["pages"] == 2 and pdf["status"] == "ok"


def test_ingest_summary_for_people(runner: CliRunner, ollama: OllamaStandIn, docs: Path) -> None:
    result = run(runner, "ingest", str(docs))
    files, chunks = result.stdout.splitlines()
    assert files == "files   5 added"
    assert chunks.startswith("chunks  6 stored · 6 embedded · in ")


def test_second_ingest_embeds_nothing(runner: CliRunner, ollama: OllamaStandIn, docs: Path) -> None:
    ingested(runner, docs)
    before = ollama.count("/api/embed")
    report = json.loads(run(runner, "ingest", str(docs), "--json").stdout)
    assert report["unchanged"] == 5 and report["added"] == 0
    assert ollama.count("/api/embed") == before


def test_search_ranks_the_relevant_file_first(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    ingested(runner, docs)
    result = json.loads(run(runner, "search", "largest living rodent capybara", "--json").stdout)
    assert result["mode"] == "hybrid"
    assert Path(result["hits"][0]["path"]).name == "notes.txt"
    # no language model is involved in a search
    assert ollama.count("/api/chat") == 0


def test_search_table_shows_source_and_page(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    ingested(runner, docs)
    result = run(runner, "search", "lighthouse keeper salary")
    assert "report.pdf" in result.stdout and "page 2" in result.stdout


def test_ask_streams_a_cited_answer(runner: CliRunner, ollama: OllamaStandIn, docs: Path) -> None:
    ingested(runner, docs)
    result = run(runner, "ask", "How long does the ferry to Zanzibar take?")
    assert "two hours" in result.stdout
    assert "[1]" in result.stdout
    sources = result.stdout.split("Sources", 1)[1]
    assert "travel.html" in sources
    chat = [r for r in ollama.requests if r.path == "/api/chat"]
    assert len(chat) == 1 and chat[0].body["stream"] is True
    # num_ctx always goes along, so Ollama's default window never silently cuts the prompt
    assert chat[0].body["options"]["num_ctx"] == 8192


def test_ask_cites_the_right_pdf_page(runner: CliRunner, ollama: OllamaStandIn, docs: Path) -> None:
    ingested(runner, docs)
    data = json.loads(
        run(runner, "ask", "What was the lighthouse keeper salary in 1890?", "--json").stdout
    )
    assert "40 pounds" in data["answer"]
    cited = [s for s in data["sources"] if s["cited"]]
    assert Path(cited[0]["path"]).name == "report.pdf" and cited[0]["page"] == 2
    assert data["model"] == "llama3.2:3b" and data["timings"]["total_s"] > 0


def test_ask_drops_citations_of_sources_never_given(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    ingested(runner, docs)
    ollama.answer_override = "Capybaras swim well [1] and fly [7]."
    result = run(runner, "ask", "Can capybaras swim?", "-k", "3")
    assert "[7]" in result.stderr and "names no source given" in result.stderr
    sources = result.stdout.split("Sources", 1)[1]
    assert "[7]" not in sources


def test_ask_with_nothing_relevant_does_not_call_the_model(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    ingested(runner, docs)
    result = run(runner, "ask", "xylophone quantum zeppelin", "--mode", "dense")
    assert "Nothing relevant" in result.stdout
    assert ollama.count("/api/chat") == 0


def test_model_says_it_does_not_know(runner: CliRunner, ollama: OllamaStandIn, docs: Path) -> None:
    ingested(runner, docs)
    ollama.answer_override = CANNOT_ANSWER_PHRASE
    # Retrieval finds the capybara passage relevant; the model still finds no answer in it.
    result = run(runner, "ask", "Do capybaras live near rivers?")
    assert CANNOT_ANSWER_PHRASE in result.stdout


def test_ollama_down_gives_one_clear_line(runner: CliRunner, ollama_down: str, docs: Path) -> None:
    result = run(runner, "ingest", str(docs), ok=False)
    assert result.exit_code == 1
    assert f"Ollama isn't running at http://{ollama_down}" in result.stderr
    assert "ollama serve" in result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def not_ollama(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """OLLAMA_HOST at an HTTP server that is not Ollama: it answers 200 with a web page, as a
    proxy's error page or another service on the port does."""
    with fixed_reply(b"<html><body>Welcome to nginx!</body></html>") as host:
        monkeypatch.setenv("OLLAMA_HOST", host)
        yield host


def test_a_host_that_is_not_ollama_gives_one_clear_line(
    runner: CliRunner, not_ollama: str, docs: Path
) -> None:
    # It was a JSONDecodeError traceback from the ollama client, in ingest, search and doctor.
    result = run(runner, "ingest", str(docs), ok=False)
    assert result.exit_code == 1
    assert f"{not_ollama} answered, but its reply is not Ollama's" in result.stderr
    assert "OLLAMA_HOST" in result.stderr and "Traceback" not in result.output
    pending = json.loads(run(runner, "list", "--json").stdout)
    assert pending and all(f["status"] == "pending" for f in pending)  # the text is kept
    result = run(runner, "search", "capybara", ok=False)
    assert f"{not_ollama} answered, but its reply is not Ollama's" in result.stderr
    assert "Traceback" not in result.output
    result = run(runner, "doctor", ok=False)
    assert "Traceback" not in result.output and "not Ollama's" in result.output


@pytest.mark.server
def test_a_host_that_answers_404_is_not_taken_for_ollama_without_the_model(
    runner: CliRunner, chroma_server: ChromaServer, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OLLAMA_HOST at the Chroma server's port (8001 beside 11434 in the compose file): its 404
    read as Ollama's "model not found", and ragged said to `ollama pull` a model; doctor said
    "Ollama at URL failed:  (HTTP 404)" and sent the user to Ollama's log."""
    monkeypatch.setenv("OLLAMA_HOST", chroma_server.url)
    result = run(runner, "ingest", str(docs), ok=False)
    assert result.exit_code == 1
    assert (
        f"{chroma_server.url} answered, but its reply is not Ollama's (HTTP 404 to /api/"
        in result.stderr
    )
    assert "check OLLAMA_HOST" in result.stderr and "await embeddings" in result.stderr
    assert "ollama pull" not in result.stderr and "not pulled" not in result.stderr
    doctor = run(runner, "doctor", "--json", ok=False)
    check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "ollama")
    assert check["status"] == "fail"
    assert check["detail"].endswith("reply is not Ollama's (HTTP 404 to /api/tags)")
    assert "check OLLAMA_HOST" in check["fix"] and "server log" not in check["fix"]


def test_missing_chat_model_names_the_pull_command(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    ingested(runner, docs)
    result = run(runner, "ask", "capybara?", "--model", "mistral:7b", ok=False)
    assert result.exit_code == 1
    assert "model 'mistral:7b' is not pulled" in result.stderr
    assert "ollama pull mistral:7b" in result.stderr


def test_an_embedding_model_named_as_the_chat_model_says_so(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    """0.2 passed Ollama's 400 on with "see the Ollama server log" as the hint, which has
    nothing more to say."""
    ingested(runner, docs)
    result = run(runner, "ask", "capybara?", "--model", "nomic-embed-text", ok=False)
    assert result.exit_code == 1
    said = " ".join(result.stderr.split())
    assert "nomic-embed-text cannot answer questions: Ollama says it does not support chat" in said
    assert "name a chat model" in said and "--model" in said and "server log" not in said


def test_missing_embedding_model_keeps_text_pending(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    ollama.remove_model("nomic-embed-text:latest")
    result = run(runner, "ingest", str(docs), ok=False)
    assert result.exit_code == 1
    assert "ollama pull nomic-embed-text" in result.stderr
    assert "await embeddings" in result.stderr
    listing = json.loads(run(runner, "list", "--json").stdout)
    assert {s["status"] for s in listing} == {"pending"}
    ollama.add_model("nomic-embed-text:latest")
    ollama.reset()
    report = json.loads(run(runner, "ingest", str(docs), "--json").stdout)
    assert report["pending"] == 0 and report["unchanged"] == 5
    assert report["embedded"] == ollama.embedded_inputs > 0
    listing = json.loads(run(runner, "list", "--json").stdout)
    assert {s["status"] for s in listing} == {"ok"}


def test_mismatched_embedding_model_is_refused(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    ingested(runner, docs)
    ollama.add_model("all-minilm:latest")
    for args in (["search", "capybara"], ["ingest", str(docs)]):
        result = run(runner, *args, "--embed-model", "all-minilm", ok=False)
        assert result.exit_code == 1
        assert "was built with embedding model nomic-embed-text" in result.stderr
        assert "not all-minilm" in result.stderr


def test_empty_folder(runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(runner, "ingest", str(empty))
    assert "no supported documents found" in result.stderr


def test_path_that_does_not_exist(runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = run(runner, "ingest", str(missing), ok=False)
    assert result.exit_code == 1
    assert f"{missing}: no such file or directory" in result.stderr


@pytest.mark.parametrize("url", ["https://example.com/paper.pdf", "http://intranet/wiki/home.html"])
def test_a_url_is_named_as_one_not_as_a_missing_file(
    runner: CliRunner, ollama: OllamaStandIn, url: str
) -> None:
    """0.2 said "https:/example.com/paper.pdf: no such file or directory" (one slash lost)."""
    result = run(runner, "ingest", url, ok=False)
    assert result.exit_code == 1
    assert f"{url}: a URL; ragged ingests files on this machine: download it first" in (
        result.stderr
    )
    assert ollama.count("/api/embed") == 0


def test_ask_without_ollama_shows_best_passages(
    runner: CliRunner,
    ollama: OllamaStandIn,
    docs: Path,
    monkeypatch: pytest.MonkeyPatch,
    ollama_down: str,
) -> None:
    # ollama_down repointed OLLAMA_HOST after the ingest fixture started, so ingest by hand first
    monkeypatch.setenv("OLLAMA_HOST", ollama.host)
    ingested(runner, docs)
    monkeypatch.setenv("OLLAMA_HOST", ollama_down)
    result = run(runner, "ask", "capybara rodent", ok=False)
    assert result.exit_code == 1
    assert "lexical" in result.stderr and "notes.txt" in result.stdout


def test_remove_list_collections_reset(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    ingested(runner, docs)
    run(runner, "remove", str(docs / "notes.txt"))
    names = [Path(s["path"]).name for s in json.loads(run(runner, "list", "--json").stdout)]
    assert "notes.txt" not in names and len(names) == 4
    cols = json.loads(run(runner, "collections", "--json").stdout)
    assert cols[0]["name"] == "default" and cols[0]["embed_model"] == "nomic-embed-text"
    search = json.loads(run(runner, "search", "capybara rodent", "--json").stdout)
    assert all(not h["path"].endswith("notes.txt") for h in search["hits"])
    assert run(runner, "reset", input="n\n", ok=False).exit_code == 1
    run(runner, "reset", "--yes")
    gone = run(runner, "list", "--json", ok=False)
    assert gone.exit_code == 1 and "collection 'default' does not exist" in gone.stderr
    # Reproduced: with none left, `collections` drew the header of an empty table.
    assert run(runner, "collections").stdout == "No collections yet.\n"
    assert json.loads(run(runner, "collections", "--json").stdout) == []


def test_config_shows_where_values_come_from(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGGED_TOP_K", "9")
    data = json.loads(run(runner, "config", "--json").stdout)
    assert data["settings"]["top_k"] == {"value": 9, "source": "env RAGGED_TOP_K"}
    assert data["settings"]["embed_model"]["source"] == "default"
    assert "RAGGED_TOP_K" in run(runner, "config").stdout


def run_listing_imports(
    command: list[str], ollama: OllamaStandIn, env: Path
) -> tuple[str, list[str]]:
    """Run a ragged command; its stdout, and every module imported by it and its workers."""
    environ = {
        **os.environ,
        "OLLAMA_HOST": ollama.host,
        "RAGGED_HOME": str(env),
        "PYTHONPROFILEIMPORTTIME": "1",  # every process lists its imports on stderr
    }
    done = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = [
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    ]
    return done.stdout, imported


def test_the_ragged_command_s_pdf_workers_do_not_load_the_cli(
    ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    """PDFs are parsed in spawned processes, and a spawned process first re-runs the script
    that started its parent (as `__mp_main__`). The `ragged` console script must therefore
    not import the CLI at its top: each worker would load Typer and every command (~15 ms
    of CPU) before its first page."""
    script = Path(sys.executable).parent / "ragged"
    if not script.exists():
        pytest.skip(f"no `ragged` console script beside {sys.executable}: ragged is not installed")
    folder = tmp_path / "pdfs"
    folder.mkdir()
    for n in range(3):
        write_pdf(folder / f"report-{n}.pdf", [[f"Quarterly report {n}: revenue grew."]])
    out, imported = run_listing_imports([str(script), "ingest", str(folder)], ollama, env)
    assert "3 added" in out
    assert imported.count("pypdfium2") >= 1  # a worker parsed the PDFs
    assert imported.count("typer") == 1  # the parent only
    assert imported.count("ragged.cli") == 1


def test_commands_that_reach_ollama_and_chroma_skip_httpx_s_own_cli(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    """httpx, under both clients, imports its command-line tool (click, rich, pygments) on
    import when those are installed: 20-50 ms of CPU in every cold `search` and `ask`."""
    ingested(runner, docs)
    out, listed = run_listing_imports(
        [sys.executable, "-m", "ragged", "search", "Foxtrot daemon port"], ollama, env
    )
    assert "install.md" in out
    imported = set(listed)
    assert {"httpx", "chromadb.api.client", "ollama._client"} <= imported
    # (httpx._main itself is still listed: the attempt that fails at once.)
    assert not {"pygments", "rich.syntax"} & imported


def test_real_subprocess_ingest_and_ask(ollama: OllamaStandIn, docs: Path, env: Path) -> None:
    """The installed entry point, as a user runs it, with output to a pipe (not a terminal)."""
    environ = {**os.environ, "OLLAMA_HOST": ollama.host, "RAGGED_HOME": str(env)}
    exe = [sys.executable, "-m", "ragged"]
    done = subprocess.run(
        [*exe, "ingest", str(docs)], env=environ, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout + done.stderr  # no colour codes or progress bars into a pipe
    done = subprocess.run(
        [*exe, "ask", "Which port does the Foxtrot daemon listen on?"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "7341" in done.stdout and "install.md" in done.stdout.split("Sources", 1)[1]


def test_the_entry_point_leaves_python_s_last_collection_nothing_to_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python's shutdown collects every object left, ~90 ms after chromadb's import: the
    entry point freezes them once the command is done, whatever its exit."""
    monkeypatch.setattr(sys, "argv", ["ragged", "--version"])
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as done:
            main()
        assert done.value.code in (0, None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_clean_exit_leaves_the_store_as_the_next_process_expects(
    ollama: OllamaStandIn, docs: Path, env: Path, chroma_mode: str
) -> None:
    """Nothing is written after a command's work (the exit skips Python's last collection):
    the catalog is checkpointed and closed, and an unchanged re-ingest after `ask` finds an
    embedded store's files as ask left them, so it does not even import chromadb."""
    environ = {**os.environ, "OLLAMA_HOST": ollama.host, "RAGGED_HOME": str(env)}
    exe = [sys.executable, "-m", "ragged"]
    for argv in (["ingest", str(docs)], ["ask", "Which port does the Foxtrot daemon listen on?"]):
        done = subprocess.run(
            [*exe, *argv], env=environ, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    assert "7341" in done.stdout
    assert not [p.name for p in env.rglob("*") if p.name.endswith(("-wal", "-journal"))]
    out, imported = run_listing_imports([*exe, "ingest", str(docs)], ollama, env)
    assert "unchanged" in out and "added" not in out
    if chroma_mode == "embedded":  # a server's files are the server's
        assert "chromadb" not in imported


@pytest.mark.parametrize("argv", [["search", ""], ["search", "  \t"], ["ask", ""], ["ask", "\n"]])
def test_an_empty_question_is_a_usage_error(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path, argv: list[str]
) -> None:
    """Reproduced: `ragged search ""` printed six arbitrary passages (exit 0), where the HTTP
    API refuses an empty query."""
    ingested(runner, docs)
    before = len(ollama.requests)
    done = run(runner, *argv, ok=False)
    assert done.exit_code == 2 and done.stdout == ""
    assert "is empty: give some words to look for" in done.stderr, done.stderr
    assert ollama.requests[before:] == []
