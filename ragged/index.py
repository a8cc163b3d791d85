"""Index: one collection, its catalog (SQLite) and its vectors (Chroma), kept in step.

Everything that writes a collection goes through an Index, in the one order that makes a
crash at any moment repairable (docs/design.md):

1. `stage`: a file's chunks, its manifest row and its FTS5 rows are committed to the catalog
   in one transaction, marked not yet embedded; the chunk ids of the file's previous version
   become tombstones in the same transaction.
2. `write_vectors`: vectors are upserted into Chroma under ids derived from (path, content,
   position), so writing them twice is harmless; then the chunks are marked embedded.
3. `flush_tombstones`: tombstoned ids are deleted from Chroma, then the tombstones.

`reconcile` finishes whatever an interrupted run left, and reads never serve a chunk the
catalog does not hold, so a file removed is never cited again, even before Chroma forgot it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ragged.catalog import PURGE_DUE_KEY, PURGE_FAILED_KEY, UNBLANKED_KEY, ChunkRow, FileRecord, now
from ragged.errors import RaggedError, StoreError

if TYPE_CHECKING:
    from ragged.catalog import Catalog
    from ragged.config import Settings
    from ragged.store import Store

# Staged files committed together (see Index.stage): a commit each cost ~0.25 ms, mostly a new
# FTS5 segment; in batches an ingest of 1,538 small files staged them in half the time.
STAGE_BATCH_FILES = 64
STAGE_BATCH_SECONDS = 0.25
DROPPING = "dropping"  # catalog meta key: `reset` is deleting this collection (see Index.drop)


@dataclass(frozen=True)
class Hit:
    """One retrieved passage."""

    id: str
    text: str
    score: float  # cosine similarity for dense hits; fused or BM25-based for others
    path: str  # absolute path of the source file: its identity
    page: int | None
    heading: str
    chunk_index: int
    tokens: int = 0  # the text's cl100k tokens as counted at ingest; 0: not known

    @property
    def label(self) -> str:
        return label(self.path)

    @property
    def location(self) -> str:
        if self.page:
            return f"page {self.page}"
        return self.heading


def label(path: str) -> str:
    """How a stored file is shown: from `~` when it lies under the home dir, else absolute.

    e.g. /home/ann/notes/ops/keys.md -> ~/notes/ops/keys.md. Unlike a path relative to the
    folder that was typed, it is the same whichever folder reached the file, and the
    `tutorial/testing.md` of two projects never look alike.
    """
    home = _home()
    if home and path.startswith(home + os.sep):
        return "~" + path[len(home) :]
    return path


def _home() -> str:
    try:
        return str(Path.home())
    except RuntimeError:  # no HOME and no passwd entry
        return ""


# -- identity and the conversions between chunk, row, metadata and hit ------------------------


def chunk_id(path: str, content_hash: str, index: int) -> str:
    """Deterministic, so re-adding the same chunk after a crash overwrites instead of duplicating."""
    return hashlib.sha256(f"{path}\0{content_hash}\0{index}".encode()).hexdigest()[:32]


def make_row(
    record: FileRecord,
    idx: int,
    text: str,
    page: int | None,
    heading: str,
    tokens: int,
    subheadings: str = "",
) -> ChunkRow:
    """A chunk of this version of this file, under its deterministic id."""
    return ChunkRow(
        id=chunk_id(record.path, record.content_hash, idx),
        path=record.path,
        idx=idx,
        text=text,
        page=page,
        heading=heading,
        tokens=tokens,
        content_hash=record.content_hash,
        subheadings=subheadings,
    )


def embed_text(row: ChunkRow) -> str:
    """What the embedding model sees: the heading path gives a section its context.

    A shared chunk's `subheadings` are left out on purpose (they are found by keyword):
    embedding them moved the relevance self-test of the small test collection across its
    edge, so that "How long does the ferry to Zanzibar take?" was refused (docs/design.md,
    "Chunking and embeddings"). That is a change to relevance, to be measured with a real
    model before it is made."""
    return f"{row.heading}\n\n{row.text}" if row.heading else row.text


def embed_title(row: ChunkRow) -> str | None:
    """The chunk's document title, for models whose document format has a slot for one
    (embeddinggemma): the top of its heading path, e.g. "Path Parameters" from
    "Path Parameters > Path parameters with types"; None for a file without headings."""
    from ragged.ingest.loaders import HEADING_SEPARATOR

    return row.heading.split(HEADING_SEPARATOR, 1)[0].strip() or None


def chunk_metadata(row: ChunkRow, record: FileRecord | None = None) -> dict[str, Any]:
    """Chroma metadata for a chunk; Chroma rejects None values, so absent fields are left out.

    With the text Chroma keeps, this is all a catalog row is rebuilt from. The file's size and
    mtime let another machine's catalog (a cache of a shared server) list the file as it is,
    so its own ingest of the same folder stats instead of hashing, and decide which version
    of a file is newer when two machines wrote different ones.
    """
    meta: dict[str, Any] = {
        "path": row.path,
        "heading": row.heading,
        "chunk_index": row.idx,
        "content_hash": row.content_hash,
    }
    if row.page is not None:
        meta["page"] = row.page
    if row.subheadings:  # most chunks have none: their metadata stays as it was
        meta["subheadings"] = row.subheadings
    if record is not None and record.content_hash == row.content_hash:
        meta["size"] = record.size
        meta["mtime_ns"] = record.mtime_ns
    return meta


def row_from_store(id_: str, text: str, meta: dict[str, Any], tokens: int = 0) -> ChunkRow:
    page = meta.get("page")
    return ChunkRow(
        id=id_,
        path=str(meta.get("path") or ""),
        idx=int(meta.get("chunk_index", 0)),
        text=text,
        page=int(page) if page is not None else None,
        heading=str(meta.get("heading") or ""),
        tokens=tokens,
        content_hash=str(meta.get("content_hash") or ""),
        subheadings=str(meta.get("subheadings") or ""),
    )


def hit_from_row(row: ChunkRow, score: float) -> Hit:
    return Hit(row.id, row.text, score, row.path, row.page, row.heading, row.idx, row.tokens)


# -- the collection ---------------------------------------------------------------------------


class CollectionMissing(StoreError):
    """A command named a collection that does not exist."""


class Index:
    """One collection's catalog + store pair; open it with `open_index`."""

    def __init__(self, settings: Settings, catalog: Catalog, store: Store) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.name = store.name
        # Chunks restored from the store when the index was opened with a lost catalog.
        self.rebuilt: int | None = None
        self._wrote = False  # anything written to a shared store: other machines must look
        self.stale: str | None = None  # why the shared server could not be asked, if it could not
        self.unblanked: str | None = None  # a saved conversation that could not be rewritten
        self.dropped = False  # `drop` closed the catalog
        self._staged = 0  # files staged in the catalog's open batch

    def deleted_here(self) -> bool:
        """Whether a `reset` on this machine deleted (or is deleting) the catalog held open."""
        return self.catalog.replaced() or self.catalog.meta(DROPPING) is not None

    def outdated(self) -> bool:
        """Whether the collection this index opened was deleted since (`reset` in another
        process, or on another machine sharing the server, or being deleted now): a
        long-lived process (serve, chat) then opens it again, or it would answer from the
        deleted catalog it still holds open."""
        if self.deleted_here():
            return True
        if not self.store.shared:
            return False
        self.store.reload()  # one request; `follow` then reads the revision from it
        try:
            return not self.store.exists
        except StoreError:
            return False  # the server is down: `follow` says so, and the cache answers

    def follow(self) -> None:
        """Before a long-lived process reuses this index: catch up with a shared server
        (one request while nothing changed), as opening it would."""
        if self.store.shared:
            try:
                self.refresh()
                self.stale = None
            except StoreError as exc:
                self.stale = exc.message

    def close(self) -> None:
        self._remember_reads()
        self.catalog.close()  # commits a batch of staged files

    def _remember_reads(self) -> None:
        """Record embedded Chroma's fingerprint as this process's reads left it.

        Reading moves Chroma's own files, and an unchanged re-ingest trusts the store unopened
        only while they are as the last clean run recorded them: after any `search` or `ask`
        it opened Chroma (0.5-1 s) to compare counts. So a process that found the files as
        recorded, and is still the last to have touched them, records them as it leaves them,
        unless a run is under way meanwhile (Catalog.settle_store_fingerprint).
        """
        store, catalog = self.store, self.catalog
        try:
            if store.found is None or store.found != catalog.store_fingerprint:
                return  # never opened here, or changed by someone else before it was
            now = store.left_alone()
            if now is not None and now != store.found:
                catalog.settle_store_fingerprint(store.found, now)
        except (RaggedError, sqlite3.Error):
            pass  # a read-only data dir, a dropped catalog: the next ingest compares

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the embedding model stamp ---------------------------------------------------------

    def check_model(self, model: str) -> None:
        """Refuse another embedding model before any work; the catalog answers if it knows."""
        from ragged.models import full_name

        recorded = self.catalog.embed_model()
        if recorded is None or self.store.shared or full_name(recorded) != full_name(model):
            # The store is the authority: it raises with the collection's own record and the
            # fix. A server may hold other machines' work under another model.
            self.store.check_model(model)

    # -- writes (the caller holds the write lock) -------------------------------------------

    def stage(self, record: FileRecord, rows: Sequence[ChunkRow]) -> None:
        """Step 1: store a file's chunks as text awaiting vectors.

        Files are committed together, in batches of at most STAGE_BATCH_FILES or
        STAGE_BATCH_SECONDS, and always before any vector is written (write_vectors,
        flush_tombstones): a kill loses only staged files, which the next run reads again.
        """
        catalog = self.catalog
        catalog.open_batch()
        catalog.replace_file(record, rows)
        self._staged += 1
        started = catalog.batch_started or 0.0
        if self._staged >= STAGE_BATCH_FILES or time.monotonic() - started >= STAGE_BATCH_SECONDS:
            self.commit()

    def commit(self) -> None:
        """Commit staged files: before the store is touched, the catalog holds what it will."""
        self.catalog.commit_batch()
        self._staged = 0

    def stage_more(self, path: str, rows: Sequence[ChunkRow]) -> None:
        """Step 1 again for a file staged in parts (a large file read in blocks).

        The file was first staged with a placeholder stat and hash, which `complete` replaces
        once the last part is in: a run killed half way leaves a file that the next run sees
        as changed and reads again.
        """
        self.catalog.append_chunks(path, rows)

    def complete(self, record: FileRecord) -> None:
        self.catalog.complete_file(record)

    def write_vectors(
        self, rows: Sequence[ChunkRow], vectors: Sequence[Sequence[float]], model: str
    ) -> None:
        """Step 2: upsert vectors for staged chunks, then mark them embedded."""
        if not rows:
            return
        self.commit()
        self.store.ensure(model, len(vectors[0]))
        records = {path: self.catalog.file(path) for path in {r.path for r in rows}}
        self.store.add(
            [r.id for r in rows],
            vectors,
            [r.text for r in rows],
            [chunk_metadata(r, records[r.path]) for r in rows],
        )
        self.catalog.mark_embedded([r.id for r in rows], model)
        self._wrote = True

    def flush_tombstones(self) -> None:
        """Step 3: make Chroma forget what the catalog already has, and saved conversations
        the passages of those chunks (a changed file's old version included)."""
        self.commit()
        tomb = self.catalog.tombstones()
        if tomb:
            self.store.delete(tomb)
            self._wrote = True
            # Before the tombstones go: a run killed in between blanks them next time. What a
            # conversation that cannot be rewritten now (a full disk) keeps waits in its own
            # queue, which needs no Chroma (kept as tombstones, they would be deleted from
            # the store again at every run).
            self._forget_passages(ids=tomb, queue=True)
            self.catalog.mark_purge_due()  # before the tombstones go, as above
            self.catalog.clear_tombstones(tomb)
        elif self.catalog.meta(UNBLANKED_KEY) is not None:
            self._forget_passages(ids=[], queue=True)

    def touch(self, path: str, size: int, mtime_ns: int) -> None:
        self.catalog.touch(path, size, mtime_ns)

    def reuse(self, record: FileRecord, donors: Sequence[FileRecord]) -> int | None:
        """A moved, renamed or copied file: copy the vectors of one of `donors`, the stored
        files with the same bytes (`Catalog.files_with_hash`).

        Returns the chunks written, or None when no donor can give its vectors.
        """
        for donor in donors:
            # The donor may be this very path, ingested before under another model.
            if donor.embed_model != record.embed_model:
                continue
            old = self.catalog.chunks_of(donor.path)
            vectors = self.store.vectors([c.id for c in old])
            if not old or len(vectors) != len(old):
                continue
            rows = [
                make_row(record, c.idx, c.text, c.page, c.heading, c.tokens, c.subheadings)
                for c in old
            ]
            # Same order as a parsed file: catalog first (as pending), then the vectors.
            self.stage(dataclasses.replace(record, pages=donor.pages), rows)
            self.write_vectors(rows, [vectors[c.id] for c in old], record.embed_model or "")
            return len(rows)
        return None

    def remove(self, paths: Iterable[str]) -> int:
        """Forget files: the catalog first (so reads stop serving them), then Chroma."""
        paths = list(paths)
        removed = self.catalog.remove_files(paths)
        self.flush_tombstones()
        self.announce()
        self._forget_passages(paths)
        return removed

    def _forget_passages(
        self,
        paths: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        queue: bool = False,
    ) -> None:
        """Saved chat conversations keep the passages given with each answer: blank those
        of removed files or chunks (of every file, when neither is given).

        With `queue`, chunk ids a conversation could not be rewritten for now (a full disk)
        wait in the catalog, with those of earlier tries, for the next flush. Either way
        `unblanked` says which conversation, for the command to report in one line."""
        from ragged.catalog import location
        from ragged.conversation import NotBlanked, forget_passages

        home, where = Path(self.settings.home), location(self.settings)
        queued = self.catalog.unblanked() if queue else set()
        if queued and ids is not None:
            ids = sorted({*ids, *queued})
        try:
            forget_passages(home, self.name, paths, ids=ids, location=where)
        except OSError as exc:
            then = (
                "the next `ingest` or `remove` tries again"
                if queue and ids
                else "delete that conversation to remove them"
            )
            self.unblanked = (
                f"could not blank the passages of deleted text in the saved conversation "
                f"{exc.filename}: {exc.strerror or exc}; {then}"
            )
            if queue and ids:
                # Only what the conversations not rewritten hold: deleted chunks they do not
                # cite would make the list grow with every edit while one stays unwritable.
                held = exc.ids if isinstance(exc, NotBlanked) else set(ids)
                with contextlib.suppress(sqlite3.Error, StoreError):
                    self.catalog.note_unblanked(add=held, done=queued - held)
            return
        if queued:
            with contextlib.suppress(sqlite3.Error, StoreError):
                self.catalog.note_unblanked(done=queued)
            self.unblanked = None  # what failed before is done now

    def begin_run(self) -> None:
        """Finish what an interrupted run left, then mark this one as under way."""
        self.reconcile()
        self.catalog.begin_run()

    def end_run(self) -> None:
        self.flush_tombstones()
        self.announce()
        self.catalog.end_run(self.store.fingerprint())
        files = self.store.vector_files()
        if files is not None:
            self.catalog.set_meta("vector_files", json.dumps(files))

    def lost_vector_files(self) -> list[str]:
        """Vector files the store had at the end of the last clean run and has no longer."""
        recorded = json.loads(self.catalog.meta("vector_files") or "[]")
        return [f for f in recorded if not os.path.exists(os.path.join(self.store.where, f))]

    # -- a shared server: the server is the truth, this catalog a cache ---------------------

    def announce(self) -> None:
        """Tell other machines sharing the server that this collection changed.

        Then this catalog catches up with the server itself: the token it reads now is its
        own, and any other writer's chunks landed before that writer replaced the token, so
        an id comparison made after reading it sees them all; a writer who replaces the token
        later moves it again. (Trusting its own token without comparing could miss a write
        that landed between this machine's last look and its own write.)
        """
        if self._wrote and self.store.shared:
            self.store.bump_revision()
            self.refresh()
        self._wrote = False

    def refresh(self, clean: bool = False) -> None:
        """Bring this machine's catalog up to date with a shared server.

        The server records a revision token that every writer replaces after writing. While it
        is the one this catalog last saw, nothing is read (one request). When it moved, the
        ids alone are compared (0.4 s at 100k chunks) and only new chunks are fetched with
        their text and metadata; chunks gone from the server leave the catalog. The token is
        read before the comparison, so a write that lands meanwhile moves it again and the
        next refresh sees that write. Chunks staged here but not yet embedded are this
        machine's own work and stay. With `clean` (a writer), chunks of an older version of a
        file (two machines wrote different copies of it) are deleted from the server.
        """
        store, catalog = self.store, self.catalog
        if not store.shared:
            return
        if not store.exists:
            # Deleted on the server, by `ragged reset` on another machine.
            gone = catalog.embedded_ids()
            # First: once forgotten here, these ids are known nowhere.
            self._forget_passages(ids=sorted(gone), queue=True)
            catalog.forget_chunks(gone)  # marks a purge due (their words), in the same step
            catalog.set_meta("server_revision", None)
            return
        token = store.revision
        if token is None and clean:
            store.bump_revision()  # a collection from before revisions: give it one
            token = store.revision
        if token is not None and token == catalog.meta("server_revision"):
            return
        server = store.ids()
        cached, pending = catalog.embedded_ids(), catalog.pending_ids()
        if cached - server:
            # Removed, or replaced by a new version, by another machine: as if done here.
            # Asked again by id first: the listing is read in pages, and a delete between two
            # pages can make ids that are still there look gone (the cache catches up next
            # time; a blanked passage would not).
            missing = cached - server - store.present(sorted(cached - server))
            self._forget_passages(ids=sorted(missing), queue=True)
            catalog.forget_chunks(missing)
        model = (store.embedding or (self.settings.embed_model, 0))[0]
        if server & pending:
            catalog.mark_embedded(sorted(server & pending), model)
        # Tombstoned ids are this machine's removals the server has not heard of yet.
        new = sorted(server - cached - pending - set(catalog.tombstones()))
        for found in files_from_store(store.get(new), model):
            record, rows, stale = found.record, found.rows, list(found.stale)
            known = catalog.file(record.path)
            if known is not None and known.content_hash == record.content_hash:
                # More chunks of the version cached here: keep them all.
                have = {r.id: r for r in catalog.chunks_of(known.path)}
                rows = sorted({**have, **{r.id: r for r in rows}}.values(), key=_idx)
                record = dataclasses.replace(record, chunks=len(rows))
            elif known is not None and _newer(known, record):
                stale += [r.id for r in rows]  # an older copy than the one cached here
                rows = []
            if rows:
                if known is not None:
                    # The version cached here, replaced (seen only while its writer is between
                    # uploading the new chunks and deleting the old): its passages go first.
                    replaced = {c.id for c in catalog.chunks_of(known.path)}
                    old = sorted(replaced - {r.id for r in rows})
                    self._forget_passages(ids=old, queue=True)
                catalog.replace_file(record, rows, embedded=True, tombstone=False)
            if clean and stale:
                store.delete(stale)
        catalog.set_meta("server_revision", token or "")

    def reconcile(self) -> None:
        """Make Chroma and the catalog agree again, whatever a crash left behind.

        - ids the catalog tombstoned are deleted from Chroma;
        - vectors Chroma holds for chunks the catalog still has as pending are kept (the
          id says they are of this very text) and the chunks marked embedded;
        - embedded chunks Chroma lacks go back to pending, to be embedded again;
        - vectors of a file the catalog knows in another version are stale: deleted;
        - vectors of a file the catalog has never heard of are adopted with their text and
          metadata, never deleted: a lost catalog must not cost the store its data.
        """
        self.flush_tombstones()
        catalog, store = self.catalog, self.store
        if not catalog.interrupted:
            # Untouched since our last clean run: nothing to compare, and Chroma stays unopened.
            fingerprint = store.fingerprint()
            if fingerprint is not None and fingerprint == catalog.store_fingerprint:
                return
            # Otherwise matching counts are enough to skip the id-by-id comparison.
            if store.count() == catalog.embedded_count() and not catalog.pending_count():
                return
        embedded = catalog.embedded_ids()
        pending = catalog.pending_ids()
        in_store = store.ids()
        if in_store & pending:
            model = (store.embedding or (self.settings.embed_model, 0))[0]
            catalog.mark_embedded(sorted(in_store & pending), model)
        missing = embedded - in_store
        if missing:
            catalog.mark_unembedded(missing)
        unknown = sorted(in_store - embedded - pending)
        if unknown and not store.shared:
            # On a server an id this catalog never wrote may be another machine's chunk.
            self._settle_unknown(unknown)

    def _settle_unknown(self, ids: list[str]) -> None:
        model = (self.store.embedding or (self.settings.embed_model, 0))[0]
        stale: list[str] = []
        for found in files_from_store(self.store.get(ids), model):
            stale += found.stale
            if self.catalog.file(found.record.path) is not None:
                stale += [r.id for r in found.rows]
            else:
                self.catalog.replace_file(found.record, found.rows, embedded=True)
        if stale:
            self.catalog.mark_purge_due()  # before: a kill after the delete leaves it due
        self.store.delete(stale)

    def drop(self) -> str | None:
        """Delete the collection: its vectors, its manifest and its keyword index.

        Returns why deleted text may remain in the store's files, if it may (see `purge`).
        """
        # Marked first, so that a reader opening the collection meanwhile (or after a crash
        # half-way) takes it for gone, not for a catalog whose vectors were lost.
        self.catalog.set_meta(DROPPING, "1")
        problem = self.store.drop()
        self.dropped = True
        self.catalog.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.catalog.path}{suffix}").unlink(missing_ok=True)
        self._forget_passages(None)
        return problem

    def purge(self) -> str | None:
        """After a removal: make the removed text unreadable in the catalog's and the store's files.

        Returns why deleted text may remain in the store's files, if it may. Called with the
        write lock held.
        """
        from concurrent.futures import ThreadPoolExecutor

        from ragged.store import Lasting

        catalog, store = self.catalog, self.store
        seen = catalog.meta(PURGE_DUE_KEY)
        # The purge rewrites the store's files, but not what they hold: if the last run's
        # fingerprint still matched them, it is recorded again after, or the next unchanged
        # re-ingest would open Chroma (0.5-1 s) to check a store nothing wrote to.
        recorded = catalog.store_fingerprint
        matched = bool(recorded) and recorded == store.fingerprint() and not catalog.interrupted
        problems: list[str] = []

        def purge_catalog() -> None:
            try:
                catalog.purge()
            except sqlite3.Error as exc:  # a full disk: the store's part is still worth doing
                problems.append(f"could not purge deleted text from {catalog.path}: {exc}")

        if self._room_to_purge_at_once():
            # Two files, two connections, and SQLite works without the GIL: the store's
            # VACUUM runs on a thread while the catalog merges its keyword index here (both
            # O(store): 1.9 s and 0.8 s at 100k chunks). Leaving the block waits for the
            # VACUUM, even when Ctrl-C stops the catalog's part: nothing outlives the command.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="purge") as pool:
                storing = pool.submit(store.purge)
                purge_catalog()
                stored = storing.result()
        else:
            purge_catalog()
            stored = store.purge()
        if stored is not None:
            problems.append(stored)
        # What is recorded below is bookkeeping: on a disk too full to write even that, the
        # purge stays due (marked before the deletion) and the fingerprint unrecorded (the
        # next run compares counts), which is safe; the problem is still said.
        with contextlib.suppress(sqlite3.Error):
            if not problems:
                catalog.clear_purge_due(seen)
            elif isinstance(stored, Lasting) and len(problems) == 1:
                # Not doable on these files (laid out by another Chroma version, which the
                # notice sends to `chroma vacuum`): trying again would cost a whole purge
                # each time for nothing. It did not succeed, so an earlier failure stays.
                catalog.clear_purge_due(seen, purged=False)
            else:
                # A full disk, a held lock: the next runs try again, and `doctor` names the
                # problem until a purge succeeds.
                catalog.purge_failed(seen, "; ".join(problems))
            if matched:
                catalog.set_meta("store_fingerprint", store.fingerprint() or "")
        if problems == [stored]:
            return stored  # its kind (Lasting or not) decides what the notice advises
        return "; ".join(problems) or None

    def _room_to_purge_at_once(self) -> bool:
        """Whether the disk holds what both purges write while they run, side by side: the
        catalog's WAL grows by up to its file while it merges, the store's VACUUM needs up
        to twice its file. One after the other, only the larger must fit at a time: on a
        nearly full disk both then succeed where together both failed."""
        import shutil

        catalog_bytes = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                catalog_bytes += Path(f"{self.catalog.path}{suffix}").stat().st_size
        try:
            free = shutil.disk_usage(self.settings.home).free
        except OSError:
            return False
        return free > catalog_bytes + self.store.purge_space()

    @property
    def purge_due(self) -> bool:
        """Chunks were deleted (a file changed, pruned, replaced by a copy, or removed by
        another machine) and their text may still be readable in the files."""
        return self.catalog.meta(PURGE_DUE_KEY) is not None

    def purge_cache(self) -> str | None:
        """On a shared server, purge this machine's catalog when a catch-up forgot chunks other
        machines removed or replaced: their words stay in its keyword index until then, and a
        machine that only reads would keep them for ever. The server's files are the server's
        (`chroma vacuum` there), so this is the catalog's merge alone (0.1 s at 10k chunks).

        A reader takes no write lock (a writer started meanwhile would be refused) and does
        not wait behind another process's write: the purge then stays due, for the writer's
        own at its end or the next command. Returns why deleted text may remain, if it may.
        """
        catalog = self.catalog
        if not self.store.shared or self.dropped or catalog.read_only:
            return None  # a read-only data dir: its catalog is as it was, nothing forgotten
        seen = catalog.meta(PURGE_DUE_KEY)
        if seen is None:
            return None
        try:
            if not catalog.purge(wait=False):
                return None
            with contextlib.suppress(sqlite3.OperationalError, StoreError):
                catalog.clear_purge_due(seen, wait=False)  # busy: the next command clears it
        except sqlite3.Error as exc:  # a full disk: tried again, three times in all
            problem = f"could not purge deleted text from {catalog.path}: {exc}"
            with contextlib.suppress(sqlite3.Error, StoreError):
                catalog.purge_failed(seen, problem)
            return problem
        return None

    def purge_if_due(self) -> str | None:
        """`purge` when chunks were deleted since the last one: what `remove` does, after the
        runs that delete text too. It costs time in proportion to the store (0.5 s at 10k
        chunks, docs/benchmarks.md), so a run that deleted nothing does not pay it."""
        return self.purge() if self.purge_due else None

    def rebuild_from_store(self) -> int:
        """Refill a lost or damaged catalog (manifest, chunk texts, BM25 index) from Chroma.

        Chroma keeps every chunk's text and metadata, so only what it never had stays unknown:
        a file's size and mtime become 0, and the next ingest hashes each file once, finds the
        same content and keeps its chunks. Returns the number of chunks restored.
        """
        recorded = self.store.embedding
        model = recorded[0] if recorded else None
        files = [(f.record, f.rows) for f in files_from_store(self.store.iter_texts(), model)]
        self.catalog.replace_all(files)
        self.catalog.set_meta("server_revision", None)  # a server's cache: compare next time
        return sum(len(rows) for _, rows in files)

    def adopt(self, files: Iterable[StoredFile]) -> set[str]:
        """Record the files another store holds; returns the chunk ids to write here.

        A file this catalog already lists with exactly these chunks, all of them in this
        store, is left alone. Others are staged, so the caller writes their vectors with
        `write_vectors`.
        """
        present = self.store.ids()
        wanted: set[str] = set()
        for found in files:
            rows, ids = found.rows, {r.id for r in found.rows}
            record = dataclasses.replace(found.record, status="pending")
            known = self.catalog.file(record.path)
            if (
                known is not None
                and known.status == "ok"
                and known.content_hash == record.content_hash
                and ids <= present
                and {c.id for c in self.catalog.chunks_of(record.path)} == ids
            ):
                continue
            self.stage(record, rows)
            wanted |= ids
        # An older version of a copied file was here: its chunks are tombstoned now.
        self.flush_tombstones()
        return wanted

    # -- reads ------------------------------------------------------------------------------

    def files(self, under: str | None = None) -> list[FileRecord]:
        return self.catalog.files(under)

    def matching(self, pattern: str) -> list[str]:
        """Stored files whose path or label matches a glob (`*.pdf`, `guides/*`)."""
        return [
            f.path
            for f in self.catalog.files()
            if fnmatch.fnmatch(f.path, pattern)
            or fnmatch.fnmatch(label(f.path), pattern)
            or fnmatch.fnmatch(f.path, f"*/{pattern}")
        ]

    def lexical(self, question: str, k: int, paths: Sequence[str] | None = None) -> list[Hit]:
        return [hit_from_row(row, s) for row, s in self.catalog.search(question, k, paths)]

    def held_now(self, *found: list[Hit]) -> list[list[Hit]]:
        """Each list of hits without those the catalog no longer holds, all judged by one
        read: two searches made a moment apart (keyword, then vector) would otherwise show
        the old and the new version of a file an ingest replaced between them."""
        held = self.catalog.chunks_by_id(list({hit.id for hits in found for hit in hits}))
        return [[hit for hit in hits if hit.id in held] for hits in found]

    def dense(
        self, vector: Sequence[float], k: int, paths: Sequence[str] | None = None
    ) -> list[Hit]:
        """Nearest chunks by cosine; only those the catalog holds, so nothing removed is served.

        Raises VectorsLost when the store returns fewer chunks than the catalog says it holds
        (its vector files deleted or damaged): its answers would be garbage, not results;
        and CollectionMissing when that is because a `reset` deleted the collection meanwhile.
        """
        try:
            return self._dense(vector, k, paths)
        except CollectionMissing:
            raise
        except StoreError:
            if self.outdated():  # opened before a reset marked it, asked after the drop
                raise missing_collection(self.settings, self.name) from None
            raise

    def _dense(
        self, vector: Sequence[float], k: int, paths: Sequence[str] | None = None
    ) -> list[Hit]:
        if paths == []:
            return []
        lost = self.lost_vector_files()
        if lost:
            raise VectorsLost(
                f"{len(lost)} vector files of collection '{self.name}' were deleted from "
                f"{self.store.where} (e.g. {lost[0]})"
            )
        where = {"path": {"$in": list(paths)}} if paths else None
        found = self.store.query(vector, k, where)
        if len(found) < k:
            expected = min(k, self.catalog.embedded_count(paths))
            if len(found) < expected:
                raise VectorsLost(
                    f"the vector store returned {len(found)} of the {expected} chunks it should "
                    f"hold for collection '{self.name}': its vectors are lost or damaged"
                )
        known = self.catalog.chunks_by_id([id_ for id_, *_ in found])
        return [hit_from_row(known[id_], score) for id_, _, _, score in found if id_ in known]


class VectorsLost(StoreError):
    """The store holds fewer vectors than the catalog says were written."""


@dataclass(frozen=True)
class StoredFile:
    """One file as a store holds it: its manifest row, its chunks, and stale duplicates."""

    record: FileRecord
    rows: list[ChunkRow]
    stale: tuple[str, ...] = ()  # ids of another, older version of the same path


def files_from_store(
    chunks: Iterable[tuple[str, str, dict[str, Any]]], model: str | None, status: str = "ok"
) -> list[StoredFile]:
    """Chunks as Chroma keeps them (id, text, metadata), grouped into files in chunk order.

    What the store never kept is filled so that a later ingest stays cheap: a file written
    before its size and mtime were recorded gets 0 and 0, and is hashed once. A path with
    chunks of two versions (two machines wrote different copies) keeps the newer one.
    """
    from ragged.tokens import count_tokens

    versions: dict[str, dict[str, list[tuple[ChunkRow, dict[str, Any]]]]] = {}
    for id_, text, meta in chunks:
        row = row_from_store(id_, text, meta, count_tokens(text))
        if row.path:  # not written by ragged: nothing to tie it to a file
            versions.setdefault(row.path, {}).setdefault(row.content_hash, []).append((row, meta))
    files = []
    for path in sorted(versions):
        by_hash = versions[path]
        ranked = sorted(by_hash, key=lambda h: (_stat(by_hash[h])[1], h), reverse=True)
        pairs = sorted(by_hash[ranked[0]], key=lambda p: p[0].idx)
        rows = [row for row, _ in pairs]
        size, mtime_ns = _stat(pairs)
        pages = [r.page for r in rows if r.page is not None]
        record = FileRecord(
            path=path,
            size=size,
            mtime_ns=mtime_ns,
            content_hash=ranked[0],
            pages=max(pages) if pages else None,
            chunks=len(rows),
            status=status,
            embed_model=model,
            ingested_at=now(),
        )
        stale = tuple(row.id for h in ranked[1:] for row, _ in by_hash[h])
        files.append(StoredFile(record, rows, stale))
    return files


def _stat(pairs: Sequence[tuple[ChunkRow, dict[str, Any]]]) -> tuple[int, int]:
    meta = pairs[0][1]
    return int(meta.get("size") or 0), int(meta.get("mtime_ns") or 0)


def _newer(ours: FileRecord, theirs: FileRecord) -> bool:
    """Which of two versions of one path wins: the later mtime, then the larger hash."""
    return (ours.mtime_ns, ours.content_hash) > (theirs.mtime_ns, theirs.content_hash)


def _idx(row: ChunkRow) -> int:
    return row.idx


def open_index(
    settings: Settings,
    collection: str | None = None,
    *,
    create: bool = False,
    deleting: bool = False,
) -> Index:
    """The one factory for a collection's catalog + store pair.

    A collection that does not exist is refused, naming those that do, unless `create`
    (only `ingest` and `copy` make collections). A catalog that was lost or emptied while
    the store still holds the collection is rebuilt from the store: Chroma keeps every
    chunk's text and metadata, so nothing needs to be embedded again.

    A collection a `reset` is deleting is gone for readers; `ingest` (`create`) finishes the
    deletion of one a stopped reset left, and `reset` (`deleting`) gets it to finish itself.
    """
    from ragged.catalog import catalog_path, open_catalog
    from ragged.store import open_store

    name = collection or settings.collection
    store = open_store(settings, name)
    had_catalog = catalog_path(settings, name).exists()
    if not create and not had_catalog and not store.exists:
        raise missing_collection(settings, name)
    index = Index(settings, open_catalog(settings, name), store)
    marked = index.catalog.meta(DROPPING) is not None
    if marked and store.shared and not deleting and _still_shared(store):
        # On a shared server the mark is this machine's alone: a reset that failed before the
        # server dropped the collection left it to every other machine, who may have written
        # to it since. Finishing that reset later would delete their work: the collection
        # lives on, and the mark goes (the reset can be run again).
        with contextlib.suppress(sqlite3.Error, StoreError):
            index.catalog.set_meta(DROPPING, None)
        marked = False
    if marked:
        # A `reset` under way, or one that stopped half-way: gone for readers; a writer
        # finishes the deletion and starts the collection anew.
        if deleting:
            return index
        if not create:
            index.close()
            raise missing_collection(settings, name)
        with index:
            index.drop()
        return open_index(settings, collection, create=True)
    try:
        if store.shared:
            empty = index.catalog.chunk_count() == 0
            try:
                index.refresh(clean=create)
            except StoreError as exc:
                if create or empty:
                    raise
                # A reader with a cached copy still answers (by keywords, and says so) while
                # the server does not: better than nothing when the network is down.
                index.stale = exc.message
            if empty and index.catalog.chunk_count():
                index.rebuilt = index.catalog.chunk_count()  # a first copy, not an update
        catalog = index.catalog
        if catalog.file_count() == 0 and catalog.chunk_count() == 0 and not catalog.tombstones():
            # Empty and lost look alike, but a `remove` of every file leaves tombstones until
            # the store has forgotten them: that catalog is right, and the next write finishes.
            if store.exists and store.count() > 0:
                index.rebuilt = index.rebuild_from_store()
            elif not create and not store.exists:
                # Reset on the server by another machine: the catch-up just forgot it all,
                # and no command on it will get as far as purging after its results.
                index.purge_cache()
                raise missing_collection(settings, name)
    except BaseException:
        index.close()
        raise
    return index


def purge_advice(problem: str, retried: bool = True) -> str:
    """A purge's problem (`Index.purge`) as one line that says what clears it. `retried`: the
    collection still exists, so its next runs try the purge again."""
    from ragged.store import Lasting

    if isinstance(problem, Lasting) or not retried:
        return f"{problem}; deleted text may remain there until `chroma vacuum`"
    return f"{problem}; deleted text may remain there: the next runs try again"


def _still_shared(store: Store) -> bool:
    try:
        return store.exists
    except StoreError:
        return False  # cannot tell: a reader takes it for gone, a writer's drop will say why


def live_collections(settings: Settings) -> list[tuple[str, int, str | None]]:
    """The store's collections (name, chunks, embedding model), less those a `reset` is
    deleting or stopped deleting: gone for readers (open_index), so not listed either. On a
    shared server every collection it lists lives on: the mark is this machine's alone."""
    from ragged.store import list_collections

    rows = list_collections(settings)
    if settings.chroma_url:
        return rows
    return [row for row in rows if not _being_dropped(settings, row[0])]


def _being_dropped(settings: Settings, name: str) -> bool:
    from ragged.catalog import CatalogDamaged, catalog_path, open_catalog

    if not catalog_path(settings, name).exists():
        return False
    try:
        catalog = open_catalog(settings, name)
    except CatalogDamaged:
        return False  # doctor says what it holds
    try:
        return catalog.meta(DROPPING) is not None
    finally:
        catalog.close()


def collection_names(settings: Settings) -> list[str]:
    """Collections that exist: in the store, or only in a catalog (text awaiting vectors)."""
    from ragged.catalog import CatalogDamaged, catalog_path, open_catalog

    names = {name for name, _, _ in live_collections(settings)}
    folder = catalog_path(settings).parent
    for path in folder.glob("*.sqlite") if folder.is_dir() else ():
        if path.stem in names:
            continue
        try:
            catalog = open_catalog(settings, path.stem)
        except CatalogDamaged:
            names.add(path.stem)  # it held something once; doctor --fix can tell what
            continue
        try:
            if catalog.file_count() and catalog.meta(DROPPING) is None:
                names.add(path.stem)
        finally:
            catalog.close()
    return sorted(names)


def missing_collection(settings: Settings, name: str) -> CollectionMissing:
    from ragged.store import store_location

    others = [n for n in collection_names(settings) if n != name]
    return CollectionMissing(
        f"collection '{name}' does not exist at {store_location(settings)}; "
        + (f"collections: {', '.join(others)}" if others else "there are no collections yet"),
        hint="`ragged ingest PATH --collection NAME` creates one",
    )


@dataclass(frozen=True)
class Health:
    """Whether a collection's catalog and store agree, and how to make them agree."""

    name: str
    status: Literal["ok", "warn", "fail"]
    detail: str
    fix: str | None = None
    files: int = 0
    chunks: int = 0  # in the catalog
    pending: int = 0
    stored: int | None = None  # vectors in the store; None when it has no such collection
    damaged: bool = False  # the store's vector files are gone or unreadable: drop, re-embed


FIX = "`ragged doctor --fix`"


def health(settings: Settings, name: str, probe: bool = True) -> Health:
    """Compare a collection's catalog with its store without changing either.

    `probe` also reads a few vectors back and searches with them, which is how vector files
    deleted under a store whose own count still looks right are caught.
    """
    from ragged.catalog import Catalog, CatalogDamaged, catalog_path
    from ragged.store import open_store

    store = open_store(settings, name)
    stored = store.count() if store.exists else None
    revision = store.revision if store.shared else None
    path = catalog_path(settings, name)
    try:
        catalog = Catalog(path) if path.exists() else None
    except CatalogDamaged as exc:
        return Health(name, "fail", exc.message, f"{FIX} rebuilds it from the vector store")
    if catalog is None or catalog.chunk_count() == 0:
        if catalog is not None:
            catalog.close()
        if stored and store.shared:
            return Health(
                name,
                "ok",
                f"{stored} chunks on the server; no local cache yet (made on first use)",
                stored=stored,
            )
        if stored:
            return Health(
                name,
                "warn",
                f"its catalog is missing or empty while the store holds {stored} chunks",
                f"it is rebuilt from the store when next used; {FIX} does it now",
                stored=stored,
            )
        return Health(name, "ok", "empty", stored=stored)
    try:
        files, chunks = catalog.file_count(), catalog.chunk_count()
        embedded, pending = catalog.embedded_count(), catalog.pending_count()
        sample = sorted(catalog.embedded_ids())[:3] if probe and embedded else []
        lost = Index(settings, catalog, store).lost_vector_files()
        cached_revision = catalog.meta("server_revision")
        purge_due, purge_failed = catalog.meta(PURGE_DUE_KEY), catalog.meta(PURGE_FAILED_KEY)
        tombstoned = len(catalog.tombstones())
    finally:
        catalog.close()
    refill = f"{FIX} embeds them again from the stored text"

    def found(
        status: Literal["ok", "warn", "fail"],
        detail: str,
        fix: str | None = None,
        damaged: bool = False,
    ) -> Health:
        return Health(name, status, detail, fix, files, chunks, pending, stored, damaged)

    held = stored or 0
    if held < embedded and not (store.shared and revision != cached_revision):
        return found(
            "fail",
            f"the vector store holds {held} of its {embedded} embedded chunks "
            "(vector files deleted?); dense search cannot work",
            refill,
        )
    if lost:
        return found(
            "fail",
            f"{len(lost)} of its vector files were deleted from {store.where}; dense search "
            "cannot work",
            refill,
            damaged=True,
        )
    behind = store.shared and revision != cached_revision  # the sample may be gone there
    if sample and not behind and not _vectors_readable(store, sample):
        return found(
            "fail",
            "the vector store cannot read back its vectors (vector files deleted or damaged)",
            refill,
            damaged=True,
        )
    if purge_failed:
        return found(
            "warn",
            f"deleted text may still be readable in the data dir: its purge failed "
            f"({purge_failed})",
            f"mend that, then {FIX} purges it",
        )
    if held > embedded and not store.shared:
        return found(
            "warn",
            f"the vector store holds {held - embedded} chunks the catalog does not know",
            f"{FIX} adopts those of unknown files and deletes stale ones",
        )
    if pending:
        return found(
            "warn",
            f"{files} files, {chunks} chunks, {pending} of them awaiting embeddings",
            "`ragged ingest` (no path needed) embeds them",
        )
    if tombstoned:
        # The catalog forgot them first (reads no longer serve them); the store's delete,
        # and the purge after it, did not happen: a full disk, a kill, a server gone.
        return found(
            "warn",
            f"{tombstoned} chunks of removed or changed files are still to be deleted from the "
            "vector store, their text readable in its files (a run stopped before it could)",
            f"the next `ingest` or `remove` deletes and purges them; {FIX} does it now",
        )
    if purge_due:
        return found(
            "warn",
            "deleted text is still to be purged from the data dir (a run stopped before its "
            "purge, or `watch` waits for quiet folders)",
            f"the next `ingest` purges it; {FIX} does it now",
        )
    agree = "catalog and store agree"
    if store.shared:
        current = revision is not None and revision == cached_revision
        agree = (
            "local cache current"
            if current
            else "local cache behind the server (brought up to date by the next command)"
        )
    return found("ok", f"{files} files, {chunks} chunks, {agree}")


def _vectors_readable(store: Store, ids: list[str]) -> bool:
    """Each sampled vector can be read back, and searching with it finds its own chunk, or
    one with the very same vector: among identical passages (a template, copies of one file)
    the nearest are ties, and the five returned need not include the chunk itself."""
    try:
        vectors = store.vectors(ids)
        return len(vectors) == len(ids) and all(
            any(hit[0] == id_ or hit[3] >= SAME_VECTOR for hit in store.query(vector, 5))
            for id_, vector in vectors.items()
        )
    except StoreError:
        return False


# Cosine similarity of a vector with itself, as float32 arithmetic gives it.
SAME_VECTOR = 1 - 1e-5


def repair(settings: Settings, name: str, embed: Callable[[Index], object]) -> str:
    """Make a collection's catalog and store agree again; returns what was done.

    A damaged catalog is moved aside (never deleted) and rebuilt from the store. Vectors the
    store lost are written again from the catalog's text by `embed` (ingest with no paths);
    a store whose vector files are unreadable is dropped first, since writing into it again
    would keep its damage.
    """
    from ragged.catalog import Catalog, CatalogDamaged, catalog_path

    path = catalog_path(settings, name)
    done: list[str] = []
    try:
        Catalog(path).close()
    except CatalogDamaged:
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                source.rename(f"{aside}{suffix}")
        done.append(f"moved the damaged catalog to {aside}")
    status = health(settings, name)
    with open_index(settings, name, create=True) as index:
        if index.rebuilt is not None:
            done.append(f"rebuilt the catalog from the store ({index.rebuilt} chunks)")
        if status.damaged:
            index.store.drop()
            done.append("dropped the unreadable vector collection")
        index.catalog.begin_run()  # makes reconcile compare id by id
        index.reconcile()
        pending = index.catalog.pending_count()
        if pending:
            embed(index)  # ends the run itself (and purges, if that was due)
            done.append(f"embedded {pending - index.catalog.pending_count()} chunks again")
        else:
            index.end_run()
        if index.purge_due or index.catalog.meta(PURGE_FAILED_KEY):
            problem = index.purge()
            if problem:
                # This try counted as one of the runs' three: say whether any is left.
                raise RaggedError(purge_advice(problem, retried=index.purge_due))
            done.append("purged deleted text from the data dir")
    return "; ".join(done) or "nothing to repair"
