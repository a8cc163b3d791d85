"""What the routes share: settings, Ollama, open collections, and a turn run on a worker thread."""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ragged.errors import (
    ConfigError,
    ModelMissing,
    OllamaFailed,
    OllamaUnavailable,
    RaggedError,
    StoreError,
)

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.conversation import Exchange, Reply
    from ragged.index import Index
    from ragged.llm import LLM

# Chroma's own rule for collection names, minus "..": a name from a request becomes a file
# name under the data dir (the catalog), so nothing else may pass.
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.)){1,61}[A-Za-z0-9]$")
IDLE_PER_COLLECTION = 8  # open indexes kept for reuse; more are closed after their request
HEALTH_TIMEOUT = 3.0  # a health check must answer before a container's healthcheck gives up


class BadRequest(RaggedError):
    """A request names something ragged cannot use."""


class NotFound(RaggedError):
    """A request names something that does not exist."""


def status_of(exc: RaggedError) -> int:
    """The HTTP status for an error ragged reports."""
    from ragged.index import CollectionMissing

    if isinstance(exc, NotFound | CollectionMissing):
        return 404
    if isinstance(exc, BadRequest | ConfigError):
        return 400
    if isinstance(exc, OllamaUnavailable | ModelMissing | StoreError):
        return 503
    if isinstance(exc, OllamaFailed):
        return 502
    return 500


@dataclass(frozen=True)
class Event:
    """One step of a turn as it happens: standalone, token, done (with the Reply) or error."""

    kind: str
    text: str = ""
    reply: Reply | None = None
    error: RaggedError | None = None


class _Stopped(Exception):
    """The client went away: stop generating."""


class Turn:
    """A turn running on a worker thread; iterating it yields its events as they happen.

    Iterating blocks on a queue, so it runs on a worker thread too (`relay`). `close()` (the
    client went away) makes the turn's next token raise inside the worker, which ends the
    request to Ollama, and wakes a reader blocked on the queue.
    """

    def __init__(self) -> None:
        self._events: queue.Queue[Event | None] = queue.Queue()
        self._stop = threading.Event()
        self._over = False

    def put(self, event: Event) -> None:
        self._events.put(event)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._stop.set()
        self._events.put(None)

    def __iter__(self) -> Turn:
        return self

    def __next__(self) -> Event:
        event = self.next_within(None)
        assert event is not None  # no timeout: an event, or StopIteration
        return event

    def next_within(self, seconds: float | None) -> Event | None:
        """The next event, or None when none came within `seconds`; StopIteration at the end."""
        if self._over:
            raise StopIteration
        try:
            event = self._events.get(timeout=seconds)
        except queue.Empty:
            return None
        if event is None or event.kind in ("done", "error"):
            self._over = True
        if event is None:
            raise StopIteration
        return event


GONE_POLL_S = 1.0  # how often a route that answers at the end asks whether its client left


def until_gone(turn: Turn, gone: Callable[[], bool]) -> Iterator[Event]:
    """`turn`'s events, for a route that answers only at the end (no stream to notice a
    client leaving on): it asks `gone()` every GONE_POLL_S, and a client that
    gave up (its timeout, a closed script) closes the turn, as a closed stream does."""
    ask_at = time.monotonic() + GONE_POLL_S
    while True:
        try:
            event = turn.next_within(max(0.0, ask_at - time.monotonic()))
        except StopIteration:
            return
        if event is not None:
            yield event
        if time.monotonic() >= ask_at:  # tokens keep coming: ask by the clock, not when idle
            if gone():
                turn.close()
                return
            ask_at = time.monotonic() + GONE_POLL_S


async def relay(pieces: Iterator[str], turn: Turn) -> AsyncIterator[str]:
    """A StreamingResponse's body: `pieces` (made from `turn`'s events), read on a worker
    thread. When the client goes away, Starlette cancels this generator, and the turn is
    closed: otherwise Ollama (one answer at a time by default) would go on generating an
    answer nobody reads while the next question waits behind it."""
    from starlette.concurrency import iterate_in_threadpool

    try:
        async for piece in iterate_in_threadpool(pieces):
            yield piece
    finally:
        turn.close()


class Service:
    """One per app: the settings, one Ollama connection, and a pool of open collections."""

    def __init__(self, settings: Settings, api_key: str | None = None) -> None:
        from ragged.llm import LLM, connect

        self.settings = settings
        self.api_key = api_key
        self.llm: LLM = connect(settings)
        self.probe: LLM = LLM(
            settings.ollama_host, timeout=HEALTH_TIMEOUT, retry_delays=()
        )  # for /health: fail fast, never retry
        self._model: str | None = None
        self._idle: dict[str, list[Index]] = {}
        self._lock = threading.Lock()
        self._unblanked: str | None = None  # the last such line logged: said once, not per request
        self._unpurged: str | None = None  # likewise for a purge of the catalog that failed

    @property
    def model(self) -> str:
        from ragged.models import resolve_chat_model

        if self._model is None:
            self._model = resolve_chat_model(self.settings)[0]
        return self._model

    def collection(self, name: str | None) -> str:
        name = name or self.settings.collection
        if not COLLECTION_NAME.match(name):
            raise NotFound(f"collection '{name}' does not exist")
        return name

    def collections(self) -> list[str]:
        from ragged.index import collection_names

        return collection_names(self.settings)

    @contextmanager
    def index(self, name: str | None) -> Iterator[Index]:
        """An open collection, reused across requests; a failed one is closed, not reused."""
        from ragged.index import open_index

        name = self.collection(name)
        with self._lock:
            idle = self._idle.get(name)
            index = idle.pop() if idle else None
        if index is not None and index.outdated():
            index.close()  # deleted by `reset` since: open what is there now, if anything
            index = None
        reused = index is not None
        if index is None:
            index = open_index(replace(self.settings, collection=name))
        try:
            if reused:
                index.follow()  # what other machines wrote to a shared server since
            yield index
        except BaseException:
            index.close()
            raise
        self._log_unblanked(index)
        self._purge_cache(index)
        with self._lock:
            idle = self._idle.setdefault(name, [])
            if len(idle) < IDLE_PER_COLLECTION:
                idle.append(index)
                index = None
        if index is not None:
            index.close()

    def _log_unblanked(self, index: Index) -> None:
        """A saved conversation a catch-up could not rewrite (a full disk) is named in the
        log, as commands name it on stderr; once, not again for each request that finds it so."""
        from ragged import render

        said = index.unblanked
        with self._lock:
            if said is None or said == self._unblanked:
                return
            self._unblanked = said
        render.notice(said)

    def _purge_cache(self, index: Index) -> None:
        """What a catch-up forgot (another machine removed or replaced it) is purged from this
        machine's catalog, as a command does after its results; a failure is logged once."""
        from ragged import render
        from ragged.index import purge_advice

        problem = index.purge_cache()
        with self._lock:
            if problem is None or problem == self._unpurged:
                return
            self._unpurged = problem
        render.notice(purge_advice(problem))

    def close(self) -> None:
        with self._lock:
            pools, self._idle = self._idle, {}
        for idle in pools.values():
            for index in idle:
                index.close()

    def stream(
        self,
        question: str,
        history: Sequence[Exchange],
        collection: str | None,
        options: dict[str, Any],
    ) -> Turn:
        """Start a turn on a worker thread; the Turn yields its events as they happen.

        The core is synchronous (the ollama client, SQLite, Chroma), so it runs on its own
        thread and hands tokens over a queue. A route that stops reading must close it.
        """
        from ragged.conversation import reply

        turn = Turn()

        def on_token(piece: str) -> None:
            if turn.stopped:
                raise _Stopped
            turn.put(Event("token", piece))

        def work() -> None:
            try:
                with self.index(collection) as index:
                    result = reply(
                        question,
                        history,
                        index,
                        self.llm,
                        model=self.model,
                        on_standalone=lambda text: turn.put(Event("standalone", text)),
                        on_token=on_token,
                        **options,
                    )
                turn.put(Event("done", reply=result))
            except _Stopped:
                pass
            except RaggedError as exc:
                turn.put(Event("error", error=exc))
            except Exception as exc:  # a bug: the client gets a line, the log the traceback
                import logging

                logging.getLogger("ragged.server").exception("turn failed")
                turn.put(Event("error", error=RaggedError(f"internal error: {exc}")))

        threading.Thread(target=work, name="ragged-turn", daemon=True).start()
        return turn

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Ollama and the store reachable, with the collections' chunk counts."""
        from ragged import __version__
        from ragged.index import live_collections
        from ragged.store import store_location

        ollama: dict[str, Any] = {"host": self.settings.ollama_host}
        try:
            ollama.update(reachable=True, version=self.probe.version())
        except RaggedError as exc:
            ollama.update(reachable=False, error=exc.message)
        store: dict[str, Any] = {"where": store_location(self.settings)}
        counts: dict[str, int] = {}
        try:
            counts = {name: count for name, count, _ in live_collections(self.settings)}
            store["reachable"] = True
        except RaggedError as exc:
            store.update(reachable=False, error=exc.message)
        ok = bool(ollama["reachable"] and store["reachable"])
        return ok, {
            "status": "ok" if ok else "unavailable",
            "version": __version__,
            "ollama": ollama,
            "store": store,
            "collections": counts,
        }
