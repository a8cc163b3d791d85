"""The Ollama stand-in, exercised through the real `ollama` client as ragged will use it."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from tests.ollama_standin import (
    BUSY_ERROR,
    NO_ANSWER,
    OllamaStandIn,
    compose_answer,
    embed_text,
)

SOURCES = """Answer using only the sources below and cite them like [1].

[1] docs/sky.md (page 2)
The sky looks blue because air scatters short wavelengths. Sunsets look red.
[2] docs/garden.txt
Grass is green because of chlorophyll. Chlorophyll absorbs red and blue light.
[3] docs/cats.md
Cats purr when they are content.
"""


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{SOURCES}\nQuestion: {question}"}]


@pytest.fixture
def server() -> Iterator[OllamaStandIn]:
    with OllamaStandIn() as standin:
        yield standin


@pytest.fixture
def client(server: OllamaStandIn) -> ollama.Client:
    return ollama.Client(host=server.url)


def test_root_version_and_unknown_path(server: OllamaStandIn) -> None:
    root = httpx.get(server.url)
    assert (root.status_code, root.text) == (200, "Ollama is running")
    assert "server" not in root.headers
    assert httpx.head(server.url).status_code == 200
    assert httpx.get(f"{server.url}/api/version").json() == {"version": "0.12.6"}
    missing = httpx.get(f"{server.url}/api/nothing")
    assert (missing.status_code, missing.text) == (404, "404 page not found")
    assert missing.headers["content-type"] == "text/plain"


def test_list_and_show(client: ollama.Client, server: OllamaStandIn) -> None:
    assert [m.model for m in client.list().models] == ["nomic-embed-text:latest", "llama3.2:3b"]
    shown = client.show("Nomic-Embed-Text")
    assert shown.modelinfo["nomic-bert.context_length"] == 2048
    assert shown.modelinfo["nomic-bert.embedding_length"] == 768
    assert shown.capabilities == ["embedding"]
    assert "completion" in (client.show("llama3.2:3b").capabilities or [])
    server.add_model("mxbai-embed-large")
    assert client.show("mxbai-embed-large").modelinfo["bert.embedding_length"] == 1024
    server.remove_model("mxbai-embed-large:latest")
    assert "mxbai-embed-large:latest" not in server.installed


def test_embed_shape_normalisation_order_and_determinism(
    client: ollama.Client, server: OllamaStandIn
) -> None:
    texts = ["The cat sat on the mat.", "Quantum chromodynamics", "", "the mat the cat"]
    response = client.embed(model="nomic-embed-text", input=texts)
    assert response.model == "nomic-embed-text"  # echoed as sent, tag not added
    assert [len(v) for v in response.embeddings] == [768] * 4
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in response.embeddings)
    for text, vector in zip(texts, response.embeddings, strict=True):
        assert client.embed(model="nomic-embed-text", input=text).embeddings in ([vector], [])
        assert vector == pytest.approx(embed_text(text, 768), abs=1e-6)
    cat, physics, _, same_words = response.embeddings
    assert dot(cat, same_words) > 0.6 > dot(cat, physics)  # unit vectors: dot = cosine
    assert client.embed(model="nomic-embed-text", input="").embeddings == []
    assert server.embedded_inputs == 4 + 3
    server.add_model("all-minilm")  # keeps its real size whatever embed_dim says
    assert len(client.embed(model="all-minilm", input="x").embeddings[0]) == 384


def test_embeddings_match_across_processes() -> None:
    code = "from tests.ollama_standin import embed_text; print(embed_text('Hello, world', 16))"
    root = Path(__file__).parent.parent
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                         env={"PYTHONHASHSEED": "123"}, check=True)  # fmt: skip
    out = run.stdout
    assert out.strip() == str(embed_text("Hello, world", 16))


def test_embed_dim_and_dimensions() -> None:
    with OllamaStandIn(embed_dim=8) as server:
        client = ollama.Client(host=server.url)
        assert len(client.embed(model="nomic-embed-text", input="a b c").embeddings[0]) == 8
        cut = client.embed(model="nomic-embed-text", input="a b c", dimensions=4).embeddings[0]
        assert len(cut) == 4 and math.isclose(sum(x * x for x in cut), 1.0, rel_tol=1e-5)


def test_truncate(client: ollama.Client) -> None:
    long_text = "word " * 3000
    with pytest.raises(ollama.ResponseError) as caught:
        client.embed(model="nomic-embed-text", input=long_text, truncate=False)
    assert caught.value.status_code == 400
    assert caught.value.error == "the input length exceeds the context length"
    cut = client.embed(model="nomic-embed-text", input=long_text)
    assert cut.prompt_eval_count == 2048  # cut to the context, [CLS]/[SEP] included


def test_embed_rejects_bad_input(server: OllamaStandIn) -> None:
    reply = httpx.post(f"{server.url}/api/embed", json={"model": "nomic-embed-text", "input": 3})
    assert (reply.status_code, reply.json()) == (400, {"error": "invalid input type"})


def test_chat_streams_tokens_then_metrics(client: ollama.Client, server: OllamaStandIn) -> None:
    chunks = list(
        client.chat(
            model="llama3.2:3b",
            messages=ask("Why is the grass green?"),
            stream=True,
            options={"num_ctx": 8192},
        )
    )
    text = "".join(c.message.content or "" for c in chunks)
    assert text == "Grass is green because of chlorophyll. [2]"
    assert len(chunks) > 2 and not any(c.done for c in chunks[:-1])
    final = chunks[-1]
    assert final.done and final.done_reason == "stop"
    assert final.eval_count == len(chunks) - 1 and final.eval_duration
    assert all(c.eval_count is None for c in chunks[:-1])
    assert server.requests[-1].body["options"]["num_ctx"] == 8192  # type: ignore[index]
    assert client.ps().models[0].context_length == 8192


def test_generate_non_streaming(client: ollama.Client) -> None:
    prompt = f"{SOURCES}\nQuestion: What colour is the sky?"
    response = client.generate(model="LLaMA3.2:3B", prompt=prompt, options={"num_predict": 3})
    assert response.response == "The sky looks"
    assert response.done_reason == "length" and response.eval_count == 3
    assert client.generate(model="llama3.2:3b", prompt=prompt).response.endswith("[1]")


CHLOROPHYLL = "Chlorophyll absorbs red and blue light."


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        # No source shares a word with the question.
        ([("user", f"{SOURCES}\nQuestion: Do dogs bark?")], NO_ANSWER),
        # No sources at all.
        ([("user", "No sources here. Question: why is grass green?")], NO_ANSWER),
        # Sources in the system message, the question as the last user message.
        (
            [("system", SOURCES), ("user", "Why do cats purr?")],
            "Cats purr when they are content. [3]",
        ),
        # No Question: marker: the last paragraph is the question.
        ([("user", f"{SOURCES}\nWhat absorbs red light?")], f"{CHLOROPHYLL} [2]"),
        # Question on the line after the marker; source [1] scores 2 of 3, so it is cited too.
        ([("user", f"{SOURCES}\nQuestion:\nred blue light\n\nAnswer:")], f"{CHLOROPHYLL} [1][2]"),
    ],
)
def test_compose_answer(messages: list[tuple[str, str]], expected: str) -> None:
    assert compose_answer(messages) == expected


def test_answer_override_and_truncated_prompt(client: ollama.Client, server: OllamaStandIn) -> None:
    server.answer_override = "See [7]."
    assert client.chat(model="llama3.2:3b", messages=ask("sky?")).message.content == "See [7]."
    server.answer_override = None
    # With num_ctx 20 only the question survives: the sources were the oldest tokens.
    reply = client.chat(
        model="llama3.2:3b", messages=ask("Why is the sky blue?"), options={"num_ctx": 20}
    )
    assert reply.message.content == NO_ANSWER and reply.prompt_eval_count == 20
    assert server.prompt_truncations == 1


def test_errors_before_streaming(client: ollama.Client, server: OllamaStandIn) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        list(client.chat(model="missing", messages=ask("x"), stream=True))
    assert (caught.value.status_code, caught.value.error) == (404, "model 'missing' not found")
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="nomic-embed-text", messages=ask("x"))
    assert caught.value.error == '"nomic-embed-text" does not support chat'
    assert caught.value.status_code == 400
    for body, error in [
        (b"", "missing request body"),
        (b"{x", "invalid character 'x' looking for beginning of object key string"),
        (b'{"model": "llama3.2:3b", "keep_alive": "soon"}', 'time: invalid duration "soon"'),
    ]:
        reply = httpx.post(f"{server.url}/api/chat", content=body)
        assert (reply.status_code, reply.json()) == (400, {"error": error})


def test_pull_streams_progress_then_installs(client: ollama.Client, server: OllamaStandIn) -> None:
    progress = list(client.pull("mistral:7b", stream=True))
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    completed = [p.completed for p in progress if p.completed and p.total == progress[1].total]
    assert len(completed) >= 3 and completed == sorted(completed)
    assert "mistral:7b" in [m.model for m in client.list().models]
    assert client.pull("all-minilm").status == "success"
    assert "all-minilm:latest" in server.installed


def test_pull_of_unknown_model(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.pull("no-such-model")
    assert caught.value.status_code == 500
    assert caught.value.error == "pull model manifest: file does not exist"
    with pytest.raises(ollama.ResponseError) as caught:
        list(client.pull("no-such-model", stream=True))
    assert caught.value.status_code == -1


def test_fail_next(client: ollama.Client, server: OllamaStandIn) -> None:
    server.fail_next("/api/embed", status=503, times=2)
    for _ in range(2):
        with pytest.raises(ollama.ResponseError) as caught:
            client.embed(model="nomic-embed-text", input="x")
        assert (caught.value.status_code, caught.value.error) == (503, BUSY_ERROR)
    assert client.embed(model="nomic-embed-text", input="x").embeddings
    assert server.count("/api/embed") == 3


def test_fail_mid_stream(client: ollama.Client, server: OllamaStandIn) -> None:
    server.fail_mid_stream("/api/chat", error="runner crashed")
    received = []
    with pytest.raises(ollama.ResponseError) as caught:
        for chunk in client.chat(
            model="llama3.2:3b", messages=ask("Why is the grass green?"), stream=True
        ):
            received.append(chunk)
    assert (caught.value.status_code, caught.value.error) == (-1, "runner crashed")
    assert len(received) == 2
    assert client.chat(model="llama3.2:3b", messages=ask("sky?")).done  # one-shot


def test_connection_refused_after_stop() -> None:
    server = OllamaStandIn().start()
    client = ollama.Client(host=server.url)
    client.list()  # leaves a pooled keep-alive connection behind
    server.stop()
    with pytest.raises(ConnectionError, match="Failed to connect to Ollama"):
        client.list()


def test_ps_keep_alive_and_vram(client: ollama.Client, server: OllamaStandIn) -> None:
    assert client.ps().models == []
    server.size_vram_fraction = 0.5
    client.chat(model="llama3.2:3b", messages=ask("sky?"), keep_alive=-1)
    (loaded,) = client.ps().models
    assert loaded.model == "llama3.2:3b" and loaded.context_length == 4096
    assert loaded.size_vram == int((loaded.size or 0) * 0.5)
    assert loaded.expires_at is not None and loaded.expires_at.year > 2300
    client.generate(model="llama3.2:3b", prompt="", keep_alive=0)
    assert server.loaded == []


def test_num_parallel_queues_work() -> None:
    def embed_twice(server: OllamaStandIn) -> float:
        client = ollama.Client(host=server.url)
        threads = [
            threading.Thread(
                target=client.embed, kwargs={"model": "nomic-embed-text", "input": "x"}
            )
            for _ in range(2)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - started

    with OllamaStandIn(embed_delay=0.3, num_parallel=1) as serial:
        assert embed_twice(serial) >= 0.6
        assert serial.peak_parallel == 1 and serial.busy_seconds >= 0.6
    with OllamaStandIn(embed_delay=0.3, num_parallel=2) as parallel:
        assert embed_twice(parallel) < 0.55
        assert parallel.peak_parallel == 2 and parallel.busy_seconds >= 0.6


def test_abandoned_stream_frees_its_slot() -> None:
    with OllamaStandIn(token_delay=0.05, num_parallel=1) as server:
        client = ollama.Client(host=server.url, timeout=5)
        stream = client.chat(model="llama3.2:3b", messages=ask("Why is grass green?"), stream=True)
        assert next(stream).message.content == "Grass"
        stream.close()  # the client hangs up mid-answer, as on Ctrl-C
        assert client.chat(model="llama3.2:3b", messages=ask("sky?")).done


def test_transport_faults_look_like_a_crashed_or_stalled_server(server: OllamaStandIn) -> None:
    client = ollama.Client(host=server.url, timeout=1.0)
    server.drop_next("/api/embed")
    with pytest.raises(httpx.ReadError, match="reset by peer"):
        client.embed(model="nomic-embed-text", input=["x"])
    server.drop_next("/api/embed", reset=False)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.embed(model="nomic-embed-text", input=["x"])
    server.stall_next("/api/embed")
    began = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.embed(model="nomic-embed-text", input=["x"])
    assert 0.9 < time.monotonic() - began < 5
    assert len(client.embed(model="nomic-embed-text", input=["x"]).embeddings) == 1
    assert server.count("/api/embed") == 4  # faulted requests are logged too


def test_flaky_path_resets_a_seeded_fraction(server: OllamaStandIn) -> None:
    def outcomes() -> list[bool]:
        client = ollama.Client(host=server.url, timeout=5.0)
        server.flaky("/api/embed", 0.3, seed=5)
        seen = []
        for _ in range(40):
            try:
                client.embed(model="nomic-embed-text", input=["x"])
                seen.append(True)
            except httpx.TransportError:
                seen.append(False)
        server.flaky("/api/embed", 0)
        return seen

    first = outcomes()
    assert 5 <= first.count(False) <= 20
    assert outcomes() == first  # the same seed, the same requests fail


def test_stop_releases_a_stalled_request() -> None:
    server = OllamaStandIn().start()
    server.stall_next("/api/tags")
    failures: list[BaseException] = []

    def call() -> None:
        try:
            ollama.Client(host=server.url, timeout=30).list()
        except BaseException as exc:  # what the client saw is the point
            failures.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.3)
    began = time.monotonic()
    server.stop()
    thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - began < 5
    assert failures and not isinstance(failures[0], httpx.ReadTimeout)
