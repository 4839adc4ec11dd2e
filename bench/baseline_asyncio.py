"""The baseline: a chat relay written the way most Python users would write it, on asyncio.

Each client is a coroutine: `readline()`, then `write()` the line to every other
client and `drain()`. It speaks just enough of the chat protocol for the load
generator (a welcome line, `NAME: text`, `/who`, and an error line for any other
command, which the generator's sync relies on), and prints `listening on HOST:PORT`
like the real servers. It is for the benchmark only; the product uses no asyncio.

Its honest weakness is kept on purpose: `drain()` waits for the recipient's socket,
so one client that never reads stops every sender that reaches it in the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal


class Relay:
    def __init__(self) -> None:
        self.writers: dict[asyncio.StreamWriter, str] = {}
        self.numbers = itertools.count(1)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name = f"guest-{next(self.numbers)}"
        others = ", ".join(self.writers.values()) or "nobody else"
        writer.write(f"* welcome, {name}. here now: {others}.\n".encode())
        self.writers[writer] = name
        try:
            while line := await reader.readline():
                text = line.rstrip(b"\r\n")
                if text.startswith(b"/"):
                    writer.write(self.reply(text))
                    await writer.drain()
                    continue
                out = name.encode() + b": " + text + b"\n"
                for other in list(self.writers):
                    if other is not writer:
                        other.write(out)
                        try:
                            await other.drain()
                        except ConnectionError:
                            pass  # that recipient is gone; its own coroutine removes it
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            # Shutdown cancels every client still here (one stuck in drain(), say). End
            # quietly: Python 3.11's streams log a cancelled handler with a traceback.
            pass
        finally:
            del self.writers[writer]
            writer.close()

    def reply(self, command: bytes) -> bytes:
        if command == b"/who":
            names = ", ".join(self.writers.values())
            return f"* here now ({len(self.writers)}): {names}\n".encode()
        word = command.split(b" ", 1)[0].decode(errors="replace")
        return f"* error: unknown command {word}\n".encode()


async def main(host: str, port: int) -> None:
    relay = Relay()
    server = await asyncio.start_server(relay.serve, host, port, backlog=4096)
    sockname = server.sockets[0].getsockname()
    print(f"listening on {sockname[0]}:{sockname[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("-q", "--quiet", action="store_true", help="accepted for parity")
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
