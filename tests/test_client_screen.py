"""What a person sees: the client's terminal, rendered by pyte, asserted line by line.

Each test drives the client in a pty and compares the screen, not the byte stream:
a half-typed line survives a message arriving, a peer's escape sequences change
nothing but the visible text of that one line, colours are where they should be,
and the terminal's modes are the same after the client as before it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.promises import EXIT_LEFT, EXIT_SERVER_GONE, EXIT_SIGINT, EXIT_SIGTERM
from tests.pty_client import COLS, KEYS, PROMPT, ROWS, PtyClient, Spawn, client_argv, mark
from tests.servers import LineClient, ServerProcess
from tests.support import DEADLINE

pytestmark = [pytest.mark.stage_a, pytest.mark.timeout(30)]

Connect = Callable[..., LineClient]


def joined(client: PtyClient, connect: Connect) -> LineClient:
    """A raw peer, once the client has seen it arrive (so its lines come after)."""
    peer = connect()
    client.wait_line(rf"^\* {peer.name} joined$")
    return peer


# --------------------------------------------------------------------------- typing


def test_a_message_while_typing_appears_above_and_the_typed_text_stays(
    server: ServerProcess, spawn: Spawn, connect: Connect
) -> None:
    client = spawn(client_argv(server.address, "--name", "alice"))
    client.wait_line(r"^\* you are now alice$")
    peer = joined(client, connect)
    typed = f"half typed {mark()}"
    client.type(typed)
    client.wait_prompt(typed)

    incoming = f"incoming {mark()}"
    peer.say(incoming)
    row = client.wait_line(rf"^{peer.name}: {incoming}$")
    client.wait_prompt(typed)  # prompt and half-typed text drawn again, cursor at the end
    assert row == client.screen.cursor.y - 1, client.describe()
    assert [line for line in client.lines() if typed in line] == [PROMPT + typed], client.describe()

    client.key("enter")
    peer.next_line_is(rf"^alice: {typed}$")  # exactly the text typed, nothing else
    client.leave()


def test_editing_resumes_where_the_cursor_was_after_a_message(
    server: ServerProcess, spawn: Spawn, connect: Connect
) -> None:
    client = spawn(client_argv(server.address, "--name", "alice"))
    client.wait_line(r"^\* you are now alice$")
    peer = joined(client, connect)
    client.type("abcdef")
    client.wait_prompt("abcdef")
    for _ in range(3):
        client.key("left")
    client.wait_until(lambda: client.screen.cursor.x == len(PROMPT) + 3, "the cursor after abc")

    peer.say(f"meanwhile {mark()}")
    client.wait_line(rf"^{peer.name}: meanwhile ")
    client.wait_until(
        lambda: (
            client.cursor_line() == PROMPT + "abcdef" and client.screen.cursor.x == len(PROMPT) + 3
        ),
        "the line drawn again with the cursor after abc",
    )
    client.type("X\r")
    peer.next_line_is(r"^alice: abcXdef$")
    client.leave()


def test_a_hundred_lines_while_typing_lose_no_key_and_garble_no_line(
    server: ServerProcess, connect: Connect, tmp_path: Path
) -> None:
    # A screen tall enough for every line, so that each is checked where it was drawn.
    argv = client_argv(server.address, "--name", "alice")
    client = PtyClient(argv, tmp_path / "pty.log", rows=130)
    try:
        client.wait_line(r"^\* you are now alice$")
        peer = joined(client, connect)
        tag, typed = mark(), "the quick brown fox jumps over 13 lazy dogs, twice"
        for i in range(100):  # a line, and every other time a key, none waiting for the other
            peer.send(f"line {i:03} {tag}\n".encode())
            if i % 2:
                client.type(typed[i // 2])
        client.wait_line(rf"^{peer.name}: line 099 {tag}$")
        client.wait_prompt(typed)
        shown = [line for line in client.lines() if tag in line]
        assert shown == [f"{peer.name}: line {i:03} {tag}" for i in range(100)], client.describe()
        assert [line for line in client.lines() if "fox" in line] == [PROMPT + typed]
        client.key("enter")
        peer.next_line_is(rf"^alice: {typed}$")
        client.leave()
    finally:
        client.close()


# --------------------------------------------------------------------------- editing keys


class Alone:
    """The client, connected to a bare listener of the test's in place of a chat server."""

    def __init__(self, client: PtyClient, conn: socket.socket) -> None:
        self.client, self._conn, self._sent = client, conn, conn.makefile("rb")

    def sent(self) -> str:
        """The next line the client sent."""
        return self._sent.readline().decode().removesuffix("\n")

    def leave(self) -> None:
        """Ctrl-D: the client sends nothing more and half-closes; we close, and it exits 0."""
        self.client.wait_prompt()
        self.client.key("ctrl-d")
        assert self._sent.read() == b"", "nothing after the lines the test read"
        self._sent.close()  # the file first: the socket closes once both are
        self._conn.close()
        self.client.expect_exit(EXIT_LEFT)


@pytest.fixture
def alone(spawn: Spawn) -> Iterator[Alone]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(DEADLINE)
        client = spawn(client_argv(listener.getsockname()[:2]))
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(DEADLINE)
            conn.sendall(b"* welcome, guest-1. here now: nobody else.\n")
            client.welcome()
            client.wait_prompt()
            yield Alone(client, conn)


K = KEYS  # short, for the table below

EDITS = {  # typed -> the line shown and the cursor's column, then what Enter sends
    "backspace (DEL)": ("abcd\x7f\x7f", "ab", 4, "ab"),
    "backspace (Ctrl-H)": ("abcd\x08", "abc", 5, "abc"),
    "ctrl-u": (f"throw away{K['left'] * 3}{K['ctrl-u']}", "way", 2, "way"),
    "ctrl-w": (f"one two  {K['ctrl-w']}three", "one three", 11, "one three"),
    "left and right (CSI)": (f"ac{K['left']}b{K['right']}d", "abcd", 6, "abcd"),
    "left and right (SS3)": ("ac\x1bODb\x1bOCd", "abcd", 6, "abcd"),
    "home and end": (f"bc{K['home']}a{K['end']}d", "abcd", 6, "abcd"),
    "ctrl-a": (f"bc{K['ctrl-a']}a", "abc", 3, "abc"),
    "delete": (f"abXc{K['left'] * 2}{K['delete']}", "abc", 4, "abc"),
    "ctrl-d mid-line": (f"abXc{K['left'] * 2}{K['ctrl-d']}", "abc", 4, "abc"),
    "utf-8 and wide": (f"café 日本{K['left']}x", "café 日x本", 10, "café 日x本"),
    "an unknown escape": ("a\x1b[15~\x1b[1;5Hb", "ab", 4, "ab"),
}


@pytest.mark.parametrize(("keys", "shown", "column", "sent"), EDITS.values(), ids=EDITS)
def test_the_editing_keys_change_the_line_and_enter_sends_it(
    alone: Alone, keys: str, shown: str, column: int, sent: str
) -> None:
    client = alone.client
    client.type(keys)
    client.wait_prompt(shown, column)
    client.key("enter")
    assert alone.sent() == sent
    alone.leave()


def test_a_character_split_between_two_reads_arrives_whole(alone: Alone) -> None:
    client = alone.client
    client.child.send("aé".encode()[:-1])  # a, and the first byte of é
    client.wait_prompt("a")
    client.child.send("é".encode()[-1:])
    client.wait_prompt("aé")
    client.key("enter")
    assert alone.sent() == "aé"
    alone.leave()


def test_up_and_down_go_through_the_lines_sent_and_back_to_the_one_typed(alone: Alone) -> None:
    client = alone.client
    for line in ("first", "second"):
        client.type(line + "\r")
        assert alone.sent() == line
    client.type("draft")
    for key, shown in (("up", "second"), ("up", "first"), ("up", "first"), ("down", "second")):
        client.key(key)
        client.wait_prompt(shown)
    client.key("down")
    client.wait_prompt("draft")
    client.key("up")
    client.wait_prompt("second")
    client.key("enter")
    assert alone.sent() == "second"
    alone.leave()


def test_a_line_longer_than_the_row_scrolls_sideways_and_is_sent_whole(alone: Alone) -> None:
    client = alone.client
    line = "".join(f"{i:<10}" for i in range(12)).rstrip()  # 111 characters: "0         1 ..."
    room = COLS - len(PROMPT) - 1  # the last column is left free
    client.type(line)
    client.wait_prompt(line[-room:])  # the end of it, and the cursor there
    client.key("home")
    client.wait_prompt(line[:room].rstrip(), len(PROMPT))
    client.key("enter")
    assert alone.sent() == line
    whole = [(PROMPT + line[: COLS - len(PROMPT)]).rstrip(), line[COLS - len(PROMPT) :]]
    client.wait_until(
        lambda: any(client.lines()[y : y + 2] == whole for y in range(ROWS)),
        "the line shown whole once sent, on two rows",
    )
    alone.leave()


def test_after_ctrl_z_the_line_is_drawn_and_edited_as_before(alone: Alone) -> None:
    # No shell with job control here, so the kernel discards the stop itself; what is
    # tested is the client's part: terminal modes handed back, then taken again.
    client = alone.client
    client.type("bcd")
    client.wait_prompt("bcd")
    drawn = len(client.output)
    client.key("ctrl-z")
    client.wait_until(lambda: b"> bcd" in client.output[drawn:], "the line drawn after the stop")
    client.type(K["ctrl-a"] + "a")  # not echoed by the kernel: our keys are back
    client.wait_prompt("abcd", len(PROMPT) + 1)
    client.key("enter")
    assert alone.sent() == "abcd"
    alone.leave()


def test_help_lists_the_commands(server: ServerProcess, spawn: Spawn) -> None:
    client = spawn(client_argv(server.address))
    client.welcome()
    client.type("/help\r")
    client.wait_line(r"^\* commands:$")
    for command in ("/nick NAME", "/msg NAME TEXT", "/quit"):
        client.wait_line(rf"^\*\s+{re.escape(command)}\s")
    client.leave()


# --------------------------------------------------------------------------- safety

# Clear the screen and home the cursor, set the window title, turn text red and bold,
# write the clipboard (OSC 52), reset the terminal, and a C1 CSI that clears too.
HOSTILE = b"\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b[31;1mred\x1b]52;c;cHduZWQ=\x07\x1bc\xc2\x9b2J end"
SHOWN = "^[[2J^[[H^[]0;pwned^G^[[31;1mred^[]52;c;cHduZWQ=^G^[c\ufffd2J end"


def assert_harmless(client: PtyClient, before: list[str], row: int, shown: str) -> None:
    """Only row `row` is new, it shows `shown` literally, in no colour; nothing else moved."""
    after = client.lines()
    assert after[:row] == before[:row], client.describe()  # nothing above was cleared
    assert after[row].endswith(shown), client.describe()
    assert client.screen.title == "", "the window title was changed"
    text = client.screen.buffer[row]
    start = len(after[row]) - len(shown)
    for x in range(start, len(after[row])):
        assert (text[x].fg, text[x].bold) == ("default", False), f"column {x} is styled"
    assert (client.screen.cursor.attrs.fg, client.screen.cursor.attrs.bold) == ("default", False)


def test_escape_sequences_from_a_peer_change_nothing_but_visible_text(
    server: ServerProcess, spawn: Spawn, connect: Connect
) -> None:
    client = spawn(client_argv(server.address))
    client.welcome()
    peer = joined(client, connect)
    client.wait_prompt()
    before = client.lines()
    peer.send(HOSTILE + b"\n")
    row = client.wait_line(rf"^{peer.name}: \^\[\[2J.* end$")
    client.wait_prompt()
    assert_harmless(client, before, row, SHOWN)
    client.type("still plain")
    client.wait_prompt("still plain")
    y = client.screen.cursor.y
    assert all(client.screen.buffer[y][x].fg == "default" for x in range(len("> still plain")))
    client.key("ctrl-u")  # an empty line: Ctrl-D on a line with text deletes a character
    client.leave()


def test_a_hostile_server_cannot_drive_the_terminal_either(spawn: Spawn) -> None:
    # Our server sanitises too; a server that does not must still get nowhere.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(DEADLINE)
        client = spawn(client_argv(listener.getsockname()[:2]))
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"* welcome, guest-1. here now: nobody else.\n")
            client.welcome()
            client.wait_prompt()
            before = client.lines()
            conn.sendall(b"mallory: " + HOSTILE + b"\n")
            row = client.wait_line(r"^mallory: \^\[")
            client.wait_prompt()
            assert_harmless(client, before, row, SHOWN)
            before = client.lines()
            conn.sendall(b"mallory: \x1b[?25l\x1b[?1049h\x1b[6n hidden?\n")  # no cursor, alt screen
            row = client.wait_line(r"^mallory: .* hidden\?$")
            client.wait_prompt()
            assert_harmless(client, before, row, "^[[?25l^[[?1049h^[[6n hidden?")
            assert client.screen.cursor.hidden is False
    client.wait_line(r"^-- the server closed the connection$")
    client.expect_exit(EXIT_SERVER_GONE)


def test_accents_and_emoji_are_shown_intact(
    server: ServerProcess, spawn: Spawn, connect: Connect
) -> None:
    client = spawn(client_argv(server.address))
    client.welcome()
    peer = joined(client, connect)
    peer.say("café, naïve, Ωμέγα, 日本, 😀 ok")
    client.wait_line(rf"^{peer.name}: café, naïve, Ωμέγα, 日本, 😀 ok$")
    client.leave()


# --------------------------------------------------------------------------- colour


def test_a_name_keeps_its_colour_and_notices_and_errors_are_styled_apart(
    server: ServerProcess, spawn: Spawn, connect: Connect
) -> None:
    client = spawn(client_argv(server.address))
    client.welcome()
    peer = joined(client, connect)
    peer.say("/nick bob")
    notice_row = client.wait_line(r"^\* guest-\d+ is now bob$")
    peer.say(f"one {mark()}")
    peer.say(f"two {mark()}")
    first = client.wait_line(r"^bob: one ")
    second = client.wait_line(r"^bob: two ")
    client.type("/nosuchcommand\r")
    error_row = client.wait_line(r"^\* error: unknown command")

    buffer = client.screen.buffer
    name = {(buffer[row][0].fg, buffer[row][2].fg) for row in (first, second)}
    assert len(name) == 1, "the same name, the same colour, in every message"
    ((name_fg, _),) = name
    text_fg = buffer[first][len("bob: ")].fg
    notice = (buffer[notice_row][0].fg, buffer[notice_row][0].bold)
    error = (buffer[error_row][0].fg, buffer[error_row][0].bold)
    assert text_fg == "default", "only the name is coloured, not what was said"
    assert name_fg not in ("default", notice[0], error[0])
    assert notice != error and "default" not in (notice[0], error[0])
    client.leave()


# --------------------------------------------------------------------------- the terminal


def child_of(pid: int) -> int:
    """The one child process of `pid` (Linux: /proc/PID/task/PID/children)."""
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        [child] = children.read().split()
    return int(child)


@pytest.mark.parametrize(
    ("way_out", "status"),
    [
        ("ctrl-d", EXIT_LEFT),
        ("ctrl-c", EXIT_SIGINT),
        ("SIGTERM", EXIT_SIGTERM),
        ("server killed", EXIT_SERVER_GONE),
    ],
)
def test_the_terminal_modes_are_the_same_after_the_client(
    server: ServerProcess, spawn: Spawn, way_out: str, status: int
) -> None:
    command = shlex.join(client_argv(server.address))
    script = (
        'printf "before=%s\\n" "$(stty -g)"; '
        f"{command}; status=$?; "
        'printf "after=%s status=%s\\n" "$(stty -g)" "$status"'
    )
    # bash, not sh: on Ctrl-C it waits and sees that the client handled SIGINT itself
    shell = spawn(["bash", "--noprofile", "--norc", "-c", script])
    shell.welcome()
    shell.type("half a line")  # the client has the terminal in its own mode now
    shell.wait_prompt("half a line")
    if way_out == "server killed":
        server.kill()
    elif way_out == "SIGTERM":
        os.kill(child_of(shell.pid), signal.SIGTERM)  # the client, its terminal in its own mode
    elif way_out == "ctrl-d":
        shell.key("ctrl-u")  # Ctrl-D ends the input only on an empty line
        shell.wait_prompt()
        shell.key("ctrl-d")
    else:
        shell.key(way_out)
    found: list[re.Match[bytes]] = []

    def reported() -> bool:
        found[:] = [m for m in [re.search(rb"after=(\S+) status=(\d+)", shell.output)] if m]
        return bool(found)

    shell.wait_until(reported, "the modes after the client")
    before = re.search(rb"before=(\S+)", shell.output)
    assert before is not None
    assert found[0].group(1) == before.group(1), "the client left the terminal changed"
    assert int(found[0].group(2)) == status
    shell.expect_exit(0)
