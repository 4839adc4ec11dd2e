"""Programs the grader did not write, run so that none of them outlives it.

Every program runs in a process group of its own (a new session), so one signal
reaches it and every process it forks. `Program.stop()` sends SIGTERM to the group,
waits a moment, then SIGKILL; `stop_all()` stops whatever is still running, and the
command line calls it however the grader ends (normally, an exception, SIGTERM or
SIGINT, which `cli.py` turns into `Interrupted`). Against SIGKILL of the grader, which
runs no code of ours, each child asks the kernel for a signal of its own when its
parent dies (Linux's PR_SET_PDEATHSIG, set between fork and exec): the child is
killed with the grader. Its own children are not; a server that forks (a wrapper
script, a fork per client) survives a SIGKILLed grader as orphans. That is the one
gap, and the reason to end the grader with SIGTERM or Ctrl-C.

A server is ready when it listens: a socket in state LISTEN on its port in
/proc/net/tcp or tcp6, read from the kernel. Connecting to find out would be a
client of its own, one more thread to come and go while the checks count them.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import signal
import subprocess
import tempfile
import termios
import time
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies
GRACE = 1.0  # seconds between SIGTERM and SIGKILL when stopping a program
LAST_WORDS = 160  # characters of a program's output shown when it died
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column

_libc = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: the child only calls it
_running: set[Program] = set()


def _die_with(parent: int, terminal: bool) -> Callable[[], None]:
    """The child's last step before exec: be SIGKILLed when `parent` (the grader) dies;
    with `terminal`, make its stdout (a pty) its controlling terminal, as a shell would."""

    def preexec() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the grader died before prctl took effect
            os._exit(1)
        if terminal:
            fcntl.ioctl(1, termios.TIOCSCTTY, 0)

    return preexec


class Program:
    """One command run in its own process group, its output kept in a file."""

    def __init__(
        self,
        argv: list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: int | None = subprocess.PIPE,
        stdout: int | None = None,
        terminal: bool = False,
    ) -> None:
        self.argv = argv
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self._words = ""  # its last words, kept when the log is closed
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(os.environ, **(env or {})),
            # A pipe never written: a server that reads its stdin waits there instead of
            # seeing end of file and quitting.
            stdin=stdin,
            stdout=self._log if stdout is None else stdout,
            stderr=self._log if stdout is None else subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with(os.getpid(), terminal),
        )
        self.pid = self.proc.pid
        _running.add(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ending(self) -> str:
        """'exit status 1', 'killed by SIGSEGV', or 'still running'."""
        code = self.proc.poll()
        if code is None:
            return "still running"
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"

    def how_it_ended(self) -> str:
        """`ending()`, with its last output, for evidence."""
        ended = self.ending()
        words = self.last_words()
        return f"{ended}; its last output: {words!r}" if words else ended

    def last_words(self) -> str:
        if self._log.closed:
            return self._words
        self._log.flush()
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - LAST_WORDS))
        return self._log.read().decode("utf-8", "replace").strip()

    def signal(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:  # the whole group is gone already
            pass

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM to the group, then SIGKILL; the group is signalled even if the
        leader is gone, since what it forked may not be."""
        if self.alive():
            self.signal(signal.SIGTERM)
            self.wait(GRACE)
        self.signal(signal.SIGKILL)
        self.wait(GRACE)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if not self._log.closed:
            self._words = self.last_words()
            self._log.close()
        _running.discard(self)


def stop_all() -> None:
    """Stop every program still running: the grader's last act, however it ends."""
    for program in list(_running):
        program.stop()


def listening_sockets(port: int) -> list[tuple[str, int]]:
    """(address, inode) of every socket in LISTEN on `port` in this network namespace."""
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:  # no IPv6 in this kernel
            continue
        for row in rows:
            fields = row.split()
            address, port_hex = fields[1].split(":")
            if fields[3] == LISTEN and int(port_hex, 16) == port:
                found.append((_address(address, v6), int(fields[9])))
    return found


def _address(hex_address: str, v6: bool) -> str:
    # /proc/net/tcp prints each 32-bit word of the address in the host's (little-endian) order.
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.IPv6Address(words) if v6 else ipaddress.IPv4Address(words))


def connect_address(listening: str) -> str:
    """Where a client reaches a server listening on `listening`: loopback for a wildcard."""
    if listening == "0.0.0.0":
        return "127.0.0.1"
    if listening == "::":
        return "::1"
    return listening


def socket_owner(program: Program, inode: int) -> int:
    """The pid in `program`'s session that holds socket `inode` (a wrapper script's
    server, say), or the program's own pid if none is found."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[3]) != program.pid:  # its session
                continue
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") == f"socket:[{inode}]":
                    return int(entry)
        except (OSError, ValueError, IndexError):  # it ended while we looked
            continue
    return program.pid


def wait_listening(program: Program, port: int, timeout: float) -> tuple[str, int] | str:
    """(address to connect to, pid of the listener), or why not: it died, or too slow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not program.alive():
            return f"it ended before listening: {program.how_it_ended()}"
        sockets = listening_sockets(port)
        if sockets:
            v4 = [s for s in sockets if ":" not in s[0]]
            address, inode = (v4 or sockets)[0]
            return connect_address(address), socket_owner(program, inode)
        time.sleep(0.02)
    words = program.last_words()
    return f"not listening on port {port} within {timeout:g} s" + (
        f"; its output: {words!r}" if words else ""
    )
