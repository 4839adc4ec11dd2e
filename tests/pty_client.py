"""The chat client in a pseudo-terminal, with a pyte screen of what a person would see.

`PtyClient` runs a program under pexpect in a pty of ROWS x COLS. Everything the
program writes goes to a transcript file (under the test's tmp_path) and into a
`pyte.Screen`, so a test can wait for text on the screen and then assert on the
screen: its lines, the cursor, the colours of single characters, the window title.
Waiting is always for a condition, with a deadline: for more output, never a sleep.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
import pyte

from tests.promises import EXIT_LEFT
from tests.servers import ROOT
from tests.support import DEADLINE, wait_for

ROWS, COLS = 24, 80
PROMPT = "> "
KEYS = {
    "enter": "\r",
    "up": "\x1b[A",
    "down": "\x1b[B",
    "right": "\x1b[C",
    "left": "\x1b[D",
    "home": "\x1b[H",
    "end": "\x1b[F",
    "delete": "\x1b[3~",
    "backspace": "\x7f",
    "ctrl-a": "\x01",
    "ctrl-c": "\x03",
    "ctrl-d": "\x04",
    "ctrl-u": "\x15",
    "ctrl-w": "\x17",
    "ctrl-z": "\x1a",
}


def client_env(**extra: str) -> dict[str, str]:
    """A known terminal and locale, no user settings: the same run on every machine."""
    drop = {"NO_COLOR", "PYTHONSTARTUP", "COLUMNS", "LINES", "TMUX"}
    env = {key: value for key, value in os.environ.items() if key not in drop}
    env.update(TERM="xterm", LANG="C.UTF-8", LC_ALL="C.UTF-8")
    env.update(extra)
    return env


def client_argv(address: tuple[str, int], *args: str) -> list[str]:
    host, port = address
    return [sys.executable, "-m", "section_a.client", "--host", host, "--port", str(port), *args]


def visible(data: bytes | str) -> str:
    """Output with the invisible made visible, for failure messages."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text.replace("\x1b", "\\x1b").replace("\r", "\\r")


class _Tee:
    """pexpect's `logfile_read`: every byte read goes to the transcript and the screen."""

    def __init__(self, log: Any, stream: pyte.ByteStream, seen: bytearray) -> None:
        self.log, self.stream, self.seen = log, stream, seen

    def write(self, data: bytes) -> None:
        self.log.write(data)
        self.seen.extend(data)
        self.stream.feed(data)

    def flush(self) -> None:
        self.log.flush()


class PtyClient:
    """One program in a pty; `screen` is what its terminal shows."""

    def __init__(
        self, argv: list[str], log_path: Path, env: dict[str, str] | None = None, rows: int = ROWS
    ) -> None:
        self.screen = pyte.Screen(COLS, rows)
        self.output = bytearray()  # everything read so far, for assertions on raw bytes
        self._log = log_path.open("wb")
        self.child = pexpect.spawn(
            argv[0],
            argv[1:],
            cwd=str(ROOT),
            env=env if env is not None else client_env(),
            dimensions=(rows, COLS),
            timeout=DEADLINE,
        )
        self.child.delaybeforesend = None
        self.child.logfile_read = _Tee(self._log, pyte.ByteStream(self.screen), self.output)
        self.pid: int = self.child.pid

    # ------------------------------------------------------------------ what it shows

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def cursor_line(self) -> str:
        return self.lines()[self.screen.cursor.y]

    def describe(self) -> str:
        shown = "\n".join(f"  {y:2} |{line}" for y, line in enumerate(self.lines()))
        cursor = self.screen.cursor
        return (
            f"screen (cursor at row {cursor.y}, column {cursor.x}):\n{shown}\n"
            f"output: {visible(bytes(self.output[-3000:]))}"
        )

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        """Read output until `condition()` holds, or fail after the deadline."""
        deadline = time.monotonic() + DEADLINE
        while not condition():
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise pexpect.TIMEOUT("deadline")
                self.child.read_nonblocking(65536, timeout=remaining)
            except (pexpect.TIMEOUT, pexpect.EOF) as exc:
                if condition():
                    return
                kind = "the program exited" if isinstance(exc, pexpect.EOF) else "timed out"
                raise AssertionError(f"{kind} waiting for {what}\n{self.describe()}") from None

    def wait_line(self, pattern: str) -> int:
        """Wait for a screen line matching `pattern` (re.search); return its row."""
        rows: list[int] = []

        def found() -> bool:
            rows[:] = [y for y, line in enumerate(self.lines()) if re.search(pattern, line)]
            return bool(rows)

        self.wait_until(found, f"a screen line matching {pattern!r}")
        return rows[-1]

    def wait_prompt(self, text: str = "", column: int | None = None) -> None:
        """Wait until the cursor's line is the prompt and `text`, the cursor at `column`.

        `column` counts screen cells (a wide character takes two); by default, the end.
        """
        if column is None:
            column = len(PROMPT + text)

        def ready() -> bool:
            line = self.cursor_line()
            return line == (PROMPT + text).rstrip() and self.screen.cursor.x == column

        self.wait_until(ready, f"the prompt line {PROMPT + text!r}, the cursor at {column}")

    def welcome(self) -> str:
        """Wait for the server's welcome; the name it gave this client."""
        row = self.wait_line(r"^\* welcome, \S+\.")
        return self.lines()[row].split()[2].rstrip(".")

    # ------------------------------------------------------------------ typing

    def type(self, text: str) -> None:
        self.child.send(text.encode())

    def key(self, name: str) -> None:
        self.child.send(KEYS[name].encode())

    # ------------------------------------------------------------------ its end

    def exit_status(self) -> int:
        """Wait for the program to end by itself; its exit status (128+N for signal N)."""
        try:
            self.child.expect(pexpect.EOF)  # all its output read, and the pty closed
        except pexpect.TIMEOUT:
            raise AssertionError(f"the program did not exit\n{self.describe()}") from None
        wait_for(lambda: not self.child.isalive(), "the program to be reaped")
        if self.child.signalstatus is not None:
            return 128 + int(self.child.signalstatus)
        return int(self.child.exitstatus)

    def expect_exit(self, status: int) -> None:
        got = self.exit_status()
        assert got == status, f"exit status {got}, expected {status}\n{self.describe()}"
        assert b"Traceback" not in self.output, self.describe()

    def leave(self) -> None:
        """Ctrl-D at an empty prompt (on a line with text it deletes): the client exits 0."""
        self.wait_prompt()
        self.key("ctrl-d")
        self.expect_exit(EXIT_LEFT)

    def close(self) -> None:
        if self.child.isalive():
            self.child.kill(signal.SIGKILL)
        self.child.close(force=True)
        self._log.close()


Spawn = Callable[..., PtyClient]


def mark() -> str:
    """A marker no earlier line can contain."""
    return secrets.token_hex(4)
