"""Running a built scenario: in virtual time, or in real time over TCP (with client processes)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from simkit.protocol import SERVER, ProtocolRun
from simkit.runner._results import RunError, RunResult, TransportName
from simkit.scenario import Built, Scenario, ScenarioError

if TYPE_CHECKING:
    from simkit._realtime import ClientLaunch
    from simkit.channels import TcpTransport
    from simkit.simulation import Simulation, SimulationResult
    from simkit.trace import Trace

__all__ = [
    "LOOPBACK",
    "SERVER",
    "format_host_port",
    "launch_clients",
    "run_result",
    "simulate",
    "simulate_real",
    "tcp_transport",
    "write_trace",
]

LOOPBACK = "127.0.0.1"
"""Where a run over TCP listens (``run_scenario(transport="tcp")``)."""


def format_host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tcp_transport(
    host: str, book: Mapping[str, str] | None = None, *, token: str = ""
) -> TcpTransport:
    from simkit.channels import TcpTransport

    return TcpTransport(book, host=host, token=token)


def launch_clients(
    path: str | os.PathLike[str],
    scenario: Scenario,
    overrides: Iterable[str] | Mapping[str, Any] | None,
    names: list[str],
) -> ClientLaunch:
    from simkit._realtime import ClientLaunch, set_strings

    sets = [text for text in set_strings(overrides) if not text.startswith("seed=")]
    return ClientLaunch(os.fspath(path), scenario.config.seed, sets, names)


def simulate(sim: Simulation) -> tuple[Any, float]:
    from simkit.runtime import SimulationError
    from simkit.simulation import ActorFailed

    start = time.perf_counter()  # reporting only: never used in a decision
    try:
        result = sim.run()
    except (SimulationError, ActorFailed) as exc:
        raise RunError(f"the run failed: {exc}") from exc
    return result, time.perf_counter() - start


def simulate_real(
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


def run_result(
    scenario: Scenario,
    built: Built,
    handle: ProtocolRun,
    result: SimulationResult,
    wall: float,
    problems: list[tuple[str, str]],
    transport: TransportName,
    server: str | None = SERVER,
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
        privacy=_privacy(handle),
        tracebacks=list(result.tracebacks),
        unfired_faults=list(result.unfired),
        server=server,
    )


def _artifacts(handle: ProtocolRun) -> dict[str, Any]:
    """The protocol's optional extras for the report (``handle.artifacts()``)."""
    get = getattr(handle, "artifacts", None)
    if get is None:
        return {}
    found = get()
    return dict(found) if isinstance(found, Mapping) else {}


def _privacy(handle: ProtocolRun) -> dict[str, Any] | None:
    """The protocol's optional DP report (``handle.privacy()``; ``None``: none)."""
    get = getattr(handle, "privacy", None)
    found = get() if get is not None else None
    return dict(found) if isinstance(found, Mapping) else None


def write_trace(trace: Trace, path: str | os.PathLike[str]) -> None:
    from simkit.trace import write_jsonl

    try:
        write_jsonl(trace.events, path)
    except OSError as exc:
        raise ScenarioError(
            f"{os.fspath(path)}: cannot write trace: {exc.strerror or exc}"
        ) from exc
