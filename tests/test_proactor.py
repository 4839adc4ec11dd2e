"""Stage B: the generic proactor, a thread per connection, and its designed stop.

Every server binds port 0; every wait has a deadline (support.wait_for); thread counts are
the kernel's (/proc). A fixture checks that no proactor thread outlives its test.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import pytest

from harness.proc import cpu_seconds, thread_count
from section_b import Address, Proactor, start_proactor, stop_proactor, wake_blocked
from section_b.accepting import CAPACITY_BACKOFF, CAPACITY_ERRNOS, PEER_GONE_ERRNOS, Acceptor
from tests.support import DEADLINE, wait_for

pytestmark = pytest.mark.stage_b

ROOT = Path(__file__).resolve().parent.parent
PID = os.getpid()

Serve: TypeAlias = Callable[..., tuple[Proactor, Address]]
Connect: TypeAlias = Callable[[Address], socket.socket]


def echo(conn: socket.socket, addr: Address) -> None:
    while data := conn.recv(4096):
        conn.sendall(data)


def recv_exactly(client: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size and (chunk := client.recv(size - len(data))):
        data += chunk
    return data


def roundtrip(client: socket.socket, data: bytes = b"ping\n") -> bytes:
    client.sendall(data)
    return recv_exactly(client, len(data))


def listen(host: str = "127.0.0.1", family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    return socket.create_server((host, 0), family=family, backlog=256)


def proactor_threads() -> list[str]:
    return [
        thread.name
        for thread in threading.enumerate()
        if thread.name.startswith("conn-") or "-accept-" in thread.name
    ]


def accept_thread(listener: socket.socket) -> threading.Thread:
    """The proactor's accept thread for `listener`, by its name ("NAME-accept-HOST:PORT")."""
    host, port = listener.getsockname()[:2]
    name = f"-accept-[{host}]:{port}" if ":" in host else f"-accept-{host}:{port}"
    [thread] = [thread for thread in threading.enumerate() if thread.name.endswith(name)]
    return thread


def blocked_on(thread: threading.Thread, fd: int) -> bool:
    """Whether `thread` is inside a system call on descriptor `fd` (e.g. recv, accept)."""
    try:
        with open(f"/proc/self/task/{thread.native_id}/syscall") as syscall:
            fields = syscall.read().split()
    except OSError as exc:  # Linux has it: without it, this test would prove nothing
        pytest.fail(f"cannot tell where a thread blocks: {exc}")
    return fields[0] not in ("running", "-1") and int(fields[1], 16) == fd


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def kernel_agrees() -> bool:
    """Whether every thread the kernel counts is one Python knows (none are half-ended)."""
    return thread_count(PID) == threading.active_count()


@pytest.fixture(autouse=True)
def no_proactor_thread_left() -> Iterator[None]:
    """Each test starts from settled thread counts and leaves no proactor thread behind."""
    wait_for(kernel_agrees, "the kernel's thread count to match Python's")
    yield
    wait_for(lambda: not proactor_threads(), "every proactor thread to end")


@pytest.fixture
def proactors() -> Iterator[list[Proactor]]:
    """Proactors the test made: each is stopped at teardown and must leave no thread."""
    made: list[Proactor] = []
    yield made
    for proactor in made:
        assert proactor.stop() == []


@pytest.fixture
def serve(proactors: list[Proactor]) -> Serve:
    """Start a proactor serving `handler` on a fresh 127.0.0.1 port: (proactor, address)."""

    def serve(
        handler: Callable[[socket.socket, Address], None], **options: Any
    ) -> tuple[Proactor, Address]:
        listener = listen()
        proactors.append(start_proactor(listener, handler, **options))
        return proactors[-1], listener.getsockname()

    return serve


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Open client connections (with a timeout, so no test hangs in recv); closed at teardown."""
    opened: list[socket.socket] = []

    def connect(address: Address) -> socket.socket:
        opened.append(socket.create_connection(address[:2], timeout=DEADLINE))
        return opened[-1]

    yield connect
    for client in opened:
        client.close()


class Blocked:
    """A thread blocked in `call` (recv, accept): whether and how it returned."""

    def __init__(self, call: Callable[[], object], fd: int) -> None:
        self.returned = threading.Event()
        self.result: object = None
        self.thread = threading.Thread(target=self._run, args=(call,), name="blocked")
        self.thread.start()
        wait_for(lambda: blocked_on(self.thread, fd), "the thread to block in its call")

    def _run(self, call: Callable[[], object]) -> None:
        try:
            self.result = call()
        except OSError as error:
            self.result = error
        self.returned.set()


# The Linux fact that stop() relies on, pinned where it would break first.


@pytest.mark.timeout(10)
def test_close_from_another_thread_does_not_wake_recv_but_shutdown_does() -> None:
    conn, peer = socket.socketpair()
    blocked = Blocked(lambda: conn.recv(1), conn.fileno())
    conn.close()
    woken_by_close = blocked.returned.wait(0.5)
    peer.close()  # end of file: this does release it
    blocked.thread.join(DEADLINE)
    assert not woken_by_close, (
        "close() from another thread woke a thread blocked in recv(); on Linux it does not, "
        "and section_b.wake_blocked() is built on that fact: check the platform"
    )

    conn, peer = socket.socketpair()
    blocked = Blocked(lambda: conn.recv(1), conn.fileno())
    wake_blocked(conn)
    assert blocked.returned.wait(0.5), "shutdown() did not wake a thread blocked in recv()"
    assert blocked.result == b""
    blocked.thread.join(DEADLINE)
    conn.close()
    peer.close()


@pytest.mark.timeout(10)
def test_close_from_another_thread_does_not_wake_accept_but_shutdown_does() -> None:
    listener = listen()
    address = listener.getsockname()
    blocked = Blocked(listener.accept, listener.fileno())
    listener.close()
    woken_by_close = blocked.returned.wait(0.5)
    with contextlib.suppress(OSError):
        socket.create_connection(address, timeout=DEADLINE).close()  # releases accept()
    blocked.thread.join(DEADLINE)
    if isinstance(blocked.result, tuple):
        blocked.result[0].close()
    assert not woken_by_close, (
        "close() from another thread woke a thread blocked in accept(); on Linux it does not"
    )

    listener = listen()
    blocked = Blocked(listener.accept, listener.fileno())
    wake_blocked(listener)
    assert blocked.returned.wait(0.5), "shutdown() did not wake a thread blocked in accept()"
    assert isinstance(blocked.result, OSError) and blocked.result.errno == errno.EINVAL
    blocked.thread.join(DEADLINE)
    listener.close()


# A thread per listener, blocked in accept(); a thread per connection.


def test_threads_are_one_per_listener_plus_one_per_live_connection(
    proactors: list[Proactor], connect: Connect
) -> None:
    base = thread_count(PID)
    listeners = [listen() for _ in range(3)]
    proactor = Proactor()
    for listener in listeners:
        proactor.add_listener(listener, echo)
    proactors.append(proactor.start())
    wait_for(lambda: thread_count(PID) == base + 3, "an accept thread per listener")
    clients = [connect(listeners[n].getsockname()) for n in (0, 0, 2)]
    for client in clients:
        roundtrip(client)
    wait_for(lambda: thread_count(PID) == base + 3 + 3, "and a thread per connection")
    clients[0].close()
    wait_for(lambda: thread_count(PID) == base + 3 + 2, "a thread to end with its connection")
    assert proactor.stop() == []
    wait_for(lambda: thread_count(PID) == base, "every thread to end at stop()")


def test_each_accept_thread_blocks_in_accept_on_its_own_listener(proactors: list[Proactor]) -> None:
    """Not in a selector's wait on all of them: the kernel says which descriptor it waits on."""
    listeners = [listen(), listen()]
    proactor = Proactor()
    for listener in listeners:
        proactor.add_listener(listener, echo)
    proactors.append(proactor.start())
    for listener in listeners:
        thread = accept_thread(listener)
        wait_for(
            lambda: blocked_on(thread, listener.fileno()),  # noqa: B023 (waited for at once)
            f"{thread.name} to block in accept() on its listener",
        )


def test_each_connection_gets_a_thread_named_after_its_peer(serve: Serve, connect: Connect) -> None:
    proactor, address = serve(echo)
    base = wait_for(lambda: thread_count(PID), "a thread count")
    clients = [connect(address) for _ in range(3)]
    for client in clients:
        assert roundtrip(client) == b"ping\n"
    wait_for(lambda: thread_count(PID) == base + 3, "three more threads in the process")
    assert proactor.connection_count == 3
    names = {thread.name for thread in proactor.threads()}
    assert names == {f"conn-127.0.0.1:{client.getsockname()[1]}" for client in clients}


def test_handler_runs_in_its_connection_thread_on_a_blocking_socket(
    serve: Serve, connect: Connect
) -> None:
    seen: list[tuple[str, float | None]] = []

    def record(conn: socket.socket, addr: Address) -> None:
        seen.append((threading.current_thread().name, conn.gettimeout()))

    _, address = serve(record)
    client = connect(address)
    assert client.recv(1) == b""  # the handler returned: the proactor closed the connection
    assert seen == [(f"conn-127.0.0.1:{client.getsockname()[1]}", None)]


def test_threads_end_when_their_connections_end(serve: Serve, connect: Connect) -> None:
    proactor, address = serve(echo)
    base = thread_count(PID)
    clients = [connect(address) for _ in range(3)]
    for client in clients:
        roundtrip(client)
    wait_for(lambda: thread_count(PID) == base + 3, "three connection threads")
    clients[0].close()
    clients[1].close()
    wait_for(lambda: thread_count(PID) == base + 1, "two threads to end with their clients")
    assert proactor.connection_count == 1
    clients[2].close()
    wait_for(lambda: thread_count(PID) == base, "the last connection thread to end")
    assert proactor.threads() == []


@pytest.mark.timeout(30)
def test_two_hundred_concurrent_connections_get_two_hundred_threads(
    serve: Serve, connect: Connect
) -> None:
    proactor, address = serve(echo)
    base = thread_count(PID)
    clients = [connect(address) for _ in range(200)]
    for number, client in enumerate(clients):
        assert roundtrip(client, f"{number}\n".encode()) == f"{number}\n".encode()
    wait_for(lambda: thread_count(PID) == base + 200, "200 connection threads")
    assert proactor.connection_count == 200
    assert proactor.accepted == 200
    for client in clients:
        client.close()
    wait_for(lambda: thread_count(PID) == base, "all 200 threads to end")
    assert proactor.connection_count == 0


def test_callbacks_and_counters_follow_connections(serve: Serve, connect: Connect) -> None:
    connected: list[Address] = []
    disconnected: list[Address] = []
    proactor, address = serve(echo, on_connect=connected.append, on_disconnect=disconnected.append)
    client = connect(address)
    roundtrip(client)
    assert connected == [client.getsockname()]
    client.close()
    wait_for(lambda: disconnected, "on_disconnect")
    assert disconnected == connected
    assert (proactor.accepted, proactor.refused, proactor.failed) == (1, 0, 0)


# stop(): wake, join, report.


@pytest.mark.timeout(15)
def test_stop_ends_idle_busy_and_blocked_handlers_within_its_timeout(
    proactors: list[Proactor], connect: Connect
) -> None:
    def busy(conn: socket.socket, addr: Address) -> None:
        with contextlib.suppress(OSError):  # stop() shuts the connection: send fails
            while True:
                conn.sendall(b"x" * 65536)

    def blocked_in_readline(conn: socket.socket, addr: Address) -> None:
        for _ in conn.makefile("rb"):
            pass

    base = thread_count(PID)
    proactor = Proactor()
    listeners = {"idle": listen(), "busy": listen(), "blocked": listen()}
    proactor.add_listener(listeners["idle"], echo)
    proactor.add_listener(listeners["busy"], busy)
    proactor.add_listener(listeners["blocked"], blocked_in_readline)
    proactors.append(proactor.start())
    idle = connect(listeners["idle"].getsockname())
    roundtrip(idle)
    streaming = connect(listeners["busy"].getsockname())
    assert streaming.recv(1) == b"x"  # it streams, and we stop reading
    connect(listeners["blocked"].getsockname()).sendall(b"half a line, no newline")
    wait_for(lambda: proactor.connection_count == 3, "three connections")

    started = time.monotonic()
    assert proactor.stop(timeout=2.0) == []
    assert time.monotonic() - started < 2.0
    assert proactor_threads() == []
    assert proactor.connection_count == 0
    wait_for(lambda: thread_count(PID) == base, "the process to be back to its threads")


@pytest.mark.timeout(10)
def test_stop_names_a_handler_that_ignores_end_of_file(serve: Serve, connect: Connect) -> None:
    release = threading.Event()

    def stubborn(conn: socket.socket, addr: Address) -> None:
        conn.recv(1)  # stop() makes this return b""...
        release.wait()  # ...and this handler does not care

    proactor, address = serve(stubborn)
    client = connect(address)
    wait_for(lambda: proactor.connection_count == 1, "the connection")
    try:
        started = time.monotonic()
        assert stop_proactor(proactor, timeout=0.3) == [f"conn-127.0.0.1:{client.getsockname()[1]}"]
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
    wait_for(lambda: proactor.threads() == [], "the released handler to end")


@pytest.mark.timeout(10)
def test_stop_from_inside_a_handler_stops_everything_without_deadlock(
    serve: Serve, connect: Connect
) -> None:
    results: list[list[str]] = []

    def stop_on_request(conn: socket.socket, addr: Address) -> None:
        while data := conn.recv(64):
            if data == b"stop":
                results.append(proactor.stop())
            else:
                conn.sendall(data)

    proactor, address = serve(stop_on_request)
    bystander = connect(address)
    roundtrip(bystander)
    connect(address).sendall(b"stop")
    wait_for(lambda: results, "stop() to return inside the handler")
    assert results == [[]]  # the bystander and the accept thread were joined
    assert bystander.recv(1) == b""
    wait_for(lambda: proactor.threads() == [], "the stopping handler to end")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=DEADLINE)


def test_stop_twice_and_from_two_threads_at_once_is_harmless(
    serve: Serve, connect: Connect
) -> None:
    proactor, address = serve(echo)
    roundtrip(connect(address))
    results: list[list[str]] = []
    stoppers = [threading.Thread(target=lambda: results.append(proactor.stop())) for _ in "ab"]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join(DEADLINE)
    assert results == [[], []]
    assert proactor.stop() == []


def pour_connections(address: Address, pouring: threading.Event, done: threading.Event) -> None:
    """Connect, send a byte, close, again and again, until `done` or refused."""
    while not done.is_set():
        try:
            with socket.create_connection(address[:2], timeout=DEADLINE) as client:
                pouring.set()
                client.sendall(b"x")
        except OSError:
            return  # refused: the listener is closed


@pytest.mark.timeout(30)
def test_stop_while_connections_pour_in_joins_every_thread_it_started(serve: Serve) -> None:
    """stop() lands at any point of accepting: before, during or after a thread's start."""
    for _ in range(20):
        proactor, address = serve(echo)
        pouring, done = threading.Event(), threading.Event()
        clients = [
            threading.Thread(target=pour_connections, args=(address, pouring, done))
            for _ in range(4)
        ]
        for client in clients:
            client.start()
        assert pouring.wait(DEADLINE)
        assert proactor.stop() == []
        done.set()
        for client in clients:
            client.join(DEADLINE)
        assert proactor.threads() == []
        assert not [t.name for t in threading.enumerate() if t.name.startswith("conn-")]


def test_connect_after_stop_is_refused(serve: Serve) -> None:
    proactor, address = serve(echo)
    assert proactor.stop() == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=DEADLINE)


@pytest.mark.parametrize("form", ["start_proactor", "Proactor"])
def test_with_block_stops_the_proactor_on_exit(form: str, connect: Connect) -> None:
    listener = listen()
    address = listener.getsockname()
    manager = start_proactor(listener, echo) if form == "start_proactor" else Proactor()
    with manager as proactor:
        if form == "Proactor":
            proactor.add_listener(listener, echo)
            proactor.start()
        client = connect(address)
        assert roundtrip(client) == b"ping\n"
    assert proactor_threads() == []
    assert client.recv(1) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=DEADLINE)


# Failures stay where they happen.


def test_handler_exception_is_logged_with_its_peer_and_others_carry_on(
    serve: Serve, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    def fragile(conn: socket.socket, addr: Address) -> None:
        while data := conn.recv(64):
            if data == b"boom":
                raise ValueError("boom")
            conn.sendall(data)

    proactor, address = serve(fragile)
    healthy, doomed = connect(address), connect(address)
    roundtrip(healthy)
    doomed.sendall(b"boom")
    assert doomed.recv(1) == b""  # its connection was closed
    peer = f"127.0.0.1:{doomed.getsockname()[1]}"
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert peer in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ValueError
    assert proactor.failed == 1
    assert roundtrip(healthy) == b"ping\n"
    assert roundtrip(connect(address)) == b"ping\n"


def test_a_listener_whose_accept_fails_is_closed_and_the_others_serve_on(
    proactors: list[Proactor], connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    broken, healthy = listen(), listen()
    broken_address = broken.getsockname()
    proactor = Proactor()
    proactor.add_listener(broken, echo)
    proactor.add_listener(healthy, echo)
    proactors.append(proactor.start())
    its_thread = accept_thread(broken)
    wake_blocked(broken)  # accept() on it now fails with EINVAL, and we are not stopping
    wait_for(lambda: broken.fileno() == -1, "the failed listener to be closed")
    its_thread.join(DEADLINE)
    assert not its_thread.is_alive(), "its accept thread ended"
    [record] = [r for r in caplog.records if "accept on" in r.getMessage()]
    assert record.levelno == logging.ERROR
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(broken_address, timeout=DEADLINE)
    assert roundtrip(connect(healthy.getsockname())) == b"ping\n"


# Options: a limit on connections, several listeners.


def test_over_the_limit_a_connection_is_refused_politely_and_the_slot_is_reused(
    serve: Serve, connect: Connect
) -> None:
    def say_full(conn: socket.socket, addr: Address) -> None:
        conn.sendall(b"full, try later\n")

    proactor, address = serve(echo, max_connections=2, on_refused=say_full)
    first, second = connect(address), connect(address)
    roundtrip(first)
    roundtrip(second)
    turned_away = connect(address)
    assert recv_exactly(turned_away, 64) == b"full, try later\n"  # then end of file
    assert (proactor.accepted, proactor.refused) == (2, 1)
    first.close()
    wait_for(lambda: proactor.connection_count == 1, "the first slot to be freed")
    assert roundtrip(connect(address)) == b"ping\n"
    assert (proactor.accepted, proactor.refused, proactor.connection_count) == (3, 1, 2)


def test_over_the_limit_a_connection_is_closed_by_default(serve: Serve, connect: Connect) -> None:
    proactor, address = serve(echo, max_connections=1)
    roundtrip(connect(address))
    assert connect(address).recv(1) == b""
    assert proactor.refused == 1


def test_two_listeners_each_with_its_own_handler(
    proactors: list[Proactor], connect: Connect
) -> None:
    def upper(conn: socket.socket, addr: Address) -> None:
        while data := conn.recv(64):
            conn.sendall(data.upper())

    loud, plain = listen(), listen()
    proactor = Proactor()
    proactor.add_listener(loud, upper)
    proactor.add_listener(plain, echo)
    proactors.append(proactor.start())
    assert roundtrip(connect(loud.getsockname()), b"hi\n") == b"HI\n"
    assert roundtrip(connect(plain.getsockname()), b"hi\n") == b"hi\n"
    assert accept_thread(loud) is not accept_thread(plain)


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_ipv4_and_ipv6_listeners_at_once(proactors: list[Proactor], connect: Connect) -> None:
    def upper(conn: socket.socket, addr: Address) -> None:
        while data := conn.recv(64):
            conn.sendall(data.upper())

    v4, v6 = listen(), listen("::1", socket.AF_INET6)
    proactor = Proactor()
    proactor.add_listener(v4, echo)
    proactor.add_listener(v6, upper)
    proactors.append(proactor.start())
    assert roundtrip(connect(v4.getsockname()), b"v4\n") == b"v4\n"
    client = connect(v6.getsockname())
    assert roundtrip(client, b"v6\n") == b"V6\n"
    assert f"conn-[::1]:{client.getsockname()[1]}" in proactor_threads()


def test_add_listener_refuses_a_socket_that_is_not_listening_and_comes_after_start() -> None:
    with socket.socket() as unbound, pytest.raises(ValueError, match="not listening"):
        Proactor().add_listener(unbound, echo)
    with start_proactor(listen(), echo) as proactor, pytest.raises(RuntimeError):
        proactor.add_listener(listen(), echo)


# One accept policy (section_b/accepting.py), for stage B's accept threads and stage A's loop.


class ScriptedListener(socket.socket):
    """A real listener whose accept() first fails with each errno of `script`, in turn."""

    def __init__(self, script: list[int]) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.listen()
        self.script = script
        self.calls = 0

    def accept(self) -> tuple[socket.socket, Any]:
        self.calls += 1
        if self.script:
            code = self.script.pop(0)
            raise OSError(code, os.strerror(code))
        return super().accept()


def errno_name(code: int) -> str:
    return errno.errorcode[code]


@pytest.mark.parametrize("code", sorted(PEER_GONE_ERRNOS), ids=errno_name)
def test_a_connection_its_peer_gave_up_is_skipped_at_once(
    code: int, caplog: pytest.LogCaptureFixture
) -> None:
    with ScriptedListener([code]) as listener, socket.create_connection(listener.getsockname()):
        accepted = Acceptor(listener, stopping=lambda: False).accept()
        assert accepted is not None, "the next connection"
        accepted[0].close()
    assert listener.calls == 2
    assert caplog.records == [], "no back-off (it always warns the first time), no error"


@pytest.mark.parametrize("code", sorted(CAPACITY_ERRNOS), ids=errno_name)
def test_out_of_capacity_accept_backs_off_warns_once_and_says_when_it_recovers(
    code: int, caplog: pytest.LogCaptureFixture
) -> None:
    with ScriptedListener([code] * 3) as listener, socket.create_connection(listener.getsockname()):
        started = time.monotonic()
        accepted = Acceptor(listener, stopping=lambda: False).accept()
        elapsed = time.monotonic() - started
        assert accepted is not None, "the connection that waited in the listen queue"
        accepted[0].close()
    assert elapsed >= 3 * CAPACITY_BACKOFF, "it slept between attempts"
    warned, recovered = (record.getMessage() for record in caplog.records)  # once a second
    assert "out of capacity" in warned and os.strerror(code) in warned
    assert "accepting again" in recovered


@pytest.mark.parametrize("code", [errno.EBADF, errno.EINVAL, errno.ENOTSOCK], ids=errno_name)
def test_any_other_accept_error_ends_accepting_with_one_error(
    code: int, caplog: pytest.LogCaptureFixture
) -> None:
    with ScriptedListener([code]) as listener, socket.create_connection(listener.getsockname()):
        acceptor = Acceptor(listener, stopping=lambda: False)
        assert acceptor.accept() is None, "not the connection waiting in the listen queue"
    assert listener.calls == 1, "not tried again"
    [record] = caplog.records
    assert record.levelno == logging.ERROR and acceptor.name in record.getMessage()


def test_a_failed_accept_while_stopping_ends_accepting_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for code in (errno.EINVAL, errno.EMFILE):  # shut down by stop(), or even out of capacity
        with ScriptedListener([code]) as listener, socket.create_connection(listener.getsockname()):
            assert Acceptor(listener, stopping=lambda: True).accept() is None
    assert caplog.records == []


def test_no_thread_for_a_connection_is_a_shortage_too(
    serve: Serve,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_start, failures = threading.Thread.start, [RuntimeError("can't start new thread")]

    def start(thread: threading.Thread) -> None:
        if thread.name.startswith("conn-") and failures:
            raise failures.pop()
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    proactor, address = serve(echo)
    assert connect(address).recv(1) == b"", "closed: nothing could serve it"
    assert roundtrip(connect(address)) == b"ping\n"
    assert (proactor.accepted, proactor.refused) == (1, 1)
    assert [r.getMessage() for r in caplog.records if "out of capacity" in r.getMessage()]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
            for alias in node.names} | {node.module for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module}  # fmt: skip


def test_stage_b_imports_nothing_from_stage_a_and_stage_a_accepts_by_its_policy() -> None:
    for path in (ROOT / "section_b").glob("*.py"):
        assert not {m for m in imported_modules(path) if m.split(".")[0] == "section_a"}, path
    stage_a = imported_modules(ROOT / "section_a" / "server.py")
    assert "section_b.accepting" in stage_a and "errno" not in stage_a, "one policy, stage B's"


# Out of descriptors: back off, do not spin, recover.

CHILD_FD_LIMIT = 32
EXHAUSTED_WINDOW = 1.0  # seconds of exhaustion over which the child's CPU time is measured
MAX_CPU_SHARE = 0.3  # CPU seconds per second: a bound for "not spinning", not a benchmark


@pytest.mark.timeout(30)
def test_running_out_of_descriptors_backs_off_quietly_and_recovers(
    tmp_path: Path, connect: Connect
) -> None:
    log = tmp_path / "child.log"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.proactor_child", str(CHILD_FD_LIMIT), str(log)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        port_line = child.stdout.readline()
        assert port_line, "the child exited before reporting its port"
        address = ("127.0.0.1", int(port_line))
        clients = [connect(address) for _ in range(CHILD_FD_LIMIT + 8)]

        def capacity_lines() -> list[str]:
            return [line for line in log.read_text().splitlines() if "out of capacity" in line]

        wait_for(capacity_lines, "the child to run out of descriptors")
        cpu_before, wall_before = cpu_seconds(child.pid), time.monotonic()
        time.sleep(EXHAUSTED_WINDOW)  # the measurement itself: CPU spent while exhausted
        cpu = cpu_seconds(child.pid) - cpu_before
        wall = time.monotonic() - wall_before
        assert cpu < MAX_CPU_SHARE * wall, f"{cpu:.2f}s of CPU in {wall:.2f}s: spinning"

        assert roundtrip(clients[0]) == b"ping\n"  # accepted before the limit: still served
        wait_for(lambda: len(capacity_lines()) >= 2, "a second capacity warning")
        times = [float(line.split()[0]) for line in capacity_lines()]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(gap >= 0.9 for gap in gaps), f"capacity logged more than once a second: {gaps}"

        for client in clients[1:-1]:
            client.close()
        assert roundtrip(clients[-1]) == b"ping\n"  # it waited in the backlog; now served
        assert roundtrip(connect(address)) == b"ping\n"
        assert "accepting again" in log.read_text()
    finally:
        child.stdin.close()
        try:
            returncode = child.wait(timeout=DEADLINE)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
    assert returncode == 0, log.read_text()
