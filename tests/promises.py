"""What the README promises, written down once: the tests' oracles, independent of the code.

Every number here is a literal copied from the README (the comment names the section
it comes from), never imported from section_a: a test that took its expected value
from the code would follow the code when it changes, and could not fail. So change a
default in the code and the tests that check it fail; change the promise and you
change it here, and in the README, on purpose.

The characters that must never reach a client raw are built from their definitions
(Unicode's general category Cc, and the explicit bidirectional formatting characters
of UAX #9), not listed by hand, so that the tests check at least what the README
promises even where the code's own list is short.
"""

from __future__ import annotations

import sys
import unicodedata

# ------------------------------------------------------------------ the protocol
MAX_NAME = 24  # "The protocol": /nick NAME, "1-24 letters, digits, `-`, `_`"
# "What it guarantees": "Join and leave notices reach the others within 50 ms"
NOTICE_WITHIN = 0.050
# "The protocol": the command table, in its order, as /help lists them too.
README_COMMANDS = (
    "/nick NAME",
    "/who",
    "/msg NAME TEXT",
    "/me ACTION",
    "/help",
    "/quit",
    "//TEXT",
)
# Not in the README, but promised by the welcome line itself ("and N more (/who lists
# everyone)") and by section_a/protocol.py's docstring of welcome(): a hundred names at most.
WELCOME_NAMES = 100

# ------------------------------------------------------------------ "Server options"
DEFAULT_HOST = "127.0.0.1"  # --host
DEFAULT_PORT = 9034  # --port
DEFAULT_MAX_CLIENTS = 1024  # --max-clients
DEFAULT_MAX_LINE = 8192  # --max-line, in bytes
DEFAULT_SENDQ = 1024 * 1024  # --sendq: "1 MiB"
DEFAULT_BURST = 10  # --burst
DEFAULT_RECVQ = 1024 * 1024  # --recvq: "1 MiB"
SERVER_FULL = "* error: server full; try again later"  # --max-clients: what a newcomer over it gets
STOP_WITHIN = 2.0  # seconds: after SIGINT or SIGTERM "the process exits 0 within 2 seconds"
# Every option the table lists is checked against `--help` from the README itself
# (tests/test_cli.py), so the list is not repeated here.

# ------------------------------------------------------------------ threads ("Stage A", "Stage C")
BASE_THREADS = {
    "section_a.server": 2,  # "n + 2 (main, which accepts; a signal thread)"
    "section_c.server": 2,  # "n + 2 (main, accept)"
}
CLIENT_THREADS = 2  # "The client": "Exactly two threads"

# ------------------------------------------------------------------ "The client": exit status
EXIT_LEFT = 0  # /quit, Ctrl-D, or the end of the input
EXIT_CANNOT_CONNECT = 1
EXIT_USAGE = 2  # bad command line
EXIT_SERVER_GONE = 3  # the server closed the connection, or it was lost
EXIT_SIGINT = 128 + 2  # "130 for Ctrl-C"
EXIT_SIGTERM = 128 + 15  # "143 for SIGTERM"

# ------------------------------------------------------------------ "The protocol": safety
# UAX #9 (Unicode Bidirectional Algorithm), table 1 "Bidirectional Character Types": the
# explicit formatting characters, and the implicit marks.
BIDI_FORMATTING = frozenset(
    {
        "\u061c",  # ALM, Arabic letter mark
        "\u200e",  # LRM, left-to-right mark
        "\u200f",  # RLM, right-to-left mark
        "\u202a",  # LRE, left-to-right embedding
        "\u202b",  # RLE, right-to-left embedding
        "\u202c",  # PDF, pop directional formatting
        "\u202d",  # LRO, left-to-right override
        "\u202e",  # RLO, right-to-left override
        "\u2066",  # LRI, left-to-right isolate
        "\u2067",  # RLI, right-to-left isolate
        "\u2068",  # FSI, first strong isolate
        "\u2069",  # PDI, pop directional isolate
    }
)
# Every control character: C0 (U+0000-U+001F), DEL and C1 (U+007F-U+009F). From the
# definition, so that a range typed by hand cannot be one short.
CONTROLS = frozenset(
    chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cc"
)
# What must never reach a client, or the client's terminal, raw ("Nothing a peer sends
# reaches anyone raw": controls as caret notation, C1 and bidi overrides as U+FFFD).
NEVER_RAW = CONTROLS | BIDI_FORMATTING
