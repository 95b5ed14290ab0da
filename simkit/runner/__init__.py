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

from simkit.runner._entry import arun_scenario, run_client, run_scenario, serve_scenario
from simkit.runner._launch import LOOPBACK, SERVER, format_host_port
from simkit.runner._prepare import check_scenario, with_seed
from simkit.runner._results import (
    SUMMARY_KEYS,
    ClientResult,
    RunError,
    RunResult,
    TransportName,
)

__all__ = [
    "LOOPBACK",
    "SERVER",
    "SUMMARY_KEYS",
    "ClientResult",
    "RunError",
    "RunResult",
    "TransportName",
    "arun_scenario",
    "check_scenario",
    "format_host_port",
    "run_client",
    "run_scenario",
    "serve_scenario",
    "with_seed",
]
