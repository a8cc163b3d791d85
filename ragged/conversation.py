"""Conversations: a follow-up is condensed into a standalone question, retrieved, then answered.

Shared by `ragged chat` and `ragged serve`. A turn is:

1. condense: with earlier turns, the chat model rewrites "and how do I disable it?" into
   "How do I disable rate limiting?" (the first turn needs no model call);
2. retrieve with that standalone question, not with the raw follow-up, which would find
   passages about "disable" and "it";
3. answer from the passages, with the newest earlier turns before them so the model can
   follow the thread; the history is trimmed to fit the model's context (num_ctx).

Conversations of `ragged chat` are saved as JSON under `<data dir>/conversations/`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragged.answer import CANNOT_ANSWER_PHRASE
from ragged.errors import ModelMissing, OllamaUnavailable, StoreError

if TYPE_CHECKING:
    from ragged.answer import Answer, Source
    from ragged.index import Index
    from ragged.llm import LLM
    from ragged.retrieve import Retrieval

CONDENSE_PROMPT = """You rewrite the user's latest message as one standalone question about their documents.
Rules:
- Use the conversation only to make clear what words like "it", "that" or "the second one" refer to.
- Keep the user's own words and language otherwise; add nothing they did not ask.
- Do not answer the question.
- Reply with the question alone, on one line."""

# The stand-in model (tests/ollama_standin.py) recognises a condense request by these two
# labels; keep them in step with its CONDENSE_* patterns.
CONDENSE_USER = """Conversation:
{transcript}

Follow-up: {question}
Standalone question:"""

CONDENSE_TOKENS = 128  # a question, not an essay: the most the rewrite may run to
HISTORY_SHARE = 0.25  # of the answer's prompt budget at most; the passages keep the rest
MAX_REWRITE_FACTOR = 4  # a "rewrite" this many times longer than the question is not one
# A mark with the spaces before it. The look-behind starts a match only where a run of spaces
# starts: without it each position inside a run was tried, quadratic in the run (a 40,000
# character answer of spaces took 1.6 s, and a request may carry 200 of them).
CITATION_MARK = re.compile(r"(?<!\s)\s*\[\d+(?:\s*[,;]\s*\d+)*\]")
CONVERSATIONS_DIR = "conversations"
# Held while a conversation file is read and written again: a chat saving its turns and an
# ingest blanking passages (forget_passages) must not undo each other's writes.
CONVERSATIONS_LOCK = ".lock"


@dataclass(frozen=True)
class Exchange:
    """One earlier question and the answer it got, as the model will see them again."""

    question: str
    answer: str


@dataclass
class Reply:
    """What one turn did: the question as asked and as retrieved, the passages, the answer."""

    question: str
    standalone: str  # what was retrieved; equal to `question` on a first turn
    retrieval: Retrieval
    answer: Answer | None  # None when no model could be reached: the passages stand in
    model: str
    history_used: int  # earlier exchanges that fitted the model's context
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def condensed(self) -> bool:
        return self.standalone != self.question

    @property
    def in_documents(self) -> bool:
        """False when nothing relevant was found or the model said the sources do not say."""
        return (
            self.answer is not None
            and self.answer.answered
            and not self.answer.text.strip().startswith(CANNOT_ANSWER_PHRASE)
        )


def plain_answer(text: str) -> str:
    """An earlier answer without its [n] marks: those numbered another turn's passages."""
    return CITATION_MARK.sub("", text).strip()


def fit_history(
    history: Sequence[Exchange], budget: int, count_tokens: Callable[[str], int]
) -> list[Exchange]:
    """The newest exchanges whose text fits `budget` tokens, oldest first.

    e.g. budget 1700 and exchanges of 900, 500 and 600 tokens (oldest first): the last two
    fit (1100), the first would make 2000, so it and everything older is left out.
    """
    kept: list[Exchange] = []
    for exchange in reversed(history):
        cost = count_tokens(exchange.question) + count_tokens(exchange.answer) + 8
        if cost > budget:
            break
        budget -= cost
        kept.append(exchange)
    return kept[::-1]


def history_messages(history: Sequence[Exchange]) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for exchange in history:
        messages.append({"role": "user", "content": exchange.question})
        messages.append({"role": "assistant", "content": plain_answer(exchange.answer)})
    return messages


def condense(
    question: str,
    history: Sequence[Exchange],
    llm: LLM,
    model: str,
    num_ctx: int,
    count_tokens: Callable[[str], int],
) -> str:
    """The follow-up rewritten as a question that stands on its own; unchanged on a first turn.

    Only the newest turns that fit the context are shown to the model. A reply that is empty
    or far longer than any question is not trusted: the question is kept as asked.
    """
    if not history:
        return question
    fixed = count_tokens(CONDENSE_PROMPT) + count_tokens(
        CONDENSE_USER.format(transcript="", question=question)
    )
    shown = fit_history(history, num_ctx - CONDENSE_TOKENS - fixed, count_tokens)
    if not shown:
        # Even the last exchange is too long: its question alone still says what "it" is.
        shown = [Exchange(history[-1].question, "")]
    transcript = "\n".join(
        f"User: {e.question}" + (f"\nAssistant: {plain_answer(e.answer)}" if e.answer else "")
        for e in shown
    )
    messages = [
        {"role": "system", "content": CONDENSE_PROMPT},
        {"role": "user", "content": CONDENSE_USER.format(transcript=transcript, question=question)},
    ]
    text = "".join(
        llm.chat(
            model,
            messages,
            num_ctx=num_ctx,
            options={"temperature": 0.0, "num_predict": CONDENSE_TOKENS},
        )
    )
    return clean_rewrite(text, question)


def without_thinking(text: str) -> str:
    """`text` without its <think>...</think> blocks (a thinking model's reasoning, when it
    arrives inside the content). A loop of finds, not a regex: a lazy `<think>.*?</think>`
    scans to the end from every unclosed "<think>", quadratic in their number."""
    kept, at = [], 0
    while (start := text.find("<think>", at)) >= 0:
        end = text.find("</think>", start)
        if end < 0:
            break
        kept.append(text[at:start])
        at = end + len("</think>")
    kept.append(text[at:])
    return "".join(kept)


def clean_rewrite(text: str, question: str) -> str:
    """The first line of the model's reply, without quotes, labels or a thinking block."""
    text = without_thinking(text)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return question
    line = re.sub(r"^(standalone question|question)\s*:\s*", "", lines[0], flags=re.IGNORECASE)
    line = line.strip().strip("\"'“”").strip()
    if not line or len(line) > MAX_REWRITE_FACTOR * max(len(question), 60):
        return question
    return line


def reply(
    question: str,
    history: Sequence[Exchange],
    index: Index,
    llm: LLM,
    *,
    model: str | None = None,
    k: int | None = None,
    mode: str | None = None,
    path_glob: str | None = None,
    on_standalone: Callable[[str], None] | None = None,
    on_token: Callable[[str], None] | None = None,
) -> Reply:
    """One conversational turn: condense the follow-up, retrieve with it, answer with history."""
    from ragged.answer import answer, context_size
    from ragged.models import resolve_chat_model
    from ragged.retrieve import retrieve, well_formed
    from ragged.tokens import count_tokens, warm_up

    warm_up()  # the history is counted: the tokenizer loads while retrieval waits on Ollama
    question = well_formed(question)
    history = [Exchange(well_formed(h.question), well_formed(h.answer)) for h in history]
    started = time.perf_counter()
    settings = index.settings
    chat_model = model or resolve_chat_model(settings)[0]
    timings: dict[str, float] = {}
    standalone = question
    num_ctx = settings.context_window
    if history:
        try:
            num_ctx = context_size(llm, chat_model, settings.context_window)
            standalone = condense(question, history, llm, chat_model, num_ctx, count_tokens)
        except (OllamaUnavailable, ModelMissing):
            pass  # retrieval says Ollama is gone and falls back to keywords on the question
        timings["condense_s"] = time.perf_counter() - started
    if on_standalone and standalone != question:
        on_standalone(standalone)

    mark = time.perf_counter()
    retrieval = retrieve(
        standalone, index, llm, k=k, mode=mode, path_glob=path_glob, chat_model=chat_model
    )
    timings["retrieve_s"] = time.perf_counter() - mark
    if retrieval.ollama_down:
        timings["total_s"] = time.perf_counter() - started
        return Reply(question, standalone, retrieval, None, chat_model, 0, timings)

    answer_budget = num_ctx - min(settings.answer_tokens, num_ctx // 4)
    kept = fit_history(history, int(answer_budget * HISTORY_SHARE), count_tokens)

    def first_token(piece: str) -> None:
        timings.setdefault("turn_first_token_s", time.perf_counter() - started)
        if on_token:
            on_token(piece)

    mark = time.perf_counter()
    result = answer(
        retrieval,
        llm,
        chat_model,
        settings,
        on_token=first_token,
        history=history_messages(kept),
    )
    timings["answer_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    return Reply(question, standalone, retrieval, result, chat_model, len(kept), timings)


# -- saved conversations (`ragged chat`, `--continue`) -----------------------------------------


@dataclass(frozen=True)
class SavedSource:
    """A passage given with an answer, kept whole so `/sources` works after `--continue`."""

    n: int
    id: str
    path: str
    page: int | None
    heading: str
    text: str
    cited: bool

    @property
    def label(self) -> str:
        from ragged.index import label

        where = f"page {self.page}" if self.page else self.heading
        return label(self.path) + (f" ({where})" if where else "")


@dataclass
class Turn:
    question: str
    standalone: str
    answer: str
    answered: bool
    in_documents: bool
    collection: str
    model: str
    sources: list[SavedSource]
    at: str
    # The Chroma the collection was in (ragged.catalog.location); "" in files saved before.
    location: str = ""


@dataclass
class Conversation:
    id: str
    collection: str
    created_at: str
    turns: list[Turn] = field(default_factory=list)

    @property
    def history(self) -> list[Exchange]:
        """What the next follow-up is read against: answered turns only."""
        return [Exchange(t.question, t.answer) for t in self.turns if t.answered]

    def record(self, result: Reply, collection: str, location: str = "") -> Turn:
        answer = result.answer
        cited = {s.n for s in answer.cited} if answer else set()
        turn = Turn(
            question=result.question,
            standalone=result.standalone,
            answer=answer.text if answer else "",
            answered=bool(answer and answer.answered),
            in_documents=result.in_documents,
            collection=collection,
            model=result.model,
            sources=[_saved(s, s.n in cited) for s in (answer.given if answer else [])],
            at=_now(),
            location=location,
        )
        self.turns.append(turn)
        return turn


def _saved(source: Source, cited: bool) -> SavedSource:
    hit = source.hit
    return SavedSource(source.n, hit.id, hit.path, hit.page, hit.heading, hit.text, cited)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_conversation(collection: str) -> Conversation:
    """A conversation with a sortable, unguessable id: 20260301-142501-3f9a1c."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Conversation(f"{stamp}-{secrets.token_hex(3)}", collection, _now())


def conversations_dir(home: Path) -> Path:
    return Path(home) / CONVERSATIONS_DIR


def save_conversation(
    conversation: Conversation,
    home: Path,
    stored: Callable[[list[str]], Iterable[str]] | None = None,
) -> Path:
    """Write atomically (temp file + rename): a crash never leaves half a conversation.

    Passages blanked in the file since it was read (an ingest in another shell replaced or
    removed their file) are blanked in `conversation` too, so a long chat does not write
    them back. `stored(ids)` names which of the last turn's passages are still stored; the
    others were deleted while it was answered, after any blanking could see this turn.

    Raises StoreError, naming the file and why, when it cannot be written (a full disk, a
    data dir that is read-only): the conversation in memory is whole, and the next save
    writes all of it."""
    from ragged.lock import held

    folder = conversations_dir(home)
    path = folder / f"{conversation.id}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with held(folder / CONVERSATIONS_LOCK):
            take_blanks(conversation, home)
            if stored is not None and conversation.turns:
                # Asked under the lock: a deletion after this blanks the file written now.
                turn = conversation.turns[-1]
                kept = set(stored([s.id for s in turn.sources]))
                turn.sources = [s if s.id in kept else replace(s, text="") for s in turn.sources]
            _write(conversation, path)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise StoreError(
            f"could not save the conversation to {path}: {exc.strerror or exc}{where}"
        ) from exc
    return path


def take_blanks(conversation: Conversation, home: Path) -> None:
    """Blank in `conversation` the passages its saved file has blanked since it was read."""
    path = conversations_dir(home) / f"{conversation.id}.json"
    try:
        saved = load_conversation(path)
    except StoreError:
        return  # not written yet, or unreadable: this write replaces it
    # Turns are only ever appended: the file's turns are the first of these.
    for mine, theirs in zip(conversation.turns, saved.turns, strict=False):
        if (mine.at, mine.question) != (theirs.at, theirs.question):
            return
        blank = {s.id for s in theirs.sources if not s.text}
        if blank:
            mine.sources = [replace(s, text="") if s.id in blank else s for s in mine.sources]


def _write(conversation: Conversation, path: Path) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(asdict(conversation), ensure_ascii=False, indent=1), "utf-8")
        os.replace(tmp, path)
    except BaseException:
        # A half-written copy holds passages too: it must not outlive the failure.
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def forget_passages(
    home: Path,
    collection: str,
    paths: Iterable[str] | None = None,
    *,
    ids: Iterable[str] | None = None,
    location: str | None = None,
) -> int:
    """Blank the saved passages of these files, or of these chunks, in every saved
    conversation (all of the collection's when neither is given): the text of a removed file,
    or of a file's replaced version, must be readable in no file of the data dir. The
    questions and answers stay: they are the user's own conversation. Only turns asked of
    this collection are touched, and with a `location` (ragged.catalog.location) only those
    asked of it there (or saved before turns recorded where).

    Every conversation is tried; NotBlanked (a full disk) is raised after the others are
    done, so the caller can try again later. Returns the conversations rewritten."""
    from ragged.lock import held

    gone_paths = None if paths is None else set(paths)
    gone_ids = None if ids is None else set(ids)
    folder = conversations_dir(home)
    if gone_paths == set() or gone_ids == set() or not folder.is_dir():
        return 0  # every ingest removes its vanished files, most often none

    def gone(source: SavedSource) -> bool:
        if gone_ids is not None:
            return source.id in gone_ids
        return gone_paths is None or source.path in gone_paths

    changed, failed, unwritten = 0, None, set()
    with held(folder / CONVERSATIONS_LOCK):
        # A temp copy whose writer is gone (killed while writing) holds passages too.
        for leftover in folder.glob("*.tmp*"):
            if not _writing(leftover):
                with contextlib.suppress(OSError):
                    leftover.unlink()
        for path in sorted(folder.glob("*.json")):
            try:
                conversation = load_conversation(path)
            except StoreError:
                continue  # unreadable: nothing of it is shown either
            blanked = set()
            for turn in conversation.turns:
                if turn.collection != collection:
                    continue
                if location is not None and turn.location not in ("", location):
                    continue
                for i, source in enumerate(turn.sources):
                    if source.text and gone(source):
                        turn.sources[i] = replace(source, text="")
                        blanked.add(source.id)
            if not blanked:
                continue
            try:
                before = path.stat()
                _write(conversation, path)
                # `--continue` resumes the conversation used last, by this time: blanking
                # passages is not using it.
                os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
                changed += 1
            except OSError as exc:  # named after the conversation, not its temp copy
                failed = exc.errno or 0, exc.strerror or str(exc), str(path)
                unwritten |= blanked
    if failed is not None:
        raise NotBlanked(*failed, ids=unwritten)
    return changed


class NotBlanked(OSError):
    """A conversation could not be rewritten (a full disk): `ids` are the chunks whose
    passages the conversations not rewritten still hold, all that a later try needs."""

    def __init__(self, errno: int, strerror: str, filename: str, ids: set[str]) -> None:
        super().__init__(errno, strerror, filename)
        self.ids = ids


def _writing(temp: Path) -> bool:
    """Whether the process that named this temp copy (`<id>.tmp<pid>`) is still running."""
    pid = temp.suffix.removeprefix(".tmp")
    if not pid.isdigit():
        return False
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would end the process there
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # there, but another user's: not ours to judge
    return True


def load_conversation(path: Path) -> Conversation:
    try:
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        turns = [
            Turn(**{**t, "sources": [SavedSource(**s) for s in t.get("sources", [])]})
            for t in data.get("turns", [])
        ]
        for turn in turns:  # what blanking and /sources rely on, from a file anyone can edit
            fields = [turn.question, turn.at, turn.collection, turn.location]
            for source in turn.sources:
                fields += [source.id, source.path, source.text]
            if not all(isinstance(f, str) for f in fields):
                raise TypeError("a field of a turn is not a string")
        return Conversation(data["id"], data["collection"], data["created_at"], turns)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"{path}: cannot read the saved conversation: {exc}") from exc


def latest_conversation(home: Path) -> Conversation | None:
    """The conversation written last, or None when there is none."""
    folder = conversations_dir(home)
    saved = (
        sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns) if folder.is_dir() else []
    )
    return load_conversation(saved[-1]) if saved else None
