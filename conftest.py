"""Marks every test with its stage, so `make test_a` / `test_b` / `test_c` can pick them.

Doctests take the stage of the package they live in; the chat behaviour tests
take the stage of the server they run against (see tests/conftest.py).
"""

from __future__ import annotations

import pytest

STAGES = {
    "section_a": pytest.mark.stage_a,
    "section_b": pytest.mark.stage_b,
    "section_c": pytest.mark.stage_c,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        top = item.path.parent.name
        if top in STAGES:
            item.add_marker(STAGES[top])
