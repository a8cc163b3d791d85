"""Model naming, the embedding models' prefixes, memory tiers and the chat-model choice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragged.hardware import GiB, MiB

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.hardware import Host

# Prefixes the embedding models were trained with: (query, document). A model missing here
# gets none, which is right for models trained without instructions (all-minilm, bge-m3).
EMBED_PREFIXES: dict[str, tuple[str, str]] = {
    "nomic-embed-text": ("search_query: ", "search_document: "),
    "nomic-embed-text-v2-moe": ("search_query: ", "search_document: "),
    "mxbai-embed-large": ("Represent this sentence for searching relevant passages: ", ""),
    "snowflake-arctic-embed": ("Represent this sentence for searching relevant passages: ", ""),
    "snowflake-arctic-embed2": ("query: ", ""),
    "bge-large": ("Represent this sentence for searching relevant passages: ", ""),
    "granite-embedding": ("", ""),
    "all-minilm": ("", ""),
}


def base_name(model: str) -> str:
    """`library/nomic-embed-text:latest` -> `nomic-embed-text`."""
    return model.rsplit("/", 1)[-1].split(":", 1)[0].lower()


def full_name(model: str) -> str:
    """Ollama's canonical name: a missing tag means `:latest`; matching ignores case."""
    model = model.lower()
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


def embed_prefixes(model: str) -> tuple[str, str]:
    return EMBED_PREFIXES.get(base_name(model), ("", ""))


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
