"""Tables as Markdown (GitHub pipe tables): written by the HTML and Office loaders, kept whole
by the chunker.

A table keeps its meaning only while each value stays beside its column name, so every
table, whatever it came from, becomes one line per row:

    | Port | Protocol |
    | --- | --- |
    | 443 | HTTPS |
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_SPACE = re.compile(r"\s+")
# A row: starts and ends with a pipe. A separator row: only pipes, dashes, colons, spaces.
ROW = re.compile(r"^\|.*\|[ \t]*$")
SEPARATOR = re.compile(r"^\|(?:[ \t]*:?-+:?[ \t]*\|)+[ \t]*$")
# The most columns one cell may span (HTML colspan, Word gridSpan): a hostile file's span of
# millions must not make millions of cells. Word itself allows 63 columns.
MAX_SPAN = 100


def cell_text(text: str) -> str:
    """One cell's text on one line, with its pipes escaped so they don't end the cell."""
    return _SPACE.sub(" ", text).strip().replace("|", "\\|")


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cell texts as a Markdown table; the first row is the header.

    Short rows are padded, so every row has as many cells as the widest; rows with no text
    at all are dropped. "" when nothing is left.
    """
    cleaned = [[cell_text(c) for c in row] for row in rows]
    cleaned = [row for row in cleaned if any(row)]
    if not cleaned:
        return ""
    width = max(len(row) for row in cleaned)
    lines = []
    for i, row in enumerate(cleaned):
        cells = row + [""] * (width - len(row))
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:
            lines.append("|" + " --- |" * width)
    return "\n".join(lines)


class TableBuilder:
    """Collects a table cell by cell, as a markup parser meets it, spans included.

    A cell spanning rows is repeated in each of them, so every row stays readable alone; a
    cell spanning columns leaves the columns after it empty.
    """

    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.caption: list[str] = []
        self._colspan = 1
        self._rowspan = 1
        # column -> [rows below still covered, text] for cells with rowspan > 1
        self._down: dict[int, list[int | str]] = {}

    @property
    def in_cell(self) -> bool:
        return self.cell is not None

    def start_row(self) -> None:
        self.end_row()
        self.row = []

    def start_cell(self, colspan: int = 1, rowspan: int = 1) -> None:
        self.end_cell()
        if self.row is None:
            self.start_row()
        self._fill_down()
        self.cell = []
        self._colspan = max(1, min(colspan, MAX_SPAN))
        self._rowspan = max(1, min(rowspan, 1000))

    def text(self, text: str) -> None:
        if self.cell is None:
            if not text.strip():
                return  # whitespace between tags
            self.start_cell()
        assert self.cell is not None
        self.cell.append(text)

    def end_cell(self) -> None:
        if self.cell is None or self.row is None:
            return
        text = " ".join("".join(self.cell).split())  # escaped when the table is written
        if self._rowspan > 1:
            self._down[len(self.row)] = [self._rowspan - 1, text]
        self.row.append(text)
        self.row.extend([""] * (self._colspan - 1))
        self.cell = None
        self._colspan = self._rowspan = 1

    def end_row(self) -> None:
        self.end_cell()
        if self.row is not None:
            self._fill_down()
            self.rows.append(self.row)
        self.row = None

    def _fill_down(self) -> None:
        """Repeat, at the current column, cells of rows above that span down into this row."""
        assert self.row is not None
        while (column := len(self.row)) in self._down:
            left, text = self._down[column]
            self.row.append(str(text))
            if int(left) <= 1:
                del self._down[column]
            else:
                self._down[column] = [int(left) - 1, text]

    def finish(self) -> str:
        """The table as Markdown; a table of one column or one row as plain lines (layout)."""
        self.end_row()
        caption = " ".join("".join(self.caption).split())
        rows = [row for row in self.rows if any(row)]
        width = max((len(r) for r in rows), default=0)
        if width == 1 or len(rows) == 1:
            # A layout table or a strip of values: a header line and a separator would be noise.
            body = "\n".join(" ".join(c for c in row if c) for row in rows)
        else:
            body = markdown_table(rows)
        return "\n\n".join(part for part in (caption, body) if part)
