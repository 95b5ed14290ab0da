"""Scenario schema: one-line errors naming file and key, overrides, the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simkit.scenario import (
    ScenarioConfig,
    ScenarioError,
    apply_overrides,
    load_scenario,
    parse_override,
    scenario_json_schema,
)
from simkit.scenario._schema import LogNormalSpeed, MLPModelConfig, NpzData, SGDConfig


def error_of(data: dict[str, Any], overrides: list[str] | None = None) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(data, overrides, source="scenarios/x.toml")
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"clients": {"count": -3}}, "scenarios/x.toml: clients.count: must be > 0, got -3"),
        ({"clinets": {}}, "scenarios/x.toml: unknown key 'clinets'"),
        ({"clients": {"cout": 3}}, "scenarios/x.toml: clients: unknown key 'cout'"),
        ({"clients": {"count": "10"}}, "clients.count: must be an integer, got '10'"),
        ({"rounds": 2.5}, "scenarios/x.toml: rounds: must be an integer, got 2.5"),
        ({"training": {"batch_size": True}}, "training.batch_size: must be an integer, got true"),
        ({"network": {"loss": 1.5}}, "network.loss: must be <= 1"),
        ({"network": {"latency": "x"}}, "network.latency: must be a number, got 'x'"),
        ({"network": {"latency": {"kind": "uniform", "low": 1}}}, "network.latency.high: required"),
        ({"clients": {"speeds": {"kind": "weird"}}}, "clients.speeds: 'kind' must be one of"),
        ({"clients": {"speeds": {"kind": "lognormal", "sigma": -1}}}, "clients.speeds.sigma"),
        ({"data": {"source": "npz"}}, "scenarios/x.toml: data.path: required key is missing"),
        ({"optimizer": {"client": {"kind": "adam", "momentum": 0.9}}}, "client: unknown key"),
        ({"model": {"kind": "mlp", "hidden": [0]}}, "model.hidden[0]: must be > 0, got 0"),
        ({"faults": {"dropout": {"restart_after": 5}}}, "restart_after needs when = 'time'"),
        ({"aggregator": {"kind": "mode"}}, "aggregator.kind: must be one of"),
    ],
)
def test_errors_are_one_line_naming_file_and_key(data: dict[str, Any], expected: str) -> None:
    assert expected in error_of(data)


def test_list_speeds_must_match_count() -> None:
    message = error_of({"clients": {"count": 3, "speeds": {"kind": "list", "values": [1.0]}}})
    assert message == "scenarios/x.toml: clients: speeds.values has 1 entries for 3 clients"


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"nope\.toml: no such scenario file"):
        load_scenario(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("rounds = = 3\n")
    with pytest.raises(ScenarioError, match=r"bad\.toml: not valid TOML"):
        load_scenario(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text("[clients]\ncount = 0\n")
    with pytest.raises(ScenarioError, match=rf"^{typo}: clients.count: must be > 0, got 0$"):
        load_scenario(typo)


def test_defaults() -> None:
    cfg = load_scenario({}).config
    assert (cfg.rounds, cfg.seed, cfg.clients.count, cfg.protocol.name) == (10, 0, 10, "fedavg")
    assert isinstance(cfg.optimizer.client, SGDConfig)
    assert cfg.secagg.mode == "off"


def test_missing_tags_take_the_default_variant() -> None:
    cfg = load_scenario(
        {"clients": {"speeds": {"value": 2.0}}, "optimizer": {"client": {"lr": 0.5}}}
    ).config
    assert cfg.clients.speeds.kind == "constant"
    assert isinstance(cfg.optimizer.client, SGDConfig)
    assert cfg.optimizer.client.lr == 0.5


def test_protocol_table_passes_other_keys_through() -> None:
    cfg = load_scenario({"protocol": {"name": "fedavg", "fraction": 0.5, "on_abort": "stop"}})
    assert cfg.config.protocol.options() == {"fraction": 0.5, "on_abort": "stop"}


def test_name_defaults_to_file_stem(small_file: Path) -> None:
    assert load_scenario(small_file, ["name=''"]).name == "small"
    assert load_scenario(small_file, ["name=other"]).name == "other"
    assert load_scenario({}).name == "scenario"


# ----------------------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        ("rounds=3", ["rounds"], 3),
        ("network.loss=0.5", ["network", "loss"], 0.5),
        ("heartbeat.enabled=false", ["heartbeat", "enabled"], False),
        ("model.hidden=[32, 16]", ["model", "hidden"], [32, 16]),
        ("name=hello world", ["name"], "hello world"),
        ('name="quoted"', ["name"], "quoted"),
        ("clients.speeds={kind='lognormal', sigma=1.0}", ["clients", "speeds"], None),
    ],
)
def test_parse_override(text: str, path: list[str], value: Any) -> None:
    got_path, got = parse_override(text)
    assert got_path == path
    if value is not None:
        assert got == value
    else:
        assert got == {"kind": "lognormal", "sigma": 1.0}


def test_overrides_reach_nested_keys_and_top_level(small_file: Path) -> None:
    scenario = load_scenario(
        small_file,
        [
            "rounds=7",
            "seed=42",
            "name=renamed",
            "clients.speeds.kind=lognormal",
            "optimizer.client.prox_mu=0.1",
            "model.kind=mlp",
        ],
    )
    cfg = scenario.config
    assert (cfg.rounds, cfg.seed, scenario.name) == (7, 42, "renamed")
    assert isinstance(cfg.clients.speeds, LogNormalSpeed)
    assert isinstance(cfg.optimizer.client, SGDConfig)
    assert cfg.optimizer.client.prox_mu == 0.1
    assert isinstance(cfg.model, MLPModelConfig)


def test_override_mapping_form() -> None:
    cfg = load_scenario({}, {"clients.count": 4, "data.source": "npz", "data.path": "a.npz"})
    assert cfg.config.clients.count == 4
    assert isinstance(cfg.config.data, NpzData)


def test_overrides_are_validated_by_the_schema(small_file: Path) -> None:
    with pytest.raises(ScenarioError, match=r"clients: unknown key 'cout'$"):
        load_scenario(small_file, ["clients.cout=3"])
    with pytest.raises(ScenarioError, match=r"rounds: must be an integer, got 'many'$"):
        load_scenario(small_file, ["rounds=many"])


def test_bad_overrides() -> None:
    with pytest.raises(ScenarioError, match="expected KEY=VALUE"):
        parse_override("rounds")
    with pytest.raises(ScenarioError, match="expected KEY=VALUE"):
        parse_override("a..b=1")
    with pytest.raises(ScenarioError, match=r"rounds\.x: rounds is not a table"):
        apply_overrides({"rounds": 3}, ["rounds.x=1"])


def test_apply_overrides_does_not_mutate() -> None:
    data = {"clients": {"count": 3}}
    assert apply_overrides(data, ["clients.count=4"]) == {"clients": {"count": 4}}
    assert data == {"clients": {"count": 3}}


# ----------------------------------------------------------------------------- JSON Schema


def test_json_schema_describes_every_table() -> None:
    schema = scenario_json_schema()
    json.dumps(schema)  # serializable
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(ScenarioConfig.model_fields)
    assert "ClientsConfig" in schema["$defs"]
    assert schema["$defs"]["ClientsConfig"]["additionalProperties"] is False
