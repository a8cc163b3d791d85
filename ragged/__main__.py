"""`python -m ragged`, and `main`, the `ragged` console script's entry point.

PDFs are parsed in spawned worker processes, and a spawned process first re-runs the script
that started its parent, as `__mp_main__`. The console script imports its entry point at its
top; were that `ragged.cli`, every worker would load Typer and every command (~15 ms of CPU
on a quiet machine) before its first page. This module stays light and imports the CLI only when called. (Run
with `-m`, multiprocessing skips a `__main__` module altogether.)
"""


def main() -> None:
    from ragged.cli import app

    app(prog_name="ragged")


if __name__ == "__main__":
    main()
