"""The receiver thread, and the inbox that carries its lines to the keyboard thread.

The receiver blocks in recv() and never touches the terminal: it paints each line
(`Painter`) and puts it in the `Inbox`, a queue with a pipe beside it. One byte in
the pipe wakes the keyboard thread's select() (the "self-pipe trick"), so that
thread waits for the keyboard and the server at once, without polling. When the
connection ends, the receiver's last word is `End`, and the keyboard thread stops.
"""

from __future__ import annotations

import os
import queue
import socket
from dataclasses import dataclass

from section_a import protocol
from section_a.client.painter import Painter

RECV_SIZE = 16 * 1024
MAX_INCOMING = 1024 * 1024  # bytes in a line from the server: /who in a big room is long


@dataclass(frozen=True)
class End:
    """The receiver's last word: the connection is over, and why."""

    why: str


class Inbox:
    """Lines from the receiver to the keyboard thread, with a pipe to wake its select().

    The receiver puts a line in the queue, then writes one byte to the pipe; the
    keyboard thread drains the pipe, then the queue. A line put after the drain of the
    pipe is still taken (its byte causes one more, empty, wake-up): none is missed.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[str | End] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)  # the receiver must never block on a wake-up

    def fileno(self) -> int:
        return self._wake_r

    def put(self, item: str | End) -> None:
        self._queue.put(item)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already: the keyboard thread will wake

    def take(self) -> tuple[str, End | None]:
        """What has arrived, as text to print, and End if the connection is over."""
        os.read(self._wake_r, 4096)
        lines: list[str] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return "".join(lines), None
            if isinstance(item, End):
                return "".join(lines), item
            lines.append(item + "\n")

    def close(self) -> None:
        os.close(self._wake_r)
        os.close(self._wake_w)


def receive(sock: socket.socket, inbox: Inbox, painter: Painter) -> None:
    """The receiver thread: server lines into the inbox until EOF, then End."""
    framer = protocol.LineFramer(MAX_INCOMING)
    why = "the server closed the connection"
    try:
        while data := sock.recv(RECV_SIZE):
            for line in framer.feed(data):
                inbox.put(painter.server_line(line))
        for line in framer.feed(b"\n" if framer.pending else b""):
            inbox.put(painter.server_line(line))  # a last line that had no newline
    except OSError as exc:
        why = f"lost the connection: {exc.strerror or exc}"
    finally:
        inbox.put(End(why))
