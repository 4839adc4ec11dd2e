"""The client's command line: its options, checked before connecting, and its exit statuses.

A bad option gets one line saying why and exit status 2, before any connection is
tried. The exit statuses are the client's contract with scripts: `--help` shows them.
"""

from __future__ import annotations

import argparse

from section_a import protocol
from section_a.options import whole

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9034

LEFT, CANNOT_CONNECT, USAGE, SERVER_GONE = 0, 1, 2, 3

EXIT_STATUS = f"""exit status:
  {LEFT}      you left: /quit, Ctrl-D, or the end of the input
  {CANNOT_CONNECT}      could not connect
  {USAGE}      bad command line
  {SERVER_GONE}      the server closed the connection, or it was lost
  128+N  ended by signal N: 130 for Ctrl-C, 143 for SIGTERM"""

PORTS = (1, 65535)  # a server's port: 0 is no port to connect to


def nick(text: str) -> str:
    problem = protocol.name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m section_a.client",
        description="Terminal client for the chat: type a line to send it, /help for the\n"
        "commands. Line editing and history in a terminal, plain lines in a pipe.",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the epilog's table
        epilog=EXIT_STATUS,
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="the server's address (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=whole(*PORTS),
        default=DEFAULT_PORT,
        help=f"its port, {PORTS[0]} to {PORTS[1]:,} (default: %(default)s)",
    )
    parser.add_argument("--name", type=nick, help="take this name on arrival (sends /nick)")
    parser.add_argument(
        "--no-color", action="store_true", help="no colour (also: NO_COLOR set, or not a tty)"
    )
    parser.add_argument(
        "--timestamps", action="store_true", help="show the time (HH:MM) each line arrived"
    )
    return parser.parse_args(argv)
