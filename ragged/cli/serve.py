"""`ragged serve`: the HTTP app, the page and the OpenAI-compatible API."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ragged.cli._common import CollectionOpt, ModelOpt, State, reporting


def serve(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            metavar="HOST", help="Address to listen on; beyond loopback needs RAGGED_API_KEY."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(metavar="PORT", min=1, max=65535, help="Port to listen on.")
    ] = 8000,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            metavar="ORIGIN",
            help="Allow browser pages from this origin (repeatable); none by default.",
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            metavar="NAME",
            help="Also answer requests addressed to this name (.example.org: every name under "
            "it); without RAGGED_API_KEY only this machine's names are answered (repeatable).",
        ),
    ] = None,
    allow_no_key: Annotated[
        bool,
        typer.Option(
            "--allow-no-key",
            help="Serve beyond loopback without RAGGED_API_KEY (a container whose port is "
            "published on loopback only, as in docker-compose.yml).",
        ),
    ] = False,
    model: ModelOpt = None,
    collection: CollectionOpt = None,
) -> None:
    """Serve the page, the JSON API and an OpenAI-compatible API for your collections.

    GET /health, POST /search, POST /ask (JSON or server-sent events), GET /sources/{id},
    GET /v1/models (one model per collection: ragged:NAME), POST /v1/chat/completions.
    With RAGGED_API_KEY set, every route but /health and the page needs
    `Authorization: Bearer <key>`; without it, only loopback addresses are served, and only
    requests addressed to this machine (an address, localhost, its host name) or to a name
    given with --allow-host are answered: no web page can reach your documents by pointing
    its own name at 127.0.0.1 (DNS rebinding).

    Example: ragged serve --port 8000, then open http://127.0.0.1:8000/
    """
    from ragged import render
    from ragged.server import API_KEY_ENV, bind, check_bind, run
    from ragged.server.hosts import allowed_names

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(collection=collection, chat_model=model)
        api_key = os.environ.get(API_KEY_ENV) or None
        check_bind(host, api_key, allow_no_key)
        allowed_hosts = allowed_names(allow_host or ())
        sock = bind(host, port)
        shown = f"[{host}]" if ":" in host else host
        render.console(stderr=True).print(
            f"ragged serving http://{shown}:{port}/ (data dir {settings.home}"
            + (", API key required" if api_key else "")
            + "; Ctrl-C to stop)"
        )
        run(
            settings,
            sock,
            api_key=api_key,
            cors_origins=cors_origin or (),
            allowed_hosts=allowed_hosts,
            log_level="debug" if state.debug else "info",
        )
