"""Word (.docx) and PowerPoint (.pptx) files → Documents. The only module importing python-docx
and python-pptx.

- .docx: paragraphs in reading order; paragraphs styled as headings (or given an outline
  level) open a section, whose heading path is the chain of headings above it; tables become
  Markdown tables; list items start with "- ". Tracked deletions, field codes and the
  table of contents are left out; tracked insertions are kept (the text as it reads now).
- .pptx: one section per slide, cited as its page: the slide title is the heading, then
  the text of its shapes in reading order (top to bottom, left to right), tables as
  Markdown, and the speaker notes.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragged.errors import UnreadableDocument
from ragged.ingest.loaders import (
    HEADING_SEPARATOR,
    MAX_HEADING_CHARS,
    NO_TEXT,
    Document,
    Section,
    normalise,
)
from ragged.ingest.tables import MAX_SPAN, markdown_table

# WordprocessingML and markup-compatibility namespaces, for walking the XML directly.
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
# Subtrees whose text is not the document's text as it reads: deleted revisions, field
# instructions ("TOC \o 1-3"), and the fallback copy of a drawing, which repeats its content.
_NOT_TEXT = frozenset(
    {f"{_W}del", f"{_W}delText", f"{_W}instrText", f"{_MC}Fallback", f"{_W}txbxContent"}
)
_HEADING_STYLE = re.compile(r"^heading (\d)$", re.IGNORECASE)
_TOC_STYLE = re.compile(r"^(toc|table of contents)\b", re.IGNORECASE)
# Word and PowerPoint both put a vertical tab where the user typed Shift+Enter.
_SOFT_BREAK = str.maketrans({"\v": "\n"})


class _Outline:
    """Sections of (heading path, text) built as headings and body text arrive in order."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, str]] = []
        self.body: list[str] = []
        self.parts: list[tuple[str, str]] = []
        self.in_list = False

    def item(self, line: str) -> None:
        """A list item: consecutive items are lines of one block, as in Markdown."""
        if self.in_list and self.body:
            self.body[-1] += "\n" + line
        else:
            self.body.append(line)
        self.in_list = True

    def heading(self, level: int, title: str) -> None:
        self.flush()
        self.in_list = False
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        title = " ".join(title.split())[:MAX_HEADING_CHARS]
        if title:
            self.stack.append((level, title))

    def add(self, block: str) -> None:
        if block.strip():
            self.body.append(block)
            self.in_list = False

    def flush(self) -> None:
        text = normalise("\n\n".join(self.body))
        if text.strip():
            self.parts.append((HEADING_SEPARATOR.join(t for _, t in self.stack), text))
        self.body.clear()

    def document(self, path: Path, pages: int | None = None) -> Document:
        self.flush()
        if not self.parts:
            raise UnreadableDocument(path, NO_TEXT)
        return Document(path, tuple(Section(text, heading=h) for h, text in self.parts), pages)


def unpacked_size(data: bytes) -> int | None:
    """What the archive's parts unpack to, from its directory (nothing is unpacked); None
    when it is not a zip (parsing then says why). A part cannot unpack beyond its declared
    size: zipfile stops there, and the checksum then fails."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return sum(item.file_size for item in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        return None


def _open_error(path: Path, kind: str, exc: Exception) -> UnreadableDocument:
    """A file python-docx/python-pptx cannot open, with the reason a user can act on."""
    if isinstance(exc, zipfile.BadZipFile):
        # Office files are zip archives; the old binary .doc/.ppt are not.
        return UnreadableDocument(path, f"not a {kind} file (corrupt, or an old binary format)")
    if isinstance(exc, KeyError | ValueError) and "encrypt" in str(exc).lower():
        return UnreadableDocument(path, f"encrypted {kind} file (password required)")
    message = str(exc).strip().split("\n", 1)[0][:120] or type(exc).__name__
    return UnreadableDocument(path, f"corrupt {kind} file: {message}")


def _encrypted(data: bytes) -> bool:
    """Password-protected Office files are OLE compound files, not zip archives."""
    return data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


# ---------------------------------------------------------------------------------------------
# Word


def load_docx(path: Path, data: bytes) -> Document:
    """A Word document: headings → heading path, tables → Markdown, lists → "- " lines."""
    import docx

    if _encrypted(data):
        raise UnreadableDocument(
            path, "encrypted or old-format Word file (password-protected .docx, or a .doc)"
        )
    try:
        document = docx.Document(io.BytesIO(data))
        body = document.element.body
    except Exception as exc:  # python-docx raises zip, KeyError and lxml errors alike
        raise _open_error(path, "Word", exc) from exc

    try:
        return _read_docx(path, document, body)
    except UnreadableDocument:
        raise
    except Exception as exc:  # a value python-docx cannot parse (Word calls such files corrupt)
        raise _open_error(path, "Word", exc) from exc


def _read_docx(path: Path, document: Any, body: Any) -> Document:
    from docx.text.paragraph import Paragraph

    outline = _Outline()
    styles: dict[str, _Kind] = {}  # style id -> what its paragraphs are
    for element in _blocks(body):
        if element.tag == f"{_W}tbl":
            outline.add(_docx_table(element))
            continue
        paragraph = Paragraph(element, document)
        kind = _paragraph_kind(paragraph, styles)
        if kind.toc:
            continue
        text = _paragraph_text(element)
        if kind.level is not None and text.strip():
            outline.heading(kind.level, text)
            continue
        numbering = element.pPr.numPr if element.pPr is not None else None
        if (numbering is not None or kind.listed) and text.strip():
            depth = _number(numbering, "ilvl", 0, 0, 8) if numbering is not None else 0
            outline.item("  " * depth + "- " + text.strip())
            continue
        outline.add(text)
    return outline.document(path)


def _blocks(container: Any) -> Iterator[Any]:
    """Paragraphs and tables of the body in order, including those inside content controls."""
    for child in container.iterchildren():
        if child.tag in (f"{_W}p", f"{_W}tbl"):
            yield child
        elif child.tag == f"{_W}sdt":
            content = child.find(f"{_W}sdtContent")
            if content is not None:
                yield from _blocks(content)


def _paragraph_text(element: Any) -> str:
    """A paragraph's text as it reads: runs, hyperlinks and insertions; breaks and tabs kept."""
    parts: list[str] = []

    def visit(node: Any) -> None:
        for child in node.iterchildren():
            tag = child.tag
            if not isinstance(tag, str) or tag in _NOT_TEXT:
                continue
            if tag == f"{_W}t":
                parts.append(child.text or "")
            elif tag == f"{_W}tab":
                parts.append("\t")
            elif tag in (f"{_W}br", f"{_W}cr"):
                parts.append("\n")
            elif tag != f"{_W}pPr":
                visit(child)

    visit(element)
    return "".join(parts).translate(_SOFT_BREAK)


@dataclass(frozen=True)
class _Kind:
    level: int | None = None  # heading level; 0 is the document title
    toc: bool = False  # a table-of-contents line: left out, the headings say it all
    listed: bool = False  # a list item by its style (List Bullet, List Number)


def _paragraph_kind(paragraph: Any, cache: dict[str, _Kind]) -> _Kind:
    """What a paragraph is, by its own outline level or by its style.

    Level 0 is the document title. A style counts through what it is based on, so a custom
    "Chapter" style derived from Heading 1 is a level-1 heading; an explicit outline level on
    the paragraph or its style counts too (that is what Word's navigation pane shows).
    """
    own = _outline_level(paragraph._p.pPr)
    if own is not None:
        return _Kind(level=own)
    style_id = paragraph._p.style or ""
    if style_id not in cache:
        cache[style_id] = _style_kind(paragraph.style)
    return cache[style_id]


def _style_kind(style: Any) -> _Kind:
    listed = False
    seen = 0
    while style is not None and seen < 20:  # a based-on loop in a broken file must end
        name = style.name or ""
        if _TOC_STYLE.match(name):
            return _Kind(toc=True)
        if name.lower() == "title":
            return _Kind(level=0)
        if match := _HEADING_STYLE.match(name):
            return _Kind(level=int(match.group(1)))
        ppr = style.element.pPr
        level = _outline_level(ppr)
        if level is not None:
            return _Kind(level=level)
        listed = (
            listed
            or name.lower().startswith("list ")
            or (ppr is not None and ppr.numPr is not None)
        )
        style = style.base_style
        seen += 1
    return _Kind(listed=listed)


def _outline_level(ppr: Any) -> int | None:
    """w:outlineLvl 0-8 are heading levels 1-9; 9 (or a value that is no level) is body text."""
    value = _number(ppr, "outlineLvl", 9, -1, 9)
    return value + 1 if 0 <= value < 9 else None


def _docx_table(table: Any) -> str:
    """A w:tbl as a Markdown table, read from its XML in one pass.

    Not python-docx's row.cells: it finds the cell a vertical merge continues by searching
    the rows above, recursively, for every row, so a column merged down 800 rows took 46 s
    and one of 1,000 exceeded Python's recursion limit. A merged cell's text is repeated in
    each row it covers (each row stays readable alone, as for HTML's rowspan); a cell merged
    across columns keeps its text once, the columns after it empty.
    """
    rows: list[list[str]] = []
    merged: dict[int, str] = {}  # grid column -> text of the vertical merge started there
    for tr in table.iterchildren(f"{_W}tr"):
        cells = [""] * _number(tr.find(f"{_W}trPr"), "gridBefore", 0, 0, MAX_SPAN)
        for tc in _row_cells(tr):
            column = len(cells)
            props = tc.find(f"{_W}tcPr")
            merge = props.find(f"{_W}vMerge") if props is not None else None
            how = merge.get(f"{_W}val", "continue") if merge is not None else None
            if how == "continue" and column in merged:
                text = merged[column]
            else:
                text = _cell_text(tc)
                if how == "restart":
                    merged[column] = text
                else:
                    merged.pop(column, None)
            cells.append(text)
            cells.extend([""] * (_number(props, "gridSpan", 1, 1, MAX_SPAN) - 1))
        rows.append(cells)
    return markdown_table(rows)


def _row_cells(tr: Any) -> Iterator[Any]:
    """A row's w:tc elements, those inside content controls included."""
    for child in tr.iterchildren():
        if child.tag == f"{_W}tc":
            yield child
        elif child.tag == f"{_W}sdt":
            content = child.find(f"{_W}sdtContent")
            if content is not None:
                yield from content.iterchildren(f"{_W}tc")


def _number(props: Any, name: str, default: int, low: int, high: int) -> int:
    """The w:val of a property such as w:gridSpan, within [low, high]; `default` when it is
    absent or not a number. Bounded: a span of 99,999,999 columns in a 36 KB file made 900 MB
    of table."""
    element = props.find(f"{_W}{name}") if props is not None else None
    try:
        value = int(element.get(f"{_W}val")) if element is not None else default
    except (TypeError, ValueError):
        value = default
    return max(low, min(value, high))


def _cell_text(tc: Any) -> str:
    """A cell's paragraphs, and the text of any table nested in it, on one line."""
    parts = []
    for element in _blocks(tc):
        if element.tag == f"{_W}tbl":
            for inner in element.iter(f"{_W}tc"):
                parts.append(" ".join(_paragraph_text(p) for p in inner.iter(f"{_W}p")))
        else:
            parts.append(_paragraph_text(element))
    return " ".join(p.strip() for p in parts if p.strip())


# ---------------------------------------------------------------------------------------------
# PowerPoint


def load_pptx(path: Path, data: bytes) -> Document:
    """A presentation: one section per slide (its page), titled by the slide title."""
    import pptx

    if _encrypted(data):
        raise UnreadableDocument(
            path, "encrypted or old-format PowerPoint file (password-protected .pptx, or a .ppt)"
        )
    try:
        presentation = pptx.Presentation(io.BytesIO(data))
        slides = list(presentation.slides)
    except Exception as exc:
        raise _open_error(path, "PowerPoint", exc) from exc
    try:
        return _read_pptx(path, slides)
    except UnreadableDocument:
        raise
    except Exception as exc:  # a value python-pptx cannot parse (PowerPoint would repair it)
        raise _open_error(path, "PowerPoint", exc) from exc


def _read_pptx(path: Path, slides: list[Any]) -> Document:
    sections = []
    for number, slide in enumerate(slides, start=1):
        title_shape = slide.shapes.title
        title = ""
        if title_shape is not None and title_shape.has_text_frame:
            title = " ".join(title_shape.text_frame.text.split())[:MAX_HEADING_CHARS]
        blocks = [_shape_text(s) for s in _reading_order(slide.shapes) if s != title_shape]
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text.translate(_SOFT_BREAK).strip()
            if notes:
                blocks.append(f"Speaker notes:\n{notes}")
        text = normalise("\n\n".join(b for b in blocks if b.strip()))
        if not text.strip() and title:
            text = title  # a title-only slide (a section divider) still says something
        if text.strip():
            sections.append(Section(text, page=number, heading=title))
    if not sections:
        raise UnreadableDocument(path, NO_TEXT)
    return Document(path, tuple(sections), pages=len(slides))


def _reading_order(shapes: Any) -> list[Any]:
    """Shapes top to bottom, then left to right; the order they were drawn in is not it."""

    def key(shape: Any) -> tuple[int, int]:
        return (shape.top or 0, shape.left or 0)

    return sorted(shapes, key=key)


def _shape_text(shape: Any) -> str:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        return "\n\n".join(t for t in map(_shape_text, _reading_order(shape.shapes)) if t)
    if getattr(shape, "has_table", False) and shape.has_table:
        from pptx.table import _Cell

        # Rows and cells from the XML lists, taken once: python-pptx's collections rebuild
        # theirs for every item they hand out (a 2,000-row table took 5.5 s).
        table = shape.table
        cells = ([_Cell(tc, table) for tc in tr.tc_lst] for tr in table._tbl.tr_lst)
        return markdown_table([["" if c.is_spanned else c.text for c in row] for row in cells])
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        lines = []
        for paragraph in shape.text_frame.paragraphs:
            text = paragraph.text.translate(_SOFT_BREAK).strip()
            if text:
                lines.append("  " * _indent(paragraph) + text)
        return "\n".join(lines)
    return ""


def _indent(paragraph: Any) -> int:
    """A paragraph's outline level, 0-8, read leniently: 0 when it is not a number."""
    props = paragraph._p.pPr
    try:
        return max(0, min(int(props.get("lvl", 0)) if props is not None else 0, 8))
    except ValueError:
        return 0
