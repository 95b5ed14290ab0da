"""The kit's strategies: valid, replayable, and shrinking toward simple runs."""

from __future__ import annotations

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from simkit.channels.memory import Constant
from simkit.faults import Crash, FaultSchedule, Restart
from simkit.testing import (
    fault_schedules,
    heartbeat_configs,
    network_models,
    replay_snippet,
    seeds,
    stage_crashes,
)

CLIENTS = ["c2", "c0", "c1", "c3"]
STAGES = ["Setup", "KeyList", "Ciphertexts", "UnmaskRequest"]


@given(fault_schedules(CLIENTS, stages=STAGES, rounds=3, horizon=50.0, restart_after=5.0))
@settings(max_examples=100)
def test_schedules_are_valid_and_replay_through_toml(schedule: FaultSchedule) -> None:
    assert len({f.actor for f in schedule if isinstance(f, Crash)}) == sum(
        isinstance(f, Crash) for f in schedule
    )
    assert FaultSchedule.from_toml(replay_snippet(schedule)) == schedule
    for fault in schedule:
        if isinstance(fault, Crash) and fault.on is not None:
            assert fault.on.type in STAGES
            assert 1 <= fault.on.count <= 3
            assert fault.on.dst == fault.actor


@given(fault_schedules(CLIENTS, stages=STAGES, max_faults=2))
def test_at_most_max_faults(schedule: FaultSchedule) -> None:
    assert len(schedule) <= 2


def test_a_failure_shrinks_to_one_late_silent_fault() -> None:
    minimal = find(
        fault_schedules(CLIENTS, stages=STAGES, rounds=3, max_faults=4),
        lambda s: len(s) >= 1,
        settings=settings(database=None),
    )
    (crash,) = minimal.faults
    assert isinstance(crash, Crash)
    assert crash.on is not None
    assert (crash.actor, crash.mode) == ("c0", "silent")
    assert (crash.on.type, crash.on.count) == ("UnmaskRequest", 3)  # last stage, last round


def test_a_failure_needing_one_client_shrinks_to_that_client_only() -> None:
    minimal = find(
        fault_schedules(CLIENTS, stages=STAGES, rounds=2, max_faults=4),
        lambda s: any(f.actor == "c2" for f in s if isinstance(f, Crash)),
        settings=settings(database=None),
    )
    assert [f.actor for f in minimal if isinstance(f, Crash)] == ["c2"]


def test_timed_faults_shrink_toward_the_horizon() -> None:
    minimal = find(
        fault_schedules(CLIENTS, horizon=40.0, restart_after=3.0),
        lambda s: len(s) >= 1,
        settings=settings(database=None),
    )
    assert minimal.faults == (Crash(at=40.0, actor="c0", mode="silent"),)


def test_restarts_follow_their_crash() -> None:
    schedule = find(
        fault_schedules(CLIENTS, horizon=10.0, restart_after=2.5),
        lambda s: any(isinstance(f, Restart) for f in s),
        settings=settings(database=None),
    )
    crash, restart = schedule.faults
    assert isinstance(crash, Crash)
    assert isinstance(restart, Restart)
    assert restart.actor == crash.actor
    assert restart.at == pytest.approx((crash.at or 0.0) + 2.5)


def test_networks_shrink_to_an_ideal_one() -> None:
    model = find(network_models(max_loss=0.2), lambda m: True, settings=settings(database=None))
    assert model.default.latency == Constant(0.0)
    assert model.default.bandwidth is None
    assert model.default.loss == 0.0


@given(network_models(max_latency=0.05, max_loss=0.1), heartbeat_configs(), seeds())
def test_networks_and_heartbeats_are_valid(model: object, hb: object, seed: int) -> None:
    assert 0 <= seed < 2**32


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (lambda: fault_schedules(CLIENTS), "stages=, horizon="),
        (lambda: fault_schedules(CLIENTS, stages=STAGES, min_faults=3, max_faults=1), "min_faults"),
        (lambda: stage_crashes([], STAGES), "at least one client"),
        (lambda: stage_crashes(CLIENTS, []), "at least one stage"),
        (lambda: stage_crashes(CLIENTS, STAGES, rounds=0), "rounds"),
    ],
)
def test_bad_arguments_say_what_is_wrong(call: object, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        call()  # type: ignore[operator]


def test_snippet_names_the_command() -> None:
    schedule = FaultSchedule((Crash(at=3.0, actor="c1"),))
    text = replay_snippet(schedule, scenario="scenarios/dropouts.toml", seed=4)
    assert "simkit run scenarios/dropouts.toml --seed 4 --faults faults.toml" in text
    assert FaultSchedule.from_toml(text) == schedule
    assert FaultSchedule.from_toml(replay_snippet(FaultSchedule())) == FaultSchedule()


def test_stage_strategy_draws_every_stage() -> None:
    seen: set[str] = set()

    @given(stage_crashes(CLIENTS, STAGES))
    @settings(max_examples=200, database=None)
    def collect(crash: Crash) -> None:
        assert crash.on is not None
        seen.add(crash.on.type)

    collect()
    assert seen == set(STAGES)


def test_seeds_shrink_to_zero() -> None:
    assert find(seeds(), lambda s: True, settings=settings(database=None)) == 0
    assert find(st.just(1), lambda s: True) == 1
