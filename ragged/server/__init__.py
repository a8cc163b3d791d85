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
    import socket

    from ragged.config import Settings

DEFAULT_HOST = "127.0.0.1"
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


def bind(host: str, port: int) -> socket.socket:
    """The socket to serve on, bound before anything says ragged serves there.

    As uvicorn binds it (SO_REUSEADDR, IPv6 for an address with a colon), but here: left to
    uvicorn, a port in use came after the "serving" line as its log lines ("ERROR: [Errno
    98] ...") and exit status 3."""
    import errno
    import socket

    address = host.strip("[]")
    shown = f"[{address}]" if ":" in address else address
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        if isinstance(exc, socket.gaierror):
            reason, hint = (
                "no such host name",
                f"name an address of this machine, or {DEFAULT_HOST}",
            )
        elif exc.errno == errno.EADDRINUSE:
            reason = "another program is listening on that port"
            hint = "stop it (another `ragged serve`?), or choose another port with --port"
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = "this machine has no such address"
            hint = f"serve on one of its addresses, on 0.0.0.0 (all of them), or on {DEFAULT_HOST}"
        elif exc.errno == errno.EACCES:
            reason = "permission denied (ports below 1024 need privileges)"
            hint = "choose a port from 1024 up with --port"
        else:
            reason, hint = exc.strerror or str(exc), None
        raise ConfigError(f"cannot serve on {shown}:{port}: {reason}", hint=hint) from exc
    sock.set_inheritable(True)
    return sock


def run(
    settings: Settings,
    sock: socket.socket,
    *,
    api_key: str | None = None,
    cors_origins: Sequence[str] = (),
    allowed_hosts: Sequence[str] = (),
    log_level: str = "info",
) -> None:
    """Serve on `sock` (`bind`, after `check_bind`) until interrupted."""
    import uvicorn

    from ragged.server.app import create_app

    app = create_app(
        settings, api_key=api_key, cors_origins=cors_origins, allowed_hosts=allowed_hosts
    )
    # Access logs only at debug: question text would otherwise land in every log line.
    config = uvicorn.Config(
        app, log_level=log_level, access_log=log_level == "debug", timeout_graceful_shutdown=5
    )
    uvicorn.Server(config).run(sockets=[sock])
