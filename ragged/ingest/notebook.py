"""Jupyter notebooks (.ipynb) → Markdown: markdown cells as they are, code cells as fenced
code, outputs dropped (they are results, often images or thousands of lines of logs).

The Markdown loader then splits it along the headings of the markdown cells, so a code cell
is cited under the heading it follows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypeGuard

from ragged.errors import UnreadableDocument

# Images pasted into a markdown cell are stored inline as base64: thousands of useless tokens.
_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]+")
_BACKTICKS = re.compile(r"`{3,}")


def notebook_markdown(path: Path, data: bytes) -> str:
    """The notebook's markdown and code cells as one Markdown text; raises UnreadableDocument."""
    # The file is anyone's JSON: every value is checked for its type before it is used, so a
    # notebook of an odd shape is read as far as it makes sense, never raising.
    try:
        notebook = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise UnreadableDocument(path, f"not a valid notebook: broken JSON{where}") from exc
    except RecursionError as exc:  # Python's JSON reader recurses once per level
        raise UnreadableDocument(
            path, "not a valid notebook: its JSON is nested too deeply"
        ) from exc
    if not isinstance(notebook, dict):
        raise UnreadableDocument(path, "not a valid notebook: no cells")
    cells = notebook.get("cells")
    if cells is None:  # nbformat 3 kept cells in worksheets
        worksheets = _items(notebook.get("worksheets"))
        cells = [c for ws in worksheets if isinstance(ws, dict) for c in _items(ws.get("cells"))]
    if not isinstance(cells, list):
        raise UnreadableDocument(path, "not a valid notebook: no cells")
    metadata = notebook.get("metadata")
    language = _language(metadata if isinstance(metadata, dict) else {})
    blocks = []
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        kind = cell.get("cell_type")
        if kind == "markdown":
            blocks.append(_DATA_URI.sub("data:…", _source(cell.get("source"))).strip())
        elif kind == "heading":  # nbformat 3
            title = " ".join(_source(cell.get("source")).split())
            blocks.append("#" * _level(cell.get("level")) + " " + title)
        elif kind == "code":
            code = _source(cell.get("source", cell.get("input"))).strip("\n")
            if code.strip():
                own = cell.get("language")
                blocks.append(_fenced(code, own if _is_language(own) else language))
    return "\n\n".join(b for b in blocks if b)


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _level(value: Any) -> int:
    """An nbformat 3 heading cell's level, 1 to 6; 1 when it is not a number."""
    try:
        return max(1, min(int(value), 6))
    except (TypeError, ValueError, OverflowError):  # "two", [2], 1e999 (read as infinity)
        return 1


def _is_language(name: Any) -> TypeGuard[str]:
    """A name that can follow a fence's backticks: a line break in it would end the fence's
    first line and put the rest in the text as Markdown (a forged heading)."""
    return isinstance(name, str) and name.isidentifier()


def _source(value: Any) -> str:
    """A cell's source: nbformat stores it as one string or as a list of lines."""
    if isinstance(value, list):
        return "".join(str(line) for line in value)
    return value if isinstance(value, str) else ""


def _language(metadata: dict[str, Any]) -> str:
    for key in ("kernelspec", "language_info"):
        info = metadata.get(key)
        if isinstance(info, dict):
            name = info.get("language") or info.get("name")
            if _is_language(name):
                return name
    return ""


def _fenced(code: str, language: str) -> str:
    """Code in a fence longer than any run of backticks inside it, so nothing closes it early."""
    longest = max((len(m.group(0)) for m in _BACKTICKS.finditer(code)), default=2)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{code}\n{fence}"
