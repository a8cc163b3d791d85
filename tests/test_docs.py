"""The README and docs/cli.md must say what the code does."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_docs_are_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_readme_setup_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    setup = re.search(r"## Set-up.*?```sh\n(.*?)```", readme, re.S)
    assert setup is not None
    commands = [line.split("#")[0].strip() for line in setup.group(1).splitlines() if line.strip()]
    assert commands == ["make install", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert all(c in ci for c in commands)


def test_readme_lists_every_command() -> None:
    import typer

    from ragged.cli import app

    readme = (ROOT / "README.md").read_text()
    for name in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        assert f"`ragged {name}" in readme, name


def test_readme_lists_every_supported_suffix() -> None:
    from ragged.ingest.loaders import SUPPORTED_SUFFIXES

    formats = (ROOT / "README.md").read_text().split("## Formats", 1)[1].split("\n## ", 1)[0]
    for suffix in SUPPORTED_SUFFIXES:
        assert f"`{suffix}" in formats or f" {suffix}" in formats, suffix


def _cells(row: str) -> int:
    """Cells of a markdown table row; a `|` inside backticks or escaped is text."""
    row = re.sub(r"`[^`]*`", "", row.replace("\\|", ""))
    return row.strip().strip("|").count("|") + 1


def test_every_markdown_table_has_as_many_cells_in_each_row_as_in_its_header() -> None:
    """A column added to the rows and not the header (docs/benchmarks.md, sixteenth pass)
    shifts every figure under the wrong heading when the table is rendered."""
    for path in [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]:
        table: list[tuple[int, str]] = []
        for number, line in enumerate([*path.read_text().splitlines(), ""], start=1):
            if line.startswith("|"):
                table.append((number, line))
                continue
            if len(table) >= 2 and re.fullmatch(r"\|[\s:|-]+\|?", table[1][1]):
                width = _cells(table[0][1])
                for row_number, row in table:
                    assert _cells(row) == width, f"{path.name}:{row_number}: not {width} cells"
            table = []
