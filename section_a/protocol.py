"""The chat's wire protocol as pure code: bytes in, lines and commands out, bytes back.

Nothing here touches a socket or a thread (the idea of h11): the servers read bytes,
feed them to a `LineFramer`, turn each line into a command with `parse`, and send
what the formatting functions return. So every rule of the protocol can be tested
with bytes alone, and both servers (stage A and stage C) share it.

The protocol is newline-delimited UTF-8, so `nc` is a working client:

- a line ends with ``\\n`` or ``\\r\\n``; a line over the limit is refused, and
  everything up to its newline is discarded, so its tail never becomes a line;
- the end of the input ends a last line too (as ``readline()`` has it): what a peer
  sent after its last newline is a line when it half-closes, not when it vanishes;
- a plain line goes to everyone else as ``NAME: text``;
- a line starting with ``/`` is a command (``/help`` lists them);
- every line the server itself writes starts with ``*`` (errors with ``* error:``).

Bytes from a peer are never passed on raw: invalid UTF-8 becomes U+FFFD, and
control characters (C0, DEL, C1) and bidirectional overrides are made visible,
so no peer can drive another's terminal.

    >>> framer = LineFramer(max_line=8)
    >>> framer.feed(b"hel")
    []
    >>> framer.feed(b"lo\\r\\nwor")
    [b'hello']
    >>> framer.feed(b"ld, this line is too long\\nok\\n")
    [Overlong(limit=8), b'ok']
    >>> framer.feed(b"bye"), framer.finish()  # the input ends: a last line with no newline
    ([], [b'bye'])
    >>> parse(sanitise(b"/msg bob hi \\x1b[2J"))
    Whisper(name='bob', text='hi ^[[2J')
    >>> message("alice", "hi")
    b'alice: hi\\n'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The framing (bytes in, lines out) lives in framing.py; the protocol names it here too.
from section_a.framing import MAX_LINE as MAX_LINE
from section_a.framing import LineFramer as LineFramer
from section_a.framing import Overlong as Overlong

NAME_MAX = 24  # characters in a name
WELCOME_NAMES = 100  # names of the others in the welcome line, at most

# --------------------------------------------------------------------------- sanitising

_CARET = {c: "^" + chr(c ^ 0x40) for c in (*range(0x20), 0x7F)}  # ESC -> ^[, NUL -> ^@
_CARET[0x09] = " "  # a tab is harmless but its width is the terminal's choice: a space
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _replace(match: re.Match[str]) -> str:
    # C0 and DEL get caret notation, the rest (C1, bidi controls) the replacement character.
    return _CARET.get(ord(match.group()), "\ufffd")


def make_safe(text: str) -> str:
    """Make text harmless to print on a terminal, keeping all printable Unicode.

    >>> print(make_safe("\\x1b]0;pwned\\x07 café \\u202eevil"))
    ^[]0;pwned^G café �evil
    """
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_replace, text)


def sanitise(line: bytes) -> str:
    """Decode one line from a peer (invalid UTF-8 becomes U+FFFD) and make it safe."""
    return make_safe(line.decode("utf-8", "replace"))


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Nick:
    name: str


@dataclass(frozen=True)
class Who:
    pass


@dataclass(frozen=True)
class Whisper:
    name: str
    text: str


@dataclass(frozen=True)
class Me:
    text: str


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Quit:
    pass


@dataclass(frozen=True)
class Blank:
    """An empty or all-blank line: nothing to do."""


@dataclass(frozen=True)
class Invalid:
    """A command that cannot be carried out; `reason` goes back to its sender."""

    reason: str


Command = Say | Nick | Who | Whisper | Me | Help | Quit | Blank | Invalid

COMMANDS = (
    ("/nick NAME", "change your name"),
    ("/who", "list who is here"),
    ("/msg NAME TEXT", "send TEXT to NAME only"),
    ("/me ACTION", "describe what you are doing"),
    ("/help", "show this list"),
    ("/quit", "leave the chat"),
    ("//TEXT", "say TEXT starting with a slash"),
)


def parse(text: str) -> Command:
    """Turn one sanitised line into the command it asks for.

    >>> parse("hello"), parse("/NICK  bob "), parse("/msg bob"), parse("//etc")
    (Say(text='hello'), Nick(name='bob'), Invalid(reason='usage: /msg NAME TEXT'), Say(text='/etc'))
    """
    if not text.strip():
        return Blank()
    if not text.startswith("/"):
        return Say(text)
    if text.startswith("//"):
        return Say(text[1:])
    word, _, rest = text[1:].partition(" ")
    rest = rest.strip()
    match word.lower():
        case "nick":
            if not rest or " " in rest:
                return Invalid("usage: /nick NAME")
            return Nick(rest)
        case "who":
            return Who()
        case "msg":
            name, _, body = rest.partition(" ")
            if not name or not body.strip():
                return Invalid("usage: /msg NAME TEXT")
            return Whisper(name, body.strip())
        case "me":
            return Me(rest) if rest else Invalid("usage: /me ACTION")
        case "help":
            return Help()
        case "quit":
            return Quit()
        case _:
            return Invalid(f"unknown command /{word}; /help lists the commands")


# --------------------------------------------------------------------------- names

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
# The first words of the server's own lines ("* here now (2): ...", "* bye"): a user so
# named could forge those lines with /me, so nobody may take them.
RESERVED_NAMES = frozenset(
    {"bye", "commands", "error", "here", "private", "server", "welcome", "you"}
)


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a name, or None if it can (uniqueness is the room's business).

    >>> name_problem("alice"), name_problem("9lives") is not None
    (None, True)
    """
    if len(name) > NAME_MAX or not _NAME.fullmatch(name):
        return f"a name is 1 to {NAME_MAX} letters, digits, '-' or '_', starting with a letter"
    if name.lower() in RESERVED_NAMES:
        return f"the name {name} is reserved"
    return None


# --------------------------------------------------------------------------- formatting
# Everything the server sends is built here, as bytes ready for the wire.


def _line(text: str) -> bytes:
    return (text + "\n").encode()


def message(sender: str, text: str) -> bytes:
    return _line(f"{sender}: {text}")


# Bytes that make a line need the per-line path: C0 controls but the newline, and DEL.
_NOT_PLAIN = bytes([*range(0x0A), *range(0x0B, 0x20), 0x7F])
# A line that starts empty, with a space (it may be blank) or a slash (a command).
_ODD_START = re.compile(rb"\n[\n /]|\n$")


def messages(sender: str, lines: list[bytes | Overlong]) -> bytes | None:
    """`message(sender, line)` for every line, at C speed; None unless all are plain.

    Plain: printable ASCII, not empty, not starting with a space (it may be blank)
    or a slash (a command). That is nearly every line a
    busy room carries, and for those the result is exactly what the per-line path
    (sanitise, parse, message) gives, with no Python loop over the lines.

    >>> messages("bob", [b"hi", b"how are you?"])
    b'bob: hi\\nbob: how are you?\\n'
    >>> messages("bob", [b"hi", b"/quit"]) is None
    True
    """
    try:
        block = b"\n".join(lines)  # type: ignore[arg-type]
    except TypeError:  # an Overlong among them: join() takes bytes only
        return None
    if (
        not block.isascii()
        or len(block.translate(None, _NOT_PLAIN)) != len(block)
        or block[:1] in (b"", b"\n", b" ", b"/")  # the first line: empty, blank?, a command
        or _ODD_START.search(block)  # any other line
    ):
        return None  # a line that is blank, a command, or needs sanitising: one at a time
    prefix = sender.encode() + b": "
    return prefix + block.replace(b"\n", b"\n" + prefix) + b"\n"


def whisper(sender: str, text: str) -> bytes:
    return _line(f"{sender} (private): {text}")


def action(sender: str, text: str) -> bytes:
    return _line(f"* {sender} {text}")


def notice(text: str) -> bytes:
    return _line(f"* {text}")


def error(text: str) -> bytes:
    return _line(f"* error: {text}")


def welcome(name: str, others: list[str]) -> bytes:
    """The first line a client gets; it names at most WELCOME_NAMES of the others.

    >>> welcome("guest-9", ["alice", "bob"])
    b'* welcome, guest-9. here now: alice, bob. type /help for the commands\\n'
    """
    here = ", ".join(others[:WELCOME_NAMES]) if others else "nobody else"
    if len(others) > WELCOME_NAMES:  # in a big room, a line of every name would be huge
        here += f" and {len(others) - WELCOME_NAMES} more (/who lists everyone)"
    return notice(f"welcome, {name}. here now: {here}. type /help for the commands")


def help_text() -> bytes:
    width = max(len(usage) for usage, _ in COMMANDS)
    lines = [notice("commands:")]
    lines += [notice(f"  {usage.ljust(width)}  {meaning}") for usage, meaning in COMMANDS]
    return b"".join(lines)


def joined(name: str) -> bytes:
    return notice(f"{name} joined")


def left(name: str, why: str = "") -> bytes:
    return notice(f"{name} left" + (f" ({why})" if why else ""))


def renamed(old: str, new: str) -> bytes:
    return notice(f"{old} is now {new}")


SERVER_FULL = "server full; try again later"
SHUTTING_DOWN = notice("server shutting down")
BYE = notice("bye")
