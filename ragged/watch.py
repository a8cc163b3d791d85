"""watch(paths, settings, llm): keep a collection in step with folders while it runs.

The only module importing watchfiles (Rust's `notify`: inotify, FSEvents, kqueue or
ReadDirectoryChangesW, with a polling fallback for network and container mounts). It also
debounces: a batch ends once the folders have been quiet for `quiet_ms`, or after
`MAX_BATCH_MS` of continuous changes, so an editor's temp-file-and-rename save or a
`git checkout` of 100 files is one update.

Each batch is an ordinary incremental `ingest` of the watched folders, holding the write
lock only while it runs, so `ragged ingest` or `ragged remove` from another shell get their
turn between batches. Text a batch deletes (a changed file's old version) is made unreadable
in the files once the folders have been quiet for `watch_purge_s` (or at the latest ten
times that after the first such batch, if they never are), and when watch stops; not after
every batch, since that purge rewrites the store's file (an `ingest` after one edit takes
9.8 s at 100k chunks) and an editor saving every few seconds would have it rewritten each
time.

Re-walking the folders rather than ingesting just the files named by the events is
deliberate: a file named on its own bypasses .gitignore/.raggedignore and the
hidden-file rule, and only a walk sees what a deleted or moved-in folder held. It costs a
stat per unchanged file (about 0.05 s for 1,831 files, docs/benchmarks.md); nothing is
parsed or embedded again, and a moved file takes its vectors along (ingest's reuse of
identical content), its old path pruned in the same batch.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragged.errors import RaggedError

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.ingest import FileOutcome, IngestReport
    from ragged.llm import LLM

DEFAULT_QUIET_MS = 300  # editors finish a save (temp file, fsync, rename) well within this
MAX_BATCH_MS = 5_000  # a change that never stops (a log being written) still lands this often
TICK_MS = 500  # how often the loop wakes without changes, to retry pending embeddings
RETRY_FIRST_S = 2.0  # Ollama gone: first retry after this, doubling up to RETRY_MAX_S
RETRY_MAX_S = 60.0
# Folders that never go quiet (a log being written) still have deleted text purged, at the
# latest this many quiet spells (`watch_purge_s`) after the first batch that deleted some.
PURGE_LATEST = 10


@dataclass(frozen=True)
class Batch:
    """One update of the collection: what set it off, and the ingest report."""

    trigger: str  # "start" (the first sync), "changes" (file events), "retry" (a retry)
    events: int  # file events in the batch
    report: IngestReport
    retry_in: float | None = None  # seconds until the next try (embeddings pending, or error)
    error: RaggedError | None = None  # why the batch could not be applied (the store is down)

    @property
    def changed(self) -> bool:
        r = self.report
        return bool(r.added or r.updated or r.removed or r.embedded or r.new_failures)


def watch(
    paths: Sequence[Path],
    settings: Settings,
    llm: LLM,
    *,
    on_batch: Callable[[Batch], None],
    on_file: Callable[[FileOutcome], None] | None = None,
    on_busy: Callable[[int], None] | None = None,
    on_ready: Callable[[list[Path]], None] | None = None,
    on_purge: Callable[[bool], None] | None = None,
    on_purge_problem: Callable[[str], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
    quiet_ms: int = DEFAULT_QUIET_MS,
    poll: bool = False,
    stop: Any = None,
) -> None:
    """Sync the folders once, then apply every batch of changes until Ctrl-C (or `stop` is set).

    `on_busy(events)` is called as a batch starts, `on_batch` when it has been applied;
    `on_purge(True)` as a purge of deleted text starts and `on_purge(False)` when it ends,
    `on_purge_problem` with why deleted text may stay readable, if it may; `on_wait` with
    whom a batch waits for, when another process holds the write lock; `stop` is a
    threading.Event for callers that run this in a thread.
    """
    import watchfiles

    roots = folders(paths)
    relevant = _Relevance(roots, own=[settings.home])
    changes = watchfiles.watch(
        *roots,
        watch_filter=relevant,
        debounce=MAX_BATCH_MS,
        step=max(1, quiet_ms),
        stop_event=stop,
        rust_timeout=TICK_MS,
        yield_on_timeout=True,
        force_polling=True if poll else None,
    )
    retry_at: float | None = None
    retry_walk = False  # whether the retry must walk the folders again (a batch failed)
    delay = RETRY_FIRST_S
    purge_at: float | None = None  # when deleted text is to be purged, if a batch deleted some
    due_since: float | None = None  # when the first batch since the last purge deleted some

    def apply(trigger: str, events: set[tuple[Any, str]]) -> None:
        nonlocal retry_at, retry_walk, delay, purge_at, due_since
        if on_busy:
            on_busy(len(events))
        deleted = {path for change, path in events if change == watchfiles.Change.deleted}
        walk = trigger != "retry" or retry_walk
        error: RaggedError | None = None
        try:
            report = _apply(
                roots if walk else [], settings, llm, on_file, deleted=deleted, on_wait=on_wait
            )
        except RaggedError as exc:
            if trigger == "start":
                raise  # a wrong model or an unreachable store: say so at once and stop
            # Later, the store may be restarting: keep the changes for the next try.
            error, report = exc, _empty_report()
        retry_walk = error is not None
        if error is not None or (report.pending and report.embed_error):
            retry_at = time.monotonic() + delay
            retry_in: float | None = delay
            delay = min(delay * 2, RETRY_MAX_S)
        else:
            retry_at, retry_in, delay = None, None, RETRY_FIRST_S
        if report.purge_due:
            # Counted from the last batch (quiet folders, not the first change of a series),
            # but not put off for ever by folders that never go quiet.
            now = time.monotonic()
            due_since = now if due_since is None else due_since
            purge_at = min(
                now + settings.watch_purge_s, due_since + PURGE_LATEST * settings.watch_purge_s
            )
        on_batch(Batch(trigger, len(events), report, retry_in, error))

    def purge(wait: bool) -> None:
        nonlocal purge_at, due_since
        done, problem = _purge(settings, wait, on_purge)
        if done:
            purge_at = due_since = None
        elif purge_at is not None:
            purge_at = time.monotonic() + TICK_MS / 1000  # another writer's turn: next tick
        if problem and on_purge_problem:
            on_purge_problem(problem)

    try:
        with closing(changes):
            # The first step starts the watcher and returns after one tick, so nothing that
            # changes while the first sync runs is missed: it is the next batch.
            next(changes, None)
            if on_ready:
                on_ready(roots)
            apply("start", set())
            for batch in changes:
                if batch:
                    apply("changes", batch)
                elif retry_at is not None and time.monotonic() >= retry_at:
                    apply("retry", set())
                gone = [root for root in roots if not root.is_dir()]  # a stat each per tick
                if gone:
                    if not batch:
                        # Gone between batches (an unmounted disk's mount point goes without
                        # an event): the events of a deletion still being gathered come next.
                        batch = next(changes, set())
                        if batch:
                            apply("changes", batch)
                    deleted = {p for change, p in batch if change == watchfiles.Change.deleted}
                    stopped = _vanished(gone, roots, settings, deleted)
                    purge(wait=True)  # what it forgot is not left readable
                    raise stopped
                if purge_at is not None and time.monotonic() >= purge_at:
                    # Not behind a long `ingest` from another shell: it purges at its end.
                    purge(wait=False)
    except KeyboardInterrupt:
        # Stopping: what is due is not left for later (also if the Ctrl-C came during a
        # batch, before it said so). Without waiting for another writer, whose own run
        # purges it: the catalog keeps it due until done.
        purge(wait=False)
        raise
    purge(wait=False)  # stopped by `stop`


def _vanished(
    gone: Sequence[Path], roots: Sequence[Path], settings: Settings, deleted: set[str]
) -> RaggedError:
    """Forget the stored files under the folders `gone` whose deletion the batch saw, and
    say why watch stops: it cannot follow a folder made again at the same path (the OS
    watch went with the folder), and a watch that went on watching nothing synced nothing.

    Only files seen deleted: an unmounted disk's folder can vanish too (udisks removes it),
    without a deletion event for any file on it, and its files are then kept, as `ingest`
    keeps a folder's that yields no files."""
    from ragged.index import open_index
    from ragged.lock import write_lock

    def seen_deleted(path: str) -> bool:  # the file, or a folder that held it
        return any(str(p) in deleted for p in (Path(path), *Path(path).parents))

    with write_lock(Path(settings.home), wait=True), open_index(settings) as index:
        stored = {f.path for root in gone for f in index.catalog.files(str(root))}
        forget = [p for p in stored if seen_deleted(p)]
        if forget:
            index.remove(forget)
    kept = len(stored) - len(forget)
    names = " and ".join(map(str, gone)) + (" is" if len(gone) == 1 else " are")
    what = f"{len(forget)} file{'' if len(forget) == 1 else 's'} forgotten"
    if kept:
        what += f", {kept} kept (no deletion seen: an unmounted disk looks like this)"
    hint = f"run `ragged watch {' '.join(map(str, roots))}` again once it exists"
    if kept:
        hint += f"; `ragged remove {' '.join(map(str, gone))}` forgets the files kept"
    return RaggedError(f"{names} gone (deleted or moved): {what}; watch stopped", hint=hint)


def _empty_report() -> IngestReport:
    from ragged.ingest import IngestReport

    return IngestReport()


def folders(paths: Sequence[Path]) -> list[Path]:
    """The folders to watch, resolved; anything else is an error that says what to do."""
    if not paths:
        raise RaggedError("no folder to watch", hint="name one or more: `ragged watch ~/notes`")
    roots: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise RaggedError(f"{path}: no such folder")
        if not path.is_dir():
            raise RaggedError(
                f"{path}: not a folder; watch the folder that holds it",
                hint=f"`ragged watch {path.parent}`, or `ragged ingest {path}` once",
            )
        roots.append(path.resolve())
    return list(dict.fromkeys(roots))


def _apply(
    roots: Sequence[Path],
    settings: Settings,
    llm: LLM,
    on_file: Callable[[FileOutcome], None] | None,
    deleted: set[str],
    on_wait: Callable[[str], None] | None = None,
) -> IngestReport:
    """One batch: an incremental ingest of the roots under the write lock, released after."""
    from ragged.index import open_index
    from ragged.ingest import HeldBack, ingest
    from ragged.lock import write_lock

    def confirm_prune(held: HeldBack) -> bool:
        # A folder that yields no files keeps its stored files (an unmounted disk looks like
        # that), unless this batch saw their deletion happen.
        return any(p == held.folder or p.startswith(held.folder + os.sep) for p in deleted)

    # Wait for another writer (an `ingest` in another shell) rather than give up: the
    # changes are kept by the watcher meanwhile.
    with write_lock(Path(settings.home), wait=True, on_wait=on_wait):
        with open_index(settings, create=True) as index:
            return ingest(
                list(roots),
                index,
                llm,
                confirm_prune=confirm_prune,
                on_file=on_file,
                purge=False,  # the watch loop purges once the folders are quiet
            )


def _purge(
    settings: Settings, wait: bool, on_purge: Callable[[bool], None] | None
) -> tuple[bool, str | None]:
    """Make the text deleted by earlier batches unreadable in the files, under the write lock,
    if the catalog says it is due. Returns whether that is settled for now (done, not due, or
    failed: a failure is then in the catalog's hands, which retries at later runs) rather than
    to be tried at the next tick, and why deleted text may stay readable, if it may."""
    from ragged.index import open_index
    from ragged.lock import Busy, write_lock

    try:
        with write_lock(Path(settings.home), wait=wait), open_index(settings) as index:
            if not index.purge_due:
                return True, None
            if on_purge:
                on_purge(True)
            try:
                return True, index.purge()
            finally:
                if on_purge:
                    on_purge(False)
    except Busy:
        return False, None  # another writer's turn (it purges at its end, if still due)
    except (RaggedError, sqlite3.Error, OSError):
        # The collection was reset meanwhile (nothing left to purge), or the disk failed:
        # the catalog keeps the purge due for the next run. Never in place of what stopped
        # watch.
        return True, None


class _Relevance:
    """Which file events can change the collection; the rest (hidden files, temp files of
    other programs, unsupported types, ragged's own data dir) start no batch.

    The data dir (`own`) may lie inside a watched folder: each batch writes there (the
    catalog's journal comes and goes, so does the write lock), and a deleted path might have
    been a folder, so without this every batch started the next, for ever."""

    def __init__(self, roots: Sequence[Path], own: Sequence[Path] = ()) -> None:
        from ragged.ingest.loaders import readable_suffixes
        from ragged.ingest.walk import IGNORE_FILES

        self.roots = [str(r) for r in roots]
        self.own = [str(Path(p).expanduser().resolve()) for p in own]
        self.suffixes = readable_suffixes()
        self.ignore_files = set(IGNORE_FILES)

    def __call__(self, change: Any, path: str) -> bool:
        import watchfiles

        if any(path == d or path.startswith(d + os.sep) for d in self.own):
            return False
        root = next((r for r in self.roots if path.startswith(r + os.sep)), None)
        if root is None:
            return path in self.roots
        parts = path[len(root) + 1 :].split(os.sep)
        if any(p.startswith(".") for p in parts[:-1]):
            return False  # inside a hidden folder (.git, .venv): the walk skips it
        name = parts[-1]
        if name in self.ignore_files:
            return True  # the rules changed: files may be newly excluded or included
        if name.startswith("."):
            return False  # hidden files: editor swap files, .DS_Store
        if os.path.splitext(name)[1].lower() in self.suffixes:
            return True
        # A folder created, moved in or deleted: only a walk knows what it holds or held.
        return bool(change == watchfiles.Change.deleted or os.path.isdir(path))
