"""Small programs, each with exactly one fault, that the grader's checks must catch.

Each is the smallest chat relay (or client) with one mistake that submissions of
this assignment commonly make; `tests/test_grader_faults.py` grades each with the
check its fault targets and finds that check failed, with evidence. Four are in C
with pthreads, as most submissions are, built with `cc` into the test's tmp_path.
They are run, never imported: each starts only under `if __name__ == "__main__"`.

The helpers here run the grader as a real process, as an instructor would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FAULTS = Path(__file__).resolve().parent
ROOT = FAULTS.parent.parent
PYTHON = sys.executable
NO_CC = "Skipped: this machine has no C compiler (cc)"


def grade(*args: str, tmp_path: Path, timeout: float = 60) -> tuple[int, Any, str]:
    """Run `python -m grader ARGS --json FILE`: its exit status, its JSON, its output."""
    out = tmp_path / f"card-{len(list(tmp_path.glob('card-*')))}.json"
    done = subprocess.run(
        [PYTHON, "-m", "grader", *args, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in done.stderr, done.stderr
    card = json.loads(out.read_text()) if out.exists() else {}
    return done.returncode, card, done.stdout + done.stderr


def result(card: dict[str, Any], name: str) -> dict[str, Any]:
    """The result of check `name` in a card."""
    found = [check for check in card["checks"] if check["name"] == name]
    assert len(found) == 1, card
    check: dict[str, Any] = found[0]
    return check


def python_fault(name: str) -> str:
    """The server command for the Python fault `name`, {port} last."""
    return f"{PYTHON} {FAULTS / name}.py {{port}}"


def build(name: str, into: Path) -> Path:
    """`cc` the C fault `name` into `into`; skips the test where there is no cc."""
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip(NO_CC)
    binary = into / name
    if not binary.exists():
        subprocess.run(
            [cc, "-O2", "-Wall", "-pthread", "-o", str(binary), str(FAULTS / f"{name}.c")],
            check=True,
            timeout=60,
        )
    return binary
