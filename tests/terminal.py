"""Running ragged the way a person does: in a terminal (a pty), with a size, and Ctrl-C."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from dataclasses import dataclass

CTRL_C = b"\x03"
# CSI sequences (colours, cursor moves, erase), OSC sequences (titles, links), lone escapes.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-B]|\x1b."
)


@dataclass
class TerminalRun:
    output: str  # everything the terminal received, escape sequences included
    returncode: int
    columns: int
    rows: int

    @property
    def plain(self) -> str:
        """The output without escape sequences, with \\r\\n as \\n."""
        return plain(self.output)

    @property
    def screen(self) -> list[str]:
        """The lines a person sees at the end, once live displays have redrawn and erased
        themselves (rows that scrolled away included), trailing blanks trimmed."""
        import pyte

        screen = pyte.HistoryScreen(self.columns, self.rows, history=10_000)
        pyte.Stream(screen).feed(self.output)
        above = ["".join(row[x].data for x in range(self.columns)) for row in screen.history.top]
        lines = [line.rstrip() for line in [*above, *screen.display]]
        while lines and not lines[-1]:
            lines.pop()
        return lines


def plain(text: str) -> str:
    return _ANSI.sub("", text).replace("\r\n", "\n")


def run_in_terminal(
    argv: list[str],
    env: dict[str, str],
    *,
    columns: int = 120,
    rows: int = 40,
    send: tuple[str, bytes] | None = None,
    timeout: float = 60,
) -> TerminalRun:
    """Run `argv` with a pseudo-terminal as its stdin, stdout, stderr and controlling terminal.

    `send=(marker, data)` writes `data` to the terminal once `marker` has appeared in the
    output. CTRL_C goes through the terminal driver as a keypress does: it echoes `^C` and
    sends SIGINT to the process.
    """
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    # The size is the terminal's; variables that would override it describe another one.
    env = {k: v for k, v in env.items() if k != "TERMINAL_WIDTH"}
    env.update(COLUMNS=str(columns), LINES=str(rows), TERM=env.get("TERM", "xterm"))
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=child,
        stdout=child,
        stderr=child,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(child)
    out = b""
    deadline = time.monotonic() + timeout
    # poll, not select: a long test run holds over 1,024 descriptors (embedded Chroma keeps
    # every store it opened open for the life of the process), and select() refuses those.
    waiter = select.poll()
    waiter.register(main, select.POLLIN)
    while time.monotonic() < deadline:
        ready = waiter.poll(1000)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the last process holding the terminal closed it
            break
        if not data:
            break
        out += data
        if send is not None and send[0] in plain(out.decode(errors="replace")):
            os.write(main, send[1])
            send = None
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    return TerminalRun(out.decode(errors="replace"), proc.returncode, columns, rows)
