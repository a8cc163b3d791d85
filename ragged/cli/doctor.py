"""`ragged doctor`, `ragged models` and `ragged config`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ragged.cli._common import EmbedOpt, JsonOpt, ModelOpt, State, reporting

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from ragged.doctor import Check, ModelsReport
    from ragged.llm import PullProgress

MARKS = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}


def doctor(
    ctx: typer.Context,
    fix: Annotated[
        bool,
        typer.Option(
            "--fix",
            help="Pull the missing models, make the data dir private, repair collections (and "
            "purge deleted text left to purge), then check again.",
        ),
    ] = False,
    bench: Annotated[
        bool, typer.Option("--bench", help="Also time a short generation (tokens/s).")
    ] = False,
    model: ModelOpt = None,
    embed_model: EmbedOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check Ollama, the models, GPU offload, memory, the store, the disk and permissions.

    Each problem comes with its fix.

    Exits 1 when any check fails (warnings don't). On a Mac it spots Ollama running in
    Docker, where it cannot use the Metal GPU.

    Example: ragged doctor --fix --bench
    """
    from ragged import render
    from ragged.doctor import failed, run_checks

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(chat_model=model, embed_model=embed_model)
        bars = PullBars(render.console(stderr=True))
        try:
            checks = run_checks(settings, bench=bench, fix=fix, on_pull=bars)
        finally:
            bars.close()
        if json_out:
            render.print_json(
                {
                    "ok": not failed(checks),
                    "counts": {s: sum(c.status == s for c in checks) for s in MARKS},
                    "checks": checks,
                }
            )
        else:
            _checks_table(checks)
        if failed(checks):
            raise typer.Exit(1)


def models(ctx: typer.Context, model: ModelOpt = None, json_out: JsonOpt = False) -> None:
    """Show the chat model ragged uses and why, and which models Ollama has pulled.

    --model, RAGGED_CHAT_MODEL and the config file always win over the machine's choice.

    Example: ragged models --json
    """
    from ragged import render
    from ragged.doctor import describe_models

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings(chat_model=model)
        report = describe_models(settings)
        if json_out:
            render.print_json(_models_data(report, settings.ollama_host))
        else:
            _models_text(report, settings.ollama_host)
        if report.error:
            render.error(report.error, report.hint)
            raise typer.Exit(1)


def config(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Show every setting's effective value and where it came from.

    An unset chat_model shows the model this machine will use, and why.

    Example: ragged config --json
    """
    from ragged import render
    from ragged.config import describe
    from ragged.models import resolve_chat_model

    state: State = ctx.obj
    with reporting(state):
        settings = state.settings()
        rows = describe(settings)
        if not settings.chat_model:
            # "chat_model = (empty)" says nothing; the model `ask` will use, and why, does.
            model, why = resolve_chat_model(settings)
            rows = [
                (n, model, f"this machine: {why}", h) if n == "chat_model" else (n, v, s, h)
                for n, v, s, h in rows
            ]
        if json_out:
            render.print_json(
                {
                    "config_file": str(settings.config_path),
                    "settings": {n: {"value": v, "source": s} for n, v, s, _ in rows},
                }
            )
        else:
            render.simple_table(
                ["setting", "value", "from", "meaning"],
                rows,
                title=f"config file: {settings.config_path}",
            )


# -- rendering -----------------------------------------------------------------------------


def _checks_table(checks: list[Check]) -> None:
    from rich.table import Table

    from ragged import render

    table = Table(show_header=True, header_style="bold")
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("detail", ratio=3)
    table.add_column("fix", ratio=2)
    for c in checks:
        table.add_row(MARKS[c.status], c.name, render.escape(c.detail), render.escape(c.fix or ""))
    out = render.console()
    out.print(table)
    counts = {s: sum(c.status == s for c in checks) for s in MARKS}
    out.print(
        f"{counts['ok']} ok, {counts['warn']} warning{'s' * (counts['warn'] != 1)}, "
        f"{counts['fail']} failed"
    )


def _used_for(name: str, report: ModelsReport) -> str:
    from ragged.models import full_name

    uses = []
    if full_name(name) == full_name(report.chat_model):
        uses.append("chat")
    if full_name(name) == full_name(report.embed_model):
        uses.append("embedding")
    return ", ".join(uses)


def _missing(report: ModelsReport) -> list[str]:
    from ragged.models import full_name

    if report.installed is None:
        return []
    have = {full_name(m.name) for m in report.installed}
    wanted = dict.fromkeys([report.embed_model, report.chat_model])
    return [m for m in wanted if full_name(m) not in have]


def _models_data(report: ModelsReport, host: str) -> dict[str, Any]:
    installed = None
    if report.installed is not None:
        installed = [
            {
                "name": m.name,
                "size_bytes": m.size,
                "family": m.family,
                "parameter_size": m.parameter_size,
                "used_for": _used_for(m.name, report) or None,
            }
            for m in report.installed
        ]
    return {
        "chat_model": {
            "name": report.chat_model,
            "reason": report.chat_reason,
            "source": report.chat_source,
        },
        "machine_choice": {"name": report.machine_model, "reason": report.machine_reason},
        "embed_model": report.embed_model,
        "ollama_host": host,
        "installed": installed,
        "missing": _missing(report),
        "error": report.error,
    }


def _models_text(report: ModelsReport, host: str) -> None:
    from rich.table import Table

    from ragged import render
    from ragged.disk import human_size

    out = render.console()
    esc = render.escape
    out.print(f"[bold]chat model[/]       {esc(report.chat_model)}  ({esc(report.chat_reason)})")
    if report.chat_source != "hardware":
        out.print(
            f"[bold]this machine[/]     would pick {esc(report.machine_model)}  "
            f"({esc(report.machine_reason)})"
        )
    out.print(f"[bold]embedding model[/]  {esc(report.embed_model)}")
    if report.installed is None:
        return
    table = Table(show_header=True, header_style="bold")
    for name, justify in [
        ("model", "left"),
        ("size", "right"),
        ("family", "left"),
        ("parameters", "right"),
        ("used for", "left"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for m in report.installed:
        table.add_row(
            esc(m.name),
            human_size(m.size),
            esc(m.family),
            esc(m.parameter_size),
            _used_for(m.name, report),
        )
    render.show_table(table, f"pulled into Ollama at {host}")
    for name in _missing(report):
        out.print(
            f"[red]✗[/] {esc(name)} is not pulled: `ollama pull {esc(name)}` "
            "(or `ragged doctor --fix`)"
        )


class PullBars:
    """Progress of /api/pull on stderr: a bar per layer on a terminal, status lines otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.tasks: dict[tuple[str, str], TaskID] = {}
        self.said: dict[str, str] = {}

    def __call__(self, model: str, update: PullProgress) -> None:
        from ragged import render

        if update.digest and update.total and self.console.is_terminal:
            self._bar(model, update)
            return
        # Off a terminal, byte counts would flood a log: each status (one per layer) once.
        if self.said.get(model) == update.status:
            return
        self.said[model] = update.status
        line = f"[dim]{render.escape(model)}:[/] {render.escape(update.status)}"
        if self.progress is not None:
            self.progress.console.print(line)
        else:
            self.console.print(line)

    def _bar(self, model: str, update: PullProgress) -> None:
        if self.progress is None:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.progress.start()
        key = (model, update.digest or "")
        if key not in self.tasks:
            # "sha256:1a2b3c4d5e6f..." -> "1a2b3c4d5e6f", the id `ollama pull` shows too.
            short = (update.digest or "").removeprefix("sha256:")[:12]
            self.tasks[key] = self.progress.add_task(f"{model} {short}", total=update.total)
        self.progress.update(self.tasks[key], total=update.total, completed=update.completed or 0)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
