"""Freed heap memory handed back to the operating system (ragged.memory, used by ingest)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragged import memory

needs_glibc = pytest.mark.skipif(
    memory._glibc() is None, reason="malloc_trim is glibc's; elsewhere release is a no-op"
)


def resident_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def allocator() -> ctypes.CDLL:
    """This process's own malloc and free, to place blocks where the test needs them."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def in_fresh_process(scenario: str) -> int:
    """Run one scenario below in a new interpreter, for a heap no earlier test has shaped
    (a large free chunk left by another test serves later blocks from the heap, not mmap),
    and return the bytes it released."""
    done = subprocess.run(
        [sys.executable, "-c", f"from tests.test_memory import {scenario}; print({scenario}())"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.split()[-1])


def freed_below_a_live_one() -> int:
    # glibc's free() gives memory back only from the top of the heap: 32 MB of blocks freed
    # under one still in use stay resident, as the memory freed between an ingest's store
    # writes does. This is what release_free_memory() is for.
    libc = allocator()
    size, count = 32 * 1024, 1024  # under the 128 KiB mmap threshold: heap, not mmap
    blocks = [libc.malloc(size) for _ in range(count)]
    for block in blocks:
        ctypes.memset(block, 1, size)  # resident, not just reserved
    *freed, pinned = blocks  # the last one, at the top of the heap, stays in use
    try:
        for block in freed:
            libc.free(block)
        held = resident_bytes()
        memory.release_free_memory()
        return held - resident_bytes()
    finally:
        libc.free(pinned)


def large_blocks_freed() -> int:
    # glibc raises its mmap threshold when an mmapped block is freed (here to 4 MiB), and
    # later blocks of that size then come from the heap and stay resident after free().
    libc = allocator()
    libc.free(libc.malloc(4 * 1024 * 1024))
    memory.map_large_blocks()
    size, count = 256 * 1024, 128
    blocks = [libc.malloc(size) for _ in range(count)]
    for block in blocks:
        ctypes.memset(block, 1, size)
    *freed, pinned = blocks  # the last one stays in use
    try:
        held = resident_bytes()
        for block in freed:
            libc.free(block)
        return held - resident_bytes()
    finally:
        libc.free(pinned)


@needs_glibc
def test_release_returns_freed_blocks_below_a_live_one() -> None:
    released = in_fresh_process("freed_below_a_live_one")
    assert released >= 24 * 1024 * 1024, f"only {released / 2**20:.1f} MiB released"


@needs_glibc
def test_large_blocks_are_unmapped_when_freed() -> None:
    released = in_fresh_process("large_blocks_freed")
    assert released >= 24 * 1024 * 1024, f"only {released / 2**20:.1f} MiB released"


def test_off_linux_both_calls_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # macOS and Windows have no glibc: ingest calls both unconditionally, so they must not
    # even try to load it there.
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    memory._glibc.cache_clear()
    try:
        assert memory._glibc() is None
        memory.map_large_blocks()
        memory.release_free_memory()
    finally:
        memory._glibc.cache_clear()
