"""`python -m grader`: the command line, and the order of a grading run.

    --server CMD ... --client CMD --> for each: the scheme's checks, a fresh server each
                                      --> a line per check as it ends --> the card
    several cards --> one table side by side; --json / --markdown --> files
    exit: 0 every required check passed, 1 one did not, 2 a bad command line

Whatever happens, every program the grader started is stopped before it exits:
`processes.stop_all()` runs in a `finally`, and SIGTERM, SIGINT and SIGHUP become
`Interrupted`, an exception no check catches, so they reach that `finally` too.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from grader import checks_client, checks_load, checks_server, isolate, report
from grader.checks import CARD_BUDGET, CHECKS, Result, timed
from grader.processes import stop_all
from grader.scheme import SchemeError, Weight, load
from grader.subject import Subject

_ = (checks_server, checks_load, checks_client)  # imported for their checks
PASSED, FAILED, USAGE = 0, 1, 2
Scheme = dict[str, Weight]


class Interrupted(BaseException):  # like KeyboardInterrupt: not an error
    """The grader was told to stop (SIGTERM, SIGINT, SIGHUP)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def environment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, not {text!r}")
    return key, value


def port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, not {text!r}")
    return int(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m grader",
        description="Grade a chat server (and client) of the threaded chat assignment: "
        "run named checks against it and print a report card.",
        epilog="exit status: 0 every required check passed, 1 one did not, 2 bad command line. "
        "Example: python -m grader --server './server {port}' --json card.json",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="CMD",
        help="a server command; {port} becomes a free port (repeatable)",
    )
    parser.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="CMD",
        help="a client command; {host} and {port} become the grader's own server's (repeatable)",
    )
    parser.add_argument(
        "--client-stdin",
        choices=("pty", "pipe"),
        default="pty",
        help="the client's input: a terminal, as a person's, or a pipe",
    )
    parser.add_argument("--port", type=port, help="the port a server hard-codes (no {port})")
    parser.add_argument("--cwd", help="run the programs in this directory")
    parser.add_argument(
        "--env",
        type=environment,
        action="append",
        default=[],
        metavar="K=V",
        help="set this in the programs' environment (repeatable)",
    )
    parser.add_argument(
        "--check",
        action="append",
        choices=sorted(CHECKS),
        metavar="NAME",
        help="run only this check (repeatable); default: all in the scheme",
    )
    parser.add_argument(
        "--scheme", type=Path, help="points and required checks, TOML (default: grader/scheme.toml)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the card(s) as JSON")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write them as Markdown")
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="run everything in a network namespace of its own (unshare)",
    )
    parser.add_argument(
        "--all-required",
        action="store_true",
        help="every check counts as required: exit 0 only with full marks",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print the cards only")
    parser.add_argument(
        "--list", action="store_true", help="list the scheme's checks, what each proves, and exit"
    )
    args = parser.parse_args(argv)
    if args.list:
        return args
    if not args.server and not args.client:
        parser.error("nothing to grade: give --server CMD or --client CMD")
    for command in args.server:
        if "{port}" not in command and args.port is None:
            parser.error(f"--server {command!r}: put {{port}} in it, or give --port N")
    for command in args.client:
        if "{port}" not in command:
            parser.error(f"--client {command!r}: put {{port}} (and {{host}}) in it")
    if args.cwd and not os.path.isdir(args.cwd):
        parser.error(f"--cwd {args.cwd}: no such directory")
    return args


def grade(subject: object, names: list[str], scheme: Scheme, quiet: bool) -> list[Result]:
    results = []
    began = time.monotonic()
    for name in names:
        weight = scheme[name]
        verdict, seconds = timed(CHECKS[name], subject, CARD_BUDGET - (time.monotonic() - began))
        result = Result(
            name,
            verdict.passed,
            weight.required,
            weight.points,
            verdict.evidence,
            seconds,
        )
        results.append(result)
        if not quiet:
            print(report.result_line(result), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        scheme = load(args.scheme, CHECKS)
        if args.all_required:
            scheme = {name: Weight(weight.points, True) for name, weight in scheme.items()}
    except SchemeError as exc:
        print(f"python -m grader: {exc}", file=sys.stderr)
        return USAGE
    if args.list:
        for name, weight in scheme.items():
            required = "required" if weight.required else "not required"
            print(
                f"{name:<30} {report.number(weight.points):>3} points, {required:<12}  "
                f"{CHECKS[name].rationale}"
            )
        return PASSED
    if args.isolate:
        problem = isolate.enter(sys.argv[1:] if argv is None else argv)
        if problem:
            print(f"python -m grader: --isolate: {problem}", file=sys.stderr)
            return USAGE
    wanted = [name for name in scheme if not args.check or name in args.check]
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    cards: list[report.Card] = []
    try:
        for command in args.server:
            names = [n for n in wanted if CHECKS[n].kind == "server"]
            subject = Subject(command, args.port, args.cwd, dict(args.env))
            cards.append(_card(report.Card(command, None), subject, names, scheme, args.quiet))
        for command in args.client:
            names = [n for n in wanted if CHECKS[n].kind == "client"]
            client = checks_client.ClientSubject(
                command, args.cwd, dict(args.env), args.client_stdin
            )
            cards.append(_card(report.Card(None, command), client, names, scheme, args.quiet))
    except Interrupted as exc:
        print(
            f"python -m grader: stopped by {exc}; every program it started is stopped",
            file=sys.stderr,
        )
        return 128 + exc.signum
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        stop_all()
    cards = [card for card in cards if card.results]
    if len(cards) > 1:
        print("\n" + report.side_by_side(cards))
    if args.json:
        report.write_json(cards, args.json)
    if args.markdown:
        args.markdown.write_text(report.markdown(cards))
    return FAILED if any(card.required_failed for card in cards) else PASSED


def _card(
    card: report.Card, subject: object, names: list[str], scheme: Scheme, quiet: bool
) -> report.Card:
    if not names:  # --check chose none of this kind
        return card
    if not quiet:
        print(card.title, flush=True)
    card.results = grade(subject, names, scheme, quiet)
    print(report.terminal(card) if quiet else report.summary(card), flush=True)
    return card
