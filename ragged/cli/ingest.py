"""`ragged ingest`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ragged.cli._common import (
    CollectionOpt,
    EmbedOpt,
    JsonOpt,
    QuietOpt,
    State,
    YesOpt,
    open_collection,
    purge_notice,
    reporting,
    supported_types,
)

if TYPE_CHECKING:
    from ragged.ingest import FileOutcome, HeldBack


def ingest(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="PATH", help="Files or folders to ingest; none: embed what is still pending."
        ),
    ] = None,
    collection: CollectionOpt = None,
    embed_model: EmbedOpt = None,
    chunk_tokens: Annotated[
        int | None, typer.Option(metavar="N", min=32, help="Chunk size in tokens.")
    ] = None,
    chunk_overlap: Annotated[
        int | None, typer.Option(metavar="N", min=0, help="Tokens shared by neighbouring chunks.")
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(metavar="GLOB", help="Only files matching this glob, this run (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(metavar="GLOB", help="Skip files matching this glob, this run (repeatable)."),
    ] = None,
    max_file_mb: Annotated[
        float | None, typer.Option(metavar="MB", min=0, help="Skip files larger than this.")
    ] = None,
    embed_batch: Annotated[
        int | None, typer.Option(metavar="N", min=1, help="Texts per embedding request.")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            metavar="N", min=1, help="Embedding requests in flight (match OLLAMA_NUM_PARALLEL)."
        ),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option(help="Forget stored files gone from the folder, or moved (from anywhere)."),
    ] = True,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Fail (exit 1) on every failed file, not only on new ones."),
    ] = False,
    rechunk: Annotated[
        bool,
        typer.Option(
            help="Re-chunk every stored file with this run's chunk_tokens and chunk_overlap "
            "(needed to change them on an existing collection)."
        ),
    ] = False,
    yes: YesOpt = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait for another running ingest instead of exiting (saying whom it waits for).",
        ),
    ] = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Parse, chunk, embed and store documents; re-runs only touch what changed.

    A file is known by its absolute path, whichever folder reached it. Files gone from a
    folder, or now excluded by its .gitignore/.raggedignore, are removed; --include,
    --exclude and --max-file-mb only narrow this run and never remove anything. A folder
    that yields no files at all keeps its stored files unless you confirm (--yes).

    Example: ragged ingest ~/notes ./papers --exclude 'drafts/**'
    """
    from ragged import render
    from ragged.ingest import ingest as run_ingest
    from ragged.llm import connect
    from ragged.lock import write_lock

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(
            collection=collection,
            embed_model=embed_model,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
            max_file_mb=max_file_mb,
            embed_batch=embed_batch,
            embed_concurrency=concurrency,
        )
        err = render.console(stderr=True)

        def on_file(outcome: FileOutcome) -> None:
            path, reason = render.escape_name(outcome.path), render.escape_name(outcome.reason)
            if outcome.status == "failed" and not outcome.known:
                err.print(f"[red]✗[/] {path}: {reason}")
            elif outcome.status == "skipped" and not quiet:
                err.print(f"[dim]- {path}: skipped, {reason}[/]")
            elif outcome.status == "removed" and not quiet:
                err.print(f"[dim]- {path}: removed, {reason}[/]")

        def confirm_prune(held: HeldBack) -> bool:
            if yes:
                return True
            if not render.can_ask():
                return False
            return render.confirm(
                f"{render.one_line(held.folder)} has no files now, but the collection holds "
                f"{held.files} from it (an unmounted disk looks like this). Remove them?"
            )

        with write_lock(
            Path(settings.home), wait=wait, waitable=True, on_wait=None if quiet else render.notice
        ):
            with open_collection(settings, create=True) as index:
                with render.ingest_progress(not quiet) as progress:
                    report = run_ingest(
                        paths or [],
                        index,
                        connect(settings),
                        prune=prune,
                        include=include or (),
                        exclude=exclude or (),
                        confirm_prune=confirm_prune,
                        on_progress=progress,
                        on_file=on_file,
                        rechunk=rechunk,
                    )
        if json_out:
            render.print_json(report)
        else:
            render.ingest_summary(report)
        seen = report.added + report.updated + report.unchanged + report.failed
        if paths and seen == 0 and report.removed == 0 and not report.held_back:
            render.notice(f"no supported documents found ({supported_types()})")
        if report.purge_problem:
            purge_notice(report.purge_problem)
        if report.known_failures:
            render.notice(
                f"{report.known_failures} files failed before and have not changed since; "
                "`ragged list --status failed` shows why"
            )
        for held in report.held_back:
            render.error(
                f"{held.folder} yielded no files, but the collection holds {held.files} from "
                "it; they were kept (an unmounted disk looks like this)",
                f"if they are really gone, run `ragged ingest {held.folder} --yes` or "
                f"`ragged remove {held.folder}`",
            )
        if report.embed_error:
            render.error(
                f"{report.embed_error}; {report.pending} chunks are stored as text and await embeddings",
                f"{report.embed_hint + '; then ' if report.embed_hint else ''}"
                "run `ragged ingest` again: only those chunks will be embedded",
            )
        if not report.ok or (strict and report.failed):
            raise typer.Exit(1)
