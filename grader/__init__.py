"""Grade any chat server (and client) of this assignment: named checks, a report card.

    python -m grader --server './server {port}' [--client './client {host} {port}']

    cli.py          the command line; the order of a run; every program stopped at the end
    scheme.py       which checks count, and their points (scheme.toml by default)
    subject.py      the server under test, started fresh for each check
    processes.py    programs in process groups of their own, dead when the grader dies
    probes.py       the grader's test clients: token lines out, bytes in, one selector loop
    relaying.py     "was this line relayed", and what arrived instead
    checks.py       what a check is; a deadline and a verdict with evidence for each
    checks_server.py, checks_load.py, checks_client.py   the checks themselves
    report.py       the card: terminal, JSON, Markdown, side by side
    isolate.py      --isolate: a network namespace of its own

Modelled on CS50's check50 (black-box checks with reasons a student can act on,
results as JSON, points from a scheme) and Autobahn|Testsuite (any implementation
against one suite, side by side). It knows nothing of our protocol: a line counts as
relayed when its unique token arrives whole, whatever the server wraps it in. The
grader is a tool, not the product, so it multiplexes its sockets with selectors.
"""
