"""Regenerate the generated parts of the docs: README's settings table and docs/cli.md.

    python scripts/gen_docs.py          # rewrite them
    python scripts/gen_docs.py --check  # exit 1 if they are stale (the test suite does this)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


sys.path.insert(0, str(ROOT))


def settings_table() -> str:
    from ragged.config import SETTING_FIELDS

    rows = ["| setting (config.toml) | environment | default | meaning |", "|---|---|---|---|"]
    for f in SETTING_FIELDS:
        env = f.metadata["env"] or ""
        if f.name == "ollama_host":
            env = "`OLLAMA_HOST` (or `RAGGED_OLLAMA_HOST`)"
        elif env:
            env = f"`{env}`"
        default = "platform data dir" if f.name == "home" else f.default
        default = "" if default is None else f"`{default}`"
        rows.append(f"| `{f.name}` | {env} | {default} | {f.metadata['help']} |")
    return "\n".join(rows)


def readme(text: str) -> str:
    block = f"{START}\n{settings_table()}\n{END}"
    return re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)


def cli_markdown() -> str:
    """The same text `typer ragged.cli utils docs` writes, from the app object itself."""
    import typer
    from typer.cli import get_docs_for_click

    from ragged.cli import app

    command = typer.main.get_command(app)
    ctx = typer.Context(command)
    docs = get_docs_for_click(obj=command, ctx=ctx, name="ragged", title="ragged command reference")
    return docs.rstrip() + "\n"


def main() -> int:
    check = "--check" in sys.argv
    targets = {
        ROOT / "README.md": readme((ROOT / "README.md").read_text()),
        ROOT / "docs" / "cli.md": cli_markdown(),
    }
    stale = [p for p, new in targets.items() if not p.exists() or p.read_text() != new]
    if check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is stale: run `make docs`")
        return 1 if stale else 0
    for p in stale:
        p.write_text(targets[p])
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
