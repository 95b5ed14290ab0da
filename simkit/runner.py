"""Run a scenario: load, build, hand to the protocol plugin, simulate, summarize.

::

    import simkit

    result = simkit.run_scenario("scenarios/quickstart.toml", seed=3)
    result.summary()["weights_digest"]
    result.rounds[-1].accuracy

:meth:`RunResult.summary` is exactly the object ``simkit run --json`` prints
(DESIGN.md, "Contracts other tools rely on"). Wall time is measured around
the simulation for that summary only; nothing in the run reads it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simkit.faults import FaultError, FaultSchedule
from simkit.protocol import (
    ProtocolPlugin,
    RoundRecord,
    ScenarioSetup,
    UnknownProtocol,
    find_protocol,
)
from simkit.scenario import Scenario, ScenarioError, build, load_scenario

if TYPE_CHECKING:
    from simkit.simulation import Simulation
    from simkit.trace import Trace
    from simkit.training import Weights

__all__ = ["RunError", "RunResult", "run_scenario"]

SUMMARY_KEYS = (
    "scenario",
    "protocol",
    "seed",
    "clients",
    "rounds_completed",
    "dropped",
    "virtual_time_s",
    "wall_time_s",
    "messages",
    "bytes",
    "trace_digest",
    "weights_digest",
    "metrics",
)
"""The keys of :meth:`RunResult.summary` required by the JSON contract, in order."""

_DROP_KINDS = frozenset({"crash", "actor_error"})


class RunError(RuntimeError):
    """The simulation itself failed (deadlock, time limit, an actor with ``fail_fast``)."""


@dataclass(slots=True)
class RunResult:
    """A finished run.

    Attributes:
        scenario: The scenario's name.
        protocol: The protocol's name.
        seed: The seed the run used.
        setup: What the protocol was built from (clients, data, factories).
        rounds: The protocol's round records, in order (aborted ones included).
        weights: The final global weights.
        trace: The recorded trace.
        virtual_time_s: Virtual time at the end of the run.
        wall_time_s: Wall-clock seconds the simulation took (reporting only).
        errors: ``(actor, error text)`` for each actor that raised.
    """

    scenario: str
    protocol: str
    seed: int
    setup: ScenarioSetup
    rounds: list[RoundRecord]
    weights: Weights
    trace: Trace
    virtual_time_s: float
    wall_time_s: float
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def clients(self) -> list[str]:
        """The clients' names, sorted."""
        return self.setup.client_names

    @property
    def rounds_completed(self) -> int:
        """Rounds that ended with a model update (aborted rounds do not count)."""
        return sum(1 for r in self.rounds if not r.aborted)

    @property
    def dropped(self) -> list[str]:
        """Every client seen to drop: crashed, raised, or failed to answer a round (sorted)."""
        names = set(self.clients)
        seen = {name for r in self.rounds for name in r.failed if name in names}
        if self.trace.keep:
            seen |= {e.src for e in self.trace.events if e.kind in _DROP_KINDS and e.src in names}
        return sorted(seen)

    def metrics(self) -> list[dict[str, Any]]:
        """``{round, participants, loss, accuracy}`` per round (``None``: unknown)."""
        return [
            {
                "round": r.round,
                "participants": len(r.replied),
                "loss": _finite(r.loss),
                "accuracy": _finite(r.accuracy),
            }
            for r in self.rounds
        ]

    def summary(self) -> dict[str, Any]:
        """The JSON contract object (what ``simkit run --json`` prints last)."""
        stats = self.trace.stats()
        return {
            "scenario": self.scenario,
            "protocol": self.protocol,
            "seed": self.seed,
            "clients": len(self.clients),
            "rounds_completed": self.rounds_completed,
            "dropped": self.dropped,
            "virtual_time_s": self.virtual_time_s,
            "wall_time_s": self.wall_time_s,
            "messages": stats["messages"],
            "bytes": stats["bytes"],
            "trace_digest": self.trace.digest(),
            "weights_digest": self.weights.digest(),
            "metrics": self.metrics(),
            "errors": [f"{actor}: {text}" for actor, text in self.errors],
        }

    def to_json(self) -> str:
        """:meth:`summary` as one line of JSON."""
        return json.dumps(self.summary(), separators=(",", ":"))

    def save_weights(self, path: str | os.PathLike[str]) -> None:
        """Write the final weights as an ``.npz`` archive (one array per name)."""
        import numpy as np

        savez: Any = np.savez  # numpy's stubs reject **arrays (they clash with allow_pickle)
        with open(path, "wb") as f:
            savez(f, **self.weights.to_dict())


def _finite(value: float | None) -> float | None:
    """A JSON-safe number: NaN and infinities become ``None``."""
    return float(value) if value is not None and math.isfinite(value) else None


def run_scenario(
    path_or_mapping: str | os.PathLike[str] | Mapping[str, Any] | Scenario,
    seed: int | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    *,
    trace_file: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
    faults: FaultSchedule | str | os.PathLike[str] | None = None,
    plugin: ProtocolPlugin | None = None,
) -> RunResult:
    """Run one scenario in virtual time.

    Args:
        path_or_mapping: A scenario file, its content as a mapping, or a
            :class:`~simkit.scenario.Scenario` already loaded (then ``seed``
            and ``overrides`` must be left out).
        seed: Overrides the scenario's ``seed``.
        overrides: ``--set`` strings (``"rounds=3"``) or ``{"rounds": 3}``.
        trace_file: Also write the trace there as JSON lines.
        checkpoint: Directory where the protocol saves its state every round.
        resume: Directory written by an earlier ``checkpoint`` run to continue.
        on_round: Called after every round with its :class:`RoundRecord`.
        faults: More faults: a :class:`FaultSchedule` or a fault TOML file.
        plugin: Use this protocol plugin instead of looking the scenario's
            protocol name up in the ``simkit.protocols`` entry points.

    Returns:
        The :class:`RunResult`; ``.summary()`` is the JSON contract object.

    Raises:
        ScenarioError: Invalid scenario, override, fault file or directory;
            the message is one line naming the file and key.
        RunError: The simulation failed (deadlock, time limit, ``fail_fast``).
        TypeError: A loaded :class:`Scenario` with ``seed`` or ``overrides``.
    """
    if isinstance(path_or_mapping, Scenario):
        if seed is not None or overrides:
            raise TypeError("give seed and overrides to load_scenario, not with a Scenario")
        scenario = path_or_mapping
    else:
        if seed is not None:
            overrides = with_seed(overrides, seed)
        scenario = load_scenario(path_or_mapping, overrides)
    chosen = plugin if plugin is not None else _find_plugin(scenario)
    try:
        chosen.validate(scenario.config.protocol.options(), scenario.source)
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None
    built = build(
        scenario,
        extra_faults=_extra_faults(faults),
        on_round=on_round,
        checkpoint_dir=_directory(checkpoint, "checkpoint", create=True),
        resume_dir=_directory(resume, "resume", create=False),
    )
    handle = chosen.build(built.setup, built.sim)
    _check_fault_actors(scenario, built.sim)
    result, wall = _simulate(built.sim)
    run = RunResult(
        scenario=scenario.name,
        protocol=scenario.config.protocol.name,
        seed=scenario.config.seed,
        setup=built.setup,
        rounds=list(handle.rounds()),
        weights=handle.weights(),
        trace=result.trace,
        virtual_time_s=result.end_time,
        wall_time_s=wall,
        errors=list(result.errors),
    )
    if trace_file is not None:
        _write_trace(run.trace, trace_file)
    return run


def with_seed(overrides: Iterable[str] | Mapping[str, Any] | None, seed: int) -> dict[str, Any]:
    """The overrides as a mapping, with ``seed`` last (it wins)."""
    from simkit.scenario import parse_override

    out: dict[str, Any] = {}
    if isinstance(overrides, Mapping):
        out.update(overrides)
    elif overrides is not None:
        for text in overrides:
            path, value = parse_override(text)
            out[".".join(path)] = value
    out["seed"] = seed
    return out


def _find_plugin(scenario: Scenario) -> ProtocolPlugin:
    """The plugin registered under the scenario's protocol name.

    A name ``package.module:OBJECT`` loads that object directly, for a
    protocol under development that is not registered yet.
    """
    name = scenario.config.protocol.name
    if ":" in name:
        return _load_object(scenario, name)
    try:
        return find_protocol(name)
    except UnknownProtocol as exc:
        raise scenario.error("protocol.name", str(exc)) from None
    except (ImportError, AttributeError) as exc:  # registered, but its package is broken
        name = scenario.config.protocol.name
        raise scenario.error("protocol.name", f"cannot load protocol {name!r}: {exc}") from None


def _load_object(scenario: Scenario, name: str) -> ProtocolPlugin:
    import importlib

    module, _, attr = name.partition(":")
    try:
        plugin = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise scenario.error("protocol.name", f"cannot load {name!r}: {exc}") from None
    if not isinstance(plugin, ProtocolPlugin):
        raise scenario.error("protocol.name", f"{name!r} is not a simkit protocol plugin")
    return plugin


def _extra_faults(faults: FaultSchedule | str | os.PathLike[str] | None) -> FaultSchedule | None:
    if faults is None or isinstance(faults, FaultSchedule):
        return faults
    name = os.fspath(faults)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{name}: cannot read fault file: {exc.strerror or exc}") from None
    try:
        return FaultSchedule.from_toml(text, source=name)
    except FaultError as exc:
        raise ScenarioError(str(exc)) from None


def _directory(path: str | os.PathLike[str] | None, what: str, *, create: bool) -> Path | None:
    if path is None:
        return None
    directory = Path(path)
    if create:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ScenarioError(f"{directory}: cannot create {what} directory: {exc}") from None
    elif not directory.is_dir():
        raise ScenarioError(f"{directory}: no such {what} directory")
    return directory


def _check_fault_actors(scenario: Scenario, sim: Simulation) -> None:
    """A fault naming an actor the run does not have is a scenario error, not a crash."""
    for fault in sim.faults:
        names = [getattr(fault, "actor", "")]
        groups = getattr(fault, "groups", None)
        if groups is not None:
            names = [n for group in groups for n in group]
        for name in names:
            if not name:
                continue
            try:
                sim.is_running(name)
            except KeyError:
                raise scenario.error("faults", f"no actor named {name!r} in this run") from None


def _simulate(sim: Simulation) -> tuple[Any, float]:
    from simkit.runtime import SimulationError
    from simkit.simulation import ActorFailed

    start = time.perf_counter()  # reporting only: never used in a decision
    try:
        result = sim.run()
    except (SimulationError, ActorFailed) as exc:
        raise RunError(f"the run failed: {exc}") from exc
    return result, time.perf_counter() - start


def _write_trace(trace: Trace, path: str | os.PathLike[str]) -> None:
    from simkit.trace import write_jsonl

    try:
        write_jsonl(trace.events, path)
    except OSError as exc:
        raise ScenarioError(
            f"{os.fspath(path)}: cannot write trace: {exc.strerror or exc}"
        ) from exc
