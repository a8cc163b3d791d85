"""The embedding-model table: every model's query and document formats reach Ollama's wire."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragged.cli import app
from ragged.doctor import check_embedding_format
from ragged.models import EMBEDDING_MODELS, embed_prefixes, embedding_format, think_setting
from tests.ollama_standin import OllamaStandIn


def run(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_model_names_the_model_card_it_follows() -> None:
    for name, fmt in EMBEDDING_MODELS.items():
        assert fmt.source.startswith("https://"), name
        assert "{" not in fmt.document.replace("{title}", ""), name


def test_formats_from_the_model_cards() -> None:
    gemma = embedding_format("embeddinggemma:300m")
    assert gemma is not None
    assert gemma.format_query("why?") == "task: search result | query: why?"
    assert gemma.format_document("text", "Install") == "title: Install | text: text"
    assert gemma.format_document("text", None) == "title: none | text: text"
    qwen = embedding_format("qwen3-embedding:0.6b")
    assert qwen is not None and qwen.format_document("text") == "text"
    assert qwen.format_query("why?").endswith("\nQuery:why?")
    assert embed_prefixes("library/mxbai-embed-large:335m")[1] == ""
    assert embedding_format("some-new-model") is None and embed_prefixes("x") == ("", "")


@pytest.mark.parametrize("name", sorted(EMBEDDING_MODELS))
def test_prefixes_reach_the_wire(
    name: str, runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    """Documents at ingest and the question at search carry the model's own formats."""
    ollama.add_model(f"{name}:latest")
    fmt = EMBEDDING_MODELS[name]
    run(runner, "ingest", str(docs), "--quiet", "--embed-model", name)
    documents = [
        text
        for r in ollama.requests
        if r.path == "/api/embed" and r.body
        for text in r.body["input"]
    ]
    assert documents
    if "{title}" in fmt.document:
        # embeddinggemma: the top heading is the title; files without headings say "none".
        assert any(t.startswith("title: Installing Foxtrot | text: ") for t in documents)
        assert any(t.startswith("title: none | text: ") for t in documents)
    else:
        assert all(t.startswith(fmt.document) for t in documents)
    ollama.reset()
    run(runner, "search", "capybara swimming", "--embed-model", name)
    # the question first, then the relevance calibration's probe questions, all as queries
    query, *probes = [r.body for r in ollama.requests if r.path == "/api/embed" and r.body]
    assert query["input"] == [fmt.query + "capybara swimming"]
    assert all(t.startswith(fmt.query) for body in probes for t in body["input"])


def test_an_unknown_model_gets_no_prefix_and_doctor_says_so(
    runner: CliRunner, ollama: OllamaStandIn, docs: Path
) -> None:
    ollama.add_model("mystery-embed:latest")
    run(runner, "ingest", str(docs), "--quiet", "--embed-model", "mystery-embed")
    first = next(r.body for r in ollama.requests if r.path == "/api/embed" and r.body)
    assert not first["input"][0].startswith(("search_document", "title:"))
    check = check_embedding_format("mystery-embed")
    assert check.status == "warn" and "does not know mystery-embed" in check.detail
    assert check_embedding_format("nomic-embed-text").status == "ok"


@pytest.mark.parametrize(
    ("model", "capabilities", "show", "think"),
    [
        ("llama3.2:3b", ("completion",), False, None),  # `think` there is a 400
        ("qwen3:8b", ("completion", "thinking"), False, False),
        ("qwen3:8b", ("completion", "thinking"), True, True),
        ("gpt-oss:20b", ("completion", "thinking"), False, "low"),  # cannot be turned off
    ],
)
def test_think_setting(
    model: str, capabilities: tuple[str, ...], show: bool, think: object
) -> None:
    assert think_setting(model, capabilities, show) == think
