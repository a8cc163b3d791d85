"""Small measuring tools: timed child processes with their peak RSS, percentiles, the machine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RAGGED = str(BIN / "ragged")
WORKER = str(ROOT / "bench" / "worker.py")
RESULT_MARK = "BENCH-RESULT "


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mb: float  # the largest of the process and the children it waited for
    cpu_s: float  # user + system CPU of the process and the children it waited for
    returncode: int
    stdout: str
    stderr: str


def run(cmd: Sequence[str], env: Mapping[str, str], *, capture: bool = True) -> Run:
    """Run a command to its end; wall time, and peak RSS from wait4 (Popen.wait discards it).

    Output goes to temporary files, not pipes: a pipe would need reading while the child
    runs, and communicate() would reap the child itself and lose its resource usage.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd),
            env=dict(env),
            stdout=out if capture else subprocess.DEVNULL,
            stderr=err if capture else subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    cpu = usage.ru_utime + usage.ru_stime
    return Run(seconds, usage.ru_maxrss / scale, cpu, proc.returncode, stdout, stderr)


def worker(spec: dict[str, Any], env: Mapping[str, str], script: str = WORKER) -> dict[str, Any]:
    """Run bench/worker.py (this checkout's, or `script`: another revision's) with a spec; its
    JSON result, or an error naming what went wrong."""
    done = run([sys.executable, script, json.dumps(spec)], env)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result = dict(json.loads(line[len(RESULT_MARK) :]))
            result["process_s"] = done.seconds
            result["process_peak_rss_mb"] = done.peak_rss_mb
            result["process_cpu_s"] = done.cpu_s
            return result
    raise RuntimeError(
        f"worker {spec['op']} failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
    )


def time_to_first_byte(cmd: Sequence[str], env: Mapping[str, str]) -> tuple[float, float]:
    """(seconds to the first byte on stdout, seconds to exit) of a command."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    proc.stdout.read(1)
    first = time.perf_counter() - started
    proc.stdout.read()
    proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return first, time.perf_counter() - started


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in 0..100 (numpy's default method)."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem_gb = round(pages / 1e9, 1)
    except (ValueError, OSError):
        pass
    versions = {}
    for name in ("chromadb", "ollama", "tiktoken", "pypdf", "typer", "rich"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = "?"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_1min_at_start": load,
        **versions,
    }
