"""Hold a mutmut run to docs/mutation.md: every mutant not killed is listed there as equivalent.

`make mutate` runs this after `mutmut run`, from the repository's root:

    python .ci/check_mutants.py build/mutate docs/mutation.md

It prints the count of each outcome and the score, then every mutant not killed, and fails
(exit 1) if one of them is not in the table of equivalent mutants, or if a row of the table no
longer matches a surviving mutant (a test kills it now, or its line changed): either way the
note has gone stale and a person must look again.

A row names a mutant by its function and by the line it changes, before and after, not by
mutmut's name for it (`section_a.framing.x__fits__mutmut_5`): that number is the mutant's
place among its function's mutants, so any edit of the function renumbers them, and a list of
numbers would go on naming mutants nobody had looked at. A line's comment is not part of it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

KILLED = {"killed", "timeout"}  # a mutant that hangs the tests is caught too, by mutmut's timer
# A row of the table: | `function` | `line` | `mutant's line` | why |   (a | in code is \|)
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*`(.+?)`\s*\|\s*`(.+?)`\s*\|(.*)\|\s*$")

Key = tuple[str, str, str]  # function, its line, the mutant's line


def mutmut(run_dir: Path, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=run_dir,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def function_of(mutant: str) -> str:
    """`section_a.framing.xǁLineFramerǁfeed__mutmut_39` -> `framing.LineFramer.feed`."""
    module, _, mangled = re.sub(r"__mutmut_\d+$", "", mutant).rpartition(".")
    if mangled.startswith("xǁ"):  # a method: xǁCLASSǁNAME
        name = ".".join(mangled[2:].split("ǁ"))
    else:  # a function: x_NAME
        name = mangled.removeprefix("x_")
    return f"{module.rpartition('.')[2]}.{name}"


def code(lines: list[str]) -> str:
    # Two spaces then #: where the formatter puts a comment after code.
    return " ".join(line.split("  #", 1)[0].strip() for line in lines)


def key_of(mutant: str, diff: str) -> Key:
    body = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    before = [line[1:] for line in body if line.startswith("-")]
    after = [line[1:] for line in body if line.startswith("+")]
    return function_of(mutant), code(before), code(after)


def listed(note: Path) -> dict[Key, str]:
    """The equivalent mutants docs/mutation.md lists, each with why it is equivalent."""
    rows = {}
    for line in note.read_text().splitlines():
        if match := ROW.match(line):
            function, before, after, why = (g.replace(r"\|", "|").strip() for g in match.groups())
            rows[(function, before, after)] = why
    return rows


def main() -> int:
    run_dir, note = Path(sys.argv[1]), Path(sys.argv[2])
    status = {}
    for line in mutmut(run_dir, "results", "--all", "true").splitlines():
        name, sep, outcome = line.strip().rpartition(": ")
        if sep:
            status[name] = outcome
    if not status:
        print(f"no mutants in {run_dir}: did `mutmut run` run there?")
        return 1
    counts = Counter(status.values())
    for outcome, count in sorted(counts.items()):
        print(f"  {outcome} {count}")
    killed = sum(counts[outcome] for outcome in KILLED)
    print(f"  {len(status)} mutants, {100 * killed / len(status):.1f} % killed")

    equivalent = listed(note)
    matched: set[Key] = set()
    unexplained = 0
    print(f"Not killed (each must be an equivalent mutant in {note}):")
    for name, outcome in status.items():
        if outcome in KILLED:
            continue
        diff = mutmut(run_dir, "show", name)
        key = key_of(name, diff)
        if key in equivalent:
            matched.add(key)
            print(f"  {outcome}, equivalent: {name} ({key[0]}: {key[2]})")
        else:
            unexplained += 1
            print(f"  {outcome}, NOT LISTED as equivalent: {name}\n{diff}")
    stale = [key for key in equivalent if key not in matched]
    for function, before, after in stale:
        print(f"  listed, but no such mutant survives: {function}: `{before}` -> `{after}`")
    if unexplained or stale:
        print(
            f"mutation check failed: {unexplained} not killed and not listed, {len(stale)} "
            f"listed and not found. Kill each new survivor with a test, or add it to the table "
            f"in {note} with why it is equivalent; remove a row whose mutant is gone."
        )
        return 1
    print(f"every mutant not killed is an equivalent one listed in {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
