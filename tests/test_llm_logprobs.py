"""llm.chat with thinking models and llm.judge with logprobs, against the stand-in."""

from __future__ import annotations

import math

import pytest

from ragged.errors import OllamaFailed
from ragged.llm import LLM
from tests.ollama_standin import OllamaStandIn

QUESTION = [
    {
        "role": "system",
        "content": "Judge whether the passage answers the question. Reply yes or no.",
    },
    {
        "role": "user",
        "content": "Capybaras swim well in rivers.\n\nQuestion: Can capybaras swim?",
    },
]


def test_thinking_goes_to_its_callback_not_the_answer() -> None:
    with OllamaStandIn(models=("qwen3:8b",)) as server:
        llm = LLM(server.url)
        thoughts: list[str] = []
        messages = [
            {"role": "user", "content": "[1] Capybaras swim.\n\nQuestion: Do capybaras swim?"}
        ]
        answer = "".join(llm.chat("qwen3:8b", messages, num_ctx=2048, on_thinking=thoughts.append))
        assert "user asks" in "".join(thoughts) and "user asks" not in answer
        assert answer.endswith("[1]")
        quiet: list[str] = []
        again = "".join(
            llm.chat("qwen3:8b", messages, num_ctx=2048, think=False, on_thinking=quiet.append)
        )
        assert quiet == [] and again == answer


def test_judge_reads_yes_and_no_logprobs() -> None:
    with OllamaStandIn(models=("llama3.2:3b",)) as server:
        llm = LLM(server.url)
        found = llm.judge("llama3.2:3b", QUESTION, num_ctx=2048, answers=("yes", "no"))
        assert found["yes"] > found["no"]
        assert math.exp(found["yes"]) + math.exp(found["no"]) == pytest.approx(1.0)
        [body] = [r.body for r in server.requests if r.path == "/api/chat"]
        assert body and body["logprobs"] is True and body["top_logprobs"] == 20
        assert body["options"]["num_predict"] == 1 and "think" not in body


def test_judge_without_logprobs_says_which_ollama_is_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with OllamaStandIn(models=("llama3.2:3b",), version="0.12.6") as server:
        server.answer_override = "yes"
        llm = LLM(server.url)
        original = server._handle

        def no_logprobs(method: str, path: str, raw: bytes):  # type: ignore[no-untyped-def]
            reply = original(method, path, raw)
            if isinstance(reply.body, dict):
                reply.body.pop("logprobs", None)
            return reply

        monkeypatch.setattr(server, "_handle", no_logprobs)
        with pytest.raises(OllamaFailed, match="no logprobs"):
            llm.judge("llama3.2:3b", QUESTION, num_ctx=2048, answers=("yes", "no"))
