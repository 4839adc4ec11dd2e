"""The report card: results are data first (JSON), then a page (terminal, Markdown).

A `Card` is one program's results: a server's, or a client's against the grader's
own server. On the terminal each check is a line (its mark, points, evidence);
several cards end with one table side by side, as Autobahn|Testsuite's index puts
implementations next to each other. The JSON of one card is

    {"server": CMD, "client": CMD, "checks": [{"name", "passed", "required",
     "points", "evidence"}], "score", "max_score"}

with "passed" true, false, or null when the check could not run; several cards
are a list of these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from grader.checks import CHECKS, Result

MARKS = {True: "pass", False: "FAIL", None: "n/a "}


@dataclass
class Card:
    server: str | None
    client: str | None
    results: list[Result] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"server: {self.server}" if self.server else f"client: {self.client}"

    @property
    def score(self) -> float:
        return sum(r.points for r in self.results if r.passed)

    @property
    def max_score(self) -> float:
        return sum(r.points for r in self.results)

    @property
    def required_failed(self) -> list[str]:
        return [r.name for r in self.results if r.required and not r.passed]

    def to_json(self) -> dict[str, object]:
        checks = [
            {
                "name": r.name,
                "passed": r.passed,
                "required": r.required,
                "points": r.points,
                "evidence": r.evidence,
            }
            for r in self.results
        ]
        return {
            "server": self.server,
            "client": self.client,
            "checks": checks,
            "score": self.score,
            "max_score": self.max_score,
        }


def number(points: float) -> str:
    """3.0 as '3', 2.5 as '2.5'."""
    return f"{points:g}"


def result_line(result: Result) -> str:
    earned = result.points if result.passed else 0
    optional = "" if result.required else " (not required)"
    points = f"{number(earned):>3}/{number(result.points):<3}"
    return f"  {MARKS[result.passed]}  {result.name:<30} {points} {result.evidence}{optional}"


def summary(card: Card) -> str:
    failed = card.required_failed
    verdict = (
        "every required check passed"
        if not failed
        else f"required, not passed: {', '.join(failed)}"
    )
    return f"  score {number(card.score)}/{number(card.max_score)}: {verdict}"


def terminal(card: Card) -> str:
    return "\n".join([card.title, *map(result_line, card.results), summary(card)])


def side_by_side(cards: list[Card]) -> str:
    """One row per check, one column per card: 'pass', 'FAIL' or 'n/a', then the scores."""
    names = list(dict.fromkeys(r.name for card in cards for r in card.results))  # card order
    heads = [f"#{i + 1}" for i in range(len(cards))]
    rows = [["check", *heads]]
    for name in names:
        row = [name]
        for card in cards:
            found = [r for r in card.results if r.name == name]
            row.append(MARKS[found[0].passed].strip() if found else "")
        rows.append(row)
    rows.append(["score", *(f"{number(c.score)}/{number(c.max_score)}" for c in cards)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    legend = [f"  {head}: {card.title}" for head, card in zip(heads, cards, strict=True)]
    return "\n".join([*lines, *legend])


def markdown(cards: list[Card]) -> str:
    parts = []
    for card in cards:
        parts += [
            f"## {card.title}",
            "",
            "| check | what it proves | result | points | evidence |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in card.results:
            earned = r.points if r.passed else 0
            required = "" if r.required else " (not required)"
            evidence = r.evidence.replace("|", "\\|")
            parts.append(
                f"| `{r.name}` | {_rationale(r.name)} | {MARKS[r.passed].strip()} | "
                f"{number(earned)}/{number(r.points)} | {evidence}{required} |"
            )
        parts += ["", f"**Score: {number(card.score)}/{number(card.max_score)}**", ""]
    if len(cards) > 1:
        parts += ["## Side by side", "", "```", side_by_side(cards), "```", ""]
    return "\n".join(parts)


def _rationale(name: str) -> str:
    return CHECKS[name].rationale.replace("|", "\\|") if name in CHECKS else ""


def write_json(cards: list[Card], path: Path) -> None:
    data: object = cards[0].to_json() if len(cards) == 1 else [c.to_json() for c in cards]
    path.write_text(json.dumps(data, indent=2) + "\n")
