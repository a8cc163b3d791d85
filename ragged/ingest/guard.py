"""A memory ceiling for the parser processes (PDFs and images).

A PDF's size on disk says little of what reading it takes: one page can show hundreds of MB
of compressed text, and pdfium keeps about 100 bytes per character it lays out, so a 1.1 MB
file took its parser past 10 GB. Left alone, such a process grows until the system's OOM
killer ends it, or another program (macOS has no OOM killer: it swaps). Each parser process
therefore watches its own resident memory from a thread (pdfium and pypdf hand the GIL over
often enough) and ends itself past the ceiling, leaving a note that says so. The pool then
sees a process that died; `ingest.Parsers` finds out which file did it and carries on.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import suppress

from ragged.disk import GiB

MIN_CEILING = 3 * GiB // 2  # the shared corpus's PDFs with OCR peak at about 0.6 GB
SHARE_OF_MEMORY = 8  # a parser may take this fraction of the machine's memory, at least MIN
POLL_S = 0.05  # pdfium grows about 0.3 GB/s on such a page: the ceiling is overshot by ~15 MB
EXIT_CODE = 75


def ceiling(setting_mb: float) -> int:
    """The ceiling in bytes: `parser_memory_mb` when set, else 1/8 of memory, at least 1.5 GiB."""
    if setting_mb > 0:
        return int(setting_mb * 1_000_000)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this platform: the floor holds
        total = 0
    return max(MIN_CEILING, total // SHARE_OF_MEMORY)


def resident() -> int:
    """This process's resident memory: current on Linux, its peak elsewhere (macOS has no
    /proc; the peak only errs towards stopping, and a fresh process starts from zero)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import resource
        except ImportError:  # Windows: nothing to read cheaply, so no ceiling
            return 0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def start(limit: int, note: str | None) -> None:
    """A pool's initializer: watch this process; past `limit`, write `note` and exit."""

    def watch() -> None:
        while True:
            if resident() > limit:
                if note is not None:
                    with suppress(OSError), open(note, "w") as out:
                        out.write(str(limit))
                os._exit(EXIT_CODE)
            time.sleep(POLL_S)

    threading.Thread(target=watch, name="ragged-memory-guard", daemon=True).start()


def over_ceiling(note: str) -> bool:
    """Whether a process started with this note ended itself at the ceiling."""
    return os.path.exists(note)
