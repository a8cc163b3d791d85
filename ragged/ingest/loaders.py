"""load(path) → Document: one file's text, split into sections by page or heading."""

from __future__ import annotations

import codecs
import io
import logging
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, BinaryIO

from ragged.errors import UnreadableDocument
from ragged.ingest.tables import TableBuilder

# More than this share of control bytes (not tab, newline, CR, FF, VT or ESC) means binary.
# Random bytes have about 10%; text with a stray NUL, like a bad copy-paste, has well under 5%.
BINARY_CONTROL_RATIO = 0.05
HEADING_SEPARATOR = " > "
MAX_HEADING_CHARS = 200  # an unclosed <h1> or a runaway setext title must not become the path

NO_TEXT = "no extractable text"
_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None  # 1-based page for PDFs, else None
    heading: str = ""  # heading path, e.g. "Install > On macOS"; "" when none


@dataclass(frozen=True)
class Document:
    path: Path
    sections: tuple[Section, ...]
    pages: int | None = None  # page count for PDFs


def load(path: Path, data: bytes | None = None) -> Document:
    """Read one file (or the bytes already read from it) into text sections; raises UnreadableDocument."""
    path = Path(path)
    suffix = path.suffix.lower()
    loader = LOADERS.get(suffix)
    if loader is None:
        raise UnreadableDocument(path, f"unsupported file type '{suffix or path.name}'")
    if data is None:
        data = _read(path)
    if not data:
        raise UnreadableDocument(path, "empty file")
    document = loader(path, data)
    if not document.sections:
        raise UnreadableDocument(path, NO_TEXT)
    return document


def _read(path: Path) -> bytes:
    """The file's bytes, with OS errors turned into reasons a user can act on."""
    try:
        return read_regular(path)
    except FileNotFoundError as exc:
        raise UnreadableDocument(path, "file not found") from exc
    except PermissionError as exc:
        raise UnreadableDocument(path, "permission denied") from exc
    except IsADirectoryError as exc:
        raise UnreadableDocument(path, "is a directory, not a file") from exc
    except OSError as exc:
        raise UnreadableDocument(path, f"cannot read: {exc.strerror or exc}") from exc


def read_regular(path: Path) -> bytes:
    """A regular file's bytes; anything else is refused before a read can block.

    Raises OSError as read_bytes() would, and UnreadableDocument for a FIFO, socket or device.
    """
    with open_regular(path) as fh:
        return fh.read()


def open_regular(path: Path) -> BinaryIO:
    """A regular file opened for reading in binary; anything else is refused before it blocks.

    open() of a FIFO waits for a writer forever, and a path checked by the walk may have been
    swapped since: so open without blocking and look at what was opened.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        why = not_regular(os.fstat(fd).st_mode)
        if why is not None:
            raise UnreadableDocument(path, why)
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def not_regular(mode: int) -> str | None:
    """Why a file of this mode cannot be read as a document (a FIFO would block forever)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    for test, kind in _FILE_KINDS:
        if test(mode):
            return f"not a regular file ({kind})"
    return "not a regular file"


# ---------------------------------------------------------------------------------------------
# Text: decoding and normalising


_BOMS = (
    # UTF-32 LE starts with the UTF-16 LE BOM, so it must be tried first.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_SPACES = " \t\f\v\u00a0"  # what `normalise` strips from line ends
_BLANK_LINES = re.compile(r"\n{3,}")
_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE
)


def decode_text(path: Path, data: bytes, declared: str | None = None) -> str:
    """Bytes → str: a BOM, else UTF-8, else `declared`, else what charset_normalizer detects."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError:
                break  # a BOM-like start on binary data; let the checks below decide
            if not text:
                raise UnreadableDocument(path, "empty file")  # a byte-order mark and nothing else
            # Almost any even number of bytes "decodes" as UTF-16, so look at the result.
            if _control_ratio(text.encode("utf-8", errors="replace")) > BINARY_CONTROL_RATIO:
                raise UnreadableDocument(path, "binary content, not text")
            return text
    if (wide := _utf16_without_bom(data)) is not None:
        return wide
    if _control_ratio(data) > BINARY_CONTROL_RATIO:
        raise UnreadableDocument(path, "binary content, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Mostly valid UTF-8 with a few broken bytes (a bad concatenation, a truncated copy): keep
    # UTF-8 and mark the damage with U+FFFD rather than re-reading everything as cp1252.
    # Legacy 8-bit text almost never forms valid multi-byte UTF-8 sequences by accident.
    replaced = data.decode("utf-8", errors="replace")
    bad = replaced.count("\ufffd")
    non_ascii = len(replaced) - len(replaced.encode("ascii", errors="ignore"))
    if non_ascii - bad > bad:
        return replaced
    if declared:
        try:
            return data.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass
    import charset_normalizer

    results = charset_normalizer.from_bytes(data)
    best = results.best()
    if best is None:
        raise UnreadableDocument(path, "binary content, not text")
    # Short texts often tie: French read as cp1250 scores the same as cp1252 but turns
    # "crème" into "crčme". On a tie, take Windows-1252, the default browsers assume too.
    for match in results:
        if (match.chaos, match.coherence) == (best.chaos, best.coherence) and (
            "cp1252" in match.could_be_from_charset
        ):
            try:
                return data.decode("cp1252")
            except UnicodeDecodeError:
                break
    return str(best)


def _control_ratio(data: bytes) -> float:
    """Share of bytes that are control characters no text file has many of."""
    if not data:
        return 0.0
    return (len(data) - len(data.translate(None, _CONTROL_BYTES))) / len(data)


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text saved without a byte-order mark (some Windows tools do), else None.

    Binary data rarely has UTF-16's shape (see `_utf16_codec`), and the decoded text must
    also pass the same control-character test as any other text.
    """
    codec = _utf16_codec(data) if len(data) % 2 == 0 else None
    if codec is None:
        return None
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        return None  # lone surrogates: not UTF-16 after all
    if _control_ratio(text.encode("utf-8", errors="replace")) > BINARY_CONTROL_RATIO:
        return None
    return text


def _utf16_codec(data: bytes) -> str | None:
    """utf-16-le or utf-16-be if the bytes look like UTF-16 text, else None.

    Text in a Latin, Greek or Cyrillic script has a zero high byte in most of its code units:
    e.g. "Hi" is 48 00 69 00 in UTF-16 LE, so zeros fill the odd positions and almost none
    are at the even ones.
    """
    sample = data[: 1 << 16]
    if len(sample) < 4:
        return None
    half = len(sample) // 2
    zeros_even = sample[0::2].count(0) / half
    zeros_odd = sample[1::2].count(0) / half
    if zeros_odd >= 0.3 and zeros_even <= 0.02:
        return "utf-16-le"
    if zeros_even >= 0.3 and zeros_odd <= 0.02:
        return "utf-16-be"
    return None


def sniff_encoding(path: Path, sample: bytes) -> str:
    """The codec to read a file with, judged from its first block, for files read in blocks.

    The same order as `decode_text`: a BOM, UTF-16 without one, UTF-8 (also when a few bytes
    are broken), else what charset_normalizer detects. Read with errors="replace": one bad
    byte deep in a large file costs a U+FFFD, not the file.
    """
    for bom, codec in _BOMS:
        if sample.startswith(bom):
            return codec  # the incremental decoders of these drop the BOM themselves
    even = sample[: len(sample) // 2 * 2]
    if (codec16 := _utf16_codec(even)) is not None and _utf16_without_bom(even) is not None:
        return codec16
    if _control_ratio(sample) > BINARY_CONTROL_RATIO:
        raise UnreadableDocument(path, "binary content, not text")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    replaced = sample.decode("utf-8", errors="replace")
    bad = replaced.count("\ufffd")
    non_ascii = len(replaced) - len(replaced.encode("ascii", errors="ignore"))
    if non_ascii - bad > bad:
        return "utf-8"
    import charset_normalizer

    results = charset_normalizer.from_bytes(sample)
    best = results.best()
    if best is None:
        raise UnreadableDocument(path, "binary content, not text")
    for match in results:  # the cp1252 tie rule of decode_text
        if (match.chaos, match.coherence) == (best.chaos, best.coherence) and (
            "cp1252" in match.could_be_from_charset
        ):
            return "cp1252"
    return str(best.encoding)


def normalise(text: str) -> str:
    """Unix newlines, no NULs or trailing spaces, at most one blank line in a row, trimmed.

    Trailing spaces go line by line with `rstrip`, and the blank-line pattern runs only
    where three newlines meet: a regex tries every space or newline of the text as a start,
    which took 2.5x as long over the docs corpus (the same result: tests/test_loaders.py)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = "\n".join([line.rstrip(_SPACES) for line in text.split("\n")])
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip("\n")


def _joined(lines: list[str]) -> str:
    """Consecutive lines of normalised text as one section's text. Normalised already (no
    line of them ends in spaces, no two in a row are blank) but for blank lines at its ends:
    running `normalise` again on each of a document's thousands of sections cost more than
    reading it."""
    return "\n".join(lines).strip("\n")


def _document(path: Path, parts: list[tuple[str, str]], fallback: str) -> Document:
    """A Document from (heading, text) parts; `fallback` whole when no part has text."""
    sections = [Section(text, heading=heading) for heading, text in parts if text.strip()]
    if not sections and fallback.strip():
        # Headings and nothing else (a stub README): keep what there is rather than fail.
        sections = [Section(fallback)]
    if not sections:
        raise UnreadableDocument(path, NO_TEXT)
    return Document(path, tuple(sections))


def _load_text(path: Path, data: bytes) -> Document:
    """Plain text: one section."""
    text = normalise(decode_text(path, data))
    return _document(path, [("", text)], text)


# ---------------------------------------------------------------------------------------------
# Markdown


# YAML (---) or TOML (+++) front matter; it must hold a "key:" / "key =" line, so a document
# that merely opens with a horizontal rule keeps its text.
_FRONT_MATTER = re.compile(
    r"\A(---|\+\+\+)[ \t]*\n(?P<meta>(?:.*\n)*?)(?:\1|\.\.\.)[ \t]*(?:\n|\Z)"
)
_META_KEY = re.compile(r"^[\w\"'-][^:=\n]*[:=]", re.MULTILINE)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# Heading patterns never end in a run of spaces after another quantifier: that backtracks in
# time quadratic in the run (20,000 spaces took 0.9 s), so the title is stripped in code.
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*))?$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
# MkDocs / Pandoc attribute lists after a heading: "Install { #install }".
_ATTR_LIST = re.compile(r"\{[ \t]*[#.:][^{}]*\}$")
# Lines that cannot be a setext title: list items, quotes, tables, HTML blocks.
_NOT_SETEXT_TITLE = re.compile(r"^ {0,3}(?:[-*+>|<]|\d+[.)])")


def _heading_path(stack: list[tuple[int, str]]) -> str:
    return HEADING_SEPARATOR.join(title for _, title in stack)


def _push_heading(stack: list[tuple[int, str]], level: int, title: str) -> None:
    """Close headings at `level` or deeper, then open this one."""
    while stack and stack[-1][0] >= level:
        stack.pop()
    if title:
        stack.append((level, title[:MAX_HEADING_CHARS]))


def _clean_md_heading(raw: str) -> str:
    """The title of a heading: its closing #s (after a space, or all of it) and an attribute
    list taken off, runs of spaces made one, as the heading is shown."""
    title = raw.strip()
    bare = title.rstrip("#")
    if bare != title and (not bare or bare[-1] in " \t"):
        title = bare
    return " ".join(_ATTR_LIST.sub("", title.rstrip()).split())


def _load_markdown(path: Path, data: bytes) -> Document:
    """Markdown: one section per heading (ATX and setext), code fences kept as text."""
    return markdown_document(path, normalise(decode_text(path, data)))


def markdown_document(path: Path, text: str) -> Document:
    """Markdown text (already decoded and normalised) split along its headings."""
    if (front := _FRONT_MATTER.match(text)) and _META_KEY.search(front.group("meta")):
        text = text[front.end() :].lstrip("\n")  # still normalised: no blank first line
    parts: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    body: list[str] = []
    fence: str | None = None  # the opening fence ("```" or "~~~~") while inside a code block

    def flush() -> None:
        parts.append((_heading_path(stack), _joined(body)))
        body.clear()

    for line in text.split("\n"):
        if fence is not None:
            body.append(line)
            # A fence closes with the same character, at least as long, and nothing after it.
            stripped = line.strip()
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                fence = None
            continue
        if match := _FENCE.match(line):
            fence = match.group(1)
            body.append(line)
            continue
        if match := _ATX.match(line):
            flush()
            _push_heading(stack, len(match.group(1)), _clean_md_heading(match.group(2) or ""))
            continue
        if (match := _SETEXT.match(line)) and _setext_title(body):
            title = body.pop().strip()
            flush()
            _push_heading(stack, 1 if match.group(1)[0] == "=" else 2, _clean_md_heading(title))
            continue
        body.append(line)
    flush()
    return _document(path, parts, text)


def _setext_title(body: list[str]) -> bool:
    """Whether the last body line is a one-line paragraph that an underline makes a heading."""
    if not body or not body[-1].strip() or _NOT_SETEXT_TITLE.match(body[-1]):
        return False
    if body[-1].startswith(("    ", "\t")):
        return False  # indented code
    # Only a one-line paragraph: after a multi-line one, "---" is far more often a rule.
    return len(body) == 1 or not body[-2].strip()


# ---------------------------------------------------------------------------------------------
# reStructuredText


_RST_ADORNMENT = re.compile(r"""^([!-/:-@\[-`{-~])\1{2,}[ \t]*$""")


def _load_rst(path: Path, data: bytes) -> Document:
    """reStructuredText: one section per underlined (optionally overlined) title."""
    text = normalise(decode_text(path, data))
    lines = text.split("\n")
    parts: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    styles: list[tuple[str, bool]] = []  # adornment styles in order of first use = levels
    body: list[str] = []
    i = 0
    while i < len(lines):
        title, style, used = _rst_title(lines, i)
        if title:
            parts.append((_heading_path(stack), _joined(body)))
            body.clear()
            if style not in styles:
                styles.append(style)
            _push_heading(stack, styles.index(style) + 1, title)
            i += used
            continue
        body.append(lines[i])
        i += 1
    parts.append((_heading_path(stack), _joined(body)))
    return _document(path, parts, text)


def _rst_title(lines: list[str], i: int) -> tuple[str, tuple[str, bool], int]:
    """The title starting at line i, its adornment style and how many lines it uses; or ""."""
    if i > 0 and lines[i - 1].strip():
        return "", ("", False), 0  # a title starts a block
    over = _RST_ADORNMENT.match(lines[i])
    start = i + 1 if over else i
    if start + 1 >= len(lines):
        return "", ("", False), 0
    title = lines[start].strip()
    under = _RST_ADORNMENT.match(lines[start + 1])
    if not title or _RST_ADORNMENT.match(lines[start]) or not under:
        return "", ("", False), 0
    char = under.group(1)
    if over and over.group(1) != char:
        return "", ("", False), 0
    if len(lines[start + 1].rstrip()) < len(title) and not over:
        return "", ("", False), 0
    return title, (char, bool(over)), (3 if over else 2)


# ---------------------------------------------------------------------------------------------
# HTML


# Elements whose text is never content: code, chrome, navigation, forms, hidden templates.
_SKIP = frozenset(
    "script style noscript template svg math nav header footer aside form "
    "button select datalist iframe object canvas dialog".split()
)
# Wikipedia and MediaWiki chrome that is not marked up as <nav> ("[edit]" links, navboxes).
_SKIP_CLASSES = frozenset(
    {"mw-editsection", "navbox", "noprint", "mw-jump-link", "catlinks", "mw-hidden-catlinks"}
)
_VOID = frozenset(
    "area base br col embed hr img input link meta param source track wbr keygen".split()
)
_PARAGRAPH = frozenset(
    "p pre blockquote table ul ol dl section article main figure details address "
    "h1 h2 h3 h4 h5 h6 hgroup fieldset".split()
)
_LINE = frozenset("div li tr dt dd br hr caption figcaption summary legend option".split())
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_WHITESPACE = re.compile(r"\s+")


class _HTMLText(HTMLParser):
    """Collects readable text as (heading levels, text) parts; tolerant of unclosed tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # open elements: (tag, skipped)
        # How many of each tag are open: an end tag is matched against the stack in constant
        # time. HTML lets pages leave out </li> and </p>, so the stack can hold thousands.
        self.open: Counter[str] = Counter()
        self.skipping = 0  # open elements whose text is dropped
        self.pre = 0  # open <pre> elements: whitespace is kept inside
        self.body: list[str] = []
        self.newlines = 0  # newlines at the end of body, so block breaks never stack up
        self.heading: list[str] | None = None  # text of the heading being read
        self.heading_level = 0
        self.levels: list[tuple[int, str]] = []
        self.parts: list[tuple[list[tuple[int, str]], str]] = []
        self.title: list[str] | None = None
        self.title_text = ""
        self.saw_h1 = False
        # One entry per open <table>: the builder of a data table, None for a layout table
        # (its cells flow as text), and whether a <caption> is open in it.
        self.tables: list[TableBuilder | None] = []
        self.in_caption = False

    @property
    def table(self) -> TableBuilder | None:
        """The data table being collected, if the innermost open table is one."""
        return self.tables[-1] if self.tables else None

    # Text -----------------------------------------------------------------------------------
    def _emit(self, text: str) -> None:
        if self.heading is not None:
            self.heading.append(text)
            return
        if (table := self.table) is not None:
            (table.caption.append if self.in_caption else table.text)(text)
            return
        if not self.pre:
            text = _WHITESPACE.sub(" ", text)
            last = self.body[-1][-1:] if self.body else "\n"
            if text[:1] == " " and last in ("\n", " "):
                text = text[1:]
        if text:
            self.body.append(text)
            self.newlines = len(text) - len(text.rstrip("\n"))

    def _newline(self, count: int) -> None:
        """End the line (1) or the paragraph (2), unless the text already ends so."""
        if (table := self.table) is not None:
            if table.in_cell:
                table.text(" ")  # a <br> or <p> inside a cell: the cell stays one line
            return
        if self.heading is None and self.body and self.newlines < count:
            self.body.append("\n" * (count - self.newlines))
            self.newlines = count

    def _flush(self) -> None:
        text = normalise("".join(self.body))
        if text.strip():
            self.parts.append((list(self.levels), text))
        self.body.clear()
        self.newlines = 0

    # Tags -------------------------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if not self.skipping and tag in ("br", "hr"):
                if self.heading is not None:
                    self.heading.append(" ")
                else:
                    self._newline(1)
            return
        if self.heading is not None and (tag in _HEADINGS or tag in _PARAGRAPH or tag in _LINE):
            # An unclosed heading ("<h1>Title<p>text"): the block ends it, as a browser shows.
            self._close_heading()
        if tag == "table" and not self.skipping and not (tag in _SKIP or _hidden(attrs)):
            if self.table is not None:
                self._to_flow()  # a table inside a table: the outer one is layout
            self._newline(2)
            layout = ("role", "presentation") in attrs or ("role", "none") in attrs
            self.tables.append(None if layout else TableBuilder())
        elif self.table is not None and not self.skipping:
            if tag in _HEADINGS:
                self._to_flow()  # headings inside: the table lays out a page, it holds no data
            elif tag in ("td", "th", "tr", "caption"):
                self._table_tag(tag, dict(attrs))
                self._push(tag, False)
                return
        skip = tag in _SKIP or _hidden(attrs)
        self._push(tag, skip)
        if skip:
            self.skipping += 1
        if self.skipping:
            return
        if tag == "title" and self.title is None:
            self.title = []
            self.heading = self.title  # title text is collected like a heading's
            self.heading_level = 0
        elif tag in _HEADINGS:
            self._flush()
            self.heading = []
            self.heading_level = _HEADINGS[tag]
        elif tag == "pre":
            self.pre += 1
            self._newline(2)
        elif tag in _PARAGRAPH:
            self._newline(2)
        elif tag in _LINE:
            self._newline(1)
        elif tag in ("td", "th"):
            if self.body and not self.newlines:
                self.body[-1] = self.body[-1].rstrip(" ")
                self.body.append(" | ")

    def _push(self, tag: str, skipped: bool) -> None:
        self.stack.append((tag, skipped))
        self.open[tag] += 1

    def handle_endtag(self, tag: str) -> None:
        if not self.open[tag]:
            return  # a stray end tag: browsers ignore it too
        # Pop up to the matching element: anything left open inside it ends here.
        while self.stack:
            open_tag, skipped = self.stack.pop()
            self.open[open_tag] -= 1
            if skipped:
                self.skipping -= 1
            self._ended(open_tag)
            if open_tag == tag:
                break

    def _ended(self, tag: str) -> None:
        if self.skipping:
            return
        if tag == "table" and self.tables:
            self._end_table()
            return
        if (table := self.table) is not None:
            if tag in ("td", "th"):
                table.end_cell()
                return
            if tag == "tr":
                table.end_row()
                return
            if tag == "caption":
                self.in_caption = False
                return
        if tag == "title" and self.heading is self.title:
            self._close_heading()
        elif tag in _HEADINGS and self.heading is not None:
            self._close_heading()
        elif tag == "pre" and self.pre:
            self.pre -= 1
            self._newline(2)
        elif tag in _PARAGRAPH:
            self._newline(2)
        elif tag in _LINE:
            self._newline(1)

    def _table_tag(self, tag: str, attrs: dict[str, str | None]) -> None:
        table = self.table
        assert table is not None
        if tag == "tr":
            table.start_row()
        elif tag == "caption":
            self.in_caption = True
        else:
            table.start_cell(_span(attrs.get("colspan")), _span(attrs.get("rowspan")))

    def _end_table(self) -> None:
        table = self.tables.pop()
        self.in_caption = False
        if table is not None:
            text = table.finish()
            self._newline(2)
            if text:
                self._emit_block(text)
        self._newline(2)

    def _emit_block(self, text: str) -> None:
        """Text that goes into the body as it is: whitespace and line breaks kept."""
        self.body.append(text)
        self.newlines = 0

    def _to_flow(self) -> None:
        """The innermost table turns out to be layout: what it collected becomes lines of text."""
        table = self.tables[-1]
        if table is None:
            return
        self.tables[-1] = None
        self.in_caption = False
        table.end_row()
        lines = [" ".join(table.caption)] + [c for row in table.rows for c in row]
        text = "\n".join(line.strip() for line in lines if line.strip())
        if text:
            self._newline(2)
            self._emit_block(text)
            self._newline(1)

    def _close_heading(self) -> None:
        words = _WHITESPACE.sub(" ", "".join(self.heading or [])).strip()[:MAX_HEADING_CHARS]
        if self.heading is self.title:
            self.title_text = words
        else:
            if self.heading_level == 1:
                self.saw_h1 = True
            _push_heading(self.levels, self.heading_level, words)
        self.heading = None

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self._emit(data)

    def finish(self) -> list[tuple[str, str]]:
        """(heading path, text) parts, with <title> as the top heading when there is no <h1>."""
        self.close()
        if self.heading is not None:
            self._close_heading()
        while self.tables:  # unclosed tables still hold their text
            self._end_table()
        self._flush()
        top = [self.title_text] if self.title_text and not self.saw_h1 else []
        return [
            (HEADING_SEPARATOR.join(top + [title for _, title in levels]), text)
            for levels, text in self.parts
        ]


def _span(value: str | None) -> int:
    """A colspan/rowspan attribute as a number; browsers read "2abc" as 2 and junk as 1."""
    match = re.match(r"\s*(\d+)", value or "")
    return int(match.group(1)) if match else 1


def _hidden(attrs: list[tuple[str, str | None]]) -> bool:
    """Whether an element is hidden or is navigation by its attributes."""
    for name, value in attrs:
        value = (value or "").lower()
        if name == "hidden" or (name == "aria-hidden" and value == "true"):
            return True
        if name == "role" and value in ("navigation", "search", "menubar"):
            return True
        if name == "class" and _SKIP_CLASSES.intersection(value.split()):
            return True
        if name == "style" and re.search(r"display\s*:\s*none", value):
            return True
    return False


_TITLE_OPEN = re.compile(r"<title\b[^>]*>", re.IGNORECASE)
_TITLE_CLOSE = re.compile(r"</title\s*>", re.IGNORECASE)


def _load_html(path: Path, data: bytes) -> Document:
    """HTML: readable text only, one section per heading, <title> on top when there is no <h1>."""
    declared = _META_CHARSET.search(data[:4096])
    text = decode_text(path, data, declared.group(1).decode("ascii") if declared else None)
    # Newer Pythons read <title> as raw text up to </title>; an unclosed one would swallow
    # the page, so end it at the next tag, as browsers effectively do.
    if (opened := _TITLE_OPEN.search(text)) and not _TITLE_CLOSE.search(text):
        cut = text.find("<", opened.end())
        if cut != -1:
            text = f"{text[:cut]}</title>{text[cut:]}"
    parser = _HTMLText()
    try:
        parser.feed(text)
        parts = parser.finish()
    except (AssertionError, ValueError) as exc:  # html.parser's last-resort failures
        raise UnreadableDocument(path, f"malformed HTML: {exc}") from exc
    return _document(path, parts, "")


# ---------------------------------------------------------------------------------------------
# PDF


# Typographic ligatures (common in LaTeX and browser output) would hide words from search.
_LIGATURES = str.maketrans(
    {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl"}
    | {"\ufb05": "st", "\ufb06": "st"}
)


# pdfium's text has control characters of its own: U+0002 where a word was hyphenated at a
# line end (pdfium joins the lines; "Übungsauf\x02gaben", "cross\x02origin"), U+000C between
# text objects, and stray C0 codes from broken font maps. The hyphen stays, as pypdf gives it.
_PDFIUM_TEXT = str.maketrans(
    dict.fromkeys((*range(0x01, 0x09), *range(0x0E, 0x20), 0x7F)) | {0x02: "-", 0x0C: "\n"}
)


class _PdfiumRefused(Exception):
    """pdfium could not open the file (damaged, or a kind it does not know): pypdf tries it."""


def _load_pdf(path: Path, data: bytes) -> Document:
    """PDF: one section per page that has text.

    pdfium (pypdfium2) first: about 14x faster than pypdf on the shared corpus, with text at
    least as good (maths and ligatures come out as characters). pypdf is the fallback, and
    the one that explains a file pdfium cannot open (corrupt, truncated), or reads a file in
    which pdfium finds no text at all. Both run in a worker process for PDFs, so a crash in
    pdfium's C++ costs one file, not the run.
    """
    try:
        document = _load_pdf_pdfium(path, data)
    except _PdfiumRefused:
        return _load_pdf_pypdf(path, data)
    if document is None:  # opened, but no page gave text: pypdf may still read some
        return _load_pdf_pypdf(path, data)
    return document


def _load_pdf_pdfium(path: Path, data: bytes) -> Document | None:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            # pdfium already tried the empty password, as pypdf's decrypt("") would.
            raise UnreadableDocument(path, "encrypted PDF (password required)") from exc
        raise _PdfiumRefused from exc
    try:
        count = len(pdf)
        sections = []
        textless: list[int] = []  # pages without a text layer: scans, for OCR when installed
        for number in range(1, count + 1):
            try:
                page = pdf[number - 1]
                try:
                    textpage = page.get_textpage()
                    try:
                        raw = textpage.get_text_bounded()
                    finally:
                        textpage.close()
                finally:
                    page.close()
            except pdfium.PdfiumError:  # one broken page should not cost the others
                continue
            raw = raw.encode("utf-8", errors="replace").decode("utf-8")
            text = normalise(raw.translate(_PDFIUM_TEXT).translate(_LIGATURES))
            if text.strip():
                sections.append(Section(text, page=number))
            else:
                textless.append(number)
    finally:
        pdf.close()
    if not sections:
        return None  # pypdf may still read some; it also runs OCR on a fully scanned file
    # A document with a text layer and some scanned pages: those pages by OCR too.
    return Document(path, tuple(_with_ocr(sections, data, textless)), pages=count)


def _with_ocr(sections: list[Section], data: bytes, textless: Sequence[int]) -> list[Section]:
    """`sections` and, with the OCR extra, the text read from the pages that had none."""
    from ragged.ingest import ocr

    if not textless or not ocr.available():
        return sections
    found = {n: ocr.page_text(image) for n, image in _rendered_pages(data, textless)}
    sections = sections + [Section(normalise(t), page=n) for n, t in found.items() if t]
    return sorted(sections, key=lambda s: s.page or 0)


def _rendered_pages(data: bytes, numbers: Sequence[int]) -> Iterator[tuple[int, Any]]:
    """(page number, greyscale PIL image) of the given 1-based pages, as a viewer shows them
    (strips, masks, rotation, JBIG2 scans); pages that cannot be rendered are left out."""
    import pypdfium2 as pdfium

    from ragged.ingest.ocr import DPI, MAX_SIDE_PX

    try:
        pdf = pdfium.PdfDocument(data)
    except Exception:  # read already by one engine; if pdfium cannot, there is nothing more
        return
    try:
        for number in numbers:
            if not 1 <= number <= len(pdf):
                continue
            try:
                page = pdf[number - 1]
                width, height = page.get_size()
                scale = min(DPI / 72, MAX_SIDE_PX / max(width, height, 1))
                image = page.render(scale=scale, grayscale=True).to_pil()
            except Exception:  # one bad page must not cost the others
                continue
            yield number, image
    finally:
        pdf.close()


def _load_pdf_pypdf(path: Path, data: bytes) -> Document:
    import pypdf
    from pypdf.errors import DependencyError

    # pypdf logs a warning for every quirk it repairs; users can do nothing about them.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument(path, "encrypted PDF (password required)")
        pages = reader.pages
        count = len(pages)
    except UnreadableDocument:
        raise
    except DependencyError as exc:
        # Only without pypdf's `crypto` extra (a broken install): AES needs `cryptography`
        # before pypdf can even try the empty password.
        raise UnreadableDocument(
            path, "encrypted PDF (AES; opening it needs the 'cryptography' package)"
        ) from exc
    except Exception as exc:  # pypdf raises many types (PdfReadError, KeyError, ...)
        raise UnreadableDocument(path, f"corrupt or truncated PDF: {_short(exc)}") from exc

    sections = []
    textless: list[int] = []  # pages without a text layer: scans, for OCR when installed
    failure: Exception | None = None
    for number in range(1, count + 1):
        try:
            raw = pages[number - 1].extract_text()
        except Exception as exc:  # one broken page should not cost the others
            failure = failure or exc
            continue
        # Lone surrogates from broken font maps would break UTF-8 storage later.
        raw = raw.encode("utf-8", errors="replace").decode("utf-8")
        text = normalise(raw.translate(_LIGATURES))
        if text.strip():
            sections.append(Section(text, page=number))
        else:
            textless.append(number)
    from ragged.ingest import ocr

    # Only pages with no text at all: a page with a text layer is never rendered.
    ocr_ran = bool(textless) and ocr.available()
    sections = _with_ocr(sections, data, textless)
    if not sections:
        if failure is not None:
            raise UnreadableDocument(
                path, f"corrupt or truncated PDF: {_short(failure)}"
            ) from failure
        if ocr_ran:
            raise UnreadableDocument(path, f"{NO_TEXT} (no text layer, and OCR found no text)")
        raise UnreadableDocument(
            path,
            f"{NO_TEXT} (scanned PDF without a text layer? `{ocr.INSTALL_HINT}` adds OCR)",
        )
    return Document(path, tuple(sections), pages=count)


def _short(exc: BaseException) -> str:
    """A one-line reason from an exception: its message, else its type."""
    message = str(exc).strip().split("\n", 1)[0]
    if len(message) > 120:
        message = message[:117] + "..."
    return message or type(exc).__name__


# Formats in their own modules, imported on first use (python-docx/pptx cost ~0.2 s).


def _load_docx(path: Path, data: bytes) -> Document:
    from ragged.ingest.office import load_docx

    return load_docx(path, data)


def _load_pptx(path: Path, data: bytes) -> Document:
    from ragged.ingest.office import load_pptx

    return load_pptx(path, data)


def _load_notebook(path: Path, data: bytes) -> Document:
    """Jupyter notebook: its cells as Markdown, then split along the markdown headings."""
    from ragged.ingest.notebook import notebook_markdown

    return markdown_document(path, normalise(notebook_markdown(path, data)))


def _load_image(path: Path, data: bytes) -> Document:
    """A .png/.jpg: its text by OCR (the `ragged[ocr]` extra)."""
    from ragged.ingest import ocr

    if not ocr.available():
        raise UnreadableDocument(path, f"reading text in images needs OCR: `{ocr.INSTALL_HINT}`")
    text = normalise(ocr.load_image(path, data))
    if not text.strip():
        raise UnreadableDocument(path, f"{NO_TEXT} (OCR found no text in the image)")
    return Document(path, (Section(text),))


LOADERS: dict[str, Callable[[Path, bytes], Document]] = {
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".txt": _load_text,
    ".rst": _load_rst,
    ".html": _load_html,
    ".htm": _load_html,
    ".pdf": _load_pdf,
    ".docx": _load_docx,
    ".pptx": _load_pptx,
    ".ipynb": _load_notebook,
}
# Read with the `ragged[ocr]` extra only; without it a folder's images are passed over
# like any other file ragged cannot read.
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg"})
for _suffix in IMAGE_SUFFIXES:
    LOADERS[_suffix] = _load_image
# Every suffix ragged can read, the images included: `--help` and the README list these.
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(LOADERS)
# CPU-bound formats, parsed in worker processes: pypdf is pure Python, OCR takes seconds.
HEAVY_SUFFIXES: tuple[str, ...] = (".pdf", *sorted(IMAGE_SUFFIXES))
# Zip archives (Word, PowerPoint): their size on disk says little of what parsing them costs
# (python-docx reads every part whole, then builds its XML tree), so the size limit applies
# to what they unpack to (office.unpacked_size).
ZIP_SUFFIXES: tuple[str, ...] = (".docx", ".pptx")


def readable_suffixes() -> frozenset[str]:
    """The suffixes this installation reads: images only when OCR is installed."""
    from ragged.ingest import ocr

    return SUPPORTED_SUFFIXES if ocr.available() else SUPPORTED_SUFFIXES - IMAGE_SUFFIXES


def describe_suffixes() -> str:
    """The supported suffixes for help texts, e.g. ".docx .htm … (.jpeg .jpg .png with OCR)"."""
    plain = " ".join(sorted(SUPPORTED_SUFFIXES - IMAGE_SUFFIXES))
    return f"{plain}; with ragged[ocr] also {' '.join(sorted(IMAGE_SUFFIXES))}"
