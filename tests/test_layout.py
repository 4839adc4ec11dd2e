"""The layout promises of the repository, checked on its source (no server runs).

An instructor diffs stage A's server against stage C's (`make diff`) to see what the
proactor changed, so that diff must stay small and about accepting and threads only;
a student reads one module at a time, so none grows past what one sitting holds.
A stage's folder holds what the assignment asks for and nothing else: the tools
(the demo, the harness, the bench, the grader, the tests) sit beside the stages, and
the arrows point one way: a tool may import a stage, a stage never imports a tool.
"""

from __future__ import annotations

import ast
import difflib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_DIFF = 70  # changed lines of code between the two servers
MAX_MODULE = 300  # lines in any module of the product or the bench
STAGES = ("section_a", "section_b", "section_c")
TOOLS = ("demo", "harness", "bench", "grader", "tests")  # top-level packages beside the stages
PACKAGES = (*STAGES, "bench", "harness", "demo", "grader")

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
    for shared in ("def serve(", "pthread_sigmask", "sigwait"):
        assert not any(shared in line for line in diff), f"{shared} differs:\n" + "\n".join(diff)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_longer_than_one_sitting(package: str) -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / package).rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE
    }
    assert not long, f"modules over {MAX_MODULE} lines: {long}"


def imports(path: Path, for_typing_too: bool = False) -> set[str]:
    """The modules `path` imports when it runs (and, if asked, for the type checker alone)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if not for_typing_too
        and isinstance(block, ast.If)
        and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)  # and `from bench import report` imports bench.report:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("stage", STAGES)
def test_no_module_of_a_stage_imports_a_tool(stage: str) -> None:
    modules = sorted((ROOT / stage).rglob("*.py"))
    assert modules, f"no modules under {stage}/"
    wrong = {
        str(path.relative_to(ROOT)): sorted(tools)
        for path in modules
        if (tools := {m for m in imports(path, for_typing_too=True) if m.split(".")[0] in TOOLS})
    }
    assert not wrong, f"a stage imports a tool: {wrong}"


def test_the_tools_import_nothing_from_the_tests() -> None:
    for package in ("bench", "harness", "demo"):
        for path in (ROOT / package).rglob("*.py"):
            wrong = {m for m in imports(path) if m == "tests" or m.startswith("tests.")}
            assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


def test_the_bench_has_no_import_cycle() -> None:
    graph = {
        f"bench.{path.stem}": {m for m in imports(path) if m.startswith("bench.")}
        for path in (ROOT / "bench").glob("*.py")
    }

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for module in graph.get(start, set()) - seen:
            seen.add(module)
            if module == goal or reaches(module, goal, seen):
                return True
        return False

    cycles = sorted(module for module in graph if reaches(module, module, set()))
    assert not cycles, f"modules on an import cycle: {cycles}"
