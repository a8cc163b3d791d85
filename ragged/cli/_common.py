"""What every command shares: the per-run State, the one error reporter, common options."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.errors import RaggedError
    from ragged.index import Index


@dataclass
class State:
    """Global options, handed to every command on the typer.Context."""

    flags: dict[str, Any] = field(default_factory=dict)
    config: Path | None = None
    debug: bool = False

    def settings(self, **more: Any) -> Settings:
        from ragged.config import load_settings

        chosen = {k: v.value if isinstance(v, Enum) else v for k, v in more.items()}
        return load_settings(
            {**self.flags, **{k: v for k, v in chosen.items() if v is not None}},
            config_file=self.config,
        )


@contextmanager
def reporting(state: State) -> Iterator[None]:
    """The one place errors become a message on stderr and an exit code."""
    from ragged import render
    from ragged.errors import RaggedError

    try:
        yield
    except RaggedError as exc:
        if state.debug:
            raise
        render.error(exc.message, exc.hint)
        raise typer.Exit(1) from None
    except KeyboardInterrupt as exc:
        render.interrupted()
        raise typer.Exit(128 + getattr(exc, "signum", 2)) from None  # 128 + SIGINT, or as sent
    except Exception as exc:
        full = None if state.debug else _disk_full(exc, state)
        if full is None:
            raise
        render.error(full.message, full.hint)
        raise typer.Exit(1) from None


def _disk_full(exc: Exception, state: State) -> RaggedError | None:
    """A full disk met where no layer said so (a catalog write in `copy`, say), as they do."""
    import sqlite3

    if not isinstance(exc, OSError | sqlite3.Error):
        return None
    from ragged.disk import LOW_SPACE, free_bytes, full
    from ragged.errors import RaggedError

    try:
        home = state.settings().home
    except RaggedError:
        return None
    named = getattr(exc, "filename", None)
    found = full(exc, named or home)
    if found is not None and not named and (free_bytes(home) or 0) >= LOW_SPACE:
        return None  # another disk's (stdout's file?): not the data dir's to name
    return found


class Stopped(KeyboardInterrupt):
    """A stop signal other than Ctrl-C, unwinding as Ctrl-C does (`stopping_cleanly`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def stopping_cleanly() -> Iterator[None]:
    """SIGTERM (`kill`, systemd, `docker stop`) and SIGHUP (a closed terminal) stop a
    long-running command as Ctrl-C does, its clean-up included (`watch` purges then),
    rather than ending the process where it stands. The exit status says which signal."""
    import signal

    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        raise Stopped(signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):  # SIGHUP: not on Windows
        number = getattr(signal, name, None)
        # An ignored signal stays ignored: `nohup ragged watch` must outlive its terminal.
        if number is not None and signal.getsignal(number) is not signal.SIG_IGN:
            previous[number] = signal.signal(number, stop)
    try:
        yield
    except KeyboardInterrupt as exc:
        if received and not isinstance(exc, Stopped):
            # Raised in our handler while watchfiles' Rust loop checked for signals, which
            # it answers with a KeyboardInterrupt of its own.
            raise Stopped(received[-1]) from None
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def open_collection(
    settings: Settings, *, create: bool = False, deleting: bool = False
) -> Iterator[Index]:
    """The configured collection, opened; says so when its lost catalog had to be rebuilt."""
    from ragged import render
    from ragged.index import open_index

    with open_index(settings, create=create, deleting=deleting) as index:
        if index.rebuilt is not None:
            render.notice(
                f"the catalog of collection '{index.name}' was missing or empty; rebuilt it "
                f"from the vector store ({index.rebuilt} chunks, nothing embedded again)"
            )
        if index.stale is not None:
            render.notice(f"{index.stale}: using this machine's last copy of '{index.name}'")
        yield index
        if index.unblanked is not None:
            render.notice(index.unblanked)  # it says whether a later run tries again
        problem = index.purge_cache()  # what a reader's catch-up forgot, before it ends
        if problem is not None:
            purge_notice(problem)


def purge_notice(problem: str, retried: bool = True) -> None:
    """Deleted text that may stay readable in the files: one line, and what clears it."""
    from ragged import render
    from ragged.index import purge_advice

    render.notice(purge_advice(problem, retried))


class Command(TyperCommand):
    """Typer's command, with readable arguments in --help: `PATH...`, not `paths... <list[Path]>`.

    Typer prints an argument's Python type after its metavar; an option with a metavar it
    leaves alone. Arguments here always have a metavar, so the type is dropped for them too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument and param.metavar:
                param.__class__ = _NamedArgument


class _NamedArgument(TyperArgument):
    def display_type_rich(self, ctx: typer.Context) -> str | None:  # type: ignore[override]
        return None

    def _rich_display_name(self) -> str:
        # The usage line already says `[PATH]...`; the help list says `PATH...`.
        return f"{self.metavar}..." if self.nargs != 1 else str(self.metavar)


class IngestCommand(Command):
    """`ingest --help` ends with the file types ingest reads, looked up only when shown.

    The list lives with the loaders (ragged.ingest.loaders.SUPPORTED_SUFFIXES); importing
    them costs ~30 ms, which `ragged --help` must not pay, so the epilog is built lazily.
    """

    @property
    def epilog(self) -> str | None:  # type: ignore[override]
        return f"Supported file types: {supported_types()}."

    @epilog.setter
    def epilog(self, value: str | None) -> None:
        pass


def supported_types() -> str:
    """'.docx .htm .html .md …': what ingest reads, in a stable order (images with OCR)."""
    from ragged.ingest.loaders import describe_suffixes

    return describe_suffixes()


# -- completion: what the shell offers after an option (collection names, --mode values) ----


def complete_collection(ctx: typer.Context, incomplete: str) -> list[str]:
    """Collections with a catalog in the data dir (cheap: a directory listing, no Chroma)."""
    try:
        from ragged.catalog import catalog_path
        from ragged.config import load_settings

        root = ctx.find_root().params
        flags = {k: root.get(k) for k in ("home", "chroma_url")}
        settings = load_settings(flags, config_file=root.get("config"))
        folder = catalog_path(settings, "x").parent
        names = sorted(p.stem for p in folder.glob("*.sqlite"))
    except Exception:  # a completion must never print a traceback into the shell
        return []
    return [n for n in names if n.startswith(incomplete)]


class Mode(StrEnum):
    """Retrieval modes; the same names as ragged.config.MODES (a test holds them equal)."""

    hybrid = "hybrid"
    dense = "dense"
    lexical = "lexical"


CollectionOpt = Annotated[
    str | None,
    typer.Option(
        "--collection",
        "-c",
        metavar="NAME",
        autocompletion=complete_collection,
        help="Collection to use.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ModeOpt = Annotated[
    Mode | None, typer.Option(help="Retrieval: hybrid (default), dense or lexical.")
]
PathOpt = Annotated[
    str | None,
    typer.Option("--path", metavar="GLOB", help="Only passages from files matching this glob."),
]
TopK = Annotated[
    int | None,
    typer.Option("-k", "--top-k", metavar="N", min=1, help="How many passages to retrieve."),
]
EmbedOpt = Annotated[
    str | None,
    typer.Option(metavar="MODEL", help="Embedding model (must match the collection's)."),
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", metavar="MODEL", help="Chat model (default: fits this machine)."),
]
RerankOpt = Annotated[
    int | None,
    typer.Option(
        "--rerank",
        metavar="N",
        min=0,
        help="Have the chat model re-judge the best N passages first (one request each; 0 = off).",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def has_words(value: str) -> str:
    """An argument callback: a question or query that is empty or blank is a usage error (2),
    as the HTTP API refuses it, rather than a search for nothing that returns anything. Bytes
    that were not UTF-8 (a Latin-1 terminal) are read as text (retrieve.well_formed)."""
    if not value.strip():
        raise typer.BadParameter("it is empty: give some words to look for")
    from ragged.retrieve import well_formed

    return well_formed(value)
