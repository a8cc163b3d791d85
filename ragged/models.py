"""Model naming, the embedding models' prefixes, memory tiers and the chat-model choice."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragged.hardware import GiB, MiB

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.hardware import Host


@dataclass(frozen=True)
class EmbeddingFormat:
    """How an embedding model wants its inputs, as its model card says.

    `query` goes before a question. `document` goes before a passage; `{title}` in it becomes
    the passage's document title, or "none" when it has none (embeddinggemma's own rule).
    Ollama adds none of these itself, and a model given bare text retrieves worse.
    """

    query: str
    document: str
    source: str  # the model card that gives the format

    def format_query(self, text: str) -> str:
        return self.query + text

    def format_document(self, text: str, title: str | None = None) -> str:
        return self.document.replace("{title}", title or "none") + text


QWEN3_INSTRUCT = (
    "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
)
BGE_QUERY = "Represent this sentence for searching relevant passages: "

# One row per embedding model in Ollama's library that ragged knows, keyed by base name. A
# model missing here gets no prefix, and `ragged doctor` says so: right for models trained
# without instructions, a guess for anything else.
EMBEDDING_MODELS: dict[str, EmbeddingFormat] = {
    "nomic-embed-text": EmbeddingFormat(
        "search_query: ",
        "search_document: ",
        "https://huggingface.co/nomic-ai/nomic-embed-text-v1.5",
    ),
    "nomic-embed-text-v2-moe": EmbeddingFormat(
        "search_query: ",
        "search_document: ",
        "https://huggingface.co/nomic-ai/nomic-embed-text-v2-moe",
    ),
    "embeddinggemma": EmbeddingFormat(
        "task: search result | query: ",
        "title: {title} | text: ",
        "https://ai.google.dev/gemma/docs/embeddinggemma/model_card",
    ),
    # Instruction on queries only, and no space after "Query:" (the model card's own code).
    "qwen3-embedding": EmbeddingFormat(
        QWEN3_INSTRUCT, "", "https://huggingface.co/Qwen/Qwen3-Embedding-0.6B"
    ),
    "mxbai-embed-large": EmbeddingFormat(
        BGE_QUERY, "", "https://huggingface.co/mixedbread-ai/mxbai-embed-large-v1"
    ),
    "snowflake-arctic-embed": EmbeddingFormat(
        BGE_QUERY, "", "https://huggingface.co/Snowflake/snowflake-arctic-embed-m"
    ),
    "snowflake-arctic-embed2": EmbeddingFormat(
        "query: ", "", "https://huggingface.co/Snowflake/snowflake-arctic-embed-l-v2.0"
    ),
    "bge-large": EmbeddingFormat(BGE_QUERY, "", "https://huggingface.co/BAAI/bge-large-en-v1.5"),
    "bge-m3": EmbeddingFormat("", "", "https://huggingface.co/BAAI/bge-m3"),
    "granite-embedding": EmbeddingFormat(
        "", "", "https://huggingface.co/ibm-granite/granite-embedding-278m-multilingual"
    ),
    "all-minilm": EmbeddingFormat(
        "", "", "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2"
    ),
}
PLAIN = EmbeddingFormat("", "", "")  # an unknown model: text goes as it is


def base_name(model: str) -> str:
    """`library/nomic-embed-text:latest` -> `nomic-embed-text`."""
    return model.rsplit("/", 1)[-1].split(":", 1)[0].lower()


def full_name(model: str) -> str:
    """Ollama's canonical name: a missing tag means `:latest`; matching ignores case."""
    model = model.lower()
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


def embedding_format(model: str) -> EmbeddingFormat | None:
    """The model's input format, or None when ragged does not know the model."""
    return EMBEDDING_MODELS.get(base_name(model))


def embed_prefixes(model: str) -> tuple[str, str]:
    """(query prefix, document prefix of a passage without a title)."""
    fmt = embedding_format(model) or PLAIN
    return fmt.query, fmt.format_document("")


# Chat models that think whatever `think` says and take a level instead (Ollama's API
# reference: gpt-oss cannot turn thinking off). The lowest level keeps the wait short.
THINK_LEVEL_ONLY: dict[str, str] = {"gpt-oss": "low"}


def think_setting(model: str, capabilities: Sequence[str], show: bool = False) -> bool | str | None:
    """What to send as `think`: None for a model that cannot think (Ollama answers 400 to
    `think` there), False to turn thinking off, or a level where it cannot be turned off.

    With `show` a model that can think does, so that its thinking can be shown.
    """
    if "thinking" not in capabilities:
        return None
    level = THINK_LEVEL_ONLY.get(base_name(model))
    if level is not None:
        return level
    return bool(show)


# Floors are in GiB because that is what the OS reports: a "64 GB" Mac has
# hw.memsize = 68719476736 = 64 GiB, so it lands in the top tier.
TIERS: tuple[tuple[int, str], ...] = (
    (64 * GiB, "qwen2.5:32b"),
    (32 * GiB, "mistral:7b"),
    (0, "llama3.2:3b"),
)

# A tier counts as reached at 95% of its floor. Linux's MemTotal leaves out what the
# firmware and kernel reserve (a 32 GB box reports about 31.1 GiB, a 64 GB box about
# 62.6 GiB), and nvidia-smi gives an RTX 5090's 32 GB as 32607 MiB (31.8 GiB). Without
# slack those machines would drop a whole tier; with it, nothing that really has less
# memory than a tier's nominal size (say 30 GB) gets promoted.
TIER_SLACK = 0.95


@dataclass(frozen=True)
class ModelChoice:
    """The chat model picked for a host, and a one-line reason a person can read."""

    model: str
    reason: str
    basis_bytes: int | None


def choose_chat_model(host: Host) -> ModelChoice:
    """The largest default chat model this host's memory can carry, and why."""
    if host.apple_silicon:
        chip = host.chip or "Apple Silicon"
        return _by_tier(host.memory_bytes, chip, lambda gb: f"{chip} with {gb} unified memory")

    sized = [gpu for gpu in host.gpus if gpu.memory_bytes]
    if sized:
        # Judge by the GPUs' total VRAM, not the largest card: Ollama splits a model's
        # layers across every GPU it sees when it doesn't fit on one, so two 24 GB cards
        # hold what one 48 GB card would (a little less: each keeps its own scratch space,
        # which TIERS' wide gaps absorb).
        total = sum(gpu.memory_bytes or 0 for gpu in sized)
        names = sorted({gpu.name for gpu in sized})
        if len(sized) == 1:
            gpus = sized[0].name
        elif len(names) == 1:
            gpus = f"{len(sized)}x {names[0]}"
        else:
            gpus = f"{len(sized)} GPUs ({', '.join(names)})"
        total_word = " in total" if len(sized) > 1 else ""
        return _by_tier(total, gpus, lambda gb: f"{gpus} with {gb} VRAM{total_word}")

    # No NVIDIA GPU with a size: Ollama runs on the CPU, bounded by system memory. GPUs
    # listed on a Mac are Intel/AMD ones Ollama doesn't use, so they count as none; on
    # Linux they came from nvidia-smi without a size (e.g. "[N/A]" on unified-memory parts).
    why = "no NVIDIA GPU" if not host.gpus or host.system == "darwin" else "GPU memory unknown"
    subject = host.chip or "this machine"
    return _by_tier(host.memory_bytes, subject, lambda gb: f"{gb} system memory, {why}")


def _by_tier(basis: int | None, subject: str, describe: Callable[[str], str]) -> ModelChoice:
    """Pick from TIERS by `basis` bytes; describe(rounded size) starts the reason."""
    if basis is None:
        return ModelChoice(TIERS[-1][1], f"{subject}: memory size unknown, smallest tier", None)
    # The last floor is 0, so something always matches.
    floor, model = next((f, m) for f, m in TIERS if basis >= f * TIER_SLACK)
    tier = f"{_say_gb(floor)} tier" if floor else "smallest tier"
    if floor and basis < floor:
        # Within TIER_SLACK: say so, or "31 GB ...: 32 GB tier" reads like a mistake.
        tier += " (reported sizes run a little under what is installed)"
    return ModelChoice(model, f"{describe(_say_gb(basis))}: {tier}", basis)


def _say_gb(size: int) -> str:
    """Bytes as a person says them: 38654705664 -> '36 GB', 2 x 24564 MiB -> '48 GB'."""
    if size < GiB:
        return f"{int(size / MiB + 0.5)} MB"
    # Round half up (Python's round() would say 16 GB for 16.5 GiB).
    return f"{int(size / GiB + 0.5)} GB"


def resolve_chat_model(settings: Settings) -> tuple[str, str]:
    """The chat model to use and why: the user's choice wins, else the machine decides."""
    if settings.chat_model:
        return settings.chat_model, f"set by {settings.sources.get('chat_model', 'config')}"
    from ragged.hardware import detect_host

    choice = choose_chat_model(detect_host(displays=False))
    return choice.model, choice.reason
