"""Framing: a stream of bytes, split anywhere, in; whole lines out, memory bounded.

A line ends with ``\\n`` or ``\\r\\n``. A line over the limit is refused, and
everything up to its newline is discarded, so its tail never becomes a line. The
end of the input ends a last line too (as ``readline()`` has it). Pure code, used
by the server (through protocol.py) and tested byte by byte, with a property test
that any split of a stream yields the same lines.

    >>> framer = LineFramer(max_line=8)
    >>> framer.feed(b"hel"), framer.feed(b"lo\\r\\nwor")
    ([], [b'hello'])
    >>> framer.feed(b"ld, this line is too long\\nok\\n")
    [Overlong(limit=8), b'ok']
    >>> framer.feed(b"bye"), framer.finish()
    ([], [b'bye'])
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINE = 8192  # bytes in one line, its terminator not counted


@dataclass(frozen=True)
class Overlong:
    """A line went over the limit and was discarded (reported once per line)."""

    limit: int


def _fits(stream: bytes, end: int, limit: int) -> bool:
    """Whether no line of `stream` up to its newline at `end` is over `limit` bytes.

    With no list of lines, at C speed: from the newline before a line, the last newline
    within `limit` bytes after it is where the next look starts; with none, that line is
    over the limit. So it takes about len(stream) / limit calls, not one per line.
    """
    before = -1  # the newline before the line looked at (-1: the stream's start)
    while end - before > limit + 1:  # some line is still to be looked at
        before = stream.rfind(b"\n", before + 1, before + limit + 2)
        if before < 0:
            return False
    return True


class LineFramer:
    """Turns a stream of bytes, split anywhere, into whole lines.

    Memory is bounded: a line whose newline has not arrived yet is checked against
    the limit too (as Twisted's LineReceiver does), so a peer streaming bytes with no
    newline costs at most `max_line` bytes here. Once a line is over the limit the
    framer discards until the next newline and reports `Overlong` once.
    """

    __slots__ = ("_discarding", "_pending", "max_line")  # one per client: no __dict__ for each

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._pending = b""  # the start of a line whose newline has not arrived
        self._discarding = False  # inside an over-long line, until its newline

    def feed(self, data: bytes) -> list[bytes | Overlong]:
        """Add bytes; return the lines they complete (without terminators), in order."""
        if self._discarding:  # inside an over-long line: nothing is kept until its newline
            newline = data.find(b"\n")
            if newline < 0:
                return []
            data = data[newline + 1 :]
            self._discarding = False
        stream = self._pending + data
        lines = stream.split(b"\n")
        rest = lines.pop()  # after the last newline: the start of a line still to come
        # split() runs at C speed; a loop over the lines runs only where one needs it.
        if b"\r" in data or b"\r" in self._pending:
            lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
            too_long = max(map(len, lines), default=0) > self.max_line
        else:  # the same answer, with no pass over the lines
            too_long = not _fits(stream, len(stream) - len(rest) - 1, self.max_line)
        events: list[bytes | Overlong] = list(lines)
        if too_long:
            events = [
                Overlong(self.max_line) if len(line) > self.max_line else line for line in lines
            ]
        # One byte of slack: a line of exactly max_line bytes may be waiting for "\n" after "\r".
        if not self._discarding and len(rest) > self.max_line + 1:
            events.append(Overlong(self.max_line))
            self._discarding = True
        self._pending = b"" if self._discarding else rest
        return events

    def finish(self) -> list[bytes | Overlong]:
        """The input has ended: the last line, if it had no newline, as `feed` would give it.

        Exactly what a newline would have completed, so the limit holds as for any line
        (a line over it already reported gives nothing more). Call it only for an end of
        input the peer chose: a reset or our own shutdown loses the partial line instead.
        The framer is empty afterwards.
        """
        if not self._pending and not self._discarding:
            return []  # the input ended on a line boundary: no line is left
        return self.feed(b"\n")

    @property
    def discarding(self) -> bool:
        """Inside an over-long line: what comes is dropped until its newline."""
        return self._discarding

    @property
    def pending(self) -> int:
        """Bytes held for a line whose newline has not arrived yet."""
        return len(self._pending)
