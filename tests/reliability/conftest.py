"""Reliability suite set-up: a place to collect the figures each test measured, printed at the end."""

from __future__ import annotations

import json
from typing import Any

import pytest

_FIGURES: list[tuple[str, dict[str, Any]]] = []


@pytest.fixture
def figures(request):
    """``figures(**values)`` records what a test measured (faults injected, re-sent batches...)."""

    def record(**values: Any) -> None:
        _FIGURES.append((request.node.name, values))

    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    for name, values in _FIGURES:
        terminalreporter.write_line(f"{name}: {json.dumps(values, sort_keys=True, default=str)}")
