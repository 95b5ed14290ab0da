"""simkit's pytest plugin (entry point ``pytest11``: ``simkit``).

Options:
    ``--simkit-seed N``: the seed the ``simkit_seed`` fixture returns
        (default 0), to rerun a suite under another seed.
    ``--simkit-check-determinism``: every simulation run through
        :func:`simkit.testing.simulate` (or the ``simulate`` fixture) runs
        twice and the test fails if the trace digests differ.

Fixtures:
    ``simkit_seed``: the seed above.
    ``simulate``: :func:`simkit.testing.simulate`.

The plugin imports nothing heavy at load time (no hypothesis, numpy or
torch), so installing simkit costs other test suites nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

__all__ = ["pytest_addoption", "pytest_configure", "simkit_seed", "simulate"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("simkit", "simkit simulations")
    group.addoption(
        "--simkit-seed",
        type=int,
        default=0,
        metavar="N",
        help="seed returned by the simkit_seed fixture (default 0)",
    )
    group.addoption(
        "--simkit-check-determinism",
        action="store_true",
        default=False,
        help="run every simulation twice and fail on a different trace digest",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "simkit: a test that runs simkit simulations")


@pytest.fixture
def simkit_seed(request: pytest.FixtureRequest) -> int:
    """The seed given with ``--simkit-seed`` (0 by default)."""
    return int(request.config.getoption("--simkit-seed"))


@pytest.fixture
def simulate(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """:func:`simkit.testing.simulate`, rerunning when determinism is checked."""
    from simkit.testing._run import check_determinism_enabled, set_check_determinism
    from simkit.testing._run import simulate as run

    before = check_determinism_enabled()
    set_check_determinism(bool(request.config.getoption("--simkit-check-determinism")))
    try:
        yield run
    finally:
        set_check_determinism(before)
