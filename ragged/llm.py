"""All talk to Ollama, through the official `ollama` client; its errors become RaggedErrors here."""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ragged.errors import ModelMissing, OllamaFailed, OllamaUnavailable
from ragged.models import PLAIN, embedding_format, full_name
from ragged.tls import direct_mounts, plain_http_dropped, plain_http_refused, this_machine
from ragged.tls import trouble as tls_trouble

if TYPE_CHECKING:
    from ragged.config import Settings

T = TypeVar("T")

# A wrong or unreachable OLLAMA_HOST should fail in seconds; the response timeout
# (settings.timeout, 300 s) stays long because a model loading over a network can be slow.
CONNECT_TIMEOUT = 10.0
RETRY_STATUSES = frozenset({429, 500, 502, 503})
# Ollama's 400 for chat or generate on an embedding-only model: '"NAME" does not support chat'.
_CANNOT_CHAT = re.compile(r"does not support (chat|generate)\b")
# Bounded backoff, at most 7.5 s of pauses per call; and never past the call's deadline, the
# configured timeout, which bounds the whole wait (attempts and pauses together).
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
TOO_LONG_MESSAGE = "input length exceeds the context length"
NOT_RUNNING_HINT = (
    "start it with `ollama serve` (on a Mac run the native app: Ollama in Docker cannot use "
    "the Metal GPU), or point OLLAMA_HOST at where it runs"
)
UNREACHABLE_HINT = (
    "check OLLAMA_HOST; on the Ollama machine, make it listen beyond loopback "
    "(OLLAMA_HOST=0.0.0.0 for `ollama serve`) and let port 11434 through its firewall"
)
NOT_OLLAMA_HINT = (
    "check OLLAMA_HOST: it should name `ollama serve` (port 11434 unless set otherwise), "
    "not a proxy's page or another service"
)


class InputTooLong(OllamaFailed):
    """An input is longer than the embedding model's context; Ollama was told not to truncate."""


@dataclass(frozen=True)
class InstalledModel:
    name: str
    size: int
    family: str = ""
    parameter_size: str = ""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    context_length: int | None
    embedding_length: int | None
    capabilities: tuple[str, ...]
    family: str = ""


@dataclass(frozen=True)
class LoadedModel:
    name: str
    size: int
    size_vram: int
    context_length: int | None

    @property
    def gpu_fraction(self) -> float | None:
        if self.size <= 0 or self.size_vram > self.size:
            return None
        return self.size_vram / self.size


@dataclass(frozen=True)
class PullProgress:
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


@dataclass
class ChatStats:
    """Filled in while a chat streams; the metrics arrive with the last line."""

    first_token_s: float | None = None
    total_s: float = 0.0
    eval_count: int | None = None
    eval_duration_ns: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration_ns: int | None = None
    load_duration_ns: int | None = None
    done_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float | None:
        if not self.eval_count or not self.eval_duration_ns:
            return None
        return self.eval_count / self.eval_duration_ns * 1e9


class LLM:
    """A connection to one Ollama server."""

    def __init__(
        self, host: str, timeout: float = 300.0, retry_delays: Sequence[float] = RETRY_DELAYS
    ):
        self.host = host
        self.timeout = timeout
        self.connect_timeout = min(CONNECT_TIMEOUT, timeout)
        self.retry_delays = tuple(retry_delays)
        # One client per thread (the embedder calls from a pool): each call then sets its own
        # client's timeout to what is left of its deadline without racing another thread.
        self._local = threading.local()
        self._loaded = False  # the client library imported (once)
        # What asking the port for TLS found, once a request was dropped (_dropped): None
        # before, then the (message, hint) or False.
        self._tls_only: tuple[str, str] | Literal[False] | None = None
        self._probing = threading.Lock()

    @property
    def _client(self) -> Any:
        """This thread's ollama client, made on first use: a run that needs no model never imports it."""
        client = getattr(self._local, "client", None)
        if client is None:
            import httpx

            # ollama.Client hands `timeout`, `verify` and `event_hooks` to httpx.Client as is.
            client = _ollama().Client(
                host=self.host,
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                verify=_tls(),
                event_hooks={"response": [_decode_with_orjson]},
                mounts=direct_mounts(self.host),
            )
            self._local.client = client
        return client

    def _trouble(self, exc: BaseException, waited: float | None = None) -> tuple[str, str] | None:
        """(message, hint) if TLS, or a proxy on the way, is what a failed connection to
        Ollama failed at (tls.trouble); Ollama on this machine is reached past any proxy."""
        direct = this_machine(self.host)
        return tls_trouble(exc, self.host, "OLLAMA_HOST", "Ollama", waited, direct=direct)

    def _dropped(self) -> tuple[str, str] | None:
        """(message, hint) if the port dropped a request because it speaks only TLS
        (tls.plain_http_dropped). Asked at the first dropped request, before any retry (no
        retry can mend it), and once per LLM, whose threads all take that one answer: a
        plain server that awaits a request line holds the probe for up to a second, which a
        real drop (a restart) would otherwise pay again at every one."""
        with self._probing:  # the embedding threads' drops wait for one probe, then agree
            if self._tls_only is None:
                direct = this_machine(self.host)
                found = plain_http_dropped(
                    self.host, "OLLAMA_HOST", self.connect_timeout, direct=direct
                )
                self._tls_only = found or False
        return self._tls_only or None

    def _limit(self, seconds: float) -> None:
        """Let this thread's next request wait at most `seconds` (connect and each read)."""
        import httpx

        seconds = max(seconds, 0.001)
        self._client._client.timeout = httpx.Timeout(
            seconds, connect=min(self.connect_timeout, seconds)
        )

    def _pause(self, attempt: int, deadline: float) -> bool:
        """Sleep before retry number `attempt` if one is left and time remains; else False."""
        if attempt >= len(self.retry_delays):
            return False
        delay = self.retry_delays[attempt]
        if time.monotonic() + delay >= deadline:
            return False
        time.sleep(delay)
        return True

    def load(self) -> None:
        """Import the client library and build the TLS context now, on this thread (~0.15 s
        in a fresh process), before the first request; each thread then makes its own client
        cheaply. An ingest calls it before it sends anything: on a thread of its own beside
        the tokenizer, the parsing and chromadb's import (all holding the GIL, two sharing
        pydantic and httpx with it), the same import took 0.4-0.6 s, and every embedding
        thread sat on its module lock meanwhile (docs/benchmarks.md, fourth pass)."""
        if not self._loaded:
            _import_client()
            self._loaded = True

    # -- error translation -------------------------------------------------------------

    def _call(self, fn: Callable[[], T], model: str | None = None, retry: bool = True) -> T:
        """Run one request, retrying what a busy, crashed or briefly unreachable server may
        recover from; the whole wait, retries included, stays within the configured timeout.

        `retry=False` reads on from a stream already started: it keeps the timeout the stream
        was opened with, and nothing is retried (the answer would start over).
        """
        import json

        import httpx

        ollama = _ollama()
        _ = self._client  # made (imports and all) before the clock starts: Ollama's time counts
        started = time.monotonic()
        deadline = started + self.timeout
        attempt = 0 if retry else len(self.retry_delays)
        attempts = 0
        while True:
            if retry:
                self._limit(deadline - time.monotonic())
            attempts += 1
            try:
                return fn()
            except (ConnectionError, httpx.ConnectError) as exc:
                # The client says "failed to connect" for a refused connection and for a
                # failed TLS handshake alike; what failed is in the exception's context.
                # (httpx's own error: `version` asks over the client's httpx session.)
                found = self._trouble(exc)
                if found is not None:
                    raise OllamaUnavailable(*found) from exc
                raise OllamaUnavailable(
                    f"Ollama isn't running at {self.host}", hint=NOT_RUNNING_HINT
                ) from exc
            except ollama.ResponseError as exc:
                if exc.status_code == 404 and _names_a_model(str(exc.error)):
                    if model:
                        raise ModelMissing(model, self.host) from exc
                elif exc.status_code == 404:
                    # Ollama's 404s all name a model: this one is another service's (Chroma's
                    # port, say), or an Ollama too old to have the call ("404 page not found").
                    raise OllamaFailed(
                        f"{self.host} answered, but its reply is not Ollama's "
                        f"(HTTP 404 to {_path_of(exc)})",
                        hint=NOT_OLLAMA_HINT
                        + "; if it is Ollama, `ragged doctor` checks its version",
                    ) from exc
                if exc.status_code == 400 and TOO_LONG_MESSAGE in str(exc.error):
                    raise InputTooLong(f"{model}: {exc.error}") from exc
                if exc.status_code == 400 and _CANNOT_CHAT.search(str(exc.error)):
                    # An embedding model named as the chat model: the log has nothing to add.
                    raise OllamaFailed(
                        f"{model} cannot answer questions: Ollama says it does not support "
                        "chat (an embedding model?)",
                        hint="name a chat model with --model or RAGGED_CHAT_MODEL (`ragged "
                        "doctor` shows the one chosen for this machine)",
                    ) from exc
                refused = plain_http_refused(
                    exc.status_code, str(exc.error), self.host, "OLLAMA_HOST"
                )
                if refused is not None:
                    raise OllamaUnavailable(*refused) from exc
                if exc.status_code in RETRY_STATUSES and self._pause(attempt, deadline):
                    attempt += 1
                    continue
                status = f" (HTTP {exc.status_code})" if exc.status_code > 0 else ""
                raise OllamaFailed(
                    f"Ollama at {self.host} failed: {_reply_text(str(exc.error))}{status}",
                    hint="see the Ollama server log (`ollama serve` output) for the cause",
                ) from exc
            except httpx.ConnectTimeout as exc:
                # Nothing answered at all: a wrong host or a firewall, which retrying won't fix.
                found = self._trouble(exc, self.connect_timeout)
                if found is not None:
                    raise OllamaUnavailable(*found) from exc
                raise OllamaUnavailable(
                    f"cannot reach Ollama at {self.host} "
                    f"(no connection within {self.connect_timeout:g} s)",
                    hint=UNREACHABLE_HINT,
                ) from exc
            except httpx.TimeoutException as exc:
                if self._pause(attempt, deadline):
                    attempt += 1
                    continue
                raise OllamaFailed(
                    f"Ollama at {self.host} did not answer within "
                    f"{_seconds(time.monotonic() - started)} s"
                    + (f" ({attempts} attempts)" if attempts > 1 else ""),
                    hint="raise RAGGED_TIMEOUT (a large model's first load can take minutes), "
                    "or check that the machine is not swapping",
                ) from exc
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                # The connection was reset or closed mid-request: a crashed runner, a restart,
                # an overloaded proxy. The request is safe to send again.
                if (found := self._dropped()) is not None:
                    raise OllamaFailed(*found) from exc
                if self._pause(attempt, deadline):
                    attempt += 1
                    continue
                tries = (
                    f"; {attempts} attempts in {_seconds(time.monotonic() - started)} s"
                    if attempts > 1
                    else ""
                )
                raise OllamaFailed(
                    f"lost the connection to Ollama at {self.host} ({_short(exc)}{tries})",
                    hint="see the Ollama server log (`ollama serve` output) for the cause",
                ) from exc
            except httpx.HTTPError as exc:
                raise OllamaFailed(
                    f"lost the connection to Ollama at {self.host}: {_short(exc)}"
                ) from exc
            except ValueError as exc:
                # A 200 that Ollama did not send: a web page (not JSON), or JSON of another
                # shape (pydantic names the reply model it could not fill: EmbedResponse...).
                title = str(getattr(exc, "title", ""))
                if isinstance(exc, json.JSONDecodeError):
                    what = "not JSON"
                elif title.endswith("Response"):
                    what = f"JSON without the fields of its {title}"
                else:
                    raise
                raise OllamaFailed(
                    f"{self.host} answered, but its reply is not Ollama's ({what})",
                    hint=NOT_OLLAMA_HINT,
                ) from exc

    # -- models ------------------------------------------------------------------------

    def version(self) -> str:
        """Ollama's version; the Python client has no call for it, so ask over HTTP."""
        response = self._call(lambda: self._client._client.get("/api/version"))
        try:
            return str(response.json().get("version", "unknown"))
        except ValueError:
            return "unknown"

    def list_models(self) -> list[InstalledModel]:
        listing = self._call(self._client.list)
        return [
            InstalledModel(
                name=m.model or "",
                size=int(m.size or 0),
                family=(m.details.family or "") if m.details else "",
                parameter_size=(m.details.parameter_size or "") if m.details else "",
            )
            for m in listing.models
        ]

    def has_model(self, model: str, installed: Sequence[InstalledModel] | None = None) -> bool:
        names = {full_name(m.name) for m in (installed or self.list_models())}
        return full_name(model) in names

    def show(self, model: str) -> ModelInfo:
        info = self._call(lambda: self._client.show(model), model)
        facts = dict(info.modelinfo or {})
        arch = str(facts.get("general.architecture", ""))

        def fact(key: str) -> int | None:
            value = facts.get(f"{arch}.{key}")
            return int(value) if isinstance(value, int | float) else None

        return ModelInfo(
            name=model,
            context_length=fact("context_length"),
            embedding_length=fact("embedding_length"),
            capabilities=tuple(info.capabilities or ()),
            family=arch,
        )

    def loaded(self) -> list[LoadedModel]:
        listing = self._call(self._client.ps)
        return [
            LoadedModel(
                name=m.model or m.name or "",
                size=int(m.size or 0),
                size_vram=int(m.size_vram or 0),
                context_length=m.context_length,
            )
            for m in listing.models
        ]

    def pull(self, model: str) -> Iterator[PullProgress]:
        for part in self._stream(lambda: self._client.pull(model, stream=True), model):
            yield PullProgress(part.status or "", part.digest, part.total, part.completed)

    def _stream(self, make: Callable[[], Any], model: str) -> Iterator[Any]:
        """Iterate a streamed response; only a request that has sent nothing yet is retried."""

        def first() -> tuple[Iterator[Any], Any]:
            iterator = iter(make())
            return iterator, next(iterator, None)

        iterator, part = self._call(first, model)
        while part is not None:
            yield part
            part = self._call(lambda: next(iterator, None), model, retry=False)

    # -- work --------------------------------------------------------------------------

    def embed(
        self,
        texts: Sequence[str],
        model: str,
        kind: str = "document",
        titles: Sequence[str | None] | None = None,
    ) -> list[list[float]]:
        """Embed many texts in one request, formatted as the model was trained (models.py).

        `titles` are the documents' titles, for models whose document format holds one
        (embeddinggemma). `truncate=False` makes Ollama refuse an over-long input
        (InputTooLong) instead of silently embedding only its beginning.
        """
        if not texts:
            return []
        fmt = embedding_format(model) or PLAIN
        if kind == "query":
            inputs = [fmt.format_query(t) for t in texts]
        else:
            named = titles if titles is not None else [None] * len(texts)
            inputs = [fmt.format_document(t, title) for t, title in zip(texts, named, strict=True)]
        response = self._call(
            lambda: self._client.embed(model=model, input=inputs, truncate=False), model
        )
        vectors = [list(v) for v in response.embeddings]
        if len(vectors) != len(texts):
            raise OllamaFailed(
                f"Ollama at {self.host} returned {len(vectors)} embeddings for {len(texts)} inputs"
            )
        return vectors

    def chat(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        num_ctx: int,
        stats: ChatStats | None = None,
        options: dict[str, Any] | None = None,
        keep_alive: str | float | None = None,
        think: bool | str | None = None,
        on_thinking: Callable[[str], None] | None = None,
    ) -> Iterator[str]:
        """Stream the answer's text pieces; `num_ctx` always goes along so Ollama never cuts the prompt.

        `think` is sent only when set (Ollama refuses it for a model that cannot think; see
        models.think_setting). A thinking model streams `message.thinking` before
        `message.content`: those pieces go to `on_thinking`, never into what is yielded.
        """
        stats = stats if stats is not None else ChatStats()
        opts = {"num_ctx": num_ctx, **(options or {})}
        extra: dict[str, Any] = {} if think is None else {"think": think}
        start = time.perf_counter()
        parts = self._stream(
            lambda: self._client.chat(
                model=model,
                messages=messages,
                stream=True,
                options=opts,
                keep_alive=keep_alive,
                **extra,
            ),
            model,
        )
        for part in parts:
            message = part.message
            thought = (message.thinking or "") if message else ""
            if thought and on_thinking is not None:
                on_thinking(thought)
            piece = (message.content or "") if message else ""
            if piece and stats.first_token_s is None:
                stats.first_token_s = time.perf_counter() - start
            if part.done:
                stats.eval_count = part.eval_count
                stats.eval_duration_ns = part.eval_duration
                stats.prompt_eval_count = part.prompt_eval_count
                stats.prompt_eval_duration_ns = part.prompt_eval_duration
                stats.load_duration_ns = part.load_duration
                stats.done_reason = part.done_reason
            if piece:
                yield piece
        stats.total_s = time.perf_counter() - start

    def judge(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        num_ctx: int,
        answers: Sequence[str],
        think: bool | str | None = None,
        stats: ChatStats | None = None,
    ) -> dict[str, float]:
        """Log-probabilities of each of `answers` as the model's one-token reply (Ollama 0.12.11+
        returns `logprobs`); an answer missing from the model's top 20 gets -inf. `stats`
        receives the request's prompt size and durations, which is what reranking costs."""
        start = time.perf_counter()
        response = self._call(
            lambda: self._client.chat(
                model=model,
                messages=messages,
                stream=False,
                options={"num_ctx": num_ctx, "num_predict": 1, "temperature": 0},
                logprobs=True,
                top_logprobs=20,
                **({} if think is None else {"think": think}),
            ),
            model,
        )
        if stats is not None:
            stats.total_s = time.perf_counter() - start
            stats.prompt_eval_count = response.prompt_eval_count
            stats.prompt_eval_duration_ns = response.prompt_eval_duration
            stats.eval_count = response.eval_count
            stats.eval_duration_ns = response.eval_duration
            stats.load_duration_ns = response.load_duration
        found = {a: float("-inf") for a in answers}
        first = (response.logprobs or [None])[0]
        if first is None:
            raise OllamaFailed(
                f"Ollama at {self.host} returned no logprobs for {model}",
                hint="reranking needs Ollama 0.12.11 or later",
            )
        for option in [first, *(first.top_logprobs or [])]:
            token = (option.token or "").strip().lower()
            if token in found and found[token] == float("-inf"):
                found[token] = float(option.logprob)
        return found


def _seconds(value: float) -> str:
    """e.g. 0.53 -> '0.5', 12.4 -> '12', 300.2 -> '300'."""
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def _reply_text(text: str) -> str:
    """An error reply's text for one line: a web page (a proxy's, in Ollama's place) by its
    title, and any text with its line breaks and runs of spaces collapsed."""
    import re

    if text.lstrip()[:15].lower().startswith(("<!doctype", "<html")):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        text = title.group(1) if title else re.sub(r"<[^>]*>", " ", text)
    return " ".join(text.split())


def _names_a_model(error: str) -> bool:
    """Whether an error reply is Ollama's for a model it lacks: `model 'NAME' not found`, or
    `model "NAME" not found, try pulling it first` (the legacy embeddings call)."""
    text = error.lower()
    return text.startswith("model ") and " not found" in text


def _path_of(exc: BaseException) -> str:
    """The path of the request an error reply answered: the ollama client raises its
    ResponseError while handling httpx's status error, which holds the request."""
    import httpx

    cause = exc.__cause__ or exc.__context__
    return cause.request.url.path if isinstance(cause, httpx.HTTPStatusError) else "a request"


def _short(exc: BaseException) -> str:
    return str(exc).strip().split("\n", 1)[0] or type(exc).__name__


def _import_client() -> None:
    _ollama()
    _response_class()


_ollama_module: Any = None
_importing = threading.Lock()


def _ollama() -> Any:
    """The ollama module, imported once (`_import_ollama`); locked, because the patch it
    makes to httpx meanwhile must be undone by the thread that made it, and a cold `ask`
    makes its first two requests from two threads at once."""
    global _ollama_module
    if _ollama_module is None:
        with _importing:
            if _ollama_module is None:
                _ollama_module = _import_ollama()
    return _ollama_module


def _import_ollama() -> Any:
    """The ollama module, imported.

    At import it makes a client of its own (for its module-level functions, which ragged
    does not use), and httpx builds a TLS context for it: ~16 ms of every cold command's
    wait before its first request, twice over with ragged's own (`_tls`). That client gets
    the one ragged's share, which httpx would have built alike from the same arguments; a
    caller with other arguments (another thread meanwhile: a Chroma server's client) gets
    httpx's own.
    """
    tls = _tls()
    import httpx._transports.default as transports  # where httpx's Client gets its context

    build = getattr(transports, "create_ssl_context", None)
    if build is None:  # another httpx layout: the plain import
        import ollama

        return ollama

    def shared(*args: Any, **kwargs: Any) -> Any:
        if not args and kwargs == {"verify": True, "cert": None, "trust_env": True}:
            return tls
        return build(*args, **kwargs)

    transports.create_ssl_context = shared
    try:
        import ollama
    finally:
        transports.create_ssl_context = build
    return ollama


def _decode_with_orjson(response: Any) -> None:
    """Let this response decode its JSON with orjson (an httpx response hook).

    The ollama client reads every reply that is not streamed with `Response.json()`, which
    is the standard library's json: 5-10 ms of CPU, holding the GIL, for one reply of 32
    vectors (768 numbers each, ~0.5 MB from a real model), against ~1 ms for orjson. An
    ingest reads ~60 such replies per 2,000 chunks on threads beside the one that parses,
    chunks and writes, and they took a seventh of its process's CPU (docs/benchmarks.md,
    "Eleventh pass"). A hook, not a transport of ragged's own: given a transport, httpx
    stops routing through the proxies the environment names (HTTP_PROXY, NO_PROXY, ...).
    """
    response.__class__ = _response_class()


@functools.cache
def _response_class() -> Any:
    """httpx's Response, with `json()` through orjson; nothing else differs."""
    import httpx
    import orjson

    class Response(httpx.Response):
        def json(self, **kwargs: Any) -> Any:
            if not kwargs:  # options are the standard library's; orjson takes none
                try:
                    return orjson.loads(self.content)
                except orjson.JSONDecodeError:
                    pass  # what orjson refuses and json reads: UTF-16, NaN
            return super().json(**kwargs)

    return Response


def _tls() -> Any:
    """One TLS context for every client of the process (ragged/tls.py): httpx builds one per
    client even for plain http, ~20 ms each: an ingest's four embedding threads, and every
    thread of `ragged serve`, paid it."""
    from ragged.tls import client_context

    return client_context()


def connect(settings: Settings) -> LLM:
    """The one place an Ollama connection is made; tests point OLLAMA_HOST at the stand-in."""
    return LLM(settings.ollama_host, timeout=settings.timeout)
