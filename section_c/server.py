"""Stage C: the chat server of stage A, with its accept loop replaced by the proactor.

    main thread            proactor's accept thread       one thread per client
    -----------            ------------------------       ---------------------
    start_proactor() -->   accept() --conn--> Thread(serve_client) --> recv() -> protocol
    sigwait()                                                             -> room -> outboxes
       |  SIGINT/SIGTERM: tell the room to close (wakes every recv), then
       |  stop_proactor(): closes the listener, wakes and joins every thread; exit 0

Everything a client sees is stage A's: the same protocol, room, outboxes and
session, imported from section_a. What changed is who accepts and who owns the
threads: stage A's main thread ran the accept loop and kept the client threads;
here `start_proactor(listener, handler)` does both, and the main thread only
waits for the signal to stop (with sigwait: it has nothing else to do). With n
clients the process has n + 3 threads: the main thread, the proactor's accept
thread, the n client threads, and the room's flusher.

Run it: python -m section_c.server --port 9034   (then: nc 127.0.0.1 9034)
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import threading

from section_a import cli
from section_a.session import serve_client
from section_b import start_proactor, stop_proactor

logger = logging.getLogger("chat")


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args("Stage C chat server: stage A's chat on the stage B proactor.", argv)
    with cli.signals_blocked():  # in every thread, this one too: it waits for them below
        return serve(args)


def serve(args: argparse.Namespace) -> int:
    cli.raise_fd_limit()
    cli.prepare_threads(one_cpu=not args.any_cpu)
    try:
        listener = cli.listen(args.host, args.port)
    except OSError as exc:
        return cli.fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    room = cli.make_room(args)  # starts the room's flusher thread
    # The proactor accepts, and starts a thread running serve_client(room, conn, addr) for
    # each connection; when that returns, the proactor closes the connection.
    proactor = start_proactor(listener, functools.partial(serve_client, room), name="chat")
    cli.announce(listener)
    cli.wait_for_stop_signal()
    room.close()
    stuck = stop_proactor(proactor, cli.STOP_TIMEOUT)
    room.stop_flusher(cli.STOP_TIMEOUT)
    if stuck:
        logger.error("threads still running at exit: %s", ", ".join(stuck))
        os._exit(1)  # the proactor's threads are not daemons: do not wait for them forever
    logger.info("stopped; %d thread left", threading.active_count())
    return 0


if __name__ == "__main__":
    sys.exit(main())
