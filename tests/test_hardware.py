"""Host detection and model choice, driven by recorded command outputs (tests/data/hosts)."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path

import pytest

from ragged.hardware import (
    GPU,
    SYSCTL_ARM64,
    SYSCTL_BRAND,
    SYSCTL_MEMSIZE,
    GiB,
    Host,
    MiB,
    Runner,
    detect_host,
    run_command,
)
from ragged.models import TIERS, choose_chat_model

HOSTS = Path(__file__).parent / "data" / "hosts"

MEMSIZE = ("sysctl", "-n", "hw.memsize")
BRAND = ("sysctl", "-n", "machdep.cpu.brand_string")
ARM64 = ("sysctl", "-n", "hw.optional.arm64")
TRANSLATED = ("sysctl", "-n", "sysctl.proc_translated")
PROFILER_JSON = ("system_profiler", "SPDisplaysDataType", "-json")
PROFILER_TEXT = ("system_profiler", "SPDisplaysDataType")
NVIDIA_SMI = ("nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader")

# An Intel-era text system_profiler line, in the wording quoted in zeam-vm/cpu_info#17
# (synthesised: no full capture is in tests/data/hosts).
INTEL_PROFILER_TEXT = """Graphics/Displays:

    Intel UHD Graphics 630:

      Chipset Model: Intel UHD Graphics 630
      Type: GPU
      Bus: Built-In
      VRAM (Dynamic, Max): 1536 MB
      Metal: Supported, feature set macOS GPUFamily2 v1
"""


def fixture(name: str) -> str:
    """A file from tests/data/hosts."""
    return (HOSTS / name).read_text()


def fake_runner(outputs: dict[tuple[str, ...], str | None]) -> Runner:
    """A Runner answering from `outputs`; any other command is 'missing' (None)."""

    def run(argv: Sequence[str]) -> str | None:
        return outputs.get(tuple(argv))

    return run


def no_files(path: str) -> str | None:
    """A read_text for a machine where nothing can be read."""
    return None


def mac(prefix: str, *, translated: str = "0\n") -> Runner:
    """A Mac from the three sysctl fixtures named by `prefix`, without system_profiler."""
    return fake_runner(
        {
            MEMSIZE: fixture(f"{prefix}.sysctl_hw_memsize.txt"),
            BRAND: fixture(f"{prefix}.sysctl_brand_string.txt"),
            ARM64: fixture(f"{prefix}.sysctl_hw_optional_arm64.txt"),
            # No fixture captures sysctl.proc_translated: "0" natively, "1" under Rosetta 2.
            TRANSLATED: translated,
        }
    )


def test_m1_under_rosetta_is_still_apple_silicon() -> None:
    # The fixture was captured from an x86_64 process under Rosetta 2; proc_translated "1"
    # is what such a process reads (synthesised: the capture doesn't include that key).
    host = detect_host(mac("m1-16gb-rosetta2", translated="1\n"), system="darwin")

    assert host.apple_silicon
    assert host.rosetta
    assert host.chip == "Apple M1"
    assert host.memory_bytes == 16 * GiB
    choice = choose_chat_model(host)
    assert choice.model == "llama3.2:3b"
    assert choice.reason == "Apple M1 with 16 GB unified memory: smallest tier"


@pytest.mark.parametrize(
    ("prefix", "model", "reason"),
    [
        ("m3max-36gb", "mistral:7b", "Apple M3 Max with 36 GB unified memory: 32 GB tier"),
        ("m4max-64gb", "qwen2.5:32b", "Apple M4 Max with 64 GB unified memory: 64 GB tier"),
    ],
)
def test_apple_silicon_by_unified_memory(prefix: str, model: str, reason: str) -> None:
    host = detect_host(mac(prefix), system="darwin")

    assert host.apple_silicon
    assert not host.rosetta
    choice = choose_chat_model(host)
    assert (choice.model, choice.reason) == (model, reason)
    assert choice.basis_bytes == host.memory_bytes


def test_128gb_mac_gets_the_top_tier() -> None:
    # Synthesised: no 128 GB capture exists, so the M4 Max brand string with 128 GiB.
    runner = fake_runner(
        {
            MEMSIZE: "137438953472\n",
            BRAND: fixture("m4max-64gb.sysctl_brand_string.txt"),
            ARM64: "1\n",
            TRANSLATED: "0\n",
        }
    )
    choice = choose_chat_model(detect_host(runner, system="darwin"))

    assert choice.model == "qwen2.5:32b"
    assert choice.reason == "Apple M4 Max with 128 GB unified memory: 64 GB tier"
    assert choice.basis_bytes == 128 * GiB


def test_intel_mac_goes_by_system_memory() -> None:
    # Synthesised Intel Mac: hw.optional.arm64 and sysctl.proc_translated don't exist there,
    # so sysctl fails and the runner gives None for both.
    runner = fake_runner(
        {
            MEMSIZE: "34359738368\n",
            BRAND: "Intel(R) Core(TM) i9-9980HK CPU @ 2.40GHz\n",
            PROFILER_TEXT: INTEL_PROFILER_TEXT,
        }
    )
    host = detect_host(runner, system="darwin")

    assert not host.apple_silicon
    assert not host.rosetta
    assert host.chip == "Intel(R) Core(TM) i9-9980HK CPU @ 2.40GHz"
    assert host.metal == "Metal: Supported, feature set macOS GPUFamily2 v1"
    assert host.gpus == (GPU("Intel UHD Graphics 630", None),)
    choice = choose_chat_model(host)
    assert choice.model == "mistral:7b"
    assert choice.reason == "32 GB system memory, no NVIDIA GPU: 32 GB tier"


def test_linux_two_rtx_4090s_judged_by_total_vram() -> None:
    runner = fake_runner(
        {NVIDIA_SMI: fixture("linux-2x-rtx4090.nvidia_smi_name_memory.DERIVED.csv")}
    )
    host = detect_host(runner, system="linux", read_text=no_files)

    assert host.gpus == (GPU("NVIDIA GeForce RTX 4090", 24564 * MiB),) * 2
    choice = choose_chat_model(host)
    # Summed, as Ollama splits layers across GPUs: 2 x 24564 MiB = 47.98 GiB.
    assert choice.model == "mistral:7b"
    assert choice.reason == "2x NVIDIA GeForce RTX 4090 with 48 GB VRAM in total: 32 GB tier"
    assert choice.basis_bytes == 2 * 24564 * MiB


def test_nvidia_smi_nounits_form() -> None:
    runner = fake_runner({NVIDIA_SMI: "NVIDIA GeForce RTX 4090, 24564\n"})
    host = detect_host(runner, system="linux", read_text=no_files)

    assert host.gpus == (GPU("NVIDIA GeForce RTX 4090", 24564 * MiB),)
    choice = choose_chat_model(host)
    assert choice.model == "llama3.2:3b"
    assert choice.reason == "NVIDIA GeForce RTX 4090 with 24 GB VRAM: smallest tier"


def test_gpu_memory_decides_over_system_memory() -> None:
    meminfo = fixture("linux-32gb.proc_meminfo.SYNTHESISED.txt")
    runner = fake_runner({NVIDIA_SMI: "NVIDIA H100 80GB HBM3, 81559 MiB\n"})
    host = detect_host(runner, system="linux", read_text=lambda path: meminfo)

    assert choose_chat_model(host).model == "qwen2.5:32b"


def test_different_gpus_are_named() -> None:
    runner = fake_runner({NVIDIA_SMI: "NVIDIA L4, 23034 MiB\nTesla T4, 15360 MiB\n"})
    choice = choose_chat_model(detect_host(runner, system="linux", read_text=no_files))

    assert choice.model == "mistral:7b"
    assert choice.reason == "2 GPUs (NVIDIA L4, Tesla T4) with 37 GB VRAM in total: 32 GB tier"


def test_linux_without_nvidia_smi_uses_meminfo() -> None:
    files = {
        "/proc/meminfo": fixture("linux-32gb.proc_meminfo.SYNTHESISED.txt"),
        # Synthesised in /proc/cpuinfo's format; only this line matters.
        "/proc/cpuinfo": "processor\t: 0\nmodel name\t: AMD Ryzen 9 7950X 16-Core Processor\n",
    }
    host = detect_host(fake_runner({}), system="linux", read_text=files.get)

    assert host.memory_bytes == 32594960 * 1024
    assert host.chip == "AMD Ryzen 9 7950X 16-Core Processor"
    assert host.gpus == ()
    assert (host.apple_silicon, host.rosetta, host.metal) == (False, False, None)
    choice = choose_chat_model(host)
    # MemTotal is 31.1 GiB on a 32 GB box; TIER_SLACK keeps it in the 32 GB tier.
    assert choice.model == "mistral:7b"
    assert choice.reason.startswith("31 GB system memory, no NVIDIA GPU: 32 GB tier (")


def test_nvidia_gpu_without_memory_falls_back_to_system_memory() -> None:
    meminfo = "MemTotal:       131072000 kB\n"  # synthesised: a 128 GB unified-memory box
    runner = fake_runner({NVIDIA_SMI: "NVIDIA GB10, [N/A]\n"})
    host = detect_host(runner, system="linux", read_text=lambda path: meminfo)

    assert host.gpus == (GPU("NVIDIA GB10", None),)
    assert any("NVIDIA GB10" in note for note in host.notes)
    choice = choose_chat_model(host)
    assert choice.model == "qwen2.5:32b"
    assert choice.reason == "125 GB system memory, GPU memory unknown: 64 GB tier"


def test_unknown_memory_gets_the_smallest_tier() -> None:
    host = detect_host(fake_runner({}), system="linux", read_text=no_files)

    assert host.memory_bytes is None
    assert host.notes
    choice = choose_chat_model(host)
    assert choice.model == TIERS[-1][1]
    assert "memory size unknown" in choice.reason
    assert choice.basis_bytes is None


@pytest.mark.parametrize(
    ("outputs", "metal", "gpu"),
    [
        ({PROFILER_JSON: "m1-7gpu.system_profiler.json"}, "Metal (GPU family apple7)", "Apple M1"),
        # Not valid JSON (cut off in its source): read by regex.
        ({PROFILER_JSON: "m3pro.system_profiler.json.excerpt.txt"}, "Metal 3", "Apple M3 Pro"),
        ({PROFILER_TEXT: "m2pro-32gb.system_profiler.txt"}, "Metal 3", "Apple M2 Pro"),
        ({PROFILER_TEXT: "m3-10gpu.system_profiler.txt"}, "Metal 3", "Apple M3"),
    ],
)
def test_metal_from_system_profiler(
    outputs: dict[tuple[str, ...], str], metal: str, gpu: str
) -> None:
    answers: dict[tuple[str, ...], str | None] = {
        MEMSIZE: "17179869184\n",
        BRAND: "Apple M1\n",
        ARM64: "1\n",
        TRANSLATED: "0\n",
    }
    answers.update((argv, fixture(name)) for argv, name in outputs.items())
    host = detect_host(fake_runner(answers), system="darwin")

    assert host.metal == metal
    assert host.gpus == (GPU(gpu, None),)
    assert host.notes == ()


def test_damaged_json_without_metal_falls_back_to_text() -> None:
    runner = fake_runner(
        {
            ARM64: "1\n",
            PROFILER_JSON: '{"SPDisplaysDataType": [{"_name": "Apple M2 Pro"',
            PROFILER_TEXT: fixture("m2pro-32gb.system_profiler.txt"),
        }
    )
    host = detect_host(runner, system="darwin")

    assert host.metal == "Metal 3"
    assert host.gpus == (GPU("Apple M2 Pro", None),)


def test_newer_json_key_metal_4() -> None:
    # Synthesised in the newer key spelling, for a machine reporting Metal 4.
    raw = '{"SPDisplaysDataType": [{"_name": "Apple M5", "spdisplays_mtlgpufamilysupport": "spdisplays_metal4"}]}'
    host = detect_host(fake_runner({PROFILER_JSON: raw, ARM64: "1"}), system="darwin")

    assert host.metal == "Metal 4"
    assert host.gpus == (GPU("Apple M5", None),)


def test_macos_11_apple_processor_brand_string() -> None:
    # Synthesised memsize and arm64 around the real macOS 11.0 brand string.
    outputs: dict[tuple[str, ...], str | None] = {
        MEMSIZE: "17179869184\n",
        BRAND: fixture("m1-macos11.0.sysctl_brand_string.txt"),
        ARM64: "1\n",
    }
    bare = detect_host(fake_runner(outputs), system="darwin")
    assert bare.apple_silicon
    assert bare.chip == "Apple processor"
    assert choose_chat_model(bare).reason.startswith("Apple processor with 16 GB")

    # system_profiler knows the real chip name, so it replaces the generic one.
    outputs[PROFILER_JSON] = fixture("m1-7gpu.system_profiler.json")
    named = detect_host(fake_runner(outputs), system="darwin")
    assert named.chip == "Apple M1"

    # Even if hw.optional.arm64 can't be read, an "Apple ..." brand means Apple Silicon.
    del outputs[ARM64]
    assert detect_host(fake_runner(outputs), system="darwin").apple_silicon


def test_brand_string_kept_when_it_names_the_chip() -> None:
    runner = fake_runner(
        {
            BRAND: fixture("m1pro.sysctl_brand_string.txt"),
            ARM64: "1\n",
            # A different chip's GPU on purpose: the brand string must win.
            PROFILER_TEXT: fixture("m2pro-32gb.system_profiler.txt"),
        }
    )
    assert detect_host(runner, system="darwin").chip == "Apple M1 Pro"


def test_wrong_nvidia_query_is_not_read_as_memory() -> None:
    # name,pci.device_id output: "0x232110DE" must not become a memory size.
    runner = fake_runner({NVIDIA_SMI: fixture("linux-h100nvl.nvidia_smi_name_pci_device_id.csv")})
    host = detect_host(runner, system="linux", read_text=no_files)

    assert host.gpus == (GPU("NVIDIA H100 NVL", None),)
    assert choose_chat_model(host).model == "llama3.2:3b"


GARBAGE = [
    "",
    "\n\n",
    "not a number",
    "-1",
    "0",
    "1e400",
    "9" * 500,
    "{",
    "null",
    "[1, 2]",
    '{"SPDisplaysDataType": 5}',
    '{"SPDisplaysDataType": [5, null, {"_name": 7, "spdisplays_metalfamily": 3}]}',
    '"spdisplays_metalfamily": "" "_name": "{oops}"',
    "\x00\xff\ufffd",
    "Metal:\nChipset Model:\nMemTotal: lots kB",
    "MemTotal: 0 kB",
    ", 24564 MiB",
    "a, b, c",
    "{name}, [N/A]\nGPU, 9999999999999999999999 MiB\nGPU, 1.5 GiB",
    fixture("linux-h100nvl.nvidia_smi_name_pci_device_id.csv"),
    fixture("m3pro.system_profiler.json.excerpt.txt"),
]


@pytest.mark.parametrize("system", ["darwin", "linux", "freebsd", "windows", ""])
@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_never_crashes(system: str, garbage: str) -> None:
    host = detect_host(lambda argv: garbage, system=system, read_text=lambda path: garbage)

    assert isinstance(host, Host)
    assert host.memory_bytes is None or host.memory_bytes > 0
    choice = choose_chat_model(host)
    assert choice.model in {model for _, model in TIERS}
    assert "\n" not in choice.reason


def test_nothing_answers_never_crashes() -> None:
    for system in ("darwin", "linux", "freebsd"):
        host = detect_host(fake_runner({}), system=system, read_text=no_files)
        assert choose_chat_model(host).model in {model for _, model in TIERS}


def test_detect_this_machine() -> None:
    host = detect_host()

    assert host.system == platform.system().lower()
    assert host.memory_bytes is None or host.memory_bytes > 0


def test_run_command_missing_binary() -> None:
    assert run_command(["ragged-no-such-binary-here", "--version"]) is None


def test_run_command_echo() -> None:
    assert run_command(["echo", "hi"]) == "hi\n"


@pytest.mark.parametrize(
    ("argv", "timeout"),
    [(["false"], 5.0), (["sleep", "5"], 0.1), ([], 5.0), (["echo", "a\x00b"], 5.0)],
)
def test_run_command_failures_are_none(argv: list[str], timeout: float) -> None:
    assert run_command(argv, timeout=timeout) is None


def test_model_choice_on_a_mac_skips_the_slow_system_profiler() -> None:
    calls: list[tuple[str, ...]] = []

    def runner(argv):  # type: ignore[no-untyped-def]
        calls.append(tuple(argv))
        return {
            SYSCTL_MEMSIZE: "38654705664\n",
            SYSCTL_ARM64: "1\n",
            SYSCTL_BRAND: "Apple M3 Max\n",
        }.get(tuple(argv))

    host = detect_host(runner, system="darwin", displays=False)
    assert choose_chat_model(host).model == "mistral:7b"
    assert not any(c[0] == "system_profiler" for c in calls)
