"""Scanned PDFs and images: read by OCR with the ragged[ocr] extra, explained without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragged.ingest import ocr
from ragged.ingest.loaders import load
from tests.officegen import scanned_pdf, text_png
from tests.ollama_standin import OllamaStandIn
from tests.pdfgen import REPORT_PAGES, REPORT_PDF, write_pdf

RAGGED = [sys.executable, "-m", "ragged"]
needs_ocr = pytest.mark.skipif(
    not ocr.available(),
    reason="the ragged[ocr] extra (rapidocr) is not installed: pip install -e '.[ocr]'",
)
HINT = "`pip install 'ragged[ocr]'`"


def run(
    home: Path, ollama: OllamaStandIn, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RAGGED, *args],
        env={**os.environ, "RAGGED_HOME": str(home), "OLLAMA_HOST": ollama.host, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    """A scanned two-page report (no text layer), a screenshot, and a text-layer PDF."""
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "scan.pdf").write_bytes(scanned_pdf(REPORT_PAGES))
    (folder / "screenshot.png").write_bytes(text_png(["Backup window opens at 02:00 UTC"]))
    write_pdf(folder / "typed.pdf", [["Typed page with a text layer."]])
    return folder


@pytest.fixture
def without_ocr(tmp_path: Path) -> dict[str, str]:
    """Environment for a ragged whose OCR packages are not installed (parent and workers)."""
    site = tmp_path / "no-ocr"
    site.mkdir()
    # A None entry in sys.modules makes find_spec say "not installed" and import fail.
    (site / "sitecustomize.py").write_text(
        "import sys\nfor name in ('rapidocr',):\n    sys.modules[name] = None\n"
    )
    return {"PYTHONPATH": os.pathsep.join([str(site), str(Path(__file__).parents[1])])}


def test_without_the_extra_the_scan_names_the_install_and_images_are_passed_over(
    ollama: OllamaStandIn, env: Path, scans: Path, without_ocr: dict[str, str]
) -> None:
    done = run(env, ollama, "ingest", str(scans), "--json", **without_ocr)
    assert done.returncode == 1  # a new failure
    report = json.loads(done.stdout)
    assert (report["added"], report["failed"], report["skipped"]) == (1, 1, 0)
    said = " ".join(done.stderr.split())  # rich wraps long lines at the terminal width
    assert (
        f"scan.pdf: no extractable text (scanned PDF without a text layer? {HINT} adds OCR)" in said
    )
    assert "screenshot.png" not in done.stderr  # not readable here: like any other file
    named = run(env, ollama, "ingest", str(scans / "screenshot.png"), **without_ocr)
    assert named.returncode == 1
    assert f"screenshot.png: reading text in images needs OCR: {HINT}" in " ".join(
        named.stderr.split()
    )


@needs_ocr
def test_scanned_pages_and_images_are_read_and_cited(
    ollama: OllamaStandIn, env: Path, scans: Path
) -> None:
    done = run(env, ollama, "ingest", str(scans), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["added"], report["failed"]) == (3, 0)
    found = run(env, ollama, "search", "lighthouse keeper salary 1890", "-k", "1", "--json")
    hit = json.loads(found.stdout)["hits"][0]
    assert (Path(hit["path"]).name, hit["page"]) == ("scan.pdf", 2)
    assert "lighthouse keeper salary in 1890 was 40 pounds" in hit["text"]
    found = run(env, ollama, "search", "backup window", "-k", "1", "--json")
    hit = json.loads(found.stdout)["hits"][0]
    assert Path(hit["path"]).name == "screenshot.png"
    assert "Backup window opens at 02:00 UTC" in hit["text"]


@needs_ocr
def test_blank_scans_and_pictures_without_words(tmp_path: Path) -> None:
    from PIL import Image

    blank = write_pdf(tmp_path / "blank.pdf", [[], []])
    with pytest.raises(Exception, match=r"no text layer, and OCR found no text"):
        load(blank)
    picture = tmp_path / "sky.png"
    Image.new("RGB", (400, 300), (90, 140, 220)).save(picture)
    with pytest.raises(Exception, match=r"OCR found no text in the image"):
        load(picture)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(Exception, match=r"not a readable image"):
        load(broken)


def test_pages_with_a_text_layer_are_never_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("OCR ran on a PDF whose pages all have text")

    monkeypatch.setattr(ocr, "page_text", refuse)
    monkeypatch.setattr(ocr, "available", lambda: True)
    assert [s.page for s in load(REPORT_PDF).sections] == [1, 2]


@needs_ocr
def test_a_pdf_with_text_and_scanned_pages_keeps_both(tmp_path: Path) -> None:
    """pdfium reads the text layer; the page without one is read by OCR, in page order."""
    import io

    import pypdf

    writer = pypdf.PdfWriter()
    writer.add_page(pypdf.PdfReader(REPORT_PDF).pages[0])
    scan = scanned_pdf([["The lighthouse keeper salary in 1890 was 40 pounds."]])
    writer.add_page(pypdf.PdfReader(io.BytesIO(scan)).pages[0])
    mixed = tmp_path / "mixed.pdf"
    with mixed.open("wb") as out:
        writer.write(out)
    pages = {s.page: s.text for s in load(mixed).sections}
    assert sorted(pages) == [1, 2] and "40 pounds" in pages[2]


def test_layout_reads_columns_one_after_the_other() -> None:
    from ragged.ingest.ocr import Box, layout

    boxes = [
        Box(0, 0, 400, 20, "Title across both columns"),
        Box(0, 40, 180, 55, "left one"),
        Box(220, 42, 400, 57, "right one"),
        Box(0, 60, 180, 75, "left two"),
        Box(220, 62, 400, 77, "right two"),
        Box(0, 100, 80, 115, "a new"),
        Box(90, 101, 180, 116, "paragraph"),
    ]
    assert layout(boxes) == (
        "Title across both columns\n\nleft one\nleft two\n\na new paragraph\n\nright one\nright two"
    )
    assert layout([]) == ""
