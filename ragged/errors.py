"""Errors a user can meet, each with a message and a hint for what to do next."""

from __future__ import annotations

# Ends a hint for a fault after which the next run picks up where this one stopped (`watch`
# says instead that it does so itself: ragged/cli/watch.py).
RUN_AGAIN = " and run the command again, which finishes any interrupted work"


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
