"""The load line, and how a client looks at what arrives: pure code, bytes in.

Every line a load client sends is 64 bytes and carries a mark, its sender and its
sequence number, and in steady() runs the time it was sent (`time.monotonic_ns()`:
sender and receiver are one process, so the clocks agree):

    ~L00007:0000042:0000012345678901234:...........................\\n

The server delivers it to the others as ``guest-8: ~L00007:...``. A receiver counts
`MARK` in each block of whole lines (bytes.count: about 1 GB/s), and looks at lines
one by one only where a block holds a line of the server's own (they all start with
``*``, found at memchr speed). Checking what arrived costs little more: in a fan-out
every sender's lines are known in advance, exactly as the server will forward them
(`forwarded`), so each run of lines from one sender is compared with the expected
bytes as a whole (`check_runs`, at memcmp speed); a lost, repeated, reordered or
altered line breaks a run. Only steady() parses each line (`STAMPED`), for its send time.
"""

from __future__ import annotations

import re

MARK = b"~L"  # starts the text of every load line; appears in nothing else the server sends
LINE_SIZE = 64  # bytes in one load line, its newline included

STAMPED = re.compile(rb"~L(\d{5}):(\d{7}):(\d{19}):")  # sender, number, send time
WELCOME = re.compile(rb"^\* welcome, (\S+)\.")


def load_line(sender: int, seq: int, stamp_ns: int = 0, size: int = LINE_SIZE) -> bytes:
    """One load line: mark, sender, sequence number, send time, padding to `size` bytes.

    >>> line = load_line(7, 42, 12345)
    >>> len(line), line[:36]
    (64, b'~L00007:0000042:0000000000000012345:')
    """
    head = b"~L%05d:%07d:%019d:" % (sender, seq, stamp_ns)
    return head.ljust(size - 1, b".") + b"\n"


def forwarded(name: str, payload: bytes) -> bytes:
    """`payload` (whole lines) as the server forwards it to the others: `NAME: ` before each.

    >>> forwarded("bo", b"a\\nb\\n")
    b'bo: a\\nbo: b\\n'
    """
    prefix = name.encode() + b": "
    return prefix + payload.replace(b"\n", b"\n" + prefix)[: -len(prefix)]


def check_runs(
    block: bytes, streams: dict[bytes, tuple[bytes, int]], nexts: dict[bytes, int]
) -> int:
    """Check `block` against what each sender sent; return how many runs were out of order.

    `streams` holds each sender's forwarded lines and their width; `nexts`, the number of
    each sender's line expected next, is moved on past what matched. Each run of lines
    from one sender is compared as a whole: grown 1, 2, 4... lines while it matches, then
    bisected at the first mismatch, so a run of k lines costs about 2*log2(k) comparisons.
    A run that does not start with the line expected next is one disorder (a line lost,
    repeated, reordered or altered); checking goes on from the line that came.
    """
    disordered = 0
    at, end = 0, len(block)
    while (mark := block.find(MARK, at)) >= 0:
        start = block.rfind(b"\n", 0, mark) + 1  # the start of the line holding the mark
        sender = block[mark + 2 : mark + 7]
        stream, width = streams.get(sender, (b"", 1))
        seq = nexts.get(sender, 0)
        most = min((end - start) // width, len(stream) // width - seq)
        good, step, growing = 0, 1, True
        while step and good < most:
            take = step if step < most - good else most - good
            offset = (seq + good) * width
            if block.startswith(stream[offset : offset + take * width], start + good * width):
                good += take
                step = step * 2 if growing else step // 2
            else:
                growing = False
                step = take // 2
        if good:
            nexts[sender] = seq + good
            at = start + good * width
        else:
            disordered += 1
            seen = block[mark + 8 : mark + 15]
            if seen.isdigit():  # go on from the line that came; an altered number says nothing
                nexts[sender] = int(seen) + 1
            at = block.index(b"\n", mark) + 1
    return disordered


# A block of whole lines holds the server's own lines ("* ...") wherever it starts with one
# or "\n* " occurs: a client of a big room gets thousands, so they are counted at C speed,
# and only the few a client keeps are cut out.


def notice_count(block: bytes) -> int:
    """How many lines of the server's own the block of whole lines `block` holds."""
    return block.count(b"\n* ") + block.startswith(b"* ")


def first_notice(block: bytes) -> bytes:
    """The first line of the server's own in `block` (which holds one)."""
    start = 0 if block.startswith(b"* ") else block.find(b"\n* ") + 1
    return block[start : block.index(b"\n", start)]


def last_notices(block: bytes, n: int) -> list[bytes]:
    """The last `n` lines of the server's own in `block`, oldest first."""
    if not n:
        return []
    pieces = block.rsplit(b"\n* ", n)  # from the end, in C: each piece after the first is one
    found = [b"* " + piece.partition(b"\n")[0] for piece in pieces[1:]]
    if len(pieces) <= n and block.startswith(b"* "):  # room for one more: the very first line
        found.insert(0, pieces[0].partition(b"\n")[0])
    return found


def in_a_notice(block: bytes, text: bytes) -> bool:
    """Whether `text` is in one of the server's own lines in `block`."""
    at = block.find(text)
    while at >= 0:
        if block.startswith(b"* ", block.rfind(b"\n", 0, at) + 1):
            return True
        at = block.find(text, at + 1)
    return False
