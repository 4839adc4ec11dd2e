"""Stage A: the terminal chat client, with exactly two threads.

    keyboard thread (main)                       receiver thread
    ----------------------                       ---------------
    select([keyboard, inbox])  <--- wake byte ---  recv() -> lines -> sanitise, colour
      a key:   readline edits the line;              -> inbox (a queue, and one byte in
               Enter sends it to the server              a pipe to wake the select)
      inbox:   print above the prompt and redraw     EOF or error: put End in the inbox
               the prompt and half-typed text,        and finish
               or End: say so, exit 3

Each thread blocks in one place and wakes only for work: the receiver in recv() on
the socket, the keyboard thread in select() on the keyboard and on the read end of
a pipe (the "self-pipe trick"). Neither polls, and no wait has a timeout except the
short deadline for the server's last lines when the user leaves.

Only the keyboard thread writes to the terminal. readline is not thread-safe: if
the receiver printed and redrew the line while the keyboard thread was inside
readline, the two would race on readline's buffers and on the screen. So the
receiver hands each line over, and the keyboard thread prints it between two keys.
That same pipe is how the receiver ends the program: when the server goes away it
puts End in the inbox, which wakes the keyboard thread at once, wherever the user
is in a line. No signal, and nothing left blocked in input().

Leaving: on /quit or Ctrl-D (end of input) the keyboard thread shuts the sending
side of the socket (the server reads EOF, or /quit and says bye; then it closes),
prints what still arrives until the receiver's End, or for at most LEAVE_TIMEOUT
seconds, then joins the receiver. Ctrl-C (SIGINT) and SIGTERM raise `Interrupted`
in the keyboard thread, wherever it blocks; shutdown() wakes the receiver's recv()
(close() would not, on Linux). The terminal modes are saved at start and restored
on every way out.

With a terminal on stdin and stdout the user gets readline (editing, history with
the Up arrow), colour and a prompt; otherwise plain lines, so the client works in
pipes and scripts: printf 'hi\\n' | python -m section_a.client

This module is the keyboard thread, and who starts, wakes and joins the receiver.
The receiver and its inbox are in receiver.py, the consoles in console.py, how a
line is shown in painter.py, the options and exit statuses in command_line.py.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from section_a import protocol
from section_a.client.command_line import CANNOT_CONNECT, LEFT, SERVER_GONE, parse_args
from section_a.client.console import Console, PlainConsole, ReadlineConsole
from section_a.client.painter import Painter, wants_colour
from section_a.client.receiver import Inbox, receive
from section_a.sockets import shut_down

PROMPT = "> "
CONNECT_TIMEOUT = 10.0  # seconds to establish the connection; then no timeouts at all
LEAVE_TIMEOUT = 2.0  # seconds for the server's last lines after we leave
JOIN_TIMEOUT = 1.0  # seconds for the receiver to finish once its socket is shut down


class Interrupted(Exception):
    """Raised in the keyboard thread by SIGINT (Ctrl-C) or SIGTERM, wherever it blocks."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into `Interrupted`, so that every exit runs the cleanup."""

    def handler(signum: int, frame: FrameType | None) -> None:
        # Raising, not setting a flag: system calls are retried after a handler that
        # returns (PEP 475), so select() would go back to sleep.
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def chat(sock: socket.socket, console: Console, inbox: Inbox, painter: Painter) -> int:
    """The keyboard thread's loop: a key or a line from the user, or the server's lines."""
    while True:
        console.prompt()
        ready, _, _ = select.select([console, inbox], [], [])
        if inbox in ready:
            text, end = inbox.take()
            console.show(text)
            if end is not None:
                console.stop()
                print(painter.note(end.why), file=sys.stderr)
                return SERVER_GONE
        if console in ready:
            lines = console.read()
            if lines is None:
                return leave(sock, console, inbox)
            for line in lines:
                if not send(sock, line):
                    break  # the receiver sees the connection end and says why
                if isinstance(protocol.parse(line), protocol.Quit):
                    return leave(sock, console, inbox)


def send(sock: socket.socket, line: str) -> bool:
    """Send one line of the user's; False if the connection is gone."""
    if not line.strip():
        return True  # the server would ignore it
    try:
        sock.sendall(line.encode() + b"\n")
    except OSError:
        return False
    return True


def leave(sock: socket.socket, console: Console, inbox: Inbox) -> int:
    """Say we are done sending, show what the server still sends, until it closes."""
    console.stop()
    try:
        sock.shutdown(socket.SHUT_WR)  # the server reads EOF and closes its side
    except OSError:
        pass  # already gone: the receiver has seen it or will
    deadline = time.monotonic() + LEAVE_TIMEOUT
    while (remaining := deadline - time.monotonic()) > 0:
        if not select.select([inbox], [], [], remaining)[0]:
            break  # a server that does not close is not waited for any longer
        text, end = inbox.take()
        console.show(text)
        if end is not None:
            break
    return LEFT


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    sock.settimeout(None)  # from now on, blocking: the receiver waits in recv() for as long
    return sock


def open_console() -> Console:
    """readline if a person is at a terminal, plain lines otherwise."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        console = ReadlineConsole.open(PROMPT, sys.stdout)
        if console is not None:
            return console
    return PlainConsole(sys.stdin.fileno(), sys.stdout)


def run(sock: socket.socket, args: argparse.Namespace, painter: Painter) -> int:
    """Start the receiver, run the keyboard loop, and always clean up after both."""
    inbox = Inbox()
    receiver = threading.Thread(
        target=receive,
        args=(sock, inbox, painter),
        name="receiver",
        daemon=True,  # joined below; if it ever hung, it must not keep the process alive
    )
    console: Console | None = None
    try:
        receiver.start()
        console = open_console()
        if console.interactive:
            where = address(sock.getpeername()[0], args.port)
            console.show(painter.note(f"connected to {where}; /quit or Ctrl-D leaves") + "\n")
        if args.name:
            send(sock, f"/nick {args.name}")
        return chat(sock, console, inbox, painter)
    except Interrupted as exc:
        return 128 + exc.signum
    finally:
        # On the way out a second Ctrl-C must not cut the cleanup short: blocked for good.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        if console is not None:
            console.close()  # the terminal as it was, before anything else
        shut_down(sock)  # wakes the receiver's recv(), if it is still there
        if receiver.ident is not None:
            receiver.join(JOIN_TIMEOUT)
        sock.close()
        if not receiver.is_alive():
            inbox.close()  # not under a receiver that might still write a wake-up


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    painter = Painter(
        colour=wants_colour(sys.stdout, os.environ, args.no_color), timestamps=args.timestamps
    )
    with interruptible():
        try:
            try:
                sock = connect(args.host, args.port)
            except OSError as exc:
                where = address(args.host, args.port)
                print(f"cannot connect to {where}: {exc.strerror or exc}", file=sys.stderr)
                return CANNOT_CONNECT
            return run(sock, args, painter)
        except Interrupted as exc:  # before the keyboard loop: while connecting, say
            return 128 + exc.signum
        except BrokenPipeError:  # stdout was closed (client | head -1): nobody to tell
            # Point stdout at /dev/null, so that flushing it at exit cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return LEFT


if __name__ == "__main__":
    sys.exit(main())
