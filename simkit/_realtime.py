"""Real-time runs over TCP: one loop, the server's address, client processes.

:func:`run_real` drives a :class:`~simkit.simulation.Simulation` built on a
:class:`~simkit.channels.TcpTransport` in real time. It reports the address
the server actor listens at once it does (``simkit serve`` prints it), starts
one ``python -m simkit client`` process per client when asked
(``run_scenario(..., processes=True)``), and after the run waits for those
processes to end and closes the transport, flushing what is still queued.

Wall-clock time is read here on purpose: this module only runs in real mode.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import anyio
import anyio.abc

from simkit.channels import TcpTransport
from simkit.simulation import Simulation, SimulationResult

__all__ = ["ClientLaunch", "ClientsFailed", "run_real", "set_strings"]


class ClientsFailed(RuntimeError):
    """Every client process ended with an error while the server still waited for them."""


_POLL = 0.005  # seconds between looks at the address book while the server starts
_STDERR_TAIL = 4096  # bytes of a failed client's stderr kept for its error line


@dataclass(frozen=True, slots=True)
class ClientLaunch:
    """How to start the client processes of a run.

    Each runs ``python -m simkit client SCENARIO --name NAME --server ADDRESS
    --seed SEED [--set K=V ...]`` with this interpreter and this process's
    import path, so it loads the same simkit and protocol code.

    Attributes:
        scenario: The scenario file.
        seed: The run's seed.
        overrides: ``--set`` strings, passed on unchanged.
        names: The clients, one process each.
        token: The shared token (empty: none).
        exit_timeout: Seconds a client may take to exit once the server is done.
    """

    scenario: str
    seed: int
    overrides: Sequence[str]
    names: Sequence[str]
    token: str = ""
    exit_timeout: float = 30.0

    def argv(self, name: str, address: str) -> list[str]:
        """The command line of client ``name`` joining the server at ``address``."""
        argv = [sys.executable, "-m", "simkit", "client", self.scenario]
        argv += ["--name", name, "--server", address, "--seed", str(self.seed), "--quiet"]
        for text in self.overrides:
            argv += ["--set", text]
        return argv

    def env(self) -> dict[str, str]:
        """This environment, with this process's import path as ``PYTHONPATH``.

        The token travels in ``SIMKIT_TOKEN``, not on the command line, where
        other users could read it.
        """
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env["SIMKIT_TOKEN"] = self.token
        return env


def set_strings(overrides: Iterable[str] | Mapping[str, Any] | None) -> list[str]:
    """Overrides as ``--set`` strings (a mapping's values written as TOML)."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={_toml(value)}" for key, value in overrides.items()]
    return list(overrides)


def _toml(value: Any) -> str:
    """A TOML value: booleans, numbers, strings, arrays and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if math.isfinite(value) else str(value)  # inf, -inf, nan
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot pass {value!r} to a client process as a --set value")


@dataclass(slots=True)
class _Client:
    name: str
    process: anyio.abc.Process
    stderr: IO[bytes]


@dataclass(slots=True)
class _Outcome:
    result: SimulationResult | None = None
    error: Exception | None = None
    done: anyio.Event = field(default_factory=anyio.Event)


async def run_real(
    sim: Simulation,
    transport: TcpTransport,
    *,
    server: str = "server",
    on_listening: Callable[[str], None] | None = None,
    launch: ClientLaunch | None = None,
) -> tuple[SimulationResult, list[tuple[str, str]]]:
    """Run ``sim`` in the current (real-time) loop.

    Args:
        sim: The simulation, built on ``transport``.
        transport: Its TCP transport (closed at the end).
        server: The server actor's name.
        on_listening: Called with ``host:port`` once the server actor listens.
        launch: Start these client processes once the server listens.

    Returns:
        The simulation's result and ``(client, problem)`` for each client
        process that failed (exited with an error, or had to be killed).

    Raises:
        ClientsFailed: Every client process failed before the run ended (the
            run is stopped rather than left waiting for clients that are gone).
        Exception: Whatever the simulation raised.
    """
    outcome = _Outcome()
    clients: list[_Client] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_simulate, sim, outcome)
            if on_listening is not None or launch is not None:
                address = await _listening(transport, server, outcome.done)
                if address is not None and on_listening is not None:
                    on_listening(address)
                if address is not None and launch is not None:
                    clients = await _start(launch, address)
                    tg.start_soon(_watch, clients, outcome, tg.cancel_scope)
            await outcome.done.wait()
            tg.cancel_scope.cancel()  # the watcher, if the run ended first
        problems = await _reap(clients, launch.exit_timeout if launch is not None else 0.0)
    finally:
        with anyio.CancelScope(shield=True):
            for client in clients:
                await _kill(client)
            await transport.aclose()
    if outcome.error is not None:
        raise outcome.error
    assert outcome.result is not None
    return outcome.result, problems


async def _simulate(sim: Simulation, outcome: _Outcome) -> None:
    try:
        outcome.result = await sim.run_async()
    except Exception as exc:  # re-raised by run_real once the processes are reaped
        outcome.error = exc
    finally:
        outcome.done.set()


async def _watch(clients: list[_Client], outcome: _Outcome, scope: anyio.CancelScope) -> None:
    """Stop the run if every client process fails while it goes on."""
    for client in clients:
        await client.process.wait()
    if outcome.done.is_set() or any(c.process.returncode == 0 for c in clients):
        return
    first = clients[0]
    outcome.error = ClientsFailed(
        f"every client process failed ({first.name} exited with "
        f"{first.process.returncode}{_tail(first)})"
    )
    outcome.done.set()
    scope.cancel()


async def _listening(transport: TcpTransport, name: str, done: anyio.Event) -> str | None:
    """The address ``name`` listens at, once it does; ``None`` if the run ends first."""
    while not done.is_set():
        address = transport.listening_at(name)
        if address is not None:
            return address
        await anyio.sleep(_POLL)
    return None


async def _start(launch: ClientLaunch, address: str) -> list[_Client]:
    env = launch.env()
    clients: list[_Client] = []
    for name in launch.names:
        stderr = tempfile.TemporaryFile()
        try:
            process = await anyio.open_process(
                launch.argv(name, address),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
            )
        except BaseException:
            stderr.close()
            with anyio.CancelScope(shield=True):
                for client in clients:
                    await _kill(client)
            raise
        clients.append(_Client(name, process, stderr))
    return clients


async def _reap(clients: list[_Client], timeout: float) -> list[tuple[str, str]]:
    """Wait for every client process; ``(name, problem)`` for those that failed."""
    problems: list[tuple[str, str]] = []
    with anyio.move_on_after(timeout):
        for client in clients:
            await client.process.wait()
    for client in clients:
        code = client.process.returncode
        if code is None:
            problems.append((client.name, f"still running {timeout:g} s after the run; killed"))
        elif code != 0:
            problems.append((client.name, f"client process exited with {code}{_tail(client)}"))
    return problems


def _tail(client: _Client) -> str:
    """``: <last line of stderr>``, or nothing."""
    stream = client.stderr
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - _STDERR_TAIL))
    lines = [line for line in stream.read().decode(errors="replace").splitlines() if line.strip()]
    return f": {lines[-1].strip()}" if lines else ""


async def _kill(client: _Client) -> None:
    """End a client process that is still running, and reap it."""
    if client.process.returncode is None:
        client.process.kill()
    await client.process.wait()
    client.stderr.close()
