"""The data dir as other users and other mounts see it: what deletion leaves on disk, who may
read it, and a data dir mounted read-only (issue 11)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
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


def test_text_taken_out_of_a_file_or_pruned_by_ingest_is_gone_from_every_file(
    runner: CliRunner, ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    """Editing a secret out of a file and ingesting again (or deleting the file and ingesting
    the folder) deletes its old chunks: their text must be as unreadable as after `remove`.
    0.2 left it in Chroma's write-ahead log and free pages until the next `remove`."""
    docs = secret_docs(tmp_path / "docs")
    run(runner, "ingest", str(docs), "--quiet")
    (docs / "secret.md").write_text("# Payroll\n\nMoved to the HR system.\n")
    report = json.loads(run(runner, "ingest", str(docs), "--json").stdout)
    assert report["updated"] == 1 and report["purged"] and report["purge_problem"] is None
    assert files_holding(env, SECRET) == []
    assert files_holding(env, "Salaries and bonuses") == []
    assert files_holding(env, "Moved to the HR system") == [
        "catalog/embedded/default.sqlite",
        "chroma/chroma.sqlite3",
    ]
    (docs / "doc03.md").unlink()
    run(runner, "ingest", str(docs), "--quiet")
    assert files_holding(env, "word3x7") == []
    # A run that deletes nothing leaves the files as they are (the purge rewrites them).
    assert not json.loads(run(runner, "ingest", str(docs), "--json").stdout)["purged"]
    assert files_holding(env, "word4x7") == [
        "catalog/embedded/default.sqlite",
        "chroma/chroma.sqlite3",
    ]
    chroma, catalog, pending = stored_ids(env)
    assert chroma == catalog and pending == 0


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


def stopped_in_its_purge(runner: CliRunner, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    """`ragged ARGS`, stopped as by Ctrl-C as the store's purge starts."""
    from ragged.store import Store

    def stopped(self: Store) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(Store, "purge", stopped)
        assert runner.invoke(app, list(args)).exit_code == 130


@pytest.mark.parametrize("then", ["reset", "ingest"])
def test_a_reset_stopped_before_its_purge_is_purged_when_it_is_finished(
    runner: CliRunner,
    ollama: OllamaStandIn,
    env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    then: str,
) -> None:
    """Found in review: a reset stopped after Chroma dropped the collection, in its purge
    (Ctrl-C or a kill in a VACUUM of seconds), left the text in free pages and the vectors'
    folder for good: the reset run again, or the ingest that finishes it, found no
    collection to purge and said the collection was deleted."""
    docs = secret_docs(tmp_path / "docs", n=5)
    run(runner, "ingest", str(docs), "--quiet")
    folders = {p.name for p in (env / "chroma").iterdir() if p.is_dir()}
    stopped_in_its_purge(runner, monkeypatch, "reset", "--yes")
    assert "chroma/chroma.sqlite3" in files_holding(env, SECRET)
    if then == "reset":
        run(runner, "reset", "--yes")
    else:
        (docs / "secret.md").unlink()
        run(runner, "ingest", str(docs), "--quiet")
    assert files_holding(env, SECRET) == []
    assert not {p.name for p in (env / "chroma").iterdir() if p.is_dir()} & folders


def test_removed_text_left_by_hnswlib_in_unused_slots_is_zeroed(
    runner: CliRunner, ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    """Chroma's HNSW library writes its whole capacity when it creates an index, slots past
    the last element straight from malloc (chroma-core/chroma#7688): whatever the process
    had freed, text of the files being ingested included (seen in 1 of ~60 runs of the test
    above). Planted here where it lands, so the test fails every time, not 1 in 60."""
    docs = secret_docs(tmp_path / "docs")
    run(runner, "ingest", str(docs), "--quiet")
    [folder] = [p.parent for p in (env / "chroma").glob("*/header.bin")]
    stale = f'FLOAT32{{"ragged:text":"The vault code is {SECRET}"}}'.encode()
    for name in ("data_level0.bin", "length.bin"):
        data = bytearray((folder / name).read_bytes())
        data[-len(stale) :] = stale  # the last slot: unused in a collection of 31 chunks
        (folder / name).write_bytes(bytes(data))
    kept = {n: (folder / n).read_bytes() for n in ("header.bin", "link_lists.bin")}

    run(runner, "remove", str(docs / "secret.md"))
    assert files_holding(env, SECRET) == []
    # Only unused slots were touched: the rest of the index is as Chroma left it, and works.
    assert {n: (folder / n).read_bytes() for n in kept} == kept
    done = subprocess.run(
        [*RAGGED, "search", " ".join(f"word5x{j}" for j in range(20)), "--mode", "dense", "--json"],
        env=environ(env, ollama, RAGGED_MIN_SCORE="0"),
        capture_output=True,
        text=True,
    )
    hits = json.loads(done.stdout)["hits"]
    assert hits and hits[0]["path"].endswith("doc05.md"), done.stdout + done.stderr


def test_only_bytes_past_the_header_element_count_are_zeroed(tmp_path: Path) -> None:
    """The offsets, on a folder laid out as hnswlib's: 2 elements of 10 bytes, capacity 5."""
    import struct

    from ragged.store import zero_unused_hnsw_slots

    (tmp_path / "header.bin").write_bytes(struct.pack("=iQQQQ", 1, 0, 5, 2, 10) + bytes(60))
    (tmp_path / "data_level0.bin").write_bytes(b"e" * 20 + b"secret" * 5)
    (tmp_path / "length.bin").write_bytes(b"n" * 8 + b"secret" * 2)
    assert zero_unused_hnsw_slots(tmp_path) is None
    assert (tmp_path / "data_level0.bin").read_bytes() == b"e" * 20 + bytes(30)
    assert (tmp_path / "length.bin").read_bytes() == b"n" * 8 + bytes(12)
    # Another layout (a later Chroma): left alone, and said so.
    (tmp_path / "header.bin").write_bytes(struct.pack("=iQQQQ", 2, 0, 5, 2, 10))
    (tmp_path / "length.bin").write_bytes(b"secret")
    assert "not laid out" in (zero_unused_hnsw_slots(tmp_path) or "")
    assert (tmp_path / "length.bin").read_bytes() == b"secret"


# -- permissions --------------------------------------------------------------------------------


def test_the_data_dir_is_private_whatever_the_umask(
    ollama: OllamaStandIn, tmp_path: Path, docs: Path
) -> None:
    home = tmp_path / "fresh" / "ragged-home"  # neither exists yet
    done = subprocess.run(
        [*RAGGED, "ingest", str(docs), "--quiet"],
        env=environ(home, ollama),
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(0o022),  # a usual default: files 644, folders 755
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    loose = [
        f"{path.relative_to(home)} {stat.S_IMODE(path.lstat().st_mode):04o}"
        for path in [home, *home.rglob("*")]
        if stat.S_IMODE(path.lstat().st_mode) & 0o077
    ]
    assert loose == []
    assert stat.S_IMODE((home / "chroma" / "chroma.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "catalog" / "embedded" / "default.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "write.lock").stat().st_mode) == 0o600


def test_doctor_warns_about_a_readable_data_dir_and_fix_closes_it(
    runner: CliRunner, ollama: OllamaStandIn, env: Path, docs: Path
) -> None:
    run(runner, "ingest", str(docs), "--quiet")
    os.chmod(env, 0o755)  # as ragged 0.1.0 made it
    os.chmod(env / "catalog" / "embedded" / "default.sqlite", 0o644)
    checks = {c["name"]: c for c in json.loads(run(runner, "doctor", "--json").stdout)["checks"]}
    assert checks["permissions"]["status"] == "warn"
    assert f"{env} is open to everyone (0755)" in checks["permissions"]["detail"]
    assert f"chmod -R go-rwx {env}" in checks["permissions"]["fix"]
    fixed = {
        c["name"]: c for c in json.loads(run(runner, "doctor", "--fix", "--json").stdout)["checks"]
    }
    assert fixed["permissions"]["status"] == "ok"
    assert stat.S_IMODE(env.stat().st_mode) == 0o700
    assert stat.S_IMODE((env / "catalog" / "embedded" / "default.sqlite").stat().st_mode) == 0o600


# -- a read-only data dir ----------------------------------------------------------------------


def read_only(home: Path, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ragged with the data dir read-only: a read-only bind mount for root (whom mode
    bits do not stop), the mode bits for anyone else."""
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("root needs unshare(1) to mount the data dir read-only")
        script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
        cmd = ["unshare", "-m", "sh", "-c", script, str(home), *argv]
        probe = subprocess.run([*cmd[:5], str(home), "true"], capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.skip(f"cannot mount read-only here: {probe.stderr.strip()}")
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    paths = [home, *home.rglob("*")]
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in paths}
    try:
        for p in paths:
            os.chmod(p, modes[p] & ~0o222)
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    finally:
        for p in reversed(paths):
            os.chmod(p, modes[p])


def test_a_read_only_data_dir_serves_list_search_and_ask(
    ollama: OllamaStandIn, env: Path, docs: Path
) -> None:
    environment = environ(env, ollama)
    done = subprocess.run(
        [*RAGGED, "ingest", str(docs), "--quiet"], env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr

    listing = read_only(env, [*RAGGED, "list", "--json"], environment)
    assert listing.returncode == 0, listing.stderr
    assert len(json.loads(listing.stdout)) == 5

    chroma = env / "chroma"
    why = f"cannot open the embedded Chroma store at {chroma}: the folder is read-only"
    search = read_only(env, [*RAGGED, "search", "capybara", "--json"], environment)
    assert search.returncode == 0, search.stderr
    found = json.loads(search.stdout)
    assert found["mode"] == "lexical" and found["hits"][0]["path"].endswith("notes.txt")
    assert why in found["notice"]
    assert " ".join(search.stderr.split()).count(why) == 1  # one line

    asked = read_only(env, [*RAGGED, "ask", "capybara rodent"], environment)
    assert asked.returncode == 0, asked.stderr
    assert "notes.txt" in asked.stdout and why in " ".join(asked.stderr.split())

    collections = read_only(env, [*RAGGED, "collections"], environment)
    assert collections.returncode == 1 and why in " ".join(collections.stderr.split())
    assert "Traceback" not in collections.stderr

    ingest = read_only(env, [*RAGGED, "ingest", str(docs)], environment)
    assert ingest.returncode == 1 and "Traceback" not in ingest.stderr
    assert f"cannot write to the data dir {env}" in " ".join(ingest.stderr.split())


def purges_failing(runner: CliRunner, env: Path, tmp_path: Path) -> tuple[Path, Path, bytes]:
    """A collection 'default' whose secret was just edited out, in a store where every purge
    fails: the vector file of another collection, whose unused slots every purge zeroes, is
    a directory (a failure whoever runs the tests; that collection is not used again).
    Returns the folder ingested, that vector file, and what it held."""
    other = secret_docs(tmp_path / "other", n=2)
    (other / "secret.md").unlink()
    run(runner, "ingest", str(other), "--quiet", "--collection", "other")
    [blocked] = (env / "chroma").glob("*/data_level0.bin")
    docs = secret_docs(tmp_path / "docs", n=3)
    run(runner, "ingest", str(docs), "--quiet")
    vectors = blocked.read_bytes()
    blocked.unlink()
    blocked.mkdir()
    (docs / "secret.md").write_text("# Payroll\n\nMoved to the HR system.\n")
    return docs, blocked, vectors


def test_a_purge_that_keeps_failing_is_tried_a_few_runs_then_waits_for_a_new_deletion(
    runner: CliRunner, ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    """Found in review: a purge that fails the same way every time (a file it may not write)
    stayed due, so every later run, unchanged ones included, paid a whole purge again."""
    docs, _, _ = purges_failing(runner, env, tmp_path)
    runs = [json.loads(run(runner, "ingest", str(docs), "--json").stdout) for _ in range(4)]
    assert [r["purged"] for r in runs] == [True, True, True, False]
    assert all("data_level0.bin" in r["purge_problem"] for r in runs[:3])
    assert runs[3]["purge_problem"] is None and not runs[3]["purge_due"]
    shown = run(runner, "ingest", str(docs)).stderr
    assert "the next runs try again" not in shown  # given up until something is deleted again
    (docs / "doc01.md").write_text("# Doc 1\n\nShorter now.\n")
    assert json.loads(run(runner, "ingest", str(docs), "--json").stdout)["purged"]


def collection_check(runner: CliRunner, *args: str) -> dict:  # type: ignore[type-arg]
    done = runner.invoke(app, ["doctor", "--json", *args])
    checks = json.loads(done.stdout)["checks"]
    return {c["name"]: c for c in checks}  # type: ignore[no-any-return]


def test_doctor_names_a_purge_that_failed_and_fix_does_it(
    runner: CliRunner, ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    """A purge that failed three times waits for the next deletion, and the deleted text
    stays readable meanwhile: `doctor` said the collection was fine. It names the failure
    now, and `doctor --fix` purges once the cause is mended."""
    docs, blocked, vectors = purges_failing(runner, env, tmp_path)
    for _ in range(4):  # three tries, then given up
        run(runner, "ingest", str(docs), "--quiet")
    check = collection_check(runner)["collection default"]
    assert check["status"] == "warn" and "data_level0.bin" in check["detail"]
    assert "deleted text may still be readable" in check["detail"]
    blocked.rmdir()  # mended
    blocked.write_bytes(vectors)
    fixed = collection_check(runner, "--fix")
    assert fixed["repair default"]["status"] == "ok", fixed["repair default"]
    assert "purged deleted text" in fixed["repair default"]["detail"]
    assert fixed["collection default"]["status"] == "ok"
    assert files_holding(env, SECRET) == []


def test_doctor_names_a_purge_still_due_and_fix_does_it(
    runner: CliRunner,
    ollama: OllamaStandIn,
    env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ingest stopped in its purge leaves it due for the next run; until then `doctor`
    says the deleted text is still to be purged, and `doctor --fix` purges it."""
    docs = secret_docs(tmp_path / "docs", n=3)
    run(runner, "ingest", str(docs), "--quiet")
    (docs / "secret.md").write_text("# Payroll\n\nMoved to the HR system.\n")
    stopped_in_its_purge(runner, monkeypatch, "ingest", str(docs), "--quiet")
    assert "chroma/chroma.sqlite3" in files_holding(env, SECRET)
    check = collection_check(runner)["collection default"]
    assert check["status"] == "warn" and "still to be purged" in check["detail"], check
    fixed = collection_check(runner, "--fix")
    assert "purged deleted text" in fixed["repair default"]["detail"], fixed["repair default"]
    assert fixed["collection default"]["status"] == "ok"
    assert files_holding(env, SECRET) == []


# -- the store's size: chunk texts kept whole in Chroma's index of metadata strings -----------

TEXT_INDEX = "embedding_metadata_string_value"  # Chroma's index of (key, string value)


def prose_docs(root: Path, n: int = 12) -> Path:
    """Files whose chunks are as long as a real document's at 512 tokens (1.5-2.5 KB)."""
    root.mkdir(parents=True)
    for i in range(n):
        paragraphs = [
            " ".join(
                f"Paragraph {p} of report {i} describes how the river delta {i * 7 + p} "
                f"carried sediment north in season {s}, and what the survey measured."
                for s in range(9)
            )
            for p in range(6)
        ]
        (root / f"report{i:02}.md").write_text(f"# Report {i}\n\n" + "\n\n".join(paragraphs))
    return root


def spilled_pages(store: Path) -> tuple[int, int]:
    """(overflow pages of Chroma's string index, chunk texts too long for a 4 KB page's entry)."""
    db = sqlite3.connect(f"file:{store / 'chroma.sqlite3'}?mode=ro", uri=True)
    try:
        try:
            spilled = db.execute(
                "SELECT count(*) FROM dbstat WHERE name = ? AND pagetype = 'overflow'",
                (TEXT_INDEX,),
            ).fetchone()[0]
        except sqlite3.OperationalError:
            pytest.skip("this SQLite was built without the dbstat table")
        long_texts = db.execute(
            "SELECT count(*) FROM embedding_metadata WHERE key = 'ragged:text' "
            "AND length(CAST(string_value AS BLOB)) > 1002"  # SQLite's limit at 4 KB pages
        ).fetchone()[0]
    finally:
        db.close()
    return int(spilled), int(long_texts)


def test_chunk_texts_fit_in_chromas_string_index_without_spilling(
    runner: CliRunner, ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    """Chroma indexes every metadata string, the chunk's text included. At SQLite's default
    4 KB pages an entry keeps ~1 KB and a longer text spills to a mostly empty page of its
    own: that index was two thirds of the store's file at 100k chunks, rewritten by every
    purge. A new store's pages hold a whole chunk's text."""
    docs = prose_docs(tmp_path / "docs")
    run(runner, "ingest", str(docs), "--quiet")
    spilled, long_texts = spilled_pages(env / "chroma")
    assert long_texts >= 12  # texts 4 KB pages would spill
    assert spilled == 0


def test_a_purge_lays_out_an_earlier_rageds_store_as_a_new_one(
    runner: CliRunner, ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    """A store made with 4 KB pages (ragged 0.2) is rewritten with 16 KB ones by the next
    purge, which rewrites the whole file anyway; everything else in it stays."""
    docs = prose_docs(tmp_path / "docs")
    run(runner, "ingest", str(docs), "--quiet")
    store = env / "chroma"
    db = sqlite3.connect(store / "chroma.sqlite3", isolation_level=None)
    db.execute("PRAGMA page_size = 4096")
    db.execute("VACUUM")
    db.close()
    assert spilled_pages(store)[0] > 0  # as 0.2 left it

    run(runner, "remove", str(docs / "report03.md"))
    assert spilled_pages(store)[0] == 0
    chroma, catalog, pending = stored_ids(env)
    assert chroma == catalog and pending == 0 and len(chroma) >= 11
    done = subprocess.run(
        [*RAGGED, "search", "river delta 40 sediment season", "--json"],
        env=environ(env, ollama),
        capture_output=True,
        text=True,
    )
    hits = json.loads(done.stdout)["hits"]
    assert hits and all(not h["path"].endswith("report03.md") for h in hits)


def test_a_process_keeps_using_its_store_across_a_change_of_page_size(
    ollama: OllamaStandIn, env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`watch` and `serve` keep Chroma open while a purge (theirs or another process's)
    rewrites the file with another page size: their next writes and searches must go on."""
    from ragged.config import load_settings
    from ragged.index import open_index
    from ragged.ingest import ingest
    from ragged.llm import connect
    from ragged.retrieve import retrieve

    docs = prose_docs(tmp_path / "docs")
    settings = load_settings({})
    index, llm = open_index(settings, create=True), connect(settings)
    ingest([docs], index, llm)
    db = sqlite3.connect(env / "chroma" / "chroma.sqlite3", isolation_level=None)
    db.execute("PRAGMA page_size = 4096")  # another process's purge, under this one's client
    db.execute("VACUUM")
    db.close()
    (docs / "extra.md").write_text("# Extra\n\nThe lighthouse keeper logged the storm.\n")
    (docs / "report05.md").unlink()
    report = ingest([docs], index, llm)  # writes, deletes, and purges: 16 KB pages again
    assert report.added == 1 and report.removed == 1 and report.purged
    assert report.purge_problem is None
    hits = retrieve("lighthouse keeper storm", index, llm).hits
    assert hits and hits[0].path.endswith("extra.md")
    assert spilled_pages(env / "chroma")[0] == 0
    index.close()
    chroma, catalog, pending = stored_ids(env)
    assert chroma == catalog and pending == 0 and len(chroma) >= 12
    db = sqlite3.connect(env / "chroma" / "chroma.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def store_page_size(env: Path) -> int:
    db = sqlite3.connect(f"file:{env / 'chroma' / 'chroma.sqlite3'}?mode=ro", uri=True)
    try:
        return int(db.execute("PRAGMA page_size").fetchone()[0])
    finally:
        db.close()


def test_a_purge_lays_the_store_out_for_the_chunks_it_holds_not_the_commands_settings(
    runner: CliRunner, ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    """Chunks of 2,000 tokens spill at any page size, and waste less of 4 KB overflow pages:
    a `remove` run without the ingest's --chunk-tokens must not lay their store out for the
    default 512 (16 KB pages, 28% more disk in the shared corpus)."""
    from ragged.store import page_size_for

    assert page_size_for(2000) != page_size_for(512)  # else this test tests nothing
    docs = prose_docs(tmp_path / "docs")
    run(runner, "ingest", str(docs), "--chunk-tokens", "2000", "--quiet")
    assert store_page_size(env) == page_size_for(2000)
    run(runner, "remove", str(docs / "report03.md"))
    assert store_page_size(env) == page_size_for(2000)


def test_collections_of_two_chunk_sizes_share_the_layout_most_of_their_text_needs(
    runner: CliRunner, ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    """One file holds every collection of a data dir: a purge of a small collection of long
    chunks must not lay it out for those (the others' 16 KB saving lost, 30% more disk); and
    once the collection of short chunks is reset, what remains is laid out for what remains."""
    from ragged.store import page_size_for

    short = prose_docs(tmp_path / "short", n=12)
    long = prose_docs(tmp_path / "long", n=3)
    run(runner, "ingest", str(short), "--quiet")
    run(runner, "ingest", str(long), "-c", "long", "--chunk-tokens", "2000", "--quiet")
    run(runner, "remove", "-c", "long", str(long / "report01.md"))
    assert store_page_size(env) == page_size_for(512)

    run(runner, "reset", "-y")  # the default collection; a reset purges the file
    assert store_page_size(env) == page_size_for(2000)
    hits = json.loads(run(runner, "search", "river delta sediment", "-c", "long", "--json").stdout)
    assert {Path(h["path"]).name for h in hits["hits"]} == {"report00.md", "report02.md"}


def test_the_purges_sample_of_texts_follows_the_rows_that_exist_not_their_ids(
    tmp_path: Path,
) -> None:
    """A reset leaves the ids of what remains in clusters: a sample taken by id value hit the
    three long texts below a gap and one of the 100 short ones above it, and laid a file of
    short texts out for long ones. (The two tables as Chroma 1.5 makes them.)"""
    from ragged.store import LARGE_PAGE, SMALL_PAGE, _page_size_for_texts

    db = sqlite3.connect(tmp_path / "chroma.sqlite3")
    db.executescript(
        "CREATE TABLE embeddings (id INTEGER PRIMARY KEY, segment_id TEXT NOT NULL, "
        "embedding_id TEXT NOT NULL, seq_id BLOB NOT NULL, UNIQUE (segment_id, embedding_id));"
        "CREATE TABLE embedding_metadata (id INTEGER REFERENCES embeddings(id), key TEXT NOT "
        "NULL, string_value TEXT, int_value INTEGER, float_value REAL, bool_value INTEGER, "
        "PRIMARY KEY (id, key));"
        "CREATE INDEX embedding_metadata_string_value ON embedding_metadata (key, string_value) "
        "WHERE string_value IS NOT NULL;"
    )
    assert _page_size_for_texts(db) is None  # nothing to lay out for: the size it has

    def rows(ids: range, text_bytes: int) -> None:
        for i in ids:
            db.execute("INSERT INTO embeddings VALUES (?, 's', ?, x'00')", (i, f"c{i}"))
            db.execute(
                "INSERT INTO embedding_metadata (id, key, string_value) VALUES (?, ?, ?)",
                (i, "ragged:text", "x" * text_bytes),
            )
            db.execute(
                "INSERT INTO embedding_metadata (id, key, string_value) VALUES (?, 'path', 'p')",
                (i,),
            )

    rows(range(1, 4), 8000)  # three chunks of ~2,000 tokens
    rows(range(100_001, 100_101), 2000)  # 100 of ~512, after a reset of 100k between
    assert _page_size_for_texts(db) == LARGE_PAGE
    rows(range(200_001, 201_000), 8000)  # now most are long
    assert _page_size_for_texts(db) == SMALL_PAGE
    db.close()


@pytest.mark.parametrize("free", ["plenty", "little"])
def test_a_purge_runs_its_halves_at_once_only_where_the_disk_holds_both(
    runner: CliRunner,
    ollama: OllamaStandIn,
    env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    free: str,
) -> None:
    """The store's VACUUM (up to twice its file) and the catalog's merge (its WAL grows by up
    to its file) run side by side where the disk holds both; on a nearly full disk they ran
    out of room together, and both failed where one after the other both succeeded (a review
    on a tmpfs: 93 MB for a 62 MB data dir). There they run one after the other, as before."""
    import shutil
    import threading

    from ragged.store import Store

    docs = prose_docs(tmp_path / "docs")
    run(runner, "ingest", str(docs), "--quiet")
    threads: list[str] = []
    purge = Store.purge

    def watched(self: Store) -> str | None:
        threads.append(threading.current_thread().name)
        return purge(self)

    need = sum(f.stat().st_size for f in env.rglob("*") if f.is_file())
    usage = shutil.disk_usage(env)
    left = need * 10 if free == "plenty" else need // 10
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=left))
    monkeypatch.setattr(Store, "purge", watched)
    run(runner, "remove", str(docs / "report03.md"))
    on_main = threads == [threading.main_thread().name]
    assert on_main == (free == "little"), threads
    assert spilled_pages(env / "chroma")[0] == 0  # purged, and laid out, either way
