"""The kit's Hypothesis settings: no deadline, and no explain phase unless asked.

A simulation's wall time varies with the machine and the example, so a
per-example deadline only makes flaky failures. Hypothesis's *explain*
phase reruns a failing example many times to comment which parts of it
matter; for a whole-simulation example that is most of the time a failing
search takes (7.3 s of 10.3 s measured on a planted SecAgg bug) and the
shrunk fault schedule already tells the story. So the kit's settings leave
it out; pass ``phases=`` to have it back.
"""

from __future__ import annotations

from typing import Any

from hypothesis import Phase, settings

__all__ = ["KIT_PHASES", "kit_settings", "register_profiles"]

KIT_PHASES = tuple(phase for phase in Phase if phase is not Phase.explain)
"""Every Hypothesis phase but ``explain``."""


def kit_settings(**changes: Any) -> settings:
    """Hypothesis settings for simkit property tests, on top of the loaded profile.

    ``deadline=None`` and every phase but ``explain``; ``changes`` (any
    :class:`hypothesis.settings` argument) override them::

        @kit_settings(max_examples=50)
        @given(scenarios(protocol="fedbuff"))
        def test_it(scenario): ...
    """
    values: dict[str, Any] = {"deadline": None, "phases": KIT_PHASES}
    values.update(changes)
    return settings(settings.default, **values)


def register_profiles() -> None:
    """Register the Hypothesis profiles ``simkit`` and ``simkit-ci``.

    ``simkit``: :func:`kit_settings` as a profile (``--hypothesis-profile
    simkit``). ``simkit-ci``: the same, derandomized (the examples depend
    on the test, not on the day) with the reproduction blob printed.
    """
    settings.register_profile("simkit", deadline=None, phases=KIT_PHASES)
    settings.register_profile(
        "simkit-ci", deadline=None, phases=KIT_PHASES, derandomize=True, print_blob=True
    )


register_profiles()
