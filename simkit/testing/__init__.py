"""The property-based protocol testing kit.

- :mod:`simkit.testing.strategies`: hypothesis strategies (fault schedules,
  network models, seeds, heartbeats) that shrink toward fewer, later faults;
- :mod:`simkit.testing.invariants`: runtime, FedAvg and SecAgg invariants
  that explain themselves when they fail;
- :func:`simulate` (one fresh simulation per example) and
  :class:`ActorStateMachine` (actors alive across the steps of a
  hypothesis state machine, in one virtual loop);
- :func:`replay_snippet` / :func:`note_schedule`: a shrunk failing fault
  schedule as a TOML file that ``simkit run --faults`` replays exactly;
- a pytest plugin (:mod:`simkit.testing.plugin`) with ``--simkit-seed`` and
  ``--simkit-check-determinism``.

Importing this package imports hypothesis (a test dependency).
See docs/testing.md for a tutorial.
"""

from simkit.testing._run import (
    NondeterministicRun,
    note_schedule,
    replay_snippet,
    run_scenario_example,
    set_check_determinism,
    simulate,
)
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
    scenarios,
    seeds,
    stage_crashes,
    timed_crashes,
)

__all__ = [
    "ActorStateMachine",
    "InvariantViolation",
    "NondeterministicRun",
    "RuntimeRules",
    "check_no_clear_update",
    "check_rounds",
    "check_runtime_rules",
    "check_secure_sum",
    "check_terminates",
    "check_weighted_mean",
    "fault_schedules",
    "heartbeat_configs",
    "latencies",
    "network_models",
    "note_schedule",
    "replay_snippet",
    "run_scenario_example",
    "scenarios",
    "seeds",
    "set_check_determinism",
    "simulate",
    "stage_crashes",
    "timed_crashes",
]
