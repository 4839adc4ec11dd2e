"""Serving a chat, the same for both stages: options, logging, signals, start and stop.

Stage A's and stage C's servers differ only in how connections are accepted and
given threads (`make diff`); everything a user types or sees on the command line is
here, so the two take the same options and behave the same from the outside.
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
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

from section_a import lag, protocol, room, session
from section_a.options import whole
from section_a.reader import LineReader, RateLimitedReader, TokenBucket

logger = logging.getLogger("chat")

Handler: TypeAlias = Callable[[socket.socket, Any], None]  # serves one connection

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9034
STOP_TIMEOUT = 1.5  # seconds to end the client threads, once the room is closed
STACK_SIZE = 256 * 1024  # bytes of stack per client thread: a client thread needs little
RECVQ = 1024 * 1024  # bytes of a client's lines that --rate may hold back
DEFAULT_BURST = 10
MIB = 1024 * 1024
# The ranges are far past any use (a value past them is a typo), and keep the arithmetic
# done with the values sane: a --rate of 1e-300 would be a wait of 1e300 seconds.
RATES = (0.001, 1_000_000.0)  # lines a second, or 0: off


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The options both servers take; a bad value is one line and exit status 2 (argparse)."""
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="The default host serves this machine only; use --host 0.0.0.0 (or :: for "
        "IPv6 and IPv4) to open the chat to your network. Any client that speaks lines "
        "of UTF-8 works: nc 127.0.0.1 9034",
    )

    def number(option: str, low: int, high: int, default: int, text: str) -> None:
        span = f"{low:,} to {high:,}"  # where `text` has {}: --help states every range
        parser.add_argument(option, type=whole(low, high), default=default, help=text.format(span))

    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    number("--port", 0, 65535, DEFAULT_PORT, "port to listen on, {}; 0 takes a free one")
    number("--max-clients", 1, 1_000_000, room.MAX_CLIENTS, "clients served at once, {}")
    # 1 MiB: the framer holds a line of up to --max-line bytes per client.
    number("--max-line", 1, MIB, protocol.MAX_LINE, "longest line, in bytes, {}")
    sendq = "bytes waiting for a client before what others say waits for it (one that "
    number("--sendq", 1, 1024 * MIB, lag.SENDQ, sendq + "stopped reading is then disconnected), {}")
    parser.add_argument(
        "--rate",
        type=rate,
        default=0.0,
        metavar="LINES/S",
        help="flood control: lines a second each client may send (over it, its lines wait; "
        f"past --recvq bytes waiting, it is disconnected), {RATES[0]:g} to {RATES[1]:,.0f}; 0: off",
    )
    recvq = "with --rate: bytes of a client's lines that may wait for their turn, {}"
    number("--recvq", 1, 1024 * MIB, RECVQ, recvq)
    number(
        "--burst", 1, 1_000_000, DEFAULT_BURST, "with --rate: lines a client may send at once, {}"
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


def rate(text: str) -> float:
    """An argparse type for --rate: 0 (off), or a finite number of lines a second in range."""
    low, high = RATES
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


def raise_fd_limit() -> int:
    """Raise the soft limit on open descriptors to the hard one (a descriptor per client)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        logger.info("raised the open-file limit from %d to %d", soft, hard)
    return hard


# Signals in a threaded program. The kernel gives a signal sent to the process to any one
# thread that does not block it, and Python runs its handlers in the main thread only,
# between two bytecodes: never while that thread sleeps in accept(). So run() blocks
# SIGINT and SIGTERM before any thread starts (a thread inherits the mask of the thread
# that starts it: every thread then blocks them), and one thread takes them when it is
# ready, with sigwait(): a blocking call like any other.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def wait_for_stop() -> None:
    """Block until SIGINT or SIGTERM comes (or came, since run() started)."""
    signum = signal.sigwait(STOP_SIGNALS)
    logger.info("got %s; shutting down", signal.Signals(signum).name)


class ChatServer(Protocol):
    """Stage A's and stage C's way of accepting: see run()."""

    def __init__(self, listener: socket.socket, handler: Handler) -> None: ...
    def serve(self, ready: Callable[[], None]) -> None: ...
    def close(self, timeout: float) -> list[str]: ...


def run(description: str, argv: list[str] | None, server_type: type[ChatServer]) -> int:
    """The life of a chat server process, from its command line to its exit status.

    Only `server_type` differs between the stages: it accepts on the listener and
    runs the handler in a thread per connection; `serve()` calls `ready()` once it
    accepts, and returns at the stop; `close()` joins every thread it started and
    names those still alive after the timeout.
    """
    args = parse_args(description, argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # first: they wait for wait_for_stop()
    raise_fd_limit()
    threading.stack_size(STACK_SIZE)  # before any thread starts: 8 MiB is address space wasted
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    try:  # `::` also takes IPv4 where the system allows it
        listener = socket.create_server(
            (args.host, args.port),
            family=family,
            backlog=socket.SOMAXCONN,
            dualstack_ipv6=args.host == "::",
        )
    except OSError as exc:
        logger.error("cannot listen on %s:%s: %s", args.host, args.port, exc.strerror or exc)
        return 1
    chat = room.ChatRoom(args.max_clients, lag.LagRules(sendq=args.sendq))

    # A Python function, not functools.partial: a call through C code nests one more
    # interpreter loop on the thread's C stack, a page more memory for every idle client.
    def handler(conn: socket.socket, addr: Any) -> None:
        framer = protocol.LineFramer(args.max_line)
        reader = (
            RateLimitedReader(
                conn, framer, TokenBucket(args.rate, args.burst), args.recvq, chat.closing
            )
            if args.rate
            else LineReader(conn, framer)
        )
        session.serve_client(chat, reader, addr)

    def ready() -> None:  # printed, not logged: tests and scripts wait for this line
        host, port = listener.getsockname()[:2]
        shown = f"[{host}]" if listener.family == socket.AF_INET6 else host
        print(f"listening on {shown}:{port}", flush=True)

    server = server_type(listener, handler)
    server.serve(ready)  # until SIGINT or SIGTERM
    chat.close()  # tell everyone, and wake every client's thread to leave
    stuck = server.close(STOP_TIMEOUT)
    if stuck:
        logger.error("threads still running at exit: %s", ", ".join(stuck))
        os._exit(1)  # do not wait for them forever
    logger.info("stopped; %d thread left", threading.active_count())
    return 0
