"""Usage errors, --help, shell completion, --json everywhere, and the small commands a new
user tries first (config, list filters, reset --json)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ragged.cli import app
from ragged.cli._common import Mode
from ragged.cli.manage import Status
from ragged.config import MODES
from ragged.ingest.loaders import SUPPORTED_SUFFIXES
from ragged.manage import STATUSES
from ragged.models import TIERS
from tests.ollama_standin import OllamaStandIn

RAGGED = [sys.executable, "-m", "ragged"]
COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]
# Commands that hold a conversation or a server rather than print one result.
INTERACTIVE = {"chat", "serve"}


def run(runner: CliRunner, *args: str, code: int = 0, input: str | None = None):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args), catch_exceptions=code != 0, input=input)
    assert result.exit_code == code, result.output
    return result


# -- usage errors: exit 2, naming what is allowed ------------------------------------------


@pytest.mark.parametrize("command", ["search", "ask"])
def test_an_unknown_mode_is_a_usage_error_listing_the_modes(
    runner: CliRunner, command: str
) -> None:
    result = run(runner, command, "capybara", "--mode", "semantic", code=2)
    assert "'semantic' is not one of 'hybrid', 'dense', 'lexical'" in result.stderr


@pytest.mark.parametrize("command", ["search", "ask"])
@pytest.mark.parametrize("k", ["0", "-1"])
def test_top_k_below_one_is_a_usage_error(runner: CliRunner, command: str, k: str) -> None:
    result = run(runner, command, "capybara", "-k", k, code=2)
    assert "'-k' / '--top-k'" in result.stderr and "greater than or equal to 1" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--status", "broken"],
        ["ingest", ".", "--chunk-tokens", "8"],
        ["ingest", ".", "--embed-batch", "0"],
        ["ingest", ".", "--concurrency", "0"],
    ],
)
def test_other_bad_values_are_usage_errors(runner: CliRunner, args: list[str]) -> None:
    run(runner, *args, code=2)


def test_the_choices_match_the_core() -> None:
    assert tuple(m.value for m in Mode) == MODES
    assert tuple(s.value for s in Status) == STATUSES


# -- --help -----------------------------------------------------------------------------------


def test_help_has_readable_metavars() -> None:
    for name in COMMANDS:
        text = CliRunner().invoke(app, [name, "--help"]).output
        assert "<list[" not in text and "<str>" not in text and "<path>" not in text, name
    ingest = CliRunner().invoke(app, ["ingest", "--help"]).output
    assert "ingest [OPTIONS] [PATH]...\n" in ingest
    assert "  PATH...  Files or folders to ingest" in ingest
    assert "--include GLOB" in ingest and "--collection NAME" in ingest
    search = CliRunner().invoke(app, ["search", "--help"]).output
    assert "--mode <hybrid|dense|lexical>" in search and "-k, --top-k N" in search


def test_ingest_help_lists_the_supported_file_types() -> None:
    text = CliRunner().invoke(app, ["ingest", "--help"]).output
    listed = text.split("Supported file types:", 1)[1]
    assert {word.rstrip(".;,()") for word in listed.split() if word.startswith(".")} == (
        SUPPORTED_SUFFIXES
    )


def test_help_does_not_load_the_loaders() -> None:
    """The file types are looked up only when `ingest --help` shows them."""
    code = (
        "import sys; from typer.testing import CliRunner; from ragged.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert 'ingest' in r.output; "
        "print(sorted(m for m in ('ragged.ingest', 'ragged.config', 'rich') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_command_that_prints_a_result_takes_json() -> None:
    for name, command in COMMANDS.items():
        if name in INTERACTIVE:
            continue
        assert any("--json" in p.opts for p in command.params), name


# -- shell completion ---------------------------------------------------------------------------


def complete(env: dict[str, str], shell: str, line: str) -> list[str]:
    """What the shell would offer at the end of `line`, asked the way the installed script asks."""
    words = line.split(" ")
    extra = (
        {"COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
        if shell == "bash"
        else {"_TYPER_COMPLETE_ARGS": line, "_TYPER_COMPLETE_FISH_ACTION": "get-args"}
    )
    done = subprocess.run(
        [sys.executable, "-m", "ragged"],
        env={**env, "_RAGGED_COMPLETE": f"complete_{shell}", **extra},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    if shell == "zsh":  # _arguments '*: :(("hybrid" "dense" ...))' or _describe lines
        return [v.split(":")[0] for v in re.findall(r'"((?:[^"\\]|\\.)*)"', done.stdout)]
    return [line.split("\t")[0] for line in done.stdout.split()]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_exist_for_each_shell(shell: str) -> None:
    done = subprocess.run(
        [*RAGGED, "--show-completion", shell],
        env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "_RAGGED_COMPLETE" in done.stdout and f"complete_{shell}" in done.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_offers_modes_and_collections(
    shell: str, ollama: OllamaStandIn, docs: Path, env: Path
) -> None:
    environ = {**os.environ, "OLLAMA_HOST": ollama.host}
    for name in ("papers", "notes"):
        done = subprocess.run(
            [*RAGGED, "ingest", str(docs / "notes.txt"), "-c", name, "--quiet"],
            env=environ,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    modes = complete(environ, shell, "ragged ask --mode ")
    assert {"hybrid", "dense", "lexical"} <= set(modes), modes
    assert "papers" in complete(environ, shell, "ragged list -c pa")
    offered = complete(environ, shell, "ragged search --collection ")
    assert {"notes", "papers"} <= set(offered), offered
    # --home on the command line points completion at another data dir, with none there.
    assert complete(environ, shell, f"ragged --home {env.parent / 'other'} list -c ") == []


# -- config, list, reset ---------------------------------------------------------------------


def test_config_shows_the_chat_model_this_machine_will_use(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAGGED_CHAT_MODEL")
    data = json.loads(run(runner, "config", "--json").stdout)
    chat = data["settings"]["chat_model"]
    assert chat["value"] in [model for _, model in TIERS]
    assert chat["source"].startswith("this machine: ") and "tier" in chat["source"]
    table = run(runner, "config").stdout
    row = next(line for line in table.splitlines() if "chat_model" in line)
    assert chat["value"] in row and "this machine" in row


def test_config_shows_a_chosen_chat_model_as_chosen(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGGED_CHAT_MODEL", "mistral:7b")
    chat = json.loads(run(runner, "config", "--json").stdout)["settings"]["chat_model"]
    assert chat == {"value": "mistral:7b", "source": "env RAGGED_CHAT_MODEL"}


def test_list_filters_by_pattern_and_status_with_iso_times(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 nonsense")
    run(runner, "ingest", str(docs), "--quiet", code=1)
    everything = json.loads(run(runner, "list", "--json").stdout)
    assert len(everything) == 6
    for source in everything:
        if source["status"] == "ok":
            assert datetime.fromisoformat(source["ingested_at"]).utcoffset() is not None
    pdfs = json.loads(run(runner, "list", "*.pdf", "--json").stdout)
    assert sorted(Path(s["path"]).name for s in pdfs) == ["broken.pdf", "report.pdf"]
    failed = json.loads(run(runner, "list", "--status", "failed", "--json").stdout)
    assert [Path(s["path"]).name for s in failed] == ["broken.pdf"] and failed[0]["reason"]
    assert "broken.pdf" in run(runner, "list", "--status", "failed").stdout
    none = run(runner, "list", "*.docx")
    assert "no matching documents" in none.stdout


def test_reset_prints_json(runner: CliRunner, ollama: OllamaStandIn, docs: Path) -> None:
    run(runner, "ingest", str(docs), "--quiet")
    data = json.loads(run(runner, "reset", "--yes", "--json").stdout)
    assert data == {"collection": "default", "deleted": True, "files": 5}


def test_uncited_sources_are_counted_and_json_has_them_all(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    run(runner, "ingest", str(docs), "--quiet")
    ollama.answer_override = "Capybaras are the largest living rodents [1]."
    out = run(runner, "ask", "capybara rodent ferry lighthouse", "-k", "4").stdout
    sources = out.split("Sources", 1)[1].splitlines()
    listed = [line for line in sources if line.strip().startswith("[")]
    assert len(listed) == 1 and listed[0].strip().startswith("[1]")
    data = json.loads(
        run(runner, "ask", "capybara rodent ferry lighthouse", "-k", "4", "--json").stdout
    )
    uncited = [s for s in data["sources"] if not s["cited"]]
    assert uncited and f"{len(uncited)} more passage" in out and "not cited" in out
