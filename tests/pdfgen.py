"""A tiny PDF writer for test fixtures: text pages in Helvetica, no dependencies.

Regenerate the committed fixture with `python -m tests.pdfgen`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

DATA = Path(__file__).parent / "data"
REPORT_PDF = DATA / "docs" / "report.pdf"
# Each page is a list of lines; page 2 holds the fact other tests search for.
REPORT_PAGES = (
    (
        "Harbour Authority annual report",
        "This report covers the harbour accounts for the year.",
        "Income came mostly from mooring fees.",
    ),
    (
        "Historical notes",
        "The lighthouse keeper salary in 1890 was 40 pounds a year.",
        "The keeper also received coal and lamp oil.",
    ),
)


def _escape(line: str) -> str:
    """A PDF literal string body: backslash, parentheses escaped; Latin-1 only."""
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_bytes(pages: Sequence[Sequence[str]]) -> bytes:
    """A valid PDF 1.4 file with one page of text lines per item of `pages`."""
    # Object numbers: 1 catalog, 2 page tree, 3 font, then a page and its content per page.
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: (
            f"<< /Type /Pages /Kids [{' '.join(f'{p} 0 R' for p in page_ids)}] "
            f"/Count {len(pages)} >>"
        ).encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    for page_id, lines in zip(page_ids, pages, strict=True):
        # 72 pt margins on US Letter; 16 pt leading; T* moves to the next line.
        shown = " T* ".join(f"({_escape(line)}) Tj" for line in lines)
        stream = f"BT /F1 12 Tf 16 TL 72 720 Td {shown} ET".encode("latin-1")
        objects[page_id] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>"
        ).encode()
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")  # binary comment marks the file as binary
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref = len(out)
    size = max(objects) + 1
    # Each xref entry is exactly 20 bytes: 10-digit offset, 5-digit generation, type, EOL.
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offsets[n] for n in range(1, size))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def bomb_pdf_bytes(text_mb: float, pad_mb: float = 0) -> bytes:
    """A PDF of one page whose compressed content stream shows `text_mb` MB of text (deflate
    packs it about 300 to 1), then `pad_mb` MB of comment after %%EOF, which readers ignore:
    a large file is parsed first."""
    import zlib

    line = b"(" + b"alpha beta gamma delta " * 20 + b") Tj T*\n"
    stream = zlib.compress(
        b"BT /F1 10 Tf 12 TL 50 750 Td\n" + line * int(text_mb * 1e6 / len(line)) + b"ET", 9
    )
    content = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        4: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>",
        5: content + stream + b"\nendstream",
    }
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number, body in objects.items():
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 6\n0000000000 65535 f \n"
    out += b"".join(b"%010d 00000 n \n" % offsets[n] for n in range(1, 6))
    out += b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out) + b"%" + b"x" * int(pad_mb * 1e6) + b"\n"


def write_pdf(path: Path, pages: Sequence[Sequence[str]]) -> Path:
    """Write `pages` as a PDF at `path` and return the path."""
    path.write_bytes(pdf_bytes(pages))
    return path


if __name__ == "__main__":
    write_pdf(REPORT_PDF, REPORT_PAGES)
    print(REPORT_PDF)
