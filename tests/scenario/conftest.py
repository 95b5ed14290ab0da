"""Fixtures for the scenario tests: a small scenario run by the fake protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

FAKE = "tests.scenario.fakeproto:PLUGIN"

SMALL: dict[str, Any] = {
    "name": "small",
    "rounds": 3,
    "protocol": {"name": FAKE},
    "clients": {"count": 5},
    "data": {"alpha": 0.5, "beta": 0.5, "samples": 60, "dim": 10, "classes": 3},
}

SMALL_TOML = f"""\
# a small scenario for the tests
name = "small"
rounds = 3

[protocol]
name = "{FAKE}"

[clients]
count = 5

[data]
alpha = 0.5
beta = 0.5
samples = 60
dim = 10
classes = 3
"""


@pytest.fixture
def small() -> dict[str, Any]:
    """The small scenario as a mapping (a fresh copy)."""
    import copy

    return copy.deepcopy(SMALL)


@pytest.fixture
def small_file(tmp_path: Path) -> Path:
    """The small scenario as a TOML file."""
    path = tmp_path / "small.toml"
    path.write_text(SMALL_TOML, encoding="utf-8")
    return path
