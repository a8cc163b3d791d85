"""`ragged search` and `ragged ask`."""

from __future__ import annotations

from typing import Annotated

import typer

from ragged.cli._common import (
    CollectionOpt,
    EmbedOpt,
    JsonOpt,
    ModelOpt,
    ModeOpt,
    PathOpt,
    RerankOpt,
    State,
    TopK,
    has_words,
    open_collection,
    reporting,
)


def search(
    ctx: typer.Context,
    query: Annotated[
        str, typer.Argument(metavar="QUERY", help="What to look for.", callback=has_words)
    ],
    top_k: TopK = None,
    mode: ModeOpt = None,
    path: PathOpt = None,
    collection: CollectionOpt = None,
    embed_model: EmbedOpt = None,
    rerank: RerankOpt = None,
    model: ModelOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the passages that best match a query, without calling a language model
    (unless --rerank asks the chat model to judge them).

    Example: ragged search "rate limiting" --path '*.md' -k 5
    """
    from ragged import render
    from ragged.llm import connect
    from ragged.retrieve import retrieve

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(
            collection=collection,
            embed_model=embed_model,
            mode=mode,
            rerank=rerank,
            chat_model=model,
        )
        with render.status("[dim]searching…[/]"), open_collection(settings) as index:
            result = retrieve(query, index, connect(settings), k=top_k, path_glob=path)
        if result.notice:
            render.notice(result.notice)
        if json_out:
            render.print_json(
                {
                    "query": query,
                    "mode": result.mode,
                    "notice": result.notice,
                    "reranked": result.reranked.judged if result.reranked else 0,
                    "hits": [render.hit_data(h) for h in result.hits],
                }
            )
        else:
            render.search_results(result)


def ask(
    ctx: typer.Context,
    question: Annotated[
        str, typer.Argument(metavar="QUESTION", help="Your question.", callback=has_words)
    ],
    model: ModelOpt = None,
    top_k: TopK = None,
    mode: ModeOpt = None,
    path: PathOpt = None,
    collection: CollectionOpt = None,
    embed_model: EmbedOpt = None,
    rerank: RerankOpt = None,
    json_out: JsonOpt = False,
    show_thinking: Annotated[
        bool,
        typer.Option(
            "--show-thinking",
            help="Let a thinking model (qwen3, deepseek-r1, gpt-oss) think, and show its "
            "reasoning dimmed on stderr; it is never part of the answer.",
        ),
    ] = False,
) -> None:
    """Answer a question from your documents, streaming the answer and citing its sources.

    Example: ragged ask "How do I declare a path parameter?" -m mistral:7b
    """
    from ragged import render
    from ragged.answer import NOT_RELEVANT
    from ragged.answer import ask as run_ask
    from ragged.llm import connect

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(
            collection=collection,
            embed_model=embed_model,
            mode=mode,
            chat_model=model,
            rerank=rerank,
        )
        with render.answer_stream() as stream:
            # Opening the collection (importing Chroma) is most of the wait before a search.
            stream.stage("searching")
            with open_collection(settings) as index:
                asked = run_ask(
                    question,
                    index,
                    connect(settings),
                    k=top_k,
                    path_glob=path,
                    on_token=None if json_out else stream.write,
                    on_stage=stream.stage,
                    on_thinking=stream.thinking if show_thinking else None,
                    show_thinking=show_thinking,
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
        if asked.answer.outcome == NOT_RELEVANT:
            # "Not in your documents" is an answer too: exit 0, with what to try on stderr.
            render.console().print(render.escape(asked.answer.text))
        if not asked.answer.answered:
            if asked.answer.hint:
                render.notice(asked.answer.hint)
            return
        render.answer_sources(asked.answer)
