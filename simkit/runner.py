"""Run a scenario: load, build, hand to the protocol plugin, simulate, summarize.

::

    import simkit

    result = simkit.run_scenario("scenarios/quickstart.toml", seed=3)
    result.summary()["weights_digest"]
    result.rounds[-1].accuracy

    # the same actors in real time over loopback TCP, clients in their own processes
    simkit.run_scenario("scenarios/quickstart.toml", transport="tcp", processes=True)

:meth:`RunResult.summary` is exactly the object ``simkit run --json`` prints
(DESIGN.md, "Contracts other tools rely on"). Wall time is measured around
the simulation for that summary only; nothing in a virtual run reads it.

Across processes and machines, :func:`serve_scenario` runs the server actor
alone (``simkit serve``) and :func:`run_client` one client (``simkit
client``): each process builds the whole scenario from the same file and seed
and adds only its own actors, so a client derives its own data shard.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from simkit._outcomes import dropped_by_cause
from simkit.faults import Fault, FaultError, FaultSchedule, fault_kind, fault_to_dict
from simkit.protocol import (
    SERVER,
    ProtocolPlugin,
    ProtocolRun,
    RoundRecord,
    ScenarioSetup,
    UnknownProtocol,
    find_protocol,
    server_name,
)
from simkit.scenario import Built, Scenario, ScenarioError, build, load_scenario

if TYPE_CHECKING:
    from simkit._realtime import ClientLaunch
    from simkit.channels import TcpTransport
    from simkit.simulation import Simulation, SimulationResult
    from simkit.trace import Trace
    from simkit.training import Weights

__all__ = [
    "ClientResult",
    "RunError",
    "RunResult",
    "TransportName",
    "check_scenario",
    "run_client",
    "run_scenario",
    "serve_scenario",
]

TransportName = Literal["memory", "tcp"]
"""``"memory"``: the in-memory network, virtual time. ``"tcp"``: loopback TCP, real time."""

LOOPBACK = "127.0.0.1"

_ACTION_TYPES = frozenset({"Join", "Accept", "Reject", "Ping", "Pong", "Drop"})

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
    "refused",
)
"""The keys of :meth:`RunResult.summary` required by the JSON contract, in order."""

_DROP_KINDS = ("actor_error", "crash")


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
        errors: ``(actor, error text)`` for each actor that raised (and each
            client process that failed); an actor's text ends with where it
            raised: ``ValueError: boom (at protocols.fedavg._server:123 in f)``.
        transport: ``"memory"`` (virtual time) or ``"tcp"`` (real time: then
            ``virtual_time_s`` is the real time the run took, as the server saw it).
        artifacts: Protocol extras for the report (a protocol run's optional
            ``artifacts()``: FedAvg's SecAgg teaching view).
        tracebacks: ``(actor, full traceback)`` in the order of ``errors``
            (``simkit run --verbose`` prints them).
        unfired_faults: Faults of the schedule that never applied: their
            trigger never matched, or the run ended before their time.
        server: The protocol's server actor (``None``: a serverless protocol,
            whose round records merge its peers' views).
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
    transport: TransportName = "memory"
    artifacts: dict[str, Any] = field(default_factory=dict)
    tracebacks: list[tuple[str, str]] = field(default_factory=list)
    unfired_faults: list[Fault] = field(default_factory=list)
    server: str | None = SERVER

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
        if self.trace.keep:  # tracked as the trace is recorded: no scan of the events
            for kind in _DROP_KINDS:
                seen |= self.trace.sources(kind) & names
        return sorted(seen)

    def metrics(self) -> list[dict[str, Any]]:
        """``{round, participants, loss, accuracy}`` per round (``None``: unknown)."""
        return [
            {
                "round": r.round,
                "participants": len(r.replied),
                "loss": _finite(r.loss),
                "accuracy": _finite(r.accuracy),
                "late": r.late,
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
            "refused": self.trace.count("reject"),
            "dropped_by_cause": dropped_by_cause(
                self.rounds, self.trace.events if self.trace.keep else [], self.clients
            ),
            "errors": [f"{actor}: {text}" for actor, text in self.errors],
            "unfired_faults": [fault_to_dict(f) for f in self.unfired_faults],
        }

    def _repr_html_(self) -> str:
        """The notebook view: facts, the round table and the metric plots inline."""
        from simkit.report import notebook_html

        return notebook_html(self)

    def to_json(self) -> str:
        """:meth:`summary` as one line of JSON."""
        return json.dumps(self.summary(), separators=(",", ":"))

    def save_weights(self, path: str | os.PathLike[str]) -> None:
        """Write the final weights as an ``.npz`` archive (one array per name)."""
        import numpy as np

        savez: Any = np.savez  # numpy's stubs reject **arrays (they clash with allow_pickle)
        with open(path, "wb") as f:
            savez(f, **self.weights.to_dict())


@dataclass(slots=True)
class ClientResult:
    """One client's run (``simkit client``), as the client saw it.

    Attributes:
        name: The client's name.
        server: The server's ``host:port``.
        trace: The client's trace (its sends, deliveries, joins).
        wall_time_s: Seconds the run took.
        errors: ``(actor, error text)`` if the client raised.
        tracebacks: ``(actor, full traceback)`` in the order of ``errors``.
    """

    name: str
    server: str
    trace: Trace
    wall_time_s: float
    errors: list[tuple[str, str]] = field(default_factory=list)
    tracebacks: list[tuple[str, str]] = field(default_factory=list)

    @property
    def joined(self) -> bool:
        """Whether the server accepted the client's ``Join``."""
        return any(e.kind == "peer_up" and e.src == self.name for e in self.trace.events)

    def problem(self) -> str | None:
        """Why the run failed (never joined, raised), or ``None``."""
        if self.errors:
            return "; ".join(f"{actor} raised: {text}" for actor, text in self.errors)
        if self.joined:
            return None
        events = self.trace.events
        if any(e.kind == "deliver" and e.type == "Reject" for e in events):
            how = "the server rejected its Join (wrong token or version)"
        elif any(e.kind == "send" and e.type == "Join" for e in events):
            how = "the server did not accept its Join"
        else:
            how = "could not connect"
        logs = [e.info for e in events if e.kind == "log" and e.src == self.name]
        detail = f" ({logs[-1]})" if logs else ""
        return f"{self.name} never joined the server at {self.server}: {how}{detail}"

    def summary(self) -> dict[str, Any]:
        """What ``simkit client --json`` prints: application messages and bytes each way."""
        sent = [e for e in self.trace.events if e.kind == "send" and e.type not in _ACTION_TYPES]
        got = [e for e in self.trace.events if e.kind == "deliver" and e.type not in _ACTION_TYPES]
        return {
            "client": self.name,
            "server": self.server,
            "joined": self.joined,
            "messages_sent": len(sent),
            "messages_received": len(got),
            "bytes_sent": sum(e.nbytes for e in sent),
            "bytes_received": sum(e.nbytes for e in got),
            "wall_time_s": self.wall_time_s,
            "errors": [f"{actor}: {text}" for actor, text in self.errors],
        }


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
    transport: TransportName = "memory",
    processes: bool = False,
) -> RunResult:
    """Run one scenario: in virtual time, or in real time over loopback TCP.

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
        transport: ``"memory"``: the in-memory network in virtual time
            (deterministic). ``"tcp"``: the same actors in real time over
            loopback sockets (the server on an ephemeral port); the
            ``[network]`` model does not apply, and only faults on actors do.
        processes: With ``"tcp"``: the server runs here and every client in
            its own ``python -m simkit client`` process, which builds the
            scenario from the same file, seed and overrides and looks the
            protocol up by name. Needs a scenario file.

    Returns:
        The :class:`RunResult`; ``.summary()`` is the JSON contract object.
        Client processes that failed are listed in its ``errors``.

    Raises:
        ScenarioError: Invalid scenario, override, fault file or directory;
            the message is one line naming the file and key.
        RunError: The simulation failed (deadlock, time limit, ``fail_fast``).
        TypeError: A loaded :class:`Scenario` with ``seed`` or ``overrides``.
        ValueError: An unknown ``transport``; ``processes`` without ``"tcp"``
            or without a scenario file.
    """
    if transport not in ("memory", "tcp"):
        raise ValueError(f"transport must be 'memory' or 'tcp', got {transport!r}")
    if processes and transport != "tcp":
        raise ValueError("processes=True needs transport='tcp'")
    if processes and isinstance(path_or_mapping, (Mapping, Scenario)):
        raise ValueError("processes=True needs a scenario file: the client processes read it")
    scenario, chosen = _prepare(path_or_mapping, seed, overrides, plugin)
    _check_checkpoints(scenario, chosen, checkpoint=checkpoint, resume=resume)
    if processes:
        _need_server(scenario, chosen, "--processes")
    tcp = _tcp(LOOPBACK) if transport == "tcp" else None
    built, handle = _assemble(
        scenario,
        chosen,
        transport=tcp,
        only={SERVER} if processes else None,
        extra_faults=_extra_faults(faults),
        on_round=on_round,
        checkpoint_dir=_directory(checkpoint, "checkpoint", create=True),
        resume_dir=_directory(resume, "resume", create=False),
    )
    problems: list[tuple[str, str]] = []
    if tcp is None:
        result, wall = _simulate(built.sim)
    else:
        launch = None
        if processes:
            assert not isinstance(path_or_mapping, (Mapping, Scenario))
            launch = _launch(path_or_mapping, scenario, overrides, built.setup.client_names)
        result, wall, problems = _simulate_real(built.sim, tcp, launch=launch)
    run = _run_result(scenario, chosen, built, handle, result, wall, problems, transport)
    if trace_file is not None:
        _write_trace(run.trace, trace_file)
    return run


def serve_scenario(
    path_or_mapping: str | os.PathLike[str] | Mapping[str, Any],
    seed: int | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    *,
    host: str = LOOPBACK,
    port: int = 0,
    token: str = "",
    on_listening: Callable[[str], None] | None = None,
    trace_file: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
    faults: FaultSchedule | str | os.PathLike[str] | None = None,
    plugin: ProtocolPlugin | None = None,
) -> RunResult:
    """Run the scenario's server actor alone, in real time, listening on TCP.

    Its clients are :func:`run_client` processes (``simkit client``) started
    with the same scenario, seed and overrides, here or on other machines;
    the protocol decides how long its server waits for them.

    Args:
        path_or_mapping: A scenario file or its content as a mapping.
        seed: Overrides the scenario's ``seed``.
        overrides: ``--set`` strings or a mapping of dotted keys.
        host: The interface to listen on (``0.0.0.0``: every one).
        port: The port (0: one the system chooses; see ``on_listening``).
        token: A shared secret every client's ``Join`` must carry.
        on_listening: Called with ``host:port`` once the server listens.
        trace_file: Also write the server's trace there as JSON lines.
        checkpoint: Directory where the protocol saves its state every round.
        resume: Directory written by an earlier ``checkpoint`` run to continue.
        on_round: Called after every round with its :class:`RoundRecord`.
        faults: More faults (only those on the server apply here).
        plugin: Use this protocol plugin instead of looking its name up.

    Returns:
        The :class:`RunResult` as the server saw the run.

    Raises:
        ScenarioError: Invalid scenario, override, fault file or directory.
        RunError: The run failed.
    """
    scenario, chosen = _prepare(path_or_mapping, seed, overrides, plugin)
    _check_checkpoints(scenario, chosen, checkpoint=checkpoint, resume=resume)
    _need_server(scenario, chosen, "simkit serve")
    tcp = _tcp(host, {SERVER: format_host_port(host, port)}, token=token)
    built, handle = _assemble(
        scenario,
        chosen,
        transport=tcp,
        only={SERVER},
        extra_faults=_extra_faults(faults),
        on_round=on_round,
        checkpoint_dir=_directory(checkpoint, "checkpoint", create=True),
        resume_dir=_directory(resume, "resume", create=False),
    )
    result, wall, _ = _simulate_real(built.sim, tcp, on_listening=on_listening)
    run = _run_result(scenario, chosen, built, handle, result, wall, [], "tcp")
    if trace_file is not None:
        _write_trace(run.trace, trace_file)
    return run


def run_client(
    path_or_mapping: str | os.PathLike[str] | Mapping[str, Any],
    name: str,
    server: str,
    seed: int | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    *,
    token: str = "",
    trace_file: str | os.PathLike[str] | None = None,
    faults: FaultSchedule | str | os.PathLike[str] | None = None,
    plugin: ProtocolPlugin | None = None,
) -> ClientResult:
    """Run one client of the scenario, in real time, joining a server over TCP.

    The client builds the whole scenario from the same file, seed and
    overrides as its server and keeps its own part: its data shard, speed
    and faults.

    Args:
        path_or_mapping: A scenario file or its content as a mapping.
        name: The client's name (``c000`` ...).
        server: The server's ``host:port``.
        seed: Overrides the scenario's ``seed`` (give the server's).
        overrides: ``--set`` strings or a mapping of dotted keys (the server's).
        token: The server's shared token.
        trace_file: Also write the client's trace there as JSON lines.
        faults: More faults (only those on this client apply).
        plugin: Use this protocol plugin instead of looking its name up.

    Returns:
        A :class:`ClientResult`: whether it joined, what it sent and received.

    Raises:
        ScenarioError: Invalid scenario, or no client of that name in it.
        ValueError: ``server`` is not ``host:port``.
        RunError: The run failed.
    """
    from simkit.channels.tcp import parse_address
    from simkit.scenario import client_names

    if parse_address(server) is None:
        raise ValueError(f"the server address must be HOST:PORT, got {server!r}")
    scenario, chosen = _prepare(path_or_mapping, seed, overrides, plugin)
    _need_server(scenario, chosen, "simkit client")
    names = client_names(scenario.config.clients.count)
    if name not in names:
        raise ScenarioError(
            f"{scenario.source}: no client named {name!r}: the {len(names)} clients "
            f"of this scenario are {names[0]} to {names[-1]}"
        )
    tcp = _tcp(LOOPBACK, {SERVER: server}, token=token)
    built, _ = _assemble(
        scenario, chosen, transport=tcp, only={name}, extra_faults=_extra_faults(faults)
    )
    built.sim.set_daemon(name, False)  # alone here: the run ends when the client does
    result, wall, _ = _simulate_real(built.sim, tcp)
    client = ClientResult(
        name, server, result.trace, wall, list(result.errors), list(result.tracebacks)
    )
    if trace_file is not None:
        _write_trace(client.trace, trace_file)
    return client


def check_scenario(scenario: Scenario, plugin: ProtocolPlugin | None = None) -> None:
    """What :func:`run_scenario` refuses before its first round, without running.

    Finds the protocol, lets it check its table, builds the data, model,
    clients, faults and the protocol's actors, and checks the faults against
    them (actor names, message types).

    Raises:
        ScenarioError: The first problem, as one line.
    """
    scenario, chosen = _prepare(scenario, None, None, plugin)
    _assemble(scenario, chosen, transport=None, only=None)


def format_host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _prepare(
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


def _check_checkpoints(
    scenario: Scenario,
    chosen: ProtocolPlugin,
    *,
    checkpoint: str | os.PathLike[str] | None,
    resume: str | os.PathLike[str] | None,
) -> None:
    """``--checkpoint``/``--resume`` need a plugin that says ``checkpoints = True``."""
    _directory(resume, "resume", create=False)  # a missing one is the first problem
    for option, value in (("--checkpoint", checkpoint), ("--resume", resume)):
        if value is not None and not getattr(chosen, "checkpoints", False):
            name = scenario.config.protocol.name
            raise ScenarioError(f"{option}: protocol {name!r} does not support checkpoints")


def _need_server(scenario: Scenario, chosen: ProtocolPlugin, what: str) -> None:
    """Runs split across processes join a server: a serverless protocol has none."""
    if server_name(chosen) is None:
        name = scenario.config.protocol.name
        raise ScenarioError(
            f"{what}: protocol {name!r} has no server (its peers talk to each other); "
            "run it in one process"
        )


def _assemble(
    scenario: Scenario,
    chosen: ProtocolPlugin,
    *,
    transport: TcpTransport | None,
    only: Collection[str] | None,
    **options: Any,
) -> tuple[Built, ProtocolRun]:
    """Build the simulation and let the plugin add its actors (``only`` those named)."""
    built = build(scenario, transport=transport, only=only, **options)
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


def _run_result(
    scenario: Scenario,
    chosen: ProtocolPlugin,
    built: Built,
    handle: ProtocolRun,
    result: SimulationResult,
    wall: float,
    problems: list[tuple[str, str]],
    transport: TransportName,
) -> RunResult:
    return RunResult(
        scenario=scenario.name,
        protocol=scenario.config.protocol.name,
        seed=scenario.config.seed,
        setup=built.setup,
        rounds=list(handle.rounds()),
        weights=handle.weights(),
        trace=result.trace,
        virtual_time_s=result.end_time,
        wall_time_s=wall,
        errors=list(result.errors) + problems,
        transport=transport,
        artifacts=_artifacts(handle),
        tracebacks=list(result.tracebacks),
        unfired_faults=list(result.unfired),
        server=server_name(chosen),
    )


def _artifacts(handle: ProtocolRun) -> dict[str, Any]:
    """The protocol's optional extras for the report (``handle.artifacts()``)."""
    get = getattr(handle, "artifacts", None)
    if get is None:
        return {}
    found = get()
    return dict(found) if isinstance(found, Mapping) else {}


def _tcp(host: str, book: Mapping[str, str] | None = None, *, token: str = "") -> TcpTransport:
    from simkit.channels import TcpTransport

    return TcpTransport(book, host=host, token=token)


def _launch(
    path: str | os.PathLike[str],
    scenario: Scenario,
    overrides: Iterable[str] | Mapping[str, Any] | None,
    names: list[str],
) -> ClientLaunch:
    from simkit._realtime import ClientLaunch, set_strings

    sets = [text for text in set_strings(overrides) if not text.startswith("seed=")]
    return ClientLaunch(os.fspath(path), scenario.config.seed, sets, names)


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


def _check_faults(scenario: Scenario, sim: Simulation) -> None:
    """A fault naming an actor or a message type the run does not have is an error.

    Such a fault would never fire: a typo (``TrainReqest``) must not pass as
    a run without faults.
    """
    from simkit.messages import registered_types

    known = sorted(set(registered_types()) | _ACTION_TYPES)
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
    if faults.dropout is not None and faults.dropout.message == type_name:
        return "faults.dropout.message"
    if faults.per_round is not None and faults.per_round.message == type_name:
        return "faults.per_round.message"
    return "faults"


def _simulate(sim: Simulation) -> tuple[Any, float]:
    from simkit.runtime import SimulationError
    from simkit.simulation import ActorFailed

    start = time.perf_counter()  # reporting only: never used in a decision
    try:
        result = sim.run()
    except (SimulationError, ActorFailed) as exc:
        raise RunError(f"the run failed: {exc}") from exc
    return result, time.perf_counter() - start


def _simulate_real(
    sim: Simulation,
    transport: TcpTransport,
    *,
    on_listening: Callable[[str], None] | None = None,
    launch: ClientLaunch | None = None,
) -> tuple[SimulationResult, float, list[tuple[str, str]]]:
    from functools import partial

    from simkit._realtime import ClientsFailed, run_real
    from simkit._threads import call_blocking
    from simkit.runtime import SimulationError, run
    from simkit.simulation import ActorFailed

    main = partial(
        run_real, sim, transport, server=SERVER, on_listening=on_listening, launch=launch
    )
    start = time.perf_counter()
    try:
        result, problems = call_blocking(run, main, seed=sim.seed, mode="real")
    except (SimulationError, ActorFailed, ClientsFailed) as exc:
        raise RunError(f"the run failed: {exc}") from exc
    return result, time.perf_counter() - start, problems


def _write_trace(trace: Trace, path: str | os.PathLike[str]) -> None:
    from simkit.trace import write_jsonl

    try:
        write_jsonl(trace.events, path)
    except OSError as exc:
        raise ScenarioError(
            f"{os.fspath(path)}: cannot write trace: {exc.strerror or exc}"
        ) from exc
