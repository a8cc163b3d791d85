"""VectorWriter: embedded chunks gathered across batches and files into a few large writes.

Why: embedded Chroma's upsert costs far more per call than per row (32 rows: ~2 ms a row;
1,000 rows: ~0.55 ms a row), and it holds the GIL for its whole run, so every call also stalls
the threads that talk to Ollama. Embedding batches are sized for the model (`embed_batch`);
store writes are sized for Chroma here. The crash-safe order is unchanged: chunks are staged
in the catalog before they are embedded, and `Index.write_vectors` marks them embedded only
after Chroma holds them. A kill loses at most the vectors still buffered here, which the
next run embeds again (their chunks are still pending in the catalog).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ragged.memory import map_large_blocks, release_free_memory

if TYPE_CHECKING:
    from ragged.catalog import ChunkRow
    from ragged.index import Index

# Embedding batches per store write: 16 x 32 = 512 rows by default. Per-row cost falls
# steeply up to a few hundred rows and little after; a larger write also holds the GIL
# longer, and the requests queued at Ollama (as many batches, see REQUESTS_PER_SLOT) must
# cover it (docs/benchmarks.md, "Ingest").
BATCHES_PER_WRITE = 16
# The smallest write worth making before the last one: an upsert costs 14-30 ms before its
# first row, then about the same per row from ~128 rows (4 default batches) on.
MIN_BATCHES_PER_WRITE = 4


class VectorWriter:
    """Buffers (chunk, vector) pairs and writes them through the Index in large batches."""

    def __init__(
        self,
        index: Index,
        model: str,
        on_written: Callable[[int], None],
        rows_per_write: int,
    ) -> None:
        self.index, self.model = index, model
        self.on_written = on_written
        self.rows_per_write = max(1, rows_per_write)
        self.rows: list[ChunkRow] = []
        self.vectors: list[Sequence[float]] = []
        self.written = 0
        # With the trim after each write: what the writes free goes back to the OS during
        # the run instead of staying in glibc's arenas until exit (ragged/memory.py).
        map_large_blocks()

    def add(self, rows: Sequence[ChunkRow], vectors: Sequence[Sequence[float]]) -> None:
        self.rows.extend(rows)
        self.vectors.extend(vectors)
        if len(self.rows) >= self.rows_per_write:
            self.flush()

    def flush(self) -> None:
        """Write everything buffered: one upsert, then the chunks marked embedded."""
        if not self.rows:
            return
        rows, vectors = self.rows, self.vectors
        self.rows, self.vectors = [], []
        self.index.write_vectors(rows, vectors, self.model)
        self.written += len(rows)
        release_free_memory()
        self.on_written(len(rows))
