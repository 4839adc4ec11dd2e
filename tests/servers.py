"""Chat servers as real processes on a free port, and a raw line client to talk to them.

A server is started with `--port 0`: it binds a free port itself and prints
`listening on HOST:PORT`, which `ServerProcess` waits for (with a deadline) to
learn the port. No test ever picks a port and hopes it is free.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.sockets import abort
from tests.promises import NEVER_RAW
from tests.support import DEADLINE

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(rb"listening on \[?([^\]\s]+)\]?:(\d+)")


class ServerProcess:
    """`python -m MODULE --port 0 ARGS...`, with its stderr kept in a log file."""

    def __init__(self, module: str, args: list[str], log_dir: Path) -> None:
        self.module = module
        self.log_path = log_dir / f"{module.replace('.', '_')}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--port", "0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        self.pid = self.proc.pid
        self.host, self.port = self._wait_listening()

    def _wait_listening(self) -> tuple[str, int]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + DEADLINE * 2
        seen = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                seen += line
                if match := LISTENING.search(line):
                    return match.group(1).decode(), int(match.group(2))
                if not line:
                    break
        self.kill()
        raise AssertionError(
            f"{self.module} did not report its port; stdout={seen!r} stderr={self.stderr()!r}"
        )

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def stderr(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = DEADLINE) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLINE)

    def stop(self) -> None:
        """terminate -> wait -> kill; then fail on any traceback the server printed."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        text = self.log_path.read_text(errors="replace")
        assert "Traceback" not in text, f"{self.module} printed a traceback:\n{text}"


class LineClient:
    """A test's chat client: a real socket, lines out, lines in with a deadline."""

    def __init__(self, address: tuple[str, int], *, welcome: bool = True, rcvbuf: int = 0) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf:  # before connect, so the window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(address)
        self._buffer = b""
        self.name = ""
        if welcome:
            line = self.expect(r"^\* welcome, (\S+)\.")
            self.name = line.split()[2].rstrip(".")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def say(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")

    def read_line(self, timeout: float = DEADLINE) -> str:
        """The next line (without its newline); fails on EOF or after `timeout`."""
        line = self.read_raw_line(timeout)
        return line.decode("utf-8")

    def read_raw_line(self, timeout: float = DEADLINE) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line within {timeout}s; have {self._buffer!r}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise AssertionError(f"EOF while waiting for a line; have {self._buffer!r}")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def expect(self, pattern: str, timeout: float = DEADLINE) -> str:
        """Read lines until one matches `pattern` (re.search); return it."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.read_line(max(remaining, 0.001))
            except AssertionError as exc:
                raise AssertionError(f"no line matching {pattern!r}; saw {seen!r}: {exc}") from None
            if re.search(pattern, line):
                return line
            seen.append(line)

    def next_line_is(self, pattern: str, timeout: float = DEADLINE) -> str:
        """The very next line matches `pattern`: nothing came before it."""
        line = self.read_line(timeout)
        assert re.search(pattern, line), f"expected {pattern!r}, got {line!r}"
        return line

    def sync(self) -> None:
        """Prove that nothing unread came before now: ask /who, and its answer must come next."""
        self.say("/who")
        self.next_line_is(r"^\* here now \(")

    def expect_eof(self, timeout: float = DEADLINE) -> list[str]:
        """Read until the server closes; return the lines seen before."""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no EOF within {timeout}s; saw {lines!r}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                rest = self._buffer.decode(errors="replace")
                return lines + ([rest] if rest else [])
            self._buffer += data
            while b"\n" in self._buffer:
                line, _, self._buffer = self._buffer.partition(b"\n")
                lines.append(line.decode(errors="replace"))

    def close(self) -> None:
        self.sock.close()

    # Helpers added for tests/test_chat.py and tests/test_server_process.py.

    def raw_lines_until_sync(self) -> list[bytes]:
        """Ask /who and return the raw lines that came before its answer (so: all unread)."""
        self.say("/who")
        lines = []
        while not (line := self.read_raw_line()).startswith(b"* here now ("):
            lines.append(line)
        return lines

    def lines_until_sync(self) -> list[str]:
        """Like `raw_lines_until_sync`, decoded."""
        return [line.decode("utf-8") for line in self.raw_lines_until_sync()]

    def reset(self) -> None:
        """Close with a reset: the peer gets a RST instead of a FIN."""
        abort(self.sock)


# Characters that must never reach a terminal raw: every control (Cc) and every bidi
# formatting character, as tests/promises.py builds them from their definitions.
TERMINAL_UNSAFE = re.compile("[" + "".join(map(re.escape, sorted(NEVER_RAW))) + "]")


def assert_terminal_safe(line: bytes) -> None:
    """`line` (one line, its newline removed) is valid UTF-8 with nothing that drives a terminal.

    Bytes below 0x20 and 0x7f only ever stand for themselves in UTF-8, so checking the
    decoded characters checks the bytes too.
    """
    text = line.decode("utf-8")  # fails the test on invalid UTF-8
    bad = TERMINAL_UNSAFE.search(text)
    assert bad is None, f"unsafe {bad.group()!r} at {bad.start()} in {line!r}"


def run_server_once(
    module: str, *args: str, timeout: float = DEADLINE
) -> subprocess.CompletedProcess[str]:
    """Run `python -m MODULE ARGS...` to completion (for --help and start-up errors)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def has_ipv6_loopback() -> bool:
    """Whether this machine can listen on ::1."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def join_room(
    connect: Callable[[], LineClient], size: int, among: Sequence[LineClient] = ()
) -> list[LineClient]:
    """`size` new clients from `connect`, each having read the joins of those after it.

    Each newcomer syncs before the next one connects, so its thread has finished
    announcing it: every client then hears of the others in a fixed order. The
    clients `among` (already in the room) read every join too.
    """
    clients: list[LineClient] = []
    for _ in range(size):
        newcomer = connect()
        newcomer.sync()
        for older in (*among, *clients):
            older.next_line_is(rf"^\* {re.escape(newcomer.name)} joined$")
        clients.append(newcomer)
    return clients


def fence(sender: LineClient, *others: LineClient) -> None:
    """Prove that `others` got nothing from `sender` before now: its fresh line comes next.

    The server handles one client's lines in order, so whatever an earlier line of
    `sender` made the server send to the others was queued before this one.
    """
    word = f"fence-{uuid.uuid4().hex[:8]}"
    sender.say(word)
    for other in others:
        other.next_line_is(rf"^{re.escape(sender.name)}: {word}$")
