"""A stuck reader: a client that never reads, and how to fill it before a measurement.

A stuck reader is a socket with a 4 KiB receive buffer that never reads
(`harness.sockets.stuck_reader`). What a server does about it shows only once the
kernel will take no more for it: until then every send succeeds. The kernel
holds a lot first (megabytes: a send buffer grows by itself, unless the server
bounds it), so the steady and churn measurements fill it before they start
(`fill`): the run then begins in the state that matters, a reader whose window
is shut and whose backlog is growing. A chat server queues the lines in its own
bounded backlog and goes on; the asyncio baseline blocks in drain().
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from harness.clients import Client
from harness.lines import load_line
from harness.load import Swarm
from harness.sockets import read_until_eof, stuck_reader

STUCK_EOF_WAIT = 2.0  # seconds to see whether the server closed the stuck reader
FILL_CHUNK = 1000  # lines sent between two looks at a stuck reader's kernel queue
FILL_EXTRA = 4000  # lines (~300 KB) past a full kernel queue: well past asyncio's 64 KiB
# high-water mark, well under the chat servers' 1 MiB --sendq
FILL_MAX = 200_000  # lines: a bound, should a reader's queue never stop growing
FILL_WAIT = 3.0  # seconds for the server to take one chunk of the fill


def send_queue(server: tuple[str, int], peer: tuple[str, int]) -> int | None:
    """Bytes the kernel holds unacknowledged on the server's end of a connection (IPv4).

    From /proc/net/tcp, where addresses are hex in host byte order: 0100007F:1F90.
    """

    def key(address: tuple[str, int]) -> str:
        host = int.from_bytes(socket.inet_aton(address[0]), "little")
        return f"{host:08X}:{address[1]:04X}"

    local, remote = key(server), key(peer)
    with open("/proc/net/tcp") as table:
        for line in table:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[4].split(":")[0], 16)
    return None


@dataclass(frozen=True)
class Fill:
    kept_up: bool  # the server took every line (False: it stalled on the stuck reader)
    kernel_bytes: int  # what the kernel held for the stuck reader once full


def fill(swarm: Swarm, filler: Client, stuck: socket.socket, server: tuple[str, int]) -> Fill:
    """Send from `filler` until the stuck reader's kernel queue is full, then FILL_EXTRA more.

    Done before anyone else connects, so the lines reach the stuck reader only. A
    kernel holds megabytes for a reader with a shut window before a send fails (its
    send buffer grows on its own), so the lines past that are the ones that count:
    a chat server queues them in its own backlog, asyncio blocks in drain().
    """
    seq, queued = 0, -1
    peer = stuck.getsockname()
    while seq < FILL_MAX:
        if not _send_lines(swarm, filler, seq, FILL_CHUNK):
            return Fill(False, max(queued, 0))
        seq += FILL_CHUNK
        now = send_queue(server, peer)
        if now is None or now <= queued:
            break  # no longer growing: full
        queued = now
    return Fill(_send_lines(swarm, filler, seq, FILL_EXTRA), max(queued, 0))


def stuck_and_filled(
    swarm: Swarm, address: tuple[str, int], stuck: bool
) -> tuple[socket.socket | None, Fill | None]:
    """A stuck reader, filled (and its filler, which stays connected), or (None, None)."""
    if not stuck:
        return None, None
    sock = stuck_reader(address)
    [filler] = swarm.connect(1)
    filled = fill(swarm, filler, sock, address)
    if not filled.kept_up:
        # The server stalled. The filler still waits for its sync reply, and a swarm waits
        # for all its waiting clients: let it go (the server stays stalled all the same).
        swarm.disconnect(filler)
    return sock, filled


def _send_lines(swarm: Swarm, sender: Client, first: int, lines: int) -> bool:
    # True once the server has handled them: its reply to a sync comes after them.
    swarm.send(sender, b"".join(load_line(sender.index, s) for s in range(first, first + lines)))
    try:
        swarm.sync([sender], timeout=FILL_WAIT)
    except AssertionError:
        return False
    return True


def closed_by_server(sock: socket.socket | None, wait: float = STUCK_EOF_WAIT) -> bool | None:
    """Whether the server closed the stuck reader within `wait` seconds (None: there was none)."""
    if sock is None:
        return None
    try:
        read_until_eof(sock, wait)
        return True
    except (AssertionError, OSError):
        return False
    finally:
        sock.close()
