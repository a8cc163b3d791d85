"""The memory an ingest frees, handed back to the operating system (glibc's malloc only).

Why: at 100k chunks an ingest's peak RSS was ~600 MB (issue 15's ceiling). Chroma's vector
index holds ~305 MB of it (99k vectors of 768 float32s, unavoidable while Chroma is embedded);
glibc's malloc held ~130 MB more in 16 per-thread arenas (Ollama's client threads, Chroma's
Rust threads), much of it freed but not returned: free() gives memory back only from the top
of a heap, and glibc raises its mmap threshold each time a large block is freed, after which
such blocks (a store write's matrix, Chroma's batches) come from the heap and stay there.

Fixing the threshold at 128 KiB and trimming after each store write took peak RSS of the
6,350-file, 99k-chunk ingest from 613 and 612 MB to 573 and 573 MB, side by side, the
speed within the runs' spread (docs/benchmarks.md, ninth pass). Capping the arenas saved
more but slowed PDF ingests (eighth pass). Elsewhere (macOS, musl, Windows) both calls do
nothing.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

# mallopt's parameter number (malloc.h), and glibc's own starting value for it.
M_MMAP_THRESHOLD = -3
LARGE_BLOCK = 128 * 1024


@functools.cache
def _glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here, not at the top: only an ingest needs it

    try:
        # glibc's soname; ctypes.util.find_library would run ldconfig in a subprocess.
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc: musl has neither call
        return None
    return libc


def map_large_blocks() -> None:
    """Blocks of 128 KiB and more mapped on their own from now on, so free() unmaps them.

    Setting the threshold also stops glibc moving it (and the trim threshold) up; the
    process keeps it, as it does the environment's MALLOC_MMAP_THRESHOLD_.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK)


def release_free_memory() -> None:
    """Return the free pages of every malloc arena to the OS (malloc_trim walks them all)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
