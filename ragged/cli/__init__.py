"""The `ragged` command: arguments -> Settings -> one core call -> rendered result.

This package is the only place that knows Typer; nothing in the core imports it. Each module
below holds a few commands as plain functions, registered on `app` here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ragged import __version__
from ragged.cli import ask, chat, doctor, ingest, manage, serve, watch
from ragged.cli._common import Command, IngestCommand, State

app = typer.Typer(
    no_args_is_help=True,
    # --install-completion / --show-completion for bash, zsh and fish (and PowerShell);
    # Typer's completion module costs ~2 ms of imports, within the start-up budget.
    add_completion=True,
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
        Path | None,
        typer.Option(
            metavar="DIR", help="Data directory (default: RAGGED_HOME or the platform's)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Config file (default: config.toml in the config dir)."),
    ] = None,
    ollama_host: Annotated[
        str | None, typer.Option(metavar="URL", help="Ollama address; overrides OLLAMA_HOST.")
    ] = None,
    chroma_url: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Chroma server URL; default is the embedded store."),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
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


app.command(cls=IngestCommand)(ingest.ingest)
app.command(cls=Command)(watch.watch)
app.command(cls=Command)(ask.search)
app.command(cls=Command)(ask.ask)
app.command(cls=Command)(chat.chat)
app.command(cls=Command)(serve.serve)
app.command("list", cls=Command)(manage.list_sources)
app.command(cls=Command)(manage.remove)
app.command(cls=Command)(manage.collections)
app.command(cls=Command)(manage.reset)
app.command(cls=Command)(doctor.config)
app.command(cls=Command)(doctor.doctor)
app.command(cls=Command)(doctor.models)
app.command(cls=Command)(manage.copy)
