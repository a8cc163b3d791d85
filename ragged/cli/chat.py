"""`ragged chat`: a conversation over a collection, typed at a terminal or piped line by line."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ragged.cli._common import (
    CollectionOpt,
    EmbedOpt,
    ModelOpt,
    ModeOpt,
    PathOpt,
    State,
    TopK,
    open_collection,
    purge_notice,
    reporting,
)

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.conversation import Conversation, Reply, Turn
    from ragged.index import Index
    from ragged.llm import LLM

PROMPT = "› "
HELP = """Commands:
  /sources          the last answer's sources in full
  /collection NAME  go on in another collection
  /new              start a new conversation
  /exit             leave (or Ctrl-D); Ctrl-C stops an answer and keeps the session"""


def chat(
    ctx: typer.Context,
    resume: Annotated[
        bool, typer.Option("--continue", help="Resume the last saved conversation.")
    ] = False,
    model: ModelOpt = None,
    top_k: TopK = None,
    mode: ModeOpt = None,
    path: PathOpt = None,
    collection: CollectionOpt = None,
    embed_model: EmbedOpt = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print each answer as one line of JSON.")
    ] = False,
) -> None:
    """Talk with your documents: follow-up questions are read in the light of earlier ones.

    Each follow-up is rewritten into a standalone question (shown dimmed) before retrieval.
    Type /help for the commands. Without a terminal, questions are read from stdin one per
    line and the answers printed, so a conversation can be scripted. Conversations are saved
    in the data dir; --continue resumes the last one.

    Example: printf 'What is rate limiting?\\nAnd how do I disable it?\\n' | ragged chat
    """
    from ragged import render
    from ragged.conversation import latest_conversation, new_conversation
    from ragged.llm import connect
    from ragged.models import resolve_chat_model

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(
            collection=collection, embed_model=embed_model, mode=mode, chat_model=model
        )
        conversation = latest_conversation(settings.home) if resume else None
        if resume and conversation is None:
            render.notice("no saved conversation yet: starting a new one")
        if conversation is not None and collection is None:
            settings = replace(settings, collection=conversation.collection)
        session = Session(
            settings=settings,
            llm=connect(settings),
            model=resolve_chat_model(settings)[0],
            conversation=conversation or new_conversation(settings.collection),
            options={"k": top_k, "mode": mode, "path_glob": path},
            json_out=json_out,
            interactive=sys.stdin.isatty(),
        )
        with ExitStack() as stack:
            session.stack = stack
            session.open(settings.collection)
            if resume and conversation is not None:
                render.console(stderr=True).print(
                    f"[dim]resuming conversation {conversation.id} "
                    f"({len(conversation.turns)} turns, collection '{conversation.collection}')[/]"
                )
            failed = session.run()
        if failed:
            raise typer.Exit(1)


@dataclass
class Session:
    """The state of one `ragged chat` run: the open collection and the conversation."""

    settings: Settings
    llm: LLM
    model: str
    conversation: Conversation
    options: dict[str, Any]
    json_out: bool
    interactive: bool
    stack: ExitStack | None = None
    index: Index | None = None
    last: Turn | None = None
    failures: int = 0
    _indexes: dict[str, Index] = field(default_factory=dict)

    def open(self, name: str) -> None:
        """Make `name` the collection in use; it is refused, naming the others, if absent.

        One opened earlier in this chat is opened again if a `reset` has deleted it since:
        refused then, not switched to (the next question would fail on it).
        """
        cached = self._indexes.get(name)
        if cached is not None and cached.outdated():
            self._forget(name)
        if name not in self._indexes:
            assert self.stack is not None
            settings = replace(self.settings, collection=name)
            self._indexes[name] = self.stack.enter_context(open_collection(settings))
        self.index = self._indexes[name]
        self.conversation.collection = name

    def _forget(self, name: str) -> None:
        index = self._indexes.pop(name, None)
        if index is not None:
            index.close()

    def current(self) -> Index:
        """The collection in use, opened again if a `reset` deleted it since (the next ingest
        makes a new one); refused, naming the others, while it does not exist."""
        assert self.index is not None
        if self.index.outdated():
            self._forget(self.conversation.collection)
            self.open(self.conversation.collection)
        else:
            self.index.follow()
        return self.index

    def run(self) -> int:
        """Read questions until /exit or end of input; returns the number of failed turns."""
        from ragged import render

        if self.interactive:
            try:
                import readline  # noqa: F401  (line editing and history for input())
            except ImportError:  # not on every platform; input() works without it
                pass
            render.console(stderr=True).print(
                f"[dim]collection '{self.conversation.collection}', model {self.model}; "
                "/help for commands, Ctrl-D to leave[/]"
            )
        # Bytes that are not UTF-8 (a Latin-1 terminal or file) arrive as escapes, not as a
        # UnicodeDecodeError, and the question is then read as text (retrieve.well_formed).
        from ragged.retrieve import well_formed

        with suppress(AttributeError, ValueError):
            sys.stdin.reconfigure(errors="surrogateescape")  # type: ignore[union-attr]
        while True:
            try:
                line = input(PROMPT) if self.interactive else sys.stdin.readline()
            except KeyboardInterrupt:
                sys.stdout.write("\n")
                continue  # as in a shell: Ctrl-C at the prompt clears the line
            except EOFError:
                break
            if not self.interactive and not line:
                break
            line = well_formed(line.strip())
            if not line:
                continue
            if line.startswith("/"):
                if not self.command(line):
                    break
                continue
            self.ask(line)
        if self.interactive:
            sys.stdout.write("\n")
        return self.failures

    def command(self, line: str) -> bool:
        """Run a /command; False means leave."""
        from ragged import render
        from ragged.conversation import new_conversation
        from ragged.errors import RaggedError

        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name in ("/exit", "/quit"):
            return False
        if name == "/help":
            render.console(stderr=True).print(render.escape(HELP))
        elif name == "/sources":
            self.show_sources()
        elif name == "/new":
            self.conversation = new_conversation(self.conversation.collection)
            self.last = None
            render.console(stderr=True).print("[dim]new conversation[/]")
        elif name == "/collection":
            if not arg:
                render.console(stderr=True).print(
                    f"collection '{self.conversation.collection}'; /collection NAME switches"
                )
                return True
            try:
                self.open(arg)
            except RaggedError as exc:
                render.error(exc.message, exc.hint)
                return True
            render.console(stderr=True).print(f"[dim]now in collection '{arg}'[/]")
        else:
            render.error(f"unknown command {name}", "/help lists the commands")
        return True

    def ask(self, question: str) -> None:
        from ragged import render
        from ragged.catalog import location
        from ragged.conversation import reply, save_conversation
        from ragged.errors import RaggedError

        streamed: list[str] = []

        def on_token(piece: str) -> None:
            if not self.json_out:
                if not streamed:
                    piece = piece.lstrip()
                sys.stdout.write(piece)
                sys.stdout.flush()
            streamed.append(piece)

        try:
            index = self.current()
            result = reply(
                question,
                self.conversation.history,
                index,
                self.llm,
                model=self.model,
                on_standalone=_show_standalone,
                on_token=on_token,
                **self.options,
            )
        except KeyboardInterrupt:
            if not self.interactive:
                raise
            if streamed:
                sys.stdout.write("\n")
            render.console(stderr=True).print("[dim](stopped)[/]")
            return
        except RaggedError as exc:
            if streamed:
                sys.stdout.write("\n")
            render.error(exc.message, exc.hint)
            self.failures += 1
            return
        self.last = self.conversation.record(
            result, self.conversation.collection, location(self.settings)
        )
        not_saved = None
        try:
            save_conversation(
                self.conversation,
                self.settings.home,
                # After a `reset` meanwhile, the catalog still held open lists what was deleted.
                stored=lambda ids: () if index.deleted_here() else index.catalog.chunks_by_id(ids),
            )
        except RaggedError as exc:  # a full disk: the answer is shown all the same
            not_saved = exc.message
        self.render(result, bool(streamed), saved=not_saved is None)
        if not_saved is not None:
            # After the answer, so that it is the last thing read; the turns stay in memory
            # for follow-ups, and the next answer's save writes them all.
            render.error(f"{not_saved}; it goes on in memory and the next answer tries again")
            self.failures += 1
        # What this turn's catch-up with a shared server forgot, purged from the catalog now
        # rather than when the chat ends, which may be days later.
        problem = index.purge_cache()
        if problem is not None:
            purge_notice(problem)

    def render(self, result: Reply, streamed: bool, saved: bool = True) -> None:
        from ragged import render

        retrieval = result.retrieval
        if result.answer is None:
            if retrieval.notice:
                render.notice(retrieval.notice)
            render.notice("cannot generate an answer without Ollama; these are the best passages")
            self.failures += 1
            if self.json_out:
                self.print_line({"question": result.question, "answer": None, "answered": False})
            else:
                render.search_results(retrieval)
            return
        if self.json_out:
            data = render.answer_data(result.answer, retrieval)
            data.update(
                question=result.question,
                standalone=result.standalone,
                in_documents=result.in_documents,
                conversation=self.conversation.id,
                saved=saved,
                timings={**result.answer.timings, **result.timings},
            )
            self.print_line(data)
            return
        if retrieval.notice:
            render.notice(retrieval.notice)
        if not result.answer.answered:
            render.console().print(render.escape(result.answer.text))
        else:
            if streamed:
                sys.stdout.write("\n")
            render.answer_sources(result.answer)
        render.console().print()

    def show_sources(self) -> None:
        from ragged import render
        from ragged.conversation import take_blanks

        take_blanks(self.conversation, self.settings.home)  # an ingest may have run meanwhile
        turn = self.last or (self.conversation.turns[-1] if self.conversation.turns else None)
        if turn is None or not turn.sources:
            render.console(stderr=True).print("no sources yet: ask a question first")
            return
        if self.json_out:
            self.print_line({"sources": [s.__dict__ for s in turn.sources]})
            return
        out = render.console()
        for s in turn.sources:
            mark = "" if s.cited else " [dim](not cited)[/]"
            out.print(f"[bold][{s.n}] {render.escape_name(s.label)}[/]{mark}")
            if s.text:
                out.print(render.escape(s.text.strip()))
            else:  # blanked when its chunk was deleted (docs/design.md, Deletion)
                out.print("[dim](no longer stored in the collection)[/]")
            out.print()

    @staticmethod
    def print_line(data: dict[str, Any]) -> None:
        from ragged.render import to_data

        sys.stdout.write(json.dumps(to_data(data), ensure_ascii=False) + "\n")
        sys.stdout.flush()


def _show_standalone(question: str) -> None:
    """The rewritten question, dimmed on stderr: what was actually searched for."""
    from ragged import render

    render.console(stderr=True).print(f"[dim]→ {render.escape(question)}[/]")
