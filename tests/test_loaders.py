"""load(): every supported format into sections, and every bad file into UnreadableDocument."""

from __future__ import annotations

import io
import logging
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ragged.errors import UnreadableDocument
from ragged.ingest.loaders import (
    LOADERS,
    SUPPORTED_SUFFIXES,
    Document,
    Section,
    load,
    normalise,
)
from tests.pdfgen import REPORT_PAGES, REPORT_PDF, pdf_bytes, write_pdf

DOCS = Path(__file__).parent / "data" / "docs"
# CI clones the repository beside shared/, so the benchmark corpus is two levels up.
BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"
CORPUS = BENCH / "corpus"
needs_bench = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"{CORPUS} is absent")


def headings(document: Document) -> list[str]:
    return [s.heading for s in document.sections]


def text_of(document: Document) -> str:
    return "\n".join(s.text for s in document.sections)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def reason(path: Path, data: bytes | None = None) -> str:
    with pytest.raises(UnreadableDocument) as info:
        load(path, data)
    assert str(path) in str(info.value)
    return info.value.reason


# --- dispatch and reading ------------------------------------------------------------------


def test_supported_suffixes() -> None:
    assert {
        *(".md", ".markdown", ".txt", ".rst", ".pdf", ".html", ".htm"),
        *(".docx", ".pptx", ".ipynb", ".png", ".jpg", ".jpeg"),
    } == SUPPORTED_SUFFIXES
    assert set(LOADERS) == SUPPORTED_SUFFIXES


def test_suffix_is_case_insensitive(tmp_path: Path) -> None:
    doc = load(write(tmp_path, "NOTES.TXT", "Upper-case suffixes load too."))
    assert doc.sections == (Section("Upper-case suffixes load too."),)


def test_given_bytes_are_used_instead_of_reading(tmp_path: Path) -> None:
    doc = load(tmp_path / "never-written.md", b"# Title\n\nFrom memory.")
    assert doc.sections == (Section("From memory.", heading="Title"),)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("missing.md", "file not found"), ("image.gif", "unsupported file type '.gif'")],
)
def test_unreadable_paths(tmp_path: Path, name: str, expected: str) -> None:
    assert reason(tmp_path / name) == expected


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "folder.md").mkdir()
    assert reason(tmp_path / "folder.md") == "is a directory, not a file"


def test_heavy_libraries_are_imported_only_when_used() -> None:
    code = (
        "import sys, ragged.ingest.loaders, ragged.ingest.chunking; "
        "print(sorted({'pypdf', 'tiktoken', 'charset_normalizer', 'docx', 'pptx', 'rapidocr', "
        "'pypdfium2', 'PIL'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- decoding and normalising --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (b" \n\t\r\n  \n", "no extractable text"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40, "binary content, not text"),
        (b"\x00\x01\x02\x03 text \x04\x05\x06\x07\x00" * 50, "binary content, not text"),
        (b"\xff\xfe" + bytes(range(256)) * 40, "binary content, not text"),
    ],
    ids=["empty", "whitespace", "png", "control-bytes", "utf16-bom-then-binary"],
)
@pytest.mark.parametrize("suffix", [".md", ".txt", ".rst", ".html"])
def test_text_files_that_hold_no_text(
    tmp_path: Path, content: bytes, expected: str, suffix: str
) -> None:
    assert reason(write(tmp_path, f"bad{suffix}", content)) == expected


def test_normalises_newlines_spaces_blank_lines_and_nuls(tmp_path: Path) -> None:
    raw = b"\r\n\r\nFirst line   \r\nsecond\x00 line\t\r\n\r\n\r\n\r\n\rThird paragraph\r\n\r\n"
    doc = load(write(tmp_path, "messy.txt", raw))
    assert doc.sections == (Section("First line\nsecond line\n\nThird paragraph"),)


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    doc = load(write(tmp_path, "bom.md", "\ufeff# Überschrift\n\nInhalt.".encode()))
    assert doc.sections == (Section("Inhalt.", heading="Überschrift"),)


def test_utf16_with_bom(tmp_path: Path) -> None:
    doc = load(write(tmp_path, "wide.txt", "Ünïcödé in UTF-16.".encode("utf-16")))
    assert text_of(doc) == "Ünïcödé in UTF-16."


def test_legacy_encoding_is_detected(tmp_path: Path) -> None:
    text = "Le café de la gare sert une crème brûlée très appréciée des voyageurs.\n" * 5
    doc = load(write(tmp_path, "latin1.txt", text.encode("latin-1")))
    assert "crème brûlée très appréciée" in text_of(doc)


def test_mostly_utf8_keeps_utf8_and_marks_broken_bytes(tmp_path: Path) -> None:
    data = "Ein schönes Märchen über Bäume. ".encode() * 3 + b"\xff\xfe broken\n"
    doc = load(write(tmp_path, "mixed.txt", data))
    assert "schönes Märchen über Bäume" in text_of(doc)
    assert "\ufffd" in text_of(doc)


def test_a_stray_nul_is_not_binary(tmp_path: Path) -> None:
    doc = load(write(tmp_path, "nul.txt", b"A paragraph with one stray\x00 NUL byte in it."))
    assert text_of(doc) == "A paragraph with one stray NUL byte in it."


# --- plain text ----------------------------------------------------------------------------


def test_txt_is_one_section() -> None:
    doc = load(DOCS / "notes.txt")
    assert len(doc.sections) == 1 and doc.pages is None
    assert doc.sections[0].heading == "" and doc.sections[0].page is None
    assert "The capybara is the largest living rodent." in doc.sections[0].text


# --- markdown ------------------------------------------------------------------------------


def test_markdown_sections_follow_nested_headings() -> None:
    doc = load(DOCS / "guide" / "install.md")
    assert headings(doc) == [
        "Installing Foxtrot",
        "Installing Foxtrot > On macOS",
        "Installing Foxtrot > On Linux",
        "Installing Foxtrot > Configuration",
    ]
    assert "port 7341" in doc.sections[1].text


def test_markdown_code_fences_keep_hash_lines_as_text() -> None:
    linux = load(DOCS / "guide" / "install.md").sections[2]
    assert "```sh\n# not a heading: a comment inside a code block\nfoxtrotd --version\n```" in (
        linux.text
    )


def test_markdown_heading_path_pops_back_to_the_right_level(tmp_path: Path) -> None:
    md = "Intro text.\n\n# A\n\na\n\n## B\n\nb\n\n### C\n\nc\n\n## D ##\n\nd\n\n# E\n\ne\n"
    doc = load(write(tmp_path, "levels.md", md))
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("", "Intro text."),
        ("A", "a"),
        ("A > B", "b"),
        ("A > B > C", "c"),
        ("A > D", "d"),
        ("E", "e"),
    ]


def test_markdown_front_matter_setext_tilde_fences_and_anchors(tmp_path: Path) -> None:
    md = (
        "---\ntitle: Guide\ntags: [a, b]\n---\n"
        "Top Title\n=========\n\nOpening words.\n\n"
        "Sub Title { #sub-anchor }\n---------\n\nDetails here.\n\n"
        "~~~~python\n# still code\n```\nnot closed by backticks\n~~~~\n\n"
        "#hashtag is not a heading\n\n"
        "    # indented code, not a heading\n"
    )
    doc = load(write(tmp_path, "setext.md", md))
    assert headings(doc) == ["Top Title", "Top Title > Sub Title"]
    assert doc.sections[0].text == "Opening words."
    body = doc.sections[1].text
    assert body.startswith("Details here.\n\n~~~~python\n# still code\n```\nnot closed")
    assert "#hashtag is not a heading" in body and "# indented code" in body
    assert "title: Guide" not in text_of(doc)


def test_markdown_opening_rule_is_not_front_matter(tmp_path: Path) -> None:
    doc = load(write(tmp_path, "rule.md", "---\n\nJust text.\n\n---\n\nMore text.\n"))
    assert "Just text." in text_of(doc) and "More text." in text_of(doc)


def test_markdown_with_headings_only_keeps_them(tmp_path: Path) -> None:
    doc = load(write(tmp_path, "stub.md", "# TODO\n\n## Later\n"))
    assert text_of(doc) == "# TODO\n\n## Later"


# --- reStructuredText ----------------------------------------------------------------------


def test_rst_sections_from_underlined_titles() -> None:
    doc = load(DOCS / "reference.rst")
    assert headings(doc) == ["Glossary > Quorum"]
    assert "the quorum is seven members" in doc.sections[0].text


def test_rst_overlines_and_levels_by_first_use(tmp_path: Path) -> None:
    rst = (
        "=======\n Manual\n=======\n\nPreface.\n\n"
        "Usage\n-----\n\nRun it.\n\n"
        "Flags\n~~~~~\n\nSome flags.\n\n"
        "Limits\n------\n\nNone.\n\n"
        "----\n\nAfter a transition.\n"
    )
    doc = load(write(tmp_path, "manual.rst", rst))
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Manual", "Preface."),
        ("Manual > Usage", "Run it."),
        ("Manual > Usage > Flags", "Some flags."),
        ("Manual > Limits", "None.\n\n----\n\nAfter a transition."),
    ]


def test_rst_without_titles_is_one_section(tmp_path: Path) -> None:
    doc = load(write(tmp_path, "plain.rst", "Just a paragraph.\n\n.. note:: A directive.\n"))
    assert doc.sections == (Section("Just a paragraph.\n\n.. note:: A directive."),)


# --- HTML ----------------------------------------------------------------------------------


def test_html_keeps_readable_text_only() -> None:
    doc = load(DOCS / "travel.html")
    text = text_of(doc)
    assert "takes about two hours" in text
    assert "35 dollars for foreigners & can be bought" in text  # entity decoded, spaces joined
    for chrome in ("do-not-index-this-script", "color: red", "navigation menu", "Copyright"):
        assert chrome not in text
    assert headings(doc) == ["Travelling to Zanzibar", "Travelling to Zanzibar > Where to stay"]


def test_html_drops_chrome_and_keeps_structure(tmp_path: Path) -> None:
    page = """<html><head><title>Ignored when there is an h1</title></head><body>
    <header>Site header</header>
    <div role="navigation">Skip links</div>
    <aside>Related articles</aside>
    <form><label>Search</label><input name=q><button>Go</button></form>
    <template><p>Template text</p></template>
    <noscript>Enable JavaScript</noscript>
    <svg><text>Chart label</text></svg>
    <div hidden>Hidden text</div><span style="display: none">Invisible</span>
    <h1>Main   title</h1>
    <p>First&nbsp;paragraph with <b>bold</b> and <a href="#">a link</a>.</p>
    <ul><li>one</li><li>two</li></ul>
    <pre>  indented
    code  </pre>
    <table><tr><th>Name</th><th>Age</th></tr><tr><td>Ada</td><td>36</td></tr></table>
    <h3>Deep</h3><p>Skipped a level.</p>
    <h2>Second</h2><p>Back up.<br>New line.</p>
    </body></html>"""
    doc = load(write(tmp_path, "page.htm", page))
    assert headings(doc) == ["Main title", "Main title > Deep", "Main title > Second"]
    first = doc.sections[0].text
    assert first.startswith("First paragraph with bold and a link.\n\none\ntwo")
    assert "  indented\n    code" in first
    assert "| Name | Age |\n| --- | --- |\n| Ada | 36 |" in first
    assert doc.sections[2].text == "Back up.\nNew line."
    for chrome in ("Site header", "Skip links", "Related", "Search", "Go", "Template", "Enable"):
        assert chrome not in text_of(doc)
    assert "Chart label" not in text_of(doc) and "Hidden" not in text_of(doc)
    assert "Invisible" not in text_of(doc)


def test_html_title_is_the_top_heading_without_h1(tmp_path: Path) -> None:
    page = "<title>Release notes</title><p>Intro.</p><h2>1.0</h2><p>First release.</p>"
    doc = load(write(tmp_path, "notes.html", page))
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Release notes", "Intro."),
        ("Release notes > 1.0", "First release."),
    ]


def test_html_survives_unclosed_tags(tmp_path: Path) -> None:
    page = (
        "<html><head><title>Broken<body><h1>Unclosed heading<p>First paragraph<p>Second "
        "<b>bold <i>italic<nav>menu<div><div>inside nav</nav><p>after nav"
        "<script>var x = 1;" + "<div>" * 300 + "deep"
    )
    doc = load(write(tmp_path, "broken.html", page))
    assert headings(doc) == ["Unclosed heading"]
    text = doc.sections[0].text
    assert text.startswith("First paragraph\n\nSecond bold italic")
    assert "after nav" in text and "menu" not in text and "var x" not in text


def test_html_with_only_chrome_has_no_text(tmp_path: Path) -> None:
    path = write(tmp_path, "chrome.html", "<nav>Home</nav><script>x()</script><footer>(c)</footer>")
    assert reason(path) == "no extractable text"


def test_html_declared_charset_is_used(tmp_path: Path) -> None:
    page = '<meta charset="windows-1252"><p>Caf\xe9 cr\xe8me \x93quoted\x94</p>'
    doc = load(write(tmp_path, "cp1252.html", page.encode("latin-1")))
    assert text_of(doc) == "Café crème \u201cquoted\u201d"


# --- PDF -----------------------------------------------------------------------------------


def test_pdf_fixture_is_what_pdfgen_writes() -> None:
    assert REPORT_PDF.read_bytes() == pdf_bytes(REPORT_PAGES), "run: python -m tests.pdfgen"


def test_pdf_one_section_per_page() -> None:
    doc = load(REPORT_PDF)
    assert doc.pages == 2
    assert [s.page for s in doc.sections] == [1, 2]
    assert [s.heading for s in doc.sections] == ["", ""]
    assert doc.sections[0].text.startswith("Harbour Authority annual report")
    assert "The lighthouse keeper salary in 1890 was 40 pounds a year." in doc.sections[1].text


def test_pdf_empty_pages_are_skipped_but_counted(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "gap.pdf", [["Page one."], [], ["Page three (last)."]])
    doc = load(path)
    assert doc.pages == 3
    assert [(s.page, s.text) for s in doc.sections] == [(1, "Page one."), (3, "Page three (last).")]


def test_pdf_without_text_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As without the ragged[ocr] extra (tests/test_ocr.py covers both installs end to end).
    monkeypatch.setattr("ragged.ingest.ocr.available", lambda: False)
    path = write_pdf(tmp_path / "scan.pdf", [[], []])
    assert reason(path) == (
        "no extractable text (scanned PDF without a text layer? "
        "`pip install 'ragged[ocr]'` adds OCR)"
    )


@pytest.mark.parametrize(
    "data",
    [REPORT_PDF.read_bytes()[:300], b"%PDF-1.4\ngarbage", b"not a pdf at all"],
    ids=["truncated", "garbage", "not-pdf"],
)
def test_pdf_corrupt(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "broken.pdf"
    with pytest.raises(UnreadableDocument) as info:
        load(path, data)
    assert info.value.reason.startswith("corrupt or truncated PDF: ")
    assert info.value.__cause__ is not None  # chained for --debug


def encrypted(tmp_path: Path, user_password: str) -> Path:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(REPORT_PDF))
    writer.encrypt(user_password, owner_password="owner-secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return write(tmp_path, "locked.pdf", out.getvalue())


def test_pdf_encrypted_with_a_password(tmp_path: Path) -> None:
    assert reason(encrypted(tmp_path, "hunter2")) == "encrypted PDF (password required)"


def test_pdf_encrypted_with_empty_user_password_opens(tmp_path: Path) -> None:
    doc = load(encrypted(tmp_path, ""))
    assert doc.pages == 2 and "lighthouse keeper salary" in doc.sections[1].text


@pytest.fixture
def pypdf_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if pdfium refused every file: the pypdf fallback does all the work."""
    from ragged.ingest import loaders

    def refuse(path: Path, data: bytes) -> None:
        raise loaders._PdfiumRefused

    monkeypatch.setattr(loaders, "_load_pdf_pdfium", refuse)


@pytest.mark.parametrize("engine", ["pdfium", "pypdf"])
def test_pdf_both_engines_read_the_fixture(engine: str, request: pytest.FixtureRequest) -> None:
    if engine == "pypdf":
        request.getfixturevalue("pypdf_only")
    doc = load(REPORT_PDF)
    assert doc.pages == 2 and [s.page for s in doc.sections] == [1, 2]
    assert "lighthouse keeper salary" in doc.sections[1].text


def test_pdf_logger_is_quietened(pypdf_only: None) -> None:
    logging.getLogger("pypdf").setLevel(logging.NOTSET)
    load(REPORT_PDF)
    assert logging.getLogger("pypdf").level == logging.ERROR


def test_pdf_ctrl_c_is_never_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    import pypdf
    import pypdfium2

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pypdfium2, "PdfDocument", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load(REPORT_PDF)
    monkeypatch.undo()
    monkeypatch.setattr(pypdf, "PdfReader", interrupted)
    from ragged.ingest import loaders

    monkeypatch.setattr(loaders, "_load_pdf_pdfium", lambda path, data: None)
    with pytest.raises(KeyboardInterrupt):
        load(REPORT_PDF)


def test_pdf_one_broken_page_does_not_lose_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    from pypdfium2 import PdfiumError, PdfTextPage

    real = PdfTextPage.get_text_bounded

    def flaky(self: PdfTextPage, *args: object, **kwargs: object) -> str:
        text = real(self)
        if "Historical notes" in text:
            raise PdfiumError("bad font")
        return text

    monkeypatch.setattr(PdfTextPage, "get_text_bounded", flaky)
    doc = load(REPORT_PDF)
    assert doc.pages == 2 and [s.page for s in doc.sections] == [1]


def test_pdf_one_broken_page_with_pypdf(pypdf_only: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from pypdf import PageObject

    real = PageObject.extract_text

    def flaky(self: PageObject, *args: object, **kwargs: object) -> str:
        text = real(self)
        if "Historical notes" in text:
            raise ValueError("bad font")
        return text

    monkeypatch.setattr(PageObject, "extract_text", flaky)
    doc = load(REPORT_PDF)
    assert doc.pages == 2 and [s.page for s in doc.sections] == [1]


def test_pdfium_hyphenation_marks_become_hyphens() -> None:
    from ragged.ingest.loaders import _PDFIUM_TEXT

    raw = "Übungsauf\x02gaben and cross\x02origin\x0cnext\x03"
    assert raw.translate(_PDFIUM_TEXT) == "Übungsauf-gaben and cross-origin\nnext"


# --- the shared benchmark corpus -----------------------------------------------------------

BAD_REASONS = {
    "binary-renamed.md": "binary content, not text",
    "empty.md": "empty file",
    "empty.pdf": "empty file",
    "encrypted-rc4-password-ragged-secret.pdf": "encrypted PDF (password required)",
    "truncated-30pct.pdf": "corrupt or truncated PDF: Stream has ended unexpectedly",
}


@needs_bench
@pytest.mark.parametrize(("name", "expected"), sorted(BAD_REASONS.items()))
def test_bench_bad_files_have_clear_reasons(name: str, expected: str) -> None:
    assert reason(CORPUS / "bad" / name) == expected


@needs_bench
def test_bench_aes_encrypted_pdf() -> None:
    # pypdf[crypto] is a dependency, so AES files are opened and found to need a password.
    got = reason(CORPUS / "bad" / "encrypted-aes256-password-ragged-secret.pdf")
    assert got == "encrypted PDF (password required)"


@needs_bench
def test_bench_latin1_is_detected() -> None:
    text = text_of(load(CORPUS / "bad" / "latin1-encoded.txt"))
    assert "Café société: crème brûlée, naïve façade, Ångström, Straße" in text


@needs_bench
def test_bench_mixed_invalid_utf8_loads() -> None:
    doc = load(CORPUS / "bad" / "mixed-invalid-utf8.md")
    assert headings(doc) == ["Heading"]
    assert "Some valid text." in doc.sections[0].text and "More text." in doc.sections[0].text
    assert "\x00" not in doc.sections[0].text


@needs_bench
def test_bench_single_line_5mb_loads() -> None:
    path = CORPUS / "bad" / "single-line-5mb.md"
    doc = load(path)
    assert len(doc.sections) == 1 and len(doc.sections[0].text) == path.stat().st_size


@needs_bench
def test_bench_unclosed_tags_html_loads() -> None:
    doc = load(CORPUS / "bad" / "unclosed-tags.html")
    assert doc.sections[0].heading == "Unclosed heading"
    text = text_of(doc)
    assert "First paragraph" in text and "deeply nested text" in text and "var x" not in text


@needs_bench
def test_bench_wikipedia_page_loses_its_chrome() -> None:
    doc = load(CORPUS / "html" / "wikipedia" / "duck.html")
    assert "Duck - Wikipedia > Taxonomy" in headings(doc)
    text = text_of(doc)
    assert "Duck is the common name for numerous species of waterfowl" in text
    assert "[edit]" not in text and "Jump to content" not in text


PDFS = sorted((CORPUS / "pdf").rglob("*.pdf")) if CORPUS.is_dir() else []


@needs_bench
@pytest.mark.parametrize("path", PDFS, ids=[p.name[:40] for p in PDFS])
def test_bench_pdfs_load_or_say_why(path: Path) -> None:
    try:
        doc = load(path)
    except UnreadableDocument as exc:
        assert exc.reason
    else:
        assert doc.pages and all(s.text.strip() and s.page for s in doc.sections)


# Pieces of hostile markup: stray carriage returns and NULs, trailing spaces of every kind,
# runs of blank lines, headings of both syntaxes, fences, front matter, rST adornments.
_PIECES = (
    "word",
    "two words",
    " ",
    "\t",
    "\u00a0",
    "\v",
    "\f",
    "\x00",
    "\r",
    "\r\n",
    "\n",
    "\n\n\n",
    "# Heading",
    "## Sub #",
    "Title\n=====",
    "Title\n-----",
    "```",
    "~~~~",
    "---\nkey: value\n---\n",
    "=====",
    "-----\nTitle\n-----",
    "  - item",
)


@pytest.mark.parametrize("suffix", [".md", ".rst"])
def test_sections_come_out_normalised(suffix: str) -> None:
    """A section's text is cut from text normalised once, so it must be normalised already:
    no carriage returns or NULs, no line ending in spaces, no two blank lines in a row, no
    blank line at either end (the loaders no longer normalise every section again)."""
    rng = random.Random(15)
    loaded = 0
    for _ in range(1500):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 40)))
        try:
            document = load(Path("doc" + suffix), text.encode())
        except UnreadableDocument:
            continue
        loaded += 1
        for section in document.sections:
            assert section.text == normalise(section.text), repr(text)
    assert loaded > 1000


def test_normalise_is_the_rule_it_states() -> None:
    """`normalise` against the rule written as regexes: CRLF and CR to LF, NULs gone, the
    spaces (not every Unicode space) at line ends gone, runs of blank lines cut to one,
    blank lines at either end gone."""

    def rule(text: str) -> str:
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
        text = re.sub(r"[ \t\f\v\u00a0]+$", "", text, flags=re.MULTILINE)
        return re.sub(r"\n{3,}", "\n\n", text).strip("\n")

    pieces = ["a", "b c", " ", "\t", "\u00a0", "\v", "\f", "\x00", "\r", "\r\n", "\n"]
    pieces += ["\u2003", "\x1c", "\x85", "\u2028"]  # spaces and breaks the rule leaves alone
    rng = random.Random(7)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        assert normalise(text) == rule(text), repr(text)
