"""The terminal client from the outside: it talks, it leaves cleanly every way, it says why.

Interactive behaviour runs the client in a pty (tests/pty_client.py); pipe behaviour
runs it as a plain subprocess. Every test ends by proving the client exited, with
the status its --help documents. The painter (colours, sanitising) is tested in
process at the end.
"""

from __future__ import annotations

import io
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.proc import thread_count
from section_a.client.painter import NAME_COLOURS, Painter, name_colour, wants_colour
from tests.promises import (
    CLIENT_THREADS,
    EXIT_CANNOT_CONNECT,
    EXIT_LEFT,
    EXIT_SERVER_GONE,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
)
from tests.pty_client import Spawn, client_argv, client_env, mark
from tests.servers import ROOT, LineClient, ServerProcess
from tests.support import DEADLINE

pytestmark = [pytest.mark.stage_a, pytest.mark.timeout(30)]

SGR = re.compile(rb"\x1b\[[0-9;]*m")


def run_piped(
    argv: list[str], stdin: bytes = b"", **env: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        argv, input=stdin, capture_output=True, cwd=ROOT, env=client_env(**env), timeout=DEADLINE
    )


# --------------------------------------------------------------------------- talking


def test_two_clients_in_terminals_talk_both_ways(server: ServerProcess, spawn: Spawn) -> None:
    alice = spawn(client_argv(server.address, "--name", "alice"))
    alice.wait_line(r"^\* you are now alice$")
    bob = spawn(client_argv(server.address, "--name", "bob"))
    bob.wait_line(r"^\* you are now bob$")
    text = mark()
    alice.type(f"hello bob {text}\r")
    bob.wait_line(rf"^alice: hello bob {text}$")
    bob.type(f"hi alice {text}\r")
    alice.wait_line(rf"^bob: hi alice {text}$")
    alice.type("/quit\r")
    alice.expect_exit(EXIT_LEFT)
    bob.leave()


def test_piped_lines_are_sent_and_the_client_exits_0(
    server: ServerProcess, connect: Callable[..., LineClient]
) -> None:
    peer = connect()
    text = mark()
    command = shlex.join(client_argv(server.address))
    result = subprocess.run(
        ["sh", "-c", f"printf 'hi {text}\\n' | {command}"],
        capture_output=True,
        cwd=ROOT,
        env=client_env(),
        timeout=DEADLINE,
    )
    assert result.returncode == EXIT_LEFT, result
    peer.expect(rf"^guest-\d+: hi {text}$")
    assert result.stdout.startswith(b"* welcome, guest-"), result
    assert b"\x1b" not in result.stdout + result.stderr, "no colour when stdout is a pipe"


def test_name_option_sends_nick_on_arrival(
    server: ServerProcess, connect: Callable[..., LineClient]
) -> None:
    peer = connect()
    result = run_piped(client_argv(server.address, "--name", "carol"))
    assert result.returncode == EXIT_LEFT, result
    peer.expect(r"^\* guest-\d+ is now carol$")
    assert b"* you are now carol\n" in result.stdout


def test_timestamps_prefix_every_line_with_the_time(server: ServerProcess) -> None:
    result = run_piped(client_argv(server.address, "--timestamps"))
    assert result.returncode == EXIT_LEFT, result
    assert re.match(rb"\d\d:\d\d \* welcome, guest-\d+\.", result.stdout), result.stdout


def test_the_client_has_exactly_two_threads_while_connected(
    server: ServerProcess, spawn: Spawn
) -> None:
    client = spawn(client_argv(server.address))
    client.welcome()
    client.wait_prompt()
    assert thread_count(client.pid) == CLIENT_THREADS, "the keyboard thread and the receiver"
    client.leave()


# --------------------------------------------------------------------------- ways out


def test_a_killed_server_ends_the_client_mid_line_within_a_second_with_status_3(
    server: ServerProcess, spawn: Spawn
) -> None:
    client = spawn(client_argv(server.address))
    client.welcome()
    client.type("half a line")  # the keyboard thread is blocked reading the next key
    client.wait_prompt("half a line")
    killed = time.monotonic()
    server.kill()
    client.wait_line(r"^-- (the server closed the connection|lost the connection)")
    client.expect_exit(EXIT_SERVER_GONE)
    assert time.monotonic() - killed < 1.0, "the client must notice at once, not on a timer"
    assert "half a line" not in "".join(client.lines()), "the line being typed is taken away"


def test_a_killed_server_ends_a_piped_client_too_while_its_input_stays_open(
    server: ServerProcess, connect: Callable[..., LineClient]
) -> None:
    peer = connect()
    client = subprocess.Popen(
        client_argv(server.address),
        stdin=subprocess.PIPE,  # open and silent: the keyboard thread has nothing to read
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=client_env(),
    )
    try:
        peer.expect(r"^\* guest-\d+ joined$")
        server.kill()
        # wait(), not communicate(): communicate() closes stdin, and the client could take
        # that EOF for the user leaving (exit 0) before it sees the server gone.
        client.wait(timeout=DEADLINE)  # its output is a few lines: the pipes cannot fill
        out, err = client.communicate()
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == EXIT_SERVER_GONE, (out, err)
    assert err == b"-- the server closed the connection\n"


def test_a_server_shutting_down_is_shown_and_ends_the_client(
    server: ServerProcess, spawn: Spawn
) -> None:
    client = spawn(client_argv(server.address))
    client.welcome()
    client.wait_prompt()
    server.signal(signal.SIGTERM)
    client.wait_line(r"^\* server shutting down$")
    client.wait_line(r"^-- the server closed the connection$")
    client.expect_exit(EXIT_SERVER_GONE)


def test_ctrl_d_leaves_with_status_0(
    server: ServerProcess, spawn: Spawn, connect: Callable[..., LineClient]
) -> None:
    client = spawn(client_argv(server.address))
    name = client.welcome()
    peer = connect()
    client.wait_line(rf"^\* {peer.name} joined$")
    client.leave()
    peer.expect(rf"^\* {name} left")


def test_quit_gets_bye_and_leaves_with_status_0(server: ServerProcess, spawn: Spawn) -> None:
    client = spawn(client_argv(server.address))
    client.welcome()
    client.type("/quit\r")
    client.wait_line(r"^\* bye$")
    client.expect_exit(EXIT_LEFT)


def test_ctrl_c_leaves_without_a_traceback_with_status_130(
    server: ServerProcess, spawn: Spawn
) -> None:
    client = spawn(client_argv(server.address))
    client.welcome()
    client.type("interrupted mid-line")
    client.wait_prompt("interrupted mid-line")
    client.key("ctrl-c")
    client.expect_exit(EXIT_SIGINT)  # and no "Traceback" in what it printed


def test_sigint_from_outside_reaches_the_keyboard_thread_and_is_status_130(
    server: ServerProcess, spawn: Spawn
) -> None:
    client = spawn(client_argv(server.address))
    client.welcome()
    client.wait_prompt()
    client.child.kill(signal.SIGINT)  # not the key: the signal, to the process
    client.expect_exit(EXIT_SIGINT)


def test_sigterm_leaves_without_a_traceback_with_status_143(
    server: ServerProcess, spawn: Spawn
) -> None:
    client = spawn(client_argv(server.address))
    client.welcome()
    client.wait_prompt()
    client.child.kill(signal.SIGTERM)
    client.expect_exit(EXIT_SIGTERM)


def test_a_refused_connection_is_one_line_and_status_1() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound but not listening: a connection is refused
        port = holder.getsockname()[1]
        result = run_piped(client_argv(("127.0.0.1", port)))
    assert result.returncode == EXIT_CANNOT_CONNECT
    assert result.stdout == b""
    assert result.stderr.decode() == f"cannot connect to 127.0.0.1:{port}: Connection refused\n"


def test_a_bad_command_line_is_status_2() -> None:
    result = run_piped([sys.executable, "-m", "section_a.client", "--name", "9lives"])
    assert result.returncode == EXIT_USAGE
    assert b"Traceback" not in result.stderr
    assert b"usage:" in result.stderr and b"--name" in result.stderr


def test_help_documents_the_defaults_and_exit_statuses() -> None:
    result = run_piped([sys.executable, "-m", "section_a.client", "--help"])
    assert result.returncode == 0
    text = result.stdout.decode()
    assert "(default: 127.0.0.1)" in text and "(default: 9034)" in text
    for status in ("0", "1", "2", "3", "128\\+N"):
        assert re.search(rf"^  {status} +\w", text, re.MULTILINE), f"exit status {status}"
    assert "130 for Ctrl-C" in text


# --------------------------------------------------------------------------- colour


def test_colour_is_used_on_a_terminal(server: ServerProcess, spawn: Spawn) -> None:
    client = spawn(client_argv(server.address))
    client.welcome()
    client.leave()
    assert SGR.search(client.output), "notices are coloured on a terminal"


@pytest.mark.parametrize(
    ("env", "args"), [({"NO_COLOR": "1"}, []), ({}, ["--no-color"])], ids=["NO_COLOR", "flag"]
)
def test_no_colour_when_asked(
    server: ServerProcess, spawn: Spawn, env: dict[str, str], args: list[str]
) -> None:
    client = spawn(client_argv(server.address, *args), env=client_env(**env))
    client.welcome()
    client.type("/nosuchcommand\r")  # an error line, which is red when colour is on
    client.wait_line(r"^\* error: ")
    client.leave()
    assert not SGR.search(client.output), client.describe()


# --------------------------------------------------------------------------- painter


def test_a_name_gets_the_same_colour_in_every_run() -> None:
    # Not hash(): that is randomised per process, and bob would change colour each run.
    code = "from section_a.client.painter import name_colour as c; print(c('alice'), c('bob'))"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=client_env(PYTHONHASHSEED=seed),
            capture_output=True,
            timeout=DEADLINE,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert runs == {f"{name_colour('alice')} {name_colour('bob')}\n".encode()}
    assert set(runs.pop().split()) <= {colour.encode() for colour in NAME_COLOURS}


def test_colour_is_off_for_no_color_flag_dumb_terminals_and_pipes() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    assert wants_colour(tty, {}, disabled=False)
    assert not wants_colour(tty, {"NO_COLOR": "1"}, disabled=False)
    assert not wants_colour(tty, {}, disabled=True)
    assert not wants_colour(tty, {"TERM": "dumb"}, disabled=False)
    assert wants_colour(tty, {"NO_COLOR": ""}, disabled=False), "only a non-empty NO_COLOR"
    assert not wants_colour(io.StringIO(), {}, disabled=False)


def test_notices_errors_and_names_are_styled_apart() -> None:
    painter = Painter(colour=True, timestamps=False)
    notice = painter.server_line(b"* bob joined")
    error = painter.server_line(b"* error: no")
    chat = painter.server_line(b"bob: hi")

    def opening(line: str) -> bytes:
        match = SGR.match(line.encode())
        assert match, f"{line!r} does not start with a colour"
        return match.group()

    assert len({opening(notice), opening(error), opening(chat)}) == 3
    assert chat.endswith(": hi") and "bob" in chat


def test_bidi_overrides_and_c1_controls_are_replaced_and_unicode_kept() -> None:
    line = "bob: \u202eevil\u2066 \x9b2J café 😀".encode()
    shown = Painter(colour=False, timestamps=False).server_line(line)
    assert shown == "bob: \ufffdevil\ufffd \ufffd2J café 😀"


@given(st.binary(max_size=200))
def test_nothing_from_the_network_reaches_the_terminal_as_a_control_character(
    data: bytes,
) -> None:
    line = data.replace(b"\n", b"")
    plain = Painter(colour=False, timestamps=True).server_line(line)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in plain), repr(plain)
    coloured = Painter(colour=True, timestamps=False).server_line(line)
    assert "\x1b" not in SGR.sub(b"", coloured.encode()).decode(), repr(coloured)
