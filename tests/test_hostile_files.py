"""Odd files through a real `ragged ingest` process: odd names, odd bytes, files that are not files.

Each test is a case of issue 11 that failed on 0.1.0 (a traceback, a hang, or text printed raw
to the terminal); every bad input must get one line naming it and the run must go on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ollama_standin import OllamaStandIn
from tests.test_ingest_robust import _run_in_terminal, environ, stored_ids

RAGGED = [sys.executable, "-m", "ragged"]


def ragged(
    home: Path, ollama: OllamaStandIn, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RAGGED, *args],
        env=environ(home, ollama),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def listed(home: Path, ollama: OllamaStandIn, status: str = "ok") -> list[str]:
    """Names of the stored files (or of remembered failures, with status="failed")."""
    done = ragged(home, ollama, "list", "--json", "--status", status)
    assert done.returncode == 0, done.stderr
    return sorted(Path(s["path"]).name for s in json.loads(done.stdout))


def test_a_name_that_is_not_utf8_is_named_safely_and_the_run_goes_on(
    ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(8):
        (docs / f"doc{i}.md").write_text(f"# Doc {i}\n\nPlain text number {i} about pears.\n")
    latin1 = os.fsencode(docs) + b"/r\xe9sum\xe9.md"
    with open(latin1, "wb") as fh:
        fh.write(b"# Resume\n\nA file whose name is latin-1.\n")
    bad_dir = os.fsencode(docs) + b"/caf\xe9"
    os.mkdir(bad_dir)
    with open(bad_dir + b"/inside.md", "wb") as fh:
        fh.write(b"# Inside\n\nUnder a folder whose name is latin-1.\n")

    done = ragged(env, ollama, "ingest", str(docs))
    assert "Traceback" not in done.stderr, done.stderr
    # Named with the undecodable bytes shown as \x escapes, with the reason, each once.
    assert "r\\xe9sum\\xe9.md: file name is not valid UTF-8" in done.stderr
    assert "caf\\xe9: folder name is not valid UTF-8" in done.stderr
    assert done.returncode == 1  # files the user asked for were not stored
    assert listed(env, ollama) == [f"doc{i}.md" for i in range(8)]
    chroma, catalog, pending = stored_ids(env)
    assert chroma == catalog and pending == 0

    again = ragged(env, ollama, "ingest", str(docs), "--json")
    report = json.loads(again.stdout)
    assert report["unchanged"] == 8 and report["failed"] == 2
    assert sorted(Path(p["path"]).name for p in report["problems"]) == [
        "caf\\xe9",
        "r\\xe9sum\\xe9.md",
    ]


@pytest.mark.parametrize(
    "content",
    [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00"],
    ids=["utf8-bom", "utf16le-bom", "utf16be-bom", "utf32le-bom"],
)
def test_a_file_holding_only_a_bom_is_empty(
    ollama: OllamaStandIn, env: Path, tmp_path: Path, content: bytes
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a_bom.txt").write_bytes(content)
    (docs / "b_after.md").write_text("# After\n\nStored after the empty one.\n")
    done = ragged(env, ollama, "ingest", str(docs))
    assert "Traceback" not in done.stderr, done.stderr
    assert "a_bom.txt: empty file" in done.stderr
    assert listed(env, ollama) == ["b_after.md"]
    assert listed(env, ollama, "failed") == ["a_bom.txt"]


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_decoded(
    ollama: OllamaStandIn, env: Path, tmp_path: Path, codec: str
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    text = "Notes without a BOM.\n\nThe capybara is the largest living rodent; crème brûlée.\n"
    (docs / "wide.txt").write_bytes(text.encode(codec))
    done = ragged(env, ollama, "ingest", str(docs))
    assert done.returncode == 0, done.stderr
    found = ragged(env, ollama, "search", "capybara rodent", "--mode", "lexical", "--json")
    hits = json.loads(found.stdout)["hits"]
    assert hits and "largest living rodent; crème brûlée" in hits[0]["text"]


def test_a_fifo_is_skipped_with_a_reason_not_read(
    ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    os.mkfifo(docs / "pipe.md")
    (docs / "real.md").write_text("# Real\n\nA real file.\n")
    os.symlink("/dev/zero", docs / "zero.txt")
    # Named on the command line, in a folder, and behind a symlink: none may block the run
    # (a FIFO's open() waits for a writer forever, holding the write lock).
    done = ragged(env, ollama, "ingest", str(docs / "pipe.md"), timeout=60)
    assert "pipe.md: not a regular file (a FIFO)" in done.stderr, done.stderr
    done = ragged(env, ollama, "ingest", str(docs), timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    assert "pipe.md: skipped, not a regular file (a FIFO)" in done.stderr
    assert "zero.txt: skipped, symlink points outside the ingest root" in done.stderr
    assert listed(env, ollama) == ["real.md"]


def test_a_file_turned_into_a_fifo_after_the_walk_is_not_read(tmp_path: Path) -> None:
    """Reading opens without blocking and checks what it opened, so a swap cannot hang it."""
    from ragged.errors import UnreadableDocument
    from ragged.ingest.loaders import read_regular

    os.mkfifo(tmp_path / "swapped.md")
    with pytest.raises(UnreadableDocument, match=r"not a regular file \(a FIFO\)"):
        read_regular(tmp_path / "swapped.md")


ESCAPES = "\x1b[2J\x1b[31m"


def test_escape_sequences_in_names_and_text_never_reach_the_terminal(
    ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / f"evil{ESCAPES}name.md").write_text(
        f"# Title{ESCAPES}\n\nThe wombat{ESCAPES} digs burrows.\x07\x9b2J\u202eexe.md\n"
    )
    ingest = ragged(env, ollama, "ingest", str(docs))
    assert ingest.returncode == 0, ingest.stderr
    base = environ(env, ollama, TERM="xterm-256color", COLUMNS="200")
    for argv in (["list"], ["search", "wombat"], ["ask", "what digs burrows wombat"]):
        shown = _run_in_terminal([*RAGGED, *argv], base)
        assert "wombat" in shown or "evil" in shown, shown
        for raw in ("\x1b[2J", "\x1b[31m", "\x07", "\x9b", "\u202e"):
            assert raw not in shown, (argv, shown)
        # Neutralised, not dropped: the reader can still see something was there.
        assert "\\x1b[2J" in shown or "\\x1b" in shown, shown
    # JSON keeps the exact text, with every control character escaped.
    data = ragged(env, ollama, "search", "wombat", "--json").stdout
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in data
    hit = json.loads(data)["hits"][0]
    assert ESCAPES in hit["path"] and "\x9b2J\u202e" in hit["text"]


def test_headings_padded_with_a_megabyte_of_spaces_do_not_stall_the_run(
    tmp_path: Path, ollama: OllamaStandIn
) -> None:
    """0.2's heading patterns backtracked over runs of spaces and tabs in quadratic time: one
    heading line of "# a", a million spaces and "b" would have held ingest for over half an
    hour (20,000 spaces took 0.9 s; a closing "#" after them 1.7 s; an attribute list too)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    run = " " * 1_000_000
    (docs / "padded.md").write_text(
        f"# Alpha{run}omega\n\nFirst body.\n\n"
        f"## Bravo{run}#x\n\nSecond body.\n\n"
        f"## Charlie{run}{{#c\n\nThird body.\n\n"
        "## Delta ##\n\nFourth body.\n\n"
        "## Echo {#e .wide}\n\nFifth body.\n"
    )
    done = ragged(tmp_path / "home", ollama, "ingest", str(docs), "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    for word in ("body", "Bravo", "Charlie", "Delta", "Echo"):  # later headings are indexed too
        found = ragged(tmp_path / "home", ollama, "search", word, "--mode", "lexical", "--json")
        hits = json.loads(found.stdout)["hits"]
        # The small sections share one chunk, cited by the first heading, its run made one space.
        assert [h["heading"] for h in hits] == ["Alpha omega"], (word, hits)
        assert "Fifth body." in hits[0]["text"]


def run_bytes(
    home: Path, ollama: OllamaStandIn, *args: bytes, stdin: bytes = b""
) -> tuple[int, str, str]:
    """A ragged command whose arguments are raw bytes, as a terminal in another encoding
    passes them (RAGGED_CHAT_MODEL is the stand-in's)."""
    done = subprocess.run(
        [*(a.encode() for a in RAGGED), *args],
        env=environ(home, ollama, RAGGED_CHAT_MODEL="llama3.2:3b"),
        capture_output=True,
        input=stdin,
        timeout=120,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode("utf-8", "replace")


def test_a_question_in_bytes_that_are_not_utf8_is_read_not_a_traceback(
    tmp_path: Path, ollama: OllamaStandIn
) -> None:
    """0.2 passed a question typed on a Latin-1 terminal (or piped from a Latin-1 file) on as
    lone surrogates, and the request to Ollama ended in a traceback: "UnicodeEncodeError:
    'utf-8' codec can't encode character '\\udce9' ... surrogates not allowed"."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cafe.md").write_text("# Café\n\nThe café opens at seven. Été hours differ.\n")
    home = tmp_path / "home"
    assert ragged(home, ollama, "ingest", str(docs)).returncode == 0
    question = "When does the caf\xe9 open?".encode("latin-1")
    code, out, err = run_bytes(home, ollama, b"search", question, b"--json")
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)["query"] == "When does the café open?"
    code, out, err = run_bytes(home, ollama, b"ask", question, b"--json")
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)["question"] == "When does the café open?"
    code, out, err = run_bytes(home, ollama, b"chat", b"--json", stdin=question + b"\n")
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out.splitlines()[0])["question"] == "When does the café open?"


def test_html_with_end_tags_left_out_is_read_in_linear_time(
    tmp_path: Path, ollama: OllamaStandIn
) -> None:
    """HTML lets a page leave out </li> and </p>, and long generated pages (changelogs, link
    lists, mail archives) do. 0.2 kept each such element open and looked through all of them
    at every end tag: 8,000 items took 3 s, so this page of 100,000 (4.6 MB) would have held
    ingest for about eight minutes."""
    docs = tmp_path / "docs"
    docs.mkdir()
    items = "".join(f"<li><a href='#c{i}'>Change {i}</a> fixed" for i in range(100_000))
    (docs / "changes.html").write_text(
        f"<!doctype html><title>Log</title><h1>Changes</h1><ul>{items}</ul>"
        "<h2>Thanks</h2><p>To everyone who sent a <b>quince</b> patch<p>And the last words"
    )
    done = ragged(tmp_path / "home", ollama, "ingest", str(docs), "--json", timeout=240)
    assert done.returncode == 0, done.stderr
    found = ragged(tmp_path / "home", ollama, "search", "quince", "--mode", "lexical", "--json")
    hit = json.loads(found.stdout)["hits"][0]
    # The heading after the list is still a heading, and the unclosed paragraphs are lines.
    assert hit["heading"] == "Changes > Thanks", hit
    assert "To everyone who sent a quince patch\n\nAnd the last words" in hit["text"], hit


def test_notebooks_of_odd_shapes_cost_one_line_not_the_run(
    tmp_path: Path, ollama: OllamaStandIn
) -> None:
    """0.2 read a notebook's JSON trusting its shape: cells nested 100,000 deep (RecursionError),
    metadata that is not an object, a worksheet that is not one, or a heading level that is
    not a number ended the whole run with a traceback, the files after it never read."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "deep.ipynb").write_text('{"cells": ' + "[" * 100_000 + "]" * 100_000 + "}")
    odd = {
        "nbformat": 3,
        "metadata": "python",
        "worksheets": [
            "not a worksheet",
            {
                "cells": [
                    {"cell_type": "heading", "level": "two", "source": "Odd harbour"},
                    {"cell_type": "heading", "level": 1e999, "source": "Deeper"},
                    {"cell_type": "code", "language": "py\n# Forged", "input": "tide = 3"},
                ]
            },
        ],
    }
    (docs / "odd.ipynb").write_text(json.dumps(odd))
    (docs / "zz-after.md").write_text("# After\n\nThe quince file read after the notebooks.\n")
    done = ragged(tmp_path / "home", ollama, "ingest", str(docs))
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr  # one file failed; the run went on
    lines = [line for line in done.stderr.splitlines() if "deep.ipynb" in line]
    assert len(lines) == 1 and "nested too deeply" in lines[0], done.stderr
    assert listed(tmp_path / "home", ollama) == ["odd.ipynb", "zz-after.md"]
    found = ragged(tmp_path / "home", ollama, "search", "tide", "--mode", "lexical", "--json")
    hit = json.loads(found.stdout)["hits"][0]
    # Levels that are not numbers read as top level; a language with a line break is dropped,
    # so it cannot open a heading of its own inside the code's fence.
    assert (Path(hit["path"]).name, hit["heading"]) == ("odd.ipynb", "Deeper"), hit
    assert hit["text"] == "```\ntide = 3\n```", hit


def test_a_table_with_a_header_of_100000_columns_is_chunked_in_linear_time(
    tmp_path: Path, ollama: OllamaStandIn
) -> None:
    """The chunker counted the tokens of a table's header again for every piece of the table:
    quadratic in its width, a header of 16,000 columns (a 330 KB file) took 6.3 s and 32,000
    24 s, so this 2.2 MB one about four minutes."""
    docs = tmp_path / "docs"
    docs.mkdir()
    width = 100_000
    header = "|".join(f" c{i} " for i in range(width))
    values = "|".join(f" v{i} " for i in range(width))
    (docs / "wide.md").write_text(f"# Wide\n\n|{header}|\n|{'---|' * width}\n|{values}|\n")
    done = ragged(tmp_path / "home", ollama, "ingest", str(docs), "--json", timeout=100)
    assert done.returncode == 0, done.stderr
    found = ragged(tmp_path / "home", ollama, "search", "v99999", "--mode", "lexical", "--json")
    [hit] = json.loads(found.stdout)["hits"]
    assert hit["text"].rstrip().endswith("v99998 | v99999 |"), hit["text"][-200:]
