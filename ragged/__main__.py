"""`python -m ragged`, and `main`, the `ragged` console script's entry point.

PDFs are parsed in spawned worker processes, and a spawned process first re-runs the script
that started its parent, as `__mp_main__`. The console script imports its entry point at its
top; were that `ragged.cli`, every worker would load Typer and every command (~15 ms of CPU
on a quiet machine) before its first page. This module stays light and imports the CLI only when called. (Run
with `-m`, multiprocessing skips a `__main__` module altogether.)
"""

import gc


def main() -> None:
    from ragged.cli import app

    try:
        app(prog_name="ragged")
    finally:
        # Python's last act is a garbage collection of every object left, and chromadb's
        # import leaves ~90 ms of them: that much of every command that opened the store,
        # after its last output. Frozen objects are skipped by that collection; atexit
        # handlers still run, output is still flushed, the OS frees the memory, and nothing
        # of ragged's or Chroma's is written then (closed and committed before this; see
        # docs/benchmarks.md, ninth pass).
        gc.freeze()


if __name__ == "__main__":
    main()
