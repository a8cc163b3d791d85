"""`ragged watch` against real file events: after every kind of change, the watched collection
holds exactly what a fresh `ingest` of the same folder makes."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ragged.catalog import open_catalog
from ragged.cli import app
from ragged.config import load_settings
from ragged.index import open_index
from ragged.ingest import ingest
from ragged.llm import NOT_RUNNING_HINT, connect
from ragged.lock import write_lock
from ragged.store import open_store
from tests.chroma_server import ChromaServer
from tests.mounts import mount_or_skip, unmount
from tests.ollama_standin import OllamaStandIn
from tests.test_data_dir import SECRET, files_holding, secret_docs

RAGGED = [sys.executable, "-m", "ragged"]
TIMEOUT = 60.0  # generous: the machine is shared, and a batch waits for quiet first


class Watcher:
    """A `ragged watch --json` subprocess; its batches arrive on a queue as they are printed."""

    def __init__(
        self,
        home: Path,
        host: str,
        *folders: Path,
        args: tuple[str, ...] = (),
        nohup: bool = False,
        as_json: bool = True,
    ) -> None:
        env = {**os.environ, "RAGGED_HOME": str(home), "OLLAMA_HOST": host}
        env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT then prints every thread's stack (interrupt)
        json_flag = ["--json"] if as_json else []
        self.proc = subprocess.Popen(
            [*RAGGED, "watch", *map(str, folders), *json_flag, "--debounce", "150", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # What `nohup` does: the hang-up of the terminal is ignored from the start. Without
            # it, the default whatever pytest inherited: run under nohup itself, the watch
            # ignored the tests' SIGHUP and never stopped.
            preexec_fn=lambda: signal.signal(
                signal.SIGHUP, signal.SIG_IGN if nohup else signal.SIG_DFL
            ),
        )
        self.batches: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.batches.put(json.loads(line))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def batch(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        try:
            got = self.batches.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no batch within {timeout} s; stderr: {''.join(self.stderr)}")
        self.seen.append(got)
        return got

    def line(self, holding: str, seen: int = 0) -> int:
        """Where the first stderr line from `seen` on that holds `holding` is; without --json,
        each batch prints its lines there."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for i in range(seen, len(self.stderr)):
                if holding in self.stderr[i]:
                    return i
            time.sleep(0.1)
        pytest.fail(f"no line with {holding!r} in {TIMEOUT} s; stderr: {''.join(self.stderr)}")

    def wait_until(
        self, condition: Callable[[], bool], what: str, batch: bool = True
    ) -> list[dict[str, Any]]:
        """Batches applied until `condition` holds (checked after each one), and, with `batch`,
        until the line of at least one new batch has been read.

        Every batch already printed is taken first: the watcher may have finished a batch
        while the test was busy (computing a fresh ingest to compare with, say), and its line
        belongs to this wait, not to the next. The store can match a moment before the line
        that reports the change is printed, so a change the test made waits for that line."""
        start = len(self.seen)
        deadline = time.monotonic() + TIMEOUT
        while True:
            while not self.batches.empty():
                self.seen.append(self.batches.get_nowait())
            if condition() and (not batch or len(self.seen) > start):
                break
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{what}: not reached in {TIMEOUT} s; stderr: {''.join(self.stderr)}")
            try:
                self.seen.append(self.batches.get(timeout=min(left, 0.5)))
            except queue.Empty:
                continue
        return self.seen[start:]

    def interrupt(self, how: signal.Signals = signal.SIGINT) -> tuple[int, str]:
        self.proc.send_signal(how)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # Say where it hangs: the child's faulthandler prints its threads' stacks.
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(timeout=10)
            time.sleep(0.2)
            pytest.fail(f"watch still running 30 s after {how.name}:\n{''.join(self.stderr)}")
        time.sleep(0.1)  # let the reader threads take the last lines
        return self.proc.returncode, "".join(self.stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def watchers() -> Any:
    started: list[Watcher] = []

    def start(*args: Any, **kw: Any) -> Watcher:
        started.append(Watcher(*args, **kw))
        return started[-1]

    yield start
    for w in started:
        w.kill()


def snapshot(home: Path) -> tuple[set[tuple[str, str, int, str]], set[str], set[str], int]:
    """(files with hash, chunks and status; catalog chunk ids; Chroma ids; chunks pending)."""
    settings = load_settings({"home": home})
    catalog = open_catalog(settings)
    try:
        files = {(f.path, f.content_hash, f.chunks, f.status) for f in catalog.files()}
        ids = {c.id for f in catalog.files() for c in catalog.chunks_of(f.path)}
        pending = catalog.pending_count()
    finally:
        catalog.close()
    return files, ids, open_store(settings).ids(), pending


class Fresh:
    """What a fresh ingest of the folder makes, each time in a data dir of its own."""

    def __init__(self, base: Path, host: str) -> None:
        self.base, self.host, self.runs = base, host, 0

    def __call__(self, folder: Path) -> tuple[Any, ...]:
        self.runs += 1
        home = self.base / f"fresh-{self.runs}"
        settings = load_settings({"home": home, "ollama_host": self.host})
        with open_index(settings, create=True) as index:
            report = ingest([folder], index, connect(settings))
        assert report.ok, report
        return snapshot(home)


def write_notes(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True)
    (folder / "drafts").mkdir()
    (folder / "a.md").write_text("# Alpha\n\nThe okapi lives in the Ituri forest.\n")
    (folder / "notes.txt").write_text("Capybaras are the largest rodents.\n")
    (folder / "sub" / "deep.md").write_text("# Deep\n\nAxolotls regrow their limbs.\n")
    (folder / "drafts" / "secret.md").write_text("# Draft\n\nNot for the collection.\n")
    (folder / ".gitignore").write_text("drafts/\n")


def test_watch_converges_with_a_fresh_ingest_after_every_kind_of_change(
    ollama: OllamaStandIn, tmp_path: Path, env: Path, watchers: Any
) -> None:
    notes = tmp_path / "notes"
    write_notes(notes)
    fresh = Fresh(tmp_path, ollama.host)
    watcher: Watcher = watchers(env, ollama.host, notes)

    def converge(what: str, batch: bool = True) -> list[dict[str, Any]]:
        expected = fresh(notes)
        assert expected[3] == 0 and expected[1] == expected[2]
        return watcher.wait_until(lambda: snapshot(env) == expected, what, batch)

    first = watcher.batch()
    assert first["trigger"] == "start" and first["added"] == 3
    converge("first sync", batch=False)  # the start batch above was that sync
    assert not any("secret" in path for path, *_ in snapshot(env)[0])

    (notes / "new.md").write_text("# New\n\nPangolins eat ants.\n")
    converge("created file")

    with (notes / "a.md").open("a") as f:
        f.write("\nOkapis have striped legs.\n")
    converge("modified file")

    (notes / "new.md").rename(notes / "sub" / "renamed.md")
    moved = converge("renamed file")
    assert sum(b["moved"] for b in moved) == 1
    assert sum(b["embedded"] for b in moved) == 0  # its vectors came along

    (notes / "notes.txt").unlink()
    converge("deleted file")

    # An editor's save: a hidden swap file, a temp file written in full, then renamed over.
    (notes / ".a.md.swp").write_bytes(b"\x00swap")
    tmp = notes / "a.md.tmp-4913"
    tmp.write_text("# Alpha\n\nOkapis are related to giraffes.\n")
    os.replace(tmp, notes / "a.md")
    (notes / ".a.md.swp").unlink()
    converge("editor-style save")

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "one.md").write_text("# One\n\nNarwhals have one tusk.\n")
    (outside / "two.md").write_text("# Two\n\nQuokkas live on Rottnest.\n")
    outside.rename(notes / "moved-in")
    converge("folder moved in")
    (notes / "moved-in").rename(tmp_path / "moved-out")
    converge("folder moved out")

    (notes / ".gitignore").write_text("drafts/\nsub/\n")
    converge("ignore rule added")

    rc, stderr = watcher.interrupt()
    assert rc == 130 and "interrupted" in stderr
    assert "Traceback" not in stderr


def test_a_burst_of_100_files_is_a_few_batches_and_each_chunk_embedded_once(
    ollama: OllamaStandIn, tmp_path: Path, env: Path, watchers: Any
) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "seed.md").write_text("# Seed\n\nThe first file.\n")
    watcher: Watcher = watchers(env, ollama.host, notes)
    watcher.batch()
    for i in range(100):
        (notes / f"burst-{i:03}.md").write_text(f"# Note {i}\n\nBurst note number {i} of many.\n")
    expected = Fresh(tmp_path, ollama.host)(notes)
    before = len(watcher.seen)
    # Every line that reports the burst, however many batches it took.
    batches = watcher.wait_until(
        lambda: snapshot(env) == expected and sum(b["added"] for b in watcher.seen[before:]) >= 100,
        "burst",
    )
    assert len(batches) <= 5, [b["events"] for b in batches]
    assert sum(b["added"] for b in batches) == 100
    assert sum(b["embedded"] for b in batches) == sum(b["chunks"] for b in batches) == 100
    assert watcher.interrupt()[0] == 130


def test_a_data_dir_inside_the_watched_folder_does_not_feed_the_watch(
    ollama: OllamaStandIn, tmp_path: Path, watchers: Any
) -> None:
    """0.2, with RAGGED_HOME inside the watched folder: every batch's own writes (the
    catalog's journal, the write lock) came back as deleted files, which might have been
    folders, so the watch applied a batch two or three times a second for ever."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "seed.md").write_text("# Seed\n\nThe first file.\n")
    watcher: Watcher = watchers(notes / "ragged-data", ollama.host, notes)
    assert watcher.batch()["added"] == 1
    (notes / "new.md").write_text("# New\n\nA second file.\n")
    watcher.wait_until(lambda: any(b["added"] for b in watcher.seen[1:]), "the new file")
    time.sleep(3)  # 0.2 applied six or more batches here
    assert watcher.batches.empty(), [b["events"] for b in list(watcher.batches.queue)]
    assert watcher.interrupt()[0] == 130


def test_the_write_lock_is_free_between_batches(
    ollama: OllamaStandIn, tmp_path: Path, env: Path, watchers: Any
) -> None:
    notes, other = tmp_path / "notes", tmp_path / "other"
    write_notes(notes)
    other.mkdir()
    (other / "elsewhere.md").write_text("# Elsewhere\n\nTapirs have short trunks.\n")
    watcher: Watcher = watchers(env, ollama.host, notes)
    watcher.batch()
    run_env = {**os.environ, "RAGGED_HOME": str(env), "OLLAMA_HOST": ollama.host}
    done = subprocess.run(
        [*RAGGED, "ingest", str(other), "--json"], env=run_env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["added"] == 1
    done = subprocess.run(
        [*RAGGED, "remove", str(other / "elsewhere.md"), "--yes"],
        env=run_env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    # The watcher still applies what happens next.
    (notes / "later.md").write_text("# Later\n\nSloths are slow.\n")
    watcher.wait_until(
        lambda: str(notes / "later.md") in {f[0] for f in snapshot(env)[0]}, "after other writers"
    )


def test_a_batch_behind_another_writer_says_whom_it_waits_for(
    ollama: OllamaStandIn, tmp_path: Path, env: Path, watchers: Any
) -> None:
    """A change made while another process writes (a long `ingest` in another shell) waited
    without a word: the watch looked stuck. It says whom it waits for, then applies it."""
    notes = tmp_path / "notes"
    write_notes(notes)
    watcher: Watcher = watchers(env, ollama.host, notes)
    watcher.batch()
    with write_lock(env):
        (notes / "later.md").write_text("# Later\n\nSloths are slow.\n")
        at = watcher.line("waiting for another ragged process")
        assert (
            watcher.stderr[at]
            .rstrip()
            .endswith(f"waiting for another ragged process (pid {os.getpid()}) writing to {env}")
        )
        assert watcher.batches.empty()  # nothing applied while the lock is held
    assert watcher.batch()["added"] == 1
    assert watcher.interrupt()[0] == 130


def test_a_watched_folder_deleted_whole_is_forgotten_and_the_watch_stops_saying_so(
    ollama: OllamaStandIn, tmp_path: Path, env: Path, watchers: Any
) -> None:
    """`rm -rf` of the watched folder: 0.2 said "no such file or directory", kept its files
    in the collection and went on watching nothing, so a folder made again at that path was
    never synced. Files whose deletion was seen are forgotten (and purged); then it stops."""
    notes = tmp_path / "notes"
    write_notes(notes)
    (notes / "a.md").write_text(f"# Alpha\n\nThe okapi lives in the Ituri forest. {SECRET}\n")
    watcher: Watcher = watchers(env, ollama.host, notes)
    assert watcher.batch()["added"] == 3
    shutil.rmtree(notes)
    try:
        watcher.proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("watch went on with its folder gone: " + "".join(watcher.stderr))
    time.sleep(0.1)  # the reader thread takes the last lines
    stderr = "".join(watcher.stderr)
    assert watcher.proc.returncode == 1, stderr
    assert f"Error: {notes} is gone (deleted or moved): 3 files forgotten; watch stopped" in stderr
    assert f"`ragged watch {notes}`" in stderr
    files, in_catalog, in_store, pending = snapshot(env)
    assert files == set() and in_catalog == in_store == set() and pending == 0
    assert files_holding(env, SECRET) == []


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(disk, mount point): a folder bind-mounted at another, as a USB disk at /media/...;
    skipped where this process may not mount (not root, or in a container that forbids it)."""
    disk, point = tmp_path / "disk", tmp_path / "media-usb"
    disk.mkdir()
    point.mkdir()
    mount_or_skip("--bind", str(disk), str(point))
    try:
        yield disk, point
    finally:
        unmount(point)


def test_a_watched_disk_unmounted_keeps_its_files_and_the_watch_stops_saying_so(
    ollama: OllamaStandIn, env: Path, watchers: Any, mounted: tuple[Path, Path]
) -> None:
    """The mount point goes with the disk (udisks removes it), and no file on it is seen
    deleted: its files stay stored, and the watch does not go on watching nothing."""
    disk, point = mounted
    write_notes(disk)
    watcher: Watcher = watchers(env, ollama.host, point)
    assert watcher.batch()["added"] == 3
    subprocess.run(["umount", str(point)], check=True)
    point.rmdir()
    try:
        watcher.proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("watch went on with its folder gone: " + "".join(watcher.stderr))
    time.sleep(0.1)
    stderr = "".join(watcher.stderr)
    assert watcher.proc.returncode == 1, stderr
    assert (
        f"Error: {point} is gone (deleted or moved): 0 files forgotten, 3 kept (no deletion "
        "seen: an unmounted disk looks like this); watch stopped" in stderr
    )
    assert f"`ragged remove {point}`" in stderr
    files, in_catalog, in_store, pending = snapshot(env)
    assert len(files) == 3 and in_catalog == in_store and pending == 0


def test_ollama_going_away_leaves_text_pending_then_embedded_when_it_returns(
    tmp_path: Path, env: Path, watchers: Any
) -> None:
    notes = tmp_path / "notes"
    write_notes(notes)
    ollama = OllamaStandIn().start()
    try:
        port = int(ollama.host.rsplit(":", 1)[1])
        watcher: Watcher = watchers(env, ollama.host, notes)
        assert watcher.batch()["pending"] == 0
        ollama.stop()
        (notes / "outage.md").write_text("# Outage\n\nWombats produce cube-shaped droppings.\n")
        down = watcher.wait_until(lambda: snapshot(env)[3] > 0, "text stored as pending")
        assert down[-1]["embed_error"] and down[-1]["retry_in"] > 0
        # Searchable by keywords meanwhile.
        found = subprocess.run(
            [*RAGGED, "search", "wombats", "--mode", "lexical", "--json"],
            env={**os.environ, "RAGGED_HOME": str(env), "OLLAMA_HOST": f"127.0.0.1:{port}"},
            capture_output=True,
            text=True,
        )
        assert "outage.md" in found.stdout, found.stderr
        ollama.start(port)
        back = watcher.wait_until(lambda: snapshot(env)[3] == 0, "pending chunks embedded")
        assert back[-1]["trigger"] == "retry" and back[-1]["embedded"] >= 1
        assert snapshot(env) == Fresh(tmp_path, ollama.host)(notes)
        assert watcher.interrupt()[0] == 130
    finally:
        ollama.stop()


WATCH_SERVER_DOWN_HINT = (
    "start it (`docker compose up -d chromadb`, or `chroma run --path DIR --port PORT`); watch "
    "tries again by itself, and finishes any interrupted work; or unset RAGGED_CHROMA_URL to "
    "use the embedded store"
)


@pytest.fixture
def servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[OllamaStandIn, ChromaServer]]:
    """An Ollama stand-in and a Chroma server (RAGGED_CHROMA_URL) of the test's own, which
    it may stop and start again."""
    ollama = OllamaStandIn().start()
    server = ChromaServer(tmp_path / "chroma").start()
    monkeypatch.setenv("RAGGED_CHROMA_URL", server.url)
    try:
        yield ollama, server
    finally:
        ollama.stop()
        server.stop()


@pytest.mark.server
def test_a_watch_that_cannot_embed_or_store_says_what_to_do(
    tmp_path: Path, env: Path, watchers: Any, servers: tuple[OllamaStandIn, ChromaServer]
) -> None:
    """The retry line comes with the hint `ingest` gives for the same fault, on the line right
    after it: Ollama gone, then the Chroma server gone, each fixed while the watch runs."""
    ollama, server = servers
    notes = tmp_path / "notes"
    write_notes(notes)
    port = int(ollama.host.rsplit(":", 1)[1])
    watcher: Watcher = watchers(env, ollama.host, notes, as_json=False)
    seen = watcher.line("synced 3 files") + 1
    ollama.stop()
    (notes / "outage.md").write_text("# Outage\n\nWombats produce cube-shaped droppings.\n")
    seen = watcher.line("stored as text and await", seen) + 1
    assert watcher.line("hint:", seen) == seen
    assert watcher.stderr[seen].rstrip().endswith(f"hint: {NOT_RUNNING_HINT}")
    ollama.start(port)
    server.stop()
    (notes / "later.md").write_text("# Later\n\nQuokkas are marsupials.\n")
    seen = watcher.line("could not apply changes", seen) + 1
    assert watcher.line("hint:", seen) == seen
    # What `ingest` says, but for the "run the command again": watch tries again itself.
    assert watcher.stderr[seen].rstrip().endswith(f"hint: {WATCH_SERVER_DOWN_HINT}")
    server.start()
    # Both faults mended: every file stored and embedded, the catalog and the store agreeing.
    deadline = time.monotonic() + TIMEOUT
    while len(snapshot(env)[0]) != 5 or snapshot(env)[3]:
        assert time.monotonic() < deadline, "".join(watcher.stderr)
        time.sleep(0.2)
    _, in_catalog, in_store, _ = snapshot(env)
    assert in_catalog == in_store
    assert watcher.interrupt()[0] == 130


@pytest.mark.server
def test_a_retry_in_json_carries_the_hint(
    tmp_path: Path, env: Path, watchers: Any, servers: tuple[OllamaStandIn, ChromaServer]
) -> None:
    ollama, server = servers
    notes = tmp_path / "notes"
    write_notes(notes)
    watcher: Watcher = watchers(env, ollama.host, notes)
    assert watcher.batch()["hint"] is None
    server.stop()
    (notes / "later.md").write_text("# Later\n\nQuokkas are marsupials.\n")
    failed = watcher.batch()
    assert failed["error"] and failed["retry_in"] > 0
    assert failed["hint"] == WATCH_SERVER_DOWN_HINT, failed
    assert watcher.interrupt()[0] == 130


def test_one_line_per_applied_batch_without_json(
    ollama: OllamaStandIn, tmp_path: Path, env: Path
) -> None:
    notes = tmp_path / "notes"
    write_notes(notes)
    proc = subprocess.Popen(
        [*RAGGED, "watch", str(notes), "--debounce", "150"],
        env={**os.environ, "RAGGED_HOME": str(env), "OLLAMA_HOST": ollama.host},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while snapshot(env)[3] != 0 or len(snapshot(env)[0]) != 3:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        (notes / "notes.txt").rename(notes / "renamed.txt")
        while str(notes / "renamed.txt") not in {f[0] for f in snapshot(env)[0]}:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert out == ""  # the lines are status: stdout stays clean
    lines = [line for line in err.splitlines() if line and not line.startswith(("watching", "-"))]
    assert "synced 3 files, 3 added, 3 chunks embedded" in lines[0]
    assert "1 moved (" in lines[1]
    assert lines[2] == "interrupted" and "\x1b[" not in err


@pytest.mark.parametrize(
    ("target", "message"),
    [("missing", "no such folder"), ("file.md", "not a folder; watch the folder that holds it")],
)
def test_watch_needs_existing_folders(
    runner: CliRunner, tmp_path: Path, target: str, message: str
) -> None:
    (tmp_path / "file.md").write_text("# x\n")
    result = runner.invoke(app, ["watch", str(tmp_path / target)])
    assert result.exit_code == 1
    assert message in result.output


def test_watch_help_stays_light() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from ragged.cli import app; "
        "r = CliRunner().invoke(app, ['watch', '--help']); assert '--debounce' in r.output; "
        "print(sorted(m for m in ('watchfiles', 'chromadb', 'ollama', 'docx', 'pptx', "
        "'rapidocr') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_terminal_gets_a_live_status(ollama: OllamaStandIn, tmp_path: Path, env: Path) -> None:
    import pty
    import select

    notes = tmp_path / "notes"
    write_notes(notes)
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [*RAGGED, "watch", str(notes)],
        env={
            **os.environ,
            "RAGGED_HOME": str(env),
            "OLLAMA_HOST": ollama.host,
            "TERM": "xterm-256color",
            "COLUMNS": "120",
        },
        stdin=child,
        stdout=child,
        stderr=child,
    )
    os.close(child)
    # poll, not select: the suite may already hold more than 1,024 descriptors.
    poller = select.poll()
    poller.register(main, select.POLLIN)

    def read(wait: float) -> bytes:
        if not poller.poll(wait * 1000):
            return b""
        try:
            return os.read(main, 65536)
        except OSError:  # the child closed the terminal
            return b""

    seen = b""
    deadline = time.monotonic() + TIMEOUT
    try:
        while "watching · synced".encode() not in seen and time.monotonic() < deadline:
            seen += read(1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        while data := read(0.5):
            seen += data
        os.close(main)
    text = seen.decode(errors="replace")
    assert "watching" in text and "synced 3 files, 3 added" in text
    assert "watching · synced" in text  # the status line under the batch lines
    assert proc.returncode == 130


def secret_edited_out(
    watchers: Any,
    ollama: OllamaStandIn,
    env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    purge_s: str,
) -> tuple[Watcher, Path]:
    """A watch (RAGGED_WATCH_PURGE_S=purge_s) of folders with a secret, synced, then the secret
    edited out of its file; returns the watcher and the folder."""
    monkeypatch.setenv("RAGGED_WATCH_PURGE_S", purge_s)
    docs = secret_docs(tmp_path / "docs", n=3)
    w = watchers(env, ollama.host, docs)
    w.batch()
    assert files_holding(env, SECRET)
    (docs / "secret.md").write_text("# Payroll\n\nMoved to the HR system.\n")
    return w, docs


def test_text_a_change_deletes_is_purged_once_the_folders_are_quiet(
    ollama: OllamaStandIn,
    tmp_path: Path,
    env: Path,
    watchers: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A secret edited out of a watched file leaves no file of the data dir, as after
    `ingest` or `remove`, once the folders have been quiet for RAGGED_WATCH_PURGE_S."""
    w, _ = secret_edited_out(watchers, ollama, env, tmp_path, monkeypatch, purge_s="0.5")
    w.wait_until(lambda: bool(files_holding(env, "Moved to the HR")), "the change applied")
    w.wait_until(lambda: files_holding(env, SECRET) == [], "the old text purged", batch=False)
    assert w.proc.poll() is None


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_watch_purges_at_stop_what_it_had_not_yet(
    ollama: OllamaStandIn,
    tmp_path: Path,
    env: Path,
    watchers: Any,
    monkeypatch: pytest.MonkeyPatch,
    how: signal.Signals,
) -> None:
    """The purge waits for quiet folders (it rewrites the store's file: not at every save of
    an editor), and Ctrl-C does what is left of it before watch exits; so do `kill`, systemd
    and `docker stop` (SIGTERM) and a closed terminal (SIGHUP), found in review not to."""
    w, _ = secret_edited_out(watchers, ollama, env, tmp_path, monkeypatch, purge_s="600")
    w.wait_until(lambda: bool(files_holding(env, "Moved to the HR")), "the change applied")
    assert "chroma/chroma.sqlite3" in files_holding(env, SECRET)  # not yet: not quiet for 600 s
    code, err = w.interrupt(how)
    assert code == 128 + how, err
    assert files_holding(env, SECRET) == []


def test_nohup_watch_outlives_its_terminal(
    ollama: OllamaStandIn, tmp_path: Path, env: Path, watchers: Any
) -> None:
    """Found in review: watch's SIGHUP handler (purge, then exit) replaced the `ignore` that
    `nohup ragged watch ~/notes &` had set, so closing the terminal stopped it."""
    docs = secret_docs(tmp_path / "docs", n=2)
    w = watchers(env, ollama.host, docs, nohup=True)
    w.batch()
    w.proc.send_signal(signal.SIGHUP)
    (docs / "doc01.md").write_text("# Doc 1\n\nStill watched after the hang-up.\n")
    w.wait_until(lambda: bool(files_holding(env, "Still watched")), "a change after SIGHUP")
    assert w.proc.poll() is None
    code, err = w.interrupt()
    assert code == 130, err


def test_folders_that_never_go_quiet_still_have_deleted_text_purged(
    ollama: OllamaStandIn,
    tmp_path: Path,
    env: Path,
    watchers: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file rewritten every fraction of a second (a log) keeps the folders from going quiet
    for RAGGED_WATCH_PURGE_S; the purge still comes, at the latest ten times that after the
    first batch that deleted text."""
    w, docs = secret_edited_out(watchers, ollama, env, tmp_path, monkeypatch, purge_s="0.5")
    log = docs / "log.md"
    deadline = time.monotonic() + 20  # the cap is 5 s after the first such batch
    n = 0
    while files_holding(env, SECRET):
        assert time.monotonic() < deadline, "the deleted text was not purged while changes went on"
        n += 1
        log.write_text(f"# Log\n\nentry {n} " + "tick " * n)
        time.sleep(0.2)
    assert n > 10  # the changes went on the whole time (0.5 s of quiet never came)
    assert w.proc.poll() is None
