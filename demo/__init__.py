"""A demo to watch: a chat server, scripted clients and the real client, one step at a time.

`python -m demo` starts the stage A server as a process of its own on a
free port; then clients join, talk, use commands and leave. Under each step it
prints, for every client, each line the step made it receive, in the order they
arrived (probes.py says how it knows a step is over without guessing), and
the server's thread count, read from the kernel (/proc), not from the server, so
you can watch one thread appear per client and go away with it.

Three plain sockets (alice, bob, carol) talk as `nc` would. dave is the real
terminal client, ``python -m section_a.client``, in a pseudo-terminal: it has two
threads (keyboard and receiver), and when the server stops it leaves by itself,
with exit status 3. erin is stuck: a socket that never reads, with a tiny receive
window. The server runs with small limits (--sendq, --max-line), so that the
demo can show them at work in a few lines: the others talk on and get every line
while erin's backlog grows until the server cuts her, and a line over the limit
is refused while the next one is served. `--server section_c.server` runs the
same script against stage C. It exits 0 when everything went as expected.

It is a tool, like harness/, bench/ and the grader, so it lives beside the stages,
not in them: it drives the chat from outside, may multiplex (`select` over its
clients) and read /proc (`harness.proc`), and needs of the client only the two
names the client makes public for it (`PROMPT`, `MAX_INCOMING`). No stage imports it.

    story.py       the script: who connects, says what, and what each step must show
    transcript.py  how a step is printed: the actions, then what each client saw
    probes.py      how the demo knows a step is over: a probe, not a pause
    clients.py     a plain socket, and the real client in a pseudo-terminal
    screen.py      just enough of a terminal to read the real client's lines
    processes.py   the server as a process, and thread counts from /proc
"""
