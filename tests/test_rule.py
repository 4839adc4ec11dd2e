"""The course's one rule, checked on the product's source: threads, not asynchronous I/O.

The assignment forbids "multi-process or asynchronous I/O". In this course that means
the previous assignment's two designs: a server that forks per client, and one thread
watching many sockets with poll()/select(). So in the product (section_a with its
client, section_b, section_c) concurrency comes from threads, and every wait is a
blocking call in a thread of its own, with a timeout on that call where the wait must
end. The tools (harness/, bench/, demo/, the grader) are not the product and may
multiplex. No server runs here: the rule is read off the code, with `ast`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("section_a", "section_b", "section_c")

# One thread watching many descriptors, asynchronous I/O, or a process per client.
MULTIPLEXING_MODULES = frozenset({"select", "selectors", "asyncio", "multiprocessing"})
# Calls that make a multiplexer, a process, or a descriptor whose only use is to wake a
# thread that waits on several things (a pipe, a socket pair, an eventfd, a signal's
# wake-up descriptor): a signal is taken by sigwait(), a blocking call of its own.
FORBIDDEN_CALLS = frozenset(
    {"epoll", "poll", "select", "fork", "eventfd", "socketpair", "pipe", "pipe2", "set_wakeup_fd"}
)
# One send that does not wait is allowed where it keeps a design simple: each use has a
# comment (on its line or the one above) that says why.
DONTWAIT = "MSG_DONTWAIT"


def offences(source: str, path: str = "<source>") -> list[str]:
    """What in `source` breaks the rule, one line each (`path:line: what`)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    found: list[str] = []

    def offence(node: ast.AST, what: str) -> None:
        found.append(f"{path}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in MULTIPLEXING_MODULES:
                    offence(node, f"imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in MULTIPLEXING_MODULES:
                offence(node, f"imports from {node.module}")
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func).split(".")[-1]
            args = [ast.unparse(a) for a in node.args]
            if name in FORBIDDEN_CALLS:
                offence(node, f"calls {ast.unparse(node.func)}()")
            elif name == "setblocking" and args and args[0] in ("False", "0"):
                offence(node, "leaves a socket non-blocking")
            elif name == "settimeout" and args and args[0] in ("0", "0.0"):
                offence(node, "leaves a socket non-blocking (a timeout of 0)")
            elif name == "set_blocking" and args[1:] and args[1] in ("False", "0"):
                offence(node, "leaves a descriptor non-blocking")
        elif isinstance(node, ast.Attribute) and node.attr == DONTWAIT:
            here = lines[node.lineno - 1]
            above = lines[node.lineno - 2] if node.lineno > 1 else ""
            if "#" not in here and "#" not in above:
                offence(node, f"{DONTWAIT} with no comment saying why")
    return found


def product_modules() -> list[Path]:
    return sorted(path for package in PRODUCT for path in (ROOT / package).rglob("*.py"))


def test_the_product_is_threads_and_blocking_calls_only() -> None:
    modules = product_modules()
    assert len(modules) > 10, "the product's modules were not found"
    found = [
        line for path in modules for line in offences(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert not found, "the rule is broken:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "import select",
        "import selectors as s",
        "from asyncio import run",
        "import multiprocessing.pool",
        "e = select.epoll()",
        "p = select.poll()",
        "os.fork()",
        "w = os.eventfd(0)",
        "a, b = socket.socketpair()",
        "r, w = os.pipe()",
        "signal.set_wakeup_fd(w)",
        "sock.setblocking(False)",
        "sock.settimeout(0)",
        "os.set_blocking(fd, False)",
        "sock.send(b'x', socket.MSG_DONTWAIT)",
    ],
)
def test_each_way_of_breaking_the_rule_is_found(source: str) -> None:
    assert offences(source), f"not found: {source}"


@pytest.mark.parametrize(
    "source",
    [
        "conn, addr = listener.accept()",
        "sock.settimeout(None)",
        "sock.setblocking(True)",
        "sock.settimeout(5.0)  # the socket's own timeout, on a call that must end",
        "sock.send(b'x', socket.MSG_DONTWAIT)  # never waits: the room writes under its lock",
        "# a comment above says why\nsock.send(b'x', socket.MSG_DONTWAIT)",
        "threading.Thread(target=serve).start()",
    ],
)
def test_threads_and_blocking_calls_pass(source: str) -> None:
    assert offences(source) == []
