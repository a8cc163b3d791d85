"""Real mounts for tests of what disks do (a disk unplugged, a disk full); skipped where this
process may not mount (not root, or in a container that forbids it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def mount_or_skip(*args: str) -> None:
    """`mount ARGS`, or skip the test saying why it could not."""
    done = subprocess.run(["mount", *args], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.decode(errors='replace').strip()}")


def unmount(point: Path) -> None:
    # Lazy: a process the test started may still hold a file there.
    subprocess.run(["umount", "-l", str(point)], capture_output=True)


class SmallDisk:
    """A tmpfs of a few MB: a disk that really fills, whose size can change under it."""

    def __init__(self, point: Path, size: str) -> None:
        self.point = point
        point.mkdir(parents=True, exist_ok=True)
        mount_or_skip("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point))

    def resize(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.point)], check=True)

    def fill(self, leave: int = 0) -> Path:
        """Write a file until the disk has no byte left, then give `leave` bytes back; returns
        it (delete it to free the rest)."""
        filler = self.point / "filler"
        with open(filler, "wb", buffering=0) as out:  # unbuffered: nothing left to flush
            for block in (65536, 512):  # then the last bytes, a small block at a time
                try:
                    while True:
                        out.write(b"\0" * block)
                except OSError:
                    pass
        if leave:
            os.truncate(filler, max(0, filler.stat().st_size - leave))
        return filler

    def close(self) -> None:
        unmount(self.point)
