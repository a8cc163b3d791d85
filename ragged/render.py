"""Turning results into what a person reads (rich) or a script reads (JSON). Core modules never print."""

from __future__ import annotations

import dataclasses
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

# What a terminal acts on instead of showing: C0 controls but tab and newline (ESC starts
# "clear screen" or "set title"), DEL, C1 controls (U+009B is CSI on its own), and the
# bidirectional overrides and isolates that make a name read backwards ("Trojan Source").
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# The same, minus what JSON already escapes (everything under U+0020).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def console(stderr: bool = False) -> Console:
    """Results go to stdout, everything else to stderr, so `ragged ask q > answer.md` is clean."""
    if stderr not in _consoles:
        from rich.console import Console

        width = os.environ.get("TERMINAL_WIDTH")
        _consoles[stderr] = Console(
            stderr=stderr, highlight=False, width=int(width) if width else None, soft_wrap=False
        )
    return _consoles[stderr]


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


def shorten_path(path: str, width: int) -> str:
    """Fit a path into `width` by dropping leading folders, never the file name.

    e.g. ('~/docs/sqlmodel/tutorial/relationship-attributes.md', 40)
    -> '…/tutorial/relationship-attributes.md'
    """
    if len(path) <= width:
        return path
    parts = path.split("/")
    tail = parts[-1]
    for part in reversed(parts[:-1]):
        if len(part) + 1 + len(tail) + 2 > width:
            break
        tail = f"{part}/{tail}"
    return f"…/{tail}"


def snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


@contextmanager
def ingest_progress(enabled: bool) -> Iterator[Any]:
    """A live progress display on stderr; nothing at all when it is not a terminal or --quiet."""
    err = console(stderr=True)
    if not enabled or not err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    progress = RichProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[current]}"),
        console=err,
        transient=True,
    )
    files = progress.add_task("files", total=None, rate="", current="")
    chunks = progress.add_task("chunks", total=None, rate="", current="")
    with progress:

        def update(p: Progress) -> None:
            progress.update(
                files,
                completed=p.files_done,
                total=p.files_total,
                current=escape(snippet(p.current, 40)),
            )
            elapsed = progress.tasks[1].elapsed or 0.0
            rate = f"{p.chunks_done / elapsed:.0f}/s" if elapsed > 0.5 and p.chunks_done else ""
            progress.update(
                chunks, completed=p.chunks_done, total=max(p.chunks_total, 1), rate=rate, current=""
            )

        yield update


def ingest_summary(report: IngestReport) -> None:
    from rich.table import Table

    table = Table(title="ingest", show_header=True, header_style="bold")
    cols = [
        "added",
        "updated",
        "unchanged",
        "removed",
        "skipped",
        "failed",
        "pending",
        "chunks",
        "seconds",
    ]
    for c in cols:
        table.add_column(c, justify="right")
    table.add_row(
        *[f"{report.seconds:.1f}" if c == "seconds" else str(getattr(report, c)) for c in cols]
    )
    console().print(table)


def search_results(retrieval: Retrieval) -> None:
    from rich.table import Table

    out = console()
    if not retrieval.hits:
        out.print("No matching passages.")
        return
    table = Table(show_header=True, header_style="bold", title=f"{retrieval.mode} search")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right", style="cyan")
    # The file name is what matters in a narrow column: shorten from the left, and never
    # let the table cut or fold what is left.
    room = max(24, out.width // 3) if out.is_terminal else 10_000
    labels = [shorten_path(hit.label, room) for hit in retrieval.hits]
    table.add_column("source", style="green", no_wrap=True, min_width=max(map(len, labels)))
    table.add_column("where")
    table.add_column("passage", ratio=1)
    for i, (hit, shown) in enumerate(zip(retrieval.hits, labels, strict=True), start=1):
        score = f"{hit.score:.3f}"
        table.add_row(
            str(i),
            score,
            escape(shown),
            escape(hit.location or ""),
            escape(snippet(hit.text)),
        )
    out.print(table)


def answer_sources(answer: Answer) -> None:
    out = console()
    if not answer.answered:
        return
    out.print()
    if answer.cited:
        out.print("[bold]Sources[/]")
        for s in answer.cited:
            out.print(f"  [{s.n}] {escape(s.label)}", markup=True)
    else:
        out.print("[bold]Sources given (none cited)[/]")
        for s in answer.given:
            out.print(f"  [{s.n}] {escape(s.label)}")
    if answer.unknown_citations:
        cited = ", ".join(f"[{n}]" for n in answer.unknown_citations)
        notice(
            f"the answer cited {cited}, which names no source given ({len(answer.given)} were); dropped"
        )


def answer_data(answer: Answer, retrieval: Retrieval) -> dict[str, Any]:
    return {
        "question": answer.question,
        "answer": answer.text if answer.answered else None,
        "answered": answer.answered,
        "model": answer.model,
        "mode": retrieval.mode,
        "notice": retrieval.notice,
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
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    for name, justify in [
        ("source", "left"),
        ("chunks", "right"),
        ("pages", "right"),
        ("ingested at", "left"),
        ("status", "left"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in sources:
        table.add_row(
            escape(s.label),
            str(s.chunks),
            str(s.pages or ""),
            _local_time(s.ingested_at),
            s.status if s.status == "ok" else f"[yellow]{s.status}[/] {escape(s.reason)}".rstrip(),
        )
    console().print(table)


def _local_time(iso: str) -> str:
    """'2026-11-29T16:45:04+00:00' -> '2026-11-29 17:45' in this machine's time zone."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")


def simple_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
) -> None:
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", title=title)
    for h in headers:
        table.add_column(h)
    for row in rows:
        table.add_row(*[escape("" if v is None else str(v)) for v in row])
    console().print(table)
