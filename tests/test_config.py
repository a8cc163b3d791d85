from __future__ import annotations

from pathlib import Path

import pytest

from ragged.config import DEFAULT_OLLAMA_HOST, load_settings, normalize_ollama_host
from ragged.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "url"),
    [
        (None, DEFAULT_OLLAMA_HOST),
        ("", DEFAULT_OLLAMA_HOST),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        ("gpu-box:9999", "http://gpu-box:9999"),
        (":56789", "http://127.0.0.1:56789"),
        ("http://1.2.3.4", "http://1.2.3.4:80"),
        ("https://ollama.example.com", "https://ollama.example.com:443"),
        ("http://host.docker.internal:11434/", "http://host.docker.internal:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("[::1]:11434", "http://[::1]:11434"),
        ("example.com/ollama", "http://example.com:11434/ollama"),
    ],
)
def test_ollama_host_forms(value: str | None, url: str) -> None:
    assert normalize_ollama_host(value) == url


def test_bad_ollama_host_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unsupported scheme"):
        normalize_ollama_host("ftp://x")


def test_precedence_default_file_env_flag(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env.mkdir(parents=True)
    (env / "config.toml").write_text('top_k = 3\nembed_model = "all-minilm"\nchunk_tokens = 256\n')
    monkeypatch.setenv("RAGGED_TOP_K", "4")
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box")
    s = load_settings({"chunk_tokens": 300})
    assert (s.top_k, s.sources["top_k"]) == (4, "env RAGGED_TOP_K")
    assert (s.embed_model, s.sources["embed_model"]) == ("all-minilm", str(env / "config.toml"))
    assert (s.chunk_tokens, s.sources["chunk_tokens"]) == (300, "flag")
    assert (s.chunk_overlap, s.sources["chunk_overlap"]) == (64, "default")
    assert s.ollama_host == "http://gpu-box:11434"


def test_ragged_ollama_host_beats_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "a")
    monkeypatch.setenv("RAGGED_OLLAMA_HOST", "b:1")
    assert load_settings().ollama_host == "http://b:1"


def test_home_comes_from_ragged_home(env: Path) -> None:
    assert load_settings().home == env


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("top_k = 'many'", "top_k"),
        ("no_such_setting = 1", "unknown setting"),
        ("mode = 'psychic'", "mode must be one of"),
        ("chunk_overlap = 600", "chunk_overlap"),
        ("this is not toml", "cannot read config file"),
    ],
)
def test_bad_config_files_name_the_problem(env: Path, content: str, message: str) -> None:
    env.mkdir(parents=True)
    (env / "config.toml").write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_ragged_table_in_config_file(env: Path) -> None:
    env.mkdir(parents=True)
    (env / "config.toml").write_text("[ragged]\ncollection = 'work'\n")
    assert load_settings().collection == "work"
