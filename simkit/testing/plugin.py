"""simkit's pytest plugin (entry point ``pytest11``: ``simkit``).

Options:
    ``--simkit-seed N``: the seed the ``simkit_seed`` fixture returns
        (default 0), to rerun a suite under another seed.
    ``--simkit-check-determinism`` (or the ini option
        ``simkit_check_determinism = true``): every run made through the kit
        (:func:`simkit.testing.simulate`, :func:`simkit.testing.run_scenario_example`)
        runs twice, and the test fails with the first divergent event if the
        runs differ. It is set once for the session, so it applies inside
        ``@given`` with no fixture.

Fixtures:
    ``simkit_seed``: the seed above.
    ``simulate``: :func:`simkit.testing.simulate`.

Also: ``--hypothesis-profile simkit`` (or ``simkit-ci``) selects the kit's
Hypothesis settings (see :func:`simkit.testing.kit_settings`); and when pytest-asyncio is
installed and the project leaves ``asyncio_default_fixture_loop_scope``
unset, it defaults to ``"function"`` (pytest-asyncio's future default)
instead of printing a deprecation warning in every run.

The plugin imports nothing heavy at load time (no hypothesis, numpy or
torch), so installing simkit costs other test suites nothing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import pytest

__all__ = [
    "pytest_addoption",
    "pytest_configure",
    "pytest_load_initial_conftests",
    "simkit_seed",
    "simulate",
]

_ASYNCIO_SCOPE = "asyncio_default_fixture_loop_scope"


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
        default=None,
        help="run every kit simulation twice and fail on the first divergent event",
    )
    parser.addini(
        "simkit_check_determinism",
        type="bool",
        default=False,
        help="as --simkit-check-determinism",
    )


def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """Give pytest-asyncio's fixture loop scope a default (before it reads it).

    Every installed plugin has registered its ini options by now; a second
    registration only replaces the default, so a value the project sets
    (file or ``-o``) still wins.
    """
    if importlib.util.find_spec("pytest_asyncio") is not None:
        parser.addini(
            _ASYNCIO_SCOPE,
            type="string",
            default="function",
            help="default scope of the asyncio event loop of async fixtures (simkit: function)",
        )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "simkit: a test that runs simkit simulations")
    option = config.getoption("--simkit-check-determinism")
    if bool(config.getini("simkit_check_determinism") if option is None else option):
        from simkit.testing._run import set_check_determinism

        set_check_determinism(True)
    profile = config.getoption("hypothesis_profile", default=None)
    if isinstance(profile, str) and profile.startswith("simkit"):
        # registered before hypothesis's own pytest_configure loads the profile
        from simkit.testing._settings import register_profiles

        register_profiles()


@pytest.fixture
def simkit_seed(request: pytest.FixtureRequest) -> int:
    """The seed given with ``--simkit-seed`` (0 by default)."""
    return int(request.config.getoption("--simkit-seed"))


@pytest.fixture
def simulate() -> Callable[..., Any]:
    """:func:`simkit.testing.simulate` (it reruns when determinism is checked)."""
    from simkit.testing._run import simulate as run

    return run
