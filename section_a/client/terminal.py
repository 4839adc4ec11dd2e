"""The terminal the client's two threads share, under one lock; our own line editor.

With stdin and stdout a terminal, the client edits the line itself: non-canonical mode,
echo off, each key read as typed, the line's text, cursor and history kept and drawn
here. A line too long for its row scrolls sideways, so it is always one row, which
``\r ESC [ K`` erases whole (a wide character counts two columns). In a pipe or a
file: plain lines. A line typed is sent after the lock is let go: a slow server never
holds up the printing.
"""

from __future__ import annotations

import codecs
import os
import signal
import sys
import termios
import threading
import unicodedata
from collections.abc import Iterator

PROMPT = "> "
KEYS_READ = 4096  # bytes per read of the keyboard: a paste comes in whole
ERASE = "\r\x1b[K"  # to the start of the row, and clear it
# What an arrow, Home, End or Delete key sends after ESC [ (or ESC O) -> the key we act on.
ESCAPES = {"A": "up", "B": "down", "C": "right", "D": "left", "3~": "\x04"}
ESCAPES |= {"H": "\x01", "1~": "\x01", "F": "\x05", "4~": "\x05"}  # Home, End: Ctrl-A, Ctrl-E


def width(char: str) -> int:
    """The columns a character takes: 2 if wide (CJK, emoji), 0 if it combines (an accent)."""
    wide = unicodedata.east_asian_width(char) in "WF"
    return 0 if unicodedata.combining(char) else 1 + wide


def whole(seq: str) -> bool:
    """An escape sequence is whole: ESC [ ... final, ESC O x, or ESC and one other character."""
    return seq[1:] not in ("", "[", "O") and (seq[1] != "[" or "@" <= seq[-1] <= "~")


class Terminal:
    """Lines in from the user, lines out from the server; a line editor if `editing`."""

    def __init__(self, editing: bool) -> None:
        self.lock = threading.Lock()  # held by whichever thread writes to the terminal
        self.editing = editing
        self.active = True  # until the user leaves or the connection ends
        self._fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self._fd) if editing else []  # put back by close()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a key split in two
        self._escape = ""  # an escape sequence (an arrow key) begun and not yet whole
        self._text, self._cursor = "", 0
        self._history: list[str] = []
        self._recall = 0  # the line Up and Down have reached: len(history) is a new one
        self._draft = ""  # the line being typed, kept while Up shows older ones
        self._eof = False

    def start(self) -> None:
        if self.editing:  # ISIG off too: Ctrl-C and Ctrl-Z are keys, not signals
            mode = termios.tcgetattr(self._fd)
            mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN)
            mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0  # read() waits for a key
            termios.tcsetattr(self._fd, termios.TCSADRAIN, mode)

    def close(self) -> None:
        if self.editing:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def lines(self) -> Iterator[str]:
        """The user's lines, until the end of the input: the keyboard thread blocks in here."""
        if not self.editing:
            for line in sys.stdin.buffer:  # blocks in read() until a line or the end
                yield line.rstrip(b"\r\n").decode("utf-8", "replace")
            return
        while not self._eof and (data := os.read(self._fd, KEYS_READ)):
            with self.lock:
                done = [line for key in self._keys(data) if (line := self._key(key)) is not None]
                self._write(self._line())
            yield from done  # sent by the caller, the lock let go

    def show(self, lines: list[str]) -> None:
        """Print lines above the line being typed, then draw that again."""
        if lines:
            with self.lock:
                self._write(self._erase() + "".join(f"{line}\n" for line in lines) + self._line())

    def stop(self, why: str = "") -> bool:
        """No more typing: the line being typed goes. If the user had not left: say why, True."""
        with self.lock:
            self._write(self._erase())
            was, self.active = self.active, False
            if was and why:
                print(why, file=sys.stderr, flush=True)
            return was

    def _keys(self, data: bytes) -> Iterator[str]:
        """Keys from bytes: a character, or a whole escape sequence (an arrow key)."""
        for char in self._decoder.decode(data):
            if self._escape or char == "\x1b":
                self._escape += char
                if not whole(self._escape):
                    continue
                char, self._escape = ESCAPES.get(self._escape[2:], ""), ""
            yield char

    def _key(self, key: str) -> str | None:
        """Apply one key to the line being typed; the line, if the key was Enter."""
        text, at = self._text, self._cursor
        if not self.active:
            return None
        if key in ("\r", "\n"):
            self._write(f"\r{PROMPT}{text}\x1b[K\n")  # all of it, wrapped if long: it stays
            if text.strip() and self._history[-1:] != [text]:
                self._history.append(text)
            self._recall, self._text, self._cursor = len(self._history), "", 0
            return text
        if key == "\x03":  # Ctrl-C: the same way out as SIGINT
            raise SystemExit(128 + signal.SIGINT)
        if key == "\x04" and not text:  # Ctrl-D on an empty line: the end of the input
            self._eof = True
        elif key in ("\x7f", "\x08") and at:  # Backspace sends DEL or Ctrl-H
            self._text, self._cursor = text[: at - 1] + text[at:], at - 1
        elif key == "\x04":  # Ctrl-D or Delete: the character under the cursor
            self._text = text[:at] + text[at + 1 :]
        elif key == "\x15":  # Ctrl-U: all before the cursor
            self._text, self._cursor = text[at:], 0
        elif key == "\x17":  # Ctrl-W: the word before the cursor
            start = text.rfind(" ", 0, len(text[:at].rstrip())) + 1
            self._text, self._cursor = text[:start] + text[at:], start
        elif key == "left":
            self._cursor = max(at - 1, 0)
        elif key == "right":
            self._cursor = min(at + 1, len(text))
        elif key in ("\x01", "\x05"):  # Home, End (Ctrl-A, Ctrl-E)
            self._cursor = 0 if key == "\x01" else len(text)
        elif key in ("up", "down"):
            self._browse(-1 if key == "up" else 1)
        elif key == "\x1a":
            self._suspend()
        elif key.isprintable() and len(key) == 1:
            self._text, self._cursor = text[:at] + key + text[at:], at + 1
        return None

    def _browse(self, step: int) -> None:
        """Up and Down: through the lines sent since the start, and back to the one typed."""
        recall = min(max(self._recall + step, 0), len(self._history))
        if self._recall == len(self._history):
            self._draft = self._text
        self._recall, self._text = recall, [*self._history, self._draft][recall]
        self._cursor = len(self._text)

    def _suspend(self) -> None:
        # Ctrl-Z: hand the shell its terminal as it was, stop the job as the kernel would
        # have, and on `fg` (SIGCONT) take the terminal back; the line is drawn again after.
        editing = termios.tcgetattr(self._fd)
        self._write(ERASE)
        termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
        os.killpg(os.getpgrp(), signal.SIGTSTP)  # stopped here, until SIGCONT
        termios.tcsetattr(self._fd, termios.TCSADRAIN, editing)

    def _erase(self) -> str:
        return ERASE if self.editing and self.active else ""

    def _line(self) -> str:
        """The prompt and the line, scrolled sideways to fit the row, the cursor in its place."""
        if not (self.editing and self.active):
            return ""
        room = max(os.get_terminal_size(sys.stdout.fileno()).columns - len(PROMPT) - 1, 2)
        widths = [width(char) for char in self._text]
        start, before = 0, sum(widths[: self._cursor])
        while before > room:  # the cursor past the right edge: start further along
            before, start = before - widths[start], start + 1
        end, shown = self._cursor, before
        while end < len(widths) and shown + widths[end] <= room:
            shown, end = shown + widths[end], end + 1
        back = f"\x1b[{shown - before}D" if shown > before else ""  # from the end to the cursor
        return f"\r{PROMPT}{self._text[start:end]}\x1b[K{back}"

    def _write(self, text: str) -> None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # nobody reads us (client | head -1): say nothing more, anywhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
