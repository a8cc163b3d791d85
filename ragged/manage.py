"""Managing what is stored: listing sources, removing files, listing and deleting collections."""

from __future__ import annotations

import fnmatch
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ragged.disk import raise_if_full
from ragged.errors import StoreError
from ragged.index import label

if TYPE_CHECKING:
    from ragged.index import Index

STATUSES = ("ok", "pending", "failed", "missing")
# A stored file this machine cannot find: deleted or moved outside any folder ingested since,
# or on a disk not mounted now. Still searched. (Not said on a shared server: see below.)
MISSING = (
    "not found on this machine; still searched until `ragged remove` or an ingest of its folder"
)
GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class SourceInfo:
    path: str
    label: str
    chunks: int
    pages: int | None
    ingested_at: str  # ISO 8601 with the UTC offset; "" for a file never stored
    status: str  # ok | pending (chunks await embeddings) | failed (see reason) | missing
    reason: str = ""  # why the last attempt failed (an older version may still be stored)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="seconds")


def list_sources(
    index: Index, pattern: str | None = None, status: str | None = None
) -> list[SourceInfo]:
    """Stored files and remembered failures, optionally only those matching a glob or status."""
    failures = {f.path: f for f in index.catalog.failures()}
    found: dict[str, SourceInfo] = {}
    # A shared server's collection holds other machines' files, which are not here either:
    # nothing tells them from this machine's missing ones, and they are not for it to remove.
    local = not index.store.shared
    for f in index.files():
        failure = failures.get(f.path)
        state, why = ("failed", failure.reason) if failure else (f.status, "")
        if local and not failure and not os.path.lexists(f.path):  # 1,831 stats: ~5 ms
            state, why = "missing", MISSING
        found[f.path] = SourceInfo(
            f.path, label(f.path), f.chunks, f.pages, _iso(f.ingested_at), state, why
        )
    for path, failure in failures.items():
        found.setdefault(path, SourceInfo(path, label(path), 0, None, "", "failed", failure.reason))
    chosen = [found[p] for p in sorted(found)]
    if pattern:
        keep = set(_glob(pattern, list(found)))
        chosen = [s for s in chosen if s.path in keep]
    if status:
        chosen = [s for s in chosen if s.status == status]
    return chosen


@dataclass
class Removal:
    """What `remove` would forget, before it does."""

    paths: list[str] = field(default_factory=list)
    # True when an argument named a folder, a pattern or an ambiguous suffix: more than the
    # files it spells out, so a person should see the count before anything goes.
    wide: bool = False
    unmatched: list[str] = field(default_factory=list)


def plan_removal(index: Index, given: Sequence[str], cwd: str | None = None) -> Removal:
    """Resolve what the user typed to stored files: labels, absolute or relative paths, globs.

    e.g. `~/notes/a.md`, `../notes/a.md`, `notes/a.md` (the end of a stored path, as shown
    in Sources), `~/notes` (every stored file under it), `'*.pdf'`.
    """
    cwd = cwd or os.getcwd()
    stored = [f.path for f in index.files()]
    plan = Removal()
    chosen: set[str] = set()
    for raw in given:
        text = os.path.expanduser(raw.strip())
        if text.startswith("…/"):  # a label shortened for a table
            text = text[2:]
        matched, wide = _resolve(text, stored, cwd)
        if not matched:
            plan.unmatched.append(raw)
        plan.wide = plan.wide or wide
        chosen.update(matched)
    plan.paths = sorted(chosen)
    return plan


def _resolve(text: str, stored: list[str], cwd: str) -> tuple[list[str], bool]:
    if GLOB_CHARS & set(text):
        return _glob(text, stored, cwd), True
    absolute = os.path.normpath(os.path.join(cwd, text))
    for candidate in dict.fromkeys([absolute, os.path.realpath(absolute)]):
        if candidate in stored:
            return [candidate], False
        prefix = candidate.rstrip(os.sep) + os.sep
        under = [s for s in stored if s.startswith(prefix)]
        if under:
            return under, True
    # The end of a stored path, on a component boundary: what Sources shows for a file.
    tail = os.sep + os.path.normpath(text).lstrip(os.sep)
    ends = [s for s in stored if s.endswith(tail)]
    return ends, len(ends) > 1


def _glob(pattern: str, stored: list[str], cwd: str | None = None) -> list[str]:
    """Stored paths a glob matches: whole, as a label, or as the end of the path."""
    absolute = os.path.join(cwd, pattern) if cwd and not os.path.isabs(pattern) else pattern
    return [
        s
        for s in stored
        if fnmatch.fnmatch(s, absolute)
        or fnmatch.fnmatch(label(s), pattern)
        or fnmatch.fnmatch(s, f"*/{pattern}")
    ]


def _stopped(index: Index, targets: Sequence[str]) -> str:
    """What a remove that a full disk stopped has done: the catalog forgets the files first
    (reads stop serving them), then the store deletes them; a stop between leaves that to
    the next writer (docs/design.md, "The Index")."""
    try:
        kept = sum(index.catalog.file(p) is not None for p in targets)
    except sqlite3.Error:
        kept = len(targets)
    if kept == len(targets):
        return "remove stopped; nothing was removed"
    return (
        f"remove stopped: {len(targets) - kept} of {len(targets)} files are no longer "
        "searched, and their text is deleted from the data dir by `ragged doctor --fix` or "
        "the next `remove` or `ingest`"
    )


def remove(
    index: Index, paths: Sequence[str], on_problem: Callable[[str], None] | None = None
) -> list[str]:
    """Forget stored files, and leave their text readable nowhere on disk; returns those that
    were stored. `on_problem` hears why deleted text may remain in the store's files, if it may."""
    targets = sorted(set(paths))
    try:
        index.remove(targets)
    except (StoreError, sqlite3.Error, OSError) as exc:
        raise_if_full(exc, index.settings.home, lambda: _stopped(index, targets))
        raise
    problem = index.purge()
    if problem and on_problem:
        on_problem(problem)
    return targets
