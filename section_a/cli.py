"""What both chat servers share around the serving itself: options, logging, signals, limits.

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

from section_a import protocol, room

logger = logging.getLogger("chat")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9034
STOP_TIMEOUT = 1.5  # seconds to end every thread; the process exits within 2 s of a signal
STACK_SIZE = 256 * 1024  # bytes of stack per client thread: a client thread needs little


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
        default=room.SENDQ,
        help="bytes waiting for a client that reads too slowly before it is disconnected, "
        + span(SENDQ_RANGE),
    )
    parser.add_argument(
        "--rate",
        type=rate,
        default=0.0,
        metavar="LINES/S",
        help="flood control: lines a second each client may send (over it, its lines wait; "
        f"past --sendq bytes waiting, it is disconnected), {span(RATE_RANGE)}; 0: off",
    )
    parser.add_argument(
        "--burst",
        type=whole(*BURST_RANGE),
        default=DEFAULT_BURST,
        help=f"with --rate: lines a client may send at once, {span(BURST_RANGE)}",
    )
    parser.add_argument(
        "--any-cpu",
        action="store_true",
        help="let the server's threads run on every CPU it may use; by default they share "
        "one, which spares the GIL's hand-offs between CPUs (README: Performance)",
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


def whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`, or one line saying why not."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {low:,} to {high:,}, not {text!r}"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low:,} to {high:,}, not {text.strip()}")
        return value

    return check


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


def make_room(args: argparse.Namespace) -> room.ChatRoom:
    return room.ChatRoom(
        max_clients=args.max_clients,
        sendq=args.sendq,
        max_line=args.max_line,
        rate=args.rate,
        burst=args.burst,
    )


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


def prepare_threads(one_cpu: bool = True) -> None:
    """Small stacks for client threads, and (unless told otherwise) all threads on one CPU.

    Call it before any thread is started: a thread takes its stack size and the CPUs
    it may run on from the settings of the thread that starts it.
    """
    threading.stack_size(STACK_SIZE)  # the default 8 MiB is address space wasted
    if one_cpu:
        keep_to_one_cpu()


# Threads on one CPU. CPython runs Python code in one thread at a time (the GIL); a thread
# lets go of the GIL around every system call (recv, send, accept) and takes it back after.
# Spread over several CPUs, the threads of a busy server hand the GIL back and forth between
# CPUs: letting go of it wakes a waiting thread on another CPU, and by the time that one
# runs, the thread that let go is often back from its system call and holds the GIL again,
# so the woken thread sleeps again. An interrupt between CPUs and two context switches, for
# nothing (the "convoy effect": D. Beazley, Understanding the Python GIL, 2010). On one CPU
# a hand-off is a single context switch, when the holder blocks. Measured here (2 CPUs;
# medians of 3 runs, one CPU against any): connections coming and going 50 at a time, 18
# context switches per connection -> 3.5, server CPU per connection 750 -> 440 us, 1,440 ->
# 2,170 connections a second; 1,000 clients, 20 of them sending, CPU per delivered line
# 13.8 -> 12.6 us, p99 latency 22 -> 21 ms. The price: the kernel's work inside the server's
# system calls runs on that CPU too, so the server never uses more than one (its Python code
# could only use one at a time anyway), and the kernel cannot move it to a less busy CPU
# later. --any-cpu lifts it, for a machine where that matters more.
def keep_to_one_cpu() -> None:
    """Let this thread, and every thread it starts from now on, run only on its current CPU."""
    if not hasattr(os, "sched_setaffinity"):  # Linux has it; other systems decide themselves
        return
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        return
    cpu = current_cpu()
    cpu = cpu if cpu in allowed else min(allowed)
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:  # a container's cpuset can forbid it: the server runs anyway
        logger.warning("cannot keep the threads to one CPU: %s", exc)
    else:
        logger.info("threads kept to CPU %d of %d (--any-cpu: all)", cpu, len(allowed))


def current_cpu() -> int:
    """The CPU this thread is running on now (Linux: /proc/thread-self/stat), or -1."""
    try:
        with open("/proc/thread-self/stat") as stat:
            # Field 39, `processor`; counted after the command name, which may hold spaces.
            return int(stat.read().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return -1


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
    """Calls `stop` on SIGINT or SIGTERM, in the main thread, between two bytecodes.

    The handlers are installed first thing, so that a signal that comes before the
    server is ready neither kills it with the default action nor is lost: `then(stop)`
    calls `stop` at once if a signal came already. `stop` runs inside a signal handler,
    so it may only ask for the stop (set a flag, wake the main thread), and must take
    no lock the main thread could be holding.
    """

    def __init__(self) -> None:
        self.requested = False
        self._stop: Callable[[], None] | None = None
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        logger.info("got %s; shutting down", signal.Signals(signum).name)
        self.requested = True
        if self._stop is not None:
            self._stop()

    def then(self, stop: Callable[[], None]) -> None:
        self._stop = stop
        if self.requested:
            stop()


def wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM (which must be blocked in every thread already)."""
    signum = signal.sigwait(STOP_SIGNALS)
    logger.info("got %s; shutting down", signal.Signals(signum).name)


def fail(message: str) -> int:
    """One clear line for an error a user can cause, and the exit status to return."""
    logger.error("%s", message)
    return 1
