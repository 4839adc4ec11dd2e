"""Stage A: the terminal chat client, two threads, each blocking in its own call.

  keyboard thread (the main one)                     receiver thread
  blocks in os.read(stdin)                           blocks in sock.recv()
    a key: edit the line, draw it --+          +-- lines: erase the line being typed,
    Enter: send it (lock let go)    +-[ lock ]-+   print them, draw it again as it was
                                       on the
                                      terminal
    read() raises SystemExit(3) <---- SIGUSR1 ---- EOF or error, the user still here:
      (our signal handler)          pthread_kill     say why, wake the keyboard thread
    Ctrl-D, /quit: shutdown(WR) ------- FIN -----> the server closes: b"", it ends
    Ctrl-C, SIGTERM: shutdown(RDWR) -------------> recv() gives b"", it ends
    then join() it, and restore the terminal

No thread watches two things at once, and no pipe or queue runs between them: the
terminal is the one thing they share, under one lock (terminal.py). The line editor
there is our own, not readline: readline is not thread-safe (CPython runs it with the
GIL released), so a receiver redrawing the line while the keyboard thread is inside
readline would race on its buffers and on the screen. Ours keeps the line (text,
cursor, history) in Python, and touches it only under the lock.

A blocking read ends early for a signal sent to the thread in it (pthread_kill), and
Python runs signal handlers in the main thread: so the keyboard thread is the main
one. The handler raises SystemExit, which comes out of os.read(); a handler that
returned would have the read retried (PEP 475). The receiver blocks SIGINT and
SIGTERM, so the kernel may only give them to the keyboard thread (POSIX lets it pick
any thread that does not block them). Ctrl-C is a key (ISIG off), taken between two
keys, never in the middle of a redraw. `--help` shows the exit statuses.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from types import FrameType

from section_a import protocol
from section_a.client.painter import Painter, wants_colour
from section_a.client.terminal import Terminal
from section_a.options import whole
from section_a.sockets import shut_down

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 9034
PORTS = (1, 65535)  # a server's port: 0 is no port to connect to
LEFT, CANNOT_CONNECT, USAGE, SERVER_GONE = 0, 1, 2, 3
EXIT_STATUS = f"""exit status:
  {LEFT}      you left: /quit, Ctrl-D, or the end of the input
  {CANNOT_CONNECT}      could not connect
  {USAGE}      bad command line
  {SERVER_GONE}      the server closed the connection, or it was lost
  128+N  ended by signal N: 130 for Ctrl-C, 143 for SIGTERM"""
RECV_SIZE = 16 * 1024
MAX_INCOMING = 1024 * 1024  # bytes in a line from the server: /who in a big room is long
CONNECT_TIMEOUT = 10.0  # seconds to establish the connection; then no timeouts at all
LEAVE_TIMEOUT = 2.0  # seconds for the server's last lines after we leave
JOIN_TIMEOUT = 1.0  # seconds for the receiver to finish once its socket is shut down
WAKE = signal.SIGUSR1  # from the receiver to the keyboard thread: the server is gone
SIGNALS = {signal.SIGINT, signal.SIGTERM, WAKE}  # for the keyboard thread alone


def on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(SERVER_GONE if signum == WAKE else 128 + signum)  # out of the read


def receive(sock: socket.socket, terminal: Terminal, painter: Painter, keyboard: int) -> None:
    """The receiver thread: show the server's lines until it closes, then wake the keyboard."""
    framer = protocol.LineFramer(MAX_INCOMING)
    why = "the server closed the connection"
    try:
        while data := sock.recv(RECV_SIZE):
            terminal.show([painter.server_line(line) for line in framer.feed(data)])
        terminal.show([painter.server_line(line) for line in framer.finish()])
    except OSError as exc:
        why = f"lost the connection: {exc.strerror or exc}"
    if terminal.stop(painter.note(why)):  # the user was still here, maybe blocked in read()
        signal.pthread_kill(keyboard, WAKE)


def send(sock: socket.socket, line: str) -> None:
    if line.strip():  # a blank line the server would ignore
        try:
            sock.sendall(line.encode() + b"\n")
        except OSError:
            pass  # the connection is gone: the receiver sees it too, says why, wakes us


def run(sock: socket.socket, args: argparse.Namespace, painter: Painter) -> int:
    """Start the receiver, be the keyboard thread, and always clean up after both."""
    terminal = Terminal(editing=sys.stdin.isatty() and sys.stdout.isatty())
    me = threading.get_ident()  # the receiver, a daemon: joined, but if hung it must not keep us
    receiver = threading.Thread(target=receive, args=(sock, terminal, painter, me), daemon=True)
    try:
        terminal.start()
        if terminal.editing:
            where = address(sock.getpeername()[0], args.port)
            terminal.show([painter.note(f"connected to {where}; /quit or Ctrl-D leaves")])
        # The receiver inherits this mask: signals to the process go to the keyboard thread.
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        receiver.start()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        if args.name:
            send(sock, f"/nick {args.name}")
        for line in terminal.lines():
            if quitting := isinstance(protocol.parse(line), protocol.Quit):
                terminal.stop()  # first: the server answers by closing, which is then no news
            send(sock, line)
            if quitting:
                break
        terminal.stop()  # the user leaves: the server's last lines are shown, no prompt
        try:
            sock.shutdown(socket.SHUT_WR)  # the server reads EOF (or /quit) and closes
        except OSError:
            pass  # already gone: the receiver has seen it
        receiver.join(LEAVE_TIMEOUT)  # a server that does not close is not waited for longer
        return LEFT
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)  # a second one must not cut this short
        terminal.stop()
        shut_down(sock)  # wakes the receiver's recv(); close() would not (Linux)
        if receiver.ident is not None:
            receiver.join(JOIN_TIMEOUT)
        sock.close()
        terminal.close()  # the terminal's modes as they were


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def nick(text: str) -> str:
    if problem := protocol.name_problem(text):
        raise argparse.ArgumentTypeError(problem)
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options, checked before connecting: a bad one is one line, and exit status 2."""
    parser = argparse.ArgumentParser(
        prog="python -m section_a.client",
        description="Terminal client for the chat: type a line to send it, /help for the\n"
        "commands. Line editing and history in a terminal, plain lines in a pipe.",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the epilog's table
        epilog=EXIT_STATUS,
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="the server (default: %(default)s)")
    port = f"its port, {PORTS[0]} to {PORTS[1]:,} (default: %(default)s)"
    parser.add_argument("--port", type=whole(*PORTS), default=DEFAULT_PORT, help=port)
    parser.add_argument("--name", type=nick, help="take this name on arrival (sends /nick)")
    parser.add_argument("--no-color", action="store_true", help="no colour (nor with NO_COLOR)")
    parser.add_argument("--timestamps", action="store_true", help="the time (HH:MM) of each line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    painter = Painter(wants_colour(sys.stdout, os.environ, args.no_color), args.timestamps)
    for signum in SIGNALS:
        signal.signal(signum, on_signal)
    try:
        sock = socket.create_connection((args.host, args.port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        where = address(args.host, args.port)
        print(f"cannot connect to {where}: {exc.strerror or exc}", file=sys.stderr)
        return CANNOT_CONNECT
    sock.settimeout(None)  # from now on, blocking: the receiver waits in recv() for as long
    return run(sock, args, painter)
