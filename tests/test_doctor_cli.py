"""`ragged doctor` and `ragged models` end to end: CliRunner -> real ollama client -> stand-in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.cli import app
from ragged.doctor import describe_host
from ragged.hardware import GPU, GiB, Host, detect_host
from tests.ollama_standin import OllamaStandIn

M4_MAX_64 = Host(
    "darwin", 64 * GiB, "Apple M4 Max", True, False, "Metal 3", (GPU("Apple M4 Max", None),)
)
EVERY_CHECK = (
    "host",
    "ollama",
    "ollama location",
    "embedding model",
    "embedding format",
    "chat model",
    "gpu offload",
    "context",
    "memory",
    "chroma",
    "disk",
    "permissions",
    "tokenizer",
    "collections",
)


def run(runner: CliRunner, *args: str, code: int = 0):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args), catch_exceptions=code != 0)
    assert result.exit_code == code, result.output
    return result


def pretend(monkeypatch: pytest.MonkeyPatch, host: Host) -> None:
    """Make detect_host describe `host` instead of this machine."""
    monkeypatch.setattr("ragged.hardware.detect_host", lambda *a, **k: host)


def test_doctor_reports_this_machine_truthfully(runner: CliRunner, ollama: OllamaStandIn) -> None:
    result = run(runner, "doctor")
    out = result.stdout
    for name in EVERY_CHECK:
        assert name in out
    assert f"reachable at http://{ollama.host}, version 0.12.6" in out
    assert "nomic-embed-text pulled" in out and "llama3.2:3b pulled" in out
    assert "100% GPU" in out  # what the stand-in's /api/ps says
    assert "0 failed" in out
    data = json.loads(run(runner, "doctor", "--json").stdout)
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["host"]["detail"] == describe_host(detect_host())
    assert checks["ollama"]["data"]["version"] == "0.12.6"


def test_doctor_json_shape(runner: CliRunner, ollama: OllamaStandIn) -> None:
    data = json.loads(run(runner, "doctor", "--json", "--bench").stdout)
    assert data["ok"] is True
    assert set(data["counts"]) == {"ok", "warn", "fail"}
    assert sum(data["counts"].values()) == len(data["checks"])
    names = [c["name"] for c in data["checks"]]
    assert names == [*EVERY_CHECK[:9], "benchmark", *EVERY_CHECK[9:]]
    for check in data["checks"]:
        assert set(check) == {"name", "status", "detail", "fix", "data"}
        assert check["status"] in ("ok", "warn", "fail")
        assert isinstance(check["data"], dict)
    bench = next(c for c in data["checks"] if c["name"] == "benchmark")
    assert bench["data"]["tokens_per_s"] > 0


def test_missing_model_then_fix_then_clean(runner: CliRunner, ollama: OllamaStandIn) -> None:
    ollama.remove_model("llama3.2:3b")
    missing = run(runner, "doctor", code=1)
    assert "ollama pull llama3.2:3b" in missing.stdout
    assert "1 failed" in missing.stdout
    checks = json.loads(run(runner, "doctor", "--json", code=1).stdout)["checks"]
    assert [c["name"] for c in checks if c["status"] == "fail"] == ["chat model"]

    fixed = run(runner, "doctor", "--fix")
    assert "llama3.2:3b: pulling manifest" in fixed.stderr
    assert "llama3.2:3b: success" in fixed.stderr
    assert "nomic-embed-text" not in fixed.stderr  # it was there already
    assert "just now" in fixed.stdout
    assert "llama3.2:3b" in ollama.installed
    run(runner, "doctor")


def test_fix_pulls_the_embedding_model_too(runner: CliRunner, ollama: OllamaStandIn) -> None:
    ollama.remove_model("nomic-embed-text")
    ollama.remove_model("llama3.2:3b")
    fixed = run(runner, "doctor", "--fix")
    assert "nomic-embed-text: success" in fixed.stderr and "llama3.2:3b: success" in fixed.stderr


def test_ollama_down_fails_without_traceback(runner: CliRunner, ollama_down: str) -> None:
    result = run(runner, "doctor", code=1)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert f"Ollama isn't running at http://{ollama_down}" in result.stdout
    assert "ollama serve" in result.stdout
    data = json.loads(run(runner, "doctor", "--json", code=1).stdout)
    assert data["ok"] is False
    assert [c["name"] for c in data["checks"] if c["status"] == "fail"] == ["ollama"]


def test_docker_trap_on_a_mac(
    runner: CliRunner, ollama: OllamaStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend(monkeypatch, M4_MAX_64)
    ollama.size_vram_fraction = 0.0  # what Ollama in Docker Desktop reports on a Mac
    data = json.loads(run(runner, "doctor", "--json", code=1).stdout)
    gpu = next(c for c in data["checks"] if c["name"] == "gpu offload")
    assert gpu["status"] == "fail" and "Metal-in-Docker trap" in gpu["detail"]
    assert "host.docker.internal:11434" in gpu["fix"]
    table = run(runner, "doctor", code=1).stdout
    assert "CPU only" in table and "Metal-in-Docker" in table


def test_doctor_model_flag_wins(runner: CliRunner, ollama: OllamaStandIn) -> None:
    data = json.loads(run(runner, "doctor", "--json", "-m", "mistral:7b", code=1).stdout)
    chat = next(c for c in data["checks"] if c["name"] == "chat model")
    assert chat["data"]["model"] == "mistral:7b" and chat["data"]["reason"] == "set by flag"
    assert "ollama pull mistral:7b" in chat["fix"]


def test_models_shows_the_choice_and_why(runner: CliRunner, ollama: OllamaStandIn) -> None:
    out = run(runner, "models").stdout
    assert "llama3.2:3b" in out and "set by env RAGGED_CHAT_MODEL" in out
    assert "nomic-embed-text:latest" in out and "embedding" in out
    assert "would pick" in out  # the machine's own choice, shown since the env overrode it


def test_models_flag_beats_env(runner: CliRunner, ollama: OllamaStandIn) -> None:
    data = json.loads(run(runner, "models", "--model", "mistral:7b", "--json").stdout)
    assert data["chat_model"] == {"name": "mistral:7b", "reason": "set by flag", "source": "flag"}
    assert data["missing"] == ["mistral:7b"]
    names = {m["name"]: m["used_for"] for m in data["installed"]}
    assert names == {"nomic-embed-text:latest": "embedding", "llama3.2:3b": None}


def test_models_config_file_beats_the_machine(
    runner: CliRunner, ollama: OllamaStandIn, monkeypatch: pytest.MonkeyPatch, env: Path
) -> None:
    monkeypatch.delenv("RAGGED_CHAT_MODEL")
    pretend(monkeypatch, M4_MAX_64)
    env.mkdir(parents=True, exist_ok=True)
    (env / "config.toml").write_text('chat_model = "mistral:7b"\n')
    data = json.loads(run(runner, "models", "--json").stdout)
    assert data["chat_model"]["name"] == "mistral:7b"
    assert data["chat_model"]["source"].endswith("config.toml")
    assert data["machine_choice"]["name"] == "qwen2.5:32b"


def test_models_machine_choice(
    runner: CliRunner, ollama: OllamaStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAGGED_CHAT_MODEL")
    pretend(monkeypatch, M4_MAX_64)
    data = json.loads(run(runner, "models", "--json").stdout)
    assert data["chat_model"]["name"] == "qwen2.5:32b"
    assert data["chat_model"]["source"] == "hardware"
    assert "Apple M4 Max with 64 GB unified memory" in data["chat_model"]["reason"]
    out = run(runner, "models").stdout
    assert "qwen2.5:32b is not pulled" in out and "ragged doctor --fix" in out


def test_models_with_ollama_down(runner: CliRunner, ollama_down: str) -> None:
    result = run(runner, "models", code=1)
    assert "llama3.2:3b" in result.stdout  # the choice is still shown
    assert "isn't running" in result.stderr and "Traceback" not in result.output


def test_help_stays_light() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from ragged.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert 'doctor' in r.output and 'models' in r.output; "
        "print(sorted(m for m in ('ollama', 'chromadb', 'tiktoken', 'pypdf') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
