"""OpenAI-compatible routes: a collection is a model (`ragged:NAME`), a chat is a conversation.

Clients such as Open WebUI, LibreChat, Continue or the `openai` Python client send the whole
message history with each request; the last user message is the question and the earlier
user/assistant pairs are the conversation it follows. System messages are ignored: ragged's
own instructions (answer from the sources only, cite them) must not be overridden.

The answer keeps its `[n]` citations, gets the cited sources listed at its end, and carries
them as `annotations` of type `url_citation` pointing at /sources/{id}.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from ragged.server.api import MAX_QUESTION, MAX_TURNS, error_body, gone, service, source_url
from ragged.server.service import (
    BadRequest,
    Event,
    NotFound,
    Service,
    relay,
    status_of,
    until_gone,
)

if TYPE_CHECKING:
    from ragged.conversation import Exchange, Reply
    from ragged.errors import RaggedError

MODEL_PREFIX = "ragged:"
SOURCES_HEADING = "Sources:"
router = APIRouter(prefix="/v1")


class Message(BaseModel):
    role: str
    # A string, or OpenAI's list of parts ([{"type": "text", "text": ...}, ...]).
    content: str | list[dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        parts = self.content or []
        return "\n".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")


class ChatRequest(BaseModel):
    model: str
    messages: list[Message] = Field(min_length=1, max_length=2 * MAX_TURNS + 10)
    stream: bool = False
    # Accepted for compatibility and ignored: ragged sets its own sampling for grounded answers.
    temperature: float | None = None
    max_tokens: int | None = None


def collection_of(model: str) -> str:
    return model[len(MODEL_PREFIX) :] if model.startswith(MODEL_PREFIX) else model


def model_id(collection: str) -> str:
    return f"{MODEL_PREFIX}{collection}"


def openai_error(exc: RaggedError) -> JSONResponse:
    status = status_of(exc)
    kind = "invalid_request_error" if status in (400, 404) else "server_error"
    body = error_body(exc.message, exc.hint, kind)
    if isinstance(exc, NotFound) and "model" in exc.message:
        body["error"].update(code="model_not_found", param="model")
    return JSONResponse(body, status_code=status)


def conversation_of(messages: list[Message]) -> tuple[str, list[Exchange]]:
    """The last user message, and the user/assistant pairs before it (oldest first)."""
    from ragged.conversation import Exchange

    turns = [m for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user" or not turns[-1].text.strip():
        raise BadRequest("the last message must be the user's question")
    question = turns[-1].text.strip()
    if len(question) > MAX_QUESTION:
        raise BadRequest(f"the question is longer than {MAX_QUESTION} characters")
    history: list[Exchange] = []
    asked: str | None = None
    for m in turns[:-1]:
        if m.role == "user":
            asked = m.text.strip()
        elif asked is not None:
            history.append(Exchange(asked, strip_sources(m.text)))
            asked = None
    return question, history


def strip_sources(text: str) -> str:
    """An earlier answer without the source list this server appended to it."""
    return re.split(rf"\n\s*{re.escape(SOURCES_HEADING)}\s*\n", text, maxsplit=1)[0].strip()


@router.get("/models")
def models(svc: Service = Depends(service)) -> Any:
    """One model per collection."""
    from ragged.errors import RaggedError

    try:
        names = svc.collections()
    except RaggedError as exc:
        return openai_error(exc)
    return {
        "object": "list",
        "data": [
            {"id": model_id(n), "object": "model", "created": 0, "owned_by": "ragged"}
            for n in names
        ],
    }


@router.post("/chat/completions")
def chat_completions(body: ChatRequest, request: Request, svc: Service = Depends(service)) -> Any:
    from ragged.errors import RaggedError

    base = str(request.base_url).rstrip("/")
    try:
        name = collection_of(body.model)
        svc.collection(name)
        if name not in svc.collections():
            raise NotFound(
                f"model '{body.model}' does not exist; GET /v1/models lists the collections"
            )
        question, history = conversation_of(body.messages)
    except RaggedError as exc:
        return openai_error(exc)
    completion = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    events = svc.stream(question, history, name, {})
    # Wait for the first token (or the end) before answering, so an error that happens
    # first (Ollama down, a failing store) gets a proper status instead of a broken stream.
    early: list[Event] = []
    for event in events:
        early.append(event)
        if event.kind != "standalone":
            break
    last = early[-1]
    if last.kind == "error" and last.error is not None:
        return openai_error(last.error)
    if last.kind == "done" and last.reply is not None and last.reply.answer is None:
        notice = last.reply.retrieval.notice or "Ollama cannot be reached"
        return JSONResponse(
            error_body(f"cannot generate an answer: {notice}", None, "server_error"),
            status_code=503,
        )
    stream = chain(early, events)
    if body.stream:
        return StreamingResponse(
            relay(chunks(stream, completion, created, body.model, name, base), events),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    text: list[str] = []
    for event in chain(early, until_gone(events, gone(request))):
        if event.kind == "token":
            text.append(event.text)
        elif event.kind == "error" and event.error is not None:
            return openai_error(event.error)
        elif event.kind == "done" and event.reply is not None:
            content, annotations = finish("".join(text), event.reply, name, base)
            return {
                "id": completion,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": content,
                            "annotations": annotations,
                        },
                        "finish_reason": "stop",
                    }
                ],
            }
    return openai_error(BadRequest("the answer ended without a result"))


def finish(streamed: str, result: Reply, collection: str, base: str) -> tuple[str, list[Any]]:
    """The whole content (the answer, then its cited sources) and the url_citation annotations."""
    answer = result.answer
    if answer is None or not answer.answered:
        return (answer.text if answer else streamed), []
    content = streamed + sources_text(result)
    annotations = []
    for source in answer.cited:
        marker = content.find(f"[{source.n}]")
        listed = content.rfind(f"[{source.n}] ")
        start = marker if marker >= 0 else listed
        annotations.append(
            {
                "type": "url_citation",
                "url_citation": {
                    "url": base + source_url(collection, source.hit.id),
                    "title": source.label,
                    "start_index": start,
                    "end_index": start + len(f"[{source.n}]"),
                },
            }
        )
    return content, annotations


def sources_text(result: Reply) -> str:
    answer = result.answer
    if answer is None or not answer.cited:
        return ""
    lines = [f"[{s.n}] {s.label}" for s in answer.cited]
    return f"\n\n{SOURCES_HEADING}\n" + "\n".join(lines)


def chunks(
    events: Iterator[Event], completion: str, created: int, model: str, collection: str, base: str
) -> Iterator[str]:
    """The answer as `chat.completion.chunk` events, then `data: [DONE]`."""

    def chunk(delta: dict[str, Any], finish_reason: Literal["stop"] | None = None) -> str:
        data = {
            "id": completion,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    streamed: list[str] = []
    for event in events:
        if event.kind == "token":
            streamed.append(event.text)
            yield chunk({"content": event.text})
        elif event.kind == "error" and event.error is not None:
            # An error after the first token: OpenAI's stream shape for it, then the end.
            yield f"data: {json.dumps(error_body(event.error.message, event.error.hint, 'server_error'))}\n\n"
            break
        elif event.kind == "done" and event.reply is not None:
            text = "".join(streamed)
            content, annotations = finish(text, event.reply, collection, base)
            tail = content[len(text) :]
            if tail:
                yield chunk({"content": tail})
            if annotations:
                yield chunk({"annotations": annotations})
            yield chunk({}, "stop")
    yield "data: [DONE]\n\n"
