"""Large text files read and chunked a block at a time, so memory does not grow with the file.

A 200 MB text file read whole becomes the bytes, the decoded text, its normalised copies, a
token list of ~50 million entries and every chunk at once: gigabytes. Here a file over
STREAM_BYTES in a plain-text format is hashed in blocks, then decoded incrementally and cut
into segments of about SEGMENT_CHARS at paragraph breaks; each segment goes through the
format's own loader and the chunker, and its chunks are handed on before the next is read.

What a segment boundary costs: no chunk spans two segments (they meet at a blank line, where
the chunker would usually cut anyway), and a Markdown code fence or front matter that spans
one is read as text on its far side. The heading in force at the end of a segment carries
over to the next, so every chunk keeps its heading path.
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ragged.errors import UnreadableDocument
from ragged.ingest.loaders import (
    HEADING_SEPARATOR,
    LOADERS,
    NO_TEXT,
    Document,
    Section,
    open_regular,
    sniff_encoding,
)

if TYPE_CHECKING:
    from ragged.ingest.chunking import Chunk

# Above this size a text file is streamed. Under it the whole-file path costs at most a few
# hundred MB and keeps every cross-paragraph nicety.
STREAM_BYTES = 16 * 1024 * 1024
BLOCK_BYTES = 1024 * 1024  # read at a time
SEGMENT_CHARS = 1024 * 1024  # text loaded and chunked at a time (~250k tokens)
# A segment with no blank line in this many characters is cut at a line break, then at a
# space, then anywhere: a 200 MB file on one line still streams.
MAX_SEGMENT_CHARS = 4 * SEGMENT_CHARS
STREAMED_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst"})
_MARKDOWN = frozenset({".md", ".markdown"})


def streamed(path: Path, size: int) -> bool:
    """Whether this file is read by blocks rather than whole."""
    return size > STREAM_BYTES and path.suffix.lower() in STREAMED_SUFFIXES


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes, read a block at a time (the same as hashing them whole)."""
    digest = hashlib.sha256()
    with open_regular(path) as fh:
        while block := fh.read(BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def stream_chunks(
    path: Path, max_tokens: int, overlap: int, on_read: Callable[[int], None] | None = None
) -> Iterator[list[Chunk]]:
    """The file's chunks, a segment's worth at a time, numbered across the whole file.

    `on_read(n)` hears how many bytes have been read so far (for a progress display: a file
    of hundreds of MB is most of a run). Raises UnreadableDocument before the first batch
    when the file is empty, binary or has no text; OSError as reading does.
    """
    from ragged.ingest.chunking import chunk

    loader = LOADERS[path.suffix.lower()]
    markdown = path.suffix.lower() in _MARKDOWN
    count = 0
    heading = ""
    for text in _segments(path, on_read or (lambda _: None)):
        if markdown and heading:
            # Re-open the heading path, so that the loader nests what follows under it.
            levels = heading.split(HEADING_SEPARATOR)
            text = "".join(f"{'#' * (i + 1)} {t}\n" for i, t in enumerate(levels)) + "\n" + text
        try:
            document = loader(path, text.encode("utf-8"))
        except UnreadableDocument as exc:
            if exc.reason == NO_TEXT:
                continue  # a stretch of blank lines or markup only
            raise
        if heading and not markdown:
            document = _inherit(document, heading)
        pieces = chunk(document, max_tokens, overlap)
        if document.sections:
            heading = document.sections[-1].heading
        if not pieces:
            continue
        yield [replace(piece, index=count + i) for i, piece in enumerate(pieces)]
        count += len(pieces)
    if count == 0:
        raise UnreadableDocument(path, NO_TEXT)


def _inherit(document: Document, heading: str) -> Document:
    """Sections before the segment's first heading are under the previous segment's last."""
    sections = []
    inherited = True
    for section in document.sections:
        if section.heading:
            inherited = False
        sections.append(Section(section.text, section.page, heading) if inherited else section)
    return Document(document.path, tuple(sections), document.pages)


def _segments(path: Path, on_read: Callable[[int], None]) -> Iterator[str]:
    """The file's text in pieces of about SEGMENT_CHARS that end at a paragraph break."""
    with open_regular(path) as fh:
        first = fh.read(BLOCK_BYTES)
        if not first:
            raise UnreadableDocument(path, "empty file")
        decoder = codecs.getincrementaldecoder(sniff_encoding(path, first))(errors="replace")
        carry = decoder.decode(first)
        done = len(first)
        while True:
            on_read(done)
            block = fh.read(BLOCK_BYTES)
            done += len(block)
            # Windows line ends would hide every blank line from _cut; a "\r" left at the end
            # meets its "\n" in the next round.
            carry = (carry + decoder.decode(block, final=not block)).replace("\r\n", "\n")
            while (cut := _cut(carry)) is not None:
                yield carry[:cut]
                carry = carry[cut:]
            if not block:
                break
        if carry:
            yield carry


def _cut(text: str) -> int | None:
    """Where to end the next segment, or None to read on first.

    The last blank line in the second half of SEGMENT_CHARS, else the first one after it; a
    paragraph longer than MAX_SEGMENT_CHARS is cut at a line break, a space, or anywhere.
    """
    if len(text) < SEGMENT_CHARS:
        return None
    at = text.rfind("\n\n", SEGMENT_CHARS // 2, SEGMENT_CHARS)
    if at < 0:
        at = text.find("\n\n", SEGMENT_CHARS, MAX_SEGMENT_CHARS)
    if at >= 0:
        return at + 2
    if len(text) < MAX_SEGMENT_CHARS:
        return None
    for mark in ("\n", " "):
        at = text.rfind(mark, SEGMENT_CHARS // 2, MAX_SEGMENT_CHARS)
        if at >= 0:
            return at + 1
    return MAX_SEGMENT_CHARS
