"""ragged: ask questions of your own documents with local models."""

import sys as _sys

__version__ = "0.2.0"

# httpx, under both the ollama client and chromadb, imports its own command-line tool when it
# is imported and click, rich and pygments are installed, as they are beside ragged: 20-50 ms
# of CPU in every command that talks to Ollama or Chroma, for a tool ragged never runs. httpx
# catches the ImportError and puts a stub `main` in its place; None in sys.modules makes that
# import fail. (The `httpx` command of this environment is a separate process, untouched.)
_sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
