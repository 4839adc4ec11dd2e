"""The command lines: every option the README lists, every value checked before anything starts.

Both servers and the terminal client run as real processes (`python -m ...`). A bad
value must end the program at once with exit status 2 and one error line that names
the option (argparse's error), before a server listens: a value taken and found bad
later is a server that half starts, and one never found bad is worse (a --rate of -1
was once accepted, and spun a client's thread at 100 % CPU, losing its lines).

The ranges are the ones each option's --help states; the defaults and the list of
options are the README's (tests/promises.py, and the README's own table).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache

import pytest

from tests.promises import (
    DEFAULT_BURST,
    DEFAULT_HOST,
    DEFAULT_MAX_CLIENTS,
    DEFAULT_MAX_LINE,
    DEFAULT_PORT,
    DEFAULT_RECVQ,
    DEFAULT_SENDQ,
    EXIT_USAGE,
    README_COMMANDS,
)
from tests.servers import ROOT, run_server_once
from tests.support import DEADLINE

pytestmark = [pytest.mark.stage_a, pytest.mark.timeout(60)]

README = ROOT / "README.md"
CLIENT = "section_a.client"
# The options a server takes a number for, and what each must be.
WHOLE = ("--port", "--max-clients", "--max-line", "--sendq", "--recvq", "--burst")
NUMERIC = (*WHOLE, "--rate")
# Never a number of anything, whatever the option: each must be refused.
NOT_NUMBERS = ("nan", "inf", "-inf", "lots", "", "1e400")
NOT_WHOLE = ("1.5", "1e3", "0x10")
HUGE = "9" * 30
# For --rate, 0 is a value (off), and so are fractions: below its range, over it, not numbers.
BAD_RATES = ("-1", "-0.5", "-inf", "nan", "inf", "1e400", "fast", "", HUGE, "1e-300")


@cache
def help_text(module: str) -> str:
    """`--help`, with its wrapped lines joined: each option's entry on one line."""
    result = run_server_once(module, "--help")
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())


def help_entry(module: str, option: str) -> tuple[str, str]:
    """What --help says of `option`, and the default it shows."""
    match = re.search(rf"{option} [A-Z_/]+ (.*?) \(default: ([^)]*)\)", help_text(module))
    assert match, f"{module} --help has no entry with a default for {option}"
    return match.group(1), match.group(2)


def stated_range(module: str, option: str) -> tuple[float, float]:
    """The range `option`'s --help states: "..., 1 to 1,000,000" (or "0.001 to ...")."""
    text, _ = help_entry(module, option)
    match = re.search(r"(\d[\d,]*(?:\.\d+)?) to (\d[\d,]*(?:\.\d+)?)", text)
    assert match, f"{module} --help states no range for {option}: {text!r}"
    low, high = (float(bound.replace(",", "")) for bound in match.groups())
    return low, high


def bad_values(module: str, option: str) -> list[str]:
    """Values `option` must refuse: just past each end of its stated range, and non-numbers."""
    if option == "--rate":
        return list(BAD_RATES)
    low, high = (int(bound) for bound in stated_range(module, option))
    return [str(low - 1), "-1", str(high + 1), HUGE, *NOT_NUMBERS, *NOT_WHOLE]


def readme_options() -> list[tuple[str, str]]:
    """(option, default) for every row of the README's "Server options" table."""
    section = README.read_text().split("## Server options", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `-")]
    options = []
    for row in rows:
        first, default = (cell.strip() for cell in row.strip("|").split("|")[:2])
        options += [(option, default) for option in re.findall(r"`(--?[a-z][a-z-]*)", first)]
    assert len(options) >= 10, f"too few options parsed from the README: {options}"
    return options


Launch = Callable[[list[list[str]]], list[subprocess.Popen[str]]]


@pytest.fixture
def launch() -> Iterator[Launch]:
    """Start every one of a list of command lines at once: each must fail fast, and together
    they take less time. Any still running at the end (a value wrongly taken) is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(argvs: list[list[str]]) -> list[subprocess.Popen[str]]:
        procs = [
            subprocess.Popen(
                argv,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for argv in argvs
        ]
        started.extend(procs)
        return procs

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def assert_usage_error(proc: subprocess.Popen[str], option: str, value: str) -> None:
    """Exit 2 at once, one error line naming `option` and `value`, no server started."""
    try:
        out, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{option} {value!r} was taken: still running after {DEADLINE}s")
    shown = f"{option} {value!r}: exit {proc.returncode}\nstdout: {out!r}\nstderr: {err}"
    assert proc.returncode == EXIT_USAGE, shown
    assert "listening on" not in out, shown
    assert "Traceback" not in err, shown
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, shown
    assert f"argument {option}:" in errors[0], shown
    assert value.strip() in errors[0] or not value.strip(), shown


@pytest.fixture
def port_in_use() -> Iterator[int]:
    """A port this test listens on: a server given it parses its options, then fails (exit 1)."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield holder.getsockname()[1]


# --------------------------------------------------------------------------- what --help lists


def test_help_lists_every_option_of_the_readme_table(server_module: str) -> None:
    listed = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", help_text(server_module)))
    missing = [option for option, _ in readme_options() if option not in listed]
    assert not missing, f"{server_module} --help lacks {missing}, which the README lists"


def test_the_readme_command_table_is_the_promised_one() -> None:
    section = README.read_text().split("## The protocol", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\| `(/[^`]*)` \|", section, re.MULTILINE)
    assert tuple(commands) == README_COMMANDS


def test_the_readme_table_states_the_promised_defaults() -> None:
    defaults = dict(readme_options())
    assert defaults["--host"] == f"`{DEFAULT_HOST}`"
    assert defaults["--port"] == f"`{DEFAULT_PORT}`"
    assert defaults["--max-clients"] == f"{DEFAULT_MAX_CLIENTS}"
    assert defaults["--max-line"] == f"{DEFAULT_MAX_LINE}"
    assert defaults["--sendq"] == f"{DEFAULT_SENDQ >> 20} MiB"
    assert defaults["--burst"] == f"{DEFAULT_BURST}"
    assert defaults["--recvq"] == f"{DEFAULT_RECVQ >> 20} MiB"
    assert defaults["--rate"] == "off"


def test_help_shows_the_promised_defaults(server_module: str) -> None:
    shown = {option: help_entry(server_module, option)[1] for option in (*NUMERIC, "--host")}
    assert shown == {
        "--host": DEFAULT_HOST,
        "--port": str(DEFAULT_PORT),
        "--max-clients": str(DEFAULT_MAX_CLIENTS),
        "--max-line": str(DEFAULT_MAX_LINE),
        "--sendq": str(DEFAULT_SENDQ),
        "--burst": str(DEFAULT_BURST),
        "--recvq": str(DEFAULT_RECVQ),
        "--rate": "0.0",
    }
    assert "0: off" in help_entry(server_module, "--rate")[0]


@pytest.mark.parametrize("option", NUMERIC)
def test_help_states_the_range_of_every_numeric_option(server_module: str, option: str) -> None:
    low, high = stated_range(server_module, option)
    assert 0 <= low < high, (option, low, high)
    if option in ("--max-clients", "--max-line", "--sendq", "--recvq", "--burst"):
        assert low == 1, f"{option} must be at least 1"
    if option == "--port":
        assert (low, high) == (0, 65535)


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize("option", NUMERIC)
def test_a_bad_value_is_one_error_line_and_exit_2_before_listening(
    launch: Launch, server_module: str, option: str
) -> None:
    values = bad_values(server_module, option)
    procs = launch(
        [
            [sys.executable, "-m", server_module, "--port", "0", f"{option}={value}"]
            for value in values
        ]
    )
    for proc, value in zip(procs, values, strict=True):
        assert_usage_error(proc, option, value)


def test_a_negative_rate_is_refused(launch: Launch, server_module: str) -> None:
    """`--rate -1` was taken once: the client's thread then spun, and its lines were lost."""
    [proc] = launch([[sys.executable, "-m", server_module, "--port", "0", "--rate", "-1"]])
    assert_usage_error(proc, "--rate", "-1")


@pytest.mark.parametrize("option", [o for o in NUMERIC if o != "--port"])
def test_both_ends_of_the_stated_range_are_taken(
    server_module: str, option: str, port_in_use: int
) -> None:
    low, high = stated_range(server_module, option)
    ends = ["0", f"{low:g}", f"{high:.0f}"] if option == "--rate" else [f"{low:.0f}", f"{high:.0f}"]
    for value in ends:
        # Taken: the server goes on to listen, on a port in use, and fails there (exit 1).
        result = run_server_once(server_module, "--port", str(port_in_use), option, value)
        assert result.returncode == 1, (option, value, result.stderr)
        assert "in use" in result.stderr, (option, value, result.stderr)


# --------------------------------------------------------------------------- the client


CLIENT_BAD_PORTS = ("0", "-1", "65536", HUGE, *NOT_NUMBERS, *NOT_WHOLE)


def test_the_client_refuses_a_bad_port_before_connecting(launch: Launch) -> None:
    procs = launch([[sys.executable, "-m", CLIENT, f"--port={port}"] for port in CLIENT_BAD_PORTS])
    for proc, port in zip(procs, CLIENT_BAD_PORTS, strict=True):
        assert_usage_error(proc, "--port", port)


def test_the_client_help_states_its_port_range() -> None:
    result = subprocess.run(
        [sys.executable, "-m", CLIENT, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    text = " ".join(result.stdout.split())
    assert f"--port PORT its port, 1 to 65,535 (default: {DEFAULT_PORT})" in text, text
