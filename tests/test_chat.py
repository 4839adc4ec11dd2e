"""The chat's behaviour over real sockets, against every server in conftest.SERVERS.

Each test talks to a server process on a free port through raw line clients, as
`nc` would. Nothing here sleeps: a test waits for the line it expects, with a
deadline, and proves that a line did *not* arrive by ordering. A sender's
`sync()` (a /who whose answer must be the very next line) proves that nothing
was echoed to it; a `fence` (a fresh line from the sender that must be the very
next line the others see) proves that nothing reached them before it, because
the server handles one client's lines in order.
"""

from __future__ import annotations

import random
import re
import signal
import socket
from collections.abc import Callable, Iterator
from uuid import uuid4

import pytest

from tests.promises import BIDI_FORMATTING, DEFAULT_MAX_LINE, MAX_NAME
from tests.servers import LineClient, ServerProcess, assert_terminal_safe, fence, join_room
from tests.support import DEADLINE

pytestmark = [pytest.mark.stage_a, pytest.mark.timeout(20)]

Connect = Callable[..., LineClient]
StartServer = Callable[..., ServerProcess]
Join = Callable[[ServerProcess, int], list[LineClient]]
ConnectTo = Callable[[ServerProcess], LineClient]


def marker() -> str:
    """A fresh word for a message, so that an old line can never match."""
    return uuid4().hex[:8]


def joined(client: LineClient, *others: LineClient) -> None:
    """Read, on every one of `others`, the line saying that `client` joined."""
    for other in others:
        other.next_line_is(rf"^\* {re.escape(client.name)} joined$")


@pytest.fixture
def join() -> Iterator[Join]:
    """`join_room` on a server started with options; every client is closed at the end."""
    opened: list[LineClient] = []

    def open_room(server: ServerProcess, size: int) -> list[LineClient]:
        def connect(**kwargs: bool) -> LineClient:
            client = LineClient(server.address, **kwargs)
            opened.append(client)
            return client

        return join_room(connect, size)

    yield open_room
    for client in opened:
        client.close()


@pytest.fixture
def connect_to() -> Iterator[ConnectTo]:
    """A raw connection to a server started with options, its first line unread."""
    opened: list[LineClient] = []

    def open_client(server: ServerProcess) -> LineClient:
        client = LineClient(server.address, welcome=False)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


# --------------------------------------------------------------------------- saying


def test_a_plain_line_reaches_every_other_client_as_name_colon_text(connect: Connect) -> None:
    alice, bob, carol = join_room(connect, 3)
    word = marker()
    alice.say(f"hello {word}")
    bob.next_line_is(rf"^{alice.name}: hello {word}$")
    carol.next_line_is(rf"^{alice.name}: hello {word}$")


def test_a_plain_line_is_not_echoed_to_its_sender(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    word = marker()
    alice.say(f"no echo {word}")
    bob.next_line_is(rf"^{alice.name}: no echo {word}$")
    alice.sync()


def test_lf_and_crlf_both_end_a_line(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    first, second = marker(), marker()
    alice.send(f"{first}\n{second}\r\n".encode())
    assert bob.read_raw_line() == f"{alice.name}: {first}".encode()
    assert bob.read_raw_line() == f"{alice.name}: {second}".encode()


def test_a_line_sent_byte_by_byte_arrives_whole(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    alice.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    word = marker()
    for byte in f"piece by piece {word}\r\n".encode():
        alice.send(bytes([byte]))
    bob.next_line_is(rf"^{alice.name}: piece by piece {word}$")


def test_many_lines_in_one_send_arrive_in_order(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    words = [marker() for _ in range(200)]
    alice.send(b"".join(f"{i} {w}\n".encode() for i, w in enumerate(words)))
    for i, word in enumerate(words):
        bob.next_line_is(rf"^{alice.name}: {i} {word}$")


def test_lines_said_around_a_command_in_one_send_keep_their_order(connect: Connect) -> None:
    # One send of a few bytes is one read on loopback: the server gets a command between
    # plain lines in one batch, and must not send the batch's plain lines before or after it.
    alice, bob = join_room(connect, 2)
    word = marker()
    alice.send(f"one {word}\n/me two {word}\nthree {word}\n".encode())
    bob.next_line_is(rf"^{alice.name}: one {word}$")
    bob.next_line_is(rf"^\* {alice.name} two {word}$")
    bob.next_line_is(rf"^{alice.name}: three {word}$")


def test_a_raw_socket_is_a_client_with_no_handshake(server: ServerProcess) -> None:
    with socket.create_connection(server.address, timeout=DEADLINE) as raw:
        stream = raw.makefile("rb")
        welcome = stream.readline()
        assert welcome.startswith(b"* welcome, guest-")
        name = welcome.split()[2].rstrip(b".").decode()
        raw.sendall(b"/who\n")  # sync: the server is done announcing this client
        assert stream.readline().startswith(b"* here now (1): ")
        other = LineClient(server.address)
        try:
            assert stream.readline() == f"* {other.name} joined\n".encode()
            word = marker()
            raw.sendall(f"typed with nc {word}\n".encode())
            other.next_line_is(rf"^{name}: typed with nc {word}$")
        finally:
            other.close()


# --------------------------------------------------------------------------- joining and leaving


def test_a_newcomer_gets_one_welcome_naming_it_and_who_is_here_and_help(
    server: ServerProcess, connect: Connect
) -> None:
    alice, bob = join_room(connect, 2)
    carol = connect(welcome=False)
    welcome = carol.read_line()
    match = re.fullmatch(r"\* welcome, (guest-\d+)\. here now: (.*)\. type /help .*", welcome)
    assert match, welcome
    assert set(match.group(2).split(", ")) == {alice.name, bob.name}
    carol.name = match.group(1)
    joined(carol, alice, bob)
    assert carol.lines_until_sync() == []  # one welcome line, and not its own join


def test_the_first_client_is_told_nobody_else_is_here(connect: Connect) -> None:
    alice = connect(welcome=False)
    assert re.fullmatch(
        r"\* welcome, guest-\d+\. here now: nobody else\. .*/help.*", alice.read_line()
    )


def test_every_newcomer_gets_a_distinct_guest_name(connect: Connect) -> None:
    clients = join_room(connect, 6)
    names = [client.name for client in clients]
    assert all(re.fullmatch(r"guest-\d+", name) for name in names), names
    assert len(set(names)) == len(names)


def test_the_others_see_a_newcomer_join(connect: Connect) -> None:
    alice = connect()
    alice.sync()
    bob = connect()
    alice.next_line_is(rf"^\* {bob.name} joined$")
    bob.sync()


def test_each_client_learns_of_every_other_exactly_once_even_when_joins_race(
    connect: Connect,
) -> None:
    """Either a client's welcome lists another client, or a joined line announces it later.

    Clients connecting in quick succession race to be admitted and announced; none
    may be told of a client twice (listed in its welcome, and then "joined" too).
    """
    clients = [connect(welcome=False) for _ in range(64)]
    welcomed: dict[str, set[str]] = {}
    for client in clients:
        match = re.fullmatch(
            r"\* welcome, (guest-\d+)\. here now: (.*)\. type .*", client.read_line()
        )
        assert match
        client.name = match.group(1)
        welcomed[client.name] = (
            set() if match.group(2) == "nobody else" else {*match.group(2).split(", ")}
        )
    # A client's thread announces it before it reads its first line, so once every client
    # has had one /who answered, every join has been announced: a second /who collects
    # what came after the first.
    announced = {client.name: client.lines_until_sync() for client in clients}
    for client in clients:
        announced[client.name] += client.lines_until_sync()
    everyone = {client.name for client in clients}
    for name, lines in announced.items():
        later = [line.removeprefix("* ").removesuffix(" joined") for line in lines]
        assert not welcomed[name] & set(later), (
            f"{name} was told twice of {welcomed[name] & set(later)}"
        )
        assert len(later) == len(set(later))
        assert welcomed[name] | set(later) == everyone - {name}


def test_the_others_see_a_client_leave(connect: Connect) -> None:
    alice, bob, carol = join_room(connect, 3)
    carol.close()
    alice.next_line_is(rf"^\* {carol.name} left\b")
    bob.next_line_is(rf"^\* {carol.name} left\b")


# --------------------------------------------------------------------------- the end of input
# What a peer sends after its last newline is a line if it ends its input itself (a
# half-close: FIN), as readline-based servers have it; not if the connection is reset or
# the server shuts down. A /who sent with the partial line, in one send, makes the server
# read both: its answer proves that the server holds the partial line.


@pytest.mark.parametrize(
    ("last", "seen"),
    [("no newline {}", "{name}: no newline {}"), ("/me waves {}", "* {name} waves {}")],
)
def test_a_last_line_cut_short_by_a_half_close_is_carried_out(
    connect: Connect, last: str, seen: str
) -> None:
    alice, bob = join_room(connect, 2)
    word = marker()
    alice.send(b"/who\n" + last.format(word).encode())
    alice.next_line_is(r"^\* here now \(")
    alice.sock.shutdown(socket.SHUT_WR)  # printf 'hi' | nc -N: the input ends here
    bob.next_line_is(rf"^{re.escape(seen.format(word, name=alice.name))}$")
    bob.next_line_is(rf"^\* {alice.name} left\b")
    assert alice.expect_eof() == []


def test_a_last_line_over_the_limit_cut_short_by_a_half_close_is_refused(
    start_server: StartServer, join: Join
) -> None:
    alice, bob = join(start_server("--max-line", "64"), 2)
    alice.send(b"o" * 65)  # one byte over: only the end of the input says it was no CR
    alice.sock.shutdown(socket.SHUT_WR)
    assert alice.expect_eof()[0].startswith("* error: line too long")
    bob.next_line_is(rf"^\* {alice.name} left\b")


def test_a_last_line_cut_short_comes_after_the_lines_flood_control_held(
    start_server: StartServer, join: Join
) -> None:
    alice, bob = join(start_server("--rate", "20", "--burst", "1"), 2)
    words = [marker() for _ in range(4)]
    alice.send("\n".join(words).encode())  # the last has no newline
    alice.sock.shutdown(socket.SHUT_WR)
    for word in words:
        bob.next_line_is(rf"^{alice.name}: {word}$")
    bob.next_line_is(rf"^\* {alice.name} left\b")


def test_a_last_line_cut_short_by_a_reset_is_not_delivered(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    alice.send(f"/who\nlost {marker()}".encode())
    alice.next_line_is(r"^\* here now \(")
    alice.reset()  # SO_LINGER 0: the peer vanished, it did not finish its input
    bob.next_line_is(rf"^\* {alice.name} left\b")  # and nothing of alice's before it


def test_a_partial_line_pending_at_shutdown_is_not_delivered(
    server: ServerProcess, connect: Connect
) -> None:
    alice, bob = join_room(connect, 2)
    alice.send(f"/who\nunfinished {marker()}".encode())
    alice.next_line_is(r"^\* here now \(")
    server.signal(signal.SIGTERM)
    assert bob.expect_eof() == ["* server shutting down"]
    assert alice.expect_eof() == ["* server shutting down"]
    assert server.wait() == 0


def test_a_partial_line_pending_when_a_stuck_reader_is_cut_is_not_delivered(
    start_server: StartServer, join: Join
) -> None:
    server = start_server("--sendq", "16384")
    alice, bob = join(server, 2)
    stuck = LineClient(server.address, rcvbuf=4096)  # reads its welcome, then never again
    try:
        word = marker()
        stuck.send(f"/who\nunfinished {word}".encode())
        stuck.next_line_is(r"^\* here now \(")
        joined(stuck, alice, bob)
        seen: list[str] = []
        for _ in range(200):  # at most ~3 MB through the room; the cut comes long before
            lines = [f"{marker()} " + "x" * 1000 for _ in range(16)]
            alice.send("".join(line + "\n" for line in lines).encode())
            for line in lines:
                while (got := bob.read_line()) != f"{alice.name}: {line}":
                    seen.append(got)
            if any(re.match(rf"^\* {stuck.name} left\b", line) for line in seen):
                break
        assert seen and re.match(rf"^\* {stuck.name} left\b", seen[-1]), seen
        assert not any(word in line for line in seen), seen
        fence(alice, bob)
    finally:
        stuck.close()


# --------------------------------------------------------------------------- /nick


def test_nick_renames_and_tells_the_sender_and_the_others(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    old, new = alice.name, f"alice-{marker()}"
    alice.say(f"/nick {new}")
    alice.next_line_is(rf"^\* you are now {new}$")
    bob.next_line_is(rf"^\* {old} is now {new}$")
    alice.name = new
    word = marker()
    alice.say(word)
    bob.next_line_is(rf"^{new}: {word}$")
    bob.say("/who")
    assert re.split(r"[:,] ", bob.next_line_is(r"^\* here now \(2\): "))[1:] == [new, bob.name]


def test_nick_to_a_name_taken_in_any_case_is_refused(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    alice.say("/nick Zed-Shaw")
    alice.next_line_is(r"^\* you are now Zed-Shaw$")
    bob.next_line_is(rf"^\* {alice.name} is now Zed-Shaw$")
    alice.name = "Zed-Shaw"
    for taken in ("Zed-Shaw", "zed-shaw", "ZED-SHAW"):
        bob.say(f"/nick {taken}")
        bob.next_line_is(r"^\* error: .*taken")
    fence(bob, alice)  # the refusals were told to nobody, and bob kept his name


def test_nick_refuses_names_outside_the_length_and_charset(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    bad = [
        "z" * (MAX_NAME + 1),
        "9lives",
        "-dash",
        "café",
        "bob!",
        "a.b",
        "\x1b[31mred",
        "nul\x00byte",
    ]
    for name in bad:
        alice.send(b"/nick " + name.encode() + b"\n")
        [reply] = alice.raw_lines_until_sync()
        assert reply.startswith(b"* error: "), (name, reply)
        assert_terminal_safe(reply)
    fence(alice, bob)


def test_nick_accepts_a_name_of_the_longest_length(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    longest = "L" + marker() * 3
    longest = longest[:MAX_NAME].ljust(MAX_NAME, "x")
    alice.say(f"/nick {longest}")
    alice.next_line_is(rf"^\* you are now {longest}$")
    bob.next_line_is(rf"^\* {alice.name} is now {longest}$")


def test_nick_refuses_reserved_names_in_any_case(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    for name in ("error", "Server", "YOU", "private", "welcome", "commands"):
        alice.say(f"/nick {name}")
        alice.next_line_is(r"^\* error: .*reserved")
    fence(alice, bob)


def test_no_one_can_take_a_name_that_forges_a_server_line(connect: Connect) -> None:
    """The server's own lines start with reserved words so that /me cannot forge them.

    The /who answer starts with "* here now (": a user named `here` could send
    `/me now (1): alice` and the others would see a perfect fake /who answer.
    """
    alice, bob = join_room(connect, 2)
    for name in ("here", "HERE", "bye"):
        alice.say(f"/nick {name}")
        alice.next_line_is(r"^\* error: ")
    fence(alice, bob)


def test_a_guest_name_taken_with_nick_is_skipped_for_newcomers(connect: Connect) -> None:
    [first] = join_room(connect, 1)
    number = int(first.name.removeprefix("guest-"))
    squatted = f"GUEST-{number + 1}"
    first.say(f"/nick {squatted}")
    first.next_line_is(rf"^\* you are now {squatted}$")
    [second] = join_room(connect, 1)
    assert second.name.lower() != squatted.lower()


def test_changing_only_the_case_of_your_own_name_is_allowed(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    upper = alice.name.upper()
    alice.say(f"/nick {upper}")
    alice.next_line_is(rf"^\* you are now {upper}$")
    bob.next_line_is(rf"^\* {alice.name} is now {upper}$")


def test_a_name_freed_by_nick_or_by_leaving_can_be_taken(connect: Connect) -> None:
    alice, bob, carol = join_room(connect, 3)
    freed_by_nick, freed_by_leaving = alice.name, carol.name
    alice.say(f"/nick a-{marker()}")
    alice.next_line_is(r"^\* you are now ")
    carol.close()
    bob.expect(rf"^\* {freed_by_leaving} left\b")
    for name in (freed_by_nick, freed_by_leaving):
        bob.say(f"/nick {name}")
        bob.next_line_is(rf"^\* you are now {name}$")


# --------------------------------------------------------------------------- other commands


def test_who_lists_everyone_here_with_the_count(connect: Connect) -> None:
    clients = join_room(connect, 3)
    clients[1].say("/who")
    answer = clients[1].next_line_is(r"^\* here now \(3\): ")
    assert set(answer.split(": ", 1)[1].split(", ")) == {c.name for c in clients}


def test_msg_reaches_only_its_target_and_confirms_to_the_sender(connect: Connect) -> None:
    alice, bob, carol = join_room(connect, 3)
    word = marker()
    alice.say(f"/msg {bob.name} just between us {word}")
    bob.next_line_is(rf"^{alice.name} \(private\): just between us {word}$")
    alice.next_line_is(rf"^\* private to {bob.name}: just between us {word}$")
    fence(alice, bob, carol)


def test_msg_finds_its_target_in_any_case(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    word = marker()
    alice.say(f"/msg {bob.name.upper()} {word}")
    bob.next_line_is(rf"^{alice.name} \(private\): {word}$")
    alice.next_line_is(rf"^\* private to {bob.name}: {word}$")


def test_msg_to_nobody_here_is_an_error_to_the_sender_only(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    alice.say(f"/msg nobody-{marker()} hello?")
    alice.next_line_is(r"^\* error: ")
    fence(alice, bob)


def test_me_shows_an_action_to_the_others(connect: Connect) -> None:
    alice, bob, carol = join_room(connect, 3)
    word = marker()
    alice.say(f"/me waves {word}")
    bob.next_line_is(rf"^\* {alice.name} waves {word}$")
    carol.next_line_is(rf"^\* {alice.name} waves {word}$")
    alice.sync()


def test_help_lists_every_command_to_the_sender_only(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    alice.say("/help")
    lines = alice.lines_until_sync()
    assert all(line.startswith("* ") for line in lines), lines
    for usage in ("/nick", "/who", "/msg", "/me", "/help", "/quit", "//"):
        assert any(usage in line for line in lines), (usage, lines)
    fence(alice, bob)


def test_quit_says_bye_then_closes_and_the_others_see_left(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    alice.say("/quit")
    assert alice.expect_eof() == ["* bye"]
    bob.next_line_is(rf"^\* {alice.name} left\b")


def test_lines_after_quit_in_the_same_send_go_nowhere(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    word = marker()
    alice.send(f"/quit\nafter quit {word}\n".encode())
    assert alice.expect_eof() == ["* bye"]
    bob.next_line_is(rf"^\* {alice.name} left\b")


def test_a_double_slash_says_the_line_with_one_slash(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    word = marker()
    alice.say(f"//etc/{word} is a path")
    bob.next_line_is(rf"^{alice.name}: /etc/{word} is a path$")
    alice.sync()


def test_command_words_are_case_insensitive(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    word = marker()
    alice.say(f"/ME shouts {word}")
    bob.next_line_is(rf"^\* {alice.name} shouts {word}$")
    alice.say("/WHO")
    alice.next_line_is(r"^\* here now \(2\): ")


def test_an_unknown_command_is_an_error_to_its_sender_only(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    alice.say(f"/frobnicate {marker()}")
    [reply] = alice.lines_until_sync()
    assert reply.startswith("* error: ") and "/help" in reply
    fence(alice, bob)


def test_bad_arguments_are_an_error_to_the_sender_only(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    for line in ("/nick", "/nick two words", "/msg", f"/msg {bob.name}", "/msg   ", "/me", "/me  "):
        alice.say(line)
        [reply] = alice.lines_until_sync()
        assert reply.startswith("* error: "), (line, reply)
    fence(alice, bob)


def test_a_blank_line_goes_nowhere(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    alice.send(b"\n\r\n   \n")
    fence(alice, bob)
    alice.sync()


# --------------------------------------------------------------------------- --max-line


def limit_and_server(start_server: StartServer, max_line: int) -> ServerProcess:
    return (
        start_server()
        if max_line == DEFAULT_MAX_LINE
        else start_server("--max-line", str(max_line))
    )


@pytest.mark.parametrize("max_line", [DEFAULT_MAX_LINE, 64], ids=["default", "option"])
def test_a_line_exactly_at_the_limit_passes(
    start_server: StartServer, join: Join, max_line: int
) -> None:
    server = limit_and_server(start_server, max_line)
    alice, bob = join(server, 2)
    for terminator in (b"\n", b"\r\n"):
        line = (marker() * (max_line // 8 + 1))[:max_line].encode()
        alice.send(line + terminator)
        assert bob.read_raw_line() == f"{alice.name}: ".encode() + line
    alice.sync()


@pytest.mark.parametrize("max_line", [DEFAULT_MAX_LINE, 64], ids=["default", "option"])
def test_a_line_one_byte_over_the_limit_is_refused_to_its_sender_only(
    start_server: StartServer, join: Join, max_line: int
) -> None:
    server = limit_and_server(start_server, max_line)
    alice, bob = join(server, 2)
    for terminator in (b"\n", b"\r\n"):
        alice.send(b"o" * (max_line + 1) + terminator)
        [reply] = alice.lines_until_sync()
        assert reply.startswith("* error: "), reply
    fence(alice, bob)


def test_the_limit_counts_bytes_not_characters(start_server: StartServer, join: Join) -> None:
    server = start_server("--max-line", "64")
    alice, bob = join(server, 2)
    alice.say("é" * 32)  # 64 bytes
    bob.next_line_is(rf"^{alice.name}: {'é' * 32}$")
    alice.say("é" * 33)  # 66 bytes
    alice.next_line_is(r"^\* error: ")
    fence(alice, bob)


def test_the_tail_of_an_overlong_line_never_reaches_anyone(
    start_server: StartServer, join: Join
) -> None:
    server = start_server("--max-line", "64")
    alice, bob = join(server, 2)
    tail = f"TAIL-{marker()}"
    # Past the limit come a command and a CR: were any of the tail taken as a line, the
    # marker would reach someone, as a /me or as a plain line.
    alice.send(b"h" * 100 + f" /me {tail}\r{tail}\n".encode())
    alice.send(b"h" * 100 + b"\r\n")
    seen_by_alice = alice.lines_until_sync()
    assert len(seen_by_alice) == 2 and all(x.startswith("* error: ") for x in seen_by_alice)
    fence(alice, bob)
    assert not any(tail in line for line in seen_by_alice)


def test_an_overlong_line_is_refused_before_its_newline_and_its_tail_dropped(
    start_server: StartServer, join: Join
) -> None:
    server = start_server("--max-line", "64")
    alice, bob = join(server, 2)
    tail = f"TAIL-{marker()}"
    alice.send(b"s" * 200)  # no newline yet: the server must not wait for one to refuse
    alice.next_line_is(r"^\* error: ")
    alice.send(b"s" * 1000)
    alice.send(f"{tail}\n{tail}-own-line\n".encode())
    bob.next_line_is(rf"^{alice.name}: {tail}-own-line$")  # the next line is a line again
    assert alice.lines_until_sync() == []  # reported once


# --------------------------------------------------------------------------- --max-clients


def test_over_max_clients_a_newcomer_gets_server_full_and_is_closed(
    start_server: StartServer, join: Join, connect_to: ConnectTo
) -> None:
    server = start_server("--max-clients", "2")
    alice, bob = join(server, 2)
    [line] = connect_to(server).expect_eof()
    assert "server full" in line
    fence(alice, bob)  # the refused one never joined


def test_slots_are_counted_exactly_refusals_take_none_and_leaving_frees_one(
    start_server: StartServer, join: Join, connect_to: ConnectTo
) -> None:
    server = start_server("--max-clients", "2")
    alice, bob = join(server, 2)
    for _ in range(3):
        assert "server full" in connect_to(server).expect_eof()[0]
    bob.close()
    alice.next_line_is(rf"^\* {bob.name} left\b")
    [carol] = join(server, 1)  # the freed slot is reused
    alice.next_line_is(rf"^\* {carol.name} joined$")
    assert "server full" in connect_to(server).expect_eof()[0]


# --------------------------------------------------------------------------- bad input


def test_invalid_utf8_is_replaced_by_the_replacement_character(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    word = marker()
    alice.send(b"caf\xc3 \xff\xfe " + word.encode() + b"\n")
    bob.next_line_is(rf"^{alice.name}: caf\ufffd \ufffd\ufffd {word}$")


HOSTILE = {
    "nul": b"\x00",
    "c0": bytes(c for c in range(0x20) if c != 0x0A),
    "del": b"\x7f",
    "c1-as-utf8": "".join(map(chr, range(0x80, 0xA0))).encode(),
    "c1-raw-bytes": bytes(range(0x80, 0xA0)),
    "csi": b"\x1b[2J\x1b[1;31m",
    "osc-title": b"\x1b]0;pwned\x07",
    "osc-8bit": "\u009d0;pwned\u009c".encode(),
    "bel": b"\x07\x07",
    "lone-cr": b"over\rwritten",
    "bidi": "".join(sorted(BIDI_FORMATTING)).encode(),
}


def test_control_and_bidi_characters_never_reach_another_client_raw(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    # Every way a text reaches others: said, /me, /msg, and said with a leading //.
    ways = [b"", b"/me ", f"/msg {bob.name} ".encode(), b"//"]
    words = []
    for way in ways:
        for name, payload in HOSTILE.items():
            word = f"{name}-{marker()}"
            words.append(word)
            alice.send(way + word.encode() + b" " + payload + b" end\n")
    for word in words:
        line = bob.read_raw_line()
        assert word.encode() in line, (word, line)
        assert_terminal_safe(line)
    for line in alice.raw_lines_until_sync():  # what its sender sees back is safe too
        assert_terminal_safe(line)


def test_random_bytes_never_crash_the_server_nor_reach_anyone_raw(connect: Connect) -> None:
    alice, bob = join_room(connect, 2)
    rng = random.Random(20240501)
    noise = rng.randbytes(200_000)  # a fixed seed: the same bytes on every run
    alice.send(noise)
    word = f"fence-{marker()}"
    alice.say(f"\n{word}")
    while not (line := bob.read_raw_line()).endswith(word.encode()):
        assert_terminal_safe(line)
    for line in alice.raw_lines_until_sync():
        assert_terminal_safe(line)
