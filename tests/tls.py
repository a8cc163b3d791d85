"""A private certificate authority for tests of TLS: a CA and a server certificate for 127.0.0.1.

What a person with Ollama behind a TLS reverse proxy (Caddy, nginx) on another machine has:
a certificate their own CA signed, which no public bundle (certifi's) trusts. Made with
`cryptography`, which ragged already installs (pypdf's AES support), so nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Authority:
    ca: Path  # the CA's certificate: what SSL_CERT_FILE points at
    cert: Path  # the server's certificate, for 127.0.0.1, signed by the CA
    key: Path  # the server's private key

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_authority(folder: Path, *, expired: bool = False) -> Authority:
    """A CA and a server certificate for 127.0.0.1, valid for a day (or, `expired`, a server
    certificate that ran out yesterday), as PEM files in `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ragged tests' private CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    if expired:
        valid = (now - datetime.timedelta(days=2), now - datetime.timedelta(days=1))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    out = Authority(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return out


# What TLS servers answer a plain-HTTP request with: Go's net/http (Caddy, Traefik), nginx
# and Apache. Neither Ollama nor `chroma run` has TLS of its own: https:// means one of these in front.
PLAIN_HTTP_REFUSED = {
    "go": b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
    "nginx": b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\n"
    b"Connection: close\r\n\r\n<html>\r\n<head><title>400 The plain HTTP request was sent "
    b"to HTTPS port</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n"
    b"<center>The plain HTTP request was sent to HTTPS port</center>\r\n<hr><center>nginx"
    b"</center>\r\n</body>\r\n</html>\r\n",
    "apache": b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nConnection: close\r\n"
    b'\r\n<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>400 Bad '
    b"Request</title>\n</head><body>\n<h1>Bad Request</h1>\n<p>Your browser sent a request "
    b"that this server could not understand.<br />\nReason: You're speaking plain HTTP to an "
    b"SSL-enabled server port.<br />\n Instead use the HTTPS scheme to access this URL, please."
    b"<br />\n</p>\n</body></html>\n",
}


@contextmanager
def raw_server(reply: bytes | None = None) -> Iterator[str]:
    """A TCP server that speaks no TLS; yields `127.0.0.1:PORT`. With `reply`, it reads what
    each connection sends first, writes `reply` and closes (Go's net/http, Ollama's, answering
    a TLS hello that happens to hold a newline with "400 Bad Request"; or a TLS proxy's
    refusal of plain HTTP, PLAIN_HTTP_REFUSED); without, it accepts and never writes (the
    same server given a hello with no newline: its request line never ends)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def answer(conn: socket.socket, reply: bytes) -> None:
        # As a real server does: read what came first, answer, then read to the end before
        # closing. Closed with the client's bytes unread, the kernel resets the connection
        # and the client sees "reset by peer" instead of the reply.
        with conn:
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                conn.recv(65536)
                conn.sendall(reply)
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass

    def take(conn: socket.socket) -> None:
        if reply is None:
            held.append(conn)
        else:
            answer(conn, reply)

    _accept(listener, take)
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in held:
            conn.close()


@contextmanager
def tls_only_server(context: ssl.SSLContext) -> Iterator[str]:
    """A port that speaks only TLS, as stunnel or a load balancer's TLS passthrough does;
    yields `127.0.0.1:PORT`. A handshake completes (and the connection then closes); a
    plain-HTTP request fails its handshake and the connection closes without a word, as
    OpenSSL ends it (no alert for an HTTP request; the unread request makes the close a reset).
    """
    listener = socket.create_server(("127.0.0.1", 0))

    def handshake(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(5)
            context.wrap_socket(conn, server_side=True).close()

    _accept(listener, handshake)
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def _accept(listener: socket.socket, take: Callable[[socket.socket], None]) -> None:
    """Hand each connection `listener` accepts to `take`, on a thread of its own, until the
    listener is closed."""

    def serve() -> None:
        while True:
            try:
                conn = listener.accept()[0]
            except OSError:
                return
            threading.Thread(target=take, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
