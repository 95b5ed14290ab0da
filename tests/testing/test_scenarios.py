"""``scenarios(protocol=...)`` for any plugin, and replay files that ``simkit run`` accepts."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import find, given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from simkit.faults import Crash, FaultSchedule, Restart, Trigger
from simkit.runner import run_scenario
from simkit.testing import (
    kit_settings,
    protocol_options,
    replay_file,
    run_scenario_example,
    scenario_toml,
    scenarios,
)
from simkit.testing._options import derive_option_strategies, option_model, resolve_protocol

PROTOCOLS: dict[str, dict[str, Any]] = {
    "fedavg": {"protocol": "fedavg"},
    "fedbuff": {"protocol": "fedbuff"},
    # the entry point may be missing from an install made before gossip was registered
    "gossip": {"protocol": "protocols.gossip:PLUGIN"},
    # a secure round needs a cohort of at least 2: sample every client
    "fedavg+secagg": {
        "protocol": "fedavg",
        "min_clients": 3,
        "options": {"fraction": 1.0},
        "overrides": {"secagg.mode": "secagg"},
    },
    "fake": {"protocol": "tests.scenario.fakeproto:PLUGIN"},
    "user": {"protocol": "tests.testing.test_user_protocol:PLUGIN"},
}


def check_runs(kind: str, max_examples: int) -> None:
    arguments = {"max_clients": 6, **PROTOCOLS[kind]}

    @kit_settings(max_examples=max_examples, database=None)
    @given(scenarios(**arguments))
    def runs(scenario: dict[str, Any]) -> None:
        assert scenario["protocol"]["name"] == arguments["protocol"]
        result = run_scenario_example(scenario)
        assert not result.errors, result.errors
        assert len(result.rounds) <= scenario["rounds"]

    runs()


@pytest.mark.parametrize("kind", sorted(PROTOCOLS))
def test_scenarios_run_for_every_protocol(kind: str) -> None:
    check_runs(kind, 12)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(PROTOCOLS))
def test_scenarios_run_for_every_protocol_100_examples(kind: str) -> None:
    check_runs(kind, 100)


def test_fedbuff_options_are_its_own() -> None:
    table = find(
        protocol_options("fedbuff"),
        lambda t: t["staleness"] == "hinge" and t["concurrency"] is not None,
        settings=kit_settings(database=None, max_examples=500),
    )
    assert table["name"] == "fedbuff"
    assert "fraction" not in table  # a FedAvg key
    assert table["concurrency"] == 1  # shrunk to the smallest valid value


def test_fixed_options_and_overrides_replace_drawn_values() -> None:
    strategy = scenarios(
        protocol="fedavg",
        options={"round_timeout": 5.0, "min_replies": st.just(2)},
        overrides={"secagg.mode": "secagg", "clients.count": st.just(4)},
    )
    scenario = find(strategy, lambda s: True, settings=kit_settings(database=None))
    assert scenario["protocol"]["round_timeout"] == 5.0
    assert scenario["protocol"]["min_replies"] == 2
    assert scenario["secagg"] == {"mode": "secagg"}
    assert scenario["clients"]["count"] == 4


class Knobs(BaseModel):
    rate: float = Field(default=0.5, gt=0, le=1)
    tries: int | None = Field(default=None, ge=2, lt=5)
    mode: Literal["a", "b"] = "a"
    flag: bool = False


@dataclass
class DataKnobs:
    timeout: float = 10.0
    count: int = 3
    label: str = "x"  # no derived strategy: keeps its default


class Required(BaseModel):
    label: str


@given(st.fixed_dictionaries(derive_option_strategies(Knobs)))
def test_pydantic_constraints_bound_the_drawn_values(values: dict[str, Any]) -> None:
    Knobs.model_validate(values)  # never out of bounds


@given(st.fixed_dictionaries(derive_option_strategies(DataKnobs)))
def test_dataclass_numbers_stay_on_their_defaults_side(values: dict[str, Any]) -> None:
    assert 0 < values["timeout"] <= 10.0
    assert values["count"] >= 1
    assert values["label"] == "x"


def test_a_required_field_without_a_strategy_is_named() -> None:
    with pytest.raises(TypeError, match=r"Required\.label: no strategy for the type"):
        derive_option_strategies(Required)


def test_options_a_protocol_refuses_are_named_at_once() -> None:
    with pytest.raises(
        ValueError, match=r"fakeproto:PLUGIN'\): the options .* refused: .*unknown key"
    ):
        scenarios(protocol="tests.scenario.fakeproto:PLUGIN", options={"fraction": 0.5})


def test_options_come_from_the_plugins_model_or_nowhere() -> None:
    assert option_model(resolve_protocol("fedavg")[1]).__name__ == "FedAvgOptions"  # type: ignore[union-attr]
    assert option_model(resolve_protocol("tests.testing.test_user_protocol:PLUGIN")[1]) is not None
    assert option_model(resolve_protocol("tests.scenario.fakeproto:PLUGIN")[1]) is None
    with pytest.raises(ValueError, match="unknown protocol"):
        resolve_protocol("no-such-protocol")
    with pytest.raises(ValueError, match="cannot load"):
        resolve_protocol("tests.nowhere:PLUGIN")


SCHEDULE = FaultSchedule(
    (
        Crash(
            actor="c001",
            mode="silent",
            on=Trigger(kind="deliver", dst="c001", type="TrainRequest", count=2),
        ),
        Crash(actor="c000", at=0.5, mode="loud"),
        Restart(actor="c000", at=1.5),
    )
)


def test_a_replay_file_is_a_scenario_simkit_run_replays_exactly(tmp_path: Path) -> None:
    scenario = find(
        scenarios(protocol="fedavg", min_clients=3, max_clients=3, max_rounds=2),
        lambda s: s["rounds"] == 2 and s["clients"]["speeds"]["kind"] == "list",
        settings=kit_settings(database=None, max_examples=500),
    )
    path = replay_file(tmp_path / "replay.toml", scenario, SCHEDULE)
    text = path.read_text()
    assert text.startswith(f"# Replays exactly with:\n#   simkit run {path}\n")
    assert 'on = { kind = "deliver", dst = "c001", type = "TrainRequest", count = 2 }' in text
    assert "_schedule" not in text
    assert "build(" not in text
    data = tomllib.loads(text)
    assert data["clients"]["speeds"] == scenario["clients"]["speeds"]
    assert len(data["faults"]["events"]) == 3
    direct = run_scenario(scenario, faults=SCHEDULE).summary()
    replayed = run_scenario(path).summary()
    assert replayed["trace_digest"] == direct["trace_digest"]
    assert replayed["weights_digest"] == direct["weights_digest"]


def test_scenario_toml_names_the_protocol_and_leaves_nones_out() -> None:
    scenario = {"name": "x", "protocol": {"name": "fedavg", "patience": None}, "seed": 3}
    text = scenario_toml(scenario, protocol="pkg.mod:BUGGY")
    data = tomllib.loads(text)
    assert data == {"name": "x", "seed": 3, "protocol": {"name": "pkg.mod:BUGGY"}}
    assert scenario["protocol"]["name"] == "fedavg"  # the mapping is not changed


def test_a_failing_example_reports_its_replay_file(tmp_path: Path) -> None:
    scenario = {
        "name": "tiny",
        "rounds": 1,
        "clients": {"count": 2},
        "protocol": {"name": "tests.testing.test_user_protocol:PLUGIN"},
    }
    faults = FaultSchedule((Crash(actor="c000", at=0.5),))

    @kit_settings(max_examples=1, database=None)
    @given(st.just(scenario))
    def prop(drawn: dict[str, Any]) -> None:
        run_scenario_example(drawn, faults=faults, overrides={"seed": 4}, replay_dir=tmp_path)
        raise AssertionError("the property fails")

    with pytest.raises(AssertionError, match="the property fails") as info:
        prop()
    notes = "\n".join(getattr(info.value, "__notes__", []))
    path = tmp_path / "test_a_failing_example_reports_its_replay_file.toml"  # the test's name
    assert f"# Replays exactly with:\n#   simkit run {path}" in notes
    saved = tomllib.loads(path.read_text())
    assert saved["seed"] == 4
    assert saved["faults"]["events"] == [
        {"kind": "crash", "at": 0.5, "actor": "c000", "mode": "silent"}
    ]
