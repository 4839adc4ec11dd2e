"""The client's console: where the user's lines come from, and where output goes.

The keyboard thread owns the console, and it is the only thread that writes to the
terminal. Two kinds, one interface (`fileno`, `prompt`, `read`, `show`, `stop`, `close`):

- `PlainConsole`: lines from a pipe, a file, or a terminal in its ordinary mode.
- `ReadlineConsole`: GNU readline with line editing and history, driven one key at a
  time through readline's "callback" interface (reached with ctypes, as Python's own
  `input()` reaches it in C). `input()` itself cannot be used: it blocks until Enter,
  and readline is not thread-safe, so the receiver thread may not redraw the line
  while the keyboard thread is inside `input()`. With the callback interface the
  keyboard thread waits in its own `select()`, and between two keys it can print a
  message above the prompt and have readline redraw the prompt and the half-typed text.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import termios
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from section_a import protocol
from section_a.protocol import LineFramer, Overlong


class PlainConsole:
    """Lines in from a file descriptor, text out as it is: for pipes, files and scripts.

    On a terminal in its ordinary (cooked) mode the kernel edits the line, and a message
    that arrives while the user types is printed in the middle of it: the fallback
    when readline is not available.
    """

    interactive = False

    def __init__(self, stdin: int, stdout: TextIO) -> None:
        self._fd = stdin
        self._out = stdout
        self._framer = LineFramer(protocol.MAX_LINE)

    def fileno(self) -> int:
        return self._fd

    def prompt(self) -> None:
        pass  # no prompt in a pipe: the output stays exactly what the server sent

    def read(self) -> list[str] | None:
        """The lines that one read completes (maybe none), or None at the end of input."""
        data = os.read(self._fd, 65536)
        if not data:
            if not self._framer.pending:
                return None
            data = b"\n"  # the input ended in the middle of a line: that line counts
        lines = []
        for line in self._framer.feed(data):
            if isinstance(line, Overlong):
                self.show(f"-- line over {line.limit} bytes not sent\n")
            else:
                lines.append(line.decode("utf-8", "replace"))
        return lines

    def show(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


# Signals whose handlers must not run inside readline: a Python handler that raises
# inside the ctypes callback would have its exception printed and swallowed by ctypes,
# and one that calls readline would re-enter it. They wait until readline returns.
DEFERRED = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGWINCH, signal.SIGTSTP})
_LINE_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # void handler(char *line)
REQUIRED = (  # of the readline library (rl_clear_visible_line, readline 7+, is optional)
    "rl_callback_handler_install",
    "rl_callback_read_char",
    "rl_callback_handler_remove",
    "rl_forced_update_display",
    "rl_resize_terminal",
)


class ReadlineConsole:
    """GNU readline in its callback mode: the caller feeds it one key at a time.

    `prompt()` shows the prompt; whenever `select()` says a key is waiting, `read()`
    gives it to readline, which edits the line and, on Enter, hands it over. `show()`
    clears the line being edited, prints above it, and makes readline draw it again
    (prompt, half-typed text, and the cursor where it was).
    """

    interactive = True

    def __init__(self, lib: Any, prompt: str, stdout: TextIO) -> None:
        import readline  # only here: not every Python has it, and a pipe does not need it

        self._readline = readline
        self._lib = lib
        self._libc = ctypes.CDLL(None)
        self._libc.free.argtypes = [ctypes.c_void_p]
        self._prompt = prompt.encode()
        self._out = stdout
        self._fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self._fd)  # restored by close(), whatever happened
        self._handler = _LINE_HANDLER(self._on_line)  # kept: readline calls it later
        self._active = False  # a prompt is shown and readline owns the line
        self._done: list[str] = []
        self._eof = False
        self._previous = {
            signal.SIGWINCH: signal.signal(signal.SIGWINCH, self._on_resize),
            signal.SIGTSTP: signal.signal(signal.SIGTSTP, self._on_suspend),
        }

    @classmethod
    def open(cls, prompt: str, stdout: TextIO) -> ReadlineConsole | None:
        """A readline console, or None if this Python's readline lacks what it needs."""
        try:
            import readline
        except ImportError:
            return None
        try:
            # The readline module links the library, so its symbols resolve through it.
            lib = ctypes.CDLL(getattr(readline, "__file__", None))
            for name in REQUIRED:
                getattr(lib, name)
            lib.rl_callback_handler_install.argtypes = [ctypes.c_char_p, _LINE_HANDLER]
        except (OSError, AttributeError):
            return None
        return cls(lib, prompt, stdout)

    def fileno(self) -> int:
        return self._fd

    def prompt(self) -> None:
        """Show the prompt and let readline edit lines (no-op if it already does)."""
        if not self._active:
            self._active = True
            self._lib.rl_callback_handler_install(self._prompt, self._handler)

    def read(self) -> list[str] | None:
        """Give readline the key(s) waiting; the line if that was Enter, None on Ctrl-D."""
        with _deferred(DEFERRED):
            self._lib.rl_callback_read_char()
        if self._eof:
            self.show("\r\x1b[K")  # the empty prompt of Ctrl-D goes away
            return None
        lines, self._done = self._done, []
        return lines

    def _on_line(self, line: int | None) -> None:
        # Called by readline, inside rl_callback_read_char, on Enter or Ctrl-D. When it
        # returns, readline shows a fresh prompt at once, so keys typed while the line
        # is being sent are already readline's (not echoed by the kernel, not lost).
        if line is None:
            self._lib.rl_callback_handler_remove()  # no new prompt after the end
            self._active = False
            self._eof = True
            return
        text = ctypes.string_at(line).decode("utf-8", "replace")
        self._libc.free(line)  # readline's malloc'd copy is ours to free
        if text.strip():
            self._readline.add_history(text)  # now: the fresh prompt starts from history's end
        self._done.append(text)

    def show(self, text: str) -> None:
        """Print `text` above the line being edited, then redraw that line."""
        with _deferred(DEFERRED):  # a resize now would redraw between clear and print
            if self._active:
                self._clear_line()
            self._out.write(text)
            self._out.flush()
            if self._active:
                self._lib.rl_forced_update_display()

    def _clear_line(self) -> None:
        # rl_clear_visible_line clears every screen row of a long, wrapped line (readline 7+).
        if hasattr(self._lib, "rl_clear_visible_line"):
            self._lib.rl_clear_visible_line()
            self._libc.fflush(None)  # readline writes through C's stdio buffer; we don't
        else:
            self._out.write("\r\x1b[K")

    def _on_resize(self, signum: int, frame: object) -> None:
        if self._active:
            self._lib.rl_resize_terminal()  # readline's idea of the width, for wrapping

    def _on_suspend(self, signum: int, frame: object) -> None:
        # Ctrl-Z: give the shell the terminal as we found it, stop, and on `fg` take back
        # readline's modes and redraw (shells do not restore a job's modes for it).
        editing = termios.tcgetattr(self._fd)
        termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)  # the process stops here, until SIGCONT
        signal.signal(signal.SIGTSTP, self._on_suspend)
        termios.tcsetattr(self._fd, termios.TCSADRAIN, editing)
        if self._active:  # on a fresh row (under the shell's "fg" echo): draw it all there
            self._out.write("\r\x1b[K")
            self._out.flush()
            self._lib.rl_forced_update_display()

    def stop(self) -> None:
        """Stop editing and take the prompt and any half-typed text off the screen."""
        if self._active:
            self._clear_line()
            self._out.flush()
            self._lib.rl_callback_handler_remove()
            self._active = False

    def close(self) -> None:
        """Leave the terminal exactly as it was found: readline changes its modes."""
        self.stop()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)


@contextmanager
def _deferred(signals: frozenset[signal.Signals]) -> Iterator[None]:
    """Hold `signals` back while the block runs; they are delivered when it ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


Console = PlainConsole | ReadlineConsole
