"""Before a run: load the scenario, find and check its plugin, build, check the faults."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simkit.faults import Fault, FaultError, FaultSchedule, fault_kind
from simkit.protocol import (
    ProtocolPlugin,
    ProtocolRun,
    UnknownProtocol,
    find_protocol,
    server_name,
)
from simkit.runner._results import ACTION_TYPES
from simkit.scenario import Built, Scenario, ScenarioError, build, load_scenario
from simkit.scenario._build import ROUND_MESSAGE

if TYPE_CHECKING:
    from simkit.channels import TcpTransport
    from simkit.simulation import Simulation

__all__ = [
    "assemble",
    "check_checkpoints",
    "check_scenario",
    "directory",
    "extra_faults",
    "prepare",
    "with_seed",
]


def prepare(
    path_or_mapping: str | os.PathLike[str] | Mapping[str, Any] | Scenario,
    seed: int | None,
    overrides: Iterable[str] | Mapping[str, Any] | None,
    plugin: ProtocolPlugin | None,
) -> tuple[Scenario, ProtocolPlugin]:
    """Load the scenario, find its plugin and let the plugin check its table."""
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
    return scenario, chosen


def check_scenario(scenario: Scenario, plugin: ProtocolPlugin | None = None) -> None:
    """What :func:`run_scenario` refuses before its first round, without running.

    Finds the protocol, lets it check its table, builds the data, model,
    clients, faults and the protocol's actors, and checks the faults against
    them (actor names, message types).

    Raises:
        ScenarioError: The first problem, as one line.
    """
    scenario, chosen = prepare(scenario, None, None, plugin)
    assemble(scenario, chosen, transport=None, only=None)


def check_checkpoints(
    scenario: Scenario,
    chosen: ProtocolPlugin,
    *,
    checkpoint: str | os.PathLike[str] | None,
    resume: str | os.PathLike[str] | None,
) -> None:
    """``--checkpoint``/``--resume`` need a plugin that says ``checkpoints = True``."""
    directory(resume, "resume", create=False)  # a missing one is the first problem
    for option, value in (("--checkpoint", checkpoint), ("--resume", resume)):
        if value is not None and not getattr(chosen, "checkpoints", False):
            name = scenario.config.protocol.name
            raise ScenarioError(f"{option}: protocol {name!r} does not support checkpoints")


def need_server(scenario: Scenario, chosen: ProtocolPlugin, what: str) -> None:
    """Runs split across processes join a server: a serverless protocol has none.

    Raises:
        ScenarioError: ``chosen`` says ``server = None``.
    """
    if server_name(chosen) is None:
        name = scenario.config.protocol.name
        raise ScenarioError(
            f"{what}: protocol {name!r} has no server (its peers talk to each other); "
            "run it in one process"
        )


def assemble(
    scenario: Scenario,
    chosen: ProtocolPlugin,
    *,
    transport: TcpTransport | None,
    only: Collection[str] | None,
    **options: Any,
) -> tuple[Built, ProtocolRun]:
    """Build the simulation and let the plugin add its actors (``only`` those named)."""
    message = getattr(chosen, "round_message", ROUND_MESSAGE)
    built = build(scenario, transport=transport, only=only, round_message=message, **options)
    if only is None:
        handle = chosen.build(built.setup, built.sim)
    else:
        handle = chosen.build(built.setup, built.sim, only)
        for name in sorted(only):
            try:
                built.sim.is_running(name)
            except KeyError:
                raise scenario.error(
                    "protocol.name",
                    f"protocol {scenario.config.protocol.name!r} added no actor named {name!r}",
                ) from None
    _check_faults(scenario, built.sim)
    return built, handle


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


def extra_faults(faults: FaultSchedule | str | os.PathLike[str] | None) -> FaultSchedule | None:
    if faults is None or isinstance(faults, FaultSchedule):
        return faults
    name = os.fspath(faults)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{name}: cannot read fault file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{name}: not a text fault file ({exc.reason})") from None
    try:
        return FaultSchedule.from_toml(text, source=name)
    except FaultError as exc:
        raise ScenarioError(str(exc)) from None


def directory(path: str | os.PathLike[str] | None, what: str, *, create: bool) -> Path | None:
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


def _check_faults(scenario: Scenario, sim: Simulation) -> None:
    """A fault naming an actor or a message type the run does not have is an error.

    Such a fault would never fire: a typo (``TrainReqest``) must not pass as
    a run without faults.
    """
    from simkit.wire import registered_types

    known = sorted(set(registered_types()) | ACTION_TYPES)
    for fault in sim.faults:
        for name in _fault_actors(fault):
            try:
                sim.is_running(name)
            except KeyError:
                raise scenario.error("faults", f"no actor named {name!r} in this run") from None
        on = fault.on
        if on is not None and on.type is not None and on.type not in known:
            raise scenario.error(
                _trigger_key(scenario, on.type),
                f"no message type is named {on.type!r} (a {fault_kind(fault)} fault would "
                f"never fire); known: {', '.join(known)}",
            )


def _fault_actors(fault: Fault) -> list[str]:
    groups = getattr(fault, "groups", None)
    if groups is not None:
        return [n for group in groups for n in group if n]
    name = getattr(fault, "actor", "")
    return [name] if name else []


def _trigger_key(scenario: Scenario, type_name: str) -> str:
    """The scenario key a trigger's message type came from (best guess)."""
    faults = scenario.config.faults
    # a message left out is the plugin's round_message
    if faults.dropout is not None and faults.dropout.message in (type_name, None):
        return "faults.dropout.message"
    if faults.per_round is not None and faults.per_round.message in (type_name, None):
        return "faults.per_round.message"
    return "faults"
