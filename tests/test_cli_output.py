"""What people see: on a terminal (a real pty, read through a terminal emulator) and in a
pipe or a file (whole lines, no escape codes). The stand-in plays Ollama over HTTP."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ollama_standin import OllamaStandIn
from tests.terminal import CTRL_C, run_in_terminal

RAGGED = [sys.executable, "-m", "ragged"]
DEEP = Path("markdown") / "sqlmodel" / "docs" / "tutorial"
NAME = "relationship-attributes.md"
# Long enough that an 80-column tool would have cut or folded it.
LONG_REASON_PDF = "cascade-delete-relationships-of-the-hero-and-team-tables.pdf"


def environ(home: Path, ollama: OllamaStandIn) -> dict[str, str]:
    return {**os.environ, "RAGGED_HOME": str(home), "OLLAMA_HOST": ollama.host, "COLUMNS": "80"}


def ragged(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """ragged with stdout and stderr going to pipes, as in a script or `> file 2> log`."""
    return subprocess.run(
        [*RAGGED, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def deep_docs(docs: Path) -> Path:
    """The test documents plus one file deep in folders, and a PDF that fails to parse."""
    folder = docs / DEEP
    folder.mkdir(parents=True)
    (folder / NAME).write_text(
        "# Relationship attributes\n\nA cascade delete removes the heroes of a team when the "
        "team is deleted, so no hero row points at a team that is gone.\n"
    )
    (folder / LONG_REASON_PDF).write_bytes(b"%PDF-1.4 not really a pdf")
    return docs


def ingest_quietly(env: dict[str, str], docs: Path) -> None:
    done = ragged(env, "ingest", str(docs), "--json")
    assert json.loads(done.stdout)["added"] >= 5, done.stderr


# -- pipes and files: whole lines, no escape codes ----------------------------------------------


def test_a_pipe_gets_whole_lines_and_no_escape_codes(
    ollama: OllamaStandIn, deep_docs: Path, env: Path
) -> None:
    e = environ(env, ollama)
    pdf = str(deep_docs / DEEP / LONG_REASON_PDF)
    md = str(deep_docs / DEEP / NAME)
    ingest = ragged(e, "ingest", str(deep_docs))
    assert ingest.returncode == 1  # the broken PDF
    failure = next(line for line in ingest.stderr.splitlines() if line.startswith("✗"))
    assert failure.startswith(f"✗ {pdf}: ") and "PDF" in failure  # one line, path and reason
    listing = ragged(e, "list").stdout
    assert any(md in line and "ok" in line for line in listing.splitlines())
    assert any(pdf in line and "failed" in line for line in listing.splitlines())
    search = ragged(e, "search", "cascade delete heroes team").stdout
    assert any(md in line for line in search.splitlines()), search
    ask = ragged(e, "ask", "What does a cascade delete remove?")
    assert ask.returncode == 0, ask.stderr
    sources = ask.stdout.split("Sources", 1)[1]
    assert any(md in line for line in sources.splitlines())
    answer_line = ask.stdout.splitlines()[0]
    assert answer_line.startswith("A cascade delete removes the heroes") and len(answer_line) > 80
    for out in (ingest.stdout, ingest.stderr, listing, search, ask.stdout, ask.stderr):
        assert "\x1b" not in out
        assert "…" not in out  # nothing shortened
        assert not any(line != line.rstrip() for line in out.splitlines())  # no padding


def test_a_name_with_a_newline_is_one_line_everywhere_it_is_printed(
    ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    """Reproduced: `✗ …/empty` then `name.md: empty file` on the next line, and a source
    split over two table rows. A newline in a name prints as \\n, as ESC prints as \\x1b."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "empty\nname.md").write_bytes(b"")
    (docs / "quetzal\nnotes.md").write_text("# Quetzal\n\nThe quetzal nests in cloud forest.\n")
    (docs / "tab\there.txt").write_text("Capybaras are the largest living rodents.\n")
    run = environ(env, ollama)

    done = ragged(run, "ingest", str(docs))
    failures = [line for line in done.stderr.splitlines() if line.startswith("✗")]
    assert failures == [f"✗ {docs}/empty\\nname.md: empty file"], done.stderr
    assert "name.md" not in done.stderr.replace("empty\\nname.md", "")

    listed = ragged(run, "list").stdout
    assert f"{docs}/quetzal\\nnotes.md" in listed and f"{docs}/tab\\there.txt" in listed
    assert "notes.md" not in listed.replace("quetzal\\nnotes.md", ""), listed
    found = ragged(run, "search", "quetzal cloud forest").stdout
    row = next(line for line in found.splitlines() if "quetzal\\nnotes.md" in line)
    assert "cloud forest" in row, found
    asked = ragged(run, "ask", "quetzal nests in cloud forest").stdout
    assert re.search(r"\[\d\] .*quetzal\\nnotes\.md", asked), asked
    # JSON keeps the real name: it is data, not display.
    hits = json.loads(ragged(run, "search", "quetzal", "--json").stdout)["hits"]
    assert hits[0]["path"] == str(docs / "quetzal\nnotes.md")
    removed = ragged(run, "remove", str(docs / "quetzal\nnotes.md"), "--yes")
    assert removed.stdout == f"removed {docs}/quetzal\\nnotes.md\n", removed.stdout


def test_the_ingest_summary_fits_80_columns_and_counts_moves(
    ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    e = environ(env, ollama)
    first = ragged(e, "ingest", str(docs))
    assert first.stdout.splitlines()[0] == "files   5 added"
    (docs / "notes.txt").rename(docs / "guide" / "notes-moved.txt")
    again = ragged(e, "ingest", str(docs))
    lines = again.stdout.splitlines()
    assert lines[0] == "files   1 added (1 moved) · 4 unchanged · 1 removed"
    assert re.fullmatch(r"chunks  1 stored · 1 reused · in \d+\.\d s", lines[1]), lines
    assert all(len(line) <= 80 for line in first.stdout.splitlines() + lines)


def test_an_answer_into_a_file_is_the_raw_markdown(
    ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    e = environ(env, ollama)
    ingest_quietly(e, docs)
    ollama.answer_override = MARKDOWN_ANSWER
    done = ragged(e, "ask", "How long does the ferry to Zanzibar take?")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(MARKDOWN_ANSWER + "\n")
    assert "searching" not in done.stderr and "thinking" not in done.stderr


def test_ctrl_c_while_an_answer_goes_to_a_file(
    ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    e = environ(env, ollama)
    ingest_quietly(e, docs)
    ollama.answer_override = LONG_ANSWER
    ollama.token_delay = 0.05
    proc = subprocess.Popen(
        [*RAGGED, "ask", "How long does the ferry to Zanzibar take?"],
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    first = proc.stdout.read(20)  # some of the answer has arrived
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    text = (first + out).decode()
    assert text.startswith(LONG_ANSWER[:20]) and text.endswith("\n")  # the file ends its line
    assert err.decode().strip().splitlines()[-1] == "interrupted"


# -- a terminal ---------------------------------------------------------------------------------

MARKDOWN_ANSWER = (
    "The ferry takes **about two hours** [1]. Before you go:\n\n"
    "- buy tickets at the harbour office, which opens early in the morning every day\n"
    "- carry your passport\n\n"
    "```\nferry --to zanzibar\n```\n\n"
    "Enjoy the trip [1]."
)
LONG_ANSWER = " ".join(
    f"Sentence {i} says the ferry from Dar es Salaam to Zanzibar takes about two hours [1]."
    for i in range(40)
)


def in_terminal(env: dict[str, str], *args: str, columns: int = 120, **kw):  # type: ignore[no-untyped-def]
    return run_in_terminal([*RAGGED, *args], env, columns=columns, **kw)


def test_ask_into_a_file_from_a_terminal(
    ollama: OllamaStandIn, docs: Path, env: Path, tmp_path: Path
) -> None:
    """`ragged ask … > answer.md` typed at a terminal: the status on the terminal, the raw
    Markdown in the file."""
    e = environ(env, ollama)
    ingest_quietly(e, docs)
    ollama.answer_override = MARKDOWN_ANSWER
    ollama.first_token_delay = 1.0
    out = tmp_path / "answer.md"
    command = f"{shlex.join([*RAGGED, 'ask', 'How long does the ferry take?'])} > {out}"
    run = run_in_terminal(["sh", "-c", command], e)
    assert run.returncode == 0, run.plain
    assert "thinking…" in run.plain  # on the terminal, while waiting
    written = out.read_text()
    assert written.startswith(MARKDOWN_ANSWER + "\n\nSources\n")
    assert "\x1b" not in written and "thinking" not in written and "searching" not in written


def test_search_on_a_terminal_shortens_paths_from_the_left(
    ollama: OllamaStandIn, deep_docs: Path, env: Path
) -> None:
    e = environ(env, ollama)
    ingest_quietly(e, deep_docs)
    run = in_terminal(e, "search", "cascade delete heroes team", columns=120)
    assert run.returncode == 0, run.plain
    row = next(line for line in run.screen if NAME in line)
    assert f"…/tutorial/{NAME}" in row  # the folders go, the file name stays
    assert "A cascade delete removes the heroes" in row  # the passage gets the rest
    assert all(len(line) <= 120 for line in run.screen)


def test_list_on_a_narrow_terminal_keeps_file_names(
    ollama: OllamaStandIn, deep_docs: Path, env: Path
) -> None:
    e = environ(env, ollama)
    ingest_quietly(e, deep_docs)
    run = in_terminal(e, "list", columns=80)
    assert run.returncode == 0, run.plain
    assert any(f"…/{NAME}" in line for line in run.screen), run.screen
    assert any("notes.txt" in line for line in run.screen)
    assert all(len(line) <= 80 for line in run.screen)


def test_ask_on_a_terminal_renders_markdown_and_wraps_words(
    ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    e = environ(env, ollama)
    ingest_quietly(e, docs)
    ollama.answer_override = MARKDOWN_ANSWER
    ollama.token_delay = 0.01
    run = in_terminal(e, "ask", "How long does the ferry to Zanzibar take?", columns=50)
    assert run.returncode == 0, run.plain
    screen = "\n".join(run.screen)
    assert "**" not in screen and "```" not in screen  # Markdown, rendered
    assert "The ferry takes about two hours [1]." in screen
    assert "• carry your passport" in screen
    assert "ferry --to zanzibar" in screen
    assert all(len(line) <= 50 for line in run.screen)
    # Wrapped between words: every word of the long list item is whole on some line.
    words = set(screen.split())
    for word in "buy tickets at the harbour office, which opens early in the morning".split():
        assert word in words, word
    assert "Sources" in screen and "travel.html" in screen


def test_an_answer_taller_than_the_terminal_scrolls_cleanly(
    ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    """A live region taller than the screen would leave smeared copies in the scrollback."""
    e = environ(env, ollama)
    ingest_quietly(e, docs)
    ollama.answer_override = LONG_ANSWER  # one paragraph of ~40 lines at 80 columns
    ollama.token_delay = 0.005
    run = in_terminal(e, "ask", "How long does the ferry take?", columns=80, rows=12)
    assert run.returncode == 0, run.plain
    text = " ".join(line.strip() for line in run.screen)
    for i in range(40):
        assert text.count(f"Sentence {i} says") == 1, i
    # While it streamed, the newest lines were the ones on screen (not the first few and
    # an ellipsis): a late sentence was drawn live before the final print.
    assert run.plain.count("Sentence 35 says") >= 2


def test_ask_on_a_terminal_says_what_it_waits_for_until_the_first_token(
    ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    e = environ(env, ollama)
    ingest_quietly(e, docs)
    ollama.first_token_delay = 1.5
    run = in_terminal(e, "ask", "How long does the ferry to Zanzibar take?")
    assert run.returncode == 0, run.plain
    shown = run.plain
    assert "searching…" in shown and "thinking…" in shown
    assert shown.index("thinking…") < shown.index("two hours")
    # The status is transient: gone from the screen once the answer is there.
    assert not any("thinking" in line or "searching" in line for line in run.screen)


def test_ctrl_c_during_ask_starts_a_new_line_and_exits_130(
    ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    e = environ(env, ollama)
    ingest_quietly(e, docs)
    ollama.answer_override = LONG_ANSWER
    ollama.token_delay = 0.05
    started = time.monotonic()
    run = in_terminal(
        e, "ask", "How long does the ferry to Zanzibar take?", send=("Sentence 2", CTRL_C)
    )
    assert run.returncode == 130, run.plain
    assert time.monotonic() - started < 30  # it stopped, rather than finishing the answer
    assert "interrupted" in run.screen
    assert not any(line.endswith("interrupted") and line != "interrupted" for line in run.screen)
    assert "Sentence 1 says" in "\n".join(run.screen)  # what had arrived stays
    assert "Traceback" not in run.plain


def test_ingest_progress_is_labelled_with_an_eta_then_a_summary(
    ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    for i in range(30):
        (docs / f"page{i:02}.md").write_text(f"# Page {i}\n\n" + f"Words about item {i}. " * 400)
    ollama.embed_delay = 0.01
    run = in_terminal(environ(env, ollama), "ingest", str(docs), "--embed-batch", "4")
    assert run.returncode == 0, run.plain
    shown = run.plain
    assert re.search(r"files\s+━", shown) and re.search(r"chunks\s+━", shown)
    assert re.search(r"ETA \d+:\d\d  elapsed \d+:\d\d", shown)  # labelled, with a real estimate
    assert re.search(r"\d+ chunks/s", shown)
    # The live display is transient: the screen ends with the summary alone.
    assert run.screen[-2] == "files   35 added"
    assert run.screen[-1].startswith("chunks  ") and " embedded · in " in run.screen[-1]
    assert not any("ETA" in line for line in run.screen)
