"""One writer at a time per data dir: a second `ragged ingest` must not interleave its writes.

And one process at a time opening the embedded store, whose library migrates it unlocked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ragged.errors import RaggedError

LOCK_NAME = "write.lock"


class Busy(RaggedError):
    """Another ragged process holds the write lock."""


@contextmanager
def write_lock(
    home: Path,
    wait: bool = False,
    waitable: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold an exclusive OS lock on the data dir; the OS drops it if the process dies (kill -9).

    `waitable`: the command has a --wait option, which the refusal then suggests. `on_wait`:
    told once, before a wait begins, whom it waits for (an `ingest --wait` that said nothing
    for the length of another's run looked hung).
    """
    from ragged.config import PRIVATE_FILE, private_dir

    path = home / LOCK_NAME
    try:
        private_dir(home)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    except OSError as exc:
        raise RaggedError(
            f"cannot write to the data dir {home}: {exc.strerror or exc}",
            hint="commands that change a collection need a writable data dir; list, search "
            "and ask work on a read-only one",
        ) from exc
    try:
        if wait and on_wait is not None:
            try:
                _lock(fd, path, wait=False)
            except Busy:
                on_wait(f"waiting for another ragged process{_holder(path)} writing to {home}")
                _lock(fd, path, wait=True)
        else:
            _lock(fd, path, wait, waitable)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def opening(path: Path) -> Iterator[None]:
    """Hold the lock file `path` while a store is opened, waiting while another process does.

    Chroma applies its schema migrations as a client opens the store, with no lock between
    processes: a `search` started beside the very first `ingest` failed with "table
    collections already exists". Held only while the client is made (milliseconds), so
    readers never wait on a writer's work. Where the file cannot be made (a read-only data
    dir, whose store nobody can be creating), the store opens without it.
    """
    with held(path):
        yield


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold the lock file `path` for a brief piece of work, waiting while another process
    holds it; without a lock where the file cannot be made (a read-only data dir). Not
    re-entrant: a second `held` of one path in one process waits for ever."""
    from ragged.config import PRIVATE_FILE

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    except OSError:
        yield
        return
    try:
        _lock(fd, path, wait=True)
        yield
    finally:
        if os.name == "nt":  # pragma: no cover - Windows may release a closed file's lock late
            import msvcrt

            with contextlib.suppress(OSError):
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        os.close(fd)  # closing the descriptor releases the lock


def _lock(fd: int, path: Path, wait: bool, waitable: bool = False) -> None:
    if os.name == "nt":  # pragma: no cover - exercised on Windows only
        import msvcrt

        mode = msvcrt.LK_LOCK if wait else msvcrt.LK_NBLCK  # type: ignore[attr-defined]
        while True:
            try:
                msvcrt.locking(fd, mode, 1)  # type: ignore[attr-defined]
                return
            except OSError as exc:
                # LK_LOCK gives up after 10 tries a second apart; waiting means as long as
                # it takes, as flock does.
                if not wait:
                    raise _busy(path, waitable) from exc
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError as exc:
        raise _busy(path, waitable) from exc


def _holder(path: Path) -> str:
    """The holder of the lock file `path` as ' (pid N)' (a holder writes its pid there), or
    an empty string if that cannot be read."""
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f" (pid {pid})" if pid else ""


def _busy(path: Path, waitable: bool) -> Busy:
    return Busy(
        f"another ragged process{_holder(path)} is writing to {path.parent}",
        hint="wait for it to finish, or run again with --wait"
        if waitable
        else "run this again when it has finished",
    )
