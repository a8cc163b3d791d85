"""ragged's own routes: /collections, /search, /ask (JSON or server-sent events), /sources."""

from __future__ import annotations

import html
import json
import mimetypes
import re
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from ragged.server.service import NotFound, Service, relay, status_of, until_gone

if TYPE_CHECKING:
    from ragged.answer import Source
    from ragged.catalog import ChunkRow
    from ragged.conversation import Exchange, Reply
    from ragged.errors import RaggedError
    from ragged.index import Hit
    from ragged.retrieve import Retrieval

CHUNK_ID = re.compile(r"^[0-9a-f]{32}$")  # index.chunk_id: 32 hex digits, nothing else
MAX_QUESTION = 4000  # characters; a question, not a document
MAX_TURNS = 200  # earlier turns a request may carry; the model sees the newest that fit
MAX_ANSWER = 40_000  # characters of one earlier answer
# What the browser gets for a stored file: text formats as plain text, and everything but a
# PDF in a sandbox, so an indexed HTML page cannot run script on the app's origin.
TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".rst", ".html", ".htm"}
SANDBOX = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


router = APIRouter()


class Turn(BaseModel):
    question: str = Field(max_length=MAX_QUESTION)
    answer: str = Field(default="", max_length=MAX_ANSWER)


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=MAX_QUESTION)
    collection: str | None = None
    k: int | None = Field(default=None, ge=1, le=100)
    mode: str | None = Field(default=None, pattern="^(hybrid|dense|lexical)$")
    path: str | None = None


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=MAX_QUESTION)
    collection: str | None = None
    k: int | None = Field(default=None, ge=1, le=100)
    mode: str | None = Field(default=None, pattern="^(hybrid|dense|lexical)$")
    path: str | None = None
    history: list[Turn] = Field(
        default_factory=list, max_length=MAX_TURNS, description="Earlier turns, oldest first."
    )
    stream: bool = False


def error_response(exc: RaggedError) -> JSONResponse:
    return JSONResponse(error_body(exc.message, exc.hint), status_code=status_of(exc))


def error_body(message: str, hint: str | None = None, kind: str = "ragged_error") -> dict[str, Any]:
    """One error shape for every route, OpenAI's, so /v1 clients read it too."""
    return {"error": {"message": message, "type": kind, "hint": hint}}


def source_url(collection: str, chunk: str) -> str:
    return f"/sources/{chunk}?collection={quote(collection)}"


def hit_data(hit: Hit, collection: str) -> dict[str, Any]:
    return {
        "id": hit.id,
        "label": hit.label,
        "path": hit.path,
        "page": hit.page,
        "heading": hit.heading,
        "location": hit.location,
        "score": hit.score,
        "text": hit.text,
        "url": source_url(collection, hit.id),
    }


def source_data(source: Source, cited: bool, collection: str) -> dict[str, Any]:
    return {"n": source.n, "cited": cited, **hit_data(source.hit, collection)}


def reply_sources(result: Reply, collection: str) -> list[dict[str, Any]]:
    """The passages the model was given, numbered as it saw them; or, without a model, the hits."""
    if result.answer is None:
        return [
            {"n": i, "cited": False, **hit_data(h, collection)}
            for i, h in enumerate(result.retrieval.hits, start=1)
        ]
    cited = {s.n for s in result.answer.cited}
    return [source_data(s, s.n in cited, collection) for s in result.answer.given]


def reply_summary(result: Reply, retrieval: Retrieval) -> dict[str, Any]:
    answer = result.answer
    notice = retrieval.notice
    if answer is None:
        notice = "cannot generate an answer without Ollama; these are the best passages"
    return {
        "question": result.question,
        "standalone": result.standalone,
        "answer": answer.text if answer else None,
        "answered": bool(answer and answer.answered),
        "in_documents": result.in_documents,
        "model": result.model,
        "mode": retrieval.mode,
        "notice": notice,
        "unknown_citations": answer.unknown_citations if answer else [],
        "timings": {**(answer.timings if answer else {}), **result.timings},
    }


def history_of(turns: list[Turn]) -> list[Exchange]:
    from ragged.conversation import Exchange

    return [Exchange(t.question, t.answer) for t in turns]


def options(body: SearchRequest | AskRequest) -> dict[str, Any]:
    return {"k": body.k, "mode": body.mode, "path_glob": body.path}


@router.get("/collections")
def collections(svc: Service = Depends(service)) -> Any:
    """The collections this server can answer from, with the default marked."""
    try:
        names = svc.collections()
    except Exception as exc:
        from ragged.errors import RaggedError

        if isinstance(exc, RaggedError):
            return error_response(exc)
        raise
    return {"collections": names, "default": svc.settings.collection}


@router.post("/search")
def search(body: SearchRequest, svc: Service = Depends(service)) -> Any:
    """The best passages for a query, without a language model."""
    from ragged.errors import RaggedError
    from ragged.retrieve import retrieve

    try:
        name = svc.collection(body.collection)
        with svc.index(name) as index:
            result = retrieve(
                body.query, index, svc.llm, k=body.k, mode=body.mode, path_glob=body.path
            )
    except RaggedError as exc:
        return error_response(exc)
    return {
        "query": body.query,
        "collection": name,
        "mode": result.mode,
        "notice": result.notice,
        "reranked": result.reranked.judged if result.reranked else 0,
        "hits": [hit_data(h, name) for h in result.hits],
    }


@router.post("/ask")
def ask(body: AskRequest, request: Request, svc: Service = Depends(service)) -> Any:
    """Answer a question (with earlier turns as `history`); `stream` or an Accept of
    text/event-stream sends events: standalone, token..., sources, done."""
    from ragged.errors import RaggedError

    try:
        name = svc.collection(body.collection)
    except RaggedError as exc:
        return error_response(exc)
    history = history_of(body.history)
    wants_events = body.stream or "text/event-stream" in request.headers.get("accept", "")
    if not wants_events:
        turn = svc.stream(body.question, history, name, options(body))
        last = deque(until_gone(turn, gone(request)), maxlen=1)
        if not last or last[0].kind != "done" or last[0].reply is None:
            if last and last[0].error is not None:
                return error_response(last[0].error)
            return Response(status_code=499)  # the client went away: nobody reads this
        result = last[0].reply
        return {
            **reply_summary(result, result.retrieval),
            "collection": name,
            "sources": reply_sources(result, name),
        }
    turn = svc.stream(body.question, history, name, options(body))
    first = next(turn)
    if first.kind == "error" and first.error is not None:
        return error_response(first.error)
    return StreamingResponse(
        relay(sse_events(first, turn, name), turn),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def gone(request: Request) -> Callable[[], bool]:
    """Whether the client went away, asked from a sync route's worker thread."""
    from anyio.from_thread import run

    return lambda: run(request.is_disconnected)


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def sse_events(first: Any, rest: Iterator[Any], collection: str) -> Iterator[str]:
    from itertools import chain

    for event in chain([first], rest):
        if event.kind == "standalone":
            yield sse("standalone", {"question": event.text})
        elif event.kind == "token":
            yield sse("token", {"text": event.text})
        elif event.kind == "error" and event.error is not None:
            yield sse("error", error_body(event.error.message, event.error.hint)["error"])
        elif event.kind == "done" and event.reply is not None:
            result = event.reply
            yield sse("sources", {"sources": reply_sources(result, collection)})
            yield sse("done", {**reply_summary(result, result.retrieval), "collection": collection})


# -- /sources: only what the index holds, looked up by id ---------------------------------------


def stored_chunk(svc: Service, chunk: str, collection: str | None) -> tuple[str, ChunkRow]:
    """The chunk with this id in the collection's catalog, whose file the catalog still lists.

    The id must look like one ragged makes before anything is opened, and the file's path
    comes from the catalog: no part of the request ever becomes a path.
    """
    if not CHUNK_ID.match(chunk):
        raise NotFound(f"no passage with id {chunk!r}")
    name = svc.collection(collection)
    with svc.index(name) as index:
        row = index.catalog.chunks_by_id([chunk]).get(chunk)
        if row is None or index.catalog.file(row.path) is None:
            raise NotFound(f"no passage with id {chunk} in collection '{name}'")
    return name, row


@router.get("/sources/{chunk}")
def source(
    chunk: str, request: Request, collection: str | None = None, svc: Service = Depends(service)
) -> Any:
    """A cited passage and a link to its file (PDFs open at its page); HTML for browsers."""
    from ragged.errors import RaggedError
    from ragged.index import Hit

    try:
        name, row = stored_chunk(svc, chunk, collection)
    except RaggedError as exc:
        return error_response(exc)
    hit = Hit(row.id, row.text, 0.0, row.path, row.page, row.heading, row.idx)
    data = hit_data(hit, name)
    del data["score"]
    file_url = f"/sources/{row.id}/file?collection={quote(name)}"
    data.update(collection=name, file_url=file_url + (f"#page={row.page}" if row.page else ""))
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(source_page(data))
    return data


@router.get("/sources/{chunk}/file")
def source_file(chunk: str, collection: str | None = None, svc: Service = Depends(service)) -> Any:
    """The file a passage came from, as stored in the index when it was ingested."""
    from ragged.errors import RaggedError

    try:
        _, row = stored_chunk(svc, chunk, collection)
    except RaggedError as exc:
        return error_response(exc)
    path = Path(row.path)
    if not path.is_file():
        return error_response(NotFound(f"{row.path} is in the index but no longer on disk"))
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return FileResponse(path, media_type="application/pdf", content_disposition_type="inline")
    media = "text/plain; charset=utf-8" if suffix in TEXT_SUFFIXES else None
    media = media or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media, headers=SANDBOX, content_disposition_type="inline")


def source_page(data: dict[str, Any]) -> str:
    """A passage for a person who followed a citation link (e.g. a source chip in Open WebUI)."""
    where = f" ({html.escape(data['location'])})" if data["location"] else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(data["label"])}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/style.css"></head>
<body class="source-page"><main>
<h1>{html.escape(data["label"])}{where}</h1>
<blockquote class="passage">{html.escape(data["text"])}</blockquote>
<p><a href="{html.escape(data["file_url"])}">Open the file</a></p>
</main></body></html>"""


def not_found_response() -> Response:
    return JSONResponse(error_body("not found"), status_code=404)
