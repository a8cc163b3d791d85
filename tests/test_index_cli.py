"""The index mirrors the files exactly (issue 10), each case through the real `ragged` command.

Real files on disk, the Ollama stand-in over HTTP, real Chroma: embedded, and a real
`chroma run` server where the case applies to both.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.catalog import catalog_path
from ragged.cli import app
from ragged.config import load_settings
from ragged.store import open_store
from tests.chroma_server import ChromaServer
from tests.conftest import DATA, bench_dir, new_chroma_database
from tests.ollama_standin import OllamaStandIn

RAGGED = [sys.executable, "-m", "ragged"]
both_stores = pytest.mark.usefixtures("chroma_mode")
# A shared collection's case: against a real Chroma server only (conftest's chroma_mode).
on_a_server = pytest.mark.parametrize(
    "chroma_mode", [pytest.param("server", marks=pytest.mark.server)], indirect=True
)


def run(runner: CliRunner, *args: str, ok: bool = True, input: str | None = None):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args), catch_exceptions=not ok, input=input)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def ingest(runner: CliRunner, *args: str, ok: bool = True) -> dict:  # type: ignore[type-arg]
    result = run(runner, "ingest", *args, "--json", ok=ok)
    return json.loads(result.stdout)


def listing(runner: CliRunner, *args: str) -> dict[str, dict]:  # type: ignore[type-arg]
    return {s["path"]: s for s in json.loads(run(runner, "list", "--json", *args).stdout)}


def hits(runner: CliRunner, query: str, *args: str) -> list[dict]:  # type: ignore[type-arg]
    return json.loads(run(runner, "search", query, "--json", *args).stdout)["hits"]


def chunk_ids() -> set[str]:
    return open_store(load_settings()).ids()


def tree(root: Path) -> Path:
    """corpus/markdown/{fastapi,typer}/… like the shared corpus, small."""
    for project in ("fastapi", "typer"):
        folder = root / "markdown" / project / "tutorial"
        folder.mkdir(parents=True)
        (folder / "testing.md").write_text(
            f"# Testing {project}\n\nUse the {project} test client to call your app in tests.\n"
        )
        (folder / "intro.md").write_text(f"# {project} intro\n\nThe {project} quetzal tutorial.\n")
    (root / "notes.txt").write_text("Capybaras are the largest living rodents.\n")
    return root


# -- identity: a file is its absolute path, whichever folder reached it ------------------------


@both_stores
def test_overlapping_folders_change_nothing(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    corpus = tree(tmp_path / "corpus")
    first = ingest(runner, str(corpus))
    assert first["added"] == 5
    labels = {h["id"]: h["label"] for h in hits(runner, "quetzal tutorial testing client")}
    embeds = ollama.count("/api/embed")

    narrower = ingest(runner, str(corpus / "markdown"))
    again = ingest(runner, str(corpus))
    for report in (narrower, again):
        assert report["added"] == report["updated"] == report["removed"] == 0
        assert report["embedded"] == 0
    assert narrower["unchanged"] == 4 and again["unchanged"] == 5
    assert ollama.count("/api/embed") == embeds
    # The label shown for a file does not depend on the folder that was typed.
    assert {h["id"]: h["label"] for h in hits(runner, "quetzal tutorial testing client")} == labels


@both_stores
def test_two_roots_with_the_same_relative_paths_are_told_apart(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    corpus = tree(tmp_path / "corpus")
    ingest(
        runner, "-c", "two", str(corpus / "markdown" / "typer"), str(corpus / "markdown/fastapi")
    )
    found = hits(runner, "test client call your app", "-c", "two", "--mode", "lexical")
    testing = {h["label"] for h in found if h["path"].endswith("testing.md")}
    assert len(testing) == 2
    assert all(label.endswith("/tutorial/testing.md") for label in testing)
    assert any("/typer/" in label for label in testing) and any(
        "/fastapi/" in lbl for lbl in testing
    )

    asked = json.loads(run(runner, "ask", "How do I test my app?", "-c", "two", "--json").stdout)
    sources = {s["label"] for s in asked["sources"] if s["path"].endswith("testing.md")}
    assert sources == testing


# -- pruning: only what is gone, or excluded by a rule that persists ---------------------------


@both_stores
@pytest.mark.parametrize(
    "narrowing",
    [("--include", "*.md"), ("--exclude", "*.txt"), ("--max-file-mb", "0.00001")],
    ids=["include", "exclude", "max-file-mb"],
)
def test_a_one_off_filter_never_deletes(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path, narrowing: tuple[str, str]
) -> None:
    corpus = tree(tmp_path / "corpus")
    ingest(runner, str(corpus))
    before = chunk_ids()
    report = ingest(runner, str(corpus), *narrowing)
    assert report["removed"] == 0
    assert len(listing(runner)) == 5 and chunk_ids() == before


def test_a_folder_moved_and_ingested_under_its_new_name_leaves_no_copy_behind(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    """0.2 said "5 added (5 moved)" yet kept the old paths too: `list` showed every file twice,
    the old ones "ok", and search cited files that no longer exist."""
    corpus = tree(tmp_path / "notes")
    ingest(runner, str(corpus))
    stored = chunk_ids()
    moved = tmp_path / "Notes"
    corpus.rename(moved)
    (moved / "markdown/typer/tutorial/intro.md").rename(moved / "intro-typer.md")
    result = run(runner, "ingest", str(moved), "--json")
    report = json.loads(result.stdout)
    assert (report["added"], report["moved"], report["removed"]) == (5, 5, 5), report
    assert report["embedded"] == 0  # the vectors moved along
    said = result.stderr
    assert f"- {corpus / 'notes.txt'}: removed, moved to {moved / 'notes.txt'}" in said
    old, new = corpus / "markdown/typer/tutorial/intro.md", moved / "intro-typer.md"
    assert f"- {old}: removed, moved to {new}" in said
    on_disk = sorted(str(p) for p in moved.rglob("*") if p.is_file())
    assert sorted(listing(runner)) == on_disk
    assert len(chunk_ids()) == len(stored)
    found = hits(runner, "quetzal tutorial")
    assert found and all(h["path"] in on_disk for h in found)
    assert run(runner, "doctor", "--json").exit_code == 0


@on_a_server
def test_on_a_shared_server_a_path_missing_here_is_not_taken_for_a_move(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path, chroma_mode: str
) -> None:
    """A server's collection holds other machines' files, whose paths this one cannot see:
    a file here with the same bytes is a copy, and theirs stays."""
    theirs = tree(tmp_path / "theirs")
    ingest(runner, str(theirs))
    ours = tmp_path / "ours"
    theirs.rename(ours)  # as seen from here, their paths are missing
    report = ingest(runner, str(ours))
    assert (report["added"], report["moved"], report["removed"]) == (5, 0, 0), report
    assert len(listing(runner)) == 10


@both_stores
def test_deleted_and_newly_ignored_files_are_removed_with_the_reason(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    corpus = tree(tmp_path / "corpus")
    ingest(runner, str(corpus))
    (corpus / "notes.txt").unlink()
    (corpus / ".raggedignore").write_text("markdown/typer/\n")
    result = run(runner, "ingest", str(corpus))
    assert f"{corpus / 'notes.txt'}: removed, deleted from disk" in result.stderr
    assert (
        f"{corpus / 'markdown/typer/tutorial/intro.md'}: removed, now excluded by "
        f"{corpus / '.raggedignore'}" in result.stderr
    )
    assert sorted(Path(p).relative_to(corpus).as_posix() for p in listing(runner)) == [
        "markdown/fastapi/tutorial/intro.md",
        "markdown/fastapi/tutorial/testing.md",
    ]


@both_stores
def test_a_folder_that_comes_back_empty_is_not_wiped(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    corpus = tree(tmp_path / "corpus")
    ingest(runner, str(corpus))
    before = chunk_ids()
    mount = tmp_path / "elsewhere"
    shutil.move(corpus, mount)
    corpus.mkdir()  # the mount point of a disk that is not mounted

    result = run(runner, "ingest", str(corpus), ok=False)
    assert result.exit_code == 1
    assert f"{corpus} yielded no files, but the collection holds 5 from it" in result.stderr
    assert f"ragged remove {corpus}" in result.stderr
    assert len(listing(runner)) == 5 and chunk_ids() == before

    # Said on purpose: then they go.
    confirmed = ingest(runner, str(corpus), "--yes")
    assert confirmed["removed"] == 5 and listing(runner) == {}


@both_stores
def test_a_stored_file_or_folder_named_but_gone_says_what_the_collection_still_holds(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    """0.2 said only "no such file or directory", though the collection still served what it
    had stored from there; nothing said how to forget it."""
    corpus = tree(tmp_path / "corpus")
    ingest(runner, str(corpus))
    notes = corpus / "notes.txt"
    notes.unlink()
    result = run(runner, "ingest", str(notes), ok=False)
    assert result.exit_code == 1
    said = " ".join(result.stderr.split())
    assert (
        f"✗ {notes}: no such file or directory; the collection still holds it from an earlier "
        f"run (`ragged remove {notes}` forgets it)" in said
    ), said
    shutil.rmtree(corpus)  # or a disk's mount point, gone while it is not mounted
    result = run(runner, "ingest", str(corpus), ok=False)
    said = " ".join(result.stderr.split())
    assert (
        f"✗ {corpus}: no such file or directory; the collection still holds 5 files from it, "
        f"kept as an unmounted disk's would be (`ragged remove {corpus}` forgets them)" in said
    ), said
    assert len(listing(runner)) == 5
    never = run(runner, "ingest", str(tmp_path / "never"), ok=False)
    assert f"✗ {tmp_path / 'never'}: no such file or directory\n" in never.stderr


def test_list_says_which_stored_files_are_missing_from_disk(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    """0.2 listed a stored file deleted outside any folder ingested since as "ok", though
    search and ask went on citing it."""
    corpus = tree(tmp_path / "corpus")
    ingest(runner, str(corpus))
    notes = corpus / "notes.txt"
    notes.unlink()
    listed = listing(runner)
    assert listed[str(notes)]["status"] == "missing"
    assert "not found on this machine" in listed[str(notes)]["reason"]
    assert {s["status"] for p, s in listed.items() if p != str(notes)} == {"ok"}
    assert list(listing(runner, "--status", "missing")) == [str(notes)]
    shown = " ".join(run(runner, "list").stdout.split())
    assert "missing" in shown
    run(runner, "remove", str(notes), "--yes")
    assert listing(runner, "--status", "missing") == {}


@on_a_server
def test_on_a_shared_server_files_not_on_this_machine_are_not_called_missing(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path, chroma_mode: str
) -> None:
    """Another machine's files are not here either, and not this machine's to remove."""
    theirs = tree(tmp_path / "theirs")
    ingest(runner, str(theirs))
    shutil.rmtree(theirs)  # as seen from another machine
    assert {s["status"] for s in listing(runner).values()} == {"ok"}


def test_headings_of_small_sections_that_share_a_chunk_are_searchable(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    """Reproduced: three short sections merged into one chunk under the first heading, and
    `ragged search Bravo --mode lexical` found nothing; with text above the first heading,
    not even the title was kept. The chunk still shows and cites as before."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "merged.md").write_text(
        "# Alpha\n\nfirst para\n\n## Bravo\n\nsecond para\n\n## Charlie\n\nthird para\n"
    )
    (docs / "intro.md").write_text("An opening line.\n\n# Delta\n\nfourth para\n")
    ingest(runner, str(docs))

    def found_by_keyword() -> None:
        # By keyword: the headings are indexed for BM25, not embedded (see embed_text).
        for word, name in [("Bravo", "merged.md"), ("Charlie", "merged.md"), ("Delta", "intro.md")]:
            found = hits(runner, word, "--mode", "lexical")
            assert [Path(h["path"]).name for h in found] == [name], (word, found)
        (merged,) = hits(runner, "Bravo", "--mode", "lexical")
        assert merged["heading"] == "Alpha"
        assert merged["text"] == "first para\n\nsecond para\n\nthird para"

    found_by_keyword()
    # Hybrid too: a word only one passage holds lifts it over passages that lack the word.
    # (Reproduced: with one keyword hit, every other passage was given that hit's keyword
    # score, so the ranking was the vectors' alone and intro.md came first.)
    top = hits(runner, "Bravo", "--mode", "hybrid")[0]
    assert Path(top["path"]).name == "merged.md", top
    # A catalog rebuilt from the store keeps them: they travel in the chunks' metadata.
    path = catalog_path(load_settings())
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert "rebuilt it from the vector store" in run(runner, "list").stderr
    found_by_keyword()


# -- the catalog lost, emptied or damaged: rebuilt from the store, never a deletion -------------


@both_stores
@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_lost_catalog_is_rebuilt_not_a_reason_to_delete(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path, how: str
) -> None:
    corpus = tree(tmp_path / "corpus")
    ingest(runner, str(corpus))
    before = chunk_ids()
    shutil.move(corpus / "notes.txt", tmp_path / "notes.txt")  # a source gone from disk since
    path = catalog_path(load_settings())
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    if how == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"")

    embeds = ollama.count("/api/embed")
    result = run(runner, "ingest", str(corpus / "markdown" / "typer"), "--json")
    assert "rebuilt it from the vector store" in result.stderr
    assert json.loads(result.stdout)["embedded"] == 0 and ollama.count("/api/embed") == embeds
    assert chunk_ids() == before  # nothing deleted, not even the file no longer on disk
    assert len(listing(runner)) == 5
    assert hits(runner, "largest living rodents", "--mode", "lexical")[0]["path"].endswith(
        "notes.txt"
    )


def test_a_damaged_catalog_is_named_with_its_repair(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    corpus = tree(tmp_path / "corpus")
    ingest(runner, str(corpus))
    path = catalog_path(load_settings())
    path.write_bytes(b"this is not a database" * 200)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)

    for command in (("search", "capybara"), ("list",), ("ingest", str(corpus))):
        result = run(runner, *command, ok=False)
        assert result.exit_code == 1, command
        assert f"{path}: the catalog is damaged" in result.stderr
        assert "ragged doctor --fix" in result.stderr and "Traceback" not in result.output

    doctor = run(runner, "doctor", "--json", ok=False)
    check = next(
        c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "collection default"
    )
    assert check["status"] == "fail" and "damaged" in check["detail"]
    fixed = json.loads(run(runner, "doctor", "--fix", "--json", ok=False).stdout)
    check = next(c for c in fixed["checks"] if c["name"] == "collection default")
    assert check["status"] == "ok", check
    assert len(listing(runner)) == 5
    assert list(path.parent.glob("default.sqlite.damaged-*"))  # kept aside, not deleted


def test_a_catalog_from_ragged_0_1_0_is_upgraded_in_place(
    runner: CliRunner, ollama: OllamaStandIn
) -> None:
    path = catalog_path(load_settings())
    path.parent.mkdir(parents=True)
    shutil.copy(DATA / "catalogs" / "ragged-0.1.0.sqlite", path)
    files = listing(runner)
    assert sorted(Path(p).name for p in files) == [
        "install.md",
        "notes.txt",
        "reference.rst",
        "report.pdf",
        "travel.html",
    ]
    assert files["/tmp/fx-docs/report.pdf"]["pages"] == 2
    top = hits(runner, "lighthouse keeper", "--mode", "lexical")[0]
    assert (top["path"], top["page"]) == ("/tmp/fx-docs/report.pdf", 2)
    # Migration 3 made the BM25 index anew, with a column for a shared chunk's later headings.
    top = hits(runner, "Quorum Ravenholm", "--mode", "lexical")[0]
    assert (Path(top["path"]).name, top["heading"]) == ("reference.rst", "Glossary > Quorum")
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "3"
    assert db.execute("SELECT count(*) FROM chunks WHERE subheadings != ''").fetchone()[0] == 0


# -- the vector store lost or damaged: doctor sees it, search says so ---------------------------


def cli(environ: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    """`ragged ARGS` in a process of its own, as a person runs it one command at a time."""
    done = subprocess.run([*RAGGED, *args], env=environ, capture_output=True, text=True)
    assert done.returncode == code, done.stderr
    return done


@pytest.mark.parametrize("loss", ["vector files", "whole folder"])
def test_lost_vectors_are_detected_and_repaired(
    ollama: OllamaStandIn, tmp_path: Path, env: Path, loss: str
) -> None:
    environ = {**os.environ, "RAGGED_HOME": str(env), "OLLAMA_HOST": ollama.host}
    corpus = tree(tmp_path / "corpus")
    # Enough chunks (~1,500) for Chroma to move its vectors out of its SQLite log into its
    # HNSW files (it does past 1,000): deleting those files then really loses vectors.
    words = " ".join(f"word{i}" for i in range(16000))
    (corpus / "long.txt").write_text(words)
    cli(environ, "ingest", str(corpus), "-q", "--chunk-tokens", "32", "--chunk-overlap", "0")
    cli(environ, "doctor")
    chroma = env / "chroma"
    if loss == "whole folder":
        shutil.rmtree(chroma)
    else:
        segments = [p for p in chroma.iterdir() if p.is_dir()]
        assert segments
        for segment in segments:
            shutil.rmtree(segment)

    found = cli(environ, "search", "largest living rodents", "--json")
    result = json.loads(found.stdout)
    assert result["mode"] == "lexical" and "ragged doctor" in result["notice"]
    assert "showing lexical (keyword) results only" in found.stderr
    assert result["hits"][0]["path"].endswith("notes.txt")

    doctor = json.loads(cli(environ, "doctor", "--json", code=1).stdout)
    check = next(c for c in doctor["checks"] if c["name"] == "collection default")
    assert check["status"] == "fail" and "ragged doctor --fix" in check["fix"]

    fixed = json.loads(cli(environ, "doctor", "--fix", "--json").stdout)
    repair = next(c for c in fixed["checks"] if c["name"] == "repair default")
    assert repair["status"] == "ok" and "chunks again" in repair["detail"]
    again = json.loads(cli(environ, "search", "largest living rodents", "--json").stdout)
    assert again["mode"] == "hybrid" and again["notice"] is None
    assert again["hits"][0]["path"].endswith("notes.txt")


def test_a_healthy_collection_of_identical_passages_is_not_called_damaged(
    ollama: OllamaStandIn, tmp_path: Path, env: Path
) -> None:
    """Found in review: doctor reads a few vectors back and searches with each for its own
    chunk; among forty identical passages (a template, copies of one file) the five nearest
    are forty ties, so it called a healthy store unreadable and offered to drop it."""
    environ = {**os.environ, "RAGGED_HOME": str(env), "OLLAMA_HOST": ollama.host}
    corpus = tmp_path / "copies"
    corpus.mkdir()
    for i in range(40):
        (corpus / f"form{i:02}.md").write_text("# Leave request\n\nName, dates, signature.\n")
    cli(environ, "ingest", str(corpus), "-q")
    doctor = json.loads(cli(environ, "doctor", "--json").stdout)
    check = next(c for c in doctor["checks"] if c["name"] == "collection default")
    assert check["status"] == "ok", check


# -- remove: what ragged shows is what it accepts; wide removals ask first --------------------


def test_removing_a_file_still_on_disk_says_the_next_ingest_adds_it_again(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    """`remove` forgets a file, not its folder: the next ingest of the folder added it again
    without a word. Said once, with the way to keep it out, which then holds."""
    corpus = tree(tmp_path / "corpus")
    ingest(runner, str(corpus))
    notes = corpus / "notes.txt"
    removed = run(runner, "remove", str(notes), "--json")
    assert json.loads(removed.stdout)["on_disk"] == [str(notes)]
    said = " ".join(removed.stderr.split())
    assert f"{notes} is still on disk: the next `ingest` of its folder adds it again" in said
    assert ".raggedignore" in said
    assert ingest(runner, str(corpus))["added"] == 1  # as it said
    (corpus / ".raggedignore").write_text("notes.txt\n")
    assert ingest(runner, str(corpus))["removed"] == 1  # now excluded: gone, and stays gone
    assert ingest(runner, str(corpus))["added"] == 0
    gone = corpus / "markdown" / "typer" / "tutorial" / "intro.md"
    gone.unlink()
    removed = run(runner, "remove", str(gone))
    assert "still on disk" not in removed.stderr
    # Found in review: files an ingest of their folder would not take in again get no line.
    hidden = corpus / ".draft.md"
    hidden.write_text("# Draft\n\nNot for the index.\n")
    testing = corpus / "markdown" / "typer" / "tutorial" / "testing.md"
    ingest(runner, str(hidden))
    (testing.parent / ".raggedignore").write_text("testing.md\n")
    for path in (hidden, testing):
        removed = run(runner, "remove", str(path), "--json")
        assert json.loads(removed.stdout)["on_disk"] == [] and "still on disk" not in removed.stderr
    # A rule in a folder above is not read by an ingest of the file's own folder.
    (corpus / "markdown" / ".raggedignore").write_text("fastapi/\n")
    intro = corpus / "markdown" / "fastapi" / "tutorial" / "intro.md"
    assert json.loads(run(runner, "remove", str(intro), "--json").stdout)["on_disk"] == [str(intro)]


@both_stores
def test_remove_accepts_the_label_ragged_prints_from_anywhere(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tree(tmp_path / "corpus")
    ingest(runner, str(corpus))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    removed = json.loads(
        run(runner, "remove", "markdown/typer/tutorial/testing.md", "--json").stdout
    )
    assert removed["removed"] == [str(corpus / "markdown/typer/tutorial/testing.md")]
    monkeypatch.chdir(corpus / "markdown")
    run(runner, "remove", "fastapi/tutorial/intro.md")  # relative to the cwd
    run(runner, "remove", str(corpus / "notes.txt"))  # absolute
    assert sorted(Path(p).name for p in listing(runner)) == ["intro.md", "testing.md"]
    shortened = "…/typer/tutorial/intro.md"  # as a table shows a long label
    run(runner, "remove", shortened)
    assert [Path(p).relative_to(corpus).as_posix() for p in listing(runner)] == [
        "markdown/fastapi/tutorial/testing.md"
    ]
    missing = run(runner, "remove", "nothing/like/this.md", ok=False)
    assert missing.exit_code == 1 and "nothing/like/this.md: not stored" in missing.stderr


@both_stores
@pytest.mark.parametrize("target", ["/", "../.."])
def test_a_removal_wider_than_the_named_files_asks_first(
    runner: CliRunner,
    ollama: OllamaStandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
) -> None:
    corpus = tree(tmp_path / "corpus")
    ingest(runner, str(corpus))
    monkeypatch.chdir(corpus / "markdown" / "typer")
    refused = run(runner, "remove", target, ok=False)  # no terminal to ask on
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    assert "Remove 5 files" in refused.stderr
    assert len(listing(runner)) == 5
    run(runner, "remove", target, "--yes")
    assert listing(runner) == {}
    assert chunk_ids() == set()


def ingested_by_command(
    ollama: OllamaStandIn, tmp_path: Path, env: Path
) -> tuple[Path, dict[str, str]]:
    """`tree`'s 5 files ingested by a `ragged` process, and the environment it ran in."""
    corpus = tree(tmp_path / "corpus")
    environ = {**os.environ, "RAGGED_HOME": str(env), "OLLAMA_HOST": ollama.host}
    subprocess.run([*RAGGED, "ingest", str(corpus), "-q"], env=environ, check=True)
    return corpus, environ


def stored_files(environ: dict[str, str]) -> int:
    listed = subprocess.run([*RAGGED, "list", "--json"], env=environ, capture_output=True)
    return len(json.loads(listed.stdout))


def test_a_wide_removal_asks_on_a_terminal(
    ollama: OllamaStandIn, tmp_path: Path, env: Path
) -> None:
    from tests.terminal import run_in_terminal

    corpus, environ = ingested_by_command(ollama, tmp_path, env)
    text = run_in_terminal([*RAGGED, "remove", str(corpus)], environ, send=("?", b"n\n")).output
    assert "Remove 5 files from collection 'default'?" in text
    assert stored_files(environ) == 5


@pytest.mark.parametrize("command", ["remove", "reset"])
def test_a_question_on_the_terminal_leaves_stdout_to_the_result(
    ollama: OllamaStandIn, tmp_path: Path, env: Path, command: str
) -> None:
    """Reproduced: `ragged remove DIR --json > out`, answered y, left " {" in out: the
    prompt went to stderr but the space after it to stdout."""
    from tests.terminal import run_in_terminal

    corpus, environ = ingested_by_command(ollama, tmp_path, env)
    out = tmp_path / "out.json"
    argv = [*RAGGED, command, *([str(corpus)] if command == "remove" else []), "--json"]
    shell = " ".join(shlex.quote(a) for a in argv) + f" > {shlex.quote(str(out))}"
    asked = run_in_terminal(["sh", "-c", shell], environ, send=("?", b"y\n"))
    assert asked.returncode == 0, asked.plain
    assert "? [y/N]" in asked.plain
    result = json.loads(out.read_text())
    assert out.read_text().startswith("{")
    assert len(result["removed"]) == 5 if command == "remove" else result["files"] == 5


def test_reset_without_a_terminal_refuses_with_the_flag_that_confirms(
    ollama: OllamaStandIn, tmp_path: Path, env: Path
) -> None:
    """Reproduced: `ragged reset < /dev/null` printed the question, then "Aborted!"."""
    corpus, environ = ingested_by_command(ollama, tmp_path, env)
    refused = subprocess.run(
        [*RAGGED, "reset"], env=environ, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "Error: Delete collection 'default' and all it holds (5 files): nobody is here to "
        "confirm it",
        "hint: run again with --yes to delete it",
    ]
    assert stored_files(environ) == 5


def test_the_question_about_a_folder_that_came_back_empty_stays_on_screen(
    ollama: OllamaStandIn, tmp_path: Path, env: Path
) -> None:
    """Reproduced: the progress display redrew over the question at once, so the screen
    showed only a progress bar that seemed to hang while ragged waited for an answer."""
    from tests.terminal import run_in_terminal

    corpus, environ = ingested_by_command(ollama, tmp_path, env)
    shutil.rmtree(corpus)
    corpus.mkdir()
    asked = run_in_terminal(
        [*RAGGED, "ingest", str(corpus)], environ, send=("Remove them?", b"n\n")
    )
    question = [line for line in asked.screen if "Remove them? [y/N]" in line]
    assert question and question[-1].rstrip().endswith("n"), asked.screen
    assert asked.returncode == 1
    assert stored_files(environ) == 5


@pytest.mark.server
def test_sigkill_during_remove_never_cites_the_file_again(
    ollama: OllamaStandIn,
    tmp_path: Path,
    env: Path,
    chroma_server: ChromaServer,
) -> None:
    """Killed after the catalog forgot the files, before the (frozen) server did."""
    corpus = tree(tmp_path / "corpus")
    if not chroma_server.running:
        chroma_server.start()
    environ = {
        **os.environ,
        "RAGGED_HOME": str(env),
        "OLLAMA_HOST": ollama.host,
        "RAGGED_CHROMA_URL": chroma_server.url,
        "RAGGED_CHROMA_DATABASE": new_chroma_database(chroma_server),
    }
    subprocess.run([*RAGGED, "ingest", str(corpus), "-q"], env=environ, check=True)
    proc = subprocess.Popen(
        [*RAGGED, "remove", str(corpus / "notes.txt")],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    catalog = catalog_path(
        load_settings(
            {
                "chroma_url": environ["RAGGED_CHROMA_URL"],
                "chroma_database": environ["RAGGED_CHROMA_DATABASE"],
            }
        )
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            db = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
            gone = not db.execute(
                "SELECT 1 FROM files WHERE path = ?", (str(corpus / "notes.txt"),)
            ).fetchone()
            db.close()
            if gone:
                chroma_server.freeze()
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        chroma_server.thaw()

    for mode in ("dense", "hybrid", "lexical"):
        found = subprocess.run(
            [*RAGGED, "search", "largest living rodents capybaras", "--json", "--mode", mode],
            env=environ,
            capture_output=True,
            check=True,
        )
        assert all(not h["path"].endswith("notes.txt") for h in json.loads(found.stdout)["hits"])
    asked = subprocess.run(
        [*RAGGED, "ask", "What are the largest living rodents?", "--json"],
        env=environ,
        capture_output=True,
        check=True,
    )
    assert all(not s["path"].endswith("notes.txt") for s in json.loads(asked.stdout)["sources"])


@both_stores
def test_a_removed_file_is_never_served_even_before_the_store_forgets_it(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    """The state a kill between the catalog's commit and Chroma's delete leaves behind."""
    from ragged.index import open_index

    corpus = tree(tmp_path / "corpus")
    ingest(runner, str(corpus))
    with open_index(load_settings()) as index:
        index.catalog.remove_files([str(corpus / "notes.txt")])  # tombstoned, not yet deleted
    assert len(chunk_ids()) == 5
    for mode in ("dense", "hybrid"):
        found = hits(runner, "largest living rodents capybaras", "--mode", mode)
        assert all(not h["path"].endswith("notes.txt") for h in found)
    run(runner, "ingest", str(corpus / "markdown"))  # any write finishes the removal
    assert len(chunk_ids()) == 4


@both_stores
def test_removing_every_file_killed_before_the_store_forgot_them_stays_removed(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    """Reproduced: `remove` of every file, killed at ~0.5 s, brought all five back: the empty
    catalog (with its tombstones) was taken for a lost one and rebuilt from the store."""
    from ragged.index import open_index

    corpus = tree(tmp_path / "corpus")
    ingest(runner, str(corpus))
    with open_index(load_settings()) as index:
        index.catalog.remove_files([f.path for f in index.catalog.files()])
    assert len(chunk_ids()) == 5  # the store has not forgotten them yet
    assert listing(runner) == {}
    listed = run(runner, "list")
    assert "rebuilt" not in listed.stderr
    assert hits(runner, "largest living rodents capybaras", "--mode", "dense") == []
    assert hits(runner, "largest living rodents capybaras", "--mode", "lexical") == []
    other = tmp_path / "other"
    other.mkdir()
    (other / "ferry.md").write_text("# Ferry\n\nThe ferry to Zanzibar takes two hours.\n")
    run(runner, "ingest", str(other))  # any write finishes the removal
    assert set(listing(runner)) == {str(other / "ferry.md")}
    assert len(chunk_ids()) == 1


def collection_list(runner: CliRunner) -> list[str]:
    return [c["name"] for c in json.loads(run(runner, "collections", "--json").stdout)]


@both_stores
@pytest.mark.parametrize("store_dropped", [False, True], ids=["marked", "store-dropped"])
@pytest.mark.parametrize("finisher", ["ingest", "reset"])
def test_a_reset_under_way_or_stopped_half_way_is_a_deleted_collection(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path, store_dropped: bool, finisher: str
) -> None:
    """Reproduced: searches beside a `reset` said the collection's vectors were lost or
    damaged (one in six failed outright): the store went first, the catalog after it. These
    are the states a reader can meet, and a kill can leave, between those steps."""
    from ragged.index import DROPPING, open_index

    corpus = tree(tmp_path / "corpus")
    ingest(runner, str(corpus))
    with open_index(load_settings()) as index:
        index.catalog.set_meta(DROPPING, "1")
        if store_dropped:
            index.store.drop()
    if load_settings().chroma_url and not store_dropped:
        # Shared: the server still holds the collection for every machine, who may have
        # written to it since. Reproduced (QA): this machine's next ingest finished the
        # failed reset and deleted the other machines' files. The collection lives on.
        assert len(listing(runner)) == 5
        assert "default" in collection_list(runner)
        run(runner, "ingest", str(tmp_path / "corpus"))
        assert len(listing(runner)) == 5 and len(chunk_ids()) == 5
        return
    for command in (("search", "capybaras"), ("ask", "What are capybaras?"), ("list",)):
        refused = run(runner, *command, ok=False)
        assert refused.exit_code == 1, refused.output
        assert "collection 'default' does not exist" in refused.stderr
        assert "lost" not in refused.stderr
    # Reproduced: `collections` still listed it (with its chunks) while every reader refused it.
    assert "default" not in collection_list(runner)
    if finisher == "reset":  # run again, it finishes what the stopped one began
        assert "collection 'default' deleted (5 files)" in run(runner, "reset", "--yes").stdout
        assert chunk_ids() == set()
        assert not catalog_path(load_settings()).exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "ferry.md").write_text("# Ferry\n\nThe ferry to Zanzibar takes two hours.\n")
    run(runner, "ingest", str(other))  # a writer finishes the deletion, then starts anew
    assert set(listing(runner)) == {str(other / "ferry.md")}
    assert len(chunk_ids()) == 1


# -- collections: only ingest makes one -------------------------------------------------------


@both_stores
@pytest.mark.parametrize(
    "command",
    [
        ("search", "capybara"),
        ("ask", "capybara?"),
        ("list",),
        ("remove", "/x.md"),
        ("reset", "--yes"),
        ("copy", "--to", "http://127.0.0.1:9"),
    ],
    ids=lambda c: c[0],
)
def test_a_collection_that_does_not_exist_is_refused_by_name(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path, command: tuple[str, ...]
) -> None:
    ingest(runner, str(tree(tmp_path / "corpus")), "-c", "papers")
    result = run(runner, *command, "-c", "nosuch", ok=False)
    assert result.exit_code == 1
    assert "collection 'nosuch' does not exist" in result.stderr
    assert "collections: papers" in result.stderr
    assert "nosuch" not in json.loads(run(runner, "collections", "--json").stdout)


# -- remembered failures -----------------------------------------------------------------------


@both_stores
def test_unchanged_failures_are_remembered_not_reparsed(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    corpus = tree(tmp_path / "corpus")
    (corpus / "empty.md").write_bytes(b"")
    (corpus / "blob.md").write_bytes(bytes(range(256)) * 8)
    first = run(runner, "ingest", str(corpus), ok=False)
    assert first.exit_code == 1 and f"{corpus / 'blob.md'}: binary content" in first.stderr

    again = run(runner, "ingest", str(corpus), "--json")  # exit 0: nothing new went wrong
    report = json.loads(again.stdout)
    assert report["failed"] == report["known_failures"] == 2
    assert "blob.md" not in again.stderr and "2 files failed before" in again.stderr
    failed = listing(runner, "--status", "failed")
    assert {Path(p).name: s["reason"] for p, s in failed.items()} == {
        "empty.md": "empty file",
        "blob.md": "binary content, not text",
    }
    strict = run(runner, "ingest", str(corpus), "--strict", ok=False)
    assert strict.exit_code == 1

    (corpus / "late.md").write_bytes(b"")  # a new failure fails the run again
    assert run(runner, "ingest", str(corpus), ok=False).exit_code == 1
    (corpus / "blob.md").write_text("# Fixed\n\nNow it is text about okapis.\n")
    fixed = ingest(runner, str(corpus), ok=False)
    assert fixed["known_failures"] == 2 and fixed["added"] == 1  # blob.md, parsed again
    assert sorted(Path(p).name for p in listing(runner, "--status", "failed")) == [
        "empty.md",
        "late.md",
    ]
    (corpus / "empty.md").unlink()
    ingest(runner, str(corpus), ok=False)
    assert "empty.md" not in {Path(p).name for p in listing(runner)}


def test_shared_bad_corpus_fails_once_then_is_remembered(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(bench_dir("corpus", "bad"), bad)
    first = ingest(runner, str(bad), ok=False)
    assert first["failed"] > 0 and first["known_failures"] == 0
    second = ingest(runner, str(bad))
    assert second["failed"] == second["known_failures"] == first["failed"]
    assert second["added"] == second["updated"] == 0


def test_a_long_lived_process_sees_what_another_ingested(
    ollama: OllamaStandIn, tmp_path: Path, env: Path
) -> None:
    """An open embedded Chroma answers from what it loaded: serve/chat/watch must catch up."""
    from ragged.index import open_index
    from ragged.llm import connect
    from ragged.retrieve import retrieve

    corpus = tree(tmp_path / "corpus")
    environ = {**os.environ, "RAGGED_HOME": str(env), "OLLAMA_HOST": ollama.host}
    subprocess.run([*RAGGED, "ingest", str(corpus / "markdown"), "-q"], env=environ, check=True)
    settings = load_settings({"min_score": 0.05})
    with open_index(settings) as index:  # this process stays open, like `ragged serve`
        llm = connect(settings)
        before = retrieve("largest living rodents capybaras", index, llm, mode="dense")
        assert before.notice is None
        assert all(not h.path.endswith("notes.txt") for h in before.hits)
        subprocess.run([*RAGGED, "ingest", str(corpus), "-q"], env=environ, check=True)
        after = retrieve("largest living rodents capybaras", index, llm, mode="dense")
        assert after.notice is None and after.hits[0].path.endswith("notes.txt")


def test_a_reader_records_only_what_its_own_reads_did_to_the_store(
    ollama: OllamaStandIn, tmp_path: Path, env: Path
) -> None:
    """A reader leaves the store's fingerprint as its reads moved it, so that the next
    unchanged ingest trusts it unopened; but never over another process's write."""
    from ragged.index import open_index
    from ragged.llm import connect
    from ragged.retrieve import retrieve

    corpus = tree(tmp_path / "corpus")
    environ = {**os.environ, "RAGGED_HOME": str(env), "OLLAMA_HOST": ollama.host}
    subprocess.run([*RAGGED, "ingest", str(corpus / "markdown"), "-q"], env=environ, check=True)
    settings = load_settings({"min_score": 0.05})

    def recorded() -> str | None:
        with open_index(settings) as index:
            return index.catalog.store_fingerprint

    with open_index(settings) as index:  # nobody else writes meanwhile
        found = index.store.fingerprint()
        assert recorded() == found
        retrieve("largest living rodents capybaras", index, connect(settings), mode="dense")
        moved = index.store.fingerprint()
    assert moved != found and recorded() == moved

    with open_index(settings) as index:  # an ingest writes while this one is open
        retrieve("largest living rodents capybaras", index, connect(settings), mode="dense")
        subprocess.run([*RAGGED, "ingest", str(corpus), "-q"], env=environ, check=True)
        written = recorded()
        assert written == index.store.fingerprint()
        retrieve("largest living rodents capybaras", index, connect(settings), mode="dense")
    assert recorded() == written


def test_a_reader_never_waits_for_a_writer_to_record_its_reads(
    ollama: OllamaStandIn, tmp_path: Path, env: Path
) -> None:
    """With the catalog locked by a writer, a reader leaves at once and records nothing."""
    from ragged.index import open_index
    from ragged.llm import connect
    from ragged.retrieve import retrieve

    ingested_by_command(ollama, tmp_path, env)
    settings = load_settings({"min_score": 0.05})
    index = open_index(settings)
    recorded = index.catalog.store_fingerprint
    retrieve("largest living rodents capybaras", index, connect(settings), mode="dense")
    writer = sqlite3.connect(catalog_path(settings, index.name), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # what an ingest holds while it stages files
    try:
        started = time.monotonic()
        index.close()
        assert time.monotonic() - started < 5  # the catalog's own timeout is 30 s
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    with open_index(settings) as again:
        assert again.catalog.store_fingerprint == recorded


def test_a_long_lived_process_opens_chroma_once_while_nobody_writes(
    ollama: OllamaStandIn, tmp_path: Path, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading touches Chroma's own files; that must not pass for another process's write.

    It did: every query after the first reopened the embedded client (~0.1-0.4 s each in
    serve and chat), because the files' fingerprint was taken before the query moved it.
    """
    import ragged.store
    from ragged.index import open_index
    from ragged.llm import connect
    from ragged.retrieve import retrieve

    ingested_by_command(ollama, tmp_path, env)
    opened: list[object] = []
    real = ragged.store._client
    monkeypatch.setattr(ragged.store, "_client", lambda s: opened.append(s) or real(s))
    settings = load_settings({"min_score": 0.05})
    with open_index(settings) as index:
        llm = connect(settings)
        for _ in range(4):
            found = retrieve("largest living rodents capybaras", index, llm, mode="dense")
            assert found.notice is None and found.hits[0].path.endswith("notes.txt")
    assert len(opened) == 1
