"""ragged.llm through the real `ollama` client against the stand-in: what a user meets."""

from __future__ import annotations

import math

import pytest

from ragged.errors import ModelMissing, OllamaFailed, OllamaUnavailable
from ragged.llm import LLM, ChatStats, InputTooLong
from ragged.models import embed_prefixes, full_name
from tests.ollama_standin import OllamaStandIn


@pytest.fixture
def llm(ollama: OllamaStandIn) -> LLM:
    return LLM(ollama.url, timeout=10, retry_delays=(0.01, 0.01))


def test_embed_batches_with_the_models_prefix(llm: LLM, ollama: OllamaStandIn) -> None:
    vectors = llm.embed(["alpha beta", "gamma"], "nomic-embed-text")
    assert len(vectors) == 2 and len(vectors[0]) == 768
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-4)
    body = [r for r in ollama.requests if r.path == "/api/embed"][-1].body
    assert body["input"] == ["search_document: alpha beta", "search_document: gamma"]
    assert body["truncate"] is False  # never silently truncated
    llm.embed(["why"], "nomic-embed-text", kind="query")
    assert [r for r in ollama.requests if r.path == "/api/embed"][-1].body["input"] == [
        "search_query: why"
    ]


def test_embed_reads_every_number_exactly_as_ollama_sent_it(
    llm: LLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replies are decoded by orjson, not the standard library (a seventh of an ingest's
    CPU): the numbers must still be the very floats the JSON spells, to the last bit."""
    import orjson

    from tests.ollama_standin import _float32, embed_text

    decoded: list[int] = []
    loads = orjson.loads
    monkeypatch.setattr(orjson, "loads", lambda data: decoded.append(len(data)) or loads(data))
    texts = ["alpha beta", "gamma delta epsilon", "zeta " * 40]
    vectors = llm.embed(texts, "nomic-embed-text")
    sent = [[_float32(x) for x in embed_text(f"search_document: {t}")] for t in texts]
    assert [list(v) for v in vectors] == sent
    assert any(len(repr(x)) > 8 for v in sent for x in v)  # digits to get wrong, not only 0.5
    assert max(decoded) > 1000  # and it was orjson that read the vectors


class _Proxy:
    """A forward proxy on loopback that records what it carried, and carries it all to one
    server (the stand-in), whatever host the request names."""

    def __init__(self, target: str) -> None:
        import http.server
        import threading
        import urllib.error
        import urllib.request

        self.carried: list[str] = []
        proxy = self
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # not itself

        class Handler(http.server.BaseHTTPRequestHandler):
            def relay(self) -> None:
                proxy.carried.append(self.path)  # the absolute URL a proxy is sent
                path = "/" + self.path.split("://", 1)[-1].split("/", 1)[-1]
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                request = urllib.request.Request(target + path, data=body, method=self.command)
                request.add_header("Content-Type", "application/json")
                try:
                    with direct.open(request) as reply:
                        status, data = reply.status, reply.read()
                except urllib.error.HTTPError as error:  # passed on, as a proxy does
                    status, data = error.code, error.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = relay

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_the_proxies_the_environment_names_are_used(
    ollama: OllamaStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Ollama on another machine reached through a proxy (HTTP_PROXY, NO_PROXY): httpx
    routes by the environment unless it is handed a transport, which an earlier version of
    the orjson change did, and every request then went direct."""
    proxy = _Proxy(ollama.url)
    try:
        monkeypatch.setenv("http_proxy", proxy.url)  # (conftest cleared the shell's)
        remote = LLM("http://gpu-box.invalid:11434", timeout=10, retry_delays=())
        assert remote.version() == ollama.version
        assert len(remote.embed(["alpha beta"], "nomic-embed-text")[0]) == 768
        assert proxy.carried == [
            "http://gpu-box.invalid:11434/api/version",
            "http://gpu-box.invalid:11434/api/embed",
        ]
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        local = LLM(ollama.url, timeout=10, retry_delays=())
        assert len(local.embed(["alpha beta"], "nomic-embed-text")[0]) == 768
        assert len(proxy.carried) == 2  # NO_PROXY: straight to Ollama
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()


SHARED_TLS = """
import ssl, threading, httpx, httpx._transports.default as transports
from ragged import llm
original = transports.create_ssl_context
# A cold `ask` makes its first two requests from two threads at once.
firsts = [threading.Thread(target=llm._import_client) for _ in range(2)]
for t in firsts: t.start()
for t in firsts: t.join()
import ollama
def context(client):
    return client._transport._pool._ssl_context
print(context(ollama._client._client) is llm._tls())  # ollama's own client: the shared one
print(transports.create_ssl_context is original)  # httpx is as it was after the import
print(context(httpx.Client(verify=False)).verify_mode == ssl.CERT_NONE)  # others: their own
print(context(httpx.Client()) is llm._tls())
"""


def test_ollamas_own_client_shares_ragged_tls_context_and_no_other_does() -> None:
    """ollama makes a client at import, whose TLS context httpx built again (~16 ms of every
    cold command): it gets ragged's, and nothing else does, during the import or after
    (two threads importing at once left httpx patched for good, found in review)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", SHARED_TLS], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["True", "True", "True", "False"], done.stderr


def test_a_reply_orjson_refuses_is_read_as_the_standard_library_reads_it() -> None:
    """Ollama sends UTF-8 JSON without NaN; a proxy in between might not. What the standard
    library reads, ragged reads the same (but for integers past 64 bits, which orjson reads
    as floats and Go never sends); what neither reads fails as it always did."""
    import json

    from ragged.llm import _response_class

    response = _response_class()
    assert response(200, content=b'{"a": [0.5, 1e-7]}').json() == {"a": [0.5, 1e-7]}
    assert response(200, content='{"a": "\u00e9"}'.encode("utf-16")).json() == {"a": "\u00e9"}
    assert math.isnan(response(200, content=b'{"a": NaN}').json()["a"])
    assert response(200, content=b'{"total_duration": 9223372036854775807}').json() == {
        "total_duration": 2**63 - 1  # Go's int64 durations stay exact integers
    }
    with pytest.raises(json.JSONDecodeError):
        response(200, content=b"<html>bad gateway</html>").json()


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"<html>Welcome to nginx!</html>", "not JSON"),
        (b'{"status": "ok"}', "JSON without the fields of its EmbedResponse"),
    ],
    ids=["a page", "other JSON"],
)
def test_a_reply_that_is_not_ollamas_is_one_clear_error(body: bytes, what: str) -> None:
    """A 200 from something else at OLLAMA_HOST (a proxy's page, another service) was a
    JSONDecodeError traceback; the rest of ragged knows what to do with an OllamaFailed."""
    from tests.fixed_reply import fixed_reply

    with fixed_reply(body) as host, pytest.raises(OllamaFailed) as failed:
        LLM(host, timeout=5, retry_delays=()).embed(["alpha"], "nomic-embed-text")
    assert failed.value.message == f"{host} answered, but its reply is not Ollama's ({what})"
    assert "OLLAMA_HOST" in (failed.value.hint or "")


def test_prefix_table() -> None:
    assert embed_prefixes("nomic-embed-text:latest") == ("search_query: ", "search_document: ")
    assert embed_prefixes("library/mxbai-embed-large:335m")[1] == ""
    assert embed_prefixes("some-new-model") == ("", "")
    assert full_name("Nomic-Embed-Text") == "nomic-embed-text:latest"


def test_over_long_input_is_refused_not_truncated(llm: LLM) -> None:
    with pytest.raises(InputTooLong):
        llm.embed(["word " * 3000], "nomic-embed-text")


def test_chat_streams_pieces_and_stats(llm: LLM) -> None:
    stats = ChatStats()
    pieces = list(
        llm.chat(
            "llama3.2:3b",
            [
                {
                    "role": "user",
                    "content": "Sources:\n\n[1] a.md\nThe sky is green.\n\nQuestion: what colour is the sky?",
                }
            ],
            num_ctx=4096,
            stats=stats,
        )
    )
    assert len(pieces) > 3
    assert "[1]" in "".join(pieces)
    assert stats.eval_count and stats.tokens_per_second and stats.first_token_s is not None


def test_model_missing(llm: LLM) -> None:
    with pytest.raises(ModelMissing) as info:
        list(llm.chat("mistral:7b", [{"role": "user", "content": "hi"}], num_ctx=2048))
    assert "ollama pull mistral:7b" in (info.value.hint or "")


def test_unreachable(ollama_down: str) -> None:
    with pytest.raises(OllamaUnavailable, match=f"Ollama isn't running at http://{ollama_down}"):
        LLM(f"http://{ollama_down}", retry_delays=()).list_models()


def test_busy_server_is_retried_then_succeeds(llm: LLM, ollama: OllamaStandIn) -> None:
    ollama.fail_next("/api/embed", status=503, times=2)
    assert len(llm.embed(["x"], "nomic-embed-text")) == 1
    assert ollama.count("/api/embed") == 3


def test_persistent_5xx_is_reported_after_bounded_retries(llm: LLM, ollama: OllamaStandIn) -> None:
    ollama.fail_next("/api/embed", status=500, times=10)
    with pytest.raises(OllamaFailed, match=r"HTTP 500"):
        llm.embed(["x"], "nomic-embed-text")
    assert ollama.count("/api/embed") == 3  # first try + 2 retries


def test_stream_is_retried_only_before_it_starts(llm: LLM, ollama: OllamaStandIn) -> None:
    ollama.fail_next("/api/chat", status=503)
    text = "".join(llm.chat("llama3.2:3b", [{"role": "user", "content": "hello"}], num_ctx=2048))
    assert text
    ollama.fail_mid_stream("/api/chat")
    with pytest.raises(OllamaFailed):
        "".join(llm.chat("llama3.2:3b", [{"role": "user", "content": "hello there"}], num_ctx=2048))


def test_models_show_ps_version_pull(llm: LLM, ollama: OllamaStandIn) -> None:
    assert llm.has_model("nomic-embed-text") and not llm.has_model("mistral:7b")
    info = llm.show("nomic-embed-text")
    assert info.context_length == 2048 and info.embedding_length == 768
    assert llm.version() == ollama.version
    statuses = [p.status for p in llm.pull("mistral:7b")]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert llm.has_model("mistral:7b")
    list(llm.chat("mistral:7b", [{"role": "user", "content": "hi"}], num_ctx=2048))
    loaded = {m.name: m for m in llm.loaded()}
    assert loaded["mistral:7b"].gpu_fraction == 1.0
