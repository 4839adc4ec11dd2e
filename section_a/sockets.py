"""Socket helpers that the server and the client share.

On Linux, close() from another thread does not wake a thread blocked in recv()
on the same socket; shutdown() does (recv returns b""). So a socket is shut down
to wake its reader, and closed only by the thread that owns it. A wait that must
end has a deadline on the one call, which the kernel enforces (set_deadline).
"""

from __future__ import annotations

import math
import socket
import struct


def shut_down(sock: socket.socket) -> None:
    """Wake every thread blocked on `sock` and send FIN after what is already sent."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut down, or the peer is gone: either way nobody is left to wake


def set_deadline(sock: socket.socket, option: int, seconds: float) -> None:
    """A blocking send() (SO_SNDTIMEO) or recv() (SO_RCVTIMEO) ends after `seconds`; 0: never."""
    usec = math.ceil(seconds * 1_000_000)  # up, never to 0: 0 would mean no deadline at all
    sock.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", *divmod(usec, 1_000_000)))


def peer_name(addr: object) -> str:
    """`host:port` for an IPv4 or IPv6 address tuple."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)
