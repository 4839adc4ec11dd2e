"""Single sockets that a test or the bench holds itself, beside (or instead of) a swarm."""

from __future__ import annotations

import socket
import struct
import time

Address = tuple[str, int]

RECV_SIZE = 64 * 1024  # bytes read at once; under malloc's mmap threshold, so no page faults
TIMEOUT = 30.0  # seconds: the default deadline of every wait


def family(address: Address) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address[0] else socket.AF_INET


def stuck_reader(address: Address, rcvbuf: int = 4096) -> socket.socket:
    """A connected socket that is never read: its window closes after a few KiB.

    SO_RCVBUF is set before connect, so the window is small from the handshake on
    (the kernel doubles the value for its own bookkeeping); 0 keeps the default.
    """
    sock = socket.socket(family(address), socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(address)
    return sock


def read_until_eof(sock: socket.socket, timeout: float = TIMEOUT) -> int:
    """Read and discard until the peer closes (FIN or reset); return the bytes read.

    Fails after `timeout` seconds without the close.
    """
    deadline = time.monotonic() + timeout
    total = 0
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            data = sock.recv(RECV_SIZE)
        except TimeoutError:
            break
        except ConnectionResetError:
            return total
        if not data:
            return total
        total += len(data)
    raise AssertionError(f"no EOF within {timeout:.1f}s ({total} bytes read)")


def reset_on_close(sock: socket.socket) -> None:
    """Make `sock`'s close() send a reset (RST), not a FIN: SO_LINGER on, with no time."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def abort(sock: socket.socket) -> None:
    """Close `sock` with a reset (RST) instead of a FIN: a peer that vanishes mid-stream."""
    reset_on_close(sock)
    sock.close()
