"""`ragged list`, `remove`, `collections`, `reset` and `copy`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ragged.cli._common import (
    CollectionOpt,
    JsonOpt,
    QuietOpt,
    State,
    YesOpt,
    open_collection,
    purge_notice,
    reporting,
)

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.errors import StoreError
    from ragged.transfer import CopyReport


class Status(StrEnum):
    """What `list --status` filters on; the same names as ragged.manage.STATUSES."""

    ok = "ok"
    pending = "pending"
    failed = "failed"
    missing = "missing"


def list_sources(
    ctx: typer.Context,
    pattern: Annotated[
        str | None,
        typer.Argument(metavar="PATTERN", help="Only files whose path matches this glob."),
    ] = None,
    status: Annotated[
        Status | None,
        typer.Option(help="Only files with this status: ok, pending, failed or missing."),
    ] = None,
    collection: CollectionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the stored files with their chunk counts, pages, time of ingest and status.

    Files that failed to ingest are listed too (status failed, with the reason), and stored
    files this machine cannot find are marked missing (deleted or moved outside any folder
    ingested since, or on a disk not mounted now): they are still searched until removed.

    Example: ragged list '*.pdf' --status failed
    """
    from ragged import render
    from ragged.manage import list_sources as sources

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(collection=collection)
        with open_collection(settings) as index:
            found = sources(index, pattern, status.value if status else None)
        if json_out:
            render.print_json(found)
        elif not found:
            what = "no documents yet" if not (pattern or status) else "no matching documents"
            render.console().print(f"Collection '{settings.collection}' holds {what}.")
        else:
            render.sources_table(found)


def remove(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH",
            help="Stored files to forget: paths, folders, labels as ragged shows them, or globs.",
        ),
    ],
    collection: CollectionOpt = None,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove files from a collection: a path, a folder (every file under it), or a glob.

    What ragged prints as a source works too, from any directory. A folder or a glob asks
    before it removes anything (--yes does not).

    Example: ragged remove ~/notes/old
    """
    from ragged import render
    from ragged.lock import write_lock
    from ragged.manage import plan_removal
    from ragged.manage import remove as run_remove

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(collection=collection)
        with write_lock(Path(settings.home)), open_collection(settings) as index:
            plan = plan_removal(index, paths)
            for raw in plan.unmatched:
                render.notice(f"{raw}: not stored in collection '{index.name}'")
            if plan.paths and plan.wide and not yes:
                _confirm(
                    f"Remove {len(plan.paths)} files from collection '{index.name}'?",
                    "more than the files named (a folder or a pattern)",
                    "run again with --yes to remove them",
                )
            removed = run_remove(index, plan.paths, on_problem=purge_notice)
        # Removing forgets a file, not the folder it is in: said once, or it comes back
        # unnoticed at the next ingest of that folder.
        from ragged.ingest.walk import taken_in_again

        kept = [p for p in removed if taken_in_again(Path(p))]
        if len(kept) == 1:
            render.notice(
                f"{render.escape_name(kept[0])} is still on disk: the next `ingest` of its "
                "folder adds it again; to keep it out, name it in a .raggedignore there"
            )
        elif kept:
            render.notice(
                f"{len(kept)} of them are still on disk: the next `ingest` of their folders "
                "adds them again; to keep them out, name them in a .raggedignore there"
            )
        if json_out:
            render.print_json({"removed": removed, "unmatched": plan.unmatched, "on_disk": kept})
        else:
            for p in removed:
                render.console().print(f"removed {render.escape_name(p)}")
        if not removed:
            render.error("none of those paths is stored", "`ragged list` shows what is stored")
            raise typer.Exit(1)


def _confirm(question: str, why: str, hint: str) -> None:
    """Ask on a terminal; refuse in a script, where nobody can answer, saying `why` and `hint`."""
    from ragged import render

    if not render.can_ask():
        render.error(f"{question.rstrip('?')}: {why}", hint)
        raise typer.Exit(1)
    if not render.confirm(question):
        raise typer.Exit(1)


def collections(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List the collections with their chunk counts and embedding models.

    Example: ragged collections
    """
    from ragged import render
    from ragged.index import live_collections

    state: State = ctx.obj
    with reporting(state):
        rows = live_collections(state.settings())
        if json_out:
            render.print_json([{"name": n, "chunks": c, "embed_model": m} for n, c, m in rows])
        elif not rows:
            render.console().print("No collections yet.")
        else:
            render.simple_table(["collection", "chunks", "embedding model"], rows)


def reset(
    ctx: typer.Context,
    collection: CollectionOpt = None,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Delete a collection: its vectors, its manifest and its keyword index.

    Example: ragged reset --collection scratch --yes
    """
    from ragged import render
    from ragged.lock import write_lock

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(collection=collection)
        with write_lock(Path(settings.home)), open_collection(settings, deleting=True) as index:
            files = index.catalog.file_count()
            if not yes:
                _confirm(
                    f"Delete collection '{index.name}' and all it holds ({files} files)?",
                    "nobody is here to confirm it",
                    "run again with --yes to delete it",
                )
            problem = index.drop()
        if problem:
            purge_notice(problem, retried=False)  # the collection is gone: nothing retries
        if json_out:
            render.print_json({"collection": index.name, "deleted": True, "files": files})
        else:
            render.console().print(f"collection '{index.name}' deleted ({files} files)")


ToOpt = Annotated[
    str | None,
    typer.Option(
        "--to",
        metavar="URL",
        help="Copy from the configured store to this Chroma server URL ('embedded': local).",
    ),
]
FromOpt = Annotated[
    str | None,
    typer.Option(
        "--from",
        metavar="URL",
        help="Copy from this Chroma server URL ('embedded': local) into the configured store.",
    ),
]


def copy(
    ctx: typer.Context,
    to: ToOpt = None,
    from_: FromOpt = None,
    collection: CollectionOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Copy a collection to or from a Chroma server with its vectors: nothing is embedded again.

    The target gets the same chunks, metadata and vectors, and its local catalog (file list and keyword index) is rebuilt from them. Running it again copies nothing twice.

    Example: ragged copy --to http://nas.local:8001 --collection papers
    """
    from dataclasses import replace

    from ragged import render
    from ragged.errors import StoreError
    from ragged.lock import write_lock
    from ragged.transfer import copy as run_copy
    from ragged.transfer import settings_for

    if (to is None) == (from_ is None):
        raise typer.BadParameter("give one of --to URL or --from URL")
    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(collection=collection)
        if to is not None:
            source, target = settings, settings_for(settings, to)
        else:
            source, target = settings_for(settings, from_ or ""), settings
        # The target's catalog lives in this data dir, whichever side it is.
        target = replace(target, home=settings.home)
        flag, named = ("--to", target) if to is not None else ("--from", source)
        with write_lock(Path(settings.home)), _progress(not quiet) as progress:
            try:
                report = run_copy(source, target, settings.collection, on_progress=progress)
            except StoreError as exc:
                _blame_the_flag(exc, flag, named)
                raise
        if json_out:
            render.print_json(report)
        else:
            _summary(report)
        if report.unblanked is not None:
            render.notice(report.unblanked)  # it says whether a later run tries again
        if report.purge_problem:
            purge_notice(report.purge_problem)
        if report.pending_in_source:
            render.notice(
                f"{report.pending_in_source} chunks of '{report.collection}' await embeddings "
                f"at {report.source} and were not copied; run `ragged ingest` there, then copy again"
            )


def _blame_the_flag(exc: StoreError, flag: str, named: Settings) -> None:
    """The store hints speak of RAGGED_CHROMA_URL, where a server's URL usually comes from;
    for the server named by --to/--from, the flag is what to check."""
    from ragged.store import store_location

    where = store_location(named)
    if named.chroma_url and where in exc.message and "RAGGED_CHROMA_URL" in (exc.hint or ""):
        exc.hint = (
            f"check the URL given to {flag} and that a Chroma server runs there "
            "(`chroma run --path DIR --port PORT`), then run the command again"
        )


def _summary(report: CopyReport) -> None:
    from ragged import render

    esc = render.escape
    already = f"; {report.unchanged} were there already" if report.unchanged else ""
    render.console().print(
        f"copied {report.chunks} chunks{already}: collection '{esc(report.collection)}' "
        f"({report.files} files, {esc(report.embed_model)}, {report.dimensions} dimensions) "
        f"from {esc(report.source)} to {esc(report.target)} in {report.seconds:.1f} s"
    )


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A bar on stderr when it is a terminal; nothing otherwise (logs and pipes stay clean)."""
    from ragged import render

    err = render.console(stderr=True)
    if not enabled or not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "[bold]copying chunks",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    task = bar.add_task("copy", total=None)
    with bar:

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, 1))

        yield update
