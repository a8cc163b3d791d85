"""TLS and proxies for ragged's HTTP clients (Ollama's, and the Chroma server's heartbeat).

client_context(): the one client context the process's Ollama clients share, as httpx would
make it, but whose trust anchors are read at its first TLS connection. trouble(): one line for
a failed or timed-out connection whose cause is TLS, or a proxy on the way that could not be
reached, where httpx and the clients above it say only that the connection failed.
plain_http_refused() and plain_http_dropped(): one line for http:// at a server that speaks only
TLS, by its refusal or by a TLS handshake after it dropped the request. direct_mounts() keeps
Ollama on this machine clear of proxies.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from typing import Any

# OpenSSL's verify codes that SSL_CERT_FILE cannot mend (X509_V_ERR_*).
NAME_MISMATCH = {62, 63, 64}  # HOSTNAME_MISMATCH, EMAIL_MISMATCH, IP_ADDRESS_MISMATCH
OUT_OF_DATE = {9, 10}  # CERT_NOT_YET_VALID, CERT_HAS_EXPIRED
# OpenSSL's reasons when the other end does not speak TLS at all (a plain-HTTP server).
NOT_TLS = {
    "WRONG_VERSION_NUMBER",
    "RECORD_LAYER_FAILURE",
    "HTTP_REQUEST",
    "PACKET_LENGTH_TOO_LONG",
    "UNKNOWN_PROTOCOL",
}

# The longest wait for the TLS handshake plain_http_dropped() tries after a dropped request.
PROBE_TIMEOUT = 1.0
# How TLS servers refuse a plain-HTTP request, with HTTP 400 (lower case, spaces collapsed):
# Go's net/http (Caddy, Traefik), nginx, Apache httpd.
PLAIN_HTTP_REFUSALS = (
    "client sent an http request to an https server",
    "the plain http request was sent to https port",
    "speaking plain http to an ssl-enabled server port",
)


def anchors() -> tuple[str, str | None, str | None]:
    """(what names them, cafile, capath): the trust anchors httpx would load now."""
    return _anchors(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


def _anchors(cert_file: str | None, cert_dir: str | None) -> tuple[str, str | None, str | None]:
    """By httpx's order: SSL_CERT_FILE, else SSL_CERT_DIR, else certifi's bundle."""
    if cert_file:
        return "SSL_CERT_FILE", cert_file, None
    if cert_dir:
        return "SSL_CERT_DIR", None, cert_dir
    import certifi

    return "certifi's bundle", certifi.where(), None


class CertificatesUnreadable(OSError):
    """The CA certificates to trust could not be read. An OSError, so that raised inside a
    connection attempt it reaches the caller in httpx's ConnectError, where trouble() finds it."""

    def __init__(self, source: str, path: str, cause: OSError) -> None:
        import ssl

        if isinstance(cause, ssl.SSLError):
            reason = f"no PEM certificate read from it ({cause.reason or cause})"
        else:
            reason = cause.strerror or str(cause)
        super().__init__(f"cannot read the CA certificates {source} names ({path}): {reason}")
        self.message = str(self)
        self.hint = (
            "reinstall ragged: the certifi package's CA bundle is missing or damaged"
            if source.startswith("certifi")
            else f"point {source} at a PEM file of CA certificates (a folder of them, hashed "
            "by `openssl rehash`, for SSL_CERT_DIR), or unset it"
        )

    @classmethod
    def now(cls, cause: OSError) -> CertificatesUnreadable:
        """For `cause`, raised while loading the anchors the environment names now."""
        source, cafile, capath = anchors()
        return cls(source, str(cafile or capath), cause)


def client_context() -> Any:
    """One TLS context for every Ollama client of the process (httpx builds one per client,
    ~20 ms each, even for plain http); a new one when the environment names other anchors."""
    return _context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _context_for(cert_file: str | None, cert_dir: str | None) -> Any:
    """httpx's default context, but for when its trust anchors are read (`_trust_on_first_use`).

    The rest is what `ssl.create_default_context` sets on this Python (the test that
    compares the two keeps it so on later Pythons).
    """
    import ssl

    context = _trust_on_first_use()(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    context.anchors = _anchors(cert_file, cert_dir)
    if sys.version_info >= (3, 13):  # create_default_context's stricter chain checks
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog and not sys.flags.ignore_environment:
        context.keylog_filename = keylog
    return context


@functools.cache
def _trust_on_first_use() -> type:
    import ssl

    class TrustOnFirstUse(ssl.SSLContext):
        """A client context that reads its trust anchors at its first TLS connection.

        Reading certifi's bundle (117 CAs) costs ~20 ms of CPU, holding the GIL, before a
        cold command's first request; Ollama is mostly plain http on this machine or the
        LAN, where no certificate is ever checked. httpx reaches the context only through
        `wrap_socket` (a direct connection) and `wrap_bio` (TLS through an HTTPS proxy, and
        anyio's streams), so both load the anchors first, whatever the URL or proxy. Until
        they are loaded it trusts nothing: a failure to load fails closed.
        """

        anchors: tuple[str, str | None, str | None] = ("", None, None)
        _trusted = False
        _loading = threading.Lock()

        def _trust(self) -> None:
            if not self._trusted:
                with self._loading:
                    if not self._trusted:
                        source, cafile, capath = self.anchors
                        try:
                            self.load_verify_locations(cafile=cafile, capath=capath)
                        except OSError as exc:  # ssl.SSLError included: not PEM
                            raise CertificatesUnreadable(
                                source, str(cafile or capath), exc
                            ) from exc
                        self._trusted = True

        def wrap_socket(self, *args: Any, **kwargs: Any) -> Any:
            self._trust()
            return super().wrap_socket(*args, **kwargs)

        def wrap_bio(self, *args: Any, **kwargs: Any) -> Any:
            self._trust()
            return super().wrap_bio(*args, **kwargs)

    return TrustOnFirstUse


def trouble(
    exc: BaseException,
    where: str,
    setting: str,
    server: str,
    waited: float | None = None,
    direct: bool = False,
) -> tuple[str, str] | None:
    """(message, hint) when a connection to `where` failed, or got no answer, because of TLS
    or of a proxy on the way rather than `server` itself; None when `server` is what failed.

    httpx and the clients above it report both as a failed connection (or a connect timeout),
    and ragged then said that `server` was not running, or could not be reached. `setting` is
    the variable that holds the URL (OLLAMA_HOST, RAGGED_CHROMA_URL); `waited`, the connect
    timeout; `direct`, whether the client goes past the environment's proxies (`direct_mounts`).
    """
    found = _tls_trouble(exc, where, setting, server, waited, direct)
    if found is None and not direct:
        found = _unreachable_proxy(where, server, waited)
    return found


def _tls_trouble(
    exc: BaseException,
    where: str,
    setting: str,
    server: str,
    waited: float | None,
    direct: bool,
) -> tuple[str, str] | None:
    """(message, hint) when what failed behind `exc` is TLS with `where`: the cause is still
    in the exception's chain."""
    import ssl

    plain_http = (
        f"{server} itself serves plain HTTP: unless a TLS proxy stands in front of it, "
        f"write http:// in {setting}"
    )
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, CertificatesUnreadable):
            return current.message, current.hint
        if isinstance(current, ssl.SSLCertVerificationError):
            proxy = None if direct else _tls_proxy_for(where)
            of = f"{where}, or of the proxy {proxy} on the way" if proxy else where
            message = f"cannot verify the TLS certificate of {of}: "
            message += str(current.verify_message).rstrip(".")
            if current.verify_code in NAME_MISMATCH:
                hint = f"name the server in {setting} as its certificate does"
            elif current.verify_code in OUT_OF_DATE:
                hint = "renew the server's certificate, or set this machine's clock right"
            else:
                hint = _untrusted_hint()
            return message, hint
        if isinstance(current, ssl.SSLError):
            reason = current.reason or str(current).split("\n", 1)[0] or type(current).__name__
            if reason == "UNEXPECTED_EOF_WHILE_READING":
                reason = f"it closed the connection during the handshake: {reason}"
            if reason in NOT_TLS:
                return f"TLS with {where} failed ({reason})", plain_http
            return (
                f"TLS with {where} failed ({reason})",
                f"check what terminates TLS in front of {server}: its log says why it ended "
                "the handshake",
            )
        # CPython's words for a handshake the server never answered: a plain-HTTP server
        # (Go's, Ollama's) waits for a request line that a TLS hello does not hold.
        if isinstance(current, TimeoutError) and "handshake operation timed out" in str(current):
            within = f" within {waited:g} s" if waited is not None else ""
            return f"TLS with {where} failed (no answer to the handshake{within})", plain_http
        current = current.__cause__ or current.__context__
    return None


def _untrusted_hint() -> str:
    """What to do about a certificate no trusted CA signed, by where the anchors came from."""
    source, cafile, capath = anchors()
    if source == "SSL_CERT_FILE":
        return f"the CA that signed it is not in {cafile} (SSL_CERT_FILE): add its certificate"
    if source == "SSL_CERT_DIR":
        return (
            f"the CA that signed it is not in {capath} (SSL_CERT_DIR) under a hashed name: "
            f"put its certificate there and run `openssl rehash {capath}`"
        )
    return "if your own CA signed it, point SSL_CERT_FILE at that CA's certificate"


def _tls_proxy_for(where: str) -> str | None:
    """The https:// proxy the environment routes `where` through, if any: TLS with it can be
    what failed, and a certificate "of http://..." named nothing the user could find."""
    found = proxy_for(where)
    return found[0] if found and found[0].lower().startswith("https://") else None


def proxy_for(where: str) -> tuple[str, str] | None:
    """(proxy URL, the variable that names it) the environment routes `where` through, read
    as httpx reads it (http_proxy, https_proxy, all_proxy, no_proxy; lower case first)."""
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(where)
    proxies = urllib.request.getproxies_environment()
    scheme = next((s for s in (parts.scheme, "all") if proxies.get(s)), None)
    if scheme is None:
        return None
    # no_proxy as the environment gives it, as httpx reads it (urllib.request's own
    # proxy_bypass would also ask macOS's and Windows's settings); not in typeshed.
    bypass = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009
    if bypass(parts.netloc, proxies):
        return None
    names = (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")
    return without_password(proxies[scheme]), next(
        (n for n in names if os.environ.get(n)), names[0]
    )


def without_password(url: str) -> str:
    """`url` with the password of its user part, if any, as *** (http://user:***@host:3128):
    the proxy is named on stderr, which terminals show and logs keep."""
    scheme, sep, rest = url.rpartition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


def this_machine(where: str) -> bool:
    """Whether a URL names this machine: localhost, a loopback address, or 0.0.0.0."""
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(where).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def direct_mounts(where: str) -> dict[str, None]:
    """httpx `mounts` that send requests to `where` past any proxy when it is this machine.

    A proxy cannot reach this machine's loopback, yet httpx sends 127.0.0.1 through
    http_proxy unless no_proxy lists it: with a company proxy in the environment, down or
    reachable only on its VPN, an Ollama running here read as "Ollama isn't running". Go's
    clients, Ollama's own among them, never proxy a loopback address."""
    from urllib.parse import urlsplit

    host = urlsplit(where).hostname
    if not host or not this_machine(where):
        return {}
    return {f"all://[{host}]" if ":" in host else f"all://{host}": None}


def _unreachable_proxy(where: str, server: str, waited: float | None) -> tuple[str, str] | None:
    """(message, hint) when a request to `where` went through a proxy, which is then what a
    failed or timed-out connection failed to reach; else None."""
    from urllib.parse import urlsplit

    found = proxy_for(where)
    if found is None:
        return None
    proxy, variable = found
    within = f" (no connection within {waited:g} s)" if waited is not None else ""
    return (
        f"cannot reach the proxy {proxy} ({variable}) on the way to {server} at {where}{within}",
        f"start the proxy or correct {variable}; if {server} can be reached without it, add "
        f"{urlsplit(where).hostname} to no_proxy",
    )


def plain_http_refused(status: int, body: str, where: str, setting: str) -> tuple[str, str] | None:
    """(message, hint) if a reply is a TLS server refusing a plain-HTTP request, else None.

    http:// at the TLS proxy in front of a server gets a 400 and a page of the proxy's: shown
    as the server's own error, it sent people to the server's log."""
    text = " ".join(body.split()).lower()
    if status != 400 or not any(words in text for words in PLAIN_HTTP_REFUSALS):
        return None
    return (
        f"{where} speaks HTTPS: it refused a plain-HTTP request (HTTP 400)",
        f"write https:// in {setting}",
    )


def plain_http_dropped(
    where: str, setting: str, connect_timeout: float, direct: bool = False
) -> tuple[str, str] | None:
    """(message, hint) if `where`, an http:// URL that just closed or reset a request without
    a reply, completes a TLS handshake; else None.

    A port that speaks only TLS (stunnel, a load balancer's passthrough) drops a plain-HTTP
    request without a word, as OpenSSL does, and ragged said it had lost the connection.
    Asked only after that failure, so a working server is never probed. Not when the request
    went through a proxy (`direct` False and one applies): the proxy is what dropped it. A
    plain server that awaits a request line gets no line from a TLS hello: the probe waits at
    most PROBE_TIMEOUT (or the client's own connect timeout, if shorter).
    """
    import socket
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(where)
    if parts.scheme != "http" or not parts.hostname or (not direct and proxy_for(where)):
        return None
    # Only whether the far end speaks TLS: nothing is sent over it, so nothing is verified.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    timeout = min(PROBE_TIMEOUT, connect_timeout)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout) as sock:
            context.wrap_socket(sock, server_hostname=parts.hostname).close()
    except (OSError, ValueError):
        return None
    return (
        f"{where} speaks HTTPS: it closed the connection on a plain-HTTP request",
        f"write https:// in {setting}",
    )
