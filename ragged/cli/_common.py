"""What every command shares: the per-run State, the one error reporter, common options."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.index import Index


@dataclass
class State:
    """Global options, handed to every command on the typer.Context."""

    flags: dict[str, Any] = field(default_factory=dict)
    config: Path | None = None
    debug: bool = False

    def settings(self, **more: Any) -> Settings:
        from ragged.config import load_settings

        return load_settings(
            {**self.flags, **{k: v for k, v in more.items() if v is not None}},
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
    except KeyboardInterrupt:
        render.console(stderr=True).print("interrupted")
        raise typer.Exit(130) from None  # 128 + SIGINT


@contextmanager
def open_collection(settings: Settings, *, create: bool = False) -> Iterator[Index]:
    """The configured collection, opened; says so when its lost catalog had to be rebuilt."""
    from ragged import render
    from ragged.index import open_index

    with open_index(settings, create=create) as index:
        if index.rebuilt is not None:
            render.notice(
                f"the catalog of collection '{index.name}' was missing or empty; rebuilt it "
                f"from the vector store ({index.rebuilt} chunks, nothing embedded again)"
            )
        yield index


CollectionOpt = Annotated[str | None, typer.Option("--collection", "-c", help="Collection to use.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ModeOpt = Annotated[str | None, typer.Option(help="Retrieval: hybrid (default), dense or lexical.")]
PathOpt = Annotated[
    str | None, typer.Option("--path", help="Only passages from files matching this glob.")
]
TopK = Annotated[int | None, typer.Option("-k", "--top-k", help="How many passages to retrieve.")]
EmbedOpt = Annotated[
    str | None, typer.Option(help="Embedding model (must match the collection's).")
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="Chat model (default: fits this machine).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
