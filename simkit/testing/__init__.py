"""The property-based protocol testing kit.

- strategies (:mod:`simkit.testing.strategies`): ``scenarios(protocol=...)``
  for any protocol plugin (its options drawn from the strategies it declares
  or from its option model), fault schedules, speeds, network models, seeds,
  heartbeats; they shrink toward fewer, later faults and default options;
- :mod:`simkit.testing.invariants`: runtime, FedAvg and SecAgg invariants
  that explain themselves when they fail;
- :func:`simulate` and :func:`run_scenario_example`: one fresh simulation
  (or scenario run) per example, rerun and compared event by event when
  determinism is checked; :class:`ActorStateMachine` (actors alive across
  the steps of a hypothesis state machine, in one virtual loop);
- replay: :func:`replay_file` / :func:`note_replay` write a failing example
  (scenario, drawn values and faults) as one scenario file ``simkit run``
  accepts, with a record of the failure that :func:`reproduce` (``simkit
  replay FILE``) re-checks; :func:`replay_snippet` / :func:`note_schedule` a
  fault file;
- :func:`kit_settings`: Hypothesis settings without deadline or explain phase;
- a pytest plugin (:mod:`simkit.testing.plugin`) with ``--simkit-seed`` and
  ``--simkit-check-determinism``.

Names are imported on first use (the pytest plugin lives in this package and
must not import hypothesis). See docs/testing.md for a tutorial.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simkit.testing._record import ReplayFileError, ReplayRecord
    from simkit.testing._replay import note_replay, replay_file, scenario_toml
    from simkit.testing._reproduce import ReplayOutcome, reproduce
    from simkit.testing._run import (
        NondeterministicRun,
        note_schedule,
        replay_snippet,
        run_scenario_example,
        set_check_determinism,
        simulate,
    )
    from simkit.testing._settings import kit_settings
    from simkit.testing.invariants import (
        InvariantViolation,
        RuntimeRules,
        check_no_clear_update,
        check_rounds,
        check_runtime_rules,
        check_secure_sum,
        check_terminates,
        check_weighted_mean,
    )
    from simkit.testing.machine import ActorStateMachine
    from simkit.testing.strategies import (
        fault_schedules,
        heartbeat_configs,
        latencies,
        network_models,
        protocol_options,
        scenarios,
        seeds,
        speeds,
        stage_crashes,
        timed_crashes,
    )

_LAZY: dict[str, str] = {
    "ReplayFileError": "simkit.testing._record",
    "ReplayRecord": "simkit.testing._record",
    "ReplayOutcome": "simkit.testing._reproduce",
    "reproduce": "simkit.testing._reproduce",
    "note_replay": "simkit.testing._replay",
    "replay_file": "simkit.testing._replay",
    "scenario_toml": "simkit.testing._replay",
    "NondeterministicRun": "simkit.testing._run",
    "note_schedule": "simkit.testing._run",
    "replay_snippet": "simkit.testing._run",
    "run_scenario_example": "simkit.testing._run",
    "set_check_determinism": "simkit.testing._run",
    "simulate": "simkit.testing._run",
    "kit_settings": "simkit.testing._settings",
    "InvariantViolation": "simkit.testing.invariants",
    "RuntimeRules": "simkit.testing.invariants",
    "check_no_clear_update": "simkit.testing.invariants",
    "check_rounds": "simkit.testing.invariants",
    "check_runtime_rules": "simkit.testing.invariants",
    "check_secure_sum": "simkit.testing.invariants",
    "check_terminates": "simkit.testing.invariants",
    "check_weighted_mean": "simkit.testing.invariants",
    "ActorStateMachine": "simkit.testing.machine",
    "fault_schedules": "simkit.testing.strategies",
    "heartbeat_configs": "simkit.testing.strategies",
    "latencies": "simkit.testing.strategies",
    "network_models": "simkit.testing.strategies",
    "protocol_options": "simkit.testing.strategies",
    "scenarios": "simkit.testing.strategies",
    "seeds": "simkit.testing.strategies",
    "speeds": "simkit.testing.strategies",
    "stage_crashes": "simkit.testing.strategies",
    "timed_crashes": "simkit.testing.strategies",
}

__all__ = [
    "ActorStateMachine",
    "InvariantViolation",
    "NondeterministicRun",
    "ReplayFileError",
    "ReplayOutcome",
    "ReplayRecord",
    "RuntimeRules",
    "check_no_clear_update",
    "check_rounds",
    "check_runtime_rules",
    "check_secure_sum",
    "check_terminates",
    "check_weighted_mean",
    "fault_schedules",
    "heartbeat_configs",
    "kit_settings",
    "latencies",
    "network_models",
    "note_replay",
    "note_schedule",
    "protocol_options",
    "replay_file",
    "replay_snippet",
    "reproduce",
    "run_scenario_example",
    "scenario_toml",
    "scenarios",
    "seeds",
    "set_check_determinism",
    "simulate",
    "speeds",
    "stage_crashes",
    "timed_crashes",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'simkit.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
