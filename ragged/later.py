"""Later: one call started on a thread now, its result (or its exception) collected later.

For the waits of a cold command that do not depend on each other: the question's embedding
(an HTTP round trip) while the store opens (importing chromadb, ~0.5 s of a fresh process),
the chat model's context length while passages are retrieved.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Later(Generic[T]):
    """`fn(*args)` running on a daemon thread; `result()` waits for it and returns or raises."""

    def __init__(self, fn: Callable[..., T], *args: object, name: str = "later") -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., T], args: tuple[object, ...]) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # handed to the caller by result(), never printed here
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
