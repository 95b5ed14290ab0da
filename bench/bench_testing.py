"""Property-testing speed (issue 8). Prints one JSON object; asserts nothing.

Examples per second of a hypothesis property over one 10-client FedAvg
round in virtual time: each example draws a fault schedule (up to 3 client
crashes, at a protocol stage or a virtual time) and a seed, runs the
scenario on a fresh virtual loop, and checks the kit's FedAvg invariants
(termination bound, round bookkeeping). Measured without and with
``check_determinism`` (every example run twice and the digests compared).

Usage: ``python bench/bench_testing.py [--quick] [--examples N]``
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simkit.faults import FaultSchedule
from simkit.scenario import client_names
from simkit.testing import check_rounds, check_terminates, fault_schedules, run_scenario_example

CLIENTS = client_names(10)
SCENARIO: dict[str, Any] = {
    "name": "bench",
    "rounds": 1,
    "protocol": {"name": "fedavg", "round_timeout": 10.0, "min_replies": 1},
    "clients": {"count": 10},
    "data": {"alpha": 0.5, "beta": 0.5, "samples": 50, "dim": 20, "classes": 5},
    "training": {"batch_size": 10, "n_epoch": 1},
    "network": {"latency": 0.01},
    "heartbeat": {"interval": 1.0, "misses": 3},
    "run": {"trace_heartbeats": False},
}


def measure(examples: int, check_determinism: bool) -> dict[str, Any]:
    count = 0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.integers(0, 2**32 - 1),
        fault_schedules(CLIENTS, stages=["TrainRequest"], rounds=1, horizon=1.0, max_faults=3),
    )
    def prop(seed: int, faults: FaultSchedule) -> None:
        nonlocal count
        result = run_scenario_example(
            {**SCENARIO, "seed": seed}, faults=faults, check_determinism=check_determinism
        )
        check_terminates(result.virtual_time_s, 60.0 + 10.0 + 60.0)
        check_rounds(result.rounds, min_replies=1)
        count += 1

    start = time.perf_counter()
    prop()
    wall = time.perf_counter() - start
    return {
        "examples": count,
        "wall_s": round(wall, 3),
        "examples_per_s": round(count / wall, 1),
        "check_determinism": check_determinism,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--examples", type=int, default=None)
    args = parser.parse_args()
    n = args.examples or (50 if args.quick else 500)
    report = {
        "fedavg_round_property_10_clients": measure(n, check_determinism=False),
        "fedavg_round_property_10_clients_determinism": measure(n, check_determinism=True),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
