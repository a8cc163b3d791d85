"""Large text files are read and chunked by blocks (ragged/ingest/stream.py).

The sizes are shrunk here (a 64 KB threshold, 32 KB segments) so that a file of a few hundred
KB goes the way a 200 MB one does; memory itself is measured in the benchmark
(bench/memory.py, docs/benchmarks.md), not in a test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.catalog import open_catalog
from ragged.cli import app
from ragged.config import load_settings
from ragged.ingest import stream
from ragged.store import open_store
from tests.ollama_standin import OllamaStandIn


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "STREAM_BYTES", 64 * 1024)
    monkeypatch.setattr(stream, "BLOCK_BYTES", 16 * 1024)
    monkeypatch.setattr(stream, "SEGMENT_CHARS", 32 * 1024)
    monkeypatch.setattr(stream, "MAX_SEGMENT_CHARS", 128 * 1024)


def big_markdown(path: Path, sections: int = 120) -> Path:
    parts = []
    for i in range(sections):
        parts.append(f"# Part {i // 10}\n\n## Section {i}\n")
        for j in range(6):
            words = " ".join(f"s{i}p{j}w{k}" for k in range(40))
            parts.append(f"Section {i} paragraph {j}: {words}.\n")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def stored(env: Path) -> list:  # type: ignore[type-arg]
    settings = load_settings()
    catalog = open_catalog(settings)
    try:
        rows = [c for f in catalog.files() for c in catalog.chunks_of(f.path)]
        files = catalog.files()
        assert catalog.pending_count() == 0
    finally:
        catalog.close()
    assert open_store(settings).ids() == {r.id for r in rows}
    return [files, rows]


def test_a_large_markdown_file_streams_to_the_same_chunks_with_their_headings(
    small_blocks: None, ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    doc = big_markdown(tmp_path / "big.md")
    assert doc.stat().st_size > 4 * stream.STREAM_BYTES
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(doc), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    files, rows = stored(env)
    assert len(files) == 1 and files[0].size == doc.stat().st_size
    assert not files[0].content_hash.startswith("partial:")
    assert [r.idx for r in rows] == list(range(len(rows)))  # numbered across segments
    assert all(r.tokens <= 512 for r in rows)
    # Every word is stored, under the heading it was written under.
    text = doc.read_text()
    assert set(re.findall(r"s\d+p\d+w\d+", text)) == {
        w for r in rows for w in re.findall(r"s\d+p\d+w\d+", r.text)
    }
    for row in rows:
        section = re.search(r"s(\d+)p\d+w\d+", row.text)
        assert section is not None
        i = int(section.group(1))
        assert row.heading.startswith(f"Part {i // 10} > Section "), row.heading

    # The same file under the threshold goes the whole-file way: about as many chunks.
    stream.STREAM_BYTES = 1 << 40
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "big.md").write_bytes(doc.read_bytes())
    runner.invoke(app, ["ingest", str(whole), "--quiet"], catch_exceptions=False)
    _, both = stored(env)
    assert abs(len(both) - 2 * len(rows)) <= 0.05 * len(rows)

    # Unchanged: nothing is read again.
    again = json.loads(runner.invoke(app, ["ingest", str(doc), "--json"]).stdout)
    assert again["unchanged"] == 1 and again["chunks"] == 0


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (
            "wide.txt",
            ("Line of UTF-16 text without a BOM, crème brûlée.\r\n" * 4000).encode("utf-16-le"),
        ),
        ("oneline.txt", (" ".join(f"w{i}" for i in range(60_000))).encode()),
        ("nospace.txt", b"x" * 300_000),
        (
            "latin.rst",
            ("Title\n=====\n\n" + "Caf\xe9 cr\xe8me, d\xe9j\xe0 vu.\n\n" * 8000).encode("cp1252"),
        ),
    ],
)
def test_odd_large_files_stream_whole(
    small_blocks: None, ollama: OllamaStandIn, env: Path, tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    _, rows = stored(env)
    assert rows and all(r.tokens <= 512 for r in rows)
    joined = "".join(r.text for r in rows)
    if name == "wide.txt":
        assert "crème brûlée" in joined and "\r" not in joined
    if name == "latin.rst":
        # Decoded as the whole-file path decodes it (charset_normalizer's pick, right or not).
        from ragged.ingest.loaders import decode_text

        sentence = decode_text(path, content).split("\n")[3]
        assert sentence.startswith("Caf") and sentence in joined and rows[0].heading == "Title"
        assert all(r.heading == "Title" for r in rows)
    if name == "oneline.txt":
        assert "w0 " in joined and "w59999" in joined


def test_a_large_binary_or_empty_file_is_named_with_its_reason(
    small_blocks: None, ollama: OllamaStandIn, env: Path, tmp_path: Path
) -> None:
    import random

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "noise.md").write_bytes(random.Random(3).randbytes(200_000))
    (docs / "blank.txt").write_bytes(b"\n \n" * 100_000)
    (docs / "ok.md").write_text("# Fine\n\nA small file.\n")
    result = CliRunner().invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 1
    err = " ".join(result.stderr.split())
    assert "noise.md: binary content, not text" in err
    assert "blank.txt: no extractable text" in err
    files, _ = stored(env)
    assert [Path(f.path).name for f in files] == ["ok.md"]


def test_a_streamed_file_moves_the_byte_progress_while_it_is_read(
    ollama: OllamaStandIn, env: Path, tmp_path: Path, small_blocks: None
) -> None:
    """The ETA goes by bytes; a file of hundreds of MB counted only once done left it
    standing still (and far too long) for most of a run."""
    from ragged.index import open_index
    from ragged.ingest import Progress, ingest
    from ragged.llm import connect

    (tmp_path / "docs").mkdir()
    big = big_markdown(tmp_path / "docs" / "big.md", sections=200)
    (tmp_path / "docs" / "small.md").write_text("# Small\n\nA small file.\n")
    size = big.stat().st_size
    seen: list[Progress] = []
    settings = load_settings()
    with open_index(settings, create=True) as index:
        ingest([tmp_path / "docs"], index, connect(settings), on_progress=seen.append)
    # While big.md was being read (fewer than both files settled), bytes moved in steps.
    during = {p.bytes_done for p in seen if p.files_done < 2 and 0 < p.bytes_done}
    assert len([b for b in during if b < size]) >= 3, sorted(during)
    assert seen[-1].bytes_done == seen[-1].bytes_total
