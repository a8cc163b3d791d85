"""Settings: defaults < config file < environment < command-line flags, resolved in one place."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ragged.errors import ConfigError

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
DEFAULT_OLLAMA_PORT = 11434
DEFAULT_EMBED_MODEL = "nomic-embed-text"
DEFAULT_COLLECTION = "default"
CONFIG_FILENAME = "config.toml"
MODES = ("hybrid", "dense", "lexical")
FUSIONS = ("score", "rrf")


def _setting(default: Any, help: str, env: str | None = None) -> Any:
    return field(default=default, metadata={"help": help, "env": env})


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know; built once per run by `load_settings`."""

    home: Path = _setting(None, "Data directory: index, manifest, lock.", "RAGGED_HOME")
    ollama_host: str = _setting(
        DEFAULT_OLLAMA_HOST, "Where Ollama answers (`host`, `host:port` or a URL).", "OLLAMA_HOST"
    )
    chat_model: str | None = _setting(
        None, "Generation model; empty = chosen from this machine's memory.", "RAGGED_CHAT_MODEL"
    )
    embed_model: str = _setting(DEFAULT_EMBED_MODEL, "Embedding model.", "RAGGED_EMBED_MODEL")
    collection: str = _setting(DEFAULT_COLLECTION, "Collection to use.", "RAGGED_COLLECTION")
    chunk_tokens: int = _setting(512, "Chunk size in tokens (cl100k).", "RAGGED_CHUNK_TOKENS")
    chunk_overlap: int = _setting(
        64, "Tokens shared by neighbouring chunks.", "RAGGED_CHUNK_OVERLAP"
    )
    top_k: int = _setting(6, "Passages retrieved for a question.", "RAGGED_TOP_K")
    mode: str = _setting("hybrid", "Retrieval: hybrid, dense or lexical.", "RAGGED_MODE")
    fusion: str = _setting(
        "score",
        "Hybrid fusion: score (cosine + scaled BM25) or rrf (reciprocal ranks).",
        "RAGGED_FUSION",
    )
    dense_weight: float = _setting(
        1.5, "Weight of the dense side in hybrid fusion.", "RAGGED_DENSE_WEIGHT"
    )
    lexical_weight: float = _setting(
        1.0, "Weight of the lexical (BM25) side in hybrid fusion.", "RAGGED_LEXICAL_WEIGHT"
    )
    max_per_source: int = _setting(
        3, "Most passages one file may contribute.", "RAGGED_MAX_PER_SOURCE"
    )
    rerank: int = _setting(
        0,
        "Best passages the chat model re-judges, yes or no, before answering; 0 = off "
        "(one chat request each).",
        "RAGGED_RERANK",
    )
    min_score: float = _setting(
        0.0,
        "Fixed cosine floor for relevance; 0 = calibrated per collection, for any model.",
        "RAGGED_MIN_SCORE",
    )
    context_window: int = _setting(
        8192,
        "Context (num_ctx) asked of the chat model; capped by the model's own.",
        "RAGGED_NUM_CTX",
    )
    answer_tokens: int = _setting(
        1024, "Room kept for the answer in the context.", "RAGGED_ANSWER_TOKENS"
    )
    embed_batch: int = _setting(32, "Texts per embedding request.", "RAGGED_EMBED_BATCH")
    embed_concurrency: int = _setting(
        2, "Embedding requests in flight (match OLLAMA_NUM_PARALLEL).", "RAGGED_EMBED_CONCURRENCY"
    )
    timeout: float = _setting(
        300.0, "Longest wait for one Ollama request, retries included (seconds).", "RAGGED_TIMEOUT"
    )
    max_file_mb: float = _setting(
        50.0,
        "Files larger than this are skipped (a .docx or .pptx by what it unpacks to).",
        "RAGGED_MAX_FILE_MB",
    )
    parser_memory_mb: float = _setting(
        0.0,
        "Memory one PDF or image parser process may use before its file fails (0: 1/8 of "
        "this machine's memory, at least 1.5 GiB).",
        "RAGGED_PARSER_MEMORY_MB",
    )
    watch_purge_s: float = _setting(
        30.0,
        "Quiet seconds after which `watch` makes deleted text unreadable in the files "
        "(0: after each batch).",
        "RAGGED_WATCH_PURGE_S",
    )
    chroma_url: str | None = _setting(
        None, "Chroma server URL; empty = embedded store under home.", "RAGGED_CHROMA_URL"
    )
    chroma_token: str | None = _setting(None, "Chroma server auth token.", "RAGGED_CHROMA_TOKEN")
    chroma_tenant: str = _setting("default_tenant", "Chroma tenant.", "RAGGED_CHROMA_TENANT")
    chroma_database: str = _setting(
        "default_database", "Chroma database.", "RAGGED_CHROMA_DATABASE"
    )
    chroma_timeout: float = _setting(
        120.0, "Seconds to wait for one Chroma server response.", "RAGGED_CHROMA_TIMEOUT"
    )
    # Where each value came from, for `ragged config`; not itself a setting.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def config_path(self) -> Path:
        """The config file that was read (or would have been, had it existed)."""
        return Path(self.sources.get("config_file") or config_dir() / CONFIG_FILENAME)


SETTING_FIELDS = tuple(f for f in dataclasses.fields(Settings) if f.name != "sources")


def platform_data_dir() -> Path:
    """The per-user data directory the platform expects (XDG, macOS, Windows)."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "ragged"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "ragged"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ragged"


def platform_config_dir() -> Path:
    """The per-user config directory the platform expects."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "ragged"
    if os.name == "nt":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "ragged"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ragged"


# The data dir holds the text of every ingested document: readable by its owner alone, so
# that a 0600 document does not become readable to other local users through the index.
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Make `path` and its missing parents, each readable by this user only (0700).

    Folders that exist already keep their mode: `ragged doctor` warns about loose ones.
    """
    missing: list[Path] = []
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            pass  # made meanwhile by another process
        else:
            os.chmod(folder, PRIVATE_DIR)  # mkdir's mode is masked by the umask
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty and 0600 if it does not exist, before a library creates it 0644."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        pass
    return path


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """RAGGED_HOME keeps config beside the data, which is what keeps tests isolated."""
    env = os.environ if env is None else env
    if env.get("RAGGED_HOME"):
        return Path(env["RAGGED_HOME"]).expanduser()
    return platform_config_dir()


def normalize_ollama_host(value: str | None) -> str:
    """Turn OLLAMA_HOST in any of its forms into a URL, with Ollama's own rules.

    "" -> http://127.0.0.1:11434; "1.2.3.4" -> http://1.2.3.4:11434; ":5678" -> port 5678 on
    127.0.0.1; "http://h" -> port 80, "https://h" -> 443; "0.0.0.0" is a bind-all address
    for the server, so a client goes to 127.0.0.1 instead.
    """
    value = (value or "").strip()
    if not value:
        return DEFAULT_OLLAMA_HOST
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "http", value
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigError(
            f"OLLAMA_HOST has an unsupported scheme: {value!r}",
            hint="use host, host:port or http(s)://host:port",
        )
    default_port = DEFAULT_OLLAMA_PORT if not sep else (443 if scheme == "https" else 80)
    try:
        parts = urlsplit(f"{scheme}://{rest}")
        port = parts.port
    except ValueError as exc:  # "[::1" (an unclosed IPv6 bracket), port 99999, port "x"
        raise ConfigError(
            f"OLLAMA_HOST must be host, host:port or http(s)://host:port with a port from 1 "
            f"to 65535, not {value!r}"
        ) from exc
    if port == 0:
        raise ConfigError(f"OLLAMA_HOST has port 0, which nothing listens on: {value!r}")
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    path = parts.path.rstrip("/")
    return f"{scheme}://{host}:{port or default_port}{path}"


def _coerce(name: str, kind: Any, raw: Any, origin: str) -> Any:
    text_kind = str(kind)
    if raw is None or (isinstance(raw, str) and raw.strip() == "" and "None" in text_kind):
        return None
    try:
        if isinstance(raw, bool):
            raise TypeError("a boolean is not a number")
        if text_kind.startswith("int"):
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError("not a whole number")
            return int(raw)
        if text_kind.startswith("float"):
            return float(raw)
        if text_kind.startswith("Path"):
            return Path(str(raw)).expanduser()
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} from {origin} is not a valid {text_kind}: {raw!r}") from exc


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return {}  # the usual case: and then tomllib (~10 ms of every command) is not imported
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from exc
    import tomllib

    try:
        with fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from exc
    # Accept both a flat file and one with a [ragged] table.
    return dict(data.get("ragged", data))


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Resolve every setting; later steps override earlier ones, and each remembers its origin."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    known = {f.name: f for f in SETTING_FIELDS}

    # 1. defaults
    for f in SETTING_FIELDS:
        values[f.name], sources[f.name] = f.default, "default"
    values["home"] = platform_data_dir()

    # 2. config file
    path = config_file or (
        Path(env["RAGGED_CONFIG"]).expanduser() if env.get("RAGGED_CONFIG") else None
    )
    path = path or config_dir(env) / CONFIG_FILENAME
    sources["config_file"] = str(path)
    for key, raw in _read_config_file(path).items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(
                f"{path}: unknown setting {key!r}", hint="`ragged config` lists the settings"
            )
        values[name] = _coerce(name, known[name].type, raw, str(path))
        sources[name] = str(path)

    # 3. environment; RAGGED_OLLAMA_HOST is allowed too, and beats Ollama's own variable
    for f in SETTING_FIELDS:
        names = [f.metadata["env"]] if f.metadata["env"] else []
        if f.name == "ollama_host":
            names.append("RAGGED_OLLAMA_HOST")
        for var in names:
            if var in env and (env[var].strip() or f.name in ("chroma_url", "chat_model")):
                values[f.name] = _coerce(f.name, f.type, env[var], f"env {var}")
                sources[f.name] = f"env {var}"

    # 4. command-line flags
    for name, raw in flags.items():
        values[name] = _coerce(name, known[name].type, raw, "flag")
        sources[name] = "flag"

    try:
        values["ollama_host"] = normalize_ollama_host(values["ollama_host"])
    except ConfigError as exc:
        raise ConfigError(f"{exc.message} (from {sources['ollama_host']})", exc.hint) from exc
    settings = Settings(**values, sources=sources)
    _validate(settings)
    return settings


# The range of every numeric setting: (lowest, highest, unit). Bounds are what ragged can use,
# not what is wise: e.g. 8192 tokens is the longest input common embedding models read.
RANGES: dict[str, tuple[float, float, str]] = {
    "chunk_tokens": (32, 8192, "tokens"),
    "top_k": (1, 200, "passages"),
    "max_per_source": (1, 200, "passages"),
    "dense_weight": (0, 100, ""),
    "lexical_weight": (0, 100, ""),
    "min_score": (-1, 1, "(a cosine similarity)"),
    "context_window": (512, 1_048_576, "tokens"),
    "answer_tokens": (16, 524_288, "tokens"),
    "embed_batch": (1, 2048, "texts"),
    "embed_concurrency": (1, 64, "requests"),
    "timeout": (0.1, 86_400, "seconds"),
    "chroma_timeout": (0.1, 86_400, "seconds"),
    "max_file_mb": (0, 1_000_000, "MB (0: no limit)"),
    "parser_memory_mb": (0, 1_000_000, "MB (0: 1/8 of memory, at least 1.5 GiB)"),
    "watch_purge_s": (0, 86_400, "seconds"),
    "rerank": (0, 200, "passages (0: off)"),
}
# Chroma's rule for collection names, which also makes them safe as catalog file names:
# 3-512 of [a-zA-Z0-9._-], starting and ending with a letter or digit, no "..".
COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]")


def _validate(s: Settings) -> None:
    """Every setting within what ragged can use; one line naming it, its range and its origin."""

    def fail(name: str, rule: str, value: Any) -> ConfigError:
        origin = s.sources.get(name, "default")
        return ConfigError(f"{name} must be {rule}, not {value!r} (from {origin})")

    if s.home.exists() and not s.home.is_dir():
        raise fail("home", "a folder (the data dir)", str(s.home))
    if s.mode not in MODES:
        raise fail("mode", f"one of {', '.join(MODES)}", s.mode)
    if s.fusion not in FUSIONS:
        raise fail("fusion", f"one of {', '.join(FUSIONS)}", s.fusion)
    for name, (low, high, unit) in RANGES.items():
        value = getattr(s, name)
        if not (math.isfinite(value) and low <= value <= high):
            raise fail(name, f"from {_num(low)} to {_num(high)}{' ' + unit if unit else ''}", value)
    if not 0 <= s.chunk_overlap <= s.chunk_tokens // 2:
        # More overlap than half a chunk would make most of every chunk a copy of the last.
        raise fail(
            "chunk_overlap",
            f"from 0 to half of chunk_tokens ({s.chunk_tokens // 2})",
            s.chunk_overlap,
        )
    if s.answer_tokens > s.context_window // 2:
        raise fail(
            "answer_tokens",
            f"at most half of context_window ({s.context_window // 2}), to leave room for the sources",
            s.answer_tokens,
        )
    if s.dense_weight + s.lexical_weight <= 0:
        raise fail("lexical_weight", "above 0 when dense_weight is 0", s.lexical_weight)
    if not COLLECTION_NAME.fullmatch(s.collection) or ".." in s.collection:
        raise fail(
            "collection",
            "3-512 letters, digits, '.', '_' or '-', starting and ending with a letter or digit",
            s.collection,
        )
    for name in ("embed_model", "chroma_tenant", "chroma_database"):
        if not str(getattr(s, name)).strip():
            raise fail(name, "a name", getattr(s, name))
    if s.chroma_url:
        _check_url("chroma_url", s.chroma_url, fail)


def _num(value: float) -> str:
    """1048576 -> '1048576' (not '1.04858e+06'), 0.1 -> '0.1'."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _check_url(name: str, url: str, fail: Any) -> None:
    """http(s)://host[:port][/path] or host[:port], with a port from 1 to 65535."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    rule = "a URL such as http://host:8000 (http or https, a port from 1 to 65535)"
    try:
        port = parts.port
    except ValueError as exc:
        raise fail(name, rule, url) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise fail(name, rule, url)
    if parts.username is not None or parts.password is not None:
        # chromadb sends neither, and every error about the server would print them.
        from ragged.tls import without_password

        raise fail(
            name,
            "a URL without a user or password (chromadb does not send them; "
            "RAGGED_CHROMA_TOKEN holds a token for the server)",
            without_password(url),
        )


def describe(settings: Settings) -> list[tuple[str, Any, str, str]]:
    """(name, value, origin, help) for every setting, for `ragged config`."""
    return [
        (
            f.name,
            getattr(settings, f.name),
            settings.sources.get(f.name, "default"),
            f.metadata["help"],
        )
        for f in SETTING_FIELDS
        if f.name != "chroma_token" or not settings.chroma_token
    ]
