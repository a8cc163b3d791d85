"""A real `ragged serve` in a subprocess on 127.0.0.1 and a free port, for tests and benchmarks.

with RaggedServer(env) as server:
    httpx.get(server.url + "/health")
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from tests.chroma_server import free_port

ROOT = Path(__file__).resolve().parents[1]


class RaggedServer:
    def __init__(
        self,
        env: Mapping[str, str],
        args: Sequence[str] = (),
        *,
        host: str = "127.0.0.1",
        log: Path | None = None,
    ) -> None:
        self.env = dict(env)
        self.args = list(args)
        self.host = host
        self.port = free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> RaggedServer:
        argv = [sys.executable, "-m", "ragged", "serve", "--host", self.host]
        argv += ["--port", str(self.port), *self.args]
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(argv, env=self.env, stdout=out, stderr=out, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"ragged serve exited with {self.proc.returncode}: {self.tail()}"
                )
            try:
                httpx.get(self.url + "/health", timeout=5)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"ragged serve did not answer within {timeout:g} s: {self.tail()}")

    def tail(self) -> str:
        if self.log and self.log.exists():
            return self.log.read_text(errors="replace")[-3000:]
        return "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> RaggedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_env(home: Path, ollama_host: str, **more: str) -> dict[str, str]:
    """The environment a served data dir needs: no RAGGED_* or OLLAMA_HOST from the shell."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RAGGED_") and k not in ("OLLAMA_HOST", "NO_COLOR", "FORCE_COLOR")
    }
    env.update(
        RAGGED_HOME=str(home),
        OLLAMA_HOST=ollama_host,
        RAGGED_CHAT_MODEL="llama3.2:3b",
        ANONYMIZED_TELEMETRY="False",
        PYTHONUNBUFFERED="1",
    )
    env.update(more)
    return env
