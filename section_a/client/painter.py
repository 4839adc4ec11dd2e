"""How the client shows a line from the server: sanitised first, then coloured.

Sanitised first (`protocol.sanitise`: invalid UTF-8 becomes U+FFFD, an ESC the visible
``^[``), so every escape sequence that reaches the terminal is one the client wrote
itself. A name always gets the same colour (a CRC of the name picks one of six; Python's
`hash()` is randomised per process), notices are grey, errors bold red.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from section_a import protocol
from section_a.protocol import Overlong

NAME_COLOURS = ("32", "33", "34", "35", "36", "95")  # SGR foregrounds; red is for errors
NOTICE = "90"  # grey: "* ..." lines from the server
ERROR = "1;31"  # bold red: "* error: ..."
NOTE = "1"  # bold: what the client itself says
STAMP = "2"  # dim: the time a line arrived

_CHAT = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9_-]*)(?: \(private\))?: ")


def wants_colour(stream: TextIO, environ: Mapping[str, str], disabled: bool) -> bool:
    """Colour only on a terminal that can show it, and never against the user's wish."""
    if disabled or environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False  # https://no-color.org: any non-empty NO_COLOR turns colour off
    return stream.isatty()


def name_colour(name: str) -> str:
    """The colour of a name: the same in every message and every run."""
    return NAME_COLOURS[zlib.crc32(name.encode()) % len(NAME_COLOURS)]


@dataclass(frozen=True)
class Painter:
    """Makes server lines and the client's own notes ready to print.

    >>> Painter(colour=False, timestamps=False).server_line(b"bob: \\x1b[2J hi")
    'bob: ^[[2J hi'
    >>> Painter(colour=True, timestamps=False).server_line(b"* error: no")
    '\\x1b[1;31m* error: no\\x1b[0m'
    """

    colour: bool
    timestamps: bool

    def _sgr(self, codes: str, text: str) -> str:
        return f"\x1b[{codes}m{text}\x1b[0m" if self.colour else text

    def server_line(self, line: bytes | Overlong, now: float | None = None) -> str:
        """One line from the server, sanitised, styled and time-stamped (no newline)."""
        if isinstance(line, Overlong):
            return self.note(f"(a line over {line.limit} bytes from the server was dropped)")
        text = protocol.sanitise(line)  # before any colour: nothing of a peer's is an escape
        if text.startswith("* error: "):
            shown = self._sgr(ERROR, text)
        elif text.startswith("* "):
            shown = self._sgr(NOTICE, text)
        elif match := _CHAT.match(text):
            name = match["name"]
            shown = self._sgr(name_colour(name), name) + text[len(name) :]
        else:
            shown = text
        if self.timestamps:
            clock = time.strftime("%H:%M", time.localtime(now))
            shown = self._sgr(STAMP, clock) + " " + shown
        return shown

    def note(self, text: str) -> str:
        """Something the client says itself, set apart from what came from the server."""
        return self._sgr(NOTE, f"-- {text}")
