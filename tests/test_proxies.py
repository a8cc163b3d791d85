"""Proxies named in the environment (http_proxy, https_proxy, all_proxy, no_proxy), through
the real CLI.

Found on 0.2: with a proxy in the environment that is down (a company's, reachable only on
its VPN), an Ollama running on this machine was reported as "Ollama isn't running" and
`ollama serve` given as the fix; httpx sent even 127.0.0.1 through the proxy. Go's clients,
Ollama's own among them, never proxy a loopback address.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.cli import app
from tests.chroma_server import free_port
from tests.ollama_standin import OllamaStandIn


@pytest.fixture
def proxy_down() -> str:
    """A proxy URL nothing listens at."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
def test_ollama_on_this_machine_is_reached_directly_whatever_proxy_is_set(
    variable: str,
    runner: CliRunner,
    ollama: OllamaStandIn,
    proxy_down: str,
    docs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, proxy_down)
    for n, host in enumerate((ollama.host, ollama.host.replace("127.0.0.1", "localhost"))):
        monkeypatch.setenv("OLLAMA_HOST", host)
        monkeypatch.setenv("RAGGED_HOME", str(tmp_path / f"home-{n}"))
        result = runner.invoke(app, ["ingest", str(docs), "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["pending"] == 0 and report["embedded"] == report["chunks"] > 0


def test_a_proxy_that_is_down_is_named_not_ollama(
    runner: CliRunner, proxy_down: str, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ollama on another machine, through a proxy that does not answer: the proxy is what
    could not be reached, and `ollama serve` was the wrong fix."""
    monkeypatch.setenv("OLLAMA_HOST", "http://gpu-box.invalid:11434")
    monkeypatch.setenv("http_proxy", proxy_down)
    result = runner.invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 1
    assert (
        f"cannot reach the proxy {proxy_down} (http_proxy) on the way to Ollama at "
        "http://gpu-box.invalid:11434" in result.stderr
    )
    assert "no_proxy" in result.stderr and "ollama serve" not in result.stderr
    assert "await embeddings" in result.stderr and "Traceback" not in result.output

    # Listed in no_proxy, the host is reached directly: whatever fails then is not the proxy.
    monkeypatch.setenv("no_proxy", "gpu-box.invalid")
    direct = runner.invoke(app, ["ingest", str(docs)])
    assert direct.exit_code == 1
    assert "proxy" not in direct.stderr


def test_a_proxys_password_is_never_printed(
    runner: CliRunner, proxy_down: str, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy URL may carry a user and password (http://user:pass@host:port): naming the
    proxy must not put the password on the terminal, or in a log that collects stderr."""
    with_password = proxy_down.replace("http://", "http://alice:s3cret-Pa55@")
    monkeypatch.setenv("OLLAMA_HOST", "http://gpu-box.invalid:11434")
    monkeypatch.setenv("http_proxy", with_password)
    result = runner.invoke(app, ["ingest", str(docs), "--json"])
    assert result.exit_code == 1
    shown = proxy_down.replace("http://", "http://alice:***@")
    assert f"cannot reach the proxy {shown} (http_proxy)" in result.stderr
    assert "s3cret" not in result.output

    monkeypatch.setenv("RAGGED_CHROMA_URL", "http://chroma.invalid:8000")
    listed = runner.invoke(app, ["collections"])
    assert f"cannot reach the proxy {shown} (http_proxy)" in listed.stderr
    assert "s3cret" not in listed.output


def test_a_chroma_server_behind_a_proxy_that_is_down_names_the_proxy(
    runner: CliRunner, proxy_down: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chromadb's own HTTP client follows the same variables; here too the proxy is named,
    and no_proxy is the way round it."""
    monkeypatch.setenv("RAGGED_CHROMA_URL", "http://chroma.invalid:8000")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # not for http:// URLs
    monkeypatch.setenv("HTTP_PROXY", proxy_down)
    result = runner.invoke(app, ["collections"])
    assert result.exit_code == 1
    assert (
        f"cannot reach the proxy {proxy_down} (HTTP_PROXY) on the way to the Chroma server at "
        "http://chroma.invalid:8000" in result.stderr
    )
    assert "no_proxy" in result.stderr and "Traceback" not in result.output


def test_a_chroma_url_with_a_password_is_refused_without_printing_it(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chromadb sends no user or password from the URL (ragged sends RAGGED_CHROMA_TOKEN), yet
    every error about the server printed the URL whole, password included."""
    monkeypatch.setenv("RAGGED_CHROMA_URL", "http://alice:s3cret-Pa55@127.0.0.1:9")
    for command in (["collections"], ["config"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, result.output
        assert "chroma_url must be a URL without a user or password" in result.stderr
        assert "RAGGED_CHROMA_TOKEN" in result.stderr
        assert "s3cret" not in result.output and "http://alice:***@127.0.0.1:9" in result.stderr
