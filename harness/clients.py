"""One simulated client of the load generator: its socket, and what it has read so far."""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

RECENT = 16  # lines of the server's own that a client keeps, for assertions and messages

# How load lines are examined as they arrive: counted only; compared with the expected
# streams (fan_out); or parsed one by one for order and send time (steady).
COUNT, VERIFY, LATENCY = "count", "verify", "latency"


@dataclass(eq=False)
class Client:
    """One simulated client of a `Swarm`: a non-blocking socket and what it has read."""

    index: int  # its number in the swarm; also its sender number in load lines
    sock: socket.socket
    pace: tuple[int, float] | None = None  # read at most (bytes, every seconds); None: at once
    vanish_after: int = 0  # reset the connection once this many load lines arrived (0: never)
    name: str = ""  # from the welcome line
    first: bytes | None = None  # the first line it got: the welcome, or a refusal
    notices: int = 0  # lines the server itself wrote ("* ..."): welcome, notices, replies
    recent: deque[bytes] = field(default_factory=lambda: deque(maxlen=RECENT))  # last notices
    load_lines: int = 0  # load lines received since the current run began
    eof: bool = False  # closed: by the server (EOF, reset), or by the swarm (`closed_by_us`)
    closed_by_us: bool = False
    # -- the loop's bookkeeping
    tail: bytes = b""  # the start of a line whose newline has not arrived
    out: deque[memoryview] = field(default_factory=deque)  # queued for sending
    events: int = 0  # what the selector watches for
    token: bytes | None = None  # a reply it waits for (see Swarm.sync)
    target: int = 0  # load lines it waits for in the current run
    next_seq: dict[bytes, int] = field(default_factory=dict)  # sender -> line expected next
    last_seq: dict[bytes, bytes] = field(default_factory=dict)  # sender -> last seq seen
    disordered: int = 0
    latencies: list[int] = field(default_factory=list)
    on_first: Callable[[Client], None] | None = None  # called once its first line is in
    on_eof: Callable[[Client], None] | None = None  # called once it is closed, either way

    @property
    def welcomed(self) -> bool:
        return bool(self.name)

    @property
    def cut(self) -> bool:
        """The server closed it (not the swarm)."""
        return self.eof and not self.closed_by_us

    @property
    def satisfied(self) -> bool:
        return self.first is not None and self.token is None and self.load_lines >= self.target
