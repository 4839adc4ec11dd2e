"""Stage B: a generic proactor. Listening sockets in, a thread per connection out.

Section C builds the chat server on it; `python -m section_b.demo` shows it on its own.
"""

from section_b.proactor import (
    Address,
    Handler,
    Proactor,
    peer_name,
    start_proactor,
    stop_proactor,
    wake_blocked,
)

__all__ = [
    "Address",
    "Handler",
    "Proactor",
    "peer_name",
    "start_proactor",
    "stop_proactor",
    "wake_blocked",
]
