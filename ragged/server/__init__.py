"""`ragged serve`: the HTTP app (FastAPI on uvicorn). The only package that imports them.

Layout, after FastAPI's "Bigger Applications": `app.py` assembles the app (auth, CORS, health,
the page), `api.py` holds ragged's own routes (/search, /ask, /sources), `openai.py` the
OpenAI-compatible /v1 routes, `service.py` what they share (settings, Ollama, open
collections, running a turn on a worker thread), `static/` the page (no build step).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ragged.errors import ConfigError

if TYPE_CHECKING:
    from ragged.config import Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
API_KEY_ENV = "RAGGED_API_KEY"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost` reach only this machine; anything else may not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_bind(host: str, api_key: str | None, allow_no_key: bool = False) -> None:
    """Refuse to serve documents beyond this machine without an API key."""
    if api_key or is_loopback(host) or allow_no_key:
        return
    raise ConfigError(
        f"refusing to serve on {host} without an API key: anyone who can reach it could "
        "read your documents",
        hint=f"set {API_KEY_ENV} (clients send it as `Authorization: Bearer <key>`), or "
        f"serve on {DEFAULT_HOST}",
    )


def run(
    settings: Settings,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    api_key: str | None = None,
    cors_origins: Sequence[str] = (),
    allow_no_key: bool = False,
    log_level: str = "info",
) -> None:
    """Serve until interrupted; refuses first when the bind would be open to others."""
    check_bind(host, api_key, allow_no_key)
    import uvicorn

    from ragged.server.app import create_app

    app = create_app(settings, api_key=api_key, cors_origins=cors_origins)
    # Access logs only at debug: question text would otherwise land in every log line.
    uvicorn.run(
        app,
        host=host.strip("[]"),
        port=port,
        log_level=log_level,
        access_log=log_level == "debug",
        timeout_graceful_shutdown=5,
    )
