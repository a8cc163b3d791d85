"""Ollama over HTTPS (behind a TLS reverse proxy on another machine), through the real CLI.

The stand-in serves TLS with a certificate from a private CA (tests/tls.py), as Caddy or nginx
with an internal CA would. Found on 0.2: a certificate ragged did not trust was reported as
"Ollama isn't running" with `ollama serve` as the fix.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ragged import llm, tls
from ragged.cli import app
from tests.conftest import CHAT_MODEL, EMBED_MODEL
from tests.ollama_standin import OllamaStandIn
from tests.tls import PLAIN_HTTP_REFUSED, Authority, make_authority, raw_server, tls_only_server


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return make_authority(tmp_path / "ca")


@pytest.fixture
def ollama_tls(authority: Authority, monkeypatch: pytest.MonkeyPatch) -> Iterator[OllamaStandIn]:
    """The stand-in over HTTPS, its certificate signed by `authority`; OLLAMA_HOST names it."""
    server = OllamaStandIn(models=(f"{EMBED_MODEL}:latest", CHAT_MODEL))
    server.start(tls=authority.server_context())
    try:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        yield server
    finally:
        server.stop()


def test_an_https_ollama_signed_by_its_own_ca_works_with_ssl_cert_file(
    runner: CliRunner,
    ollama_tls: OllamaStandIn,
    authority: Authority,
    docs: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ollama_tls.url.startswith("https://")
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca))
    result = runner.invoke(app, ["ingest", str(docs), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["pending"] == 0 and report["chunks"] == report["embedded"] > 0
    found = runner.invoke(app, ["search", "Do capybaras live near rivers?", "--json"])
    assert found.exit_code == 0, found.output
    assert Path(json.loads(found.stdout)["hits"][0]["path"]).name == "notes.txt"
    assert ollama_tls.count("/api/embed") >= 2


def test_an_untrusted_certificate_is_named_as_such_not_as_ollama_not_running(
    runner: CliRunner, ollama_tls: OllamaStandIn, docs: Path
) -> None:
    """certifi's bundle does not hold the private CA: the line says what failed and how to
    fix it; the text is kept pending, as whenever Ollama cannot be used."""
    result = runner.invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 1, result.output
    assert (
        f"cannot verify the TLS certificate of {ollama_tls.url}: unable to get local issuer "
        "certificate" in result.stderr
    )
    assert "SSL_CERT_FILE" in result.stderr
    assert "isn't running" not in result.stderr and "ollama serve" not in result.stderr
    assert "await embeddings" in result.stderr and "Traceback" not in result.output

    doctor = runner.invoke(app, ["doctor", "--json"])
    check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "ollama")
    assert check["status"] == "fail"
    assert "cannot verify the TLS certificate" in check["detail"]
    assert "SSL_CERT_FILE" in check["fix"]


def test_a_name_the_certificate_does_not_hold_is_named_with_its_own_fix(
    runner: CliRunner,
    ollama_tls: OllamaStandIn,
    authority: Authority,
    docs: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The certificate is for 127.0.0.1 only; SSL_CERT_FILE cannot mend a name (review)."""
    url = ollama_tls.url.replace("127.0.0.1", "localhost")
    monkeypatch.setenv("OLLAMA_HOST", url)
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca))
    result = runner.invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 1
    assert (
        f"cannot verify the TLS certificate of {url}: Hostname mismatch, certificate is not "
        "valid for 'localhost'; " in result.stderr
    )
    assert "name the server in OLLAMA_HOST as its certificate does" in result.stderr


def test_a_certificate_another_ca_signed_says_the_named_file_lacks_that_ca(
    runner: CliRunner,
    ollama_tls: OllamaStandIn,
    tmp_path: Path,
    docs: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SSL_CERT_FILE is set, to another CA: telling the user to set it helps nobody (review)."""
    other = make_authority(tmp_path / "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca))
    result = runner.invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 1
    assert f"cannot verify the TLS certificate of {ollama_tls.url}: unable to get local" in (
        result.stderr
    )
    assert f"the CA that signed it is not in {other.ca} (SSL_CERT_FILE)" in result.stderr


def test_an_https_proxy_whose_certificate_fails_is_named_with_the_server(
    runner: CliRunner, ollama_tls: OllamaStandIn, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS to the proxy itself (http_proxy=https://...) failed, and the line named the
    certificate "of http://gpu-box...", which has none (review). The stand-in over TLS
    stands for the proxy: the handshake with it fails before anything is proxied."""
    monkeypatch.setenv("OLLAMA_HOST", "http://gpu-box.invalid:11434")
    monkeypatch.setenv("http_proxy", ollama_tls.url)
    result = runner.invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 1
    assert (
        "cannot verify the TLS certificate of http://gpu-box.invalid:11434, or of the proxy "
        f"{ollama_tls.url} on the way: unable to get local issuer certificate" in result.stderr
    )
    # An https:// server the proxy is bypassed for: its own certificate, no proxy named.
    monkeypatch.setenv("OLLAMA_HOST", ollama_tls.url)
    monkeypatch.setenv("https_proxy", "https://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    bypassed = runner.invoke(app, ["ingest", str(docs)])
    assert f"cannot verify the TLS certificate of {ollama_tls.url}: unable" in bypassed.stderr
    # Ollama on this machine is never proxied, no_proxy or not: no proxy to name either.
    monkeypatch.delenv("no_proxy")
    direct = runner.invoke(app, ["ingest", str(docs)])
    assert f"cannot verify the TLS certificate of {ollama_tls.url}: unable" in direct.stderr


def test_an_expired_certificate_is_named_with_its_own_fix(
    runner: CliRunner, tmp_path: Path, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = make_authority(tmp_path / "stale", expired=True)
    server = OllamaStandIn(models=(f"{EMBED_MODEL}:latest",)).start(tls=stale.server_context())
    url = server.url
    try:
        monkeypatch.setenv("OLLAMA_HOST", url)
        monkeypatch.setenv("SSL_CERT_FILE", str(stale.ca))
        result = runner.invoke(app, ["ingest", str(docs)])
    finally:
        server.stop()
    assert result.exit_code == 1
    assert f"cannot verify the TLS certificate of {url}: certificate has expired" in result.stderr
    assert "renew the server's certificate" in result.stderr
    assert "SSL_CERT_FILE" not in result.stderr


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "No such file or directory"), (b"garbage\n", "no PEM certificate read from it")],
)
def test_ssl_cert_file_that_cannot_be_read_is_named(
    content: bytes | None,
    reason: str,
    runner: CliRunner,
    ollama_tls: OllamaStandIn,
    tmp_path: Path,
    docs: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A typo in the variable the hint names: it was "Ollama isn't running" (a missing file)
    or "write http://" (not PEM), found in review. Plain http never reads it."""
    named = tmp_path / "my-ca.pem"
    if content is not None:
        named.write_bytes(content)
    monkeypatch.setenv("SSL_CERT_FILE", str(named))
    result = runner.invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 1
    assert f"cannot read the CA certificates SSL_CERT_FILE names ({named}): {reason}" in (
        result.stderr
    )
    assert "point SSL_CERT_FILE at a PEM file of CA certificates" in result.stderr
    assert "isn't running" not in result.stderr and "http://" not in result.stderr

    with OllamaStandIn(models=(f"{EMBED_MODEL}:latest", CHAT_MODEL)) as plain:
        monkeypatch.setenv("OLLAMA_HOST", plain.url)
        assert runner.invoke(app, ["ingest", str(docs)]).exit_code == 0


def test_ollamas_version_names_tls_and_a_server_down_as_every_call_does(
    ollama_tls: OllamaStandIn, ollama_down: str
) -> None:
    """`version` (serve's /health, doctor) asks over httpx itself, whose errors took another
    branch: "lost the connection ... certificate verify failed", "... Connection refused"."""
    with pytest.raises(llm.OllamaUnavailable, match="cannot verify the TLS certificate of"):
        llm.LLM(ollama_tls.url, timeout=5, retry_delays=()).version()
    with pytest.raises(
        llm.OllamaUnavailable, match=f"Ollama isn't running at http://{ollama_down}"
    ):
        llm.LLM(f"http://{ollama_down}", timeout=5, retry_delays=()).version()


@pytest.fixture
def plain_http_reply(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """OLLAMA_HOST with https:// at a plain-HTTP server that answers the hello at once."""
    with raw_server(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n") as host:
        monkeypatch.setenv("OLLAMA_HOST", f"https://{host}")
        yield f"https://{host}"


def test_https_to_a_plain_http_server_says_to_write_http(
    runner: CliRunner, plain_http_reply: str, docs: Path
) -> None:
    result = runner.invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 1
    assert f"TLS with {plain_http_reply} failed (" in result.stderr
    assert "write http:// in OLLAMA_HOST" in result.stderr
    assert "isn't running" not in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("server", sorted(PLAIN_HTTP_REFUSED))
def test_http_to_a_tls_port_says_to_write_https(
    server: str, runner: CliRunner, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http:// at the TLS proxy in front of Ollama: 0.2 printed the proxy's page, HTML and
    carriage returns included, as "Ollama failed" and sent the user to Ollama's log."""
    with raw_server(PLAIN_HTTP_REFUSED[server]) as host:
        monkeypatch.setenv("OLLAMA_HOST", f"http://{host}")
        result = runner.invoke(app, ["ingest", str(docs)])
        doctor = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 1
    assert (
        f"http://{host} speaks HTTPS: it refused a plain-HTTP request (HTTP 400)" in result.stderr
    )
    assert "write https:// in OLLAMA_HOST" in result.stderr
    assert "await embeddings" in result.stderr
    for noise in ("<", "\\x0d", "server log", "Traceback"):
        assert noise not in result.output, noise
    check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "ollama")
    assert check["status"] == "fail" and "speaks HTTPS" in check["detail"]
    assert "write https://" in check["fix"]


def test_http_to_a_port_that_speaks_only_tls_says_to_write_https(
    runner: CliRunner, authority: Authority, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http:// at a port that speaks only TLS (stunnel, a TLS passthrough), which closes the
    connection without a reply: 0.2 said it lost the connection and to read Ollama's log."""
    with tls_only_server(authority.server_context()) as host:
        monkeypatch.setenv("OLLAMA_HOST", f"http://{host}")
        result = runner.invoke(app, ["ingest", str(docs)])
        doctor = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 1
    assert (
        f"http://{host} speaks HTTPS: it closed the connection on a plain-HTTP request"
        in result.stderr
    )
    assert "write https:// in OLLAMA_HOST" in result.stderr
    assert "await embeddings" in result.stderr
    for wrong in ("lost the connection", "server log", "Traceback"):
        assert wrong not in result.output, wrong
    check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "ollama")
    assert check["status"] == "fail" and "speaks HTTPS" in check["detail"]
    assert "write https://" in check["fix"]


def test_a_server_that_drops_every_request_is_still_a_lost_connection() -> None:
    """No TLS behind the port either: the connection is what failed, as before."""
    with raw_server(b"") as host:
        with pytest.raises(llm.OllamaFailed, match="lost the connection") as caught:
            llm.LLM(f"http://{host}", timeout=5, retry_delays=()).version()
    assert "HTTPS" not in str(caught.value) and "server log" in (caught.value.hint or "")


def test_a_web_page_in_an_error_is_reported_by_its_title(
    runner: CliRunner, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy's error page in place of Ollama's JSON error: its title, on one line."""
    page = (
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n"
        b"<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n<center><h1>403 "
        b"Forbidden</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    with raw_server(page) as host:
        monkeypatch.setenv("OLLAMA_HOST", f"http://{host}")
        result = runner.invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 1
    assert f"Ollama at http://{host} failed: 403 Forbidden (HTTP 403)" in result.stderr
    assert "<" not in result.output and "\\x0d" not in result.output


@pytest.fixture
def silent_listener() -> Iterator[str]:
    with raw_server() as host:
        yield host


def test_https_to_a_server_that_never_answers_the_hello_says_so(
    runner: CliRunner, silent_listener: str, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.2 said "cannot reach Ollama (no connection within 10 s)" and to open the firewall,
    though the connection was made: the TLS handshake is what got no answer."""
    monkeypatch.setenv("OLLAMA_HOST", f"https://{silent_listener}")
    monkeypatch.setenv("RAGGED_TIMEOUT", "1")  # the connect timeout is at most this
    result = runner.invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 1
    assert (
        f"TLS with https://{silent_listener} failed (no answer to the handshake within 1 s)"
        in result.stderr
    )
    assert "write http:// in OLLAMA_HOST" in result.stderr
    assert "cannot reach" not in result.stderr and "firewall" not in result.stderr


def test_https_to_a_closed_port_still_says_ollama_is_not_running(
    runner: CliRunner, ollama_down: str, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"https://{ollama_down}")
    result = runner.invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 1
    assert f"Ollama isn't running at https://{ollama_down}" in result.stderr
    assert "TLS" not in result.stderr


def test_plain_http_reads_no_certificates_and_https_reads_the_named_ones(
    ollama: OllamaStandIn, authority: Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trust store is read at the first TLS connection (~20 ms of every cold command
    before), and the context used then is the one SSL_CERT_FILE names."""
    tls._context_for.cache_clear()  # a context an earlier test in this process has used
    plain = llm.LLM(ollama.url, timeout=10, retry_delays=())
    assert len(plain.embed(["alpha beta"], EMBED_MODEL)[0]) == 768
    assert llm._tls().cert_store_stats()["x509_ca"] == 0

    monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca))
    secure = OllamaStandIn(models=(f"{EMBED_MODEL}:latest",)).start(tls=authority.server_context())
    try:
        assert secure.url.startswith("https://")
        assert llm.LLM(secure.url, timeout=10, retry_delays=()).version() == secure.version
    finally:
        secure.stop()
    assert llm._tls().cert_store_stats()["x509_ca"] == 1  # the private CA, and only it


@pytest.mark.parametrize("variable", [None, "SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE"])
def test_the_context_is_httpxs_own_once_it_has_loaded(
    variable: str | None, authority: Authority, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every setting ssl and httpx give a default client context, on whichever Python runs
    this; the same trust anchors once loaded. A future Python that adds a default fails here."""
    if variable == "SSL_CERT_FILE":
        monkeypatch.setenv(variable, str(authority.ca))
    elif variable == "SSL_CERT_DIR":
        monkeypatch.setenv(variable, str(authority.ca.parent))
    elif variable == "SSLKEYLOGFILE":
        monkeypatch.setenv(variable, str(tmp_path / "keys.log"))
    tls._context_for.cache_clear()
    ours, theirs = llm._tls(), httpx.create_ssl_context()
    settings = (
        "protocol options verify_flags verify_mode check_hostname minimum_version "
        "maximum_version keylog_filename post_handshake_auth security_level"
    ).split()
    assert {s: getattr(ours, s) for s in settings} == {s: getattr(theirs, s) for s in settings}
    assert ours.get_ciphers() == theirs.get_ciphers()
    ours._trust()
    assert ours.cert_store_stats() == theirs.cert_store_stats()
    assert ours.get_ca_certs() == theirs.get_ca_certs()
    assert isinstance(ours, ssl.SSLContext)
