"""chunk(document) → token-bounded Chunks, cut at natural breaks."""

from __future__ import annotations

import functools
import operator
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate

from ragged.ingest.loaders import HEADING_SEPARATOR, Document, Section
from ragged.ingest.tables import ROW, SEPARATOR
from ragged.tokens import count_tokens, encoding

DEFAULT_MAX_TOKENS = 512
DEFAULT_OVERLAP = 64
# A paragraph, sentence or line break is taken only if the chunk keeps at least this share of
# its window; otherwise the last word break is better than a half-empty chunk.
MIN_FILL = 0.5
# Long texts are encoded in blocks of this many characters (see _encode).
BLOCK_CHARS = 1 << 16
SECTION_SEPARATOR = "\n\n"  # between small sections merged into one chunk; one cl100k token
SUBHEADING_SEPARATOR = "\n"  # between the headings of a shared chunk's later sections

_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s)|[。！？]")
_WHITESPACE = re.compile(r"\s")
_CONTINUATION_BYTES = bytes(range(0x80, 0xC0))


@dataclass(frozen=True)
class Chunk:
    text: str
    index: int  # 0-based position within the document
    tokens: int
    page: int | None = None
    heading: str = ""
    # The own heading levels of the later sections that share this chunk, one a line ("A > B"
    # then "A > C > D": "C > D"), indexed for keyword search; not shown, cited or embedded.
    subheadings: str = ""


def chunk(
    document: Document, max_tokens: int = DEFAULT_MAX_TOKENS, overlap: int = DEFAULT_OVERLAP
) -> list[Chunk]:
    """Split a document into chunks of at most `max_tokens`, `overlap` tokens shared in a section.

    Small neighbouring sections on the same page share a chunk: it takes the first one's
    heading, and the later ones' headings go in its `subheadings`. Chunk text is the
    document's text only: callers add the headings if they want them.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
    if not 0 <= overlap < max_tokens:
        raise ValueError(
            f"overlap must be from 0 to max_tokens - 1 ({max_tokens - 1}), not {overlap}"
        )
    chunks: list[Chunk] = []
    for first, later, text, encoded, count in _groups(document.sections, max_tokens):
        if count is not None and count <= max_tokens:
            pieces = [(text, count)]  # sections merged into one chunk, counted exactly
        else:
            pieces = split_text(text, max_tokens, overlap, encoded)
        for piece, tokens in pieces:
            # A run is split only when the estimate in _groups fell short by a token or
            # two; then each piece takes the headings of the sections that start in it.
            labels = [h for h, start in later if len(pieces) == 1 or start in piece]
            chunks.append(
                Chunk(
                    piece,
                    len(chunks),
                    tokens,
                    first.page,
                    first.heading,
                    SUBHEADING_SEPARATOR.join(labels),
                )
            )
    return chunks


def _groups(
    sections: Sequence[Section], max_tokens: int
) -> Iterator[tuple[Section, list[tuple[str, str]], str, list[int] | None, int | None]]:
    """Runs of sections on one page that fit in one chunk together: each with its first
    section, and (own heading levels, first line) of each later section whose heading adds any.

    A run of one section comes with its tokens, so that split_text need not encode it again
    (encoding was a third of ingest's own CPU time on the shared docs, done twice); a run of
    several with the exact token count of their joined text instead, from their own counts
    (`_joined_count`), or None where that cannot be worked out without encoding it.
    The later headings are not counted against the window: they are not part of the text,
    so which sections share a chunk, and so every chunk's text and id, stays as it was.
    """
    first: Section | None = None
    last = ""  # the heading of the run's last section
    later: list[tuple[str, str]] = []
    texts: list[str] = []
    counts: list[int] = []
    encoded: list[int] | None = None
    used = 0

    def run() -> tuple[str, list[int] | None, int | None]:
        if len(texts) == 1:
            return texts[0], encoded, None
        return SECTION_SEPARATOR.join(texts), None, _joined_count(texts, counts)

    for section in sections:
        text = section.text.strip()
        if not text:
            continue
        tokens = _encode(text)
        # +1 for the separator; an estimate only, since split_text checks the merged text.
        if (
            first is not None
            and section.page == first.page
            and used + 1 + len(tokens) <= max_tokens
        ):
            label = _new_levels(last, section.heading)
            if label and label not in (h for h, _ in later):
                later.append((label, text.split("\n", 1)[0]))
            texts.append(text)
            counts.append(len(tokens))
            used += 1 + len(tokens)
            last = section.heading
            continue
        if first is not None:
            yield first, later, *run()
        first, later, texts, counts = section, [], [text], [len(tokens)]
        used, encoded = len(tokens), tokens
        last = section.heading
    if first is not None:
        yield first, later, *run()


# Printable ASCII that is neither a letter, a digit nor a space: what cl100k's pattern calls
# [^\s\p{L}\p{N}] there. Outside ASCII, Unicode's classes are left to the encoder.
_SYMBOLS = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
# "\n\n" between a letter or digit and the next text: one pre-token, one token.
_SEPARATOR_TOKENS = 1


def _joined_count(texts: Sequence[str], counts: Sequence[int]) -> int | None:
    r"""len(encode(SECTION_SEPARATOR.join(texts))), from each text's own token count.

    cl100k's pre-tokenizer cuts the joined text where it cuts each part, with one exception:
    a part that ends in symbols (`.`, `:`, a code fence) gives them a pre-token that takes the
    newlines after it (` ?[^\s\p{L}\p{N}]++[\r\n]*+`), so that pre-token is counted again
    with the separator. Every part is stripped and starts the same way wherever it stands.
    None where a part ends in something outside printable ASCII (Unicode classes), so that
    the caller encodes the joined text instead. tests/test_chunking.py checks this against
    the encoder on the shared corpus and on random text.
    """
    total = sum(counts) + _SEPARATOR_TOKENS * (len(texts) - 1)
    for text in texts[:-1]:
        end = len(text)
        while end > 0 and text[end - 1] in _SYMBOLS:
            end -= 1
        if end == len(text):
            last = text[-1]
            if not (last.isascii() and last.isalnum()):
                return None
            continue
        if end > 0 and text[end - 1] == " ":
            end -= 1
        elif end > 0 and not (text[end - 1].isascii() and text[end - 1] in _PLAIN_BEFORE):
            return None
        total += _symbols_with_separator(text[end:])
    return total


# What may stand before a run of trailing symbols for the run to start a pre-token of its own:
# letters, digits, tab and line breaks (a space joins the run: see _joined_count).
_PLAIN_BEFORE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\t\n\r")


@functools.lru_cache(maxsize=1024)
def _symbols_with_separator(symbols: str) -> int:
    """Tokens the pre-token `symbols` + separator costs beyond `symbols` and a separator alone."""
    enc = encoding()
    return (
        len(enc.encode_ordinary(symbols + SECTION_SEPARATOR))
        - len(enc.encode_ordinary(symbols))
        - _SEPARATOR_TOKENS
    )


def _new_levels(before: str, heading: str) -> str:
    """The levels of `heading` below what it shares with `before`, e.g. ("A > B", "A > C > D")
    -> "C > D"; "" when it adds none (the same section continued after a table, say)."""
    if heading == before:
        return ""
    old, new = before.split(HEADING_SEPARATOR), heading.split(HEADING_SEPARATOR)
    shared = 0
    while shared < min(len(old), len(new)) and old[shared] == new[shared]:
        shared += 1
    return HEADING_SEPARATOR.join(new[shared:]).strip()


def split_text(
    text: str, max_tokens: int, overlap: int, encoded: list[int] | None = None
) -> list[tuple[str, int]]:
    """(piece, tokens) pairs covering `text`, each at most `max_tokens`, cut at natural breaks.

    The text is encoded once and the windows are measured in tokens of that encoding; each
    cut is then moved back to the best break before it (paragraph, sentence, line, word) and
    the piece is counted again, since a substring can encode to a token or two more.

    Worked example, max_tokens=512 and overlap=64, a 1,200-token section:
    - chunk 1 may use tokens 0..511; its end moves back to the last sentence end, say token 498.
    - chunk 2 starts 64 tokens before that end, at 434, moved forward to the next word start;
      it may use 434..945 and ends, say, at 930.
    - chunk 3 starts near 930 - 64 = 866 and takes the remaining 334 tokens.
    Each step advances about max_tokens - overlap = 448 tokens, so T tokens give about
    ceil((T - overlap) / (max_tokens - overlap)) chunks: (1200 - 64) / 448 = 2.5, so 3.

    Markdown tables are cut between rows only (unless one row alone outgrows the window),
    and a piece that starts inside a table begins with the table's header and separator
    lines again, so every piece of a table says what its columns are.
    `encoded` is `_encode(text)` when the caller has it already.
    """
    tokens = _encode(text) if encoded is None else encoded
    n = len(tokens)
    if n <= max_tokens:
        stripped = text.strip()
        # n is exact only for unstripped text encoded in one block (see _encode).
        exact = stripped == text and len(text) <= BLOCK_CHARS
        count = n if exact else count_tokens(stripped)
        if count <= max_tokens:
            return [(stripped, count)] if stripped else []
    starts = _token_starts(tokens)
    tables = _Tables(text)
    pieces: list[tuple[str, int]] = []
    a = 0  # character offset where the current piece starts
    while a < len(text):
        ta = bisect_right(starts, a) - 1  # the token that contains offset a
        # The nearest offset after a where a token starts: the shortest piece possible.
        shortest = starts[bisect_right(starts, a)]
        header, header_tokens = tables.header_for(a)
        if header_tokens > max_tokens // 2:
            header, header_tokens = "", 0  # a header that big would crowd out the rows
        budget = max_tokens - header_tokens
        while True:
            tb = ta + budget
            if tb >= n:
                b = len(text)
            else:
                limit = max(starts[tb], shortest)
                b = tables.cut(a, _break_before(text, a, limit), limit)
            piece = text[a:b].strip()
            if header:
                piece = f"{header}\n{piece}"
            count = count_tokens(piece)
            if count <= max_tokens or b <= shortest:
                # (b <= shortest: one character worth more tokens than max_tokens, only
                # possible with a tiny max_tokens; emitting it beats looping forever.)
                break
            budget = max(1, budget - (count - max_tokens))
        if piece:
            pieces.append((piece, count))
        if b >= len(text):
            break
        a = tables.row_start(_overlap_start(text, starts, ta, a, b, overlap), a, b)
    return pieces


class _Tables:
    """Where the Markdown tables of a text are, so cuts can keep to row boundaries."""

    def __init__(self, text: str) -> None:
        self.text = text
        # (start, end of the header + separator lines or start, end) of each table
        self.spans: list[tuple[int, int, int]] = []
        # Table start -> tokens of its header and the line break after it, counted once: a
        # header is repeated at every piece of its table, and one of 16,000 columns counted
        # again for each of hundreds of pieces took seconds (quadratic in the table's width).
        self._header_tokens: dict[int, int] = {}
        if "|" not in text:
            return
        offset = 0
        run: list[tuple[int, int]] = []  # (start, end) of consecutive row lines
        for line in text.split("\n"):
            end = offset + len(line)
            if ROW.match(line):
                run.append((offset, end))
            else:
                self._close(run)
                run = []
            offset = end + 1
        self._close(run)
        self.starts = [start for start, _, _ in self.spans]

    def _close(self, run: list[tuple[int, int]]) -> None:
        if len(run) < 2:
            return
        has_header = bool(SEPARATOR.match(self.text[run[1][0] : run[1][1]]))
        self.spans.append((run[0][0], run[1][1] if has_header else run[0][0], run[-1][1]))

    def _table_at(self, pos: int) -> tuple[int, int, int] | None:
        if not self.spans:
            return None
        i = bisect_right(self.starts, pos) - 1
        if i >= 0 and pos <= self.spans[i][2]:
            return self.spans[i]
        return None

    def _row_bounds(self, pos: int) -> tuple[int, int] | None:
        """The row line that `pos` lies strictly inside, if any."""
        if self._table_at(pos) is None:
            return None
        start = self.text.rfind("\n", 0, pos) + 1
        end = self.text.find("\n", pos)
        end = len(self.text) if end == -1 else end
        return (start, end) if start < pos < end else None

    def cut(self, a: int, b: int, limit: int) -> int:
        """A cut at b (of a piece from a that may reach `limit`) moved off a row's inside.

        To the end of that row if it fits, else back to its start; a table's header and
        separator are never parted from its first row. One row longer than the whole
        window is cut where it must be.
        """
        table = self._table_at(b)
        if table is not None and table[0] < b <= table[1] + 1 and table[0] > a:
            return table[0]  # inside the header lines, or right after them: before the table
        row = self._row_bounds(b)
        if row is None:
            return b
        if row[1] <= limit:
            return row[1]
        if row[0] > a:
            return row[0]
        return b

    def row_start(self, c: int, a: int, b: int) -> int:
        """Where a piece starting near c starts so that it opens with a whole row."""
        row = self._row_bounds(c)
        if row is None:
            return c
        if row[1] + 1 < b:
            return row[1] + 1  # the next row: a little less overlap
        if row[0] > a:
            return row[0]  # this row whole: a little more overlap
        return b

    def header_for(self, a: int) -> tuple[str, int]:
        """The header and separator lines to repeat for a piece starting at a, if inside a
        table body, and their tokens with the line break that follows; ("", 0) if not."""
        table = self._table_at(a)
        if table is None or table[1] == table[0] or a <= table[1]:
            return "", 0
        header = self.text[table[0] : table[1]]
        if table[0] not in self._header_tokens:
            self._header_tokens[table[0]] = count_tokens(header) + 1
        return header, self._header_tokens[table[0]]


def _encode(text: str) -> list[int]:
    """The tokens of `text`, encoded in blocks of at most BLOCK_CHARS that end at a space.

    tiktoken's merge step is superlinear in the length of a run without spaces ("a" * 5 MB
    takes seconds in one call); blocks bound that. A block join may tokenize slightly
    differently from the whole text, which is harmless here: every piece is counted again.
    """
    enc = encoding()
    if len(text) <= BLOCK_CHARS:
        return enc.encode_ordinary(text)
    tokens: list[int] = []
    start = 0
    while start < len(text):
        end = min(start + BLOCK_CHARS, len(text))
        if end < len(text) and (space := _last_space(text, start + BLOCK_CHARS // 2, end)) > 0:
            end = space
        tokens += enc.encode_ordinary(text[start:end])
        start = end
    return tokens


def _token_starts(tokens: list[int]) -> list[int]:
    """Character offset where each token starts, plus the text's length at the end.

    Same result as tiktoken's decode_with_offsets, from two lookup tables instead of a Python
    loop over every byte (5 MB of text: about 0.1 s instead of 0.8 s).
    """
    ends = list(accumulate(map(_CHARS.__getitem__, tokens), initial=0))
    # A token that begins with a UTF-8 continuation byte starts inside the previous character.
    return [*map(operator.sub, ends, map(_INSIDE.__getitem__, tokens)), ends[-1]]


class _PerToken(dict[int, int]):
    """A fact about each token id, worked out the first time the id is seen.

    Filled as text is read rather than for all 100k ids up front (0.1 s of CPU, which an
    ingest paid before its first embedding request). Threads may fill it at once: both
    compute the same value, and a dict assignment is atomic.
    """

    def __init__(self, fact: Callable[[bytes], int]) -> None:
        super().__init__()
        self.fact = fact

    def __missing__(self, token: int) -> int:
        value = self.fact(encoding().decode_single_token_bytes(token))
        self[token] = value
        return value


# Characters a token starts (its bytes that do not continue a character), and 1 if its first
# byte continues the previous token's character.
_CHARS = _PerToken(lambda raw: len(raw.translate(None, _CONTINUATION_BYTES)))
_INSIDE = _PerToken(lambda raw: 1 if raw and 0x80 <= raw[0] < 0xC0 else 0)


def _break_before(text: str, a: int, limit: int) -> int:
    """The best place in (a, limit] to end a piece that starts at a; `limit` if none."""
    floor = a + int((limit - a) * MIN_FILL)
    # A break at `limit` itself counts: the window may end just before "\n\n" or " word".
    if (p := text.rfind("\n\n", floor, limit + 2)) > floor:
        return min(p, limit)
    # endpos limit + 1 lets the lookahead see the space right after the window.
    ends = [m.end() for m in _SENTENCE_END.finditer(text, floor, limit + 1) if m.end() <= limit]
    if ends and ends[-1] > floor:
        return ends[-1]
    if (p := text.rfind("\n", floor, limit + 1)) > floor:
        return p
    if limit < len(text) and (text[limit].isspace() or text[limit - 1].isspace()):
        return limit
    if (p := _last_space(text, a, limit)) > a:
        return p
    return limit  # one "word" longer than the window (a base64 blob): cut between tokens


def _overlap_start(text: str, starts: list[int], ta: int, a: int, b: int, overlap: int) -> int:
    """Where the piece after text[a:b] starts: about `overlap` tokens before b, at a word start."""
    if overlap == 0:
        return b
    back = max(bisect_left(starts, b) - overlap, ta + 1)
    c = starts[back]
    if c >= b:
        return b
    if c > 0 and not text[c - 1].isspace() and not text[c].isspace():
        # Mid-word: forward to the next space (a little less overlap), else back to this
        # word's start (a little more); a piece without any space (a blob) stays cut by token.
        if (space := _WHITESPACE.search(text, c, b)) is not None:
            c = space.start()
        elif (p := _last_space(text, a + 1, c)) > a:
            c = p
    return c if c > a else b


def _last_space(text: str, start: int, end: int) -> int:
    """Offset of the last space, tab or newline in text[start:end], else -1."""
    return max(
        text.rfind(" ", start, end), text.rfind("\n", start, end), text.rfind("\t", start, end)
    )
