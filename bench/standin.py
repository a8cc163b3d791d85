"""The Ollama stand-in in a process of its own, recording when it was busy.

Why a separate process: the stand-in is Python, so in ragged's process its threads would
take the GIL from the code being measured. Here it gets its own interpreter, as a real
Ollama would, and the benchmark talks to it over a pipe:

    with StandInProcess(embed_delay=0.01, num_parallel=2) as server:
        ... OLLAMA_HOST=server.host ...
        server.reset(); ...; stats = server.stats()

"Busy" is reported two ways. The stand-in's own `busy_seconds` is a *sum* over requests,
so with two requests in work at once it counts every second twice. The issue's "time
Ollama was busy" is wall time during which at least one request was being worked on: the
*union* of the work intervals, which this module records and merges. The busy ratio uses
the union; slot utilisation (sum / (num_parallel * wall)) says how well the parallel slots
were kept full.
"""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals.

    e.g. (0, 2), (1, 3), (5, 6): the first two overlap into (0, 3), so 3 + 1 = 4 s,
    where the sum would say 2 + 2 + 1 = 5 s.
    """
    total = 0.0
    cur_start = cur_end = None
    for start, end in sorted(intervals):
        if cur_end is None or start > cur_end:
            if cur_end is not None and cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None and cur_start is not None:
        total += cur_end - cur_start
    return total


def _make_server(config: dict[str, Any]) -> Any:
    sys.path.insert(0, str(ROOT))
    import tests.ollama_standin as standin

    # The stand-in's vectors cost it CPU *outside* its simulated work (a real Ollama does all
    # its work inside it): printing every float as its shortest float32 form and hashing
    # every word again. Left as is, that CPU would take a core from ragged and be charged to
    # ragged's wall time. Memoising the word hash keeps the vectors identical; skipping the
    # float32 rounding changes them in the 8th digit, which nothing here depends on.
    # setattr: these are module globals looked up at call time, replaced on purpose.
    setattr(standin, "_word_hash", functools.lru_cache(maxsize=1 << 20)(standin._word_hash))  # noqa: B010
    setattr(standin, "_float32", float)  # noqa: B010

    # http.server sends a reply's headers and body in two writes; with Nagle's algorithm on,
    # the body then waits for the client's delayed ACK: +44 ms on every non-streamed reply
    # (measured: /api/show 44 ms -> 0.7 ms). Ollama's Go server sets TCP_NODELAY, as here.
    setup = standin._Handler.setup

    def setup_nodelay(handler: Any) -> None:
        setup(handler)
        handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    setattr(standin._Handler, "setup", setup_nodelay)  # noqa: B010

    class TimedStandIn(standin.OllamaStandIn):
        """Records each (start, end) of simulated work, so overlaps can be merged."""

        intervals: list[tuple[float, float]]

        def reset(self) -> None:
            super().reset()
            with self._lock:
                self.intervals = []

        def _work(self, seconds: float) -> None:
            if seconds <= 0:
                return
            start = time.perf_counter()
            super()._work(seconds)
            end = time.perf_counter()
            with self._lock:
                self.intervals.append((start, end))

    return TimedStandIn(
        embed_delay=config["embed_delay"],
        embed_request_delay=config.get("embed_request_delay", 0.0),
        token_delay=config["token_delay"],
        first_token_delay=config["first_token_delay"],
        num_parallel=config["num_parallel"],
    ).start()


def _serve(config: dict[str, Any]) -> None:
    """Child side: print the host, then answer one JSON command per stdin line."""
    server = _make_server(config)
    print(json.dumps({"host": server.host}), flush=True)
    lock = threading.Lock()
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        with lock:
            if op == "reset":
                server.reset()
                reply: dict[str, Any] = {}
            elif op == "set":
                for name, value in command.items():
                    setattr(server, name, value)
                reply = {}
            elif op == "stats":
                with server._lock:
                    intervals = list(server.intervals)
                    reply = {
                        "busy_sum": server.busy_seconds,
                        "busy_union": union_seconds(intervals),
                        "first_start": min((s for s, _ in intervals), default=None),
                        "last_end": max((e for _, e in intervals), default=None),
                        "embedded_inputs": server.embedded_inputs,
                        "peak_parallel": server.peak_parallel,
                        "requests": len(server._requests),
                    }
            elif op == "quit":
                break
            else:
                reply = {"error": f"unknown op {op}"}
        print(json.dumps(reply), flush=True)
    server.stop()


class StandInProcess:
    """Parent side: start the stand-in in a child process and drive it over a pipe."""

    def __init__(
        self,
        *,
        embed_delay: float = 0.0,
        embed_request_delay: float = 0.0,
        token_delay: float = 0.0,
        first_token_delay: float = 0.0,
        num_parallel: int = 1,
    ) -> None:
        config = {
            "embed_delay": embed_delay,
            "embed_request_delay": embed_request_delay,
            "token_delay": token_delay,
            "first_token_delay": first_token_delay,
            "num_parallel": num_parallel,
        }
        self.config = config
        self._proc = subprocess.Popen(
            [sys.executable, __file__, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.host: str = self._read()["host"]

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the Ollama stand-in process exited")
        return dict(json.loads(line))

    def _call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def reset(self) -> None:
        self._call("reset")

    def set(self, **attrs: Any) -> None:
        """Change a live knob (embed_delay, embed_request_delay, token_delay, first_token_delay)."""
        self._call("set", **attrs)
        self.config.update(attrs)

    def stats(self) -> dict[str, Any]:
        return self._call("stats")

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> StandInProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
