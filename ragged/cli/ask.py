"""`ragged search` and `ragged ask`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ragged.cli._common import (
    CollectionOpt,
    EmbedOpt,
    JsonOpt,
    ModelOpt,
    ModeOpt,
    PathOpt,
    State,
    TopK,
    open_collection,
    reporting,
)


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
    from ragged.llm import connect
    from ragged.retrieve import retrieve

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(collection=collection, embed_model=embed_model, mode=mode)
        with open_collection(settings) as index:
            result = retrieve(query, index, connect(settings), k=top_k, path_glob=path)
        if result.notice:
            render.notice(result.notice)
        if json_out:
            render.print_json(
                {
                    "query": query,
                    "mode": result.mode,
                    "notice": result.notice,
                    "hits": [render.hit_data(h) for h in result.hits],
                }
            )
        else:
            render.search_results(result)


def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="Your question.")],
    model: ModelOpt = None,
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
    from ragged.answer import ask as run_ask
    from ragged.llm import connect

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(
            collection=collection, embed_model=embed_model, mode=mode, chat_model=model
        )
        with open_collection(settings) as index:
            asked = run_ask(
                question,
                index,
                connect(settings),
                k=top_k,
                path_glob=path,
                on_token=None if json_out else _stream_out,
            )
        result = asked.retrieval
        if result.notice:
            render.notice(result.notice)
        if asked.answer is None:
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
                        "hits": [render.hit_data(h) for h in result.hits],
                    }
                )
            else:
                render.search_results(result)
            raise typer.Exit(1)
        if json_out:
            render.print_json(render.answer_data(asked.answer, result))
            return
        if not asked.answer.answered:
            render.console().print(render.escape(asked.answer.text))
            return
        sys.stdout.write("\n")
        render.answer_sources(asked.answer)


def _stream_out(piece: str) -> None:
    from ragged import render

    # The model may repeat escape sequences found in the documents.
    sys.stdout.write(render.clean(piece))
    sys.stdout.flush()
