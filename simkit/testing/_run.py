"""One simulation per example, and failures turned into replayable files.

Property tests must not share an event loop between examples: a leftover
timer or task of one example would leak into the next and break exact
replay. :func:`simulate` builds a fresh simulation and runs it on a fresh
virtual loop every call; with determinism checking on (the pytest plugin's
``--simkit-check-determinism``) it and :func:`run_scenario_example` run
twice and report the first event where the two traces part.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from simkit.faults import FaultSchedule
from simkit.simulation import Simulation, SimulationResult
from simkit.testing.invariants import InvariantViolation
from simkit.trace import Event, Trace, first_divergence, format_divergence

if TYPE_CHECKING:
    from simkit.protocol import ProtocolPlugin
    from simkit.runner import RunResult
    from simkit.testing._record import ReplayRecord

__all__ = [
    "NondeterministicRun",
    "check_determinism_enabled",
    "compare_runs",
    "failure_line",
    "note_schedule",
    "replay_snippet",
    "run_scenario_example",
    "set_check_determinism",
    "simulate",
]

_CHECK_DETERMINISM = False


class NondeterministicRun(InvariantViolation):
    """Two runs of the same simulation or scenario differ (trace or weights)."""


def set_check_determinism(enabled: bool) -> None:
    """Make every kit run (:func:`simulate`, :func:`run_scenario_example`) run twice.

    The pytest plugin calls it once per session from ``--simkit-check-determinism``
    or the ``simkit_check_determinism`` ini option.
    """
    global _CHECK_DETERMINISM
    _CHECK_DETERMINISM = enabled


def check_determinism_enabled() -> bool:
    """Whether kit runs currently rerun to check determinism."""
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
        check_determinism: Run twice and compare traces (default: on when
            pytest runs with ``--simkit-check-determinism`` or the
            ``simkit_check_determinism`` ini option).

    Raises:
        NondeterministicRun: The two runs differ; the message shows the first
            divergent event and both digests.
    """
    result = build().run(until=until)
    if _checking(check_determinism):
        again = build().run(until=until)
        _compare("simulation", result.trace, again.trace)
    return result


def run_scenario_example(
    scenario: Mapping[str, Any] | str | os.PathLike[str],
    *,
    faults: FaultSchedule | None = None,
    overrides: Mapping[str, Any] | None = None,
    plugin: ProtocolPlugin | None = None,
    check: Callable[[RunResult], object] | None = None,
    check_determinism: bool | None = None,
    replay_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Run a scenario for one hypothesis example, on a fresh virtual loop.

    Inside a Hypothesis test, a scenario mapping is also noted as a replay
    file (:func:`~simkit.testing.note_replay`: the scenario with overrides
    and ``faults`` in one TOML file, with a record of the failure, the
    check and the run's digests for ``simkit replay``), which Hypothesis
    prints with the failing example.

    Args:
        scenario: A scenario mapping (see :func:`~simkit.testing.scenarios`) or file.
        faults: Extra faults (a drawn :class:`FaultSchedule`).
        overrides: ``--set`` style overrides.
        plugin: Run this protocol plugin (a variant under test, say) instead
            of the one the scenario's ``protocol.name`` registers.
        check: The property: called with the run's result, raises when it
            fails. Given here (a module-level function), the replay file
            names it and ``simkit replay`` re-checks it.
        check_determinism: Run twice and compare the traces and the weights
            (default: on when pytest runs with ``--simkit-check-determinism``
            or the ``simkit_check_determinism`` ini option).
        replay_dir: Also save the failing example's replay file there.

    Raises:
        NondeterministicRun: The two runs differ; the message shows the first
            divergent event and both digests.
    """
    from simkit.runner import run_scenario
    from simkit.testing._record import ReplayRecord, check_path

    checking = _checking(check_determinism)
    result: RunResult | None = None
    failure: str | None = None
    try:
        result = run_scenario(scenario, overrides=overrides, faults=faults, plugin=plugin)
        if checking:
            again = run_scenario(scenario, overrides=overrides, faults=faults, plugin=plugin)
            compare_runs(result, again)
        if check is not None:
            check(result)
        return result
    except Exception as exc:
        failure = failure_line(exc)
        raise
    finally:
        if isinstance(scenario, Mapping):
            digests = _digests(result)
            record = ReplayRecord(failure, check_path(check), checking, *digests)
            _note_replay(scenario, faults, overrides, plugin, replay_dir, record)


def compare_runs(result: RunResult, again: RunResult) -> None:
    """Raise :class:`NondeterministicRun` if two runs of a scenario differ."""
    _compare("scenario", result.trace, again.trace)
    first, second = result.weights.digest(), again.weights.digest()
    if first != second:
        raise NondeterministicRun(
            f"the same scenario run twice gave the same trace but weights digests "
            f"{first[:16]} and {second[:16]}: {_CULPRITS}"
        )


def failure_line(exc: BaseException) -> str:
    """A failure in one line: its type and first line (and a divergent event, if any)."""
    lines = str(exc).splitlines() or [""]
    text = lines[0]
    divergent = [line for line in lines[1:] if line.startswith("first divergent event")]
    if divergent:
        text += "; " + divergent[0]
    return f"{type(exc).__name__}: {text}".rstrip(": ")


def _digests(result: RunResult | None) -> tuple[str | None, str | None]:
    if result is None:
        return None, None
    return result.trace.digest(), result.weights.digest()


def _note_replay(
    scenario: Mapping[str, Any],
    faults: FaultSchedule | None,
    overrides: Mapping[str, Any] | None,
    plugin: ProtocolPlugin | None,
    directory: str | os.PathLike[str] | None,
    record: ReplayRecord,
) -> None:
    from hypothesis import currently_in_test_context

    if not currently_in_test_context():
        return
    from simkit.scenario import apply_overrides
    from simkit.testing._replay import note_replay

    data = apply_overrides(scenario, overrides) if overrides else scenario
    note_replay(
        data,
        faults,
        protocol=plugin.name if plugin else None,
        directory=directory,
        record=record,
    )


_CULPRITS = (
    "something depends on more than the seed (wall clock, global RNG such as "
    "np.random.* or random.*, iteration over a set, an unsorted dict of names?)"
)


def _checking(explicit: bool | None) -> bool:
    return _CHECK_DETERMINISM if explicit is None else explicit


def _compare(what: str, a: Trace, b: Trace) -> None:
    """Raise :class:`NondeterministicRun` naming the first divergent event."""
    first, second = a.digest(), b.digest()
    if first == second:
        return
    lines = [f"the same {what} run twice gave trace digests {first[:16]} and {second[:16]}"]
    if a.keep and b.keep:
        found = first_divergence(a.events, b.events)
        if found is not None:
            lines.append(_divergent_event(*found))
        lines.append(format_divergence(a.events, b.events, names=("run 1", "run 2")))
    lines.append(_CULPRITS)
    raise NondeterministicRun("\n".join(lines))


def _divergent_event(index: int, ea: Event | None, eb: Event | None) -> str:
    e = ea if ea is not None else eb
    assert e is not None
    message = f" {e.type}" if e.type else ""
    where = f"{e.src} -> {e.dst}" if e.dst else e.src
    return f"first divergent event: #{index} at t={e.t:.6g} s: {e.kind} {where}{message}"


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
