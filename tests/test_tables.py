"""Tables survive as Markdown tables inside chunks, and no chunk boundary splits a row."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.cli import app
from ragged.ingest.chunking import chunk, split_text
from ragged.ingest.loaders import Document, Section, load
from ragged.ingest.tables import TableBuilder, markdown_table
from tests.ollama_standin import OllamaStandIn

ROW = re.compile(r"^\|.*\|$")


def html(tmp_path: Path, body: str) -> Document:
    path = tmp_path / "page.html"
    path.write_text(f"<html><body><h1>Prices</h1>{body}</body></html>")
    return load(path)


def test_markdown_table_pads_rows_and_escapes_pipes() -> None:
    assert markdown_table([["a", "b|c"], ["1"], [" ", ""], ["x\ny", "z"]]) == (
        "| a | b\\|c |\n| --- | --- |\n| 1 |  |\n| x y | z |"
    )


def test_html_table_with_header_caption_and_spans(tmp_path: Path) -> None:
    doc = html(
        tmp_path,
        """<p>Before.</p>
        <table><caption>Berth fees</caption>
          <thead><tr><th>Berth</th><th>Season</th><th>Fee</th></tr></thead>
          <tbody>
            <tr><td rowspan="2">A1</td><td>Summer</td><td>40</td></tr>
            <tr><td>Winter</td><td>30</td></tr>
            <tr><td colspan="2">Any berth, any season<br>(minimum)</td><td>25</td></tr>
          </tbody>
        </table><p>After.</p>""",
    )
    assert doc.sections[0].text == (
        "Before.\n\nBerth fees\n\n"
        "| Berth | Season | Fee |\n| --- | --- | --- |\n"
        "| A1 | Summer | 40 |\n"
        "| A1 | Winter | 30 |\n"  # a cell spanning rows is repeated: each row reads alone
        "| Any berth, any season (minimum) |  | 25 |\n\n"
        "After."
    )


def test_layout_tables_still_flow_as_text(tmp_path: Path) -> None:
    doc = html(
        tmp_path,
        """<table role="presentation"><tr><td>Menu</td><td>Body text here.</td></tr></table>
        <table><tr><td>only one column</td></tr><tr><td>second line</td></tr></table>
        <table><tr><td><h2>Inside</h2><p>Laid out with a table.</p></td>
          <td><table><tr><th>k</th><th>v</th></tr><tr><td>x</td><td>1</td></tr></table></td>
        </tr></table>""",
    )
    text = "\n".join(s.text for s in doc.sections)
    assert "Menu | Body text here." in text
    assert "only one column\nsecond line" in text
    assert doc.sections[-1].heading == "Prices > Inside"
    assert "| k | v |\n| --- | --- |\n| x | 1 |" in text  # the data table inside is kept


def test_unclosed_cells_and_tables(tmp_path: Path) -> None:
    doc = html(tmp_path, "<table><tr><th>a<th>b<tr><td>1<td>2")
    assert doc.sections[0].text == "| a | b |\n| --- | --- |\n| 1 | 2 |"


def test_builder_bounds_hostile_spans() -> None:
    table = TableBuilder()
    table.start_cell(colspan=10**9, rowspan=10**9)
    table.text("x")
    table.start_row()
    table.start_cell()
    table.text("y")
    out = table.finish()
    assert len(out) < 2000 and out.count("\n") == 2


def table_text(rows: int) -> tuple[str, list[str]]:
    cells = [["Port", "Protocol", "Notes"]] + [
        [str(i), "HTTPS" if i % 2 else "SSH", f"Service {i} answers. It logs. Done."]
        for i in range(rows)
    ]
    table = markdown_table(cells)
    text = "Intro sentence about ports. " * 25 + "\n\n" + table + "\n\nClosing words. " * 20
    return text, table.split("\n")


@pytest.mark.parametrize("max_tokens", [40, 64, 100, 256, 512])
@pytest.mark.parametrize("overlap", [0, 16])
def test_no_chunk_boundary_splits_a_table_row(max_tokens: int, overlap: int) -> None:
    text, lines = table_text(80)
    rows, header = set(lines), "\n".join(lines[:2])
    pieces = split_text(text, max_tokens, overlap)
    assert all(count <= max_tokens for _, count in pieces)
    covered = set()
    for piece, _ in pieces:
        for line in piece.split("\n"):
            if line.startswith("|"):
                assert line in rows, f"a split row: {line!r}"
                covered.add(line)
        first = piece.split("\n", 1)[0]
        if first.startswith("|") and piece.split("\n")[1:2] != [lines[1]]:
            pytest.fail(f"a table piece without its header: {piece[:120]!r}")
        if first.startswith("|"):
            assert piece.startswith(header)
    assert covered == rows  # every row is somewhere


def test_a_row_longer_than_the_window_is_still_cut() -> None:
    long_row = "| " + " ".join(["word"] * 400) + " | end |"
    text = "| a | b |\n| --- | --- |\n" + long_row
    pieces = split_text(text, 64, 8)
    assert all(count <= 64 for _, count in pieces)
    assert "end" in pieces[-1][0]


def test_docx_and_html_tables_reach_the_chunks(tmp_path: Path) -> None:
    doc = html(
        tmp_path,
        "<table><tr><th>Berth</th><th>Fee</th></tr><tr><td>B2</td><td>55</td></tr></table>",
    )
    assert chunk(doc)[0].text == "| Berth | Fee |\n| --- | --- |\n| B2 | 55 |"
    small = Document(Path("x.md"), (Section("| h |\n| --- |\n| 1 |"),))
    assert chunk(small)[0].text == "| h |\n| --- |\n| 1 |"


@pytest.mark.usefixtures("chroma_mode")
def test_a_table_row_is_found_whole_through_the_cli(
    runner: CliRunner, ollama: OllamaStandIn, tmp_path: Path
) -> None:
    rows = [["Berth", "Length", "Fee"]] + [[f"Z{i}", f"{i} m", f"{i * 3} EUR"] for i in range(300)]
    page = tmp_path / "docs" / "fees.html"
    page.parent.mkdir()
    page.write_text(
        "<h1>Fees</h1><table>"
        + "".join(
            "<tr>" + "".join(f"<{'th' if r == 0 else 'td'}>{c}</td>" for c in row) + "</tr>"
            for r, row in enumerate(rows)
        )
        + "</table>"
    )
    result = runner.invoke(app, ["ingest", str(page.parent), "--json"], catch_exceptions=False)
    assert result.exit_code == 0 and json.loads(result.stdout)["chunks"] > 3
    result = runner.invoke(
        app, ["search", "Z217", "--mode", "lexical", "-k", "1", "--json"], catch_exceptions=False
    )
    hit = json.loads(result.stdout)["hits"][0]
    assert hit["heading"] == "Fees"
    assert hit["text"].startswith("| Berth | Length | Fee |\n| --- | --- | --- |\n")
    assert "| Z217 | 217 m | 651 EUR |" in hit["text"].split("\n")
