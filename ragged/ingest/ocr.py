"""OCR for PDF pages without a text layer and for images: the optional `ragged[ocr]` extra.

The only module importing rapidocr (and PIL, for image files). rapidocr's wheel carries its
models (PP-OCRv6 small detection and recognition, Chinese + English/Latin script,
Apache-2.0) and runs them with onnxruntime, so nothing is downloaded at run time. PDF pages
are rendered by loaders.py, which owns pypdfium2.

Without the extra, nothing here is imported: `available()` only looks for the packages.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragged.errors import UnreadableDocument

INSTALL_HINT = "pip install 'ragged[ocr]'"
# Pages are rendered at 150 dpi, measured best with scans of known text (bench/ocr.py,
# docs/benchmarks.md): at 100 dpi the 8 pt print of a Federal Register page loses words
# (recall 0.79 against 0.83), and at 200 dpi the recogniser runs words together more often
# (a typeset page: 0.97 -> 0.95) while a dense page takes twice as long.
DPI = 150
MAX_SIDE_PX = 4000  # a poster-sized page must not become a 400 MB bitmap
MIN_CONTRAST = 8  # a render whose grey levels span less than this is a blank page


@functools.cache
def available() -> bool:
    """Whether the OCR extra is installed (looked up, not imported: that costs a second)."""
    return all(importlib.util.find_spec(name) is not None for name in ("rapidocr", "onnxruntime"))


@functools.cache
def _engine() -> Any:
    """One RapidOCR per process (loading its models takes about a quarter of a second)."""
    from rapidocr import RapidOCR

    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return RapidOCR(params={"Global.log_level": "error"})


def image_text(image: Any) -> str:
    """The text in an image (PIL image, array or encoded bytes), lines in reading order."""
    result = _engine()(image)
    if not result.txts or result.boxes is None:
        return ""
    boxes = [
        Box(
            float(min(p[0] for p in quad)),
            float(min(p[1] for p in quad)),
            float(max(p[0] for p in quad)),
            float(max(p[1] for p in quad)),
            str(text),
        )
        for quad, text in zip(result.boxes.tolist(), result.txts, strict=True)
        if str(text).strip()
    ]
    return layout(boxes)


@dataclass(frozen=True)
class Box:
    """A line (or part of one) the recogniser read, with its bounds in pixels."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str


def layout(boxes: list[Box]) -> str:
    """Boxes as text in reading order: columns one after another, lines and paragraphs kept.

    A recursive XY cut: the region is split at its widest empty band, across (between a
    title and the columns under it) or down (the gutter between two columns), until no
    band is left; the pieces are read top to bottom, left to right. Joining boxes by their
    height alone would interleave the lines of a two-column page.
    """
    if not boxes:
        return ""
    height = sorted(b.y1 - b.y0 for b in boxes)[len(boxes) // 2] or 1.0
    ordered = _xy_cut(boxes, min_gap=height * 0.6)
    lines: list[list[Box]] = []
    for box in ordered:
        last = lines[-1][-1] if lines else None
        # The same line: vertically overlapping by half a line, and to the right.
        if last is not None and box.x0 >= last.x0 and _overlap(last, box) > 0.5 * height:
            lines[-1].append(box)
        else:
            lines.append([box])
    out: list[str] = []
    for i, line in enumerate(lines):
        if i and line[0].y0 - max(b.y1 for b in lines[i - 1]) > 0.8 * height:
            out.append("")  # a gap taller than most of a line: a new paragraph
        if i and line[0].y0 < lines[i - 1][0].y0 - height:
            out.append("")  # back up the page: the next column
        out.append(" ".join(b.text.strip() for b in line))
    return "\n".join(out).strip()


def _overlap(a: Box, b: Box) -> float:
    return min(a.y1, b.y1) - max(a.y0, b.y0)


def _xy_cut(boxes: list[Box], min_gap: float, depth: int = 0) -> list[Box]:
    if len(boxes) <= 1 or depth > 200:
        return sorted(boxes, key=lambda b: (b.y0, b.x0))
    across = _gaps(boxes, lambda b: (b.y0, b.y1), 0.1 * min_gap)
    # A gutter must be wider than the space between two words.
    down = _gaps(boxes, lambda b: (b.x0, b.x1), 1.5 * min_gap)
    widest_down = max(down, key=lambda g: g[1], default=None)
    if widest_down is not None and widest_down[1] >= max((g[1] for g in across), default=0):
        at = widest_down[0]
        parts = ([b for b in boxes if b.x1 <= at], [b for b in boxes if b.x0 >= at])
    elif across:
        # The topmost band first: a title is peeled off before the columns under it, which
        # a wider band lower down (between two paragraphs) would otherwise cut through.
        at = across[0][0]
        parts = ([b for b in boxes if b.y1 <= at], [b for b in boxes if b.y0 >= at])
    else:
        return sorted(boxes, key=lambda b: (b.y0, b.x0))
    return _xy_cut(parts[0], min_gap, depth + 1) + _xy_cut(parts[1], min_gap, depth + 1)


def _gaps(boxes: list[Box], span: Any, least: float) -> list[tuple[float, float]]:
    """(middle, width) of each empty band at least `least` wide between the boxes, in order."""
    intervals = sorted(span(b) for b in boxes)
    reach = intervals[0][1]
    out = []
    for start, end in intervals[1:]:
        if start - reach >= least and start > reach:
            out.append(((start + reach) / 2, start - reach))
        reach = max(reach, end)
    return out


def page_text(image: Any) -> str:
    """The text of a rendered page (a PIL image); "" for a blank one, which is not read."""
    try:
        low, high = image.getextrema()
        if high - low < MIN_CONTRAST:
            return ""
        return image_text(image)
    except Exception:  # one bad page must not cost the others
        return ""


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
