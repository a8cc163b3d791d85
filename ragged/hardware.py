"""What machine ragged runs on: memory, chip, GPUs (the chat model it can carry is models.py's).

Detection shells out to the tools each OS already ships (`sysctl`, `system_profiler`,
`nvidia-smi`) through a `Runner`, so tests drive it with recorded outputs. It never raises:
whatever cannot be learnt is left as None and explained in `Host.notes`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragged.disk import GiB, MiB  # byte units: defined where `ingest` finds them cheaply

Runner = Callable[[Sequence[str]], str | None]

SYSCTL_MEMSIZE = ("sysctl", "-n", "hw.memsize")
SYSCTL_BRAND = ("sysctl", "-n", "machdep.cpu.brand_string")
SYSCTL_ARM64 = ("sysctl", "-n", "hw.optional.arm64")
SYSCTL_TRANSLATED = ("sysctl", "-n", "sysctl.proc_translated")
PROFILER_JSON = ("system_profiler", "SPDisplaysDataType", "-json")
PROFILER_TEXT = ("system_profiler", "SPDisplaysDataType")
NVIDIA_SMI = ("nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader")


@dataclass(frozen=True)
class GPU:
    """One GPU; memory is None when unknown or shared with the CPU (Apple Silicon)."""

    name: str
    memory_bytes: int | None


@dataclass(frozen=True)
class Host:
    """What detect_host learnt about this machine."""

    system: str
    memory_bytes: int | None
    chip: str | None
    apple_silicon: bool
    rosetta: bool
    metal: str | None
    gpus: tuple[GPU, ...]
    notes: tuple[str, ...] = ()


def run_command(argv: Sequence[str], timeout: float = 5.0) -> str | None:
    """Run argv and return its stdout, or None if it is missing, fails or times out."""
    if not argv:
        return None  # subprocess would raise IndexError, not an OSError
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            # Nothing we run reads stdin; a closed one means nothing can hang waiting on it.
            stdin=subprocess.DEVNULL,
        )
    except (OSError, ValueError, subprocess.SubprocessError):
        # OSError: not installed or not executable; ValueError: a NUL byte in argv.
        return None
    return done.stdout if done.returncode == 0 else None


def _read_text(path: str) -> str | None:
    """The file's text, or None if it can't be read."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def detect_host(
    runner: Runner = run_command,
    *,
    system: str | None = None,
    read_text: Callable[[str], str | None] = _read_text,
    displays: bool = True,
) -> Host:
    """Describe this machine (or the one `runner` and `read_text` pretend to be).

    `displays=False` skips system_profiler on a Mac: it takes about a second and the model
    choice needs only memory, so `ask` does without it (doctor does not).
    """
    name = (system or platform.system()).lower()
    if name == "darwin":
        return _detect_darwin(runner, displays)
    if name == "linux":
        return _detect_linux(runner, read_text)
    return _detect_other(name, runner)


def _detect_darwin(runner: Runner, displays: bool = True) -> Host:
    notes: list[str] = []
    memory = _sysctl_int(runner(SYSCTL_MEMSIZE)) or None
    if memory is None:
        notes.append("sysctl hw.memsize gave no memory size")
    brand = _first_line(runner(SYSCTL_BRAND))
    arm64 = _sysctl_int(runner(SYSCTL_ARM64))
    if arm64 is None:
        # Intel Macs have no hw.optional.arm64 at all. If the probe failed on some other
        # Mac, an "Apple ..." brand string (even the old "Apple processor") still tells.
        apple_silicon = bool(brand and brand.startswith("Apple"))
    else:
        # Stays 1 under Rosetta 2, where platform.machine() would claim x86_64.
        apple_silicon = arm64 == 1
    # Only exists on Apple Silicon; absent (so None) on Intel Macs, which is "not translated".
    rosetta = _sysctl_int(runner(SYSCTL_TRANSLATED)) == 1

    metal, gpu_names = _displays(runner, notes) if displays else (None, ())
    chip = brand
    apple_gpu = next((name for name in gpu_names if name.startswith("Apple")), None)
    if apple_silicon and apple_gpu and not (brand and re.match(r"Apple M\d", brand)):
        # macOS 11.0 reported every M1 as "Apple processor"; on Apple Silicon the GPU's
        # model name is the chip's name, so it is the better label.
        chip = apple_gpu
    # Ollama only puts models on a Mac's GPU through Metal on Apple Silicon, where memory
    # is shared; Intel-era AMD VRAM never sizes a model, so no Mac GPU carries a size.
    gpus = tuple(GPU(name, None) for name in gpu_names)
    return Host(
        system="darwin",
        memory_bytes=memory,
        chip=chip,
        apple_silicon=apple_silicon,
        rosetta=rosetta,
        metal=metal,
        gpus=gpus,
        notes=tuple(notes),
    )


def _displays(runner: Runner, notes: list[str]) -> tuple[str | None, tuple[str, ...]]:
    """(Metal support, GPU names) from system_profiler: JSON first, then the text form."""
    metal: str | None = None
    gpus: tuple[str, ...] = ()
    raw = runner(PROFILER_JSON)
    if raw:
        metal, gpus = _displays_json(raw)
    if metal is None:
        # JSON missing, damaged, or without a Metal key we know: the text form has a line.
        text = runner(PROFILER_TEXT)
        if text:
            metal, text_gpus = _displays_text(text)
            gpus = gpus or text_gpus
    if metal is None:
        notes.append("system_profiler SPDisplaysDataType said nothing about Metal")
    return metal, gpus


def _displays_json(raw: str) -> tuple[str | None, tuple[str, ...]]:
    """(Metal support, GPU names) from `system_profiler SPDisplaysDataType -json`."""
    try:
        data: Any = json.loads(raw)
    except ValueError:
        return _displays_json_by_regex(raw)
    entries = data.get("SPDisplaysDataType") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return None, ()
    metal: str | None = None
    gpus: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        metal = metal or _metal_from_key(
            entry.get("spdisplays_mtlgpufamilysupport") or entry.get("spdisplays_metalfamily")
        )
        if name := _gpu_name(entry.get("sppci_model"), entry.get("_name")):
            gpus.append(name)
    return metal, tuple(gpus)


def _displays_json_by_regex(raw: str) -> tuple[str | None, tuple[str, ...]]:
    """The same facts from JSON that doesn't parse (truncated or otherwise damaged)."""
    key = re.search(r'"spdisplays_(?:mtlgpufamilysupport|metalfamily)"\s*:\s*"([^"]*)"', raw)
    model = re.search(r'"sppci_model"\s*:\s*"([^"]*)"', raw)
    # Only a _name before the nested display list is the GPU's; later ones name monitors.
    head = raw.split('"spdisplays_ndrvs"', 1)[0]
    name = re.search(r'"_name"\s*:\s*"([^"]*)"', head)
    gpu = _gpu_name(model.group(1) if model else None, name.group(1) if name else None)
    return _metal_from_key(key.group(1) if key else None), (gpu,) if gpu else ()


def _metal_from_key(value: object) -> str | None:
    """A JSON Metal value for people: 'spdisplays_metal3' -> 'Metal 3'."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if re.search(r"not_?supported|unsupported", value, re.I):
        return None
    if version := re.fullmatch(r"spdisplays_metal(\d+)", value):
        return f"Metal {version.group(1)}"
    if family := re.fullmatch(r"spdisplays_mtlgpufamily(\w+)", value):
        return f"Metal (GPU family {family.group(1)})"
    return f"Metal ({value.removeprefix('spdisplays_')})"


def _gpu_name(model: object, name: object) -> str | None:
    """The GPU's model, else its _name unless that is an untranslated 'kHW_...' key."""
    for candidate in (model, name):
        if isinstance(candidate, str) and candidate.strip():
            if not candidate.startswith("kHW_"):
                return candidate.strip()
    return None


def _displays_text(text: str) -> tuple[str | None, tuple[str, ...]]:
    """(Metal support, GPU names) from plain `system_profiler SPDisplaysDataType`."""
    # Apple Silicon: "Metal Support: Metal 3"; Intel-era: "Metal: Supported, feature set
    # macOS GPUFamily2 v1" or, on later releases, "Metal Family: Supported, ...".
    line = re.search(r"^\s*Metal(?: Support| Family)?:[ \t]*(\S.*?)\s*$", text, re.M)
    metal: str | None = None
    if line and not re.search(r"\b(?:not supported|unsupported)\b", line.group(1), re.I):
        value = line.group(1)
        metal = value if value.lower().startswith("metal") else f"Metal: {value}"
    chipsets = re.findall(r"^\s*Chipset Model:[ \t]*(\S.*?)\s*$", text, re.M)
    return metal, tuple(chipsets)


def _detect_linux(runner: Runner, read_text: Callable[[str], str | None]) -> Host:
    notes: list[str] = []
    meminfo = read_text("/proc/meminfo")
    memory = _meminfo_total(meminfo) if meminfo else None
    if memory is None:
        notes.append("no MemTotal line in /proc/meminfo")
    cpuinfo = read_text("/proc/cpuinfo")
    # x86 says "model name"; many ARM kernels have no such line, so chip stays None.
    model = re.search(r"^model name\s*:[ \t]*(\S.*?)\s*$", cpuinfo or "", re.M)
    return Host(
        system="linux",
        memory_bytes=memory,
        chip=model.group(1) if model else None,
        apple_silicon=False,
        rosetta=False,
        metal=None,
        gpus=_nvidia_gpus(runner, notes),
        notes=tuple(notes),
    )


def _meminfo_total(meminfo: str) -> int | None:
    """MemTotal in bytes; /proc/meminfo says kB but means KiB."""
    found = re.search(r"^MemTotal:\s*(\d+)\s*kB\s*$", meminfo, re.M)
    return int(found.group(1)) * 1024 if found and int(found.group(1)) > 0 else None


def _detect_other(system: str, runner: Runner) -> Host:
    notes: list[str] = []
    memory = _windows_memory() if system == "windows" else _sysconf_memory()
    if memory is None:
        notes.append(f"don't know how to read the memory size on {system or 'this system'}")
    return Host(
        system=system,
        memory_bytes=memory,
        chip=platform.processor() or None,
        apple_silicon=False,
        rosetta=False,
        metal=None,
        # The NVIDIA driver installs nvidia-smi on Windows too, and Ollama uses CUDA there.
        gpus=_nvidia_gpus(runner, notes),
        notes=tuple(notes),
    )


def _sysconf_memory() -> int | None:
    """Physical memory from sysconf, where the platform offers it (most Unixes)."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * size if pages > 0 and size > 0 else None


def _windows_memory() -> int | None:
    """Physical memory from GlobalMemoryStatusEx (Windows has no sysconf)."""
    try:
        import ctypes

        class MemoryStatusEx(ctypes.Structure):
            _fields_ = [
                ("dwLength", ctypes.c_ulong),
                ("dwMemoryLoad", ctypes.c_ulong),
                ("ullTotalPhys", ctypes.c_ulonglong),
                ("ullAvailPhys", ctypes.c_ulonglong),
                ("ullTotalPageFile", ctypes.c_ulonglong),
                ("ullAvailPageFile", ctypes.c_ulonglong),
                ("ullTotalVirtual", ctypes.c_ulonglong),
                ("ullAvailVirtual", ctypes.c_ulonglong),
                ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
            ]

        status = MemoryStatusEx()
        status.dwLength = ctypes.sizeof(status)
        if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
            return None
        return int(status.ullTotalPhys) or None
    except (AttributeError, ImportError, OSError):
        # Not Windows after all (ctypes.windll is missing), or the call itself failed.
        return None


def _nvidia_gpus(runner: Runner, notes: list[str]) -> tuple[GPU, ...]:
    """NVIDIA GPUs from nvidia-smi; none when it is missing (no driver, or no NVIDIA card)."""
    out = runner(NVIDIA_SMI)
    if not out:
        return ()
    gpus: list[GPU] = []
    for line in out.splitlines():
        if not line.strip():
            continue
        name, sep, memory = line.rpartition(",")
        if not sep or not name.strip():
            notes.append(f"nvidia-smi line not understood: {line.strip()[:80]!r}")
            continue
        size = _nvidia_memory(memory)
        if size is None:
            # e.g. "[N/A]" on GPUs that share system memory, or output of another query.
            notes.append(f"nvidia-smi gave no memory size for {name.strip()}: {memory.strip()!r}")
        gpus.append(GPU(name.strip(), size))
    return tuple(gpus)


def _nvidia_memory(field: str) -> int | None:
    """'24564 MiB' (or '24564' with nounits, which is MiB too) -> bytes."""
    # At most 9 digits: no real card has a petabyte, and float() of a long run overflows.
    found = re.fullmatch(r"\s*(\d{1,9}(?:\.\d{1,6})?)\s*(MiB|GiB|MB|GB)?\s*", field)
    if not found:
        return None
    # nvidia-smi means binary units even when it writes "MB"/"GB" (older drivers did).
    scale = GiB if (found.group(2) or "MiB").startswith("G") else MiB
    size = int(float(found.group(1)) * scale)
    return size or None


def _sysctl_int(out: str | None) -> int | None:
    """The integer a `sysctl -n` printed, or None for anything else."""
    line = _first_line(out)
    # Bounded so garbage can't make a thousand-digit int; hw.memsize fits in 20 digits.
    return int(line) if line is not None and re.fullmatch(r"\d{1,20}", line) else None


def _first_line(out: str | None) -> str | None:
    """The first non-blank line, stripped."""
    for line in (out or "").splitlines():
        if line.strip():
            return line.strip()
    return None
