"""simkit: deterministic virtual-time actor simulation for federated learning protocols.

The names below are imported on first use, so ``import simkit`` stays cheap
(no numpy-heavy or torch imports until needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from simkit._version import __version__
from simkit.rng import SeedTree

if TYPE_CHECKING:
    from simkit.actors import Actor, Context, PeerGone, Received
    from simkit.faults import FaultSchedule
    from simkit.heartbeat import HeartbeatConfig
    from simkit.messages import Message
    from simkit.runner import RunResult, arun_scenario, run_scenario
    from simkit.scenario import ScenarioError, load_scenario
    from simkit.simulation import Simulation, SimulationResult
    from simkit.trace import Trace

_LAZY: dict[str, str] = {
    "Actor": "simkit.actors",
    "Context": "simkit.actors",
    "PeerGone": "simkit.actors",
    "Received": "simkit.actors",
    "FaultSchedule": "simkit.faults",
    "HeartbeatConfig": "simkit.heartbeat",
    "Message": "simkit.messages",
    "RunResult": "simkit.runner",
    "run_scenario": "simkit.runner",
    "arun_scenario": "simkit.runner",
    "ScenarioError": "simkit.scenario",
    "load_scenario": "simkit.scenario",
    "Simulation": "simkit.simulation",
    "SimulationResult": "simkit.simulation",
    "Trace": "simkit.trace",
}

__all__ = [
    "Actor",
    "Context",
    "FaultSchedule",
    "HeartbeatConfig",
    "Message",
    "PeerGone",
    "Received",
    "RunResult",
    "ScenarioError",
    "SeedTree",
    "Simulation",
    "SimulationResult",
    "Trace",
    "__version__",
    "arun_scenario",
    "load_scenario",
    "run_scenario",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'simkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
