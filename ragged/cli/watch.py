"""`ragged watch`."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ragged.cli._common import (
    CollectionOpt,
    EmbedOpt,
    QuietOpt,
    State,
    purge_notice,
    reporting,
    stopping_cleanly,
)

if TYPE_CHECKING:
    from ragged.ingest import FileOutcome
    from ragged.watch import Batch


def watch(
    ctx: typer.Context,
    paths: Annotated[
        list[Path], typer.Argument(metavar="FOLDER...", help="Folders to keep in sync.")
    ],
    collection: CollectionOpt = None,
    embed_model: EmbedOpt = None,
    debounce: Annotated[
        int,
        typer.Option(
            metavar="MS", min=0, help="Apply changes once the folders have been quiet this many ms."
        ),
    ] = 300,
    poll: Annotated[
        bool,
        typer.Option("--poll", help="Poll for changes (network drives, some container mounts)."),
    ] = False,
    quiet: QuietOpt = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print each applied batch as one JSON line.")
    ] = False,
) -> None:
    """Keep a collection in sync with folders while it runs: new, changed, moved and deleted
    files are ingested as they happen, exactly as `ragged ingest` would.

    Changes are applied in batches once the folders are quiet (an editor's save or a
    `git checkout` is one batch); the write lock is held only while a batch is applied, so
    `ragged ingest` and `ragged remove` still work from another shell. If Ollama goes away,
    text is stored and searchable by keywords, and embedded when Ollama is back. Ctrl-C
    stops, as do SIGTERM and SIGHUP.

    Example: ragged watch ~/notes ~/papers
    """
    from ragged import render
    from ragged.llm import connect
    from ragged.watch import watch as run_watch

    state: State = ctx.obj
    with reporting(state), stopping_cleanly():
        settings = state.settings(collection=collection, embed_model=embed_model)
        err = render.console(stderr=True)
        live = None if quiet or json_out or not err.is_terminal else err.status("starting")

        def on_file(outcome: FileOutcome) -> None:
            path, reason = render.escape_name(outcome.path), render.escape_name(outcome.reason)
            if outcome.status == "failed" and not outcome.known:
                err.print(f"[red]✗[/] {path}: {reason}")
            elif outcome.status == "removed" and not quiet and not json_out:
                err.print(f"[dim]- {path}: removed, {reason}[/]")

        def on_ready(roots: list[Path]) -> None:
            if not quiet:
                shown = ", ".join(render.escape(str(r)) for r in roots)
                err.print(f"watching {shown} (Ctrl-C to stop)")

        def on_busy(events: int) -> None:
            if live is not None:
                live.update(f"applying {events} changes" if events else "syncing")

        status = "starting"
        told: str | None = None  # the fault whose hint was printed last

        def on_wait(text: str) -> None:
            if not quiet:
                err.print(f"{time.strftime('%H:%M:%S')} [yellow]{render.escape(text)}[/]")
            if live is not None:
                live.update(text)

        def on_purge(starting: bool) -> None:
            if live is not None:
                live.update("purging deleted text…" if starting else status)

        def on_batch(batch: Batch) -> None:
            nonlocal status, told
            if json_out:
                sys.stdout.write(json.dumps(batch_data(batch), ensure_ascii=False) + "\n")
                sys.stdout.flush()
            elif batch.changed or batch.error or batch.report.embed_error or batch.report.held_back:
                # The hint once per fault: a retry every few seconds repeats only the line.
                fault = batch_fault(batch)
                err.print(batch_line(batch, with_hint=fault != told))
                told = fault
            if batch.report.unblanked and not json_out:
                render.notice(batch.report.unblanked)
            if live is not None:
                when = time.strftime("%H:%M:%S")
                pending = batch.report.pending
                status = f"watching · synced {when}" + (
                    f" · {pending} chunks await embeddings" if pending else ""
                )
                live.update(status)

        if live is not None:
            live.start()
        try:
            run_watch(
                paths,
                settings,
                connect(settings),
                on_batch=on_batch,
                on_file=on_file,
                on_busy=on_busy,
                on_ready=on_ready,
                on_purge=on_purge,
                on_purge_problem=purge_notice,
                on_wait=on_wait,
                quiet_ms=debounce,
                poll=poll,
            )
        finally:
            if live is not None:
                # The terminal may be gone (SIGHUP): that must not replace why watch stopped.
                with contextlib.suppress(OSError):
                    live.stop()


def batch_fault(batch: Batch) -> str | None:
    """What kept a batch from being applied or embedded, if anything."""
    return batch.error.message if batch.error is not None else batch.report.embed_error


def batch_hint(batch: Batch) -> str | None:
    """What to do about the batch's fault: the hint `ingest` gives for the same one, except
    that watch tries again by itself where a command is to be run again."""
    from ragged.errors import RUN_AGAIN

    hint = batch.error.hint if batch.error is not None else batch.report.embed_hint
    return hint and hint.replace(
        RUN_AGAIN, "; watch tries again by itself, and finishes any interrupted work"
    )


def batch_line(batch: Batch, with_hint: bool = True) -> str:
    """One line for an applied batch: when, what changed, what is left to do; with_hint, a
    second line saying how to mend the fault that stopped it, if one did."""
    from ragged import render

    r = batch.report
    stamp = time.strftime("%H:%M:%S")
    hint = batch_hint(batch) if with_hint else None
    hint_line = f"\n{stamp} [dim]hint:[/] {render.escape(hint)}" if hint else ""
    if batch.error is not None:
        again = f"; trying again in {batch.retry_in:.0f} s" if batch.retry_in else ""
        return (
            f"{stamp} [red]could not apply changes:[/] {render.escape(batch.error.message)}{again}"
            + hint_line
        )
    parts = [
        f"{n} {what}"
        for n, what in (
            (r.added - r.moved, "added"),
            (r.moved, "moved"),
            (r.updated, "updated"),
            (r.removed - r.moved, "removed"),
            (r.new_failures, "failed"),
        )
        if n > 0
    ]
    if batch.trigger == "start":
        parts.insert(0, f"synced {r.added + r.updated + r.unchanged} files")
    if r.embedded:
        parts.append(f"{r.embedded} chunks embedded")
    line = f"{stamp} " + (", ".join(parts) or "no changes") + f" ({r.seconds:.1f} s)"
    if r.embed_error:
        again = f"; trying again in {batch.retry_in:.0f} s" if batch.retry_in else ""
        chunks = "1 chunk is" if r.pending == 1 else f"{r.pending} chunks are"
        awaits = "awaits" if r.pending == 1 else "await"
        line += (
            f"\n{stamp} [yellow]{render.escape(r.embed_error)}:[/] {chunks} "
            f"stored as text and {awaits} embeddings{again}" + hint_line
        )
    for held in r.held_back:
        line += (
            f"\n{stamp} [yellow]{render.escape(held.folder)} yielded no files[/]; its "
            f"{held.files} stored files were kept (an unmounted disk looks like this)"
        )
    return line


def batch_data(batch: Batch) -> dict[str, Any]:
    from ragged import render

    data = render.to_data(batch.report)
    data.update(
        time=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        trigger=batch.trigger,
        events=batch.events,
        retry_in=batch.retry_in,
        error=batch.error.message if batch.error else None,
        hint=batch_hint(batch),
    )
    return data
