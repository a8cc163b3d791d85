"""OCR for PDF pages without a text layer and for images: the optional `ragged[ocr]` extra.

The only module importing rapidocr and pypdfium2. rapidocr's wheel carries its models
(PP-OCRv6 small detection and recognition, Chinese + English/Latin script, Apache-2.0) and
runs them with onnxruntime, so nothing is downloaded at run time. pypdfium2 renders a page
the way a viewer shows it: strips, masks, rotation and JBIG2 scans included.

Without the extra, nothing here is imported: `available()` only looks for the packages.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragged.errors import UnreadableDocument

INSTALL_HINT = "pip install 'ragged[ocr]'"
# 200 dpi: rapidocr scales every image to at most 2,000 px on its long side, which a US
# Letter page reaches at 2000 / 11 in = 182 dpi; more only costs rendering time.
DPI = 200
MAX_SIDE_PX = 4000  # a poster-sized page must not become a 400 MB bitmap
MIN_CONTRAST = 8  # a render whose grey levels span less than this is a blank page


@functools.cache
def available() -> bool:
    """Whether the OCR extra is installed (looked up, not imported: that costs a second)."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("rapidocr", "pypdfium2", "onnxruntime")
    )


@functools.cache
def _engine() -> Any:
    """One RapidOCR per process (loading its models takes about a quarter of a second)."""
    from rapidocr import RapidOCR

    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return RapidOCR(params={"Global.log_level": "error"})


def image_text(image: Any) -> str:
    """The text in an image (PIL image, array or encoded bytes), lines in reading order."""
    result = _engine()(image)
    if not result.txts:  # its Markdown writer would say "no text detected" in Chinese
        return ""
    return str(result.to_markdown()).strip()


def pdf_page_texts(data: bytes, numbers: Sequence[int]) -> dict[int, str]:
    """OCR text of the given 1-based pages of a PDF; a page that fails or is blank is left out."""
    import pypdfium2 as pdfium

    out: dict[int, str] = {}
    try:
        pdf = pdfium.PdfDocument(data)
    except Exception:  # pypdf read it; if pdfium cannot, there is nothing more to get
        return out
    try:
        for number in numbers:
            if not 1 <= number <= len(pdf):
                continue
            try:
                page = pdf[number - 1]
                width, height = page.get_size()
                scale = min(DPI / 72, MAX_SIDE_PX / max(width, height, 1))
                image = page.render(scale=scale, grayscale=True).to_pil()
                low, high = image.getextrema()
                if high - low < MIN_CONTRAST:
                    continue
                text = image_text(image)
            except Exception:  # one bad page must not cost the others
                continue
            if text:
                out[number] = text
    finally:
        pdf.close()
    return out


def load_image(path: Path, data: bytes) -> str:
    """The text of a .png/.jpg file; raises UnreadableDocument when it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = opened.convert("RGB")
        image.thumbnail((MAX_SIDE_PX, MAX_SIDE_PX))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnreadableDocument(path, "not a readable image (corrupt or truncated)") from exc
    except Image.DecompressionBombError as exc:
        raise UnreadableDocument(path, "image too large to read safely") from exc
    return image_text(image)
