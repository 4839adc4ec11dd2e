"""The processes the demo watches: the server it starts, and any program's thread count.

`Server` runs a server module as a process of its own on port 0, reads the port it
got from its ``listening on HOST:PORT`` line, and keeps its log, shown if it fails.
It runs with small limits (--sendq, --max-line), so that a few lines of the demo
show them at work. Thread counts come from the kernel (/proc/PID/status), not from
the program counted, and a thread that ends tells nobody: the count is polled.
"""

from __future__ import annotations

import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from demo.probes import DEADLINE, DemoFailed
from harness.proc import thread_count

ROOT = Path(__file__).resolve().parents[1]  # the repository: demo/processes.py
BASE_THREADS = {"section_a.server": 2, "section_c.server": 2}
WHAT_BASE_IS = {
    "section_a.server": "main, which accepts, and the signal thread",
    "section_c.server": "main + the proactor's accept thread",
}
SENDQ = 16 * 1024  # bytes of backlog before a client is cut (the default is 1 MiB)
MAX_LINE = 256  # bytes in a line (the default is 8 KiB)


class Server:
    """The server under demonstration, as a process; its log is kept, and shown if it fails."""

    def __init__(self, module: str, log: IO[bytes]) -> None:
        self.module = module
        self.log = log
        argv = ["--port", "0", "-q", "--sendq", str(SENDQ), "--max-line", str(MAX_LINE)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *argv],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], DEADLINE)
        line = self.proc.stdout.readline() if ready else ""
        match = re.search(r"listening on (\S+):(\d+)", line)
        if not match:
            self.proc.kill()
            raise DemoFailed(f"the server did not start: {line!r}\n{self.log_text()}")
        self.address = (match.group(1), int(match.group(2)))
        self.base = BASE_THREADS.get(module, 1)

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def threads_become(pid: int, expected: int, whose: str) -> int:
    """Wait (with a deadline) until process `pid` has `expected` threads."""
    deadline = time.monotonic() + DEADLINE
    while (count := thread_count(pid)) != expected:
        if time.monotonic() > deadline:
            raise DemoFailed(f"expected {expected} threads, {whose} has {count}")
        time.sleep(0.01)  # a thread that ends tells nobody: the count is polled
    return count
