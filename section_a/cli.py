"""What both chat servers share around the serving itself: options, logging, signals, limits.

Stage A's and stage C's servers differ only in how connections are accepted and
given threads; everything a user types or sees on the command line is here, so
the two take the same options and behave the same from the outside.
"""

from __future__ import annotations

import argparse
import logging
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

logger = logging.getLogger("chat")

Handler: TypeAlias = Callable[[socket.socket, Any], None]  # serves one connection

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9034
STOP_TIMEOUT = 1.5  # seconds to end every thread; the process exits within 2 s of a signal
STACK_SIZE = 256 * 1024  # bytes of stack per client thread: a client thread needs little
RECVQ = 1024 * 1024  # bytes of a client's lines that --rate may hold back


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="The default host serves this machine only; use --host 0.0.0.0 (or :: for "
        "IPv6 and IPv4) to open the chat to your network. Any client that speaks lines "
        "of UTF-8 works: nc 127.0.0.1 9034",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument(
        "--port", type=port, default=DEFAULT_PORT, help="port to listen on; 0 takes a free one"
    )
    parser.add_argument(
        "--max-clients", type=positive, default=room.MAX_CLIENTS, help="clients served at once"
    )
    parser.add_argument(
        "--max-line", type=positive, default=protocol.MAX_LINE, help="longest line, in bytes"
    )
    parser.add_argument(
        "--sendq",
        type=positive,
        default=lag.SENDQ,
        help="bytes waiting for a client before the room waits for it (a client that stops "
        "reading is then disconnected)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        metavar="LINES/S",
        help="flood control: lines a second each client may send (over it, its lines wait; "
        "past --recvq bytes waiting, it is disconnected); 0: off",
    )
    parser.add_argument(
        "--recvq",
        type=positive,
        default=RECVQ,
        help="with --rate: bytes of a client's lines that may wait for their turn",
    )
    parser.add_argument(
        "--burst", type=positive, default=10, help="with --rate: lines a client may send at once"
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


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {value}")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
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


def raise_fd_limit() -> None:
    """Raise the soft limit on open descriptors to the hard one: one per client."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        logger.info("raised the open-file limit from %d to %d", soft, hard)


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

    def serve(self, stop: SignalStop) -> None:
        """Accept connections and serve each with the handler until `stop` is asked for."""

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
    with signals_blocked():  # the flusher, like every thread but this one, leaves them to us
        chat.start()

    # A Python function, not functools.partial: a call through C code nests one more
    # interpreter loop on the thread's C stack, a page more memory for every idle client.
    def handler(conn: socket.socket, addr: Any) -> None:
        session.serve_client(chat, limits, conn, addr)

    server = server_type(listener, handler)
    announce(listener)
    server.serve(stop)  # until SIGINT or SIGTERM
    chat.close()  # tell everyone, and wake every client's thread to leave
    stuck = server.close(STOP_TIMEOUT)
    chat.stop(STOP_TIMEOUT)
    if stuck:
        logger.error("threads still running at exit: %s", ", ".join(stuck))
        os._exit(1)  # do not wait for them forever
    logger.info("stopped; %d thread left", threading.active_count())
    return 0


def fail(message: str) -> int:
    """One clear line for an error a user can cause, and the exit status to return."""
    logger.error("%s", message)
    return 1
