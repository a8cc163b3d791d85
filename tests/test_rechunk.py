"""chunk_tokens / chunk_overlap changed on an existing collection: said, refused, or applied to
every stored file with --rechunk (issue 11). Never silently a mix of chunk sizes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.catalog import open_catalog
from ragged.cli import app
from ragged.config import load_settings
from ragged.store import open_store
from tests.ollama_standin import OllamaStandIn

pytestmark = pytest.mark.usefixtures("chroma_mode")


def run(runner: CliRunner, *args: str, ok: bool = True):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args), catch_exceptions=not ok)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def long_docs(root: Path) -> Path:
    root.mkdir(parents=True)
    for i in range(4):
        body = " ".join(
            f"Paragraph {j} of file {i} mentions topic{j % 5} once." for j in range(120)
        )
        (root / f"long{i}.md").write_text(f"# File {i}\n\n{body}\n")
    return root


def chunk_tokens(env: Path) -> dict[str, list[int]]:
    """Token counts of every stored chunk, per file name; and the store must hold exactly them."""
    settings = load_settings()
    catalog = open_catalog(settings)
    try:
        out = {
            Path(f.path).name: [c.tokens for c in catalog.chunks_of(f.path)]
            for f in catalog.files()
        }
        ids = {c.id for f in catalog.files() for c in catalog.chunks_of(f.path)}
        assert catalog.pending_count() == 0
    finally:
        catalog.close()
    assert open_store(settings).ids() == ids
    return out


def test_changed_chunk_size_is_refused_then_applied_to_every_file_with_rechunk(
    runner: CliRunner, ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    docs = long_docs(tmp_path / "docs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(docs / "long0.md", elsewhere / "other.md")
    (elsewhere / "other.md").write_text((elsewhere / "other.md").read_text() + "\nMore.\n")
    run(runner, "ingest", str(docs), str(elsewhere), "--quiet")
    before = chunk_tokens(env)
    assert max(max(t) for t in before.values()) > 200

    # One file changes, and the run asks for smaller chunks: 0.1.0 re-chunked that file alone.
    (docs / "long1.md").write_text((docs / "long1.md").read_text() + "\nA new line.\n")
    refused = run(
        runner, "ingest", str(docs), "--chunk-tokens", "128", "--chunk-overlap", "16", ok=False
    )
    said = " ".join(refused.stderr.split())
    assert refused.exit_code == 1
    assert (
        "collection 'default' was chunked with chunk_tokens 512 and chunk_overlap 64; this run "
        "asks for 128 and 16" in said
    )
    assert "--rechunk to re-chunk (and embed again) all 5 stored files" in said
    assert chunk_tokens(env) == before  # nothing was touched

    ollama.reset()
    done = run(
        runner,
        "ingest",
        str(docs),
        "--chunk-tokens",
        "128",
        "--chunk-overlap",
        "16",
        "--rechunk",
        "--json",
    )
    report = json.loads(done.stdout)
    assert report["updated"] == 5 and report["unchanged"] == 0 and report["reused"] == 0
    after = chunk_tokens(env)
    assert set(after) == set(before)  # the file outside the given folder too
    assert all(t <= 128 for tokens in after.values() for t in tokens)
    assert all(len(after[name]) > len(before[name]) for name in before)
    assert ollama.embedded_inputs == sum(len(t) for t in after.values())

    # The collection now records 128/16: the same values go through, the old ones are refused.
    again = json.loads(
        run(
            runner, "ingest", str(docs), "--chunk-tokens", "128", "--chunk-overlap", "16", "--json"
        ).stdout
    )
    assert again["unchanged"] == 4
    back = run(runner, "ingest", str(docs), ok=False)
    assert back.exit_code == 1 and "was chunked with chunk_tokens 128" in " ".join(
        back.stderr.split()
    )


def test_unchanged_chunk_size_is_never_questioned(
    runner: CliRunner, ollama: OllamaStandIn, env: Path, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGGED_CHUNK_TOKENS", "256")
    run(runner, "ingest", str(docs), "--quiet")
    (docs / "notes.txt").write_text((docs / "notes.txt").read_text() + "\nOne more line.\n")
    report = json.loads(run(runner, "ingest", str(docs), "--json").stdout)
    assert report["updated"] == 1 and report["unchanged"] == 4


def test_rechunk_names_stored_files_that_are_gone(
    runner: CliRunner, ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    docs = long_docs(tmp_path / "docs")
    lone = tmp_path / "lone.md"
    lone.write_text("# Lone\n\nA file ingested on its own, deleted later.\n")
    run(runner, "ingest", str(docs), str(lone), "--quiet")
    lone.unlink()
    done = run(
        runner, "ingest", "--rechunk", "--chunk-tokens", "256", "--chunk-overlap", "32", ok=False
    )
    assert done.exit_code == 1
    assert f"{lone}: cannot re-chunk: the file is gone from disk" in " ".join(done.stderr.split())
    assert all(
        t <= 256 for name, tokens in chunk_tokens(env).items() if name != "lone.md" for t in tokens
    )
