"""`protocol.messages`, the C-speed path for a read of plain lines: it must say exactly
what the per-line path says (sanitise, parse, message), or step aside (None)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from section_a import protocol
from section_a.protocol import Overlong, Say

# Lines as a peer may send them: any bytes but the newline (the framer splits on it),
# with the characters that matter to the fast path's checks made likely.
line_bytes = st.lists(
    st.one_of(
        st.sampled_from([b" ", b"/", b"\r", b"\t", b"\x1b", b"\x7f", b"\xc3\xa9", b"\xff", b"a"]),
        st.binary(min_size=1, max_size=3).map(lambda b: b.replace(b"\n", b"")),
    ),
    max_size=12,
).map(b"".join)
# Printable ASCII lines, the fast path's own case, with its odd starts (empty, a space, a
# slash) likely: a list of lines above nearly always holds a byte that sends it the per-line
# way, so the checks the fast path makes of plain lines would go untested without these.
plain_ascii = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
plain_bytes = st.one_of(
    st.text(plain_ascii, max_size=12),
    st.tuples(st.sampled_from(["", " ", "/"]), st.text(plain_ascii, max_size=6)).map("".join),
).map(str.encode)
reads = st.one_of(
    st.lists(plain_bytes, max_size=8), st.lists(st.one_of(plain_bytes, line_bytes), max_size=8)
)
# The lines the fast path is for, by its docstring: printable ASCII, not empty, not starting
# with a space (the line may be blank) or a slash (a command).
plain_lines = (
    st.text(plain_ascii, min_size=1, max_size=12).filter(lambda t: t[0] not in " /").map(str.encode)
)


def per_line(sender: str, lines: list[bytes]) -> bytes | None:
    """What the session's per-line path sends for `lines`, if every one is said text."""
    out = []
    for line in lines:
        command = protocol.parse(protocol.sanitise(line))
        if not isinstance(command, Say) or command.text != line.decode("utf-8", "replace"):
            return None
        out.append(protocol.message(sender, command.text))
    return b"".join(out)


@given(reads)
def test_the_fast_path_says_what_the_per_line_path_says_or_steps_aside(lines: list[bytes]) -> None:
    fast = protocol.messages("alice", list(lines))
    if fast is not None:
        assert fast == per_line("alice", lines)


@given(st.lists(plain_lines, min_size=1, max_size=8))
def test_a_read_of_plain_lines_always_takes_the_fast_path(lines: list[bytes]) -> None:
    assert protocol.messages("alice", list(lines)) == per_line("alice", lines)


def test_a_read_of_ordinary_plain_lines_takes_the_fast_path() -> None:
    lines = [b"hello there", b"how are you?", b"~L00001:0000042:0000000000000000000:...."]
    assert protocol.messages("bob", list(lines)) == per_line("bob", lines)


def test_lines_that_need_a_closer_look_step_aside() -> None:
    for odd in (
        b"",
        b"   ",
        b" leading space",
        b"/nick x",
        b"tab\there",
        b"\x1b[2J",
        b"caf\xc3\xa9",
    ):
        assert protocol.messages("bob", [b"plain", odd]) is None, odd
        assert protocol.messages("bob", [odd, b"plain"]) is None, odd
        assert protocol.messages("bob", [b"plain", odd, b"plain"]) is None, odd
    assert protocol.messages("bob", [b"plain", Overlong(10)]) is None
    assert protocol.messages("bob", []) is None
