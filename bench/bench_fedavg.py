"""FedAvg at scale (issue 5). Prints one JSON object; asserts nothing.

Each case runs ``scenarios/scale.toml`` (numpy logistic regression of
dimension 100, 10 classes) in a fresh child process, so its peak RSS is its
own, and reports wall time (whole process: imports, data, simulation), the
simulation's own wall time, peak RSS, messages, bytes and the digests. Each
case runs twice: the digests must match (the run is reproducible).

1. ``fedavg_1000x3``: 1,000 clients x 3 rounds, full participation (the
   setting of the Flower / DecLearn figures in the README: 38 s and 22 s).
2. ``fedavg_10000x1_dropouts``: 10,000 clients x 1 round, 10 % of them drop
   silently when their training request arrives; heartbeats every 5 s with
   3 misses, a 60 s round deadline.

Usage: ``python bench/bench_fedavg.py [--quick]`` (quick: 100 and 1,000 clients).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SCALE = Path(__file__).resolve().parents[1] / "scenarios" / "scale.toml"

# The child reads its own high-water mark (VmHWM): ``ru_maxrss`` survives
# ``exec`` on Linux and would report this process's peak if it were larger.
CHILD = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from simkit.runner import run_scenario
result = run_scenario({path!r}, overrides={overrides!r})
s = result.summary()
print(json.dumps({{
    "process_s": round(time.perf_counter() - t0, 3),
    "process_cpu_s": round(time.process_time() - c0, 3),
    "sim_wall_s": s["wall_time_s"],
    "virtual_time_s": s["virtual_time_s"],
    "rounds_completed": s["rounds_completed"],
    "dropped": len(s["dropped"]),
    "messages": s["messages"],
    "bytes": s["bytes"],
    "trace_digest": s["trace_digest"],
    "weights_digest": s["weights_digest"],
    "accuracy": s["metrics"][-1].get("accuracy"),
    "peak_rss_mib": round(int(next(
        line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")
    )) / 1024, 1),
}}))
"""


def run_child(overrides: list[str], path: Path = SCALE) -> dict[str, Any]:
    """One run of ``path`` in a fresh interpreter: its report, wall time and peak RSS.

    Also used by ``bench_secagg.py``.
    """
    code = CHILD.format(path=str(path), overrides=overrides)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    report["wall_s"] = round(wall, 3)
    return report


def case(name: str, overrides: list[str]) -> dict[str, Any]:
    first = run_child(overrides)
    second = run_child(overrides)
    first["reproducible"] = (first["trace_digest"], first["weights_digest"]) == (
        second["trace_digest"],
        second["weights_digest"],
    )
    first["wall_s_second_run"] = second["wall_s"]
    first["case"] = name
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = parser.parse_args()
    small, big = (100, 1_000) if args.quick else (1_000, 10_000)
    dropouts = case(
        f"fedavg_{big}x1_dropouts",
        [
            f"clients.count={big}",
            "rounds=1",
            "heartbeat.interval=5.0",
            "heartbeat.misses=3",
            "faults.dropout.fraction=0.1",
            'faults.dropout.when="round"',
            'faults.dropout.message="TrainRequest"',
        ],
    )
    full = case(f"fedavg_{small}x3", [f"clients.count={small}", "rounds=3"])
    print(json.dumps({"fedavg_full": full, "fedavg_dropouts": dropouts}, indent=2))


if __name__ == "__main__":
    main()
