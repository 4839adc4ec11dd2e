"""A benchmark run on disk: PREFIX.json, PREFIX.md and PREFIX.png, and reading one back.

PREFIX.json holds every run's raw numbers (which `load` reads back, to render the
tables again), PREFIX.md the tables (tables.py), PREFIX.png the plot (plot.py). Each
file is written atomically: a .tmp, then renamed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.measure_churn import ChurnRun
from bench.measure_fanout import FanOut
from bench.measure_latency import Steady
from bench.report import Record, Results

if TYPE_CHECKING:
    from bench.plan import Plan


KINDS: tuple[tuple[str, type[Record]], ...] = (
    ("fanout", FanOut),
    ("latency", Steady),
    ("churn", ChurnRun),
)


def load(path: Path) -> tuple[dict[str, Any], dict[str, str], Results]:
    """The plan (as a dict), machine and runs of a saved PREFIX.json, to render again."""
    raw = json.loads(path.read_text())
    results: Results = {}
    for m, by in raw["runs"].items():
        kind = next(cls for prefix, cls in KINDS if m.startswith(prefix))
        results[m] = {
            k: [x if isinstance(x, str) else _record(kind, x) for x in rs] for k, rs in by.items()
        }
    return raw["plan"], raw["machine"], results


def _record(kind: type[Record], fields: dict[str, Any]) -> Record:
    # In a float field, null stood for an infinity (a stall) or NaN; inf renders as stalled.
    # A field whose default is NaN ("not measured") gets NaN back.
    floats = {
        f.name: math.nan if isinstance(f.default, float) and math.isnan(f.default) else math.inf
        for f in dataclasses.fields(kind)
        if f.type == "float"
    }
    values: dict[str, Any] = {
        k: floats[k] if v is None and k in floats else v for k, v in fields.items()
    }
    return kind(**values)


def plain(value: Any) -> Any:
    """JSON-ready: infinities and NaN become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def save(out: Path, text: str, plan: Plan, info: dict[str, str], results: Results) -> list[Path]:
    """Write PREFIX.md, PREFIX.json and PREFIX.png, each atomically (a .tmp, then renamed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = {
        "machine": info,
        "plan": dataclasses.asdict(plan),
        "runs": {
            m: {k: [x if isinstance(x, str) else dataclasses.asdict(x) for x in rs]
                for k, rs in by.items()}
            for m, by in results.items()
        },
    }  # fmt: skip
    written = []
    for suffix, content in ((".md", text), (".json", json.dumps(plain(raw), indent=1))):
        path = out.with_suffix(suffix)
        tmp = path.with_suffix(suffix + ".tmp")
        tmp.write_text(content if content.endswith("\n") else content + "\n")
        tmp.replace(path)
        written.append(path)
    try:
        from bench.plot import plot
    except ImportError as exc:  # matplotlib is a dev requirement only
        print(f"bench: no plot ({exc}); pip install -r requirements-dev.txt", file=sys.stderr)
        return written
    png = out.with_suffix(".png")
    tmp = png.with_suffix(".png.tmp")
    plot(tmp, plan, info, results)
    tmp.replace(png)
    return [*written, png]
