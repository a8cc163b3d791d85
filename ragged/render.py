"""Turning results into what a person reads (rich) or a script reads (JSON). Core modules never print."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from ragged.answer import Answer
    from ragged.index import Hit
    from ragged.ingest import IngestReport, Progress
    from ragged.manage import SourceInfo
    from ragged.retrieve import Retrieval

_consoles: dict[bool, Console] = {}

# Off a terminal nothing is wrapped or cut: a pipe, a file or a log gets whole lines however
# long they are, and a table its natural width. (Rich would otherwise assume 80 columns.)
UNBOUNDED = 1 << 15
# What a terminal acts on instead of showing: C0 controls but tab and newline (ESC starts
# "clear screen" or "set title"), DEL, C1 controls (U+009B is CSI on its own), and the
# bidirectional overrides and isolates that make a name read backwards ("Trojan Source").
_BREAKS = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# The same, minus what JSON already escapes (everything under U+0020).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def console(stderr: bool = False) -> Console:
    """Results go to stdout, everything else to stderr, so `ragged ask q > answer.md` is clean."""
    if stderr not in _consoles:
        from rich.console import Console

        made = Console(stderr=stderr, highlight=False, soft_wrap=False)
        if not made.is_terminal:
            made.width = UNBOUNDED
        elif os.environ.get("TERMINAL_WIDTH"):
            made.width = int(os.environ["TERMINAL_WIDTH"])
        _consoles[stderr] = made
    return _consoles[stderr]


def can_ask() -> bool:
    """Whether someone can answer a question: stdin and stderr (where it is asked) are a terminal."""
    return sys.stdin.isatty() and console(stderr=True).is_terminal


def confirm(question: str) -> bool:
    """Ask a yes/no question on stderr and read the answer from stdin; no unless "y"/"yes".

    Nothing goes to stdout, which holds the command's result (click's prompt wrote the space
    after the question there). A live progress display is stopped for the rest of the run
    first, or it would redraw over the question while it waits. Not restarted: rich would
    position it over the question's lines, and the one question asked (ingest's, about a
    folder that came back empty) comes at the end of the run anyway.
    """
    err = console(stderr=True)
    while _live_progress:
        _live_progress.pop().stop()
    # soft_wrap: the terminal folds a long question; rich would break it with newlines.
    err.print(f"{clean(question)} [y/N]: ", end="", markup=False, highlight=False, soft_wrap=True)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        err.print()
        raise
    if not answer.endswith("\n"):
        err.print()  # end of input: the next output starts on its own line
    return answer.strip().lower() in ("y", "yes")


_live_progress: list[Any] = []  # the rich Progress on screen now, for confirm() to stop


def reset_consoles() -> None:
    """CliRunner swaps sys.stdout per invocation; consoles must follow."""
    _consoles.clear()


def to_data(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_data(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def hit_data(hit: Hit) -> dict[str, Any]:
    """A passage for JSON: its fields and the label people see."""
    return {**to_data(hit), "label": hit.label}


def print_json(data: Any) -> None:
    text = json.dumps(to_data(data), indent=2, ensure_ascii=False)
    # These can only occur inside JSON strings, where \uXXXX means the same character.
    text = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    # A path typed with bytes that are not UTF-8 holds lone surrogates: as \udcXX escapes.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def error(message: str, hint: str | None = None) -> None:
    err = console(stderr=True)
    err.print(f"[bold red]Error:[/] {escape(message)}")
    if hint:
        err.print(f"[dim]hint:[/] {escape(hint)}")


def notice(message: str) -> None:
    console(stderr=True).print(f"[yellow]![/] {escape(message)}")


def clean(text: str) -> str:
    """Text from a file or a file name, safe on a terminal: each control character shown as
    an escape instead of acted on, e.g. "a\x1b[2Jb" prints as a\\x1b[2Jb (screen not cleared)."""
    return _CONTROL.sub(_visible, text)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """Text for rich: control characters neutralised (`clean`) and markup taken literally."""
    from rich.markup import escape as _escape

    return _escape(clean(text))


def one_line(text: str) -> str:
    """A file name or path on one line: `clean`, and newline, return and tab as escapes too
    ("a\nb.md" prints as a\\nb.md), so one file is one line of a report or one table row."""
    return clean(text).translate(_BREAKS)


def escape_name(text: str) -> str:
    """`one_line` for rich: markup taken literally."""
    return escape(text).translate(_BREAKS)


def shorten_path(path: str, width: int) -> str:
    """Fit a path into `width` by dropping leading folders, never the file name.

    e.g. ('~/docs/sqlmodel/tutorial/relationship-attributes.md', 40)
    -> '…/tutorial/relationship-attributes.md'; a name that alone is too long loses its
    middle and keeps its end: ('relationship-attributes.md', 16) -> 'relatio…butes.md'.
    """
    if len(path) <= width:
        return path
    parts = path.split("/")
    tail = parts[-1]
    if len(tail) + 2 > width:
        return cut_middle(tail, width)
    for part in reversed(parts[:-1]):
        if len(part) + 1 + len(tail) + 2 > width:
            break
        tail = f"{part}/{tail}"
    return f"…/{tail}"


def cut_middle(text: str, width: int) -> str:
    """'relationship-attributes.md', 16 -> 'relatio…butes.md': both ends survive."""
    if len(text) <= width:
        return text
    if width < 2:
        return text[:width]
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


class FittedPath:
    """A path that shortens itself to whatever width the layout gives it (rich protocol)."""

    def __init__(self, path: str, style: str = "") -> None:
        self.path, self.style = one_line(path), style  # a file name may carry escape sequences

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Any]:
        from rich.text import Text

        yield Text(shorten_path(self.path, options.max_width), style=self.style, no_wrap=True)

    def __rich_measure__(self, console: Console, options: Any) -> Any:
        from rich.measure import Measurement

        return Measurement(min(len(self.path), 12), len(self.path))


# -- ingest ----------------------------------------------------------------------------------


def clock(seconds: float) -> str:
    """72.4 -> '1:12', 3725 -> '1:02:05'."""
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


class Eta:
    """Seconds left in an ingest: the chunks the whole run will make, less those embedded,
    at the pace embedding has kept since its first result.

    The chunk total only grows as files are parsed, so on its own it says nothing about
    what is left (the old ETA read `-:--:--`). The bytes do: the chunks found so far, scaled
    by the bytes still to parse, estimate the run's total. e.g. 6 of 8 MB parsed gave 750
    chunks -> about 1000 in all; 500 embedded in 50 s -> 500 more take 50 s. The pace is
    an average from the first embedding on, so it settles instead of jumping with each
    batch, and the wait for Ollama to load the model (seconds) does not skew it.
    """

    def __init__(self) -> None:
        self.first: tuple[float, int] | None = None  # (time, chunks embedded) at the first result

    def observe(self, p: Progress, elapsed: float) -> None:
        if self.first is None and p.chunks_done > 0:
            self.first = (elapsed, p.chunks_done)

    def left(self, p: Progress, elapsed: float) -> float | None:
        if p.bytes_done >= p.bytes_total and p.chunks_done >= p.chunks_total:
            return 0.0
        if self.first is None:
            return None  # no embedding has come back yet: no pace to go by
        since, done_then = self.first
        if elapsed - since < 1.0 or p.chunks_done <= done_then:
            return None
        pace = (p.chunks_done - done_then) / (elapsed - since)
        total = float(p.chunks_total)
        if 0 < p.bytes_done < p.bytes_total:
            total = p.chunks_total * p.bytes_total / p.bytes_done
        return max(0.0, total - p.chunks_done) / pace


@contextmanager
def ingest_progress(enabled: bool) -> Iterator[Any]:
    """A live progress display on stderr; nothing at all when it is not a terminal or --quiet.

    files   ━━━━━━━━━━━━━━╺━━━━━━━━━  12/40  ETA 0:12  elapsed 0:04  …/guide/install.md
    chunks  ━━━━━━━━━━━━━━━━━━━━━━━━━  300/312  45 chunks/s
    """
    err = console(stderr=True)
    if not enabled or not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn
    from rich.progress import Progress as RichProgress
    from rich.table import Column
    from rich.text import Text

    class Timing(ProgressColumn):
        """Worked out at each refresh, so the clock runs while a slow request is awaited."""

        def render(self, task: Any) -> Text:
            snap: Progress | None = task.fields.get("snap")
            elapsed = task.elapsed or 0.0
            if snap is None:
                return Text("")
            if task.fields["kind"] == "chunks":
                rate = snap.chunks_done / elapsed if elapsed > 1 and snap.chunks_done else None
                return Text(f"{rate:,.0f} chunks/s" if rate else "", style="cyan")
            left = eta.left(snap, elapsed)
            eta_text = clock(left) if left is not None else "-:--"
            return Text(f"ETA {eta_text}  elapsed {clock(elapsed)}", style="cyan")

    class Current(ProgressColumn):
        def render(self, task: Any) -> Any:
            return FittedPath(task.fields.get("current", ""), style="dim")

    progress = RichProgress(
        TextColumn("[bold]{task.description:<6}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        Timing(),
        Current(table_column=Column(ratio=1, no_wrap=True, overflow="crop")),
        console=err,
        transient=True,
        expand=True,
    )
    files = progress.add_task(
        "files", total=None, kind="files", snap=None, current="finding files…"
    )
    chunks = progress.add_task("chunks", total=None, kind="chunks", snap=None, current="")
    eta = Eta()
    _live_progress.append(progress)
    try:
        with progress:

            def update(p: Progress) -> None:
                eta.observe(p, progress.tasks[0].elapsed or 0.0)
                progress.update(
                    files, completed=p.files_done, total=p.files_total, snap=p, current=p.current
                )
                progress.update(
                    chunks, completed=p.chunks_done, total=max(p.chunks_total, 1), snap=p
                )

            yield update
    finally:
        if progress in _live_progress:
            _live_progress.remove(progress)


SUMMARY_WIDTH = 80


def summary_lines(report: IngestReport) -> list[str]:
    """The ingest summary as lines of at most 80 columns (markup aside); zero counts left out.

    files   38 added (2 moved) · 1 updated · 1,204 unchanged · 1 failed
    chunks  1,402 stored · 1,371 embedded · 31 reused · in 12.3 s
    """

    def n(value: int) -> str:
        return f"{value:,}"

    r = report
    files = [
        f"{n(r.added)} added" + (f" ({n(r.moved)} moved)" if r.moved else "") if r.added else "",
        f"{n(r.updated)} updated" if r.updated else "",
        f"{n(r.unchanged)} unchanged" if r.unchanged else "",
        f"{n(r.removed)} removed" if r.removed else "",
        f"[yellow]{n(r.skipped)} skipped[/]" if r.skipped else "",
        (
            f"[red]{n(r.failed)} failed[/]"
            + (f" ({n(r.known_failures)} as before)" if r.known_failures else "")
        )
        if r.failed
        else "",
    ]
    chunks = [
        f"{n(r.chunks)} stored" if r.chunks else "",
        f"{n(r.embedded)} embedded" if r.embedded else "",
        f"{n(r.reused)} reused" if r.reused else "",
        f"[yellow]{n(r.pending)} pending[/]" if r.pending else "",
    ]
    chunks = [c for c in chunks if c] or ["nothing new"]
    chunks.append(f"in {r.seconds:.1f} s")
    return _pack("files", [f for f in files if f] or ["none found"]) + _pack("chunks", chunks)


def _pack(label: str, items: list[str]) -> list[str]:
    """Join items with ' · ', starting a new indented line before one would pass 80 columns."""
    from rich.text import Text

    lines: list[str] = []
    line, used = f"{label:<8}", 8
    for i, item in enumerate(items):
        size = len(Text.from_markup(item))
        if i and used + 3 + size > SUMMARY_WIDTH:
            lines.append(line)
            line, used = " " * 8, 8
        elif i:
            line, used = line + " · ", used + 3
        line, used = line + item, used + size
    return [*lines, line]


def ingest_summary(report: IngestReport) -> None:
    out = console()
    for line in summary_lines(report):
        out.print(line)


# -- search, ask, list ----------------------------------------------------------------------


def _table(**kwargs: Any) -> Any:
    from rich.table import Table

    return Table(show_header=True, header_style="bold", **kwargs)


def show_table(table: Any, title: str | None = None) -> None:
    """Print a table to stdout: titled on a terminal; off one, the title is a line of its own
    (rich would centre it in a line of trailing spaces as wide as the table)."""
    out = console()
    if title and out.is_terminal:
        table.title = title
    elif title:
        out.print(escape(title))
    out.print(table)


def _overhead(columns: int) -> int:
    """Columns a bordered table spends on itself: a rule each side and between, one space of padding."""
    return 3 * columns + 1


def search_results(retrieval: Retrieval) -> None:
    out = console()
    if not retrieval.hits:
        out.print("No matching passages.")
        return
    hits = retrieval.hits
    labels = [one_line(hit.label) for hit in hits]
    wheres = [hit.location or "" for hit in hits]
    table = _table()
    if out.is_terminal:
        # Headings get up to a quarter of what the fixed columns leave and the path up to
        # half of the rest, shortened from the left so the file name survives; the passage
        # gets what is left, about two lines of it per hit.
        num_w = len(str(len(hits)))
        avail = out.width - _overhead(5) - num_w - 5
        where_w = min(max(5, *map(len, wheres)), max(8, avail // 4), 30)
        source_w = min(max(6, *map(len, labels)), max(12, (avail - where_w) // 2))
        passage_w = max(10, avail - where_w - source_w)
        text_w = passage_w * 2
        table.add_column("#", justify="right", width=num_w)
        table.add_column("score", justify="right", style="cyan", width=5)
        table.add_column("source", style="green", no_wrap=True, width=source_w)
        table.add_column("where", width=where_w)
        table.add_column("passage", width=passage_w)
        labels = [shorten_path(label, source_w) for label in labels]
    else:
        text_w = UNBOUNDED  # a pipe gets the whole passage, on one line
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("score", justify="right", style="cyan", no_wrap=True)
        table.add_column("source", style="green", no_wrap=True)
        table.add_column("where", no_wrap=True)
        table.add_column("passage", no_wrap=True)
    for i, (hit, shown, where) in enumerate(zip(hits, labels, wheres, strict=True), start=1):
        table.add_row(
            str(i),
            f"{hit.score:.3f}",
            escape(shown),
            escape(where),
            escape(snippet(hit.text, text_w)),
        )
    show_table(table, f"{retrieval.mode} search")


def answer_sources(answer: Answer) -> None:
    """The cited sources, and a dim count of those given to the model but not cited."""
    out = console()
    if not answer.answered:
        return
    out.print()
    if answer.cited:
        out.print("[bold]Sources[/]")
        for s in answer.cited:
            out.print(f"  [{s.n}] {escape_name(s.label)}")
        uncited = len(answer.given) - len(answer.cited)
        if uncited:
            also = "passage was" if uncited == 1 else "passages were"
            out.print(f"  [dim]{uncited} more {also} given but not cited (--json lists all)[/]")
    else:
        out.print("[bold]Sources given (none cited)[/]")
        for s in answer.given:
            out.print(f"  [{s.n}] {escape_name(s.label)}")
    if answer.unknown_citations:
        cited = ", ".join(f"[{n}]" for n in answer.unknown_citations)
        notice(
            f"the answer cited {cited}, which names no source given ({len(answer.given)} were); dropped"
        )


class Spinner:
    """A transient spinner and a few words on stderr, e.g. '⠋ searching…'.

    Not rich's console.status(): that swaps sys.stdout for a proxy onto the stderr console
    while it spins, so a result printed meanwhile would land on the terminal, not in the
    file stdout was redirected to.
    """

    def __init__(self, text: str) -> None:
        from rich.live import Live
        from rich.spinner import Spinner as RichSpinner

        self._spinner = RichSpinner("dots", text)
        self._live = Live(
            self._spinner,
            console=console(stderr=True),
            transient=True,
            refresh_per_second=12.5,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def update(self, text: str) -> None:
        self._spinner.update(text=text)

    def stop(self) -> None:
        self._live.stop()


@contextmanager
def status(text: str) -> Iterator[None]:
    """A transient spinner on stderr while something slow happens; nothing off a terminal."""
    # isatty first: off a terminal, rich (~70 ms of imports) is not needed at all.
    if not sys.stderr.isatty() or not console(stderr=True).is_terminal:
        yield
        return
    spinner = Spinner(text)
    try:
        yield
    finally:
        spinner.stop()


class AnswerStream:
    """Shows an answer as it streams in.

    On a terminal: a transient status on stderr ("searching…", "thinking…") until the first
    token, then the answer rendered as Markdown, word-wrapped. Finished blocks (a blank line
    outside a code fence) are printed for good; only the block being written is live, so a
    long answer scrolls like any output. Elsewhere (a pipe, a file): the raw text, as it comes.
    """

    def __init__(self) -> None:
        self.status: Spinner | None = None
        self.live: Any = None
        self.pending = ""  # Markdown mode: text of the blocks not yet printed for good
        self.started = False
        self.open_line = False  # raw mode: the last thing written did not end a line
        self.thinking_open = False  # a thinking model's reasoning is being shown on stderr

    # The consoles are made when first needed: `ask --json` in a pipe needs neither, and
    # importing rich is ~70 ms of a cold command.
    @property
    def out(self) -> Console:
        return console()

    @property
    def err(self) -> Console:
        return console(stderr=True)

    @functools.cached_property
    def markdown(self) -> bool:
        return sys.stdout.isatty() and self.out.is_terminal

    def thinking(self, piece: str) -> None:
        """A thinking model's reasoning (`--show-thinking`): dimmed on stderr, never stdout."""
        self._stop_status()
        self.err.print(clean(piece), style="dim", end="", markup=False, highlight=False)
        self.thinking_open = True

    def stage(self, what: str) -> None:
        """'searching' or 'thinking': what is happening until the first token."""
        if self.started or not sys.stderr.isatty() or not self.err.is_terminal:
            return
        text = f"[dim]{escape(what)}…[/]"
        if self.status is None:
            self.status = Spinner(text)
        else:
            self.status.update(text)

    def write(self, piece: str) -> None:
        piece = clean(piece)  # the model may repeat escape sequences found in the documents
        if self.thinking_open:
            self.err.print()  # the reasoning ends its line before the answer starts
            self.thinking_open = False
        if not self.started:
            self.started = True
            self._stop_status()
            if self.markdown:
                from rich.live import Live

                self.live = Live(console=self.out, transient=True, refresh_per_second=8)
                self.live.start()
        if not self.markdown:
            sys.stdout.write(piece)
            sys.stdout.flush()
            if piece:
                self.open_line = not piece.endswith("\n")
            return
        self.pending += piece
        cut = finished_blocks(self.pending)
        if cut:
            self.live.console.print(_markdown(self.pending[:cut]))
            self.pending = self.pending[cut:]
        self.live.update(_Tail(_markdown(self.pending)))

    def close(self) -> None:
        """Print what is left; end the raw text's line (a file should end with a newline)."""
        self._stop_status()
        if self.thinking_open:
            self.err.print()
            self.thinking_open = False
        if self.live is not None:
            self.live.update("")
            self.live.stop()
            self.live = None
            if self.pending.strip():
                self.out.print(_markdown(self.pending))
            self.pending = ""
        elif self.open_line:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.open_line = False

    def _stop_status(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


@contextmanager
def answer_stream() -> Iterator[AnswerStream]:
    stream = AnswerStream()
    try:
        yield stream
    finally:
        stream.close()


_FENCES = ("```", "~~~")
_LIST_ITEM = re.compile(r"([-*+]|\d+[.)])\s")


def finished_blocks(text: str) -> int:
    """Length of the leading part of `text` that is finished Markdown blocks.

    A block ends at a blank line outside a code fence, once the next line shows that what
    follows is not more of it: an indented line or a list item continues a list.
    e.g. 'A para.\n\nNext\n' -> 9; '- a\n\n- b\n' -> 0 (the list may go on); '```\nx\n\n' -> 0.
    """
    cut = 0
    fenced = False
    blank_at: int | None = None
    pos = 0
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # a line still being written says nothing yet
        stripped = line.strip()
        if blank_at is not None and stripped and not fenced:
            # The first line after a blank one: does the earlier block go on?
            if not (line[0].isspace() or _LIST_ITEM.match(line)):
                cut = blank_at
            blank_at = None
        if stripped.startswith(_FENCES):
            fenced = not fenced
        pos += len(line)
        if not stripped and not fenced:
            blank_at = pos
    return cut


def _markdown(text: str) -> Any:
    from rich.markdown import Markdown

    return Markdown(text)


class _Tail:
    """The last screenful of a renderable: a live region taller than the terminal would
    smear copies of itself up the scrollback."""

    def __init__(self, renderable: Any) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Any]:
        from rich.segment import Segment

        lines = console.render_lines(self.renderable, options, pad=False)
        keep = max(1, (options.height or console.height) - 1)
        for line in lines[-keep:]:
            yield from line
            yield Segment.line()


def interrupted() -> None:
    """Ctrl-C: the terminal echoed ^C wherever the cursor was, often mid-answer; start a
    new line before saying so."""
    err = console(stderr=True)
    if err.is_terminal:
        err.file.write("\n")
    err.print("interrupted")


def answer_data(answer: Answer, retrieval: Retrieval) -> dict[str, Any]:
    return {
        "question": answer.question,
        "answer": answer.text if answer.answered else None,
        "answered": answer.answered,
        # answered | not_relevant (the model was not asked) | declined (the model found no answer)
        "outcome": answer.outcome,
        "message": None if answer.answered else answer.text,
        "hint": answer.hint,
        "model": answer.model,
        "mode": retrieval.mode,
        "notice": retrieval.notice,
        # passages the chat model re-judged before answering (`--rerank`); 0 when off
        "reranked": retrieval.reranked.judged if retrieval.reranked else 0,
        "sources": [
            {
                "n": s.n,
                "path": s.hit.path,
                "label": s.hit.label,
                "page": s.hit.page,
                "heading": s.hit.heading,
                "score": s.hit.score,
                "cited": s in answer.cited,
            }
            for s in answer.given
        ],
        "unknown_citations": answer.unknown_citations,
        "num_ctx": answer.num_ctx,
        "timings": answer.timings,
    }


def sources_table(sources: Sequence[SourceInfo]) -> None:
    out = console()
    table = _table()
    statuses = [
        s.status if s.status == "ok" else f"[yellow]{s.status}[/] {escape(s.reason)}".rstrip()
        for s in sources
    ]
    labels = [one_line(s.label) for s in sources]
    counts = [(str(s.chunks), str(s.pages or "")) for s in sources]
    # A narrow terminal drops the year: the path needs the room more.
    short = out.is_terminal and out.width < 100
    when = [
        _local_time(s.ingested_at, "%m-%d %H:%M" if short else "%Y-%m-%d %H:%M") for s in sources
    ]
    if out.is_terminal:
        # Numbers and times keep their width, a failure's reason wraps in a sixth of the
        # line, and the path takes what is left, shortened from the left.
        from rich.text import Text

        chunks_w = max(6, *(len(c) for c, _ in counts))
        pages_w = max(5, *(len(p) for _, p in counts))
        when_w = max(11, *map(len, when))
        status_w = min(
            max(6, *(len(Text.from_markup(s)) for s in statuses)), max(8, out.width // 6)
        )
        room = out.width - _overhead(5) - chunks_w - pages_w - when_w - status_w
        source_w = min(max(6, *map(len, labels)), max(12, room))
        labels = [shorten_path(label, source_w) for label in labels]
        table.add_column("source", no_wrap=True, width=source_w)
        table.add_column("chunks", justify="right", width=chunks_w)
        table.add_column("pages", justify="right", width=pages_w)
        table.add_column("ingested at", no_wrap=True, width=when_w)
        table.add_column("status", width=status_w)
    else:
        for name, justify in [
            ("source", "left"),
            ("chunks", "right"),
            ("pages", "right"),
            ("ingested at", "left"),
            ("status", "left"),
        ]:
            table.add_column(name, justify=justify, no_wrap=True)
    for label, (chunks, pages), at, shown in zip(labels, counts, when, statuses, strict=True):
        table.add_row(escape(label), chunks, pages, at, shown)
    show_table(table)


def _local_time(iso: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """'2026-11-29T16:45:04+00:00' -> '2026-11-29 17:45' in this machine's time zone."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone().strftime(fmt)


def simple_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
) -> None:
    table = _table()
    for h in headers:
        table.add_column(h)
    for row in rows:
        table.add_row(*[escape("" if v is None else str(v)) for v in row])
    show_table(table, title)
