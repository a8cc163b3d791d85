"""The `ragged` command: arguments -> Settings -> one core call -> rendered result.

This package is the only place that knows Typer; nothing in the core imports it. Each module
below holds a few commands as plain functions, registered on `app` here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ragged import __version__
from ragged.cli import ask, doctor, ingest, manage
from ragged.cli._common import State

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    # Rich-rendered help costs ~90 ms of imports (2.6x `import typer`); plain help keeps
    # `ragged --help` within the 1.5x start-up budget (docs/benchmarks.md).
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,  # document text and prompts must not leak into logs
    help="Ask questions of your own documents with local models (Ollama + Chroma).",
)


def _version(value: bool) -> None:
    if value:
        print(f"ragged {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[
        Path | None, typer.Option(help="Data directory (default: RAGGED_HOME or the platform's).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Config file (default: config.toml in the config dir).")
    ] = None,
    ollama_host: Annotated[
        str | None, typer.Option(help="Ollama address; overrides OLLAMA_HOST.")
    ] = None,
    chroma_url: Annotated[
        str | None, typer.Option(help="Chroma server URL; default is the embedded store.")
    ] = None,
    debug: Annotated[
        bool, typer.Option(help="Show tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Ask questions of your own documents with local models (Ollama + Chroma)."""
    import os

    from ragged import render

    # Everything ragged writes (the catalog, Chroma's files and folders, the lock) holds or
    # guards document text: readable by this user only, whatever the umask said.
    os.umask(os.umask(0o077) | 0o077)
    render.reset_consoles()
    ctx.obj = State(
        {"home": home, "ollama_host": ollama_host, "chroma_url": chroma_url}, config, debug
    )


app.command()(ingest.ingest)
app.command()(ask.search)
app.command()(ask.ask)
app.command("list")(manage.list_sources)
app.command()(manage.remove)
app.command()(manage.collections)
app.command()(manage.reset)
app.command()(doctor.config)
app.command()(doctor.doctor)
app.command()(doctor.models)
app.command()(manage.copy)
