"""The demo's two kinds of client: a plain socket, and the real client in a pseudo-terminal.

`LineClient` is a plain socket that sends and reads lines as `nc` would (or, stuck,
never reads). `TerminalClient` is the real client, ``python -m section_a.client``,
run in a pseudo-terminal of its own (the standard library's `os.openpty`), typed at
like a keyboard, its screen read back line by line (screen.py). Both are a
`probes.Client`: what they receive goes through `pump()`, where probes are answered.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import subprocess
import sys
import termios
from collections.abc import Callable

from demo.probes import DEADLINE, Client, DemoFailed, wait_until
from demo.processes import ROOT
from demo.screen import ScreenLines
from section_a import protocol
from section_a.client import MAX_INCOMING, PROMPT

ROWS, COLS = 24, 240  # the pseudo-terminal's size: wide, so that no line of the demo wraps


class LineClient(Client):
    """A plain socket, lines in and out; with `rcvbuf`, a small receive window from the start."""

    def __init__(self, label: str, address: tuple[str, int], rcvbuf: int = 0) -> None:
        super().__init__(label)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before connect: the window is negotiated in the handshake
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(address)
        self._framer = protocol.LineFramer(MAX_INCOMING)

    def fileno(self) -> int:
        return self.sock.fileno()

    def _read(self) -> tuple[list[str], bool]:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        events = self._framer.feed(data) if data else self._framer.finish()
        return [protocol.sanitise(e) for e in events if isinstance(e, bytes)], not data

    def write(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")

    def close(self) -> None:
        self.sock.close()


class TerminalClient(Client):
    """`python -m section_a.client` in a pseudo-terminal: typed at, its screen read back."""

    def __init__(self, label: str, argv: list[str]) -> None:
        super().__init__(label)
        self.screen = ScreenLines()
        self._echoed = 0  # lines of the user's own typing seen on the screen
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        # A known terminal and no colour: the same screen everywhere.
        env = dict(os.environ, TERM="xterm", NO_COLOR="1")
        env.update(LANG="C.UTF-8", LC_ALL="C.UTF-8")
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,  # its own session, as a program in a new terminal has
            )
        except OSError:
            os.close(master)
            raise
        finally:
            os.close(slave)  # the child has it: when the child ends, reads give EIO
        self._master = master

    def fileno(self) -> int:
        return self._master

    def _read(self) -> tuple[list[str], bool]:
        try:
            data = os.read(self._master, 65536)
        except OSError:  # EIO: nothing has the terminal open any more: the program ended
            data = b""
        rows = self.screen.feed(data)
        # A line that starts with the prompt is the user's own typing, echoed: not received.
        lines = [row for row in rows if not row.startswith(PROMPT)]
        self._echoed += len(rows) - len(lines)
        return lines, not data

    def write(self, text: str) -> None:
        # A line at a time, each once the prompt is back, as a person types: what the
        # screen shows then is one line's effect, easy to read back.
        for line in text.split("\n"):
            os.write(self._master, line.encode() + b"\r")  # Enter sends CR
            wait_until([self], self._prompt_after(self._echoed + 1), f"{self.label}'s prompt")

    def _prompt_after(self, echoes: int) -> Callable[[], bool]:
        return lambda: self._echoed >= echoes and self.at_prompt

    @property
    def at_prompt(self) -> bool:
        """The prompt is on screen, and nothing typed after it: the client waits for a key."""
        return self.screen.current == PROMPT

    def exit_status(self) -> int:
        """Once the program has closed its terminal: how it exited."""
        try:
            return self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            raise DemoFailed(f"{self.label}'s client closed its terminal, never exited") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self._master)


def command_line(address: tuple[str, int]) -> list[str]:
    """The real client's command line, for a server at `address`."""
    host, port = address
    return [sys.executable, "-m", "section_a.client", "--host", host, "--port", str(port)]
