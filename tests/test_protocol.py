"""The wire protocol as pure code: bytes in, lines and commands out, checked with bytes alone.

No socket and no thread here (see section_a/protocol.py): the framer, the sanitiser, the
parser and the formatting are held to their rules example by example, and by property
tests (hypothesis, derandomized so that CI is reproducible) for the rules that must hold
for any input: any split of a stream frames the same, nothing unsafe survives sanitising.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from section_a import protocol
from section_a.framing import _fits
from section_a.protocol import (
    Blank,
    Help,
    Invalid,
    LineFramer,
    Me,
    Nick,
    Overlong,
    Quit,
    Say,
    Whisper,
    Who,
    make_safe,
    parse,
    sanitise,
)
from tests.promises import MAX_NAME, NEVER_RAW, README_COMMANDS, WELCOME_NAMES
from tests.servers import assert_terminal_safe

pytestmark = pytest.mark.stage_a

# More examples than the default: these rules are the protocol's. Reproducible (a fixed
# seed, no example database) by the profile tests/conftest.py loads for every test.
PROPERTY = settings(max_examples=150)

# Characters that must never reach a terminal raw, from their definitions (tests/promises.py):
# every control character (Cc) and every bidi formatting character of UAX #9.
FORBIDDEN = NEVER_RAW
NAME_PATTERN = rf"[A-Za-z][A-Za-z0-9_-]{{0,{MAX_NAME - 1}}}"

# Streams rich in what framing cares about: CR, LF, CR LF, and bytes of a split UTF-8 "é".
framing_bytes = st.lists(
    st.sampled_from([b"a", b"b", b"\r", b"\n", b"\r\n", b"\xc3", b"\xa9", b"\x00"]), max_size=80
).map(b"".join)
streams = st.one_of(framing_bytes, st.binary(max_size=80))
# Printable text that a user may type: no control, no separator but the space.
printable_text = st.text(
    st.characters(exclude_categories=("C", "Z"), include_characters=" "), max_size=40
)
spoken_text = printable_text.filter(lambda t: t.strip() != "")
trimmed_text = spoken_text.map(str.strip).filter(lambda t: t != "")
# Text and bytes where the forbidden characters are common, not one in a million.
forbidden_chars = st.sampled_from(sorted(FORBIDDEN))
hostile_text = st.text(st.one_of(forbidden_chars, st.characters()), max_size=60)
hostile_bytes = st.lists(
    st.one_of(forbidden_chars.map(str.encode), st.binary(max_size=4)), max_size=20
).map(b"".join)


def reference_frames(stream: bytes, max_line: int) -> list[bytes | Overlong]:
    """What framing `stream` must give, written the obvious way (the whole stream at once)."""
    *lines, rest = stream.split(b"\n")
    events: list[bytes | Overlong] = []
    for line in lines:
        line = line.removesuffix(b"\r")
        events.append(Overlong(max_line) if len(line) > max_line else line)
    if len(rest) > max_line + 1:  # an unfinished line already over the limit is reported now
        events.append(Overlong(max_line))
    return events


def feed_in_pieces(framer: LineFramer, stream: bytes, cuts: list[int]) -> list[bytes | Overlong]:
    events: list[bytes | Overlong] = []
    bounds = [0, *sorted(cuts), len(stream)]
    for start, end in itertools.pairwise(bounds):
        events += framer.feed(stream[start:end])
        # Memory stays bounded whatever the peer sends: one line and a CR at most.
        assert framer.pending <= framer.max_line + 1
    return events


# --------------------------------------------------------------------------- framing


def test_lf_and_crlf_both_end_a_line() -> None:
    assert LineFramer().feed(b"one\ntwo\r\nthree\n") == [b"one", b"two", b"three"]


def test_a_line_waits_for_its_newline() -> None:
    framer = LineFramer()
    assert framer.feed(b"hel") == []
    assert framer.feed(b"lo") == []
    assert framer.feed(b"\n") == [b"hello"]


def test_a_crlf_split_between_two_reads_still_ends_one_line() -> None:
    framer = LineFramer()
    assert framer.feed(b"hi\r") == []
    assert framer.feed(b"\nnext\n") == [b"hi", b"next"]


def test_a_lone_cr_does_not_end_a_line() -> None:
    assert LineFramer().feed(b"a\rb\n") == [b"a\rb"]


def test_only_one_cr_is_taken_as_part_of_the_terminator() -> None:
    assert LineFramer().feed(b"a\r\r\n") == [b"a\r"]


def test_empty_lines_are_lines() -> None:
    assert LineFramer().feed(b"\n\r\n") == [b"", b""]


@pytest.mark.parametrize("terminator", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_a_line_exactly_at_the_limit_passes(terminator: bytes) -> None:
    line = b"x" * 16
    assert LineFramer(max_line=16).feed(line + terminator) == [line]


@pytest.mark.parametrize("terminator", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_a_line_one_byte_over_the_limit_is_refused(terminator: bytes) -> None:
    assert LineFramer(max_line=16).feed(b"x" * 17 + terminator + b"ok\n") == [Overlong(16), b"ok"]


def test_the_limit_counts_bytes_not_characters() -> None:
    framer = LineFramer(max_line=16)
    assert framer.feed("é".encode() * 8 + b"\n") == ["é".encode() * 8]
    assert framer.feed("é".encode() * 8 + b"x\n") == [Overlong(16)]


def test_the_tail_of_an_overlong_line_never_becomes_a_line() -> None:
    framer = LineFramer(max_line=8)
    events = framer.feed(b"x" * 20)
    events += framer.feed(b"TAIL-MARKER")
    events += framer.feed(b" more tail\r\nafter\n")
    assert events == [Overlong(8), b"after"]


def test_an_overlong_line_is_reported_before_its_newline_and_only_once() -> None:
    framer = LineFramer(max_line=8)
    assert framer.feed(b"x" * 10) == [Overlong(8)]
    assert framer.feed(b"x" * 1000) == []
    assert framer.pending == 0
    assert framer.feed(b"\n") == []


def test_a_stream_with_no_newline_costs_at_most_one_line_of_memory() -> None:
    framer = LineFramer(max_line=64)
    for _ in range(1000):
        framer.feed(b"y" * 100)
        assert framer.pending <= 65


def test_the_framer_says_whether_it_is_inside_an_overlong_line() -> None:
    framer = LineFramer(max_line=4)
    assert framer.discarding is False
    framer.feed(b"too long")
    assert framer.discarding is True
    framer.feed(b" still\nok")
    assert framer.discarding is False
    assert framer.feed(b"\n") == [b"ok"]


def test_a_line_at_the_limit_may_wait_for_the_lf_after_its_cr() -> None:
    framer = LineFramer(max_line=8)
    assert framer.feed(b"x" * 8 + b"\r") == []
    assert framer.feed(b"\n") == [b"x" * 8]


@PROPERTY
@given(stream=streams, max_line=st.integers(1, 12), data=st.data())
def test_any_split_of_a_stream_gives_the_same_lines_and_events(
    stream: bytes, max_line: int, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")
    whole = LineFramer(max_line).feed(stream)
    assert whole == reference_frames(stream, max_line)
    assert feed_in_pieces(LineFramer(max_line), stream, cuts) == whole


@PROPERTY
@given(stream=streams, max_line=st.integers(1, 12))
def test_byte_by_byte_framing_matches_framing_at_once(stream: bytes, max_line: int) -> None:
    assert feed_in_pieces(LineFramer(max_line), stream, list(range(len(stream)))) == (
        LineFramer(max_line).feed(stream)
    )


@PROPERTY
@given(stream=streams, limit=st.integers(0, 12))
def test_the_framers_length_check_agrees_with_measuring_every_line(
    stream: bytes, limit: int
) -> None:
    # A wrong "too long" would not change the lines (each is measured then), only the speed.
    end = stream.rfind(b"\n")
    lines = stream[:end].split(b"\n") if end >= 0 else []
    assert _fits(stream, end, limit) == (max(map(len, lines), default=0) <= limit)


@pytest.mark.parametrize(
    ("stream", "limit", "fits"),
    [
        (b"\n" + b"x" * 4 + b"\n", 4, True),  # an empty line, then one at the limit
        (b"\n" + b"x" * 5 + b"\n", 4, False),  # an empty line, then one a byte over it
        (b"x" * 4 + b"\n\n" + b"x" * 4 + b"\n", 4, True),  # the same, further on
        (b"\n\n", 0, True),  # a limit of 0: empty lines only
        (b"\nx\n", 0, False),
    ],
)
def test_the_framers_length_check_at_its_edges(stream: bytes, limit: int, fits: bool) -> None:
    assert _fits(stream, stream.rfind(b"\n"), limit) is fits


class Searched(bytes):
    """Bytes that count the searches made in them, and end a search that would never end."""

    searches = 0

    def _count(self) -> None:
        self.searches += 1
        assert self.searches <= len(self), "more searches than bytes: it goes round in circles"

    def find(self, *args: Any) -> int:
        self._count()
        return super().find(*args)

    def rfind(self, *args: Any) -> int:
        self._count()
        return super().rfind(*args)


def test_the_framers_length_check_searches_once_per_limit_bytes_not_once_per_line() -> None:
    # Its reason to be: a read of many short lines costs len / limit searches at C speed,
    # not a step per line. Here 5,000 empty lines, then one over the limit at the end.
    limit = 100
    stream = Searched(b"\n" * 5000 + b"x" * (limit + 1) + b"\n")
    assert not _fits(stream, len(stream) - 1, limit)
    assert stream.searches <= 2 * len(stream) // limit


@pytest.mark.parametrize(
    ("stream", "last"),
    [
        (b"hi", [b"hi"]),
        (b"one\ntwo", [b"two"]),
        (b"hi\r", [b"hi"]),  # the CR of a CR LF whose LF never came
        (b"a\rb", [b"a\rb"]),
        (b"\r", [b""]),
    ],
    ids=["alone", "after-a-line", "cr", "inner-cr", "only-cr"],
)
def test_the_end_of_input_ends_a_last_line_with_no_newline(
    stream: bytes, last: list[bytes | Overlong]
) -> None:
    framer = LineFramer(max_line=8)
    framer.feed(stream)
    assert framer.finish() == last


@pytest.mark.parametrize("stream", [b"", b"done\n", b"done\r\n"], ids=["empty", "lf", "crlf"])
def test_the_end_of_input_on_a_line_boundary_gives_nothing(stream: bytes) -> None:
    framer = LineFramer(max_line=8)
    framer.feed(stream)
    assert framer.finish() == []


def test_a_last_line_at_the_limit_passes_and_one_byte_over_is_refused() -> None:
    at_limit, over = LineFramer(max_line=8), LineFramer(max_line=8)
    assert at_limit.feed(b"x" * 8) == []
    assert at_limit.finish() == [b"x" * 8]
    assert over.feed(b"x" * 9) == []  # one byte of slack: it might have been a CR
    assert over.finish() == [Overlong(8)]


def test_a_last_line_already_refused_gives_nothing_more_at_the_end() -> None:
    framer = LineFramer(max_line=8)
    assert framer.feed(b"x" * 20) == [Overlong(8)]
    assert framer.finish() == []


def test_the_framer_is_empty_after_finish() -> None:
    framer = LineFramer(max_line=8)
    framer.feed(b"x" * 20 + b"\nhal")
    assert framer.finish() == [b"hal"]
    assert framer.pending == 0
    assert framer.finish() == []


@PROPERTY
@given(stream=streams, max_line=st.integers(1, 12), data=st.data())
def test_finish_gives_what_a_final_newline_would_have(
    stream: bytes, max_line: int, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")
    framer = LineFramer(max_line)
    events = feed_in_pieces(framer, stream, cuts) + framer.finish()
    ended = stream if stream.endswith(b"\n") or not stream else stream + b"\n"
    assert events == reference_frames(ended, max_line)


# --------------------------------------------------------------------------- sanitising


def test_invalid_utf8_becomes_the_replacement_character() -> None:
    assert sanitise(b"a\xffb\xfe") == "a\ufffdb\ufffd"


def test_valid_utf8_is_kept() -> None:
    text = "café ∑ 日本語 🙂 עברית"
    assert sanitise(text.encode()) == text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"\x00", "^@"),
        (b"\x07", "^G"),
        (b"\x1b[2J", "^[[2J"),
        (b"\x1b]0;title\x07", "^[]0;title^G"),
        (b"a\rb", "a^Mb"),
        (b"\x7f", "^?"),
        (b"\t", " "),
        ("\u009b31m".encode(), "\ufffd31m"),  # an 8-bit CSI, as UTF-8
        ("\u202eevil".encode(), "\ufffdevil"),
    ],
    ids=["nul", "bel", "csi", "osc", "lone-cr", "del", "tab", "c1-csi", "bidi-override"],
)
def test_control_characters_are_made_visible(raw: bytes, shown: str) -> None:
    assert sanitise(raw) == shown


def test_every_forbidden_character_is_replaced_by_something_visible() -> None:
    for char in sorted(FORBIDDEN):
        safe = make_safe(char)
        assert safe, f"{char!r} vanished"
        assert not FORBIDDEN & set(safe), f"{char!r} became {safe!r}"


def test_every_printable_unicode_character_is_kept() -> None:
    printable = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isprintable())
    assert make_safe(printable) == printable


@PROPERTY
@given(text=hostile_text)
def test_make_safe_output_never_contains_a_control_or_bidi_character(text: str) -> None:
    assert not FORBIDDEN & set(make_safe(text))


@PROPERTY
@given(text=printable_text)
def test_make_safe_keeps_printable_text_unchanged(text: str) -> None:
    assert make_safe(text) == text


@PROPERTY
@given(a=hostile_text, b=hostile_text)
def test_make_safe_works_character_by_character(a: str, b: str) -> None:
    # So the printable characters around a control keep their place, and a block of text
    # made safe at once equals the same text made safe in pieces.
    assert make_safe(a + b) == make_safe(a) + make_safe(b)


@PROPERTY
@given(text=hostile_text)
def test_make_safe_twice_is_make_safe_once(text: str) -> None:
    assert make_safe(make_safe(text)) == make_safe(text)


@PROPERTY
@given(
    lines=st.lists(
        st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), min_size=1, max_size=8
    )
)
def test_sanitising_a_block_then_splitting_equals_sanitising_line_by_line(
    lines: list[bytes],
) -> None:
    # A newline byte can never be inside a UTF-8 sequence, so decoding cannot cross lines.
    block = b"\n".join(lines)
    by_line = [sanitise(line) for line in lines]
    assert [make_safe(t) for t in block.decode("utf-8", "replace").split("\n")] == by_line
    assert sanitise(block) == "^J".join(by_line)


@PROPERTY
@given(
    raw=st.one_of(hostile_bytes, st.binary(max_size=80)),
    name=st.from_regex(NAME_PATTERN, fullmatch=True),
)
def test_any_bytes_from_a_peer_become_one_safe_line_on_the_wire(raw: bytes, name: str) -> None:
    (line,) = LineFramer().feed(raw.replace(b"\n", b"") + b"\n")
    assert isinstance(line, bytes)
    text = sanitise(line)
    for wire in (
        protocol.message(name, text),
        protocol.whisper(name, text),
        protocol.action(name, text),
        protocol.error(text),
    ):
        assert wire.count(b"\n") == 1
        assert_terminal_safe(wire[:-1])


# --------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello", Say("hello")),
        ("  spaced  ", Say("  spaced  ")),
        ("//etc/passwd", Say("/etc/passwd")),
        ("//", Say("/")),
        ("", Blank()),
        ("   ", Blank()),
        ("/nick bob", Nick("bob")),
        ("/NICK  bob ", Nick("bob")),
        ("/who", Who()),
        ("/who is there", Who()),
        ("/msg bob hi there", Whisper("bob", "hi there")),
        ("/msg bob   hi  ", Whisper("bob", "hi")),
        ("/me waves", Me("waves")),
        ("/help", Help()),
        ("/quit", Quit()),
        ("/Quit", Quit()),
    ],
)
def test_a_line_parses_to_its_command(line: str, command: protocol.Command) -> None:
    assert parse(line) == command


@pytest.mark.parametrize(
    "line",
    ["/nick", "/nick   ", "/nick two words", "/msg", "/msg bob", "/msg bob   ", "/me", "/me  "],
)
def test_a_command_with_bad_arguments_is_invalid_with_its_usage(line: str) -> None:
    command = parse(line)
    assert isinstance(command, Invalid)
    assert command.reason.startswith("usage: /")


@pytest.mark.parametrize(
    ("line", "usage"),
    [("/nick", "/nick NAME"), ("/msg bob", "/msg NAME TEXT"), ("/me", "/me ACTION")],
)
def test_the_usage_given_is_the_commands_own_as_the_readme_writes_it(line: str, usage: str) -> None:
    assert usage in README_COMMANDS
    assert parse(line) == Invalid(f"usage: {usage}")


@pytest.mark.parametrize("line", ["/frobnicate", "/", "/ nick bob", "/nickname bob"])
def test_an_unknown_command_is_invalid_and_points_to_help(line: str) -> None:
    command = parse(line)
    assert isinstance(command, Invalid)
    assert "unknown command" in command.reason
    assert "/help" in command.reason


@PROPERTY
@given(text=spoken_text)
def test_any_text_said_with_the_slash_escape_parses_back_to_itself(text: str) -> None:
    line = "/" + text if text.startswith("/") else text
    assert parse(line) == Say(text)


@PROPERTY
@given(name=st.from_regex(NAME_PATTERN, fullmatch=True), text=trimmed_text, word=st.data())
def test_commands_parse_back_to_what_was_written(name: str, text: str, word: st.DataObject) -> None:
    def spelled(command: str) -> str:
        # Command words are case-insensitive: any spelling of the word parses the same.
        return "".join(
            word.draw(st.sampled_from([c.lower(), c.upper()]), label="letter") for c in command
        )

    assert parse(f"/{spelled('nick')} {name}") == Nick(name)
    assert parse(f"/{spelled('msg')} {name} {text}") == Whisper(name, text)
    assert parse(f"/{spelled('me')} {text}") == Me(text)


@PROPERTY
@given(name=st.from_regex(NAME_PATTERN, fullmatch=True), text=printable_text)
def test_a_formatted_line_frames_and_decodes_back_to_its_text(name: str, text: str) -> None:
    assert LineFramer().feed(protocol.message(name, text)) == [f"{name}: {text}".encode()]
    assert sanitise(f"{name}: {text}".encode()) == f"{name}: {text}"


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["alice", "Bob", "x", "guest-7", "a_b-c9", "z" * MAX_NAME])
def test_a_good_name_has_no_problem(name: str) -> None:
    assert protocol.name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        "z" * (MAX_NAME + 1),
        "9lives",
        "-dash",
        "two words",
        "café",
        "\uff41lice",  # a fullwidth a
        "bob!",
        "a^[[2J",
        "alice\n",
    ],
)
def test_a_name_outside_the_length_or_charset_is_refused(name: str) -> None:
    assert protocol.name_problem(name) is not None


@pytest.mark.parametrize("name", ["error", "ERROR", "Server", "you", "private", "welcome"])
def test_reserved_names_are_refused_in_any_case(name: str) -> None:
    problem = protocol.name_problem(name)
    assert problem is not None
    assert "reserved" in problem


# --------------------------------------------------------------------------- formatting


def test_the_welcome_names_the_newcomer_the_others_and_help() -> None:
    line = protocol.welcome("guest-3", ["alice", "bob"]).decode()
    assert line.startswith("* welcome, guest-3.")
    assert "alice, bob" in line
    assert "/help" in line
    assert line.count("\n") == 1


def test_the_welcome_to_an_empty_room_says_so() -> None:
    assert "nobody else" in protocol.welcome("guest-1", []).decode()


def test_help_lists_every_command_on_server_lines() -> None:
    lines = protocol.help_text().decode().splitlines()
    assert all(line.startswith("* ") for line in lines)
    for usage in ("/nick", "/who", "/msg", "/me", "/help", "/quit", "//"):
        assert any(usage in line for line in lines), usage


def test_every_line_the_server_writes_is_marked_with_a_star() -> None:
    for line in (
        protocol.notice("x"),
        protocol.error("x"),
        protocol.joined("bob"),
        protocol.left("bob"),
        protocol.left("bob", "quit"),
        protocol.renamed("a", "b"),
        protocol.action("bob", "waves"),
        protocol.SHUTTING_DOWN,
        protocol.BYE,
    ):
        assert line.startswith(b"* ") and line.endswith(b"\n") and line.count(b"\n") == 1
    assert protocol.error("x").startswith(b"* error: ")


# Called in the test, not here: mutation testing swaps the code after collection.
FORMATS = [
    (protocol.message, ("alice", "hi there"), b"alice: hi there\n"),
    (protocol.whisper, ("alice", "psst"), b"alice (private): psst\n"),
    (protocol.action, ("alice", "waves"), b"* alice waves\n"),
    (protocol.joined, ("bob",), b"* bob joined\n"),
    (protocol.left, ("bob",), b"* bob left\n"),
    (protocol.left, ("bob", ""), b"* bob left\n"),
    (protocol.left, ("bob", "quit"), b"* bob left (quit)\n"),
    (protocol.renamed, ("guest-3", "carol"), b"* guest-3 is now carol\n"),
    (protocol.notice, ("here now (1): bob",), b"* here now (1): bob\n"),
    (protocol.error, ("no such name",), b"* error: no such name\n"),
]


@pytest.mark.parametrize(
    ("format_line", "args", "wire"), FORMATS, ids=[wire.decode().strip() for *_, wire in FORMATS]
)
def test_each_line_is_written_as_the_readme_shows_it(
    format_line: Callable[..., bytes], args: tuple[str, ...], wire: bytes
) -> None:
    assert format_line(*args) == wire


def test_the_servers_fixed_lines() -> None:
    assert (protocol.BYE, protocol.SHUTTING_DOWN) == (b"* bye\n", b"* server shutting down\n")


def test_the_welcome_is_one_exact_line() -> None:
    assert protocol.welcome("guest-1", []) == (
        b"* welcome, guest-1. here now: nobody else. type /help for the commands\n"
    )
    assert protocol.welcome("guest-3", ["alice", "bob"]) == (
        b"* welcome, guest-3. here now: alice, bob. type /help for the commands\n"
    )


def test_the_help_is_a_header_then_one_aligned_line_per_command_of_the_readme() -> None:
    header, *lines = protocol.help_text().decode().splitlines()
    assert header == "* commands:"
    usages = [line[4:].split("  ")[0] for line in lines]
    assert usages == list(README_COMMANDS), lines
    assert all(line.startswith("*   /") for line in lines), "usages start the line, left-aligned"
    columns = {len(line) - len(line[4:].split("  ", 1)[1].lstrip()) for line in lines}
    assert len(columns) == 1, f"the meanings start in different columns: {lines}"


def test_a_new_framer_holds_nothing() -> None:
    assert LineFramer().pending == 0


def test_the_welcome_names_exactly_a_hundred_others_without_more() -> None:
    others = [f"guest-{n}" for n in range(2, 2 + WELCOME_NAMES)]
    line = protocol.welcome("guest-1", others).decode()
    assert line.count("guest-") == 1 + WELCOME_NAMES
    assert "more" not in line


def test_the_welcome_names_at_most_a_hundred_others() -> None:
    others = [f"guest-{n}" for n in range(2, 2 + WELCOME_NAMES + 5)]
    line = protocol.welcome("guest-1", others).decode()
    assert others[WELCOME_NAMES - 1] in line
    assert f"{others[WELCOME_NAMES]}," not in line
    assert "and 5 more (/who lists everyone)" in line
    assert protocol.welcome("guest-1", others[:3]).decode().count("guest-") == 4


def test_a_line_at_the_limit_passes_beside_one_over_it_in_the_same_read() -> None:
    framer = LineFramer(max_line=8)
    assert framer.feed(b"123456789\n12345678\n") == [Overlong(8), b"12345678"]
