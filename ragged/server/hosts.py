"""Which names a request may be addressed to when the app has no API key: this machine's.

DNS rebinding: a page at attacker.example re-points its own name at 127.0.0.1 once loaded.
To the browser the app then has the page's origin, so the page may read every answer, and
the app cannot tell it from the user's own tabs except by the name in the request's Host
header. Without a key the app therefore answers only names an outsider cannot point
anywhere: an address, a name of one label (`localhost`, a compose service, this machine),
a name under a special-use domain no registry sells (RFC 6761 `.localhost`, mDNS `.local`,
ICANN's `.internal`, RFC 8375 `.home.arpa`), this machine's host name, and what
`--allow-host` adds. Ollama (OLLAMA_ORIGINS) and Jupyter (allow_remote_access) guard their
loopback servers the same way. With a key, the key guards the data: no page of another origin
can read it, and a team's server is reached by names ragged cannot know.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable
from typing import Any

from ragged.errors import ConfigError

SPECIAL_USE = (".localhost", ".local", ".internal", ".home.arpa")
LOGGED_AT_MOST = 100  # distinct refused names logged; a scan must not grow the set for ever

log = logging.getLogger("uvicorn.error")  # uvicorn's own stream, beside its start-up lines


def host_name(header: str) -> str:
    """The name in a Host header, lower case, without its port or a final dot."""
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8000
        return header.partition("]")[0] + "]"
    return header.rpartition(":")[0].rstrip(".") if ":" in header else header.rstrip(".")


def allowed_names(values: Iterable[str]) -> tuple[str, ...]:
    """`--allow-host` values as compared: `rag.example.org`, or `.example.org` for every name
    under it (and itself). A URL or a path is refused with the form that is meant."""
    names = []
    for value in values:
        name = value.strip().lower().rstrip(".")
        if not name.strip(".") or any(c in name for c in "/:@ ") or "*" in name:
            raise ConfigError(
                f"--allow-host takes a host name, not {value!r}",
                hint="e.g. --allow-host rag.example.org, or --allow-host .example.org for "
                "every name under example.org",
            )
        names.append(name)
    return tuple(names)


def this_machine(name: str) -> bool:
    """An outsider cannot point this name at this machine (see the module's docstring)."""
    try:
        ipaddress.ip_address(name.strip("[]"))
        return True
    except ValueError:
        pass
    if "." not in name or name.endswith(SPECIAL_USE):
        return True
    return name == socket.gethostname().lower().rstrip(".")


def allowed(name: str, extra: tuple[str, ...]) -> bool:
    if not name or this_machine(name):
        return True
    for given in extra:
        if name == given or (given.startswith(".") and (name.endswith(given) or name == given[1:])):
            return True
    return False


class HostCheck:
    """ASGI middleware: a request addressed to any other name is a 403 with one clear line."""

    def __init__(self, app: Any, extra: tuple[str, ...] = ()) -> None:
        self.app = app
        self.extra = extra
        self.logged: set[str] = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            header = next((v for k, v in scope["headers"] if k == b"host"), b"")
            name = host_name(header.decode("latin-1"))
            if not allowed(name, self.extra):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})  # policy violation
                else:
                    await self.refuse(name, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def refuse(self, name: str, scope: Any, receive: Any, send: Any) -> None:
        from fastapi.responses import JSONResponse

        from ragged.server.api import error_body

        if name not in self.logged and len(self.logged) < LOGGED_AT_MOST:
            self.logged.add(name)
            log.warning(
                "refused requests addressed to %s (not a name of this machine); to serve it, "
                "restart with --allow-host %s, or set RAGGED_API_KEY",
                name,
                name,
            )
        body = error_body(
            f"refused a request addressed to {name}: without an API key ragged answers only "
            "requests addressed to this machine (an address, localhost, its host name), so "
            "that no web page can read your documents by pointing its own name here",
            f"to reach the app by this name, serve it with `--allow-host {name}`, or set "
            "RAGGED_API_KEY and send the key",
            "permission_error",
        )
        await JSONResponse(body, status_code=403)(scope, receive, send)
