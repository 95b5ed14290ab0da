"""Test-suite settings.

Hypothesis explores new examples on every local run. Under CI (``CI`` set in
the environment, as ``.ci/run`` does) the ``ci`` profile derandomizes it, so a
red CI always replays: the examples depend on the test, not on the day. Run
``HYPOTHESIS_PROFILE=ci pytest`` to see exactly what CI sees.
"""

from __future__ import annotations

import os
import random
from collections.abc import Generator, Iterator

import pytest

# rich draws from the global generator when imported (its style ids): imported
# here, before any test, so that importing it is no test's fault.
import rich.style  # noqa: F401
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)


@pytest.fixture
def global_random() -> Iterator[None]:
    """A test that uses the global random generators on purpose: restored after it."""
    import numpy as np

    saved = random.getstate(), np.random.get_state()  # noqa: NPY002
    yield
    random.setstate(saved[0])
    np.random.set_state(saved[1])  # noqa: NPY002


def _global_random_state() -> tuple[object, ...]:
    """The state of the global generators: ``random`` and ``numpy.random``'s legacy one."""
    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the guard)
    return (random.getstate(), kind, keys.tobytes(), pos, has_gauss, cached)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Fail a test that leaves the global random state changed (as Hypothesis's own suite does).

    simkit draws only from its seed tree (DESIGN.md rule 2); a test that uses
    ``random.*`` or ``np.random.*`` globals makes other tests depend on the order
    they run in. The state is restored, so one offender fails alone.
    """
    import numpy as np

    if "global_random" in getattr(item, "fixturenames", ()):
        return (yield)  # it says so, and the fixture restores the state
    before = _global_random_state()
    saved = random.getstate(), np.random.get_state()  # noqa: NPY002
    result = yield
    if _global_random_state() != before:
        random.setstate(saved[0])
        np.random.set_state(saved[1])  # noqa: NPY002
        raise AssertionError(
            f"{item.nodeid} changed the global random state (random or numpy.random): "
            "draw from simkit.rng.SeedTree or a local numpy Generator instead"
        )
    return result
