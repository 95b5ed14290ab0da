"""FedAvg properties under generated scenarios and fault schedules (the testing kit).

For any small scenario and any schedule of client crashes (when a client's
r-th TrainRequest arrives, or at a virtual time, silent or loud): the run
ends within its virtual-time bound; rounds keep their bookkeeping (replied
and failed split sampled, a completed round had enough replies, a crashed
client never replies again); every update the server applies is exactly the
weighted mean of the replies it used; every crashed client that was asked
again is listed as dropped; and the same seed replays the same run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.fedavg import FedAvgCore, RoundOutcome
from simkit.faults import Crash, FaultSchedule
from simkit.scenario import client_names
from simkit.testing import (
    check_rounds,
    check_terminates,
    check_weighted_mean,
    fault_schedules,
    note_schedule,
    run_scenario_example,
    scenarios,
)
from simkit.training import TrainResult

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@st.composite
def runs(draw: st.DrawFn) -> tuple[dict[str, Any], FaultSchedule]:
    scenario = draw(scenarios(max_clients=8, max_rounds=3))
    names = client_names(scenario["clients"]["count"])
    faults = draw(
        fault_schedules(
            names,
            stages=["TrainRequest"],
            rounds=scenario["rounds"],
            horizon=2.0,
            max_faults=3,
        )
    )
    return scenario, faults


class Recorder:
    """Wraps FedAvgCore.aggregate to check each applied update (FedAvg, server lr 1)."""

    def __init__(self) -> None:
        self.checked = 0

    def wrap(self, original: Any) -> Any:
        def aggregate(core: FedAvgCore, results: dict[str, TrainResult]) -> RoundOutcome:
            before = core.weights
            outcome = original(core, results)
            if outcome.updated:
                delta = core.weights - before
                for key, got in delta.to_dict().items():
                    parts = {
                        c: (r.updates.updates.to_dict()[key] / r.updates.weight, r.updates.weight)
                        for c, r in results.items()
                    }
                    check_weighted_mean(got, parts, rtol=1e-9, atol=1e-12)
                self.checked += 1
            return outcome

        return aggregate


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_fedavg_keeps_its_invariants_under_any_crashes(
    run: tuple[dict[str, Any], FaultSchedule],
) -> None:
    scenario, faults = run
    note_schedule(faults, scenario="example.toml", seed=scenario["seed"])
    recorder = Recorder()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FedAvgCore, "aggregate", recorder.wrap(FedAvgCore.aggregate))
        result = run_scenario_example(scenario, faults=faults, check_determinism=True)
    protocol = scenario["protocol"]
    # joining takes at most join_timeout (60 s); a round its deadline, or
    # join_timeout more when it has to wait for min_clients to (re)join.
    bound = 60.0 + scenario["rounds"] * (60.0 + protocol["round_timeout"] + 1.0)
    check_terminates(result.virtual_time_s, bound)
    crashed_at = (
        {e.src: e.t for e in result.trace.events if e.kind == "crash" and e.src in result.clients}
        if result.trace.keep
        else {}
    )
    check_rounds(result.rounds, min_replies=protocol["min_replies"], crashed_at=crashed_at)
    assert recorder.checked == 2 * result.rounds_completed  # ran twice (determinism)
    # a crashed client asked again (or crashed while asked) is listed as dropped
    crashed = {f.actor for f in faults if isinstance(f, Crash)}
    asked_after = {
        c for r in result.rounds for c in r.sampled if c in crashed_at and crashed_at[c] <= r.t_end
    }
    assert asked_after <= set(result.dropped) or not crashed
    assert all(np.all(np.isfinite(a)) for a in result.weights.to_dict().values())


def test_a_known_crash_schedule_is_replayed_from_its_snippet(tmp_path: Any) -> None:
    # The kit's replay path end to end: a drawn schedule's TOML snippet, saved
    # and passed back as a fault file, gives the same run.
    from simkit.runner import run_scenario
    from simkit.testing import replay_snippet

    scenario = {
        "name": "example",
        "seed": 5,
        "rounds": 2,
        "clients": {"count": 4},
        "data": {"samples": 30, "dim": 5, "classes": 3},
    }
    names = client_names(4)
    schedule = FaultSchedule((Crash(actor=names[-1], at=0.05, mode="silent"),))
    path = tmp_path / "faults.toml"
    path.write_text(replay_snippet(schedule, scenario="example.toml", seed=scenario["seed"]))
    a = run_scenario(scenario, faults=schedule).summary()
    b = run_scenario(scenario, faults=path).summary()
    assert a["trace_digest"] == b["trace_digest"]
