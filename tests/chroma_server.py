"""A real `chroma run` server in a subprocess, for tests that reach Chroma over HTTP."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Self

# Chroma 1.x serves only the v2 API; /api/v1/heartbeat answers 410 Gone.
HEARTBEAT_PATH = "/api/v2/heartbeat"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 20

# The server is on loopback: a developer's HTTP(S)_PROXY must not intercept the heartbeat.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ChromaServerError(RuntimeError):
    """The server could not be found, did not start, or is not running."""


def find_chroma() -> str:
    """The `chroma` command of this interpreter's environment, else the one on PATH."""
    # Next to sys.executable first, so the server matches the chromadb client being tested.
    name = "chroma.exe" if os.name == "nt" else "chroma"
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which("chroma")
    if found:
        return found
    raise ChromaServerError(
        f"no `chroma` command beside {sys.executable} or on PATH; install chromadb into this venv"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ChromaServer:
    """`chroma run` on a data directory, stopped and restarted at will.

    Args:
        path: the data directory (created if missing); the log goes beside it,
            to `<path.parent>/<path.name>.chroma.log`.
        host: the address to listen on.
        port: the port; None picks a free one at the first start and keeps it for restarts,
            so a client made before a restart still points at the right place.
    """

    def __init__(
        self,
        path: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.path = Path(path)
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.log_path = self.path.parent / f"{self.path.name}.chroma.log"
        # Seconds from spawning the process to the first good heartbeat, for the last start.
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0

    @property
    def url(self) -> str:
        if self.port is None:
            raise ChromaServerError("the Chroma server has no port until it is started")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def heartbeat(self, timeout: float = 1.0) -> bool:
        """True when the server answers its heartbeat with 200."""
        try:
            with _OPENER.open(self.url + HEARTBEAT_PATH, timeout=timeout) as resp:
                return int(resp.status) == 200
        except (OSError, http.client.HTTPException):
            # OSError covers refused connections (URLError), resets and timeouts;
            # HTTPException a port held by something that does not speak HTTP.
            return False

    def start(self) -> Self:
        """Spawn `chroma run` and wait until its heartbeat answers."""
        if self.running:
            raise ChromaServerError(f"the Chroma server at {self.url} is already running")
        self.path.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            # A small race (another process could take the port before chroma binds it) is
            # caught below: chroma then prints "Address ... is not available" and exits.
            self.port = free_port(self.host)
        command, env = self.command(), self.environ()
        self._log = self.log_path.open("ab")
        # Appending keeps earlier runs' output; the tail in an error shows only this run.
        self._log_start = self._log.tell()
        began = time.monotonic()
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = began + self.startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._close_log()
                self._proc = None
                # chroma exits with 0 even when the port is taken, so any exit is a failure.
                raise ChromaServerError(
                    f"`chroma run` exited (code {code}) before {self.url} answered; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if self.heartbeat(timeout=0.5):
                self.startup_seconds = time.monotonic() - began
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise ChromaServerError(
                    f"Chroma did not answer {self.url}{HEARTBEAT_PATH} within "
                    f"{self.startup_timeout:.0f}s; last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def command(self) -> list[str]:
        return [
            find_chroma(),
            "run",
            "--path",
            str(self.path),
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]

    def environ(self) -> dict[str, str]:
        # The 1.x server is Rust and sends no product telemetry (only OpenTelemetry traces,
        # and only when its config file names an endpoint; `--path` and a config file are
        # mutually exclusive, so we pass flags). ANONYMIZED_TELEMETRY is still set in case a
        # later version reads it. NO_COLOR keeps ANSI escapes out of the log.
        return {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Ask the server to shut down (SIGTERM), and kill it if it takes too long."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_log()

    def kill(self) -> None:
        """End the server abruptly (SIGKILL on POSIX), as a crash or a pulled plug would."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._close_log()

    def freeze(self) -> None:
        """Stop the server's process (SIGSTOP): it keeps its port and answers nothing."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines this run wrote to the log."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._log_start)
                text = fh.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        kept = [line for line in text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:]) or "(log is empty)"

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ChromaTokenServer(ChromaServer):
    """Chroma's own server with its token authentication on (CHROMA_SERVER_AUTHN_*).

    `chroma run` (Rust) has no authentication in Chroma 1.x; Chroma's Python server, in the
    same chromadb package and speaking the same v2 API, has: every request must carry
    `Authorization: Bearer <token>` (or X-Chroma-Token), else 403. The heartbeat is exempt.
    """

    def __init__(self, path: Path, token: str, **kwargs: object) -> None:
        super().__init__(path, **kwargs)  # type: ignore[arg-type]
        self.token = token

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "chromadb.app:app",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]

    def environ(self) -> dict[str, str]:
        return {
            **super().environ(),
            "CHROMA_SERVER_AUTHN_PROVIDER": (
                "chromadb.auth.token_authn.TokenAuthenticationServerProvider"
            ),
            "CHROMA_SERVER_AUTHN_CREDENTIALS": self.token,
            "IS_PERSISTENT": "TRUE",
            "PERSIST_DIRECTORY": str(self.path),
        }
