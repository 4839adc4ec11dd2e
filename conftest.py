"""Marks every test with its stage, so `make test_a` / `test_b` / `test_c` can pick them.

Doctests take the stage of the package they live in; the chat behaviour tests
take the stage of the server they run against (see tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
STAGES = {
    "section_a": pytest.mark.stage_a,
    "section_b": pytest.mark.stage_b,
    "section_c": pytest.mark.stage_c,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.resolve().relative_to(ROOT).parts
        top = parts[0] if len(parts) > 1 else ""
        if top in STAGES:
            item.add_marker(STAGES[top])
