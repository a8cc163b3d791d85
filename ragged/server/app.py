"""The app: routers assembled, an API key on every data route (or only this machine's names
without one), CORS only when asked, the page."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragged import __version__
from ragged.server import api, openai
from ragged.server.api import error_body
from ragged.server.hosts import HostCheck
from ragged.server.service import Service

if TYPE_CHECKING:
    from ragged.config import Settings

STATIC = Path(str(files("ragged.server") / "static"))


class Unauthorized(Exception):
    """No valid `Authorization: Bearer <RAGGED_API_KEY>` on a route that needs it."""


def require_key(request: Request) -> None:
    """Every data route needs the key when one is set; compared in constant time."""
    key: str | None = request.app.state.service.api_key
    if not key:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise Unauthorized


def create_app(
    settings: Settings,
    *,
    api_key: str | None = None,
    cors_origins: Sequence[str] = (),
    allowed_hosts: Sequence[str] = (),
) -> FastAPI:
    """The app for one data dir; `ragged serve` runs it on uvicorn, tests on a free port.

    Without `api_key`, only requests addressed to this machine or to `allowed_hosts` (names
    from `hosts.allowed_names`) are answered: see `hosts`."""
    svc = Service(settings, api_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        svc.close()

    app = FastAPI(
        title="ragged",
        version=__version__,
        lifespan=lifespan,
        # The interactive docs load their scripts from a CDN: a local-first tool serves none.
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = svc
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    if not api_key:
        # Added last, so it runs first: a refused request reaches nothing else.
        app.add_middleware(HostCheck, extra=tuple(allowed_hosts))

    @app.exception_handler(Unauthorized)
    def unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        return JSONResponse(
            error_body(
                "missing or wrong API key",
                "send `Authorization: Bearer <key>` with the server's RAGGED_API_KEY",
                "authentication_error",
            ),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail), None, "invalid_request_error"),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse(
            error_body(f"invalid request: {problems}", None, "invalid_request_error"),
            status_code=422,
        )

    @app.get("/health")
    def health() -> JSONResponse:
        """ragged's version, Ollama and the store reachable, chunks per collection: 200 or 503."""
        ok, data = svc.health()
        return JSONResponse(data, status_code=200 if ok else 503)

    # The page and its files hold no data, so they need no key: the page asks for it and
    # sends it with every request it makes.
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    guarded: Any = [Depends(require_key)]
    app.include_router(api.router, dependencies=guarded)
    app.include_router(openai.router, dependencies=guarded)
    return app
