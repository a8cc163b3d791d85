"""Room on the disk that holds the data: how much is free, and whether a failure was the disk
filling up (`full`), which every layer says the same way (DiskFull) instead of its own words.

Why one recogniser: a full disk surfaces as SQLite's "database or disk is full" from the
catalog's commit, as "disk I/O error" when SQLite cannot grow the shared-memory file it needs
even to read, as the same text inside Chroma's errors, or as Chroma's "Error in compaction:
Failed to apply logs to the metadata segment", which names no cause at all. Read as they
came, they made a traceback, "check that the data dir is writable", or "the catalog is
damaged" with `doctor --fix` as the cure, which would have moved a sound catalog aside.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from ragged.errors import RUN_AGAIN, StoreError

MiB, GiB = 1024**2, 1024**3  # here, not in ragged.hardware, whose import `ingest` skips

# A failed write of SQLite's or Chroma's with less than this free is put down to the disk:
# the write that failed may have wanted more than what is left (an index file of megabytes).
LOW_SPACE = 16 * MiB
# What the libraries say when the operating system said ENOSPC or EDQUOT, whatever the type
# they raise it as (Chroma's Rust layer gives text only).
FULL_TEXTS = (
    "database or disk is full",
    "no space left on device",
    "disk quota exceeded",
    "(os error 28)",
    "(os error 122)",
)
HINT = f"free some space on it, or move the data dir (RAGGED_HOME){RUN_AGAIN}"


class DiskFull(StoreError):
    """A write failed because the disk holding `where` is full; what was stored is kept."""

    def __init__(self, where: Path | str, free: int, doing: str | None = None) -> None:
        message = f"the disk holding {where} is full ({human_size(free)} free)"
        super().__init__(f"{message}: {doing}" if doing else message, hint=HINT)
        self.where, self.free = where, free

    def doing(self, what: str, where: Path | str) -> DiskFull:
        """The same fault, said of the command that met it."""
        return DiskFull(where, self.free, what)


class ServerFull(StoreError):
    """A Chroma server's disk is full: not this machine's, whatever the text beneath says."""


def human_size(n: int | None) -> str:
    """Bytes for people: 2019393189 -> '1.9 GB', 274302450 -> '262 MB', 68719476736 -> '64 GB'."""
    if n is None:
        return "unknown"
    if n < MiB:
        return f"{n / 1024:.0f} KB"
    if n < GiB:
        return f"{n / MiB:.0f} MB"
    return f"{n / GiB:.1f} GB" if n < 10 * GiB else f"{n / GiB:.0f} GB"


def free_bytes(path: Path | str) -> int | None:
    """Bytes free to this user on the disk that holds `path`, or will once it is made (its
    nearest existing parent's); None if that cannot be measured."""
    probe = Path(path).expanduser()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def full(exc: BaseException, where: Path | str, doing: str | None = None) -> DiskFull | None:
    """`exc` as a full disk under `where`, if that is what it was, else None.

    It was if anything in its chain says so (ENOSPC, EDQUOT, SQLITE_FULL, their texts), or
    if it is a storage library's failure (SQLite's, Chroma's) while the disk has less than
    LOW_SPACE free: those hide the cause ("disk I/O error", "Error in compaction").
    """
    if isinstance(exc, ServerFull):
        return None
    if isinstance(exc, DiskFull):  # said by a layer beneath: said again of `where`
        return exc.doing(doing, where) if doing else exc
    free = free_bytes(where)
    if says_full(exc):
        return DiskFull(where, free or 0, doing)
    if free is not None and free < LOW_SPACE and any(_from_storage(e) for e in _chain(exc)):
        return DiskFull(where, free, doing)
    return None


def raise_if_full(exc: BaseException, where: Path | str, doing: Callable[[], str]) -> None:
    """Raise `exc` as DiskFull, said of the command that met it (`doing()`: what it had
    done), if it was a full disk under `where`; else return, for the caller to re-raise."""
    found = full(exc, where)
    if found is not None:
        raise found.doing(doing(), where) from exc


def says_full(exc: BaseException) -> bool:
    """Whether anything in `exc`'s chain says the disk is full (a server's, too)."""
    return any(_says_full(e) for e in _chain(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _says_full(exc: BaseException) -> bool:
    import sqlite3

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if (
        isinstance(exc, sqlite3.Error)
        and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    ):
        return True
    text = str(exc).lower()
    return any(t in text for t in FULL_TEXTS)


def _from_storage(exc: BaseException) -> bool:
    """SQLite's error, or any raised inside chromadb: a client whose start failed on the full
    disk is kept by chromadb, and the next open fails in it with an AttributeError."""
    import sqlite3

    if isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("chromadb"):
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith("chromadb")
