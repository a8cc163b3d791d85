"""The pieces of render.py that decide layout: path shortening, the summary, the ETA, blocks."""

from __future__ import annotations

import pytest

from ragged.ingest import IngestReport, Progress
from ragged.render import Eta, cut_middle, finished_blocks, shorten_path, summary_lines

LONG = "~/docs/markdown/sqlmodel/tutorial/relationship-attributes.md"


def test_a_path_is_shortened_from_the_left_keeping_the_file_name() -> None:
    assert shorten_path(LONG, 100) == LONG
    assert shorten_path(LONG, 40) == "…/tutorial/relationship-attributes.md"
    assert shorten_path(LONG, 30) == "…/relationship-attributes.md"


@pytest.mark.parametrize("width", range(4, 70))
def test_a_shortened_path_always_fits_and_keeps_the_end_of_the_name(width: int) -> None:
    shown = shorten_path(LONG, width)
    assert len(shown) <= width
    assert shown.endswith(".md") or width < 8
    if width >= len("…/relationship-attributes.md"):
        assert shown.endswith("/relationship-attributes.md")


def test_a_name_too_long_for_the_column_loses_its_middle() -> None:
    assert cut_middle("relationship-attributes.md", 16) == "relatio…butes.md"
    assert shorten_path("/x/relationship-attributes.md", 16) == "relatio…butes.md"


def test_summary_is_short_and_leaves_out_what_did_not_happen() -> None:
    report = IngestReport(added=5, chunks=12, embedded=12, seconds=0.44)
    assert summary_lines(report) == [
        "files   5 added",
        "chunks  12 stored · 12 embedded · in 0.4 s",
    ]
    nothing = IngestReport(unchanged=40, seconds=0.1)
    assert summary_lines(nothing) == ["files   40 unchanged", "chunks  nothing new · in 0.1 s"]


def test_summary_counts_moved_and_reused() -> None:
    report = IngestReport(added=1, moved=1, unchanged=4, removed=1, chunks=3, reused=3)
    files, chunks = summary_lines(report)
    assert files == "files   1 added (1 moved) · 4 unchanged · 1 removed"
    assert "3 reused" in chunks


def test_summary_fits_80_columns_with_every_count_large() -> None:
    from rich.text import Text

    report = IngestReport(
        added=123_456,
        moved=12_345,
        updated=123_456,
        unchanged=1_234_567,
        removed=123_456,
        skipped=123_456,
        failed=123_456,
        known_failures=12_345,
        pending=9_876_543,
        chunks=9_876_543,
        embedded=9_876_543,
        reused=9_876_543,
        seconds=12_345.6,
    )
    lines = summary_lines(report)
    assert all(len(Text.from_markup(line)) <= 80 for line in lines), lines
    said = " ".join(Text.from_markup(line).plain for line in lines)
    for part in (
        "123,456 added (12,345 moved)",
        "1,234,567 unchanged",
        "123,456 failed (12,345 as before)",
        "9,876,543 pending",
    ):
        assert part in said
    assert [line[:8] for line in lines if line[:8].strip()] == ["files   ", "chunks  "]


def _run(t: float, rate: float, parse_rate: float, warm_up: float) -> Progress:
    """A run `t` s in: after `warm_up` s (Ollama loading the model), 1000 chunks are embedded
    at `rate` per s; parsing finds `parse_rate` chunks/s from the start but may run at most
    256 chunks ahead of embedding (the embedder's back-pressure)."""
    chunks, size = 1000, 8_000_000
    done = min(chunks, int(rate * max(0.0, t - warm_up)))
    known = min(chunks, int(parse_rate * t), done + 256)
    done = min(done, known)
    return Progress(40 * known // chunks, 40, done, known, "", size * known // chunks, size)


@pytest.mark.parametrize(
    ("rate", "parse_rate", "warm_up"),
    # embedding-bound, even, parsing-bound; the first two with a slow model load
    [(10.0, 100.0, 5.0), (10.0, 10.0, 3.0), (20.0, 12.0, 0.0)],
)
def test_eta_is_close_to_the_truth_while_the_chunk_total_grows(
    rate: float, parse_rate: float, warm_up: float
) -> None:
    end = warm_up + 1000 / min(rate, parse_rate)
    eta = Eta()
    said: list[tuple[float, float | None]] = []
    t = 0.0
    while t < end - 1:
        p = _run(t, rate, parse_rate, warm_up)
        eta.observe(p, t)
        said.append((t, eta.left(p, t)))
        t += 0.5
    assert all(left is None for t, left in said if t < warm_up + 1)  # nothing to go by yet
    for t, left in said:
        if t >= warm_up + 4:
            assert left is not None
            assert abs(left - (end - t)) <= 0.1 * (end - t) + 2, (t, left, end - t)


def test_no_eta_before_there_is_a_pace() -> None:
    eta = Eta()
    started = Progress(3, 40, 0, 96, "", 600_000, 8_000_000)  # parsed some, nothing embedded yet
    eta.observe(started, 3.0)
    assert eta.left(started, 3.0) is None
    finished = Progress(40, 40, 1000, 1000, "", 8_000_000, 8_000_000)
    assert eta.left(finished, 30.0) == 0.0


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("A paragraph.\n\nNext one\n", len("A paragraph.\n\n")),
        ("A paragraph.\n\nNext one is still being wr", 0),  # the next line says nothing yet
        ("- one\n\n- two\n", 0),  # a loose list may go on
        ("1. one\n\n   more of one\n", 0),
        ("```\ncode\n\nmore code\n", 0),  # inside a fence
        ("```\ncode\n```\n\nAfter.\n", len("```\ncode\n```\n\n")),
        ("One.\n\nTwo.\n\nThree", len("One.\n\n")),
    ],
)
def test_finished_markdown_blocks(text: str, cut: int) -> None:
    assert finished_blocks(text) == cut
