"""The client checks: a student's client against a small server the grader runs itself.

    grader's server (a socket here) <-- TCP --> client under test <-- pty --> the grader "types"

The client runs in a pseudo-terminal, as in a person's terminal (stdin and stdout a
tty, its controlling terminal), or with `--client-stdin pipe` its input a pipe (its
output still the terminal, so C's stdio writes each line at once). The grader plays
both the person (it types, and reads the screen's bytes) and the server (it accepts
the client's one connection, reads what it sends and sends it lines). The assignment's client has
two threads, the keyboard's and the receiver's, that block and never poll, and it
ends by itself when its input ends or the server goes.
"""

from __future__ import annotations

import fcntl
import os
import selectors
import socket
import struct
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from grader.checks import Verdict, check, threads_
from grader.probes import Tokens, pump_until
from grader.processes import Program
from grader.subject import CannotRun, Failed, substitute

IDLE_CPU = 2.0  # per cent of one core
IDLE_WINDOW = 1.5  # seconds
CONNECT_TIMEOUT = 5.0  # seconds from exec to a connection to the grader's server
EXIT_TIMEOUT = 2.0  # seconds for the client to end once its input ends or the server goes
ROWS, COLUMNS = 24, 80
SCREEN_KEPT = 1024 * 1024  # bytes of the client's output kept
EOF_KEY = b"\x04"  # Ctrl-D: a terminal's end of input, at the start of a line


@dataclass
class ClientSubject:
    """A client command; `{host}` and `{port}` become the grader's server's."""

    command: str
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    stdin: str = "pty"  # or "pipe": its input a pipe, its output still the terminal
    broken: str = ""  # why it never connected, once it did not

    def start(self) -> ClientRun:
        if self.broken:
            raise CannotRun(self.broken)
        return ClientRun(self)


class ClientRun:
    """One run of the client: the grader's listener, its connection, the pty, the process."""

    def __init__(self, subject: ClientSubject) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.conn: socket.socket | None = None
        self.received = b""  # what the client sent the server
        self.screen = b""  # what the client wrote to its terminal
        self.tokens = Tokens()
        host, port = self.listener.getsockname()
        argv = substitute(subject.command, host=host, port=port)
        self.master, slave = os.openpty()
        # A terminal of a person's size: a program that lays out its screen needs one.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        env = {"TERM": "xterm", **subject.env}
        self.piped = subject.stdin == "pipe"
        keys, self.keyboard = os.pipe() if self.piped else (slave, self.master)
        try:
            self.program = Program(
                argv, cwd=subject.cwd, env=env, stdin=keys, stdout=slave, terminal=True
            )
        except OSError as exc:
            self._close_fds()
            self.listener.close()
            subject.broken = f"cannot run {argv[0]!r}: {exc.strerror or exc}"
            raise CannotRun(subject.broken) from None
        finally:
            os.close(slave)
            if self.piped:
                os.close(keys)
        self.pid = self.program.pid
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.master, selectors.EVENT_READ)
        self.selector.register(self.listener, selectors.EVENT_READ)
        if not self.wait(lambda: self.conn is not None, CONNECT_TIMEOUT):
            subject.broken = f"it did not connect within {CONNECT_TIMEOUT:g} s ({self.ended()})"
            self.close()
            raise CannotRun(subject.broken)

    def ended(self) -> str:
        return self.program.how_it_ended() + (
            f"; its screen: {self.screen[-120:]!r}" if self.screen else ""
        )

    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        return pump_until(condition, timeout, self._pump)

    def _pump(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            self._ready(key.fileobj)

    def _ready(self, source: object) -> None:
        if source is self.listener:
            self.conn, _ = self.listener.accept()
            self.selector.unregister(self.listener)
            self.selector.register(self.conn, selectors.EVENT_READ)
        elif isinstance(source, socket.socket):  # the connection
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:  # the client is done sending: close, as a chat server would
                self.selector.unregister(source)
                source.close()
            self.received += data
        else:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every process holding the pty's other side has ended
                data = b""
            if not data:
                self.selector.unregister(self.master)
            self.screen = (self.screen + data)[-SCREEN_KEPT:]  # a client may flood its terminal

    def type_line(self, text: bytes) -> None:
        """Type `text` and Enter (a terminal's Enter is \\r; a pipe's line ends in \\n)."""
        os.write(self.keyboard, text + (b"\n" if self.piped else b"\r"))

    def end_input(self) -> None:
        """Ctrl-D at the start of a line in a terminal; in a pipe, its end."""
        if self.piped:
            os.close(self.keyboard)
            self.keyboard = -1
        else:
            os.write(self.keyboard, EOF_KEY)

    def _close_fds(self) -> None:
        if self.piped and self.keyboard >= 0:
            os.close(self.keyboard)
        os.close(self.master)

    def exited(self) -> bool:
        """Whether the process has ended (a zombie counts; it is not reaped here)."""
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
        except OSError:
            return True

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def cpu_percent(self, window: float) -> float:
        """Its CPU over `window` seconds (or until it ends), in per cent of a core."""
        began, cpu = time.monotonic(), self.cpu()
        self.wait(self.exited, window)
        return 100 * (self.cpu() - cpu) / max(time.monotonic() - began, 0.1)

    def close(self) -> None:
        self.program.stop()
        self.selector.close()
        for sock in (self.conn, self.listener):
            if sock is not None:
                sock.close()
        self._close_fds()

    def __enter__(self) -> ClientRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settle(run: ClientRun) -> None:
    """A round trip: a line from the server shown on the screen, so the client is up."""
    text = b"grader: " + run.tokens.line(0, 0)
    assert run.conn is not None
    run.conn.sendall(text + b"\n")
    if not run.wait(lambda: text[8:] in run.screen, 3.0):
        raise Failed(f"a line from the server was not shown within 3 s ({run.ended()})")


@check("client_two_threads", "client", "two threads: the keyboard's and the receiver's")
def client_two_threads(subject: ClientSubject) -> Verdict:
    with subject.start() as run:
        _settle(run)
        run.wait(lambda: False, 0.3)
        threads = run.threads()
        return Verdict(threads == 2, f"{threads_(threads)} once connected (expected 2)")


@check("client_relays", "client", "a line typed reaches the server; a line from it is shown")
def client_relays(subject: ClientSubject) -> Verdict:
    with subject.start() as run:
        _settle(run)
        typed = run.tokens.line(1, 1)
        run.type_line(typed)
        if not run.wait(lambda: typed in run.received, 2.0):
            return Verdict(
                False,
                f"a typed line did not reach the server within 2 s; it got {run.received[-100:]!r}",
            )
        shown = run.tokens.line(2, 2)
        assert run.conn is not None
        run.conn.sendall(b"someone: " + shown + b"\n")
        if not run.wait(lambda: shown in run.screen, 2.0):
            return Verdict(
                False,
                f"a line from the server was not shown within 2 s; the screen "
                f"ends {run.screen[-100:]!r}",
            )
    return Verdict(True, "a typed line reached the server; a line from the server was shown")


@check("client_no_busy_wait", "client", "under 2 % of a core idle, and after its input ends")
def client_no_busy_wait(subject: ClientSubject) -> Verdict:
    with subject.start() as run:
        _settle(run)
        idle = run.cpu_percent(IDLE_WINDOW)
        run.end_input()
        began = time.monotonic()
        after = run.cpu_percent(IDLE_WINDOW)
        if run.exited():  # its CPU then went to ending, which is no busy wait
            ended, after = f"it ended {time.monotonic() - began:.2f} s after its input did", 0.0
        else:
            ended = f"{after:.1f} % once its input ended (still running)"
    evidence = (
        f"{idle:.1f} % of a core idle, over {IDLE_WINDOW:g} s; {ended} "
        f"(at most {IDLE_CPU:g} % expected)"
    )
    return Verdict(idle <= IDLE_CPU and after <= IDLE_CPU, evidence)


@check("client_exits_when_server_goes", "client", "it ends within 2 s of the server closing")
def client_exits_when_server_goes(subject: ClientSubject) -> Verdict:
    with subject.start() as run:
        _settle(run)
        assert run.conn is not None
        run.conn.shutdown(socket.SHUT_RDWR)  # what close() sends, while keeping the socket
        return _ends(run, "the server closed the connection")


@check("client_exits_on_eof", "client", "it ends within 2 s of the end of its input (Ctrl-D)")
def client_exits_on_eof(subject: ClientSubject) -> Verdict:
    with subject.start() as run:
        _settle(run)
        run.end_input()
        return _ends(run, "its input ended" + (" (the pipe closed)" if run.piped else " (Ctrl-D)"))


def _ends(run: ClientRun, after: str) -> Verdict:
    began = time.monotonic()
    if not run.wait(run.exited, EXIT_TIMEOUT):
        return Verdict(False, f"still running {EXIT_TIMEOUT:g} s after {after}")
    took = time.monotonic() - began
    run.program.wait(1.0)
    return Verdict(True, f"ended {took:.2f} s after {after} ({run.program.ending()})")
