"""`ragged chat` end to end: piped stdin, a real terminal (pty), saved conversations."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import sqlite3
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.cli import app
from tests.ollama_standin import OllamaStandIn
from tests.test_conversation import LIMITS, TELEMETRY

FOLLOW_UP = "And how do I disable it?"
REWRITTEN = "And how do I disable rate limiting?"


@pytest.fixture
def faq(tmp_path: Path) -> Path:
    root = tmp_path / "faq"
    root.mkdir()
    (root / "limits.md").write_text(LIMITS)
    (root / "telemetry.md").write_text(TELEMETRY)
    return root


@pytest.fixture
def ingested(runner: CliRunner, ollama: OllamaStandIn, faq: Path) -> Path:
    result = runner.invoke(app, ["ingest", str(faq), "--quiet"])
    assert result.exit_code == 0, result.output
    return faq


def chat(runner: CliRunner, lines: str, *args: str, code: int = 0):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["chat", *args], input=lines, catch_exceptions=code != 0)
    assert result.exit_code == code, result.output
    return result


def test_piped_follow_up_is_rewritten_retrieved_and_answered(
    runner: CliRunner, ingested: Path
) -> None:
    result = chat(runner, f"What is rate limiting?\n\n{FOLLOW_UP}\n")
    first, second = result.stdout.split("limits.enabled", 1)
    assert "100 requests per minute" in first and "Sources" in first
    assert "= false" in second and "limits.md" in second
    # The rewrite is shown on stderr, and only for the follow-up.
    assert f"→ {REWRITTEN}" in result.stderr
    assert result.stderr.count("→ ") == 1


def test_json_lines_say_what_was_retrieved(runner: CliRunner, ingested: Path) -> None:
    result = chat(runner, f"What is rate limiting?\n{FOLLOW_UP}\n", "--json")
    turns = [json.loads(line) for line in result.stdout.splitlines()]
    assert [t["question"] for t in turns] == ["What is rate limiting?", FOLLOW_UP]
    assert [t["standalone"] for t in turns] == ["What is rate limiting?", REWRITTEN]
    assert turns[1]["answered"] and turns[1]["in_documents"]
    cited = [Path(s["path"]).name for s in turns[1]["sources"] if s["cited"]]
    assert cited == ["limits.md"]
    assert turns[0]["conversation"] == turns[1]["conversation"]
    assert turns[0]["saved"] and turns[1]["saved"]
    assert "condense_s" in turns[1]["timings"] and "condense_s" not in turns[0]["timings"]


def test_sources_command_prints_the_last_answers_passages_in_full(
    runner: CliRunner, ingested: Path
) -> None:
    result = chat(runner, "/sources\nWhat is rate limiting?\n/sources\n")
    assert "no sources yet" in result.stderr
    after = result.stdout.split("Rate limiting caps each client", 1)[1]
    assert "limits.md (Rate limiting)" in after
    assert "Rate limiting caps each client at 100 requests per minute." in after


def test_new_starts_over_and_unknown_commands_are_named(runner: CliRunner, ingested: Path) -> None:
    result = chat(
        runner, f"What is rate limiting?\n/new\n/frobnicate\n{FOLLOW_UP}\n/exit\nignored?\n"
    )
    assert "new conversation" in result.stderr
    assert "unknown command /frobnicate" in result.stderr
    assert "→ " not in result.stderr  # after /new there is nothing to read the follow-up against
    assert "ignored" not in result.stdout


def test_collection_command_switches_and_refuses_unknown_names(
    runner: CliRunner, ingested: Path, docs: Path
) -> None:
    other = runner.invoke(app, ["ingest", str(docs), "--quiet", "--collection", "docs"])
    assert other.exit_code == 0, other.output
    result = chat(
        runner,
        "/collection nope\n/collection docs\nWhich port does the Foxtrot daemon listen on?\n",
    )
    assert "collection 'nope' does not exist" in result.stderr
    assert "collections: default, docs" in result.stderr or "collections: docs, default" in (
        result.stderr
    )
    assert "now in collection 'docs'" in result.stderr
    assert "7341" in result.stdout


def test_continue_follows_on_from_the_saved_turns(runner: CliRunner, ingested: Path) -> None:
    first = chat(runner, "What is rate limiting?\n", "--json")
    resumed = chat(runner, f"{FOLLOW_UP}\n", "--json", "--continue")
    turn = json.loads(resumed.stdout)
    assert turn["conversation"] == json.loads(first.stdout)["conversation"]
    assert turn["standalone"] == REWRITTEN
    assert "limits.enabled = false" in turn["answer"]
    saved = json.loads(
        next((Path(os.environ["RAGGED_HOME"]) / "conversations").glob("*.json")).read_text()
    )
    assert [t["question"] for t in saved["turns"]] == ["What is rate limiting?", FOLLOW_UP]


def test_continue_without_a_saved_conversation_starts_one(
    runner: CliRunner, ingested: Path
) -> None:
    result = chat(runner, "What is rate limiting?\n", "--continue")
    assert "no saved conversation yet" in result.stderr
    assert "100 requests" in result.stdout


def test_a_missing_collection_is_refused_at_once(runner: CliRunner, ingested: Path) -> None:
    result = chat(runner, "anything?\n", "--collection", "nope", code=1)
    assert "collection 'nope' does not exist" in result.stderr


def test_ollama_down_shows_passages_and_fails_the_run(
    runner: CliRunner, ingested: Path, ollama_down: str
) -> None:
    result = chat(runner, "What is rate limiting?\n", code=1)
    assert "cannot generate an answer without Ollama" in result.stderr
    assert "limits.md" in result.stdout


# -- a real terminal -----------------------------------------------------------------------------


class Terminal:
    """`ragged chat` on a pty that is its controlling terminal, so Ctrl-C is a real SIGINT."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.main, child = os.openpty()

        def attach() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            argv, env=env, stdin=child, stdout=child, stderr=child, preexec_fn=attach
        )
        os.close(child)
        self.raw = b""  # decoded whole: a read may end inside a multi-byte character
        self.consumed = 0

    def read_until(self, pattern: str, timeout: float = 60) -> str:
        """Output from where the last match ended up to the end of the next match of `pattern`."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.raw.decode(errors="replace")
            match = re.compile(pattern).search(text, self.consumed)
            if match:
                break
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.main], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no {pattern!r} within {timeout} s; got:\n{text}")
            try:
                data = os.read(self.main, 65536)
            except OSError:
                data = b""
            if not data:
                raise AssertionError(f"ended before {pattern!r}; got:\n{text}")
            self.raw += data
        before = text[self.consumed : match.end()]
        self.consumed = match.end()
        return before

    def send(self, text: str) -> None:
        os.write(self.main, text.encode())

    def close(self) -> int:
        try:
            code = self.proc.wait(timeout=30)
        finally:
            os.close(self.main)
        return code


def test_terminal_session_follow_up_ctrl_c_and_ctrl_d(
    ollama: OllamaStandIn, ingested: Path, env: Path
) -> None:
    environ = {
        **os.environ,
        "RAGGED_HOME": str(env),
        "OLLAMA_HOST": ollama.host,
        "TERM": "xterm-256color",
        "COLUMNS": "120",
    }
    term = Terminal([sys.executable, "-m", "ragged", "chat"], environ)
    try:
        term.read_until("› ")
        term.send("What is rate limiting?\r")
        term.read_until("100 requests per minute")
        term.read_until("› ")
        term.send(FOLLOW_UP + "\r")
        shown = term.read_until("› ")
        # The rewrite, dimmed (SGR 2) on the terminal, then the answer from the right file.
        assert re.search(r"\x1b\[2m→ " + re.escape(REWRITTEN), shown), shown
        assert "limits.enabled = false" in shown
        # A slow answer, stopped with Ctrl-C: the session stays and keeps its history.
        ollama.token_delay = 0.5
        term.send("How many requests per minute does rate limiting allow?\r")
        term.read_until(r"allow\?\r?\n")  # the terminal's echo of the question
        term.read_until(r"\w+ \w+")  # the answer's first words have arrived
        term.send("\x03")
        stopped = term.read_until("› ", timeout=15)
        assert "(stopped)" in stopped
        assert term.proc.poll() is None
        ollama.token_delay = 0.0
        term.send("/sources\r")
        assert "limits.enabled = false" in term.read_until("› ")  # the last *finished* answer
        term.send("\x04")  # Ctrl-D leaves
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    saved = json.loads(next((env / "conversations").glob("*.json")).read_text())
    assert [t["question"] for t in saved["turns"]] == ["What is rate limiting?", FOLLOW_UP]


def saved_passages(env: Path, name: str) -> list[str]:
    """The saved passages' texts of this file, in every saved conversation (other files in
    the folder left out)."""
    texts = []
    for path in (env / "conversations").glob("*.json"):
        try:
            turns = json.loads(path.read_text("utf-8"))["turns"]
            sources = [s for t in turns for s in t["sources"]]
        except (ValueError, TypeError, KeyError):
            continue
        texts += [s["text"] for s in sources if s["text"] and s["path"].endswith(name)]
    return texts


def test_removed_and_reset_files_leave_no_passage_in_saved_conversations(
    runner: CliRunner, ingested: Path, env: Path
) -> None:
    """Reproduced (QA): after `remove` and after `reset`, conversations/*.json still held the
    removed file's passages in full, though its text must be readable in no file."""
    chat(runner, "What is rate limiting?\nHow do I turn telemetry off?\n")
    assert saved_passages(env, "limits.md") and saved_passages(env, "telemetry.md")
    result = runner.invoke(app, ["remove", str(ingested / "limits.md"), "--yes"])
    assert result.exit_code == 0, result.output
    assert saved_passages(env, "limits.md") == [] and saved_passages(env, "telemetry.md")
    # The questions and answers stay: they are the user's own conversation (docs/design.md).
    saved = "".join(p.read_text("utf-8") for p in (env / "conversations").glob("*.json"))
    assert "What is rate limiting?" in saved
    assert runner.invoke(app, ["reset", "--yes"]).exit_code == 0
    assert saved_passages(env, "telemetry.md") == []


def test_a_changed_file_leaves_no_old_passage_in_saved_conversations(
    runner: CliRunner, ingested: Path, env: Path
) -> None:
    """Reproduced: a file edited and ingested again (a sentence taken out, say) kept its old
    passages in full in conversations/*.json, though that version was gone from the index."""
    chat(runner, "How do I turn telemetry off?\nWhat is rate limiting?\n")
    old = saved_passages(env, "limits.md")
    assert any("100 requests per minute" in text for text in old)
    limits = ingested / "limits.md"
    limits.write_text(limits.read_text("utf-8").replace("100 requests", "some requests"), "utf-8")
    result = runner.invoke(app, ["ingest", str(ingested)])
    assert result.exit_code == 0, result.output
    assert saved_passages(env, "limits.md") == []
    assert saved_passages(env, "telemetry.md")  # an unchanged file's passages stay
    shown = chat(runner, "/sources\n", "--continue").stdout
    assert "limits.md" in shown and "no longer stored" in shown
    assert "100 requests per minute" not in shown
    # Its new version answers the next question, and that answer's passages are kept.
    chat(runner, "What is rate limiting?\n")
    assert any("some requests per minute" in text for text in saved_passages(env, "limits.md"))


def edit_limits(faq: Path) -> None:
    limits = faq / "limits.md"
    limits.write_text(limits.read_text("utf-8").replace("100 requests", "some requests"), "utf-8")


def chat_answering(
    ollama: OllamaStandIn, home: Path, question: str, name: str
) -> subprocess.Popen[str]:
    """`ragged chat` in a process of its own, once it has answered `question` and saved
    passages of the file `name`; its stdin stays open for more."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragged", "--home", str(home), "chat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OLLAMA_HOST": ollama.host},
    )
    assert proc.stdin is not None
    proc.stdin.write(question + "\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while not saved_passages(home, name):  # the first turn is saved
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(f"no saved turn: {proc.communicate()[1]}")
        time.sleep(0.05)
    return proc


def test_a_running_chat_does_not_write_blanked_passages_back(
    runner: CliRunner, ollama: OllamaStandIn, ingested: Path, env: Path
) -> None:
    """Found in review: a chat keeps its conversation in memory and saved all of it after each
    turn, so passages an ingest in another shell had blanked came back with the next answer."""
    proc = chat_answering(ollama, env, "What is rate limiting?", "limits.md")
    try:
        edit_limits(ingested)  # and `ragged ingest` in another shell
        assert runner.invoke(app, ["ingest", str(ingested)]).exit_code == 0
        assert saved_passages(env, "limits.md") == []
        out, err = proc.communicate("/sources\nHow do I turn telemetry off?\n", timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "no longer stored" in out  # the live session's /sources
    assert not [t for t in saved_passages(env, "limits.md") if "100 requests" in t]
    assert saved_passages(env, "telemetry.md")  # the new turn's passages are saved


def test_blanking_passages_does_not_change_which_conversation_continue_resumes(
    runner: CliRunner, ingested: Path, env: Path
) -> None:
    """Found in review: `--continue` takes the conversation written last, and blanking an
    older one's passages rewrote it, so it became the one resumed."""
    chat(runner, "What is rate limiting?\n")
    older = next((env / "conversations").glob("*.json"))
    time.sleep(0.01)
    chat(runner, "/new\nHow do I turn telemetry off?\n")
    newer = next(p for p in (env / "conversations").glob("*.json") if p != older)
    edit_limits(ingested)
    assert runner.invoke(app, ["ingest", str(ingested)]).exit_code == 0
    assert saved_passages(env, "limits.md") == []  # the older one was rewritten
    chat(runner, "What does the telemetry toggle do?\n", "--continue")
    turns = json.loads(newer.read_text("utf-8"))["turns"]
    assert [t["question"] for t in turns][-1] == "What does the telemetry toggle do?"
    assert len(json.loads(older.read_text("utf-8"))["turns"]) == 1


@pytest.mark.parametrize("content", ["[]", "null", '{"id": "x", "turns": ["x"]}', "{"])
def test_a_foreign_file_among_the_conversations_does_not_stop_an_ingest(
    runner: CliRunner, ingested: Path, env: Path, content: str
) -> None:
    """Found in review: a JSON file that is not a conversation object (`[]`, `null`) raised
    from the blanking pass, and every later ingest failed the same way."""
    chat(runner, "What is rate limiting?\n")
    (env / "conversations" / "notes.json").write_text(content)
    edit_limits(ingested)
    for _ in range(2):
        result = runner.invoke(app, ["ingest", str(ingested)])
        assert result.exit_code == 0, result.output
    assert saved_passages(env, "limits.md") == []


def test_a_conversation_that_cannot_be_rewritten_is_blanked_by_a_later_run(
    runner: CliRunner, ingested: Path, env: Path
) -> None:
    """A conversation that cannot be rewritten now (a full disk, say) keeps the chunk ids to
    delete, and the next run blanks it."""
    chat(runner, "What is rate limiting?\n")
    saved = next((env / "conversations").glob("*.json"))
    # Where its rewrite goes first (this process writes it: CliRunner runs in-process): a
    # directory there makes the write fail, whoever runs the tests.
    blocker = saved.with_suffix(f".tmp{os.getpid()}")
    blocker.mkdir()
    edit_limits(ingested)
    try:
        result = runner.invoke(app, ["ingest", str(ingested)])
        assert result.exit_code == 0, result.output
        assert saved_passages(env, "limits.md")  # could not be rewritten yet
        shown = " ".join(result.stderr.split())  # one line, however the terminal wraps it
        assert f"the saved conversation {saved}: " in shown
        assert shown.count("the next `ingest` or `remove` tries again") == 1
    finally:
        blocker.rmdir()
    catalog = sqlite3.connect(env / "catalog" / "embedded" / "default.sqlite")
    # The ids wait in their own list, not as tombstones (which Chroma would be asked to
    # delete again at every run).
    assert catalog.execute("SELECT count(*) FROM tombstones").fetchone() == (0,)
    assert catalog.execute("SELECT count(*) FROM meta WHERE key LIKE 'unblanked%'").fetchone() == (
        1,
    )
    result = runner.invoke(app, ["ingest", str(ingested)])
    assert result.exit_code == 0 and "could not blank" not in result.stderr
    assert saved_passages(env, "limits.md") == []
    assert catalog.execute("SELECT count(*) FROM meta WHERE key LIKE 'unblanked%'").fetchone() == (
        0,
    )
    assert not list(saved.parent.glob("*.tmp*"))


def test_what_waits_for_a_conversation_that_cannot_be_rewritten_is_only_what_it_holds(
    runner: CliRunner, ingested: Path, env: Path
) -> None:
    """Found in review: every chunk deleted while a conversation could not be rewritten
    joined the list of ids to blank later, cited or not, so a conversation that stays
    unwritable (a file of another user's) made that list, rewritten at every run, grow with
    each edit for ever. Only the passages it holds wait."""
    chat(runner, "What is rate limiting?\n")
    saved = next((env / "conversations").glob("*.json"))
    cited = {s["id"] for t in json.loads(saved.read_text())["turns"] for s in t["sources"]}
    blocker = saved.with_suffix(f".tmp{os.getpid()}")
    blocker.mkdir()
    catalog = sqlite3.connect(env / "catalog" / "embedded" / "default.sqlite")
    waiting = "SELECT value FROM meta WHERE key = 'unblanked_passages'"
    try:
        for n in range(3):
            edit_limits(ingested)
            telemetry = ingested / "telemetry.md"
            telemetry.write_text(telemetry.read_text("utf-8") + f"\n\nEdit {n}.\n", "utf-8")
            (ingested / "limits.md").write_text(
                (ingested / "limits.md").read_text("utf-8") + f"\n\nEdit {n}.\n", "utf-8"
            )
            result = runner.invoke(app, ["ingest", str(ingested)])
            assert result.exit_code == 0, result.output
            assert set(json.loads(catalog.execute(waiting).fetchone()[0])) == cited
    finally:
        blocker.rmdir()
    result = runner.invoke(app, ["ingest", str(ingested)])
    assert result.exit_code == 0 and "could not blank" not in result.stderr
    assert saved_passages(env, "limits.md") == [] and catalog.execute(waiting).fetchone() is None


def test_a_file_replaced_while_an_answer_is_written_leaves_no_old_passage(
    runner: CliRunner, ollama: OllamaStandIn, ingested: Path, env: Path
) -> None:
    """Found in the second review: the chat saved the turn after its answer, so a passage
    whose file an ingest replaced meanwhile (before the turn was in any file) stayed whole."""
    proc = chat_answering(ollama, env, "What is rate limiting?", "limits.md")
    assert proc.stdin is not None
    question = "How many requests per minute does rate limiting allow?"
    ollama.hold_generation = threading.Event()  # the answer waits after its first piece
    try:
        asked = ollama.count("/api/chat")
        proc.stdin.write(f"/new\n{question}\n")  # a new conversation: no rewrite first
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while ollama.count("/api/chat") == asked:  # the passages are chosen and sent
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        edit_limits(ingested)
        assert runner.invoke(app, ["ingest", str(ingested)]).exit_code == 0
        ollama.hold_generation.set()
        _, err = proc.communicate("", timeout=120)
    finally:
        ollama.hold_generation.set()
        proc.kill()
    assert proc.returncode == 0, err
    saved = [json.loads(p.read_text("utf-8")) for p in (env / "conversations").glob("*.json")]
    turn = next(t for c in saved for t in c["turns"] if t["question"] == question)
    limits = [s for s in turn["sources"] if s["path"].endswith("limits.md")]
    assert limits and all(s["text"] == "" for s in limits)
    assert "100 requests" in turn["answer"]  # it was answered from the old version


def test_a_conversation_that_cannot_be_saved_is_named_and_the_chat_goes_on(
    runner: CliRunner, ingested: Path, env: Path
) -> None:
    """A full disk or a data dir that cannot be written: each answer is still shown with its
    sources, one line says the conversation was not saved and why, the next question is
    answered from the turns in memory, and the exit status says something failed."""
    (env / "conversations").write_text("")  # a file where the folder goes: every save fails
    result = chat(runner, f"What is rate limiting?\n{FOLLOW_UP}\n", code=1)
    assert isinstance(result.exception, SystemExit), result.exception
    first, second = result.stdout.split("limits.enabled", 1)
    assert "100 requests per minute" in first and "Sources" in first
    assert "= false" in second and "limits.md" in second
    shown = " ".join(result.stderr.split())  # one line each, however the terminal wraps it
    assert shown.count(f"could not save the conversation to {env / 'conversations'}") == 2
    assert "Traceback" not in result.stderr
    piped = chat(runner, "What is rate limiting?\n", "--json", code=1)
    turn = json.loads(piped.stdout)
    assert turn["answered"] and turn["saved"] is False
