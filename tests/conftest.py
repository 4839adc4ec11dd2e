"""Fixtures: the chat servers of stage A and stage C as processes, side by side.

Every chat behaviour test takes `start_server` (or `server`) and so runs once per
server module in SERVERS: the two stages are held to the same behaviour.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import settings

from tests.pty_client import PtyClient, Spawn
from tests.servers import LineClient, ServerProcess

# Each server carries the mark of its stage, so `-m stage_c` selects every chat test run on C.
SERVERS = [
    pytest.param("section_a.server", id="section_a", marks=pytest.mark.stage_a),
    pytest.param("section_c.server", id="section_c", marks=pytest.mark.stage_c),
]

StartServer = Callable[..., ServerProcess]

# Property tests run the same examples on every run, here and in CI ("a fuzz test of the
# framer and of the sanitiser with a fixed seed": docs/reliability.md), with no example
# database to carry between runs. The deadline is for a loaded 2-core machine: an example
# takes well under a millisecond here, so one that takes a second is a bug (say,
# quadratic), not the load.
settings.register_profile(
    "fixed-seed", derandomize=True, database=None, deadline=timedelta(seconds=1)
)
settings.load_profile("fixed-seed")

# No silent skips in CI. A test may skip only for what the machine it runs on lacks (IPv6,
# a second CPU), with a reason that starts "this machine", which -ra lists at the end. Under
# CI any other skip fails: it is a test that stopped testing for a reason CI should not have.
MACHINE_SKIP = "Skipped: this machine"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        if not reason.startswith(MACHINE_SKIP):
            report.outcome = "failed"
            report.longrepr = f"skipped under CI, for a reason CI must not have: {reason}"
    return report


@pytest.fixture(params=SERVERS)
def server_module(request: pytest.FixtureRequest) -> str:
    module: str = request.param
    return module


@pytest.fixture
def start_server(server_module: str, tmp_path: Path) -> Iterator[StartServer]:
    """Start the server under test with extra options; every one is stopped at the end."""
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess(server_module, list(args), tmp_path)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server: StartServer) -> ServerProcess:
    return start_server()


@pytest.fixture
def connect(server: ServerProcess) -> Iterator[Callable[..., LineClient]]:
    """Open line clients to `server`; each is closed at the end."""
    clients: list[LineClient] = []

    def open_client(**kwargs: object) -> LineClient:
        client = LineClient(server.address, **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start clients in ptys (transcripts in tmp_path); each is killed if still running."""
    clients: list[PtyClient] = []

    def start(argv: list[str], env: dict[str, str] | None = None) -> PtyClient:
        client = PtyClient(argv, tmp_path / f"pty-{len(clients)}.log", env)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()
