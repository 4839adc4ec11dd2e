"""Just enough of a terminal to read back the lines that the real client shows.

The demo runs the client in a pseudo-terminal and reads what it writes there, escapes
and all; `ScreenLines` turns that back into the lines a person would see. The tests
use pyte for this; the demo runs on the standard library alone (`python -S`), so it
keeps the few rules that one line editor's prompt needs.
"""

from __future__ import annotations

import codecs


class ScreenLines:
    """The lines a terminal shows, from what a program writes to it: just enough of a terminal.

    Enough for a program that edits one line in place: text overwrites at the
    cursor, CR goes back to the start of the line, LF ends it, backspace and ESC [ n C
    / D move along it, ESC [ K erases to its end; colours and other escapes do nothing,
    and nothing wraps (the terminal is made wide enough).

    >>> screen = ScreenLines()
    >>> screen.feed(b"> /wh\\r\\x1b[K\\r* bob joined\\r\\n> /wh")
    ['* bob joined']
    >>> screen.current
    '> /wh'
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._row: list[str] = []
        self._col = 0
        self._escape = ""  # an escape sequence begun in one read may end in the next

    @property
    def current(self) -> str:
        """The line the cursor is on, not ended yet."""
        return "".join(self._row)

    def feed(self, data: bytes) -> list[str]:
        """Add output; return the lines it ended (trailing blanks removed)."""
        ended: list[str] = []
        for char in self._decoder.decode(data):
            if self._escape:
                self._escape += char
                if _escape_done(self._escape):
                    self._apply(self._escape)
                    self._escape = ""
            elif char == "\x1b":
                self._escape = char
            elif char == "\n":
                ended.append(self.current.rstrip())
                self._row, self._col = [], 0
            elif char == "\r":
                self._col = 0
            elif char == "\b":
                self._col = max(0, self._col - 1)
            elif char.isprintable():
                self._row[len(self._row) : self._col] = " " * (self._col - len(self._row))
                self._row[self._col : self._col + 1] = [char]
                self._col += 1
        return ended

    def _apply(self, sequence: str) -> None:
        if not sequence.startswith("\x1b["):
            return
        command, argument = sequence[-1], sequence[2:-1]
        count = int(argument) if argument.isdigit() else 0
        if command == "K":
            self._row = [] if count == 2 else self._row[: self._col] if count == 0 else self._row
        elif command == "C":
            self._col += max(count, 1)
        elif command == "D":
            self._col = max(0, self._col - max(count, 1))


def _escape_done(sequence: str) -> bool:
    # ESC [ parameters final (CSI), ESC ] text BEL-or-ESC-backslash (OSC), or ESC one char.
    if len(sequence) < 2:
        return False
    if sequence[1] == "[":
        return len(sequence) > 2 and "@" <= sequence[-1] <= "~"
    if sequence[1] == "]":
        return sequence.endswith(("\x07", "\x1b\\"))
    return not " " <= sequence[-1] <= "/"
