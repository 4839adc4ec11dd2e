"""The scheme: which checks count and for how many points, from a small TOML file.

As grade50 turns check50's results into a grade, the scheme turns verdicts into
points; the instructor owns it. The default is `scheme.toml` beside this module
(read relative to this file, so it travels with the package); `--scheme FILE`
gives a course's own. Every entry names a known check:

    >>> scheme = parse('[checks]\\nrelays = { points = 3, required = true }', {"relays"})
    >>> scheme["relays"]
    Weight(points=3.0, required=True)
    >>> parse('[checks]\\nrelay = { points = 3 }', {"relays"})
    Traceback (most recent call last):
    ...
    grader.scheme.SchemeError: unknown check 'relay' (known: relays)
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

DEFAULT = Path(__file__).with_name("scheme.toml")


class SchemeError(ValueError):
    """A scheme that cannot be used; the message says why, in one line."""


@dataclass(frozen=True)
class Weight:
    points: float
    required: bool


def load(path: Path | None, known: Collection[str]) -> dict[str, Weight]:
    """The scheme in `path` (the default when None), in the file's order."""
    path = path or DEFAULT
    try:
        text = path.read_text()
    except OSError as exc:
        raise SchemeError(f"cannot read the scheme {path}: {exc.strerror or exc}") from None
    return parse(text, known, str(path))


def parse(text: str, known: Collection[str], where: str = "scheme") -> dict[str, Weight]:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemeError(f"{where} is not valid TOML: {exc}") from None
    checks = table.get("checks")
    if not isinstance(checks, dict) or not checks:
        raise SchemeError(f"{where} has no [checks] table")
    scheme = {}
    for name, entry in checks.items():
        if name not in known:
            raise SchemeError(f"unknown check {name!r} (known: {', '.join(sorted(known))})")
        if not isinstance(entry, dict):
            raise SchemeError(f"{name}: expected {{ points = N, required = true }}")
        points, required = entry.get("points", 1), entry.get("required", True)
        if isinstance(points, bool) or not isinstance(points, int | float) or points < 0:
            raise SchemeError(f"{name}: points must be a number, 0 or more, not {points!r}")
        if not isinstance(required, bool):
            raise SchemeError(f"{name}: required must be true or false, not {required!r}")
        scheme[name] = Weight(float(points), required)
    return scheme
