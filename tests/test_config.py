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


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("RAGGED_TIMEOUT", "0", "timeout must be from 0.1 to 86400 seconds, not 0.0"),
        ("RAGGED_TIMEOUT", "-5", "timeout must be from 0.1 to 86400 seconds, not -5.0"),
        ("RAGGED_TIMEOUT", "nan", "timeout must be from 0.1 to 86400 seconds, not nan"),
        ("RAGGED_TIMEOUT", "inf", "timeout must be from 0.1 to 86400 seconds, not inf"),
        ("RAGGED_CHROMA_TIMEOUT", "0", "chroma_timeout must be from 0.1 to 86400 seconds"),
        ("OLLAMA_HOST", "[::1", "OLLAMA_HOST must be host, host:port or http(s)://host:port"),
        ("OLLAMA_HOST", "host:99999", "with a port from 1 to 65535, not 'host:99999'"),
        ("RAGGED_ANSWER_TOKENS", "-1", "answer_tokens must be from 16 to 524288 tokens, not -1"),
        ("RAGGED_ANSWER_TOKENS", "8000", "answer_tokens must be at most half of context_window"),
        ("RAGGED_DENSE_WEIGHT", "-1", "dense_weight must be from 0 to 100, not -1.0"),
        ("RAGGED_LEXICAL_WEIGHT", "nan", "lexical_weight must be from 0 to 100, not nan"),
        (
            "RAGGED_MIN_SCORE",
            "nan",
            "min_score must be from -1 to 1 (a cosine similarity), not nan",
        ),
        ("RAGGED_MIN_SCORE", "2", "min_score must be from -1 to 1"),
        ("RAGGED_TOP_K", "0", "top_k must be from 1 to 200 passages, not 0"),
        ("RAGGED_TOP_K", "1.5", "top_k from env RAGGED_TOP_K is not a valid int: '1.5'"),
        ("RAGGED_MAX_PER_SOURCE", "0", "max_per_source must be from 1 to 200"),
        ("RAGGED_CHUNK_TOKENS", "16", "chunk_tokens must be from 32 to 8192 tokens, not 16"),
        (
            "RAGGED_CHUNK_OVERLAP",
            "-1",
            "chunk_overlap must be from 0 to half of chunk_tokens (256)",
        ),
        ("RAGGED_CHUNK_OVERLAP", "500", "chunk_overlap must be from 0 to half of chunk_tokens"),
        ("RAGGED_NUM_CTX", "100", "context_window must be from 512 to 1048576 tokens, not 100"),
        ("RAGGED_EMBED_BATCH", "0", "embed_batch must be from 1 to 2048 texts"),
        ("RAGGED_EMBED_CONCURRENCY", "1000", "embed_concurrency must be from 1 to 64 requests"),
        ("RAGGED_MAX_FILE_MB", "-1", "max_file_mb must be from 0 to 1000000 MB (0: no limit)"),
        ("RAGGED_MAX_FILE_MB", "nan", "max_file_mb must be from 0 to 1000000 MB"),
        ("RAGGED_MODE", "psychic", "mode must be one of hybrid, dense, lexical, not 'psychic'"),
        ("RAGGED_FUSION", "max", "fusion must be one of score, rrf, not 'max'"),
        ("RAGGED_COLLECTION", "../../etc/x", "collection must be 3-512 letters, digits"),
        ("RAGGED_COLLECTION", "a", "collection must be 3-512 letters"),
        ("RAGGED_EMBED_MODEL", " ", None),  # blank: the default stays (as for every blank)
        ("RAGGED_CHAT_MODEL", " ", None),  # blank: chosen from this machine's memory
        ("RAGGED_CHROMA_URL", "ftp://x", "chroma_url must be a URL such as http://host:8000"),
        ("RAGGED_CHROMA_URL", "http://x:70000", "chroma_url must be a URL such as"),
        ("RAGGED_HOME", "/etc/hostname", "/etc/hostname/config.toml: cannot read config file"),
    ],
)
def test_every_setting_is_validated_with_one_line_naming_it_and_its_range(
    runner,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    var: str,
    value: str,
    expected: str | None,
) -> None:
    from ragged.cli import app

    monkeypatch.setenv(var, value)
    result = runner.invoke(app, ["search", "anything"])
    if expected is None:
        assert "must be" not in result.stderr
        return
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("Error: ") and expected in " ".join(result.stderr.split())
    assert "Traceback" not in result.output and "isn't running" not in result.output
    if var == "RAGGED_HOME":
        return
    if not var.startswith("OLLAMA") or "port" in expected:
        assert f"env {var}" in result.stderr or "not a valid" in result.stderr


def test_a_data_dir_that_is_a_file_is_one_line(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from ragged.cli import app

    afile = tmp_path / "afile"
    afile.write_text("x")
    result = runner.invoke(app, ["--home", str(afile), "search", "x"])
    assert result.exit_code == 1
    assert f"home must be a folder (the data dir), not '{afile}' (from flag)" in " ".join(
        result.stderr.split()
    )
