"""`make bench-serve`: `ragged serve` under concurrent clients, and the chat warm path.

Everything runs through ragged's real code against the Ollama stand-in in a process of its
own, with a fixed cost per embedded input, before the first token and per token, and as many
parallel slots as there are clients, so no request ever waits for the model behind another.
The model's time for each request is then known exactly (embed + first token + tokens x
per-token), and what is left of the latency is ragged's own overhead:

    overhead     = latency - model time         (HTTP, JSON, retrieval, packing, threads)
    TTFT beyond  = time to the first token - (embed + first-token delay)

    .venv/bin/python bench/serve.py                     # 20 clients, 200 requests
    .venv/bin/python bench/serve.py --clients 5 --requests 20 --json

Sections: "serve, 1 client" (the warm path, one request at a time), "serve, N clients" (N at
once, bounded: each client sends its next request when its last one is done) and "chat warm
path" (ragged.conversation.reply, what `ragged chat` runs per question, in this process).
Requests rotate over POST /ask (server-sent events), POST /v1/chat/completions streamed and
not streamed. Errors (a status other than 200, an error event, no final event) must be 0.
See docs/benchmarks.md ("Serving").
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.standin import StandInProcess  # noqa: E402
from bench.timing import machine, percentile  # noqa: E402

CHAT_MODEL = "llama3.2:3b"
TTFT_BEYOND_P50_MS = 50.0  # the warm path's target: time to first token beyond the model's
KINDS = ("ask-sse", "v1-stream", "v1-json")
PIECE = re.compile(r"\s*\S+")  # the stand-in streams one token per word, like this
QUESTIONS = (
    "Which port does the Foxtrot daemon listen on?",
    "What is the largest living rodent?",
    "How long can capybaras stay underwater?",
    "Where does the Foxtrot configuration file live?",
    "How often does Foxtrot synchronise by default?",
    "Why are wombat droppings cube-shaped?",
    "How do I start Foxtrot on Linux?",
)


@dataclass
class Sample:
    kind: str
    ok: bool
    latency_s: float
    ttft_s: float | None = None
    tokens: int = 0
    error: str = ""


@dataclass
class Costs:
    """The stand-in's fixed costs, so the model's share of each request is known."""

    embed: float
    first_token: float
    token: float

    def model_time(self, tokens: int) -> float:
        return self.embed + self.first_token + tokens * self.token

    def model_ttft(self) -> float:
        return self.embed + self.first_token


@dataclass
class Results:
    rows: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, section: str, measure: str, value: str, target: str = "") -> None:
        self.rows.append({"section": section, "measure": measure, "value": value, "target": target})


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- one request of each kind ---------------------------------------------------------------


def request(client: Any, kind: str, question: str) -> Sample:
    """Send one request and time it; the first token is the first piece of answer text."""
    started = time.perf_counter()
    first: float | None = None
    text: list[str] = []
    try:
        if kind == "v1-json":
            response = client.post(
                "/v1/chat/completions",
                json={
                    "model": "ragged:default",
                    "messages": [{"role": "user", "content": question}],
                },
            )
            if response.status_code != 200:
                return Sample(kind, False, time.perf_counter() - started, error=response.text[:200])
            content = response.json()["choices"][0]["message"]["content"]
            answer = content.split("\n\nSources:\n")[0]
            return Sample(
                kind, True, time.perf_counter() - started, None, len(PIECE.findall(answer))
            )
        if kind == "ask-sse":
            url, body = "/ask", {"question": question, "stream": True}
        else:
            url = "/v1/chat/completions"
            messages = [{"role": "user", "content": question}]
            body = {"model": "ragged:default", "messages": messages, "stream": True}
        finished = False
        with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                response.read()
                return Sample(kind, False, time.perf_counter() - started, error=response.text[:200])
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    continue
                if not line.startswith("data: "):
                    continue
                payload = line[6:]
                if payload == "[DONE]":
                    finished = True
                    break
                data = json.loads(payload)
                if event == "error" or "error" in data:
                    return Sample(kind, False, time.perf_counter() - started, error=payload[:200])
                piece = None
                if kind == "ask-sse" and event == "token":
                    piece = data["text"]
                elif kind == "ask-sse" and event == "done":
                    finished = True
                elif kind == "v1-stream" and data["choices"]:
                    piece = data["choices"][0]["delta"].get("content")
                if piece:
                    if first is None:
                        first = time.perf_counter() - started
                    text.append(piece)
        if not finished:
            return Sample(kind, False, time.perf_counter() - started, error="no final event")
        answer = "".join(text).split("\n\nSources:\n")[0]
        return Sample(kind, True, time.perf_counter() - started, first, len(PIECE.findall(answer)))
    except Exception as exc:  # a dropped connection, a timeout: an error to count, not a crash
        return Sample(kind, False, time.perf_counter() - started, error=repr(exc)[:200])


def drive(url: str, clients: int, total: int, deadline_s: float) -> tuple[list[Sample], float]:
    """`clients` threads, each with its own connection, until `total` requests are sent."""
    import httpx

    work: Iterator[tuple[str, str]] = zip(
        itertools.cycle(KINDS), itertools.cycle(QUESTIONS), strict=False
    )
    plan = list(itertools.islice(work, total))
    lock = threading.Lock()
    samples: list[Sample] = []
    stop_at = time.monotonic() + deadline_s

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            while time.monotonic() < stop_at:
                with lock:
                    if not plan:
                        return
                    kind, question = plan.pop()
                sample = request(client, kind, question)
                with lock:
                    samples.append(sample)

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return samples, time.perf_counter() - started


def summarise(
    results: Results, section: str, samples: Sequence[Sample], wall: float, costs: Costs
) -> dict[str, Any]:
    ok = [s for s in samples if s.ok]
    errors = [s for s in samples if not s.ok]
    overhead = [s.latency_s - costs.model_time(s.tokens) for s in ok]
    beyond = [s.ttft_s - costs.model_ttft() for s in ok if s.ttft_s is not None]
    latency = [s.latency_s for s in ok]
    results.add(section, "requests / errors", f"{len(samples)} / {len(errors)}", "0 errors")
    results.add(section, "throughput", f"{len(samples) / wall:.1f} req/s")
    if latency:
        results.add(
            section,
            "latency p50 / p95",
            f"{ms(percentile(latency, 50))} / {ms(percentile(latency, 95))}",
        )
        results.add(
            section,
            "ragged overhead p50 / p95",
            f"{ms(percentile(overhead, 50))} / {ms(percentile(overhead, 95))}",
        )
    if beyond:
        results.add(
            section,
            "TTFT beyond the model p50 / p95",
            f"{ms(percentile(beyond, 50))} / {ms(percentile(beyond, 95))}",
            f"p50 <= {TTFT_BEYOND_P50_MS:.0f} ms" if "1 client" in section else "",
        )
    return {
        "requests": len(samples),
        "errors": len(errors),
        "error_examples": [s.error for s in errors[:3]],
        "wall_s": wall,
        "overhead_s": overhead,
        "ttft_beyond_s": beyond,
        "latency_s": latency,
    }


# -- the chat warm path ---------------------------------------------------------------------


def chat_warm_path(
    results: Results, home: Path, host: str, costs: Costs, turns: int
) -> dict[str, Any]:
    """What `ragged chat` does per question (ragged.conversation.reply), in a warm process."""
    os.environ.update(RAGGED_HOME=str(home), OLLAMA_HOST=host, RAGGED_CHAT_MODEL=CHAT_MODEL)
    from ragged.config import load_settings
    from ragged.conversation import reply
    from ragged.index import open_index
    from ragged.llm import connect

    settings = load_settings()
    llm = connect(settings)
    beyond: list[float] = []
    with open_index(settings) as index:
        for i in range(turns + 2):
            result = reply(QUESTIONS[i % len(QUESTIONS)], [], index, llm)
            ttft = result.timings.get("turn_first_token_s")
            if i >= 2 and ttft is not None:  # the first two warm the caches
                beyond.append(ttft - costs.model_ttft())
    results.add(
        "chat warm path",
        "TTFT beyond the model p50 / p95",
        f"{ms(percentile(beyond, 50))} / {ms(percentile(beyond, 95))}",
        f"p50 <= {TTFT_BEYOND_P50_MS:.0f} ms",
    )
    return {"ttft_beyond_s": beyond}


# -- the run --------------------------------------------------------------------------------


def ingest(home: Path, host: str, corpus: Path) -> None:
    env = {
        **os.environ,
        "RAGGED_HOME": str(home),
        "OLLAMA_HOST": host,
        "RAGGED_CHAT_MODEL": CHAT_MODEL,
    }
    cmd = [sys.executable, "-m", "ragged", "ingest", str(corpus), "--quiet"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"ingest failed: {done.stderr[-2000:]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20, help="Concurrent clients (default 20).")
    parser.add_argument("--requests", type=int, default=200, help="Requests in the concurrent run.")
    parser.add_argument("--sequential", type=int, default=30, help="Requests from one client.")
    parser.add_argument("--chat-turns", type=int, default=30, help="Questions on the chat path.")
    parser.add_argument(
        "--embed-delay", type=float, default=0.02, help="Model: s per embedded input."
    )
    parser.add_argument(
        "--first-token-delay", type=float, default=0.25, help="Model: s to first token."
    )
    parser.add_argument("--token-delay", type=float, default=0.01, help="Model: s per token.")
    parser.add_argument("--deadline", type=float, default=600, help="Stop sending after this (s).")
    parser.add_argument(
        "--corpus", type=Path, default=ROOT / "tests" / "data" / "docs", help="Folder to ingest."
    )
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    args = parser.parse_args(argv)

    from tests.ragged_server import RaggedServer, server_env

    results = Results()
    results.data["machine"] = machine()
    costs = Costs(args.embed_delay, args.first_token_delay, args.token_delay)
    results.data["costs"] = costs.__dict__
    tmp = Path(tempfile.mkdtemp(prefix="ragged-bench-serve-"))
    try:
        with StandInProcess(
            embed_delay=costs.embed,
            first_token_delay=costs.first_token,
            token_delay=costs.token,
            num_parallel=max(args.clients, 1),
        ) as standin:
            home = tmp / "home"
            log(f"ingesting {args.corpus}")
            ingest(home, standin.host, args.corpus)
            env = server_env(home, standin.host)
            with RaggedServer(env, log=tmp / "serve.log") as server:
                log("warming up")
                drive(server.url, 1, 6, args.deadline)
                log(f"{args.sequential} requests from 1 client")
                samples, wall = drive(server.url, 1, args.sequential, args.deadline)
                results.data["serve_1"] = summarise(
                    results, "serve, 1 client", samples, wall, costs
                )
                log(f"{args.requests} requests from {args.clients} clients at once")
                samples, wall = drive(server.url, args.clients, args.requests, args.deadline)
                section = f"serve, {args.clients} clients"
                results.data["serve_n"] = summarise(results, section, samples, wall, costs)
            log(f"{args.chat_turns} questions on the chat path")
            results.data["chat"] = chat_warm_path(
                results, home, standin.host, costs, args.chat_turns
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        print(json.dumps({"rows": results.rows, "data": results.data}, indent=1))
    else:
        width = max(len(r["measure"]) for r in results.rows)
        for row in results.rows:
            target = f"   (target {row['target']})" if row["target"] else ""
            print(f"{row['section']:<18} {row['measure']:<{width}}  {row['value']}{target}")
    errors = results.data["serve_1"]["errors"] + results.data["serve_n"]["errors"]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
