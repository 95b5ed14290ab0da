"""Faults as data: validation, serialization, generators."""

from __future__ import annotations

import pytest

from simkit.faults import (
    Crash,
    Degrade,
    FaultError,
    FaultSchedule,
    Heal,
    Partition,
    Restart,
    Restore,
    Slowdown,
    Trigger,
    per_round_dropouts,
    random_crashes,
)
from simkit.rng import SeedTree

SCHEDULE = FaultSchedule(
    (
        Crash(at=1.5, actor="c1"),
        Crash(
            on=Trigger(kind="send", src="c3", type="MaskedInput", count=2), actor="c3", mode="loud"
        ),
        Restart(at=9.0, actor="c1"),
        Partition(at=2.0, groups=(("server",), ("c4", "c5"))),
        Heal(at=3.0),
        Degrade(at=4.0, actor="c2", latency={"kind": "uniform", "low": 0.1, "high": 0.5}, loss=0.1),
        Restore(at=5.0, actor="c2"),
        Slowdown(at=0.0, actor="c6", factor=4.0),
    )
)


def test_round_trips_through_dict_json_and_toml() -> None:
    assert FaultSchedule.from_dict(SCHEDULE.to_dict()) == SCHEDULE
    assert FaultSchedule.from_json(SCHEDULE.to_json()) == SCHEDULE
    assert FaultSchedule.from_toml(SCHEDULE.to_toml()) == SCHEDULE


def test_errors_name_the_entry_and_key() -> None:
    with pytest.raises(FaultError, match=r"plan.faults\[0\].kind"):
        FaultSchedule.from_dict({"faults": [{"kind": "explode"}]}, "plan")
    with pytest.raises(FaultError, match=r"faults\[0\]: unknown key 'when'"):
        FaultSchedule.from_dict({"faults": [{"kind": "crash", "actor": "a", "when": 3}]})
    with pytest.raises(FaultError, match="exactly one of 'at'"):
        Crash(actor="a")
    with pytest.raises(FaultError, match="mode"):
        Crash(at=1, actor="a", mode="noisy")  # type: ignore[arg-type]
    with pytest.raises(FaultError, match="count"):
        Trigger(count=0)
    with pytest.raises(FaultError, match=r"faults\[0\].on: unknown key 'nth'"):
        FaultSchedule.from_dict({"faults": [{"kind": "heal", "on": {"nth": 2}}]})
    with pytest.raises(FaultError, match="not valid TOML"):
        FaultSchedule.from_toml("[[faults]\n")


def test_trigger_matching() -> None:
    trig = Trigger(kind="deliver", dst="c1", type="TrainRequest")
    assert trig.matches("deliver", "server", "c1", "TrainRequest")
    assert not trig.matches("send", "server", "c1", "TrainRequest")
    assert not trig.matches("deliver", "server", "c2", "TrainRequest")


def test_generators_are_seeded_and_sorted() -> None:
    names = [f"c{i:02d}" for i in range(50)]
    a = random_crashes(names, SeedTree(1).numpy("f"), rate=0.3, window=(0, 10), restart_after=5)
    b = random_crashes(
        reversed(names), SeedTree(1).numpy("f"), rate=0.3, window=(0, 10), restart_after=5
    )
    assert a == b
    assert len(a) > 0
    assert all(0 <= f.at <= 15 for f in a if f.at is not None)
    drops = per_round_dropouts(
        names, SeedTree(2).numpy("d"), rate=0.2, rounds=5, round_type="TrainRequest"
    )
    actors = [f.actor for f in drops if isinstance(f, Crash)]
    assert len(actors) == len(set(actors))  # each drops at most once
    assert FaultSchedule.from_toml(drops.to_toml()) == drops


def test_a_schedule_replays_exactly_after_a_toml_round_trip() -> None:
    from simkit.demo import build_demo
    from simkit.simulation import Simulation

    original = build_demo(3)
    replayed_schedule = FaultSchedule.from_toml(original.faults.to_toml())
    replayed = build_demo(3)
    assert isinstance(replayed, Simulation)
    replayed.faults = replayed_schedule
    assert original.run().digest == replayed.run().digest
