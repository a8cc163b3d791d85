"""Generators for the Office, notebook and scanned-PDF test fixtures: no binary blobs in git.

Word and PowerPoint files are written with python-docx / python-pptx (ragged's own readers'
libraries, so always installed); "scans" are pages of text drawn by Pillow and saved as an
image-only PDF, the way a scanner writes them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Facts the tests search for, with where they must be cited.
DOCX_FEE_FACT = "Berth B2 costs 55 euros per night"
PPTX_NOTES_FACT = "Mention the new floating pontoon"
FILLER = " Readings are taken every hour at the gauge." * 60  # about 600 tokens


def write_docx(path: Path) -> Path:
    """A manual: title, nested headings, a list, a table with a merged cell, a TOC, a revision."""
    import docx
    from docx.oxml import parse_xml
    from docx.oxml.ns import nsdecls

    d = docx.Document()
    toc = d.styles.add_style("TOC 1", 1)  # 1: a paragraph style; Word's own TOC lines use it
    d.add_paragraph("Moorings ........ 2", style=toc)
    d.add_heading("Harbour Manual", 0)
    d.add_paragraph("Welcome aboard the harbour.")
    d.add_heading("Moorings", 1)
    d.add_paragraph("Boats moor at the east pier.")
    # Long enough (~600 tokens) that the next section starts a chunk of its own.
    d.add_paragraph("The harbour master assigns each mooring in order of arrival. " * 60)
    d.add_paragraph("Check the lines twice", style="List Bullet")
    d.add_paragraph("Report damage at once", style="List Bullet")
    d.add_heading("Fees", 2)
    d.add_paragraph(f"{DOCX_FEE_FACT}, as the table shows.")
    table = d.add_table(rows=4, cols=3)
    for i, row in enumerate(
        [["Berth", "Length", "Fee | EUR"], ["A1", "10 m", "40"], ["B2", "12 m", "55"], ["", "", ""]]
    ):
        for j, value in enumerate(row):
            table.cell(i, j).text = value
    merged = table.cell(3, 0).merge(table.cell(3, 1))
    merged.text = "Winter rate"
    table.cell(3, 2).text = "30"
    # A custom heading style derived from Heading 2 still counts as level 2.
    custom = d.styles.add_style("Harbour Section", 1)
    custom.base_style = d.styles["Heading 2"]
    d.add_paragraph("Electricity", style=custom)
    d.add_paragraph("Shore power is metered.")
    d.add_heading("Safety", 1)
    revised = d.add_paragraph("Wear a life vest")
    # A tracked revision: " at all times" inserted, " sometimes" deleted.
    revised._p.append(
        parse_xml(
            f'<w:ins {nsdecls("w")} w:id="1" w:author="a"><w:r><w:t xml:space="preserve"> at all times</w:t></w:r></w:ins>'
        )
    )
    revised._p.append(
        parse_xml(
            f'<w:del {nsdecls("w")} w:id="2" w:author="a"><w:r><w:delText xml:space="preserve"> sometimes</w:delText></w:r></w:del>'
        )
    )
    d.save(str(path))
    return path


def write_pptx(path: Path) -> Path:
    """A deck of four slides: title, bullets with notes, a table, and an empty one."""
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[0])
    first.shapes.title.text = "Quarterly review"
    first.placeholders[1].text = "Harbour Authority"
    second = deck.slides.add_slide(deck.slide_layouts[1])
    second.shapes.title.text = "Income"
    body = second.placeholders[1].text_frame
    body.text = "Mooring fees up 12%"
    sub = body.add_paragraph()
    sub.text = "Fuel sales flat"
    sub.level = 1
    second.notes_slide.notes_text_frame.text = f"{PPTX_NOTES_FACT} before the questions."
    # Drawn last but placed at the top: reading order puts it first.
    banner = second.shapes.add_textbox(Inches(1), Inches(0.1), Inches(4), Inches(0.5))
    banner.text_frame.text = "Draft figures"
    third = deck.slides.add_slide(deck.slide_layouts[5])
    third.shapes.title.text = "Fees table"
    grid = third.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for i, row in enumerate([["Berth", "Fee"], ["A1", "40"], ["B2", "55"]]):
        for j, value in enumerate(row):
            grid.cell(i, j).text = value
    deck.slides.add_slide(deck.slide_layouts[6])  # blank: no text at all
    deck.save(str(path))
    return path


def notebook(cells: Sequence[dict[str, Any]], nbformat: int = 4) -> bytes:
    meta = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    return json.dumps({"cells": list(cells), "metadata": meta, "nbformat": nbformat}).encode()


def markdown_cell(source: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": source.splitlines(keepends=True)}


def code_cell(source: str, output: str = "") -> dict[str, Any]:
    outputs = [{"output_type": "stream", "name": "stdout", "text": [output]}] if output else []
    return {
        "cell_type": "code",
        "metadata": {},
        "execution_count": 1,
        "source": source,
        "outputs": outputs,
    }


def write_notebook(path: Path) -> Path:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    path.write_bytes(
        notebook(
            [
                # Long enough that "Fitting" starts a chunk of its own.
                markdown_cell("# Tide analysis\n\nWe model the harbour tides." + FILLER),
                code_cell("import math\nprint('loaded')", output="loaded\nSECRET-OUTPUT-LINE"),
                markdown_cell(
                    f"## Fitting\n\nThe fit uses harmonics. ![plot](data:image/png;base64,{png})"
                ),
                code_cell("def tidal_harmonic(t):\n    return math.sin(t)  # ``` inside code\n"),
                {"cell_type": "raw", "metadata": {}, "source": "RAW-CELL-TEXT"},
            ]
        )
    )
    return path


def scanned_pdf(pages: Sequence[Sequence[str]], dpi: int = 150) -> bytes:
    """An image-only PDF: each page's lines drawn as pixels on a US Letter page, no text layer."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=dpi * 14 // 72)  # 14 pt type
    images = []
    for lines in pages:
        image = Image.new("L", (dpi * 85 // 10, dpi * 11), 255)
        draw = ImageDraw.Draw(image)
        for i, line in enumerate(lines):
            draw.text((dpi, dpi + i * dpi * 24 // 72), line, fill=0, font=font)
        images.append(image)
    out = io.BytesIO()
    images[0].save(out, "PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return out.getvalue()


def text_png(lines: Sequence[str]) -> bytes:
    """A screenshot-like PNG with a few lines of text."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=28)
    image = Image.new("RGB", (1000, 80 + 44 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((40, 40 + 44 * i), line, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()
