"""FedBuff properties under generated scenarios and crash schedules (the testing kit).

For any small scenario, any FedBuff settings and any schedule of client
crashes (on a client's k-th TrainRequest or at a virtual time, silent or
loud, some restarting): the run ends, either after its last update or
stopped by ``update_timeout`` with the reason in the log, within a bound;
updates are numbered in order and do not overlap; each record's names are
sorted known clients, and a client that crashed for good never has an update
in a buffer that started after its crash; a crash the heartbeat could see
before the last update is listed as dropped; weights stay finite; and the
same seed replays the same run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simkit.faults import Crash, FaultSchedule, Restart
from simkit.scenario import client_names
from simkit.testing import (
    check_terminates,
    fault_schedules,
    note_schedule,
    run_scenario_example,
    scenarios,
)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

UPDATE_TIMEOUT = 10.0


@st.composite
def runs(draw: st.DrawFn) -> tuple[dict[str, Any], FaultSchedule]:
    scenario = draw(scenarios(max_clients=8, max_rounds=6))
    count = scenario["clients"]["count"]
    scenario["protocol"] = {
        "name": "fedbuff",
        "buffer_size": draw(st.integers(1, count + 2)),
        "concurrency": draw(st.one_of(st.none(), st.integers(1, count))),
        "staleness": draw(st.sampled_from(["polynomial", "constant", "hinge"])),
        "max_staleness": draw(st.one_of(st.none(), st.integers(0, 3))),
        "sync_interval": draw(st.integers(1, 3)),
        "update_timeout": UPDATE_TIMEOUT,
    }
    scenario["clients"]["speeds"] = {"kind": "lognormal", "median": 1.0, "sigma": 0.8}
    names = client_names(count)
    faults = draw(
        fault_schedules(
            names,
            stages=["TrainRequest"],
            rounds=2 * scenario["rounds"],
            horizon=1.0,
            max_faults=3,
            restart_after=0.5,
        )
    )
    return scenario, faults


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_fedbuff_keeps_its_invariants_under_any_crashes(
    run: tuple[dict[str, Any], FaultSchedule],
) -> None:
    scenario, faults = run
    note_schedule(faults, scenario="example.toml", seed=scenario["seed"])
    result = run_scenario_example(scenario, faults=faults, check_determinism=True)
    rounds = scenario["rounds"]
    stopped = [
        e.info
        for e in result.trace.events
        if e.kind == "log" and e.src == "server" and e.info.startswith("no training reply")
    ]
    assert result.rounds_completed == rounds or stopped
    # joining takes at most join_timeout (60 s); then progress, or a stop
    # update_timeout after the last training reply
    check_terminates(result.virtual_time_s, 60.0 + UPDATE_TIMEOUT + 5.0 + rounds * 2.0)
    restarted = {f.actor for f in faults if isinstance(f, Restart)}
    crashed_at = {e.src: e.t for e in result.trace.events if e.kind == "crash"}
    known = set(result.clients)
    previous_end = -float("inf")
    for i, r in enumerate(result.rounds, start=1):
        assert r.round == i
        assert previous_end <= r.t_start <= r.t_end
        previous_end = r.t_end
        assert r.replied == r.sampled
        assert r.replied
        for names in (r.replied, r.failed):
            assert list(names) == sorted(set(names))
            assert set(names) <= known
        ghosts = [
            c
            for c in r.replied
            if c in crashed_at and c not in restarted and crashed_at[c] < r.t_start
        ]
        assert not ghosts, f"update {r.round}: {ghosts} crashed before it started"
    heartbeat = scenario["heartbeat"]
    seen_by = heartbeat["interval"] * (heartbeat["misses"] + 1) + 0.2
    if result.rounds:
        last = result.rounds[-1].t_end
        visible = {c for c, t in crashed_at.items() if t + seen_by < last}
        assert visible <= set(result.dropped)
    assert all(np.all(np.isfinite(a)) for a in result.weights.to_dict().values())
    assert {f.actor for f in faults if isinstance(f, Crash)} >= set(crashed_at) - {"server"}
