"""The layout promises of the repository, checked on its source (no server runs).

An instructor diffs stage A's server against stage C's (`make diff`) to see what the
proactor changed, so that diff must stay small and about accepting and threads only;
a student reads one module at a time, so none grows past what one sitting holds.
"""

from __future__ import annotations

import ast
import difflib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_DIFF = 70  # changed lines of code between the two servers
MAX_MODULE = 300  # lines in any module of the product or the bench
PACKAGES = ("section_a", "section_b", "section_c", "bench")

pytestmark = pytest.mark.timeout(30)


def code_lines(path: Path) -> list[str]:
    """The lines of `path` that are code: no docstrings, comments or blank lines."""
    source = path.read_text()
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    kept = []
    for number, line in enumerate(source.splitlines(), 1):
        text = line.split("  # ")[0].rstrip()
        if number not in docstrings and text.strip() and not text.lstrip().startswith("#"):
            kept.append(text)
    return kept


def changed(before: list[str], after: list[str]) -> list[str]:
    diff = difflib.unified_diff(before, after, lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_code_lines_leave_out_docstrings_and_comments(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""Doc."""\n\n# a comment\nx = 1  # why\n\n\ndef f():\n    """Doc."""\n')
    assert code_lines(module) == ["x = 1", "def f():"]


def test_the_proactor_is_all_that_the_two_servers_differ_by() -> None:
    stage_a = code_lines(ROOT / "section_a" / "server.py")
    stage_c = code_lines(ROOT / "section_c" / "server.py")
    diff = changed(stage_a, stage_c)
    assert 0 < len(diff) <= MAX_DIFF, "\n".join(diff)
    # One way of starting and stopping, shared: only who accepts and owns threads differs.
    for shared in ("def serve(", "def stop(", "SignalStop", "sigwait"):
        assert not any(shared in line for line in diff), f"{shared} differs:\n" + "\n".join(diff)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_longer_than_one_sitting(package: str) -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / package).rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE
    }
    assert not long, f"modules over {MAX_MODULE} lines: {long}"
