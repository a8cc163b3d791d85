"""A full disk under the data dir (a real tmpfs of a few MB): every command says so in one
line, nothing is called damaged that is not, and what was stored is kept, so that once space
is freed the next run finishes the work and the catalog and the store agree."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragged.catalog import open_catalog
from ragged.config import load_settings
from tests.chroma_server import ChromaServer
from tests.conftest import new_chroma_database
from tests.mounts import SmallDisk
from tests.ollama_standin import OllamaStandIn
from tests.ragged_server import RaggedServer, server_env
from tests.test_data_dir import files_holding
from tests.test_ingest_robust import environ, stored_ids
from tests.test_watch import Watcher

RAGGED = [sys.executable, "-m", "ragged"]
FILES = 120


def notes(root: Path, seed: int = 7) -> Path:
    """120 notes of ~1,500 words each (~1,500 chunks' worth of store: 15-20 MB), each with a
    word found in it alone."""
    rng = random.Random(seed)
    words = [a + b for a in ("lor", "ips", "dol", "sit", "ame", "con") for b in ("an", "ex", "or")]
    root.mkdir(parents=True)
    for i in range(FILES):
        paras = [" ".join(rng.choice(words) for _ in range(120)) + "." for _ in range(12)]
        (root / f"note-{i:03}.md").write_text(f"# Note {i}\n\nmarker{i} " + "\n\n".join(paras))
    return root


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    small = SmallDisk(tmp_path / "disk", "200m")
    try:
        yield small
    finally:
        small.close()


def ragged(home: Path, ollama: OllamaStandIn, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RAGGED, *args],
        env=environ(home, ollama, NO_COLOR="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )


def says_disk_full(done: subprocess.CompletedProcess[str], home: Path) -> None:
    """One error line naming the disk, its hint, exit 1, and no traceback."""
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "│" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"Error: the disk holding {home}"), done.stderr
    assert " is full (" in errors[0], done.stderr
    assert "damaged" not in done.stderr
    assert "hint: free some space on it, or move the data dir (RAGGED_HOME)" in done.stderr


def agrees(home: Path) -> None:
    """Every note stored once, its chunks in the catalog and the store alike, none pending."""
    in_store, in_catalog, pending = stored_ids(home)
    assert in_store == in_catalog and pending == 0
    assert len(in_catalog) > FILES


# Three sizes, three places the disk fills up on the machine this was written on: the
# catalog's commit (2 MB), a Chroma write (4 MB), Chroma's compaction of its log (6 MB).
@pytest.mark.parametrize("size", ["2m", "4m", "6m"])
def test_an_ingest_that_fills_the_disk_says_so_and_the_next_run_finishes_the_work(
    ollama: OllamaStandIn, tmp_path: Path, disk: SmallDisk, size: str
) -> None:
    folder = notes(tmp_path / "notes")
    home = disk.point / "home"
    disk.resize(size)
    stopped = ragged(home, ollama, "ingest", str(folder))
    says_disk_full(stopped, home)
    assert re.search(
        rf"is full \(.+ free\): ingest stopped after \d+ of {FILES} files; what it stored is kept\n",
        stopped.stderr,
    ), stopped.stderr
    # Run again on the same full disk: the same line, whatever no longer opens.
    says_disk_full(ragged(home, ollama, "ingest", str(folder)), home)

    disk.resize("200m")
    again = ragged(home, ollama, "ingest", str(folder), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["pending"] == 0
    agrees(home)
    listed = json.loads(ragged(home, ollama, "list", "--json").stdout)
    assert len(listed) == FILES
    found = ragged(home, ollama, "search", "marker37", "--mode", "lexical", "--json")
    assert json.loads(found.stdout)["hits"][0]["path"].endswith("note-037.md"), found.stdout


def test_on_a_full_disk_reads_say_so_and_doctor_fix_moves_no_catalog_aside(
    ollama: OllamaStandIn, tmp_path: Path, disk: SmallDisk
) -> None:
    folder = notes(tmp_path / "notes")
    home = disk.point / "home"
    assert ragged(home, ollama, "ingest", str(folder), "--quiet").returncode == 0
    filler = disk.fill()

    for command in (["search", "marker37"], ["ask", "what is marker37?"], ["list"]):
        says_disk_full(ragged(home, ollama, *command), home)
    fixed = ragged(home, ollama, "doctor", "--fix", "--json")
    report: dict[str, Any] = json.loads(fixed.stdout)
    failed = {c["name"]: c for c in report["checks"] if c["status"] == "fail"}
    assert "disk" in failed, report
    assert not [c for c in report["checks"] if "damaged" in (c.get("detail") or "")], report
    catalogs = sorted(p.name for p in (home / "catalog" / "embedded").iterdir())
    assert not [name for name in catalogs if ".damaged-" in name], catalogs

    filler.unlink()
    found = ragged(home, ollama, "search", "marker37", "--mode", "lexical", "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["hits"][0]["path"].endswith("note-037.md")
    agrees(home)


def test_watch_on_a_full_disk_says_so_and_catches_up_once_space_is_freed(
    ollama: OllamaStandIn, tmp_path: Path, disk: SmallDisk
) -> None:
    folder = notes(tmp_path / "notes")
    home = disk.point / "home"
    watcher = Watcher(home, ollama.host, folder)
    try:
        _catches_up(watcher, folder, home, disk)
    finally:
        watcher.kill()


def _catches_up(watcher: Watcher, folder: Path, home: Path, disk: SmallDisk) -> None:
    assert watcher.batch()["added"] == FILES
    filler = disk.fill()
    (folder / "late.md").write_text("# Late\n\nlatemarker: written after the disk filled up.\n")

    failed = watcher.batch()
    assert failed["error"].startswith(f"the disk holding {home}"), failed
    assert " is full (" in failed["error"] and failed["retry_in"] > 0, failed
    assert failed["hint"] == (
        "free some space on it, or move the data dir (RAGGED_HOME); watch tries again by "
        "itself, and finishes any interrupted work"
    )
    filler.unlink()

    def late_stored() -> bool:
        catalog = open_catalog(load_settings({"home": home}))
        try:
            return any(f.path.endswith("late.md") for f in catalog.files())
        finally:
            catalog.close()

    watcher.wait_until(late_stored, "the new file stored once space was freed")
    agrees(home)
    assert watcher.interrupt()[0] == 130


@pytest.mark.server
def test_a_full_disk_on_the_chroma_server_is_named_as_the_servers(
    ollama: OllamaStandIn, tmp_path: Path, disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "the disk holding RAGGED_HOME": this machine's disk has room."""
    server = ChromaServer(disk.point / "server" / "data")
    server.start()
    try:
        monkeypatch.setenv("RAGGED_CHROMA_URL", server.url)
        home = tmp_path / "home"
        assert ragged(home, ollama, "ingest", str(notes(tmp_path / "notes"))).returncode == 0
        filler = disk.fill()
        more = notes(tmp_path / "more", seed=8)
        done = ragged(home, ollama, "ingest", str(more))
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, done.stderr
        assert errors[0].startswith(
            f"Error: the Chroma server at {server.url} has run out of disk space: "
        ), done.stderr
        assert "hint: free some space on the server's disk" in done.stderr

        filler.unlink()
        again = ragged(home, ollama, "ingest", str(more), "--json")
        assert again.returncode == 0 and json.loads(again.stdout)["pending"] == 0, again.stderr
        agrees(home)
    finally:
        server.stop()


@pytest.mark.server
def test_a_copy_onto_a_full_disk_says_so_and_the_next_copy_finishes_it(
    ollama: OllamaStandIn,
    tmp_path: Path,
    disk: SmallDisk,
    chroma_server: ChromaServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAGGED_CHROMA_DATABASE", new_chroma_database(chroma_server))
    url = chroma_server.url
    folder = notes(tmp_path / "notes")
    on_server = ragged(tmp_path / "elsewhere", ollama, "--chroma-url", url, "ingest", str(folder))
    assert on_server.returncode == 0, on_server.stderr
    home = disk.point / "home"
    for size in ("2m", "4m"):
        disk.resize(size)
        says_disk_full(ragged(home, ollama, "copy", "--from", url), home)

    disk.resize("200m")
    again = ragged(home, ollama, "copy", "--from", url, "--json")
    assert again.returncode == 0, again.stderr
    agrees(home)
    assert len(json.loads(ragged(home, ollama, "list", "--json").stdout)) == FILES


def test_the_app_answers_503_on_a_full_disk_and_serves_again_once_space_is_freed(
    ollama: OllamaStandIn, tmp_path: Path, disk: SmallDisk
) -> None:
    home = disk.point / "home"
    assert ragged(home, ollama, "ingest", str(notes(tmp_path / "notes"))).returncode == 0
    with RaggedServer(server_env(home, ollama.host)) as server:
        filler = disk.fill()
        full = httpx.post(server.url + "/search", json={"query": "marker37"}, timeout=60)
        assert full.status_code == 503, full.text
        error = full.json()["error"]
        assert error["message"].startswith(f"the disk holding {home}"), error
        assert " is full (" in error["message"] and error["hint"].startswith("free some space")
        health = httpx.get(server.url + "/health", timeout=60)
        assert health.status_code == 503 and " is full (" in health.json()["store"]["error"]

        filler.unlink()
        back = httpx.post(server.url + "/search", json={"query": "marker37"}, timeout=60)
        assert back.status_code == 200, back.text
        assert back.json()["hits"][0]["path"].endswith("note-037.md")
        assert httpx.get(server.url + "/health", timeout=60).status_code == 200


def collection_check(home: Path, ollama: OllamaStandIn, *args: str) -> dict[str, Any]:
    done = ragged(home, ollama, "doctor", *args, "--json")
    checks = json.loads(done.stdout)["checks"]
    return next(c for c in checks if c["name"] == "collection default")


# KB left free before `remove`: too few for the catalog's step (nothing is removed), or for
# the store's (the catalog has forgotten the files, Chroma still holds their text), or enough.
@pytest.mark.parametrize("reserve", [64, 256, 1024])
def test_a_remove_stopped_by_a_full_disk_is_named_by_doctor_and_finished_by_its_fix(
    ollama: OllamaStandIn, tmp_path: Path, disk: SmallDisk, reserve: int
) -> None:
    folder = notes(tmp_path / "notes")
    home = disk.point / "home"
    assert ragged(home, ollama, "ingest", str(folder), "--quiet").returncode == 0
    gone = {str(folder / f"note-00{i}.md"): f"marker{i} " for i in (1, 2)}
    filler = disk.fill(leave=reserve * 1024)
    done = ragged(home, ollama, "remove", *gone)
    filler.unlink()

    listed = {f["path"] for f in json.loads(ragged(home, ollama, "list", "--json").stdout)}
    forgotten = [word for path, word in gone.items() if path not in listed]
    if done.returncode != 0:  # the line says which of the two steps the disk stopped
        says_disk_full(done, home)
        if forgotten:
            assert (
                f": remove stopped: {len(forgotten)} of 2 files are no longer searched, and "
                "their text is deleted from the data dir by `ragged doctor --fix`"
            ) in done.stderr
        else:
            assert ": remove stopped; nothing was removed\n" in done.stderr
    left = [word for word in forgotten if files_holding(home, word)]
    health = collection_check(home, ollama)
    if left:  # their text is still on disk: doctor must not say all is well, nor remove
        assert health["status"] == "warn", health
        assert done.returncode != 0 or "! could not purge deleted text from " in done.stderr
    collection_check(home, ollama, "--fix")
    assert [word for word in forgotten if files_holding(home, word)] == []
    assert collection_check(home, ollama)["status"] == "ok"
    agrees(home)
