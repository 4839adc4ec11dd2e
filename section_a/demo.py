"""A demo to watch: a chat server and a few scripted clients, with the thread count shown.

`python -m section_a.demo` starts the stage A server as a process of its own on a
free port, then clients join, talk, use commands and leave, one step at a time.
After every step it prints what each client received and the server's thread
count, read by the kernel from /proc (not what the server says about itself), so
you can watch one thread appear per client and go away with it.
`--server section_c.server` runs the same script against stage C.
"""

from __future__ import annotations

import argparse
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 5.0  # seconds to wait for any one thing before the demo fails
BASE_THREADS = {"section_a.server": 2, "section_c.server": 3}
WHAT_BASE_IS = {
    "section_a.server": "main (accepts) + the room's flusher",
    "section_c.server": "main + the proactor's accept thread + the room's flusher",
}


class DemoFailed(Exception):
    pass


def thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise DemoFailed("no thread count in /proc")


class Server:
    def __init__(self, module: str) -> None:
        self.module = module
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--port", "0", "-q"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], DEADLINE)
        line = self.proc.stdout.readline() if ready else ""
        match = re.search(r"listening on (\S+):(\d+)", line)
        if not match:
            self.proc.kill()
            raise DemoFailed(f"the server did not start: {line!r}")
        self.address = (match.group(1), int(match.group(2)))
        self.base = BASE_THREADS.get(module, 2)

    def threads_become(self, expected: int) -> int:
        """Wait (with a deadline) until the server has `expected` threads."""
        deadline = time.monotonic() + DEADLINE
        while (count := thread_count(self.proc.pid)) != expected:
            if time.monotonic() > deadline:
                raise DemoFailed(f"expected {expected} threads, the server has {count}")
            time.sleep(0.01)
        return count


class Client:
    """A scripted chat client: a plain socket, lines in and out."""

    def __init__(self, label: str, server: Server) -> None:
        self.label = label
        self.sock = socket.create_connection(server.address, timeout=DEADLINE)
        self.buffer = b""

    def say(self, text: str) -> None:
        print(f"  {self.label:>6} types: {text}")
        self.sock.sendall(text.encode() + b"\n")

    def sees(self, pattern: str) -> str:
        """Read lines until one matches; print each line as this client sees it."""
        while True:
            while b"\n" not in self.buffer:
                data = self.sock.recv(4096)
                if not data:
                    raise DemoFailed(f"{self.label}: connection closed while waiting for {pattern}")
                self.buffer += data
            raw, _, self.buffer = self.buffer.partition(b"\n")
            line = raw.decode()
            print(f"  {self.label:>6} sees:  {line}")
            if re.search(pattern, line):
                return line

    def close(self) -> None:
        self.sock.close()


def step(title: str) -> None:
    print(f"\n-- {title}")
    time.sleep(0.3)  # pacing for a human watching; every check below waits for its condition


def show_threads(server: Server, clients: int) -> None:
    count = server.threads_become(server.base + clients)
    print(f"  server threads: {count} = {server.base} + {clients} client(s)  (from /proc)")


def run(module: str) -> None:
    print(f"== {module}: one thread per connected client ==")
    server = Server(module)
    host, port = server.address
    print(f"server pid {server.proc.pid} listening on {host}:{port}")
    show_threads(server, 0)
    print(f"  (the base is {WHAT_BASE_IS.get(module, 'the server itself')})")
    try:
        step("alice connects")
        alice = Client("alice", server)
        alice.sees(r"^\* welcome")
        show_threads(server, 1)

        step("bob and carol connect; alice is told")
        bob = Client("bob", server)
        bob.sees(r"^\* welcome")
        carol = Client("carol", server)
        carol.sees(r"^\* welcome")
        alice.sees(r"joined")
        alice.sees(r"joined")
        show_threads(server, 3)

        step("everyone picks a name with /nick")
        for client in (alice, bob, carol):
            client.say(f"/nick {client.label}")
            client.sees(r"^\* you are now")

        step("alice talks to the room (nobody echoes her own line back to her)")
        alice.say("hello, room!")
        bob.sees(r"^alice: hello")
        carol.sees(r"^alice: hello")

        step("bob uses commands: /who, /me and a private /msg")
        bob.say("/who")
        bob.sees(r"^\* here now")
        bob.say("/me waves")
        alice.sees(r"^\* bob waves")
        bob.say("/msg carol psst, only you see this")
        carol.sees(r"^bob \(private\)")
        bob.sees(r"^\* private to carol")

        step("carol leaves with /quit: her thread ends")
        carol.say("/quit")
        carol.sees(r"^\* bye")
        carol.close()
        alice.sees(r"carol left")
        show_threads(server, 2)

        step("bob's connection just drops: his thread ends too")
        bob.close()
        alice.sees(r"bob left")
        show_threads(server, 1)

        step("the server gets SIGINT (Ctrl-C): it tells alice and exits")
        started = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        alice.sees(r"shutting down")
        code = server.proc.wait(DEADLINE)
        print(f"  server exited with code {code} in {time.monotonic() - started:.2f}s")
        if code != 0:
            raise DemoFailed(f"the server exited with {code}")
        alice.close()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    print("\n== demo finished ==")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--server", default="section_a.server", help="server module to run")
    args = parser.parse_args(argv)
    try:
        run(args.server)
    except (DemoFailed, OSError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
