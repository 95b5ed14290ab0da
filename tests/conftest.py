"""Test-suite settings.

Hypothesis explores new examples on every local run. Under CI (``CI`` set in
the environment, as ``.ci/run`` does) the ``ci`` profile derandomizes it, so a
red CI always replays: the examples depend on the test, not on the day. Run
``HYPOTHESIS_PROFILE=ci pytest`` to see exactly what CI sees.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)
