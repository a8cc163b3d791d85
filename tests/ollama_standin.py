"""A deterministic stand-in for the Ollama server, for tests and benchmarks.

A real HTTP server on 127.0.0.1 (a free port) that speaks Ollama's native API as described in
the team's reference/ollama-api.md, so the official `ollama` client talks to it unmodified:

    with OllamaStandIn() as server:
        client = ollama.Client(host=server.url)

Constructor: `OllamaStandIn(models=("nomic-embed-text:latest", "llama3.2:3b"), *, embed_dim=768,
embed_delay=0.0, embed_request_delay=0.0, token_delay=0.0, first_token_delay=0.0, num_parallel=1, size_vram_fraction=1.0,
pullable=None, version="0.12.6", default_num_ctx=4096)`. `embed_dim` is the vector length of
nomic-embed-text and of models outside CATALOGUE; all-minilm (384) and mxbai-embed-large (1024) keep
their real sizes so tests can provoke a dimension mismatch.

State and knobs (all thread-safe; the plain attributes may be changed while running):
`url`, `host` (`start(tls=context)` serves HTTPS), `installed`, `loaded` (names /api/ps lists),
`add_model(name)`, `remove_model(name)`,
`requests` (a snapshot of the log of `Request(method, path, body)`), `count(path)`,
`embedded_inputs`, `busy_seconds` (time spent in simulated work), `peak_parallel` (most requests
working at once), `prompt_truncations` (prompts cut to fit num_ctx), `reset()` (clears the log and
counters), `fail_next(path, status=500, error=None, times=1)`, `fail_mid_stream(path, error=...)`,
`answer_override`, `size_vram_fraction`, `embed_delay` (per input), `embed_request_delay` (per
/api/embed request, whatever its size: a GPU's fixed cost per batch), `token_delay`,
`first_token_delay`, `hold_generation` (a threading.Event: while one is set here, every
generation waits after its first piece until the event is set, so a test can act while an
answer is being streamed), `stream_ends` (how each streamed reply ended: complete, or cut
short when the client went away, which is what stops a real Ollama's generation).

Transport faults, for what no status code can show (a crashed or overloaded server, a flaky
network): `drop_next(path, times=1, reset=True)` reads the request, then resets the connection
(RST: the client sees "connection reset by peer") or, with `reset=False`, closes it without a
reply ("server disconnected without sending a response"); `stall_next(path, times=1)` accepts
the request and never answers (until `stop()`); `flaky(path, fraction, seed=0)` resets that
fraction of the requests to `path`, chosen by a seeded random generator so runs repeat. Every
faulted request is still logged in `requests`.

Embeddings are hashed word vectors (`embed_text`). Chat and generate answer from numbered sources
in the prompt (`compose_answer`, whose docstring gives the prompt format: ragged's fenced
`<source id="n">` passages, or `[n]` lines), or rewrite a follow-up question as a standalone
one (`rewrite_follow_up`); they stream one token per word. A prompt asking for "yes or no"
gets a one-word judgement (`judge_yes_no`). Thinking models (qwen3, deepseek-r1, gpt-oss)
stream `message.thinking` pieces (`compose_thinking`) before the content unless
`think: false` (gpt-oss always thinks, as in Ollama); `logprobs`/`top_logprobs` are emulated. Prompts longer than the context (num_ctx, else `default_num_ctx`, capped by the model's own
context) lose their oldest tokens, as Ollama's do.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from http.client import responses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

NO_ANSWER = "I don't know based on the provided sources."
BUSY_ERROR = "server busy, please try again.  maximum pending requests exceeded"
RUNNER_ERROR = "llama runner process has terminated: exit status 2"
MID_STREAM_ERROR = "an error was encountered while running the model: unexpected EOF"
PULL_ERROR = "pull model manifest: file does not exist"
DEFAULT_KEEP_ALIVE = 300.0  # seconds, Ollama's 5 minutes
MID_STREAM_LINES = 2  # lines a stream sends before an injected error
FOREVER_NS = 2**63 - 1  # Go stores a negative keep_alive as max int64 ns: expires ~year 2318

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
WORD_RE = re.compile(r"\w+")
PIECE_RE = re.compile(r"\s*\S+")  # one streamed token: a word with the spaces before it
SOURCE_RE = re.compile(r"^\s*\[(\d+)\]\s?(.*)$")
# ragged's fenced passages: <source id="1" ...>text</source>. When a prompt has any, only
# they are sources, so a "[2] memo.md" line inside a passage's text is just text.
FENCE_RE = re.compile(r'<source id="(\d+)"[^>\n]*>\n?(.*?)\n?</source>', re.DOTALL)
YES_NO_RE = re.compile(r"\byes or no\b", re.IGNORECASE)
QUESTION_RE = re.compile(r"^\s*Question:\s*(.*)$", re.IGNORECASE)
# A request to condense a follow-up: a transcript of `User:` lines, then `Follow-up:`.
FOLLOW_UP_RE = re.compile(r"^\s*Follow-up:\s*(.+)$", re.MULTILINE)
TRANSCRIPT_USER_RE = re.compile(r"^\s*User:\s*(.+)$", re.MULTILINE)
PRONOUN_RE = re.compile(r"\b(it|this|that|them|they|these|those)\b", re.IGNORECASE)
SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+")
DURATION_RE = re.compile(r"([0-9]*\.?[0-9]+|[0-9]+\.)(ns|us|µs|μs|ms|s|m|h)")
DURATION_UNITS = dict(
    zip("ns us µs μs ms s m h".split(), (1e-9, 1e-6, 1e-6, 1e-6, 1e-3, 1, 60, 3600), strict=True)
)
# Without these, "the" or "what" would tie every source to every question and "I don't know"
# could never happen.
STOPWORDS = frozenset(
    "the and are was were for with this that these those from into about what which who whom how"
    " why when where does did has have had can could would should will you your not but its"
    " there their they them than then also any all our out use used using".split()
)
GO_JSON_ERRORS = {
    "Expecting value": "looking for beginning of value",
    "Expecting property name enclosed in double quotes": (
        "looking for beginning of object key string"
    ),
    "Expecting ':' delimiter": "after object key",
    "Expecting ',' delimiter": "after object key:value pair",
    "Extra data": "after top-level value",
}


@dataclass(frozen=True)
class ModelFacts:
    """What /api/tags, /api/show and /api/ps report about one model."""

    arch: str
    context_length: int
    embedding_length: int
    capabilities: tuple[str, ...]
    size: int  # bytes on disk
    parameter_size: str
    quantization: str = "Q4_K_M"
    block_count: int = 12

    @property
    def bert_style(self) -> bool:
        """BERT tokenizers add [CLS] and [SEP], so every input costs two extra tokens."""
        return "bert" in self.arch


CATALOGUE: dict[str, ModelFacts] = {
    "nomic-embed-text:latest": ModelFacts(
        "nomic-bert", 2048, 768, ("embedding",), 274_302_450, "137M", "F16", 12
    ),
    "all-minilm:latest": ModelFacts("bert", 256, 384, ("embedding",), 45_960_996, "23M", "F16", 6),
    "mxbai-embed-large:latest": ModelFacts(
        "bert", 512, 1024, ("embedding",), 669_615_493, "334M", "F16", 24
    ),
    "llama3.2:3b": ModelFacts(
        "llama", 131072, 3072, ("completion", "tools"), 2_019_393_189, "3.2B"
    ),
    "mistral:7b": ModelFacts("llama", 32768, 4096, ("completion", "tools"), 4_113_301_824, "7.2B"),
    "qwen2.5:32b": ModelFacts(
        "qwen2", 32768, 5120, ("completion", "tools"), 19_851_336_256, "32.8B"
    ),
    # Thinking models: they think unless `think: false`, except gpt-oss, which always does.
    "qwen3:8b": ModelFacts(
        "qwen3", 40960, 4096, ("completion", "tools", "thinking"), 5_225_376_047, "8.2B"
    ),
    "deepseek-r1:8b": ModelFacts(
        "qwen3", 131072, 4096, ("completion", "thinking"), 5_225_388_164, "8.2B"
    ),
    "gpt-oss:20b": ModelFacts(
        "gptoss",
        131072,
        2880,
        ("completion", "tools", "thinking"),
        13_780_154_624,
        "20.9B",
        "MXFP4",
    ),
    "embeddinggemma:latest": ModelFacts(
        "gemma3", 2048, 768, ("embedding",), 621_875_417, "307.58M", "BF16", 24
    ),
    "qwen3-embedding:0.6b": ModelFacts(
        "qwen3", 32768, 1024, ("embedding",), 639_150_592, "595.78M", "Q8_0", 28
    ),
}
# Thinking models that think whatever `think` says (Ollama's reference: gpt-oss takes a level).
ALWAYS_THINKS = frozenset({"gptoss"})
THINK_LEVELS = ("low", "medium", "high", "max")


@dataclass(frozen=True)
class Request:
    """One request as the server received it; `body` is None when absent or not JSON."""

    method: str
    path: str
    body: dict[str, Any] | None


@dataclass(frozen=True)
class StreamEnd:
    """How one streamed reply ended: `complete`, or cut short because the client went away
    (what Ollama logs as a 499, and stops generating for)."""

    path: str
    lines: int
    complete: bool


class _Fail(Exception):
    """Ends a request with an Ollama-style JSON error before any byte was sent."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Reply:
    status: int = 200
    body: dict[str, Any] | str | None = None  # a str is sent as text/plain
    stream: Iterator[dict[str, Any]] | None = None
    mid_stream_error: str | None = None
    fault: str | None = None  # a transport fault instead of any reply: reset | close | stall


@dataclass
class _Loaded:
    expires_ns: int
    context_length: int


def normalise_name(name: str) -> str:
    """`All-MiniLM` -> `all-minilm:latest`: a missing tag means latest, and case doesn't matter."""
    name = name.strip().lower()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def count_tokens(text: str, *, bert: bool = False) -> int:
    """Approximate Ollama's token count: words and punctuation marks, plus [CLS]/[SEP] for BERT."""
    return len(TOKEN_RE.findall(text)) + (2 if bert else 0)


def _head_tokens(text: str, keep: int) -> str:
    matches = list(TOKEN_RE.finditer(text))
    return text if len(matches) <= keep else text[: matches[keep].start()]


def _tail_tokens(text: str, keep: int) -> str:
    matches = list(TOKEN_RE.finditer(text))
    if len(matches) <= keep:
        return text
    return text[matches[-keep].start() :] if keep > 0 else ""


def _word_hash(word: str) -> int:
    # blake2b, not hash(): vectors must match across processes whatever PYTHONHASHSEED says.
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")


def _word_counts(text: str, dim: int) -> list[float]:
    vector = [0.0] * dim
    for word in WORD_RE.findall(text.lower()):
        h = _word_hash(word)
        vector[h % dim] += 1.0 if (h >> 40) & 1 else -1.0
    if not any(vector):
        # Text without words gets one fixed unit vector so nothing downstream divides by zero.
        return [1.0 / math.sqrt(dim)] * dim
    return vector


def _normalised(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def embed_text(text: str, dim: int = 768) -> list[float]:
    """The L2-normalised hashed word vector /api/embed returns for `text` (before float32 text)."""
    return _normalised(_word_counts(text, dim))


def _float32(value: float) -> float:
    """The shortest decimal that reads back as the same float32, as Go prints a float32."""
    if value == 0.0:
        return 0.0
    f32 = float(struct.unpack("f", struct.pack("f", value))[0])
    for digits in range(6, 10):
        short = float(f"{f32:.{digits}g}")
        if struct.unpack("f", struct.pack("f", short))[0] == f32:
            return short
    return f32


def _content_words(text: str) -> set[str]:
    return {w for w in WORD_RE.findall(text.lower()) if len(w) > 2 and w not in STOPWORDS}


def _split_question(messages: Sequence[tuple[str, str]]) -> tuple[str, list[str]]:
    """Separate the question from the lines that may hold sources."""
    lines = "\n".join(content for _, content in messages).split("\n")
    marked = [i for i, line in enumerate(lines) if QUESTION_RE.match(line)]
    if marked:
        at = marked[-1]
        same_line = QUESTION_RE.match(lines[at]).group(1).strip()  # type: ignore[union-attr]
        following = "\n".join(lines[at + 1 :]).strip()
        return same_line or re.split(r"\n\s*\n", following)[0], lines[:at]
    users = [i for i, (role, _) in enumerate(messages) if role == "user"]
    if users and not any(SOURCE_RE.match(x) for x in messages[users[-1]][1].split("\n")):
        rest = [content for i, (_, content) in enumerate(messages) if i != users[-1]]
        return messages[users[-1]][1], "\n".join(rest).split("\n")
    # Sources and question share one text: the question is the last paragraph, unless that is
    # itself a source, in which case it is whatever precedes the first source.
    while lines and not lines[-1].strip():
        lines.pop()
    blank = max((i for i, line in enumerate(lines) if not line.strip()), default=-1)
    if blank >= 0 and not SOURCE_RE.match(lines[blank + 1]):
        return "\n".join(lines[blank + 1 :]), lines[:blank]
    first_source = next((i for i, x in enumerate(lines) if SOURCE_RE.match(x)), len(lines))
    return "\n".join(lines[:first_source]), lines


def _parse_sources(lines: list[str]) -> list[tuple[int, str]]:
    fenced = FENCE_RE.findall("\n".join(lines))
    if fenced:
        return [(int(n), " ".join(text.split())) for n, text in fenced]
    sources: list[tuple[int, str, list[str]]] = []
    for line in lines:
        if match := SOURCE_RE.match(line):
            sources.append((int(match.group(1)), match.group(2).strip(), []))
        elif sources and line.strip():
            sources[-1][2].append(line.strip())
    # A header like "[1] docs/a.md (page 2)" names the source; its text is the lines below it.
    return [(n, " ".join(body) if body else header) for n, header, body in sources]


def rewrite_follow_up(messages: Sequence[tuple[str, str]]) -> str | None:
    """A follow-up made standalone, or None when the chat is not a request to condense one.

    The request is a transcript with `User: ...` lines and, after it, `Follow-up: ...`. Like a
    model resolving a pronoun, the first of it/this/that/them/they/these/those in the follow-up
    becomes the content words (see `compose_answer`) of the transcript's last `User:` line that
    the follow-up lacks: after "What is rate limiting?", "And how do I disable it?" becomes
    "And how do I disable rate limiting?". A follow-up without such a pronoun already stands
    on its own and comes back unchanged.
    """
    text = "\n".join(content for role, content in messages if role == "user")
    follow = FOLLOW_UP_RE.findall(text)
    users = TRANSCRIPT_USER_RE.findall(text.split("Follow-up:")[0])
    if not follow or not users:
        return None
    question = follow[-1].strip()
    have = _content_words(question)
    topic = " ".join(
        dict.fromkeys(
            w for w in WORD_RE.findall(users[-1].lower()) if w in _content_words(w) - have
        )
    )
    if not topic or not PRONOUN_RE.search(question):
        return question
    return PRONOUN_RE.sub(topic, question, count=1)


def compose_answer(messages: Sequence[tuple[str, str]]) -> str:
    """The deterministic answer to a chat given as (role, content) pairs.

    Sources are ragged's fenced passages (`<source id="n" ...>text</source>`) when the prompt
    has any; otherwise lines starting with `[n]`, each running until the next `[m]` line or the
    question.
    The question is what follows the last line starting with `Question:` (the rest of that line,
    else the next paragraph); without one, the last user message when it holds no sources, else
    the prompt's last paragraph. The answer is the best source's best sentence, then `[n]`, with
    the runner-up cited too (`[1][3]`) when it shares at least two thirds as many question words.
    Words count when longer than two letters and not in STOPWORDS. No shared word: NO_ANSWER.
    A request to condense a follow-up gets `rewrite_follow_up`'s answer instead.
    """
    rewritten = rewrite_follow_up(messages)
    if rewritten is not None:
        return rewritten
    question, source_lines = _split_question(messages)
    wanted = _content_words(question)
    # sorted() is stable, so on equal scores the source listed first wins.
    scored = sorted(
        ((len(wanted & _content_words(text)), n, text) for n, text in _parse_sources(source_lines)),
        key=lambda s: -s[0],
    )
    if not scored or scored[0][0] == 0:
        return NO_ANSWER
    best = scored[0]
    cited = {best[1]}
    if len(scored) > 1 and scored[1][0] * 3 >= best[0] * 2:
        cited.add(scored[1][1])
    sentences = [s for s in SENTENCE_END_RE.split(best[2]) if s.strip()]
    sentence = max(sentences, key=lambda s: len(wanted & _content_words(s)))
    return f"{sentence.strip()} " + "".join(f"[{n}]" for n in sorted(cited))


def compose_thinking(messages: Sequence[tuple[str, str]]) -> str:
    """What a thinking model "thinks" before answering: it restates the question and muses
    over a source number and the refusal sentence, so a client that mixes thinking into the
    answer shows in its citations and its refusal check."""
    question, _ = _split_question(messages)
    return (
        f"The user asks: {' '.join(question.split())} Maybe source [99] has it. "
        f"If not, I should say: {NO_ANSWER}"
    )


def judge_yes_no(messages: Sequence[tuple[str, str]]) -> float:
    """P(yes) for a prompt asking for a yes/no relevance judgement of one passage.

    The passage is what a <source ...> fence holds, wherever the question stands (ragged's
    reranking asks the question first), else the user's text before the question; P(yes)
    grows with the share of the question's words it holds: (shared + 0.5) / (wanted + 1),
    e.g. 3 of 4 words: 0.7.
    """
    user = [(r, c) for r, c in messages if r != "system"]
    question, lines = _split_question(user)
    fenced = FENCE_RE.findall("\n".join(c for _, c in user))
    passage = "\n".join(text for _, text in fenced) if fenced else "\n".join(lines)
    wanted = _content_words(question)
    shared = len(wanted & _content_words(passage))
    return (shared + 0.5) / (len(wanted) + 1)


def _token_logprob(token: str) -> float:
    """A deterministic, plausible log-probability for a generated token (in (-1, 0])."""
    return -(_word_hash(token) % 1000) / 1000


def _logprobs(piece: str, top: int, p_yes: float | None) -> list[dict[str, Any]]:
    """The `logprobs` entry of one generated piece (one token), with `top` alternatives.

    For a yes/no judgement the alternatives are "yes" and "no" at log P(yes) and log P(no).
    """
    if p_yes is not None:
        options = sorted(
            [("yes", math.log(p_yes)), ("no", math.log1p(-p_yes))], key=lambda o: -o[1]
        )
        chosen = dict(options).get(piece.strip().lower(), options[0][1])
    else:
        chosen = _token_logprob(piece)
        options = [(piece, chosen)] + [
            (f"{piece.strip()}_{i}", chosen - 1.5 * i) for i in range(1, max(top, 1))
        ]
    entry: dict[str, Any] = {"token": piece, "logprob": chosen, "bytes": list(piece.encode())}
    if top > 0:
        entry["top_logprobs"] = [
            {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in options[:top]
        ]
    return [entry]


def _keep_last_tokens(messages: list[tuple[str, str]], budget: int) -> list[tuple[str, str]]:
    kept: list[tuple[str, str]] = []
    for role, content in reversed(messages):
        tokens = count_tokens(content)
        if tokens > budget:
            kept.append((role, _tail_tokens(content, budget)))
            break
        kept.append((role, content))
        budget -= tokens
    return kept[::-1]


def _parse_keep_alive(value: Any) -> float:
    """keep_alive in seconds (inf = forever), read the way Ollama reads numbers and Go durations."""
    if value is None:
        return DEFAULT_KEEP_ALIVE
    if isinstance(value, int | float) and not isinstance(value, bool):
        return math.inf if value < 0 else float(value)
    if not isinstance(value, str):
        raise _Fail(400, f"Unsupported type: '{type(value).__name__}'")
    text = value.strip()
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    if not body or DURATION_RE.sub("", body) != "":
        raise _Fail(400, f'time: invalid duration "{value}"')
    seconds = sum(float(n) * DURATION_UNITS[u] for n, u in DURATION_RE.findall(body))
    return math.inf if text.startswith("-") else seconds


def _timestamp(ns: int, *, utc: bool = False) -> str:
    """RFC 3339 with nanoseconds, as Go writes time.Time: UTC ends in Z, local has an offset."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    zone = UTC if utc else datetime.now().astimezone().tzinfo
    moment = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)).astimezone(zone)
    offset = moment.strftime("%z")
    offset = "Z" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"
    nanos = f".{fraction:09d}".rstrip("0").rstrip(".")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + nanos + offset


def _go_json(obj: Any) -> bytes:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def _decode_body(raw: bytes, go_type: str) -> dict[str, Any]:
    """Parse a request body, failing with the texts Go's JSON decoder would give."""
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        raise _Fail(400, "missing request body")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            raise _Fail(400, "unexpected EOF") from None
        where = GO_JSON_ERRORS.get(exc.msg, "looking for beginning of value")
        raise _Fail(400, f"invalid character '{text[exc.pos]}' {where}") from None
    if not isinstance(body, dict):
        kind = {list: "array", str: "string", bool: "bool"}.get(type(body), "number")
        raise _Fail(400, f"json: cannot unmarshal {kind} into Go value of type api.{go_type}")
    if not isinstance(body.get("model", ""), str):
        raise _Fail(400, f"json: cannot unmarshal into Go struct field {go_type}.model")
    return body


class OllamaStandIn:
    """A fake Ollama server on 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        models: Sequence[str] = ("nomic-embed-text:latest", "llama3.2:3b"),
        *,
        embed_dim: int = 768,
        embed_delay: float = 0.0,
        embed_request_delay: float = 0.0,
        token_delay: float = 0.0,
        first_token_delay: float = 0.0,
        num_parallel: int = 1,
        size_vram_fraction: float = 1.0,
        pullable: Sequence[str] | None = None,
        version: str = "0.12.6",
        default_num_ctx: int = 4096,
    ) -> None:
        self.embed_dim = embed_dim
        self.embed_delay = embed_delay
        self.embed_request_delay = embed_request_delay
        self.token_delay = token_delay
        self.first_token_delay = first_token_delay
        self.num_parallel = num_parallel
        self.size_vram_fraction = size_vram_fraction
        self.pullable = {normalise_name(n) for n in (CATALOGUE if pullable is None else pullable)}
        self.version = version
        self.default_num_ctx = default_num_ctx
        self.answer_override: str | None = None
        self.hold_generation: threading.Event | None = None
        self._lock = threading.Lock()
        self._models: dict[str, tuple[ModelFacts, int]] = {}  # name -> (facts, modified_at ns)
        self._loaded: dict[str, _Loaded] = {}
        self._slots: dict[str, threading.Semaphore] = {}
        self._failures: dict[str, list[tuple[int, str]]] = {}
        self._mid_stream: dict[str, list[str]] = {}
        self._faults: dict[str, list[str]] = {}  # path -> queued "reset" | "close" | "stall"
        self._flaky: dict[str, tuple[float, random.Random]] = {}
        self._stopped = threading.Event()  # releases stalled requests
        self._server: _Server | None = None
        self._scheme = "http"
        self._thread: threading.Thread | None = None
        self.reset()
        for name in models:
            self.add_model(name)

    # lifecycle

    def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> OllamaStandIn:
        """Listen on a free port (or `port`, to come back where it was) in a background thread;
        with `tls` (a server-side context), over HTTPS, as Ollama behind a TLS reverse proxy."""
        self._stopped.clear()
        self._server = _Server(("127.0.0.1", port), _Handler)
        if tls is not None:
            # The handshake runs in accept(); one a client aborts (it does not trust the
            # certificate) raises there, and socketserver drops that connection and goes on.
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "http" if tls is None else "https"
        self._server.standin = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections, so clients then see connection refused."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopped.set()
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OllamaStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, the form OLLAMA_HOST takes."""
        if self._server is None:
            raise RuntimeError("OllamaStandIn is not running; call start() first")
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT` (`https://` when started with `tls`), for OLLAMA_HOST or
        `ollama.Client(host=...)`."""
        return f"{self._scheme}://{self.host}"

    # models

    def facts(self, name: str) -> ModelFacts:
        """Catalogue facts for `name`, or generic ones (embedding if the name says so)."""
        key = normalise_name(name)
        if key in CATALOGUE:
            facts = CATALOGUE[key]
            return (
                replace(facts, embedding_length=self.embed_dim)
                if key.startswith("nomic-")
                else facts
            )
        if "embed" in key or "minilm" in key:
            return ModelFacts(
                "bert", 512, self.embed_dim, ("embedding",), 120_000_000, "110M", "F16"
            )
        return ModelFacts("llama", 8192, self.embed_dim, ("completion",), 1_300_000_000, "1.2B")

    def add_model(self, name: str) -> None:
        with self._lock:
            self._models[normalise_name(name)] = (self.facts(name), time.time_ns())

    def remove_model(self, name: str) -> None:
        with self._lock:
            self._models.pop(normalise_name(name), None)
            self._loaded.pop(normalise_name(name), None)

    @property
    def installed(self) -> list[str]:
        with self._lock:
            return list(self._models)

    @property
    def loaded(self) -> list[str]:
        """Names /api/ps lists, longest remaining first."""
        return [name for name, _ in self._live_loaded()]

    def _live_loaded(self) -> list[tuple[str, _Loaded]]:
        now = time.time_ns()
        with self._lock:
            for name in [n for n, m in self._loaded.items() if m.expires_ns <= now]:
                del self._loaded[name]
            return sorted(self._loaded.items(), key=lambda item: -item[1].expires_ns)

    def _require(self, model: str, message: str | None = None) -> tuple[str, ModelFacts]:
        key = normalise_name(model)
        with self._lock:
            entry = self._models.get(key) if model else None
        if entry is None:
            raise _Fail(404, message or f"model '{model}' not found")
        return key, entry[0]

    def _context_length(self, facts: ModelFacts, options: dict[str, Any]) -> int:
        requested = options.get("num_ctx") or self.default_num_ctx
        return min(int(requested), facts.context_length)

    def _mark_loaded(self, key: str, keep_alive: float, context_length: int) -> None:
        with self._lock:
            if keep_alive == 0:
                self._loaded.pop(key, None)
            elif keep_alive == math.inf:
                self._loaded[key] = _Loaded(time.time_ns() + FOREVER_NS, context_length)
            else:
                self._loaded[key] = _Loaded(time.time_ns() + int(keep_alive * 1e9), context_length)

    # statistics and fault injection

    def reset(self) -> None:
        """Forget logged requests, counters and pending injected failures (between runs)."""
        with self._lock:
            self._requests: list[Request] = []
            self.stream_ends: list[StreamEnd] = []
            self.embedded_inputs = 0
            self.busy_seconds = 0.0
            self.peak_parallel = 0
            self.prompt_truncations = 0
            self._working = 0
            self._failures.clear()
            self._mid_stream.clear()
            self._faults.clear()
            self._flaky.clear()

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self._requests if r.path == path)

    def fail_next(
        self, path: str, status: int = 500, error: str | None = None, times: int = 1
    ) -> None:
        """Answer the next `times` requests to `path` with `status` and `{"error": error}`.

        Without `error`, 503 says Ollama's queue-full text, 500 a runner crash, others the reason.
        """
        known = {503: BUSY_ERROR, 500: RUNNER_ERROR, 499: "context canceled"}
        default = known.get(status) or responses.get(status, "error").lower()
        with self._lock:
            self._failures.setdefault(path, []).extend([(status, error or default)] * times)

    def fail_mid_stream(self, path: str, error: str = MID_STREAM_ERROR) -> None:
        """Make the next streamed response on `path` break off with an in-stream error line."""
        with self._lock:
            self._mid_stream.setdefault(path, []).append(error)

    def drop_next(self, path: str, times: int = 1, *, reset: bool = True) -> None:
        """Read the next `times` requests to `path`, then reset the connection (or just close it)."""
        with self._lock:
            self._faults.setdefault(path, []).extend(["reset" if reset else "close"] * times)

    def stall_next(self, path: str, times: int = 1) -> None:
        """Accept the next `times` requests to `path` and never answer them (until stop())."""
        with self._lock:
            self._faults.setdefault(path, []).extend(["stall"] * times)

    def flaky(self, path: str, fraction: float, seed: int = 0) -> None:
        """Reset `fraction` of the requests to `path` from now on (0 stops it); seeded, so repeatable."""
        with self._lock:
            if fraction <= 0:
                self._flaky.pop(path, None)
            else:
                self._flaky[path] = (fraction, random.Random(seed))

    def _fault(self, path: str) -> str | None:
        """The transport fault to play on this request, if any (called with the lock held)."""
        queued = self._faults.get(path)
        if queued:
            return queued.pop(0)
        if path in self._flaky:
            fraction, rng = self._flaky[path]
            if rng.random() < fraction:
                return "reset"
        return None

    @contextmanager
    def _slot(self, key: str) -> Iterator[None]:
        """Hold one of the model's num_parallel slots: extra requests queue, as in Ollama."""
        with self._lock:
            slot = self._slots.setdefault(key, threading.Semaphore(self.num_parallel))
        with slot:
            with self._lock:
                self._working += 1
                self.peak_parallel = max(self.peak_parallel, self._working)
            try:
                yield
            finally:
                with self._lock:
                    self._working -= 1

    def _work(self, seconds: float) -> None:
        if seconds <= 0:
            return
        started = time.perf_counter()
        time.sleep(seconds)
        with self._lock:
            self.busy_seconds += time.perf_counter() - started

    # request handling

    def _handle(self, method: str, path: str, raw: bytes) -> _Reply:
        body = None
        if raw.strip():
            try:
                parsed = json.loads(raw)
                body = parsed if isinstance(parsed, dict) else None
            except ValueError:
                pass
        with self._lock:
            self._requests.append(Request(method, path, body))
            fault = self._fault(path)
            pending = self._failures.get(path) if fault is None else None
            failure = pending.pop(0) if pending else None
        if fault is not None:
            return _Reply(fault=fault)
        if failure is not None:
            return _Reply(failure[0], {"error": failure[1]})
        route = ROUTES.get((method, path))
        if route is None:
            return _Reply(404, "404 page not found")
        handler, go_type = route
        try:
            reply = handler(self, _decode_body(raw, go_type) if go_type else {})
        except _Fail as exc:
            return _Reply(exc.status, {"error": exc.message})
        if reply.stream is not None:
            with self._lock:
                errors = self._mid_stream.get(path)
                reply.mid_stream_error = errors.pop(0) if errors else None
        return reply

    def _root(self, body: dict[str, Any]) -> _Reply:
        return _Reply(body="Ollama is running")

    def _version(self, body: dict[str, Any]) -> _Reply:
        return _Reply(body={"version": self.version})

    def _details(self, facts: ModelFacts) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": facts.arch,
            "families": [facts.arch],
            "parameter_size": facts.parameter_size,
            "quantization_level": facts.quantization,
        }

    def _tags(self, body: dict[str, Any]) -> _Reply:
        with self._lock:
            models = list(self._models.items())
        # Newest first by whole seconds, like Ollama, so same-second models keep their order.
        models.sort(key=lambda item: -(item[1][1] // 1_000_000_000))
        entries = [
            {
                "name": name,
                "model": name,
                "modified_at": _timestamp(modified),
                "size": facts.size,
                "digest": _digest(name),
                "details": self._details(facts),
            }
            for name, (facts, modified) in models
        ]
        return _Reply(body={"models": entries})

    def _ps(self, body: dict[str, Any]) -> _Reply:
        entries = []
        for name, state in self._live_loaded():
            facts = self.facts(name)
            # Weights plus a KV cache of ~112 KiB per context token (llama3.2:3b's real figure).
            size = facts.size + state.context_length * 114_688
            entries.append(
                {
                    "name": name,
                    "model": name,
                    "size": size,
                    "digest": _digest(name),
                    "details": self._details(facts),
                    "expires_at": _timestamp(state.expires_ns),
                    "size_vram": int(size * self.size_vram_fraction),
                    "context_length": state.context_length,
                }
            )
        return _Reply(body={"models": entries})

    def _show(self, body: dict[str, Any]) -> _Reply:
        model = body.get("model") or body.get("name") or ""
        if not model:
            raise _Fail(400, "model is required")
        key, facts = self._require(model)
        with self._lock:
            modified = self._models[key][1] if key in self._models else time.time_ns()
        params = float(facts.parameter_size[:-1]) * (
            1e9 if facts.parameter_size[-1] == "B" else 1e6
        )
        arch, bert = facts.arch, facts.bert_style
        model_info = {
            "general.architecture": arch,
            "general.file_type": 1 if bert else 15,
            "general.parameter_count": int(params),
            f"{arch}.block_count": facts.block_count,
            f"{arch}.context_length": facts.context_length,
            f"{arch}.embedding_length": facts.embedding_length,
            "tokenizer.ggml.model": "bert" if bert else "gpt2",
        }
        return _Reply(
            body={
                "license": "Licensed for testing only.",
                "modelfile": f'# Modelfile generated by "ollama show"\nFROM {key}\n',
                "parameters": "" if bert else 'stop "<|eot_id|>"',
                "template": "{{ .Prompt }}",
                "details": self._details(facts),
                "model_info": model_info,
                "capabilities": list(facts.capabilities),
                "modified_at": _timestamp(modified),
            }
        )

    def _pull(self, body: dict[str, Any]) -> _Reply:
        model = body.get("model") or body.get("name") or ""
        if not model:
            raise _Fail(400, "model is required")
        key = normalise_name(model)
        if key not in self.pullable:
            if body.get("stream", True) is False:
                raise _Fail(500, PULL_ERROR)
            return _Reply(stream=iter([{"status": "pulling manifest"}, {"error": PULL_ERROR}]))
        lines = self._pull_progress(key)
        if body.get("stream", True) is False:
            for _ in lines:
                pass
            return _Reply(body={"status": "success"})
        return _Reply(stream=lines)

    def _pull_progress(self, key: str) -> Iterator[dict[str, Any]]:
        size = self.facts(key).size
        yield {"status": "pulling manifest"}
        for i, layer in enumerate((size - 12_485, 11_357, 1_128)):
            digest = _digest(f"{key}#{i}")
            line: dict[str, Any] = {
                "status": f"pulling {digest[:12]}",
                "digest": f"sha256:{digest}",
            }
            yield {**line, "total": layer}
            for quarter in (1, 2, 3, 4) if i == 0 else (4,):
                yield {**line, "total": layer, "completed": layer * quarter // 4}
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        self.add_model(key)
        yield {"status": "success"}

    def _embed(self, body: dict[str, Any]) -> _Reply:
        started = time.perf_counter_ns()
        keep_alive = _parse_keep_alive(body.get("keep_alive"))
        raw_input = body.get("input")
        if isinstance(raw_input, str):
            inputs = [raw_input] if raw_input else []
        elif isinstance(raw_input, list) and all(isinstance(x, str) for x in raw_input):
            inputs = list(raw_input)
        elif raw_input is None:
            inputs = []
        else:
            raise _Fail(400, "invalid input type")
        model = body.get("model") or ""
        key, facts = self._require(model)
        context = self._context_length(facts, body.get("options") or {})
        limit = context - (2 if facts.bert_style else 0)
        texts: list[str] = []
        tokens = 0
        for text in inputs:
            count = count_tokens(text)
            if count > limit:
                if body.get("truncate") is False:
                    raise _Fail(400, "the input length exceeds the context length")
                text, count = _head_tokens(text, limit), limit
            texts.append(text)
            tokens += count + (2 if facts.bert_style else 0)
        self._mark_loaded(key, keep_alive, context)
        with self._slot(key):
            ready = time.perf_counter_ns()
            self._work(self.embed_request_delay + self.embed_delay * len(texts))
        dim = facts.embedding_length
        dimensions = body.get("dimensions")
        vectors = [_word_counts(text, dim) for text in texts]
        if isinstance(dimensions, int) and 0 < dimensions < dim:
            # Cutting can leave only zeros; the fixed vector keeps renormalising safe.
            cut = [v[:dimensions] for v in vectors]
            vectors = [v if any(v) else [1.0] * dimensions for v in cut]
        with self._lock:
            self.embedded_inputs += len(texts)
        reply: dict[str, Any] = {
            "model": model,
            "embeddings": [[_float32(x) for x in _normalised(v)] for v in vectors],
            "total_duration": max(1, time.perf_counter_ns() - started),
            "load_duration": max(1, ready - started),
        }
        if tokens:
            reply["prompt_eval_count"] = tokens
        return _Reply(body=reply)

    def _embeddings(self, body: dict[str, Any]) -> _Reply:
        keep_alive = _parse_keep_alive(body.get("keep_alive"))
        model = body.get("model") or ""
        if not model:
            raise _Fail(400, "model is required")
        key, facts = self._require(model, f'model "{model}" not found, try pulling it first')
        context = self._context_length(facts, body.get("options") or {})
        self._mark_loaded(key, keep_alive, context)
        prompt = body.get("prompt") or ""
        if not prompt:
            return _Reply(body={"embedding": []})
        prompt = _head_tokens(prompt, context - (2 if facts.bert_style else 0))
        with self._slot(key):
            self._work(self.embed_delay)
        with self._lock:
            self.embedded_inputs += 1
        # The legacy endpoint does not normalise, so raw word counts are a faithful stand-in.
        return _Reply(body={"embedding": _word_counts(prompt, facts.embedding_length)})

    def _complete(self, body: dict[str, Any], *, chat: bool) -> _Reply:
        started = time.perf_counter_ns()
        keep_alive = _parse_keep_alive(body.get("keep_alive"))
        model = body.get("model") or ""
        if chat and not model:
            raise _Fail(400, "model is required")
        key, facts = self._require(model)
        verb = "chat" if chat else "generate"
        for wanted, asked in (
            ("completion", True),
            ("tools", body.get("tools")),
            ("thinking", body.get("think")),
        ):
            if asked and wanted not in facts.capabilities:
                what = verb if wanted == "completion" else wanted
                raise _Fail(400, f"{json.dumps(model)} does not support {what}")
        if chat:
            raw = body.get("messages") or []
            messages = [
                (m.get("role", ""), m.get("content") or "") for m in raw if isinstance(m, dict)
            ]
        else:
            messages = [("system", body.get("system") or "")] if body.get("system") else []
            messages += [("user", body["prompt"])] if body.get("prompt") else []
        options = body.get("options") or {}
        context = self._context_length(facts, options)
        self._mark_loaded(key, keep_alive, context)
        if not messages:
            reason = "unload" if keep_alive == 0 else "load"
            return _Reply(body={**_piece(model, chat, ""), "done": True, "done_reason": reason})
        prompt_tokens = sum(count_tokens(content) for _, content in messages)
        if prompt_tokens > context:
            messages = _keep_last_tokens(messages, context)
            prompt_tokens = context
            with self._lock:
                self.prompt_truncations += 1
        p_yes = None
        if self.answer_override is not None:
            answer = self.answer_override
        elif any(YES_NO_RE.search(content) for _, content in messages):
            p_yes = judge_yes_no(messages)
            answer = "yes" if p_yes >= 0.5 else "no"
        else:
            answer = compose_answer(messages)
        # Thinking is on by default in the API; `think: false` turns it off, except for models
        # that always think (gpt-oss takes only a level).
        think = body.get("think")
        thinks = "thinking" in facts.capabilities and (
            think is not False or facts.arch in ALWAYS_THINKS
        )
        thoughts = PIECE_RE.findall(compose_thinking(messages)) if thinks else []
        pieces = PIECE_RE.findall(answer)
        num_predict = int(options.get("num_predict") or -1)
        # num_predict counts thinking tokens too: a tight limit can end inside the thinking.
        reason = "length" if 0 < num_predict < len(thoughts) + len(pieces) else "stop"
        if reason == "length":
            thoughts = thoughts[:num_predict]
            pieces = pieces[: num_predict - len(thoughts)]
        top = int(body.get("top_logprobs") or 0)
        want_logprobs = bool(body.get("logprobs")) or top > 0
        # generate's final line carries token ids for the whole exchange, unless raw was asked.
        ids = None
        if not chat and not body.get("raw"):
            said = "\n".join(content for _, content in messages) + answer
            ids = [_word_hash(t) % 128_256 for t in TOKEN_RE.findall(said)]
        lines = self._generation(
            model,
            key,
            pieces,
            prompt_tokens,
            chat,
            started,
            reason,
            ids,
            thoughts=thoughts,
            logprobs=(top, p_yes) if want_logprobs else None,
        )
        if body.get("stream", True) is not False:
            return _Reply(stream=lines)
        final = list(lines)
        said_lines = [line["message"] if chat else line for line in final]
        text = "".join(x["content" if chat else "response"] for x in said_lines)
        thinking = "".join(x.get("thinking", "") for x in said_lines)
        last = said_lines[-1]
        last["content" if chat else "response"] = text
        if thinking:
            last["thinking"] = thinking
        if want_logprobs:
            final[-1]["logprobs"] = [e for line in final[:-1] for e in line.get("logprobs", [])]
        return _Reply(body=final[-1])

    def _generation(
        self,
        model: str,
        key: str,
        pieces: list[str],
        prompt_tokens: int,
        chat: bool,
        started: int,
        reason: str,
        context_ids: list[int] | None,
        *,
        thoughts: Sequence[str] = (),
        logprobs: tuple[int, float | None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        with self._slot(key):
            ready = time.perf_counter_ns()
            self._work(self.first_token_delay)
            first = time.perf_counter_ns()
            for thought in thoughts:
                self._work(self.token_delay)
                yield {**_piece(model, chat, "", thinking=thought), "done": False}
            for i, piece in enumerate(pieces):
                self._work(self.token_delay)
                line = {**_piece(model, chat, piece), "done": False}
                if logprobs is not None:
                    line["logprobs"] = _logprobs(piece, *logprobs)
                yield line
                hold = self.hold_generation
                if i == 0 and hold is not None:
                    hold.wait(60)
            end = time.perf_counter_ns()
        final = {**_piece(model, chat, ""), "done": True, "done_reason": reason}
        if context_ids is not None:
            final["context"] = context_ids
        # Go leaves zero metrics out (omitempty), so durations are at least 1 ns.
        final["total_duration"] = max(1, time.perf_counter_ns() - started)
        final["load_duration"] = max(1, ready - started)
        final["prompt_eval_count"] = prompt_tokens
        final["prompt_eval_duration"] = max(1, first - ready)
        if pieces or thoughts:
            generated = len(pieces) + len(thoughts)
            final.update({"eval_count": generated, "eval_duration": max(1, end - first)})
        yield final


def _piece(model: str, chat: bool, text: str, thinking: str | None = None) -> dict[str, Any]:
    """The fields every chat or generate line starts with; thinking rides beside the content
    (in `message` for chat, at the top level for generate)."""
    created = _timestamp(time.time_ns(), utc=True)
    said: dict[str, Any] = {"role": "assistant", "content": text} if chat else {"response": text}
    if thinking is not None:
        said["thinking"] = thinking
    return {"model": model, "created_at": created, **({"message": said} if chat else said)}


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


ROUTES: dict[tuple[str, str], tuple[Callable[[OllamaStandIn, dict[str, Any]], _Reply], str]] = {
    ("GET", "/"): (OllamaStandIn._root, ""),
    ("HEAD", "/"): (OllamaStandIn._root, ""),
    ("GET", "/api/version"): (OllamaStandIn._version, ""),
    ("HEAD", "/api/version"): (OllamaStandIn._version, ""),
    ("GET", "/api/tags"): (OllamaStandIn._tags, ""),
    ("HEAD", "/api/tags"): (OllamaStandIn._tags, ""),
    ("GET", "/api/ps"): (OllamaStandIn._ps, ""),
    ("POST", "/api/show"): (OllamaStandIn._show, "ShowRequest"),
    ("POST", "/api/pull"): (OllamaStandIn._pull, "PullRequest"),
    ("POST", "/api/embed"): (OllamaStandIn._embed, "EmbedRequest"),
    ("POST", "/api/embeddings"): (OllamaStandIn._embeddings, "EmbeddingRequest"),
    ("POST", "/api/chat"): (partial(OllamaStandIn._complete, chat=True), "ChatRequest"),
    ("POST", "/api/generate"): (partial(OllamaStandIn._complete, chat=False), "GenerateRequest"),
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a stream stuck on a slow client must not hang stop()
    # socketserver's default backlog is 5: a client opening dozens of connections at once
    # (LlamaIndex's use_async sends every batch together) would see resets Ollama never gives.
    request_queue_size = 1024
    standin: OllamaStandIn

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def drop_connections(self) -> None:
        # Keep-alive connections outlive the listening socket; without this a pooled client
        # connection would still be answered after stop().
        with self.connections_lock:
            for conn in self.connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as Go's server
    server: _Server

    def setup(self) -> None:
        super().setup()
        # http.server writes headers and body separately; without this, Nagle's algorithm and
        # the client's delayed ACK add ~44 ms to every non-streamed reply. Go's server (so
        # Ollama) sets TCP_NODELAY too.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass  # test output stays readable

    def send_response(self, code: int, message: str | None = None) -> None:
        # Ollama sends no Server header.
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            reply = self.server.standin._handle(self.command, urlsplit(self.path).path, raw)
        except Exception as exc:  # a bug in the stand-in should read as a 500, not a hang
            reply = _Reply(500, {"error": f"stand-in bug: {exc!r}"})
        if reply.fault is not None:
            self._play(reply.fault)
            return
        try:
            if reply.stream is not None:
                self._send_stream(reply.stream, reply.mid_stream_error)
            elif isinstance(reply.body, str):
                # Go's 404 page says plain "text/plain"; the root page adds a charset.
                kind = "text/plain; charset=utf-8" if reply.status == 200 else "text/plain"
                self._send(reply.status, reply.body.encode(), kind)
            else:
                self._send(reply.status, _go_json(reply.body), "application/json; charset=utf-8")
        except OSError:
            self.close_connection = True  # the client went away; Ollama calls this a 499

    def _play(self, fault: str) -> None:
        """A crashed, overloaded or unreachable server, as the client's socket sees it."""
        self.close_connection = True
        if fault == "stall":
            # Accepted and read, never answered: the client waits for its read timeout.
            self.server.standin._stopped.wait()
        elif fault == "reset":
            # SO_LINGER 0 makes close() send RST instead of FIN: "connection reset by peer".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            self.connection.close()
        except OSError:
            pass

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_stream(self, lines: Iterator[dict[str, Any]], error: str | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        complete = False
        try:
            for line in lines:
                last = line.get("done") is True or line.get("status") == "success"
                if error is not None and (sent >= MID_STREAM_LINES or last):
                    line = {"error": error}
                data = _go_json(line) + b"\n"
                # wfile is unbuffered, so every line leaves as its own chunk right away.
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                sent += 1
                if "error" in line:
                    break
            self.wfile.write(b"0\r\n\r\n")
            complete = True
        finally:
            standin = self.server.standin
            with standin._lock:
                standin.stream_ends.append(StreamEnd(urlsplit(self.path).path, sent, complete))
            close = getattr(lines, "close", None)
            if close is not None:
                close()  # releases the model slot if the stream stopped early
