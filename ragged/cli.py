"""The `ragged` command: arguments -> Settings -> one core call -> rendered result."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from ragged import __version__

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    # Rich-rendered help costs ~90 ms of imports (2.6x `import typer`); plain help keeps
    # `ragged --help` within the 1.5x start-up budget (docs/benchmarks.md).
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,  # document text and prompts must not leak into logs
    help="Ask questions of your own documents with local models (Ollama + Chroma).",
)


@dataclass
class State:
    flags: dict[str, Any] = field(default_factory=dict)
    config: Path | None = None
    debug: bool = False

    def settings(self, **more: Any):  # type: ignore[no-untyped-def]
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
    from ragged import render

    render.reset_consoles()
    ctx.obj = State(
        {"home": home, "ollama_host": ollama_host, "chroma_url": chroma_url}, config, debug
    )


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


def _open(settings: Any, ollama: bool = True) -> tuple[Any, Any, Any]:
    from ragged.catalog import open_catalog
    from ragged.llm import connect
    from ragged.store import open_store

    return (connect(settings) if ollama else None), open_store(settings), open_catalog(settings)


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    collection: CollectionOpt = None,
    embed_model: EmbedOpt = None,
    chunk_tokens: Annotated[int | None, typer.Option(help="Chunk size in tokens.")] = None,
    chunk_overlap: Annotated[
        int | None, typer.Option(help="Tokens shared by neighbouring chunks.")
    ] = None,
    include: Annotated[
        list[str] | None, typer.Option(help="Only files matching this glob (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Skip files matching this glob (repeatable).")
    ] = None,
    max_file_mb: Annotated[float | None, typer.Option(help="Skip files larger than this.")] = None,
    embed_batch: Annotated[int | None, typer.Option(help="Texts per embedding request.")] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Embedding requests in flight (match OLLAMA_NUM_PARALLEL).")
    ] = None,
    prune: Annotated[
        bool, typer.Option(help="Forget stored files that are gone from the folder.")
    ] = True,
    wait: Annotated[
        bool, typer.Option(help="Wait for another running ingest instead of exiting.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Parse, chunk, embed and store documents; re-runs only touch what changed.

    Example: ragged ingest ~/notes ./papers --exclude 'drafts/**'
    """
    from ragged import render
    from ragged.ingest import ingest as run_ingest
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
        llm, store, catalog = _open(settings)
        err = render.console(stderr=True)

        def on_file(outcome: Any) -> None:
            if outcome.status == "failed":
                err.print(
                    f"[red]✗[/] {render.escape(outcome.path)}: {render.escape(outcome.reason)}"
                )
            elif outcome.status == "skipped" and not quiet:
                err.print(
                    f"[dim]- {render.escape(outcome.path)}: skipped, {render.escape(outcome.reason)}[/]"
                )

        with (
            write_lock(Path(settings.home), wait=wait),
            render.ingest_progress(not quiet) as progress,
        ):
            report = run_ingest(
                paths,
                settings,
                llm,
                store,
                catalog,
                prune=prune,
                include=include or (),
                exclude=exclude or (),
                on_progress=progress,
                on_file=on_file,
            )
        if json_out:
            render.print_json(report)
        else:
            render.ingest_summary(report)
        seen = report.added + report.updated + report.unchanged + report.failed
        if seen == 0 and report.removed == 0:
            render.notice("no supported documents found (.md .markdown .txt .rst .pdf .html .htm)")
        if report.embed_error:
            render.error(
                f"{report.embed_error}; {report.pending} chunks are stored as text and await embeddings",
                f"{report.embed_hint + '; then ' if report.embed_hint else ''}"
                "run `ragged ingest` again: only those chunks will be embedded",
            )
        if not report.ok:
            raise typer.Exit(1)


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="What to look for.")],
    top_k: TopK = None,
    mode: ModeOpt = None,
    path: PathOpt = None,
    collection: CollectionOpt = None,
    embed_model: EmbedOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the passages that best match a query, without calling a language model.

    Example: ragged search "rate limiting" --path '*.md' -k 5
    """
    from ragged import render
    from ragged.retrieve import retrieve

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(collection=collection, embed_model=embed_model, mode=mode)
        llm, store, catalog = _open(settings)
        result = retrieve(query, settings, llm, store, catalog, k=top_k, path_glob=path)
        if result.notice:
            render.notice(result.notice)
        if json_out:
            render.print_json(
                {"query": query, "mode": result.mode, "notice": result.notice, "hits": result.hits}
            )
        else:
            render.search_results(result)


@app.command()
def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="Your question.")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Chat model (default: fits this machine).")
    ] = None,
    top_k: TopK = None,
    mode: ModeOpt = None,
    path: PathOpt = None,
    collection: CollectionOpt = None,
    embed_model: EmbedOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Answer a question from your documents, streaming the answer and citing its sources.

    Example: ragged ask "How do I declare a path parameter?" -m mistral:7b
    """
    from ragged import render
    from ragged.answer import answer, warm_up
    from ragged.config import resolve_chat_model
    from ragged.retrieve import retrieve

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(
            collection=collection, embed_model=embed_model, mode=mode, chat_model=model
        )
        warm_up()
        llm, store, catalog = _open(settings)
        result = retrieve(question, settings, llm, store, catalog, k=top_k, path_glob=path)
        if result.notice:
            render.notice(result.notice)
        if result.notice and result.mode == "lexical" and (mode or settings.mode) != "lexical":
            # No model to write an answer: the best passages are the most useful thing to show.
            render.notice("cannot generate an answer without Ollama; these are the best passages")
            if json_out:
                render.print_json(
                    {
                        "question": question,
                        "answer": None,
                        "answered": False,
                        "mode": result.mode,
                        "notice": result.notice,
                        "hits": result.hits,
                    }
                )
            else:
                render.search_results(result)
            raise typer.Exit(1)
        chat_model = resolve_chat_model(settings)[0]
        stream = None if json_out else _stream_out
        result_answer = answer(result, llm, chat_model, settings, on_token=stream)
        if json_out:
            render.print_json(render.answer_data(result_answer, result))
            return
        if not result_answer.answered:
            render.console().print(result_answer.text)
            return
        sys.stdout.write("\n")
        render.answer_sources(result_answer)


def _stream_out(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


@app.command("list")
def list_sources(
    ctx: typer.Context, collection: CollectionOpt = None, json_out: JsonOpt = False
) -> None:
    """List the stored files with their chunk counts, pages, time of ingest and status.

    Example: ragged list --json
    """
    from ragged import render
    from ragged.catalog import open_catalog
    from ragged.manage import list_sources as sources

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(collection=collection)
        found = sources(open_catalog(settings))
        if json_out:
            render.print_json(found)
        elif not found:
            render.console().print(f"Collection '{settings.collection}' holds no documents yet.")
        else:
            render.sources_table(found)


@app.command()
def remove(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Stored files or folders to forget.")],
    collection: CollectionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove files (or every file under a folder) from a collection.

    Example: ragged remove ~/notes/old
    """
    from ragged import render
    from ragged.lock import write_lock
    from ragged.manage import remove as run_remove

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(collection=collection)
        _, store, catalog = _open(settings, ollama=False)
        with write_lock(Path(settings.home)):
            removed = run_remove(paths, store, catalog)
        if json_out:
            render.print_json({"removed": removed})
        else:
            for p in removed:
                render.console().print(f"removed {render.escape(p)}")
            if not removed:
                render.notice("none of those paths is stored")
        if not removed:
            raise typer.Exit(1)


@app.command()
def collections(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List the collections with their chunk counts and embedding models.

    Example: ragged collections
    """
    from ragged import render
    from ragged.store import list_collections

    state: State = ctx.obj
    with reporting(state):
        rows = list_collections(state.settings())
        if json_out:
            render.print_json([{"name": n, "chunks": c, "embed_model": m} for n, c, m in rows])
        else:
            render.simple_table(["collection", "chunks", "embedding model"], rows)


@app.command()
def reset(
    ctx: typer.Context,
    collection: CollectionOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a collection: its vectors, its manifest and its keyword index.

    Example: ragged reset --collection scratch --yes
    """
    from ragged import render
    from ragged.lock import write_lock
    from ragged.manage import reset as run_reset

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(collection=collection)
        if not yes and not typer.confirm(
            f"Delete collection '{settings.collection}' and all it holds?"
        ):
            raise typer.Exit(1)
        _, store, _ = _open(settings, ollama=False)
        with write_lock(Path(settings.home)):
            run_reset(settings, store)
        render.console().print(f"collection '{settings.collection}' deleted")


@app.command()
def config(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Show every setting's effective value and where it came from.

    Example: ragged config --json
    """
    from ragged import render
    from ragged.config import describe

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings()
        rows = describe(settings)
        if json_out:
            render.print_json(
                {
                    "config_file": str(settings.config_path),
                    "settings": {n: {"value": v, "source": s} for n, v, s, _ in rows},
                }
            )
        else:
            render.simple_table(
                ["setting", "value", "from", "meaning"],
                rows,
                title=f"config file: {settings.config_path}",
            )


from ragged import cli_copy, cli_doctor  # noqa: E402,F401
