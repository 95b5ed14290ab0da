"""One simulation per example, and failures turned into replayable files.

Property tests must not share an event loop between examples: a leftover
timer or task of one example would leak into the next and break exact
replay. :func:`simulate` builds a fresh simulation and runs it on a fresh
virtual loop every call; with determinism checking on (the pytest plugin's
``--simkit-check-determinism``) it runs it twice and compares trace digests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from simkit.faults import FaultSchedule
from simkit.simulation import Simulation, SimulationResult
from simkit.testing.invariants import InvariantViolation

if TYPE_CHECKING:
    from simkit.runner import RunResult

__all__ = [
    "NondeterministicRun",
    "check_determinism_enabled",
    "note_schedule",
    "replay_snippet",
    "run_scenario_example",
    "set_check_determinism",
    "simulate",
]

_CHECK_DETERMINISM = False


class NondeterministicRun(InvariantViolation):
    """Two runs of the same simulation gave different trace digests."""


def set_check_determinism(enabled: bool) -> None:
    """Make every :func:`simulate` run twice and compare digests (the pytest option)."""
    global _CHECK_DETERMINISM
    _CHECK_DETERMINISM = enabled


def check_determinism_enabled() -> bool:
    """Whether :func:`simulate` currently reruns to check determinism."""
    return _CHECK_DETERMINISM


def simulate(
    build: Callable[[], Simulation],
    *,
    until: float | None = None,
    check_determinism: bool | None = None,
) -> SimulationResult:
    """Build a simulation and run it on a fresh virtual loop.

    Args:
        build: Returns a new :class:`Simulation`, actors added (called once
            per run, so it must not reuse actor instances between calls).
        until: Stop at this virtual time (default: when the actors are done).
        check_determinism: Run twice and compare trace digests (default: the
            pytest plugin's ``--simkit-check-determinism``).

    Raises:
        NondeterministicRun: The two runs' digests differ.
    """
    result = build().run(until=until)
    if _CHECK_DETERMINISM if check_determinism is None else check_determinism:
        again = build().run(until=until)
        if again.digest != result.digest:
            raise NondeterministicRun(
                f"the same simulation ran twice gave trace digests {result.digest[:16]} and "
                f"{again.digest[:16]}: something depends on more than the seed "
                "(wall clock, global RNG, set or dict order of unsorted names?)"
            )
    return result


def run_scenario_example(
    scenario: Mapping[str, Any] | str | os.PathLike[str],
    *,
    faults: FaultSchedule | None = None,
    overrides: Mapping[str, Any] | None = None,
    check_determinism: bool | None = None,
) -> RunResult:
    """Run a scenario for one hypothesis example, on a fresh virtual loop.

    Args:
        scenario: A scenario mapping (see :func:`~simkit.testing.scenarios`) or file.
        faults: Extra faults (a drawn :class:`FaultSchedule`).
        overrides: ``--set`` style overrides.
        check_determinism: Run twice and compare the trace and weights
            digests (default: the pytest plugin's ``--simkit-check-determinism``).

    Raises:
        NondeterministicRun: The two runs differ.
    """
    from simkit.runner import run_scenario

    result = run_scenario(scenario, overrides=overrides, faults=faults)
    if _CHECK_DETERMINISM if check_determinism is None else check_determinism:
        again = run_scenario(scenario, overrides=overrides, faults=faults)
        first, second = result.summary(), again.summary()
        for key in ("trace_digest", "weights_digest"):
            if first[key] != second[key]:
                raise NondeterministicRun(
                    f"the same scenario ran twice gave {key} {first[key][:16]} and "
                    f"{second[key][:16]}: something depends on more than the seed"
                )
    return result


def replay_snippet(
    schedule: FaultSchedule, *, scenario: str | None = None, seed: int | None = None
) -> str:
    """The schedule as a fault file, with the command that replays it.

    The text is a TOML document (the command is a comment), so it can be
    saved as is and passed to ``simkit run SCENARIO --faults FILE``.
    """
    command = "simkit run " + (scenario or "SCENARIO")
    if seed is not None:
        command += f" --seed {seed}"
    command += " --faults faults.toml"
    header = f"# Save as faults.toml and replay exactly with:\n#   {command}\n"
    body = schedule.to_toml() or "faults = []\n"
    return header + body


def note_schedule(schedule: FaultSchedule, **where: Any) -> None:
    """Attach the replayable schedule to the current hypothesis example.

    Hypothesis prints notes only for the failing (shrunk) example, so the
    minimal failing fault schedule shows up in the test report ready to
    save and replay. Keyword arguments go to :func:`replay_snippet`.
    """
    from hypothesis import note

    note(replay_snippet(schedule, **where))
