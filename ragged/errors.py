"""Errors a user can meet, each with a message and a hint for what to do next."""

from __future__ import annotations


class RaggedError(Exception):
    """Base for every error ragged reports as one line instead of a traceback."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(RaggedError):
    """A setting has a value ragged cannot use."""


class OllamaUnavailable(RaggedError):
    """Ollama did not answer at the configured host."""


class ModelMissing(RaggedError):
    """A model is not pulled into Ollama."""

    def __init__(self, model: str, host: str) -> None:
        super().__init__(
            f"model '{model}' is not pulled into Ollama at {host}",
            hint=f"run `ollama pull {model}` (or `ragged doctor --fix`)",
        )
        self.model = model


class OllamaFailed(RaggedError):
    """Ollama answered with an error we could not retry our way out of."""


class EmbeddingMismatch(RaggedError):
    """The collection was built with another embedding model or dimension."""


class StoreError(RaggedError):
    """The vector store or the local index could not be read or written."""


class UnreadableDocument(RaggedError):
    """One input file could not be turned into text; the run goes on without it."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def tls_trouble(
    exc: BaseException, where: str, setting: str, server: str, waited: float | None = None
) -> tuple[str, str] | None:
    """(message, hint) when what failed behind `exc` is a TLS handshake with `where`, else None.

    httpx and the clients above it report a failed handshake as a failed connection, and one
    that got no answer as a connect timeout; ragged then said that `server` was not running,
    or could not be reached. The ssl error is still in the chain. `setting` is the variable
    that holds the URL (OLLAMA_HOST, RAGGED_CHROMA_URL); `waited`, the connect timeout.
    """
    import ssl

    plain_http = (
        f"{server} itself serves plain HTTP: unless a TLS proxy stands in front of it, "
        f"write http:// in {setting}"
    )
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return (
                f"cannot verify the TLS certificate of {where}: {current.verify_message}",
                "if your own CA signed it, point SSL_CERT_FILE at that CA's certificate "
                "(or SSL_CERT_DIR at a folder of them)",
            )
        if isinstance(current, ssl.SSLError):
            reason = current.reason or str(current).split("\n", 1)[0] or type(current).__name__
            return f"TLS with {where} failed ({reason})", plain_http
        # CPython's words for a handshake the server never answered: a plain-HTTP server
        # (Go's, Ollama's) waits for a request line that a TLS hello does not hold.
        if isinstance(current, TimeoutError) and "handshake operation timed out" in str(current):
            within = f" within {waited:g} s" if waited is not None else ""
            return f"TLS with {where} failed (no answer to the handshake{within})", plain_http
        current = current.__cause__ or current.__context__
    return None
