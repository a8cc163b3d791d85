"""docker-compose.yml, Dockerfile and .dockerignore say what the docs promise.

Docker does not run in CI, so the files are checked as data, and the Chroma healthcheck
command is run with bash against a real `chroma run` server of the same version.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.chroma_server import ChromaServer, free_port

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
# How the healthcheck addresses Chroma inside its container; tests swap in their own port.
HEALTHCHECK_TARGET = "/dev/tcp/127.0.0.1/8000"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def chromadb_service(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"]["chromadb"])


@pytest.fixture(scope="module")
def ragged_service(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"]["ragged"])


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whether written as a mapping or as a list of KEY=VALUE."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def healthcheck_script(service: dict[str, Any]) -> str:
    """The shell text of a ["CMD", "/bin/bash", "-c", script] healthcheck."""
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "/bin/bash", "-c"]
    return str(test[3])


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    joined: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    pairs = []
    for line in joined:
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            pairs.append((keyword.upper(), args.strip()))
    return pairs


# --- chromadb -------------------------------------------------------------------------


def test_chromadb_image_matches_installed_client(chromadb_service: dict[str, Any]) -> None:
    # Client and server speak one HTTP API: the image tag follows the chromadb package.
    client_version = version("chromadb")
    assert client_version.startswith("1.")
    assert chromadb_service["image"] == f"chromadb/chroma:{client_version}"


def test_chromadb_port_is_8001_on_loopback(chromadb_service: dict[str, Any]) -> None:
    assert chromadb_service["ports"] == ["127.0.0.1:8001:8000"]


def test_chromadb_data_is_a_named_volume_on_data(
    compose: dict[str, Any], chromadb_service: dict[str, Any]
) -> None:
    assert "chroma-data" in compose["volumes"]
    # 1.x images persist to /data (their /config.yaml says persist_path: /data).
    assert "chroma-data:/data" in chromadb_service["volumes"]


def test_chromadb_restarts_and_has_telemetry_off(chromadb_service: dict[str, Any]) -> None:
    assert chromadb_service["restart"] == "unless-stopped"
    assert environment(chromadb_service)["ANONYMIZED_TELEMETRY"].lower() == "false"
    # No profile: a plain `docker compose up` starts Chroma.
    assert "profiles" not in chromadb_service


def test_chromadb_healthcheck_uses_only_bash(chromadb_service: dict[str, Any]) -> None:
    check = chromadb_service["healthcheck"]
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in check
    script = healthcheck_script(chromadb_service)
    # The 1.x image ships bash but none of these, so a check using them never passes.
    assert not re.search(r"\b(curl|wget|python3?)\b", script)
    assert HEALTHCHECK_TARGET in script
    assert "/api/v2/heartbeat" in script


def strings(node: Any) -> Iterator[str]:
    """Every string value in parsed YAML (what Compose interpolates; comments are not)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def test_compose_dollars_are_escaped_or_variables(compose: dict[str, Any]) -> None:
    """Compose interpolates `$`: a shell `$x` must be `$$x`, else Compose swallows it."""
    for value in strings(compose):
        stray = re.sub(r"\$\$|\$\{[A-Z_]+(:-[^}]*)?\}", "", value)
        assert "$" not in stray, value


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    with ChromaServer(tmp_path_factory.mktemp("compose") / "data") as server:
        yield server


def run_healthcheck(script: str, port: int) -> int:
    # Do what Compose does to the text ($$ -> $), then point it at the test server.
    text = script.replace("$$", "$").replace(HEALTHCHECK_TARGET, f"/dev/tcp/127.0.0.1/{port}")
    done = subprocess.run(["bash", "-c", text], capture_output=True, timeout=15, check=False)
    return done.returncode


@pytest.mark.server
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash, as the image has")
def test_chromadb_healthcheck_passes_only_on_a_live_heartbeat(
    chromadb_service: dict[str, Any], chroma: ChromaServer
) -> None:
    script = healthcheck_script(chromadb_service)
    assert chroma.port is not None
    assert run_healthcheck(script, chroma.port) == 0
    # A port with nothing behind it, and a path Chroma answers with 404, both fail.
    assert run_healthcheck(script, free_port()) != 0
    missing = script.replace("/api/v2/heartbeat", "/api/v2/no-such-thing")
    assert run_healthcheck(missing, chroma.port) != 0


# --- ragged ---------------------------------------------------------------------------


def test_ragged_only_runs_with_its_profile(ragged_service: dict[str, Any]) -> None:
    assert ragged_service["profiles"] == ["ragged"]
    assert ragged_service["build"] == "."


def test_ragged_reaches_host_ollama_and_compose_chroma(ragged_service: dict[str, Any]) -> None:
    assert "host.docker.internal:host-gateway" in ragged_service["extra_hosts"]
    env = environment(ragged_service)
    assert env["OLLAMA_HOST"] == "http://host.docker.internal:11434"
    assert env["RAGGED_CHROMA_URL"] == "http://chromadb:8000"
    assert env["RAGGED_HOME"] == "/data"


def test_ragged_volumes(compose: dict[str, Any], ragged_service: dict[str, Any]) -> None:
    volumes = ragged_service["volumes"]
    data = [v for v in volumes if v.endswith(":/data")]
    assert len(data) == 1
    assert data[0].split(":")[0] in compose["volumes"]
    assert any(v.endswith(":/docs:ro") for v in volumes)


def test_ragged_waits_for_healthy_chroma(ragged_service: dict[str, Any]) -> None:
    assert ragged_service["depends_on"] == {"chromadb": {"condition": "service_healthy"}}


# --- Dockerfile -----------------------------------------------------------------------


def test_dockerfile_installs_the_project_and_runs_ragged() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    copied = " ".join(args for keyword, args in instructions if keyword == "COPY")
    for needed in ("pyproject.toml", "README.md", "ragged"):
        assert needed in copied
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    assert any(re.search(r"\bpip install (\.|/src)(\s|$)", args) for args in runs)
    entrypoints = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoints] == [["ragged"]]


def test_dockerignore_keeps_local_state_out_but_not_the_sources() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv"} <= patterns
    assert not {"ragged", "pyproject.toml", "README.md"} & patterns


# --- ragged-app: `ragged serve` on 8000 -----------------------------------------------


@pytest.fixture(scope="module")
def app_service(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"]["ragged-app"])


def test_app_starts_with_compose_up_and_serves_on_loopback_8000(
    app_service: dict[str, Any],
) -> None:
    assert "profiles" not in app_service  # a plain `docker compose up -d` starts it
    assert app_service["build"] == "."
    assert app_service["ports"] == ["127.0.0.1:8000:8000"]
    command = app_service["command"]
    assert command[0] == "serve"
    assert command[command.index("--port") + 1] == "8000"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert app_service["restart"] == "unless-stopped"


def test_app_command_is_one_ragged_accepts(app_service: dict[str, Any]) -> None:
    """0.0.0.0 without a key is refused unless the command says why it may start."""
    from typer.testing import CliRunner

    from ragged.cli import app
    from ragged.server import check_bind

    command = app_service["command"]
    help_text = CliRunner().invoke(app, ["serve", "--help"]).output
    for flag in (arg for arg in command[1:] if arg.startswith("--")):
        assert flag in help_text
    check_bind(command[command.index("--host") + 1], None, "--allow-no-key" in command)


def test_app_reaches_host_ollama_and_compose_chroma(
    app_service: dict[str, Any], ragged_service: dict[str, Any]
) -> None:
    assert "host.docker.internal:host-gateway" in app_service["extra_hosts"]
    env = environment(app_service)
    assert env["OLLAMA_HOST"] == "http://host.docker.internal:11434"
    assert env["RAGGED_CHROMA_URL"] == "http://chromadb:8000"
    assert env["RAGGED_HOME"] == "/data"
    assert env["RAGGED_API_KEY"] == "${RAGGED_API_KEY:-}"  # passed through, empty by default
    assert app_service["depends_on"] == {"chromadb": {"condition": "service_healthy"}}
    # The app and the command line share one data dir and see the documents at one path,
    # so the app can serve the files the command line ingested.
    assert set(app_service["volumes"]) == set(ragged_service["volumes"])


def test_nothing_says_ragged_in_a_container_is_linux_only() -> None:
    for path in (COMPOSE_FILE, DOCKERFILE):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"linux(-| )only|for linux hosts", text, re.IGNORECASE), path


def app_healthcheck(service: dict[str, Any], port: int) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    return [sys.executable, *(arg.replace(":8000/", f":{port}/") for arg in test[2:])]


def test_app_healthcheck_is_on_health(app_service: dict[str, Any]) -> None:
    check = app_service["healthcheck"]
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in check
    script = " ".join(check["test"])
    assert "http://127.0.0.1:8000/health" in script
    # python:3.11-slim has no curl or wget.
    assert not re.search(r"\b(curl|wget)\b", script)


def test_app_healthcheck_passes_only_when_health_is_200(
    app_service: dict[str, Any], tmp_path: Path
) -> None:
    from tests.ollama_standin import OllamaStandIn
    from tests.ragged_server import RaggedServer, server_env

    def check(port: int) -> int:
        argv = app_healthcheck(app_service, port)
        return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode

    with OllamaStandIn(models=("nomic-embed-text:latest",)) as ollama:
        with RaggedServer(server_env(tmp_path / "up", ollama.host)) as up:
            assert check(up.port) == 0
        dead = f"http://127.0.0.1:{free_port()}"
        with RaggedServer(server_env(tmp_path / "down", dead)) as down:
            assert httpx.get(down.url + "/health", timeout=30).status_code == 503
            assert check(down.port) != 0
    assert check(free_port()) != 0
