"""Watch the proactor's threads follow its connections: `python -m section_b.demo`.

An upper-case echo service runs in this process; clients join and leave one at a time, and
after each step the demo prints the thread count as the kernel sees it (/proc/self/status),
once it has settled: 1 main + 1 accept thread (one per listener; here one listener) + 1 per
connection. Then stop() ends them all.
It exits 0 when every count and reply was as expected, 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time

from section_b.proactor import Address, Proactor, start_proactor

SETTLE_DEADLINE = 2.0  # seconds for the thread count to reach what we expect


class DemoFailed(Exception):
    """Something the demo expected did not happen."""


def upper_echo(conn: socket.socket, addr: Address) -> None:
    """The service: send back every byte received, upper-cased, until the peer leaves."""
    while data := conn.recv(4096):
        conn.sendall(data.upper())


def kernel_thread_count() -> int:
    """This process's threads, as the kernel counts them."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise DemoFailed("no Threads: line in /proc/self/status")


def show_threads(proactor: Proactor, accepting: bool = True) -> None:
    """Wait until the kernel's count matches the connections, then print it."""
    expected = 1 + accepting + proactor.connection_count
    deadline = time.monotonic() + SETTLE_DEADLINE
    while (count := kernel_thread_count()) != expected:
        if time.monotonic() > deadline:
            raise DemoFailed(f"{count} threads, expected {expected}")
        time.sleep(0.01)
    accept = " + 1 accept" if accepting else ""
    print(f"   threads: 1 main{accept} + {proactor.connection_count} connections = {count}")


def join(proactor: Proactor, address: Address, clients: dict[int, socket.socket]) -> None:
    """A new client connects, says hello and prints the reply."""
    number = max(clients, default=0) + 1
    client = socket.create_connection(address)
    clients[number] = client
    line = f"hello from client {number}\n".encode()
    client.sendall(line)
    reply = client.recv(4096)  # one short line over loopback arrives in one piece
    if reply != line.upper():
        raise DemoFailed(f"client {number} got {reply!r}")
    print(f"client {number} joins and says {line!r}, gets {reply!r}")
    show_threads(proactor)


def leave(proactor: Proactor, number: int, clients: dict[int, socket.socket]) -> None:
    """Client `number` hangs up; its thread ends when its handler sees end of file."""
    clients.pop(number).close()
    print(f"client {number} leaves")
    deadline = time.monotonic() + SETTLE_DEADLINE
    while proactor.connection_count != len(clients):
        if time.monotonic() > deadline:
            raise DemoFailed(f"{proactor.connection_count} connections, expected {len(clients)}")
        time.sleep(0.01)
    show_threads(proactor)


def run(host: str, port: int) -> None:
    """The whole story, start to stop."""
    listener = socket.create_server((host, port))
    address = listener.getsockname()
    clients: dict[int, socket.socket] = {}
    with start_proactor(listener, upper_echo) as proactor:
        print(f"proactor: upper-case echo on {host}:{address[1]}, a thread per connection")
        show_threads(proactor)
        for _ in range(3):
            join(proactor, address, clients)
        for number in (1, 2):
            leave(proactor, number, clients)
        for _ in range(2):
            join(proactor, address, clients)
        print(f"stop() with {len(clients)} clients still connected")
        started = time.monotonic()
        alive = proactor.stop()
        if alive:
            raise DemoFailed(f"stop() left {alive} running")
        print(f"   every thread ended in {time.monotonic() - started:.3f}s")
        show_threads(proactor, accepting=False)
    for number, client in clients.items():
        if client.recv(4096) != b"":
            raise DemoFailed(f"client {number} was not disconnected")
        client.close()
    print("clients were disconnected; back to the main thread alone")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0: any free")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the proactor's log")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(threadName)s: %(message)s",
    )
    try:
        run(args.host, args.port)
    except (DemoFailed, OSError) as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
