"""Services on other machines: a Chroma server's settings and failures, and a remote Ollama.

The rest of the suite already runs each end-to-end test against a real `chroma run` server
(the `chroma_mode` fixture); these tests cover what only a server has: a URL, a token, a
tenant and database, TLS, and a server that is down or dies mid-run. The last section checks
that an Ollama host that never answers fails in bounded time with a clear message.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.catalog import open_catalog
from ragged.cli import app
from ragged.config import load_settings
from ragged.errors import StoreError
from ragged.store import http_options, open_store
from tests.chroma_server import ChromaServer, free_port
from tests.conftest import new_chroma_database
from tests.ollama_standin import OllamaStandIn
from tests.tls import PLAIN_HTTP_REFUSED, make_authority, raw_server, tls_only_server

RAGGED = [sys.executable, "-m", "ragged"]
TOKEN = "s3cret-token"


def run(runner: CliRunner, *args: str, ok: bool = True):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args), catch_exceptions=not ok)
    if ok:
        assert result.exit_code == 0, result.output
    return result


# -- a recording proxy in front of the real server ---------------------------------------------


class RecordingProxy(ThreadingHTTPServer):
    """Forwards every request to a Chroma server and remembers its method, path and headers.

    With `token`, it answers 401 to requests that lack `Authorization: Bearer <token>`, as a
    reverse proxy guarding Chroma 1.x (which has no auth of its own) would. With `tls`, a
    (cert, key) pair, it speaks HTTPS.
    """

    daemon_threads = True

    def __init__(
        self,
        upstream: ChromaServer,
        token: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = (upstream.host, upstream.port)
        self.token = token
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.socket = context.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
    server: RecordingProxy

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = dict(self.headers.items())
        self.server.seen.append(
            (self.command, self.path, {k.lower(): v for k, v in headers.items()})
        )
        if self.server.token and headers.get("Authorization") != f"Bearer {self.server.token}":
            self._reply(
                401, b"401 Unauthorized: missing or wrong token", {"Content-Type": "text/plain"}
            )
            return
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        try:
            forwarded = {
                k: v for k, v in headers.items() if k.lower() not in ("host", "connection")
            }
            upstream.request(self.command, self.path, body=body, headers=forwarded)
            resp = upstream.getresponse()
            data = resp.read()
            passed = {
                k: v
                for k, v in resp.getheaders()
                if k.lower() not in ("transfer-encoding", "connection", "content-length")
            }
            self._reply(resp.status, data, passed)
        finally:
            upstream.close()

    def _reply(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


@pytest.fixture
def proxy(chroma_server: ChromaServer) -> Iterator[RecordingProxy]:
    server = RecordingProxy(chroma_server, token=TOKEN)
    yield server
    server.close()


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that the client is told to trust through SSL_CERT_FILE."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


# -- URL, token, tenant, database, TLS ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("https://chroma.example.org", "chroma.example.org", 443, True),
        ("https://chroma.example.org:8443/", "chroma.example.org", 8443, True),
        ("http://gpu-box", "gpu-box", 8000, False),
        ("gpu-box:8001", "gpu-box", 8001, False),
        ("http://127.0.0.1:8001", "127.0.0.1", 8001, False),
    ],
)
def test_url_sets_host_port_and_tls(url: str, host: str, port: int, tls: bool) -> None:
    options = http_options(load_settings({"chroma_url": url}))
    assert (options["host"], options["port"], options["ssl"]) == (host, port, tls)
    assert options["headers"] is None


def test_bad_url_is_a_clear_error(settings) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from ragged.errors import ConfigError

    # The setting is refused when the settings are read; the store checks again for Python
    # callers who build Settings themselves.
    with pytest.raises(ConfigError, match="chroma_url must be a URL such as http://host:8000"):
        load_settings({"chroma_url": "ftp://chroma"})
    with pytest.raises(StoreError, match="unsupported scheme"):
        http_options(replace(settings, chroma_url="ftp://chroma"))


@pytest.mark.server
def test_token_tenant_and_database_reach_the_server(
    runner: CliRunner,
    proxy: RecordingProxy,
    chroma_server: ChromaServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    admin = chromadb.AdminClient(
        ChromaSettings(
            chroma_api_impl="chromadb.api.fastapi.FastAPI",
            chroma_server_host=chroma_server.host,
            chroma_server_http_port=chroma_server.port,
            anonymized_telemetry=False,
        )
    )
    tenant = f"acme-{os.getpid()}-{time.monotonic_ns()}"
    admin.create_tenant(tenant)
    admin.create_database("notes", tenant=tenant)
    monkeypatch.setenv("RAGGED_CHROMA_URL", proxy.url)
    monkeypatch.setenv("RAGGED_CHROMA_TOKEN", TOKEN)
    monkeypatch.setenv("RAGGED_CHROMA_TENANT", tenant)
    monkeypatch.setenv("RAGGED_CHROMA_DATABASE", "notes")

    assert json.loads(run(runner, "collections", "--json").stdout) == []
    settings = load_settings()
    store = open_store(settings, "via-proxy")
    store.ensure("nomic-embed-text", 3)
    store.add(["a"], [[1.0, 0.0, 0.0]], ["text"], [{"path": "/a"}])

    assert proxy.seen
    for _method, _path, headers in proxy.seen:
        assert headers["authorization"] == f"Bearer {TOKEN}"
        assert headers["x-chroma-token"] == TOKEN
    paths = [path for _, path, _ in proxy.seen]
    assert any(p.startswith(f"/api/v2/tenants/{tenant}/databases/notes/collections") for p in paths)
    # And the collection really is in that tenant's database, not in the default one.
    direct = chromadb.HttpClient(
        host=chroma_server.host,
        port=chroma_server.port,
        tenant=tenant,
        database="notes",
        settings=ChromaSettings(anonymized_telemetry=False),
    )
    assert direct.get_collection("via-proxy").count() == 1


@pytest.mark.server
def test_wrong_token_is_one_clear_error(
    runner: CliRunner, proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGGED_CHROMA_URL", proxy.url)
    monkeypatch.setenv("RAGGED_CHROMA_TOKEN", "not-the-token")
    result = run(runner, "collections", ok=False)
    assert result.exit_code == 1
    assert f"the Chroma server at {proxy.url} refused the request" in result.stderr
    assert "RAGGED_CHROMA_TOKEN" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.server
def test_https_with_a_private_certificate(
    runner: CliRunner,
    chroma_server: ChromaServer,
    self_signed: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = RecordingProxy(chroma_server, tls=self_signed)
    try:
        # httpx (under chromadb) trusts the CA bundle named by SSL_CERT_FILE: the way to use
        # a server with a private or self-signed certificate.
        monkeypatch.setenv("SSL_CERT_FILE", str(self_signed[0]))
        monkeypatch.setenv("RAGGED_CHROMA_URL", proxy.url)
        monkeypatch.setenv("RAGGED_CHROMA_DATABASE", new_chroma_database(chroma_server))
        assert proxy.url.startswith("https://")
        assert json.loads(run(runner, "collections", "--json").stdout) == []
        assert proxy.seen
    finally:
        proxy.close()


@pytest.mark.server
def test_a_certificate_not_trusted_is_named_not_a_server_not_running(
    runner: CliRunner,
    chroma_server: ChromaServer,
    self_signed: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without SSL_CERT_FILE the private certificate fails verification; 0.2 said "the Chroma
    server ... is not running" and to start one."""
    proxy = RecordingProxy(chroma_server, tls=self_signed)
    try:
        monkeypatch.setenv("RAGGED_CHROMA_URL", proxy.url)
        result = run(runner, "collections", ok=False)
        assert result.exit_code == 1
        assert f"cannot verify the TLS certificate of {proxy.url}: self" in result.stderr
        assert "SSL_CERT_FILE" in result.stderr
        assert "not running" not in result.stderr and "Traceback" not in result.output
    finally:
        proxy.close()


def test_a_tls_hello_that_gets_no_answer_is_named_not_an_unreachable_server(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """https:// at a server that accepts and never answers the hello (Chroma's own port
    serves plain HTTP): the connection was made, so "cannot reach" and a firewall were wrong."""
    with raw_server() as host:
        url = f"https://{host}"
        monkeypatch.setenv("RAGGED_CHROMA_URL", url)
        monkeypatch.setenv("RAGGED_CHROMA_TIMEOUT", "1")
        result = run(runner, "collections", ok=False)
    assert result.exit_code == 1
    assert f"TLS with {url} failed (no answer to the handshake within 1 s)" in result.stderr
    assert "write http:// in RAGGED_CHROMA_URL" in result.stderr
    assert "cannot reach" not in result.stderr and "Traceback" not in result.output


def test_http_to_a_tls_port_is_named_with_https_as_the_fix(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http:// at a TLS proxy in front of the server (Caddy, Traefik: Go's own reply); 0.2
    asked whether it was a Chroma 1.x server."""
    with raw_server(PLAIN_HTTP_REFUSED["go"]) as host:
        monkeypatch.setenv("RAGGED_CHROMA_URL", f"http://{host}")
        result = run(runner, "collections", ok=False)
    assert result.exit_code == 1
    assert f"http://{host} speaks HTTPS: it refused a plain-HTTP request (HTTP 400)" in (
        result.stderr
    )
    assert "write https:// in RAGGED_CHROMA_URL" in result.stderr
    assert "Chroma 1.x" not in result.stderr and "Traceback" not in result.output


def test_http_to_a_port_that_speaks_only_tls_is_named_with_https_as_the_fix(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http:// at a port that speaks only TLS (stunnel, a TLS passthrough), which closes the
    connection without a reply: 0.2 said it lost the connection and to start the server."""
    with tls_only_server(make_authority(tmp_path / "ca").server_context()) as host:
        monkeypatch.setenv("RAGGED_CHROMA_URL", f"http://{host}")
        result = run(runner, "collections", ok=False)
    assert result.exit_code == 1
    assert (
        f"http://{host} speaks HTTPS: it closed the connection on a plain-HTTP request"
        in result.stderr
    )
    assert "write https:// in RAGGED_CHROMA_URL" in result.stderr
    for wrong in ("lost the connection", "start it", "Traceback"):
        assert wrong not in result.output, wrong


def test_a_server_that_drops_every_request_is_still_a_lost_connection(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No TLS behind the port either: the connection is what failed, as before."""
    with raw_server(b"") as host:
        monkeypatch.setenv("RAGGED_CHROMA_URL", f"http://{host}")
        result = run(runner, "collections", ok=False)
    assert result.exit_code == 1
    assert f"lost the connection to the Chroma server at http://{host}" in result.stderr
    assert "HTTPS" not in result.stderr


def test_an_ssl_cert_file_that_does_not_exist_is_named_not_a_traceback(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "my-ca.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(missing))
    monkeypatch.setenv("RAGGED_CHROMA_URL", "https://127.0.0.1:9")
    result = run(runner, "collections", ok=False)
    assert result.exit_code == 1
    assert (
        f"cannot read the CA certificates SSL_CERT_FILE names ({missing}): No such file or "
        "directory" in result.stderr
    )
    assert "Traceback" not in result.output


@pytest.mark.server
def test_a_missing_database_is_created_on_first_use(
    runner: CliRunner, chroma_server: ChromaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"fresh-{os.getpid()}-{time.monotonic_ns()}"
    monkeypatch.setenv("RAGGED_CHROMA_URL", chroma_server.url)
    monkeypatch.setenv("RAGGED_CHROMA_DATABASE", name)
    assert json.loads(run(runner, "collections", "--json").stdout) == []
    store = open_store(load_settings(), "made-here")
    store.ensure("nomic-embed-text", 3)
    assert store.where == chroma_server.url and store.count() == 0


# -- the parametrized suite really reaches the server ------------------------------------------


@pytest.mark.server
def test_server_mode_stores_nothing_embedded(
    runner: CliRunner,
    ollama: OllamaStandIn,
    docs: Path,
    chroma_server: ChromaServer,
    monkeypatch: pytest.MonkeyPatch,
    env: Path,
) -> None:
    monkeypatch.setenv("RAGGED_CHROMA_URL", chroma_server.url)
    monkeypatch.setenv("RAGGED_CHROMA_DATABASE", new_chroma_database(chroma_server))
    run(runner, "ingest", str(docs), "--quiet")
    cols = json.loads(run(runner, "collections", "--json").stdout)
    settings = load_settings()
    catalog = open_catalog(settings)
    assert cols == [
        {"name": "default", "chunks": catalog.embedded_count(), "embed_model": "nomic-embed-text"}
    ]
    assert not (env / "chroma").exists()
    # The catalog of a server-backed collection lives apart from the embedded one's.
    assert "server-" in str(catalog.path)


@pytest.mark.server
def test_a_second_machine_ingesting_keeps_the_first_machines_chunks(
    runner: CliRunner,
    ollama: OllamaStandIn,
    docs: Path,
    chroma_server: ChromaServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("RAGGED_CHROMA_URL", chroma_server.url)
    monkeypatch.setenv("RAGGED_CHROMA_DATABASE", new_chroma_database(chroma_server))
    run(runner, "ingest", str(docs), "--quiet")
    first = open_store(load_settings()).count()
    # Machine B: its own data dir (so its own catalog), the same server and collection.
    monkeypatch.setenv("RAGGED_HOME", str(tmp_path / "machine-b"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "herons.md").write_text("# Herons\n\nHerons stand still for a long time.\n")
    run(runner, "ingest", str(other), "--quiet")
    assert open_store(load_settings()).count() == first + 1


# -- a server that is down, or goes away mid-run -----------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["search", "capybara"],
        ["ask", "capybara?"],
        ["ingest", "DOCS"],
        ["collections"],
        ["remove", "DOCS"],
        ["reset", "--yes"],
    ],
    ids=lambda args: args[0],
)
def test_server_down_is_one_clear_error(
    runner: CliRunner,
    ollama: OllamaStandIn,
    docs: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("RAGGED_CHROMA_URL", url)
    result = run(runner, *[str(docs) if a == "DOCS" else a for a in args], ok=False)
    assert result.exit_code == 1, result.output
    assert f"the Chroma server at {url} is not running" in result.stderr
    assert "docker compose up -d chromadb" in result.stderr
    assert "Traceback" not in result.output
    assert result.stderr.count("Error:") == 1


def corpus(root: Path, files: int = 24) -> Path:
    """Markdown files with several chunks each at 64-token chunks."""
    root.mkdir(parents=True)
    for i in range(files):
        parts = "\n\n".join(
            f"## Part {j}\n\nFile {i} part {j} is about topic{i % 5} and item{j}. " * 4
            for j in range(4)
        )
        (root / f"doc{i:02}.md").write_text(f"# File {i}\n\n{parts}\n")
    return root


def stored(settings_flags: dict[str, object]) -> tuple[set[str], set[str], int]:
    """(ids in Chroma, ids in the catalog, chunks pending) for one data dir and server."""
    settings = load_settings(settings_flags)
    catalog = open_catalog(settings)
    ids = {c.id for f in catalog.files() for c in catalog.chunks_of(f.path)}
    return open_store(settings).ids(), ids, catalog.pending_count()


@pytest.mark.server
def embedded_so_far(home: Path) -> int:
    """Chunks a running ingest has marked embedded, read from its catalog without locking it."""
    import sqlite3

    total = 0
    for path in (home / "catalog").glob("*/*.sqlite"):
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
            try:
                total += int(
                    db.execute("SELECT count(*) FROM chunks WHERE embedded = 1").fetchone()[0]
                )
            finally:
                db.close()
        except sqlite3.Error:  # created but not yet migrated
            pass
    return total


def test_server_killed_mid_ingest_then_rerun_repairs(ollama: OllamaStandIn, tmp_path: Path) -> None:
    docs = corpus(tmp_path / "docs")
    small = ["--chunk-tokens", "64", "--chunk-overlap", "8", "--embed-batch", "4"]
    with ChromaServer(tmp_path / "chroma") as server:
        clean_home, killed_home = tmp_path / "clean", tmp_path / "killed"
        environ = {**os.environ, "OLLAMA_HOST": ollama.host, "RAGGED_CHROMA_URL": server.url}
        clean_db = new_chroma_database(server)
        done = subprocess.run(
            [*RAGGED, "ingest", str(docs), "--quiet", *small],
            env={**environ, "RAGGED_HOME": str(clean_home), "RAGGED_CHROMA_DATABASE": clean_db},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        clean_flags = {"home": clean_home, "chroma_url": server.url, "chroma_database": clean_db}
        clean_chroma, clean_catalog, _ = stored(clean_flags)
        assert clean_chroma == clean_catalog and len(clean_chroma) > 60

        # Slow embeddings, so the server can be killed while vectors are being written.
        ollama.embed_delay = 0.02
        ollama.reset()
        # Small batches: store writes gather 16 of them, so several writes happen in the run.
        proc = subprocess.Popen(
            [*RAGGED, "ingest", str(docs), "--embed-batch", "2", *small],
            env={**environ, "RAGGED_HOME": str(killed_home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Killed once the first vectors are on the server (the catalog marks chunks embedded
        # only after the server holds them), long before the end.
        deadline = time.monotonic() + 60
        while embedded_so_far(killed_home) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err
        assert f"the Chroma server at {server.url}" in err
        assert "docker compose up -d chromadb" in err
        assert "Traceback" not in err and err.count("Error:") == 1, err

        # Same path, same port: the data acknowledged before the kill is still there.
        server.start()
        killed_flags = {"home": killed_home, "chroma_url": server.url}
        partial, _, pending = stored(killed_flags)
        assert len(partial) < len(clean_chroma) and pending > 0

        ollama.embed_delay = 0.0
        ollama.reset()
        again = subprocess.run(
            [*RAGGED, "ingest", str(docs), "--json", *small],
            env={**environ, "RAGGED_HOME": str(killed_home)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0, again.stderr
        report = json.loads(again.stdout)
        assert report["pending"] == 0 and report["failed"] == 0
        # Only what never reached Chroma is embedded again, not the whole corpus.
        assert 0 < report["embedded"] < len(clean_chroma)
        chroma, catalog, pending = stored(killed_flags)
        # Chunk ids derive from path + content + position: equal sets mean equal chunks,
        # and a set equal to Chroma's count means no duplicates.
        assert chroma == catalog == clean_chroma and pending == 0
        assert open_store(load_settings(killed_flags)).count() == len(clean_chroma)


# -- remote Ollama: a host that never answers fails in bounded time ---------------------------


@pytest.fixture
def silent_host() -> Iterator[str]:
    """host:port of a socket that listens but never accepts, with its one-slot queue full.

    New connections then hang in the TCP handshake, as they do towards a machine that is
    off or behind a firewall that drops packets; nothing leaves 127.0.0.1.
    """
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=1)
    host, port = listener.getsockname()
    try:
        yield f"{host}:{port}"
    finally:
        filler.close()
        listener.close()


@pytest.fixture
def mute_host() -> Iterator[str]:
    """host:port of a server that accepts connections and then never says a word."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    host, port = listener.getsockname()
    try:
        yield f"{host}:{port}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def test_unreachable_ollama_fails_fast_without_retrying(silent_host: str) -> None:
    from ragged.errors import OllamaUnavailable
    from ragged.llm import connect

    settings = load_settings({"ollama_host": silent_host}, env={"RAGGED_TIMEOUT": "0.5"})
    llm = connect(settings)
    began = time.monotonic()
    with pytest.raises(OllamaUnavailable) as info:
        llm.list_models()
    elapsed = time.monotonic() - began
    assert elapsed < 3  # one connect timeout (0.5 s here, 10 s by default), no retries
    assert f"cannot reach Ollama at http://{silent_host}" in info.value.message
    assert "OLLAMA_HOST=0.0.0.0" in (info.value.hint or "")


def test_connect_timeout_is_short_and_response_timeout_long() -> None:
    from ragged.llm import CONNECT_TIMEOUT, connect

    llm = connect(load_settings({"ollama_host": "gpu-box:11434"}))
    timeout = llm._client._client.timeout  # the httpx.Client under ollama.Client
    assert (timeout.connect, timeout.read) == (CONNECT_TIMEOUT, 300.0)


def test_ollama_that_never_answers_times_out_clearly(mute_host: str) -> None:
    from ragged.errors import OllamaFailed
    from ragged.llm import LLM

    llm = LLM(f"http://{mute_host}", timeout=0.5, retry_delays=(0.1,))
    began = time.monotonic()
    with pytest.raises(OllamaFailed) as info:
        llm.embed(["hello"], "nomic-embed-text")
    assert time.monotonic() - began < 3  # two attempts of 0.5 s and one 0.1 s pause
    # The message gives the time actually waited: the timeout, or a little more when the
    # machine is busy (this read 0.6 s once in a slow full run).
    prefix = f"Ollama at http://{mute_host} did not answer within "
    assert info.value.message.startswith(prefix) and info.value.message.endswith(" s")
    assert 0.5 <= float(info.value.message[len(prefix) : -2]) < 3
    assert "RAGGED_TIMEOUT" in (info.value.hint or "")


def test_unreachable_ollama_through_the_cli(
    runner: CliRunner, silent_host: str, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", silent_host)
    monkeypatch.setenv("RAGGED_TIMEOUT", "0.5")
    began = time.monotonic()
    result = run(runner, "ingest", str(docs), ok=False)
    assert result.exit_code == 1
    assert f"cannot reach Ollama at http://{silent_host}" in result.stderr
    assert "Traceback" not in result.output
    # The text is kept for keyword search and a later run, as when Ollama is down.
    assert "await embeddings" in result.stderr
    search = json.loads(run(runner, "search", "capybara", "--json").stdout)
    assert search["mode"] == "lexical" and "cannot reach Ollama" in search["notice"]
    assert time.monotonic() - began < 15
