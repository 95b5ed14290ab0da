"""The entry points: :func:`run_scenario` (and :func:`arun_scenario`), :func:`serve_scenario`,
:func:`run_client`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from simkit._progress import notebook_progress
from simkit._threads import call_in_thread
from simkit.faults import FaultSchedule
from simkit.protocol import ProtocolPlugin, RoundRecord, server_name
from simkit.runner._launch import (
    LOOPBACK,
    SERVER,
    format_host_port,
    launch_clients,
    run_result,
    simulate,
    simulate_real,
    tcp_transport,
    write_trace,
)
from simkit.runner._prepare import (
    assemble,
    check_checkpoints,
    directory,
    extra_faults,
    need_server,
    prepare,
)
from simkit.runner._results import ClientResult, RunResult, TransportName
from simkit.scenario import Scenario, ScenarioError

__all__ = [
    "arun_scenario",
    "run_client",
    "run_scenario",
    "serve_scenario",
]


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
    scenario, chosen = prepare(path_or_mapping, seed, overrides, plugin)
    check_checkpoints(scenario, chosen, checkpoint=checkpoint, resume=resume)
    if processes:
        need_server(scenario, chosen, "--processes")
    if on_round is None:  # in a Jupyter kernel: a progress bar under the cell
        on_round = notebook_progress(scenario.config.rounds, scenario.name)
    tcp = tcp_transport(LOOPBACK) if transport == "tcp" else None
    built, handle = assemble(
        scenario,
        chosen,
        transport=tcp,
        only={SERVER} if processes else None,
        extra_faults=extra_faults(faults),
        on_round=on_round,
        checkpoint_dir=directory(checkpoint, "checkpoint", create=True),
        resume_dir=directory(resume, "resume", create=False),
    )
    problems: list[tuple[str, str]] = []
    if tcp is None:
        result, wall = simulate(built.sim)
    else:
        launch = None
        if processes:
            assert not isinstance(path_or_mapping, (Mapping, Scenario))
            launch = launch_clients(path_or_mapping, scenario, overrides, built.setup.client_names)
        result, wall, problems = simulate_real(built.sim, tcp, launch=launch)
    server = server_name(chosen)
    run = run_result(scenario, built, handle, result, wall, problems, transport, server)
    if trace_file is not None:
        write_trace(run.trace, trace_file)
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
    scenario, chosen = prepare(path_or_mapping, seed, overrides, plugin)
    check_checkpoints(scenario, chosen, checkpoint=checkpoint, resume=resume)
    need_server(scenario, chosen, "simkit serve")
    tcp = tcp_transport(host, {SERVER: format_host_port(host, port)}, token=token)
    built, handle = assemble(
        scenario,
        chosen,
        transport=tcp,
        only={SERVER},
        extra_faults=extra_faults(faults),
        on_round=on_round,
        checkpoint_dir=directory(checkpoint, "checkpoint", create=True),
        resume_dir=directory(resume, "resume", create=False),
    )
    result, wall, _ = simulate_real(built.sim, tcp, on_listening=on_listening)
    run = run_result(scenario, built, handle, result, wall, [], "tcp", server_name(chosen))
    if trace_file is not None:
        write_trace(run.trace, trace_file)
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
    scenario, chosen = prepare(path_or_mapping, seed, overrides, plugin)
    need_server(scenario, chosen, "simkit client")
    names = client_names(scenario.config.clients.count)
    if name not in names:
        raise ScenarioError(
            f"{scenario.source}: no client named {name!r}: the {len(names)} clients "
            f"of this scenario are {names[0]} to {names[-1]}"
        )
    tcp = tcp_transport(LOOPBACK, {SERVER: server}, token=token)
    built, _ = assemble(
        scenario, chosen, transport=tcp, only={name}, extra_faults=extra_faults(faults)
    )
    built.sim.set_daemon(name, False)  # alone here: the run ends when the client does
    result, wall, _ = simulate_real(built.sim, tcp)
    client = ClientResult(
        name, server, result.trace, wall, list(result.errors), list(result.tracebacks)
    )
    if trace_file is not None:
        write_trace(client.trace, trace_file)
    return client


async def arun_scenario(*args: Any, **kwargs: Any) -> RunResult:
    """:func:`run_scenario` as an awaitable, for notebooks and async applications.

    Takes the same arguments and returns the same :class:`~simkit.runner.RunResult`
    (same digests); the run computes in a worker thread.
    """
    return await call_in_thread(run_scenario, *args, **kwargs)
