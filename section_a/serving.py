"""Serving a chat, the same for both stages: options, logging, signals, limits, start and stop.

Stage A's and stage C's servers differ only in how connections are accepted and
given threads; everything a user types or sees on the command line is here, so
the two take the same options and behave the same from the outside.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import resource
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Protocol, TypeAlias

from section_a import lag, protocol, room, session
from section_a.options import whole

logger = logging.getLogger("chat")

Handler: TypeAlias = Callable[[socket.socket, Any], None]  # serves one connection

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9034
STOP_TIMEOUT = 1.5  # seconds to end every thread; the process exits within 2 s of a signal
STACK_SIZE = 256 * 1024  # bytes of stack per client thread: a client thread needs little
RECVQ = 1024 * 1024  # bytes of a client's lines that --rate may hold back


# The range of each numeric option. The limits are far past any use here (a value past
# them is a typo), and keep the arithmetic done with them sane: a --rate of 1e-300
# would mean a wait of 1e300 seconds, which no timeout can hold.
PORTS = (0, 65535)
MAX_CLIENTS_RANGE = (1, 1_000_000)
MAX_LINE_RANGE = (1, 1024 * 1024)  # 1 MiB: the framer holds one line of it per client
SENDQ_RANGE = (1, 1024 * 1024 * 1024)  # 1 GiB per client
BURST_RANGE = (1, 1_000_000)
RATE_RANGE = (0.001, 1_000_000.0)  # lines a second, or 0: off
DEFAULT_BURST = 10


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The options both servers take; a bad value is one line and exit status 2 (argparse)."""
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="The default host serves this machine only; use --host 0.0.0.0 (or :: for "
        "IPv6 and IPv4) to open the chat to your network. Any client that speaks lines "
        "of UTF-8 works: nc 127.0.0.1 9034",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument(
        "--port",
        type=whole(*PORTS),
        default=DEFAULT_PORT,
        help=f"port to listen on, {span(PORTS)}; 0 takes a free one",
    )
    parser.add_argument(
        "--max-clients",
        type=whole(*MAX_CLIENTS_RANGE),
        default=room.MAX_CLIENTS,
        help=f"clients served at once, {span(MAX_CLIENTS_RANGE)}",
    )
    parser.add_argument(
        "--max-line",
        type=whole(*MAX_LINE_RANGE),
        default=protocol.MAX_LINE,
        help=f"longest line, in bytes, {span(MAX_LINE_RANGE)}",
    )
    parser.add_argument(
        "--sendq",
        type=whole(*SENDQ_RANGE),
        default=lag.SENDQ,
        help="bytes waiting for a client before what others say waits for it (one that "
        "stopped reading is then disconnected), " + span(SENDQ_RANGE),
    )
    parser.add_argument(
        "--rate",
        type=rate,
        default=0.0,
        metavar="LINES/S",
        help="flood control: lines a second each client may send (over it, its lines wait; "
        f"past --recvq bytes waiting, it is disconnected), {span(RATE_RANGE)}; 0: off",
    )
    parser.add_argument(
        "--recvq",
        type=whole(*SENDQ_RANGE),
        default=RECVQ,
        help="with --rate: bytes of a client's lines that may wait for their turn, "
        + span(SENDQ_RANGE),
    )
    parser.add_argument(
        "--burst",
        type=whole(*BURST_RANGE),
        default=DEFAULT_BURST,
        help=f"with --rate: lines a client may send at once, {span(BURST_RANGE)}",
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S"
    )
    return args


def span(bounds: tuple[float, float]) -> str:
    """`1 to 1,000,000`: a range as --help states it."""
    low, high = bounds
    return f"{low:,g} to {high:,.0f}" if isinstance(low, float) else f"{low:,} to {high:,}"


def rate(text: str) -> float:
    """An argparse type for --rate: 0 (off), or a finite number of lines a second in range."""
    low, high = RATE_RANGE
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if value == 0:
        return 0.0
    if not low <= value <= high:  # also false for nan; inf is over the top
        raise argparse.ArgumentTypeError(
            f"must be 0 (off) or {low:g} to {high:,.0f} lines a second, not {text!r}"
        )
    return value


def make_room(args: argparse.Namespace) -> tuple[room.ChatRoom, session.Limits]:
    """The room the options describe, and the limits of every client's input."""
    limits = session.Limits(args.max_line, args.rate, args.burst, args.recvq)
    return room.ChatRoom(args.max_clients, lag.LagRules(sendq=args.sendq)), limits


def listen(host: str, port: int) -> socket.socket:
    """A listening socket; `::` also takes IPv4 where the system allows it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server(
        (host, port), family=family, backlog=socket.SOMAXCONN, dualstack_ipv6=host == "::"
    )


def announce(listener: socket.socket) -> None:
    """Print `listening on HOST:PORT`, once the server is ready, signal handlers included.

    Printed, not logged: tests and scripts wait for this exact line on stdout.
    """
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if listener.family == socket.AF_INET6 else host
    print(f"listening on {shown}:{port}", flush=True)


def raise_fd_limit() -> int:
    """Raise the soft limit on open descriptors to the hard one, and return it.

    A descriptor per client, in a server and in the tests' and bench's load generator.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        logger.info("raised the open-file limit from %d to %d", soft, hard)
    return hard


def prepare_threads() -> None:
    """Small stacks for client threads: call it before any thread is started."""
    threading.stack_size(STACK_SIZE)  # the default 8 MiB is address space wasted


# Signals in a threaded program. The kernel delivers a signal sent to the process to any
# one thread that does not block it, but Python runs signal handlers in the main thread
# only. Had a client thread taken SIGTERM, the main thread would sleep on in accept() and
# never run the handler. So every thread but the main one blocks these signals: a thread
# inherits the mask of the thread that starts it, and ours are started in signals_blocked().
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


@contextmanager
def signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM wait while inside; threads started inside block them for good."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class SignalStop:
    """SIGINT or SIGTERM asks for the stop: `then(callback)` runs at it, `wait()` until it.

    The handlers are installed first thing, so that a signal that comes before the
    server is ready neither kills it with the default action nor is lost: `then`
    runs its callback at once if a signal came already. A callback runs inside a
    signal handler, in the main thread, so it may only ask for things (set a flag,
    wake a blocked call), and must take no lock the main thread could be holding.
    """

    def __init__(self) -> None:
        self.requested = False
        self._callbacks: list[Callable[[], None]] = []
        # wait() blocks reading this pipe; the handler writes a byte to it. Not an Event:
        # setting one takes a lock, which the main thread may hold when the signal lands.
        self._read, self._write = os.pipe()
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        logger.info("got %s; shutting down", signal.Signals(signum).name)
        self.requested = True
        os.write(self._write, b"!")
        for callback in self._callbacks:
            callback()

    def then(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)
        if self.requested:
            callback()

    def wait(self) -> None:
        """Block until the stop is asked for (in the main thread: it takes the signals)."""
        os.read(self._read, 1)


class ChatServer(Protocol):
    """How a server accepts and gives each connection a thread (stage A and stage C)."""

    def __init__(self, listener: socket.socket, handler: Handler) -> None: ...

    def serve(self, stop: SignalStop, ready: Callable[[], None]) -> None:
        """Accept connections and serve each with the handler until `stop` is asked for.

        `ready()` is called once connections are accepted, every thread in place.
        """

    def close(self, timeout: float) -> list[str]:
        """Join every connection's thread; the names of those still alive after `timeout`."""


def run(description: str, argv: list[str] | None, server_type: type[ChatServer]) -> int:
    """The life of a chat server process, from its command line to its exit status.

    The same for both stages: only `server_type`, how connections are accepted and
    given threads, differs.
    """
    args = parse_args(description, argv)
    stop = SignalStop()  # first: from now on SIGINT and SIGTERM stop the server cleanly
    raise_fd_limit()
    prepare_threads()
    try:
        listener = listen(args.host, args.port)
    except OSError as exc:
        return fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    chat, limits = make_room(args)

    # A Python function, not functools.partial: a call through C code nests one more
    # interpreter loop on the thread's C stack, a page more memory for every idle client.
    def handler(conn: socket.socket, addr: Any) -> None:
        session.serve_client(chat, limits, conn, addr)

    server = server_type(listener, handler)
    server.serve(stop, ready=lambda: announce(listener))  # until SIGINT or SIGTERM
    chat.close()  # tell everyone, and wake every client's thread to leave
    stuck = server.close(STOP_TIMEOUT)
    if stuck:
        logger.error("threads still running at exit: %s", ", ".join(stuck))
        os._exit(1)  # do not wait for them forever
    logger.info("stopped; %d thread left", threading.active_count())
    return 0


def fail(message: str) -> int:
    """One clear line for an error a user can cause, and the exit status to return."""
    logger.error("%s", message)
    return 1
