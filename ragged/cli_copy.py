"""`ragged copy`: registered on the app from ragged/cli.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ragged.cli import CollectionOpt, JsonOpt, State, app, reporting

if TYPE_CHECKING:
    from ragged.transfer import CopyReport

ToOpt = Annotated[
    str | None,
    typer.Option(
        "--to", help="Copy from the configured store to this Chroma server URL ('embedded': local)."
    ),
]
FromOpt = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="Copy from this Chroma server URL ('embedded': local) into the configured store.",
    ),
]


@app.command()
def copy(
    ctx: typer.Context,
    to: ToOpt = None,
    from_: FromOpt = None,
    collection: CollectionOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Copy a collection to or from a Chroma server with its vectors: nothing is embedded again.

    The target gets the same chunks, metadata and vectors, and its local catalog (file list and keyword index) is rebuilt from them. Running it again copies nothing twice.

    Example: ragged copy --to http://nas.local:8001 --collection papers
    """
    from dataclasses import replace

    from ragged import render
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
        with write_lock(Path(settings.home)), _progress(not quiet) as progress:
            report = run_copy(source, target, settings.collection, on_progress=progress)
        if json_out:
            render.print_json(report)
        else:
            _summary(report)
        if report.pending_in_source:
            render.notice(
                f"{report.pending_in_source} chunks of '{report.collection}' await embeddings "
                f"at {report.source} and were not copied; run `ragged ingest` there, then copy again"
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
