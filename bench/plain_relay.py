"""The plain relay: the least a Python relay with a thread per client can do, as a yardstick.

Not a chat server. It does the least a Python relay can do and still be checked by
the load generators: a thread per client, reads of up to 64 KiB (as the chat servers
read), and for each read one `bytes.replace` (C speed) to put ``NAME: `` before every
line, then one blocking `sendall` of the whole block to every other client. No
per-line Python work, no backlog, no flow control, no limits: a client that stops
reading stops its senders.

It is the chat servers' design with everything a chat server adds taken away (the
protocol, the room's rules, the outboxes), so the chat servers' figures divided by its
figures say what those cost. bench/c_relay.c does the same on the wire without Python.

It speaks what the generators need: a welcome line, ``NAME: text``, and an error
line for any command (the generators sync with one), and prints `listening on
HOST:PORT`. It announces no joins or leaves: in a churn the chat servers send
those to everyone, the relay does not, so it shows what the generator can do.
With ``--notices`` it sends them too, one ``sendall`` of each to every other client:
what the notices themselves cost, apart from everything else a chat server does.
Run it: python -m bench.plain_relay --port 0 [--notices]
"""

from __future__ import annotations

import argparse
import itertools
import socket
import threading

RECV_SIZE = 64 * 1024  # bytes read at once, as the chat servers (section_a/reader.py)
STACK_SIZE = 256 * 1024  # bytes of stack per client thread


class Peer:
    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name
        self.prefix = name.encode() + b": "
        self.lock = threading.Lock()  # one sendall at a time: blocks never interleave

    def send(self, data: bytes) -> None:
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # gone: its own thread sees it in recv() and leaves


class PlainRelay:
    def __init__(self, notices: bool = False) -> None:
        self.notices = notices  # tell the others of each join and leave
        self.peers: tuple[Peer, ...] = ()
        self.lock = threading.Lock()
        self.numbers = itertools.count(1)

    def serve(self, sock: socket.socket) -> None:
        me = Peer(sock, f"guest-{next(self.numbers)}")
        me.send(f"* welcome, {me.name}. here now: a relay.\n".encode())
        with self.lock:
            self.peers += (me,)
        if self.notices:
            self.forward(me, b"* " + me.name.encode() + b" joined")
        pending = b""
        try:
            while data := sock.recv(RECV_SIZE):
                data = pending + data if pending else data
                end = data.rfind(b"\n") + 1
                block, pending = data[:end], data[end:]
                if block.startswith(b"/") or b"\n/" in block:
                    block = self.commands(me, block)
                if block:
                    self.forward(me, me.prefix + block[:-1].replace(b"\n", b"\n" + me.prefix))
        except OSError:
            pass
        finally:
            with self.lock:
                self.peers = tuple(p for p in self.peers if p is not me)
            if self.notices:
                self.forward(me, b"* " + me.name.encode() + b" left")
            sock.close()

    def commands(self, me: Peer, block: bytes) -> bytes:
        # The slow path, for the rare block that holds a command: answer it, keep the rest.
        kept = []
        for line in block.splitlines(keepends=True):
            if line.startswith(b"/"):
                me.send(b"* error: unknown command " + line.split()[0] + b"\n")
            else:
                kept.append(line)
        return b"".join(kept)

    def forward(self, me: Peer, lines: bytes) -> None:
        out = lines + b"\n"
        for peer in self.peers:
            if peer is not me:
                peer.send(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="The plain relay: a thread per client, to measure the chat servers against.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("-q", "--quiet", action="store_true", help="accepted for parity")
    parser.add_argument(
        "--notices", action="store_true", help="tell the others of each join and leave"
    )
    args = parser.parse_args()
    threading.stack_size(STACK_SIZE)
    relay = PlainRelay(notices=args.notices)
    listener = socket.create_server((args.host, args.port), backlog=socket.SOMAXCONN)
    host, port = listener.getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    while True:  # until SIGTERM or SIGINT ends the process: nothing to clean up
        conn, _ = listener.accept()
        # Lines go out at once (as asyncio's transports do): Nagle's algorithm would hold a
        # small write until the previous one is acknowledged, up to a delayed ACK's 40 ms.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=relay.serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
