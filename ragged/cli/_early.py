"""Start the slow imports of a search or ask before the command line is even parsed.

`ragged search` and `ragged ask` spend most of a cold run importing chromadb (~0.5 s, more
on a busy machine) and the ollama client; Typer, the settings and the catalog come first and
need neither. Started on threads here, the imports overlap with all of that (and with each
other's waits on disk). Only the two read commands do it, told from sys.argv alone: `--help`,
`--version` and every other command import neither (a test checks --help).
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Sequence

# Global options that take a value (`ragged --home DIR search ...`): skipped to find the command.
VALUED = frozenset({"--home", "--config", "--ollama-host", "--chroma-url"})
READERS = frozenset({"search", "ask"})
MODULES = ("chromadb", "ollama")


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv, or None; e.g. ['--home', 'x', 'ask', 'q'] -> 'ask'."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in VALUED:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def start(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if command_of(argv) not in READERS or "--help" in argv:
        return
    for name in MODULES:
        if name not in sys.modules:
            threading.Thread(
                target=_quietly_import, args=(name,), daemon=True, name=f"import-{name}"
            ).start()


def _quietly_import(name: str) -> None:
    try:
        importlib.import_module(name)
    except Exception:  # the real import, where it is needed, raises it with its message
        pass
