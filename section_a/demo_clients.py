"""The demo's clients, and how the demo knows that a step is over: by probing, not pausing.

`section_a.demo` has two kinds of client: `LineClient`, a plain socket that sends
and reads lines as `nc` would (or, stuck, never reads), and `TerminalClient`, the
real client, ``python -m section_a.client``, run in a pseudo-terminal of its own
(the standard library's `os.openpty`), typed at like a keyboard, its screen read back
line by line (`ScreenLines`).

A step is over when every client has received everything the step caused. Waiting
"long enough" would be a guess, so the demo asks instead. Each client sends a *probe*,
a command the server does not know with a fresh number (``/sync-7``); the server
answers it to that client alone, and only after everything it had for that client
before (a reply waits for what the room was told earlier: `ChatRoom.tell`). So the
lines that come before the answer are all the step sent that client:

    the actor types a line ----> the server carries it out: its effects queue for everyone
    the actor's probe ----------> answered: the server is done with the line
    everyone else's probe ------> answered: what came before is all the step sent them

The actors probe first: the others' probes must reach the server after it has carried
out the line, or their answers could overtake its effects. A step that nobody typed
(a connection drops, the server cuts a client) has no actor: the demo first waits,
with a deadline, for the line that announces it to reach one client, then probes
everyone. Probes and their answers are never shown.
"""

from __future__ import annotations

import codecs
import fcntl
import itertools
import os
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from section_a import protocol
from section_a.client.app import PROMPT
from section_a.client.receiver import MAX_INCOMING

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 5.0  # seconds to wait for any one thing before the demo fails
ROWS, COLS = 24, 240  # the pseudo-terminal's size: wide, so that no line of the demo wraps
WELCOME = re.compile(r"^\* welcome, (\S+)\.")
RENAMED = re.compile(r"^\* you are now (\S+)$")

_probes = itertools.count(1)


class DemoFailed(Exception):
    """Something the demo expected did not happen."""


def thread_count(pid: int) -> int:
    """The threads of process `pid`, as the kernel counts them (/proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise DemoFailed(f"no Threads: line in /proc/{pid}/status")


def threads_become(pid: int, expected: int, whose: str) -> int:
    """Wait (with a deadline) until process `pid` has `expected` threads."""
    deadline = time.monotonic() + DEADLINE
    while (count := thread_count(pid)) != expected:
        if time.monotonic() > deadline:
            raise DemoFailed(f"expected {expected} threads, {whose} has {count}")
        time.sleep(0.01)  # a thread that ends tells nobody: the count is polled
    return count


class Client:
    """What the demo needs of any client: its lines as they arrive, typing, probing."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.name = ""  # the server's name for it: from its welcome, then from /nick
        self.received: list[str] = []  # arrived, not yet taken by the demo
        self.ended = False  # the connection (or the program) has ended
        self._probe: re.Pattern[str] | None = None  # the answer awaited, if probing

    def fileno(self) -> int:
        raise NotImplementedError

    def _read(self) -> tuple[list[str], bool]:
        """The lines that one read completes, and whether the input has ended."""
        raise NotImplementedError

    def write(self, text: str) -> None:
        """Send `text` (one or more lines, no final newline) without showing it."""
        raise NotImplementedError

    def pump(self) -> None:
        """Read what is waiting (select said so): the lines go to `received`."""
        lines, self.ended = self._read()
        for line in lines:
            if self._probe is not None and self._probe.search(line):
                self._probe = None  # the answer: the end of a step, not part of it
                continue
            if match := WELCOME.match(line) or RENAMED.match(line):
                self.name = match.group(1)
            self.received.append(line)

    def type(self, text: str) -> None:
        print(f"  {self.label:>6} types: {text}")
        self.write(text)

    def probe(self) -> None:
        word = f"sync-{next(_probes)}"
        self._probe = re.compile(rf"^\* .*/{word}\b")
        self.write(f"/{word}")

    @property
    def probing(self) -> bool:
        return self._probe is not None

    def take(self) -> list[str]:
        lines, self.received = self.received, []
        return lines

    def close(self) -> None:
        pass


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
        # A known terminal, no colour, no user readline settings: the same screen everywhere.
        env = dict(os.environ, TERM="xterm", NO_COLOR="1", INPUTRC="/dev/null")
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
        # A line at a time, each once the prompt is back, as a person types. readline puts the
        # terminal back in its ordinary mode while it hands a line over, so keys that came
        # then would be echoed twice: once by the kernel, once by readline.
        for line in text.split("\n"):
            os.write(self._master, line.encode() + b"\r")  # Enter sends CR
            wait_until([self], self._prompt_after(self._echoed + 1), f"{self.label}'s prompt")

    def _prompt_after(self, echoes: int) -> Callable[[], bool]:
        return lambda: self._echoed >= echoes and self.at_prompt

    @property
    def at_prompt(self) -> bool:
        """The prompt is on screen: readline has the keyboard (typing now is not echoed twice)."""
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


class ScreenLines:
    """The lines a terminal shows, from what a program writes to it: just enough of a terminal.

    Enough for a program that edits one line with readline: text overwrites at the
    cursor, CR goes back to the start of the line, LF ends it, backspace and ESC [ n C
    / D move along it, ESC [ K erases to its end; colours and other escapes do nothing,
    and nothing wraps (the terminal is made wide enough).

    >>> screen = ScreenLines()
    >>> screen.feed(b"> /wh\\r\\x1b[K\\r* bob joined\\r\\n> /wh")
    ['* bob joined']
    >>> screen.current
    '> /wh'
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._row: list[str] = []
        self._col = 0
        self._escape = ""  # an escape sequence begun in one read may end in the next

    @property
    def current(self) -> str:
        """The line the cursor is on, not ended yet."""
        return "".join(self._row)

    def feed(self, data: bytes) -> list[str]:
        """Add output; return the lines it ended (trailing blanks removed)."""
        ended: list[str] = []
        for char in self._decoder.decode(data):
            if self._escape:
                self._escape += char
                if _escape_done(self._escape):
                    self._apply(self._escape)
                    self._escape = ""
            elif char == "\x1b":
                self._escape = char
            elif char == "\n":
                ended.append(self.current.rstrip())
                self._row, self._col = [], 0
            elif char == "\r":
                self._col = 0
            elif char == "\b":
                self._col = max(0, self._col - 1)
            elif char.isprintable():
                self._row[len(self._row) : self._col] = " " * (self._col - len(self._row))
                self._row[self._col : self._col + 1] = [char]
                self._col += 1
        return ended

    def _apply(self, sequence: str) -> None:
        if not sequence.startswith("\x1b["):
            return
        command, argument = sequence[-1], sequence[2:-1]
        count = int(argument) if argument.isdigit() else 0
        if command == "K":
            self._row = [] if count == 2 else self._row[: self._col] if count == 0 else self._row
        elif command == "C":
            self._col += max(count, 1)
        elif command == "D":
            self._col = max(0, self._col - max(count, 1))


def _escape_done(sequence: str) -> bool:
    # ESC [ parameters final (CSI), ESC ] text BEL-or-ESC-backslash (OSC), or ESC one char.
    if len(sequence) < 2:
        return False
    if sequence[1] == "[":
        return len(sequence) > 2 and "@" <= sequence[-1] <= "~"
    if sequence[1] == "]":
        return sequence.endswith(("\x07", "\x1b\\"))
    return not " " <= sequence[-1] <= "/"


def wait_until(clients: Sequence[Client], done: Callable[[], bool], what: str) -> None:
    """Read every client as its lines arrive until `done()`, or fail after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while not done():
        live = [client for client in clients if not client.ended]
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not live:
            why = f"not within {DEADLINE:g}s" if live else "every connection ended"
            raise DemoFailed(f"waiting for {what}: {why}")
        readable, _, _ = select.select(live, [], [], remaining)
        for client in readable:
            client.pump()


def settle(
    everyone: Sequence[Client],
    actors: Sequence[Client] = (),
    until: tuple[Client, str] | None = None,
) -> None:
    """Return once each of `everyone` has received everything the step sent it.

    `actors` typed the step: they probe first. `until`: a client and a pattern that
    one of the lines it receives matches: the sign of a step nobody typed.
    """
    if until is not None:
        client, pattern = until
        wait_until(
            everyone,
            lambda: any(re.search(pattern, line) for line in client.received),
            f"{client.label} to see {pattern!r}",
        )
    others = [client for client in everyone if client not in actors]
    for group in (actors, others):
        for client in group:
            client.probe()
        wait_until(everyone, answered(group), "the answers to the probes")


def answered(group: Sequence[Client]) -> Callable[[], bool]:
    return lambda: not any(client.probing for client in group)


def command_line(address: tuple[str, int]) -> list[str]:
    """The real client's command line, for a server at `address`."""
    host, port = address
    return [sys.executable, "-m", "section_a.client", "--host", host, "--port", str(port)]
