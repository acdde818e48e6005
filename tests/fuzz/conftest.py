"""The fuzz tests' time limit grows with their number of examples: a --slow run draws fifty times as many."""

from __future__ import annotations

import pytest

from tests.fuzz import SCALE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name == "fuzz":
            item.add_marker(pytest.mark.timeout(120 * SCALE))
