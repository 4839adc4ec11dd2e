"""The two socket facts the proactor is built on: how to wake a blocked thread, how to name a peer.

On Linux, close() from another thread does not wake a thread blocked in accept() or
recv() on the same socket; shutdown() does. So the proactor shuts a listener or a
connection down to wake the thread blocked on it, and only that thread closes it.

Stage A has its own pair (section_a/sockets.py): stage B stands alone and imports nothing
from stage A.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any, TypeAlias

__all__ = ["Address", "peer_name", "wake_blocked"]

Address: TypeAlias = Any  # as accept() returns it: (host, port), or (host, port, flow, scope)


def wake_blocked(sock: socket.socket) -> None:
    """Wake every thread blocked on `sock`: recv() returns b"", send() and accept() fail.

    Linux behaviour: close() from another thread does NOT wake a thread blocked in
    accept() or recv() on the same socket (the blocked call holds the kernel's file open,
    and it stays blocked). shutdown() acts on the connection itself and ends the blocked
    call. So: shutdown here to wake, and let the socket's owner close it afterwards.
    """
    with contextlib.suppress(OSError):  # already closed or never connected: nothing to wake
        sock.shutdown(socket.SHUT_RDWR)


def peer_name(addr: Address) -> str:
    """Name a peer for logs and thread names: '127.0.0.1:5000', '[::1]:5000'."""
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(addr) or "unnamed"  # an AF_UNIX peer is usually unnamed
