"""The privacy accountant of DP-FedAvg and of the clients' clip + Gaussian mods."""

from __future__ import annotations

import io
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from protocols.fedavg._privacy import (
    ACCOUNTANT,
    GaussianMechanism,
    epsilons,
    privacy_report,
)
from protocols.fedavg._strategy import load_mods, local_mechanism
from simkit.cli._run import round_table
from simkit.protocol import RoundRecord
from simkit.report._html import rounds_table
from simkit.runner import run_scenario
from simkit.scenario import scenario_json_schema

QUICKSTART = Path(__file__).parents[2] / "scenarios" / "quickstart.toml"


def quickstart(**protocol: Any) -> dict[str, Any]:
    with QUICKSTART.open("rb") as handle:
        table = tomllib.load(handle)
    table["protocol"] = {**table["protocol"], **protocol}
    return table


def test_epsilon_matches_the_accountants_published_value() -> None:
    # opacus's own RDP test (tests/accountants_test.py): DP-SGD with noise 1.5,
    # sampling rate 0.04, 90 epochs (2250 steps), delta 1e-5 -> epsilon 7.3291.
    mechanism = GaussianMechanism("server", 1.5, 0.04, 1.0, 1e-5)
    assert epsilons(mechanism, [2250])[0] == pytest.approx(7.32911117143, abs=1e-6)


def test_epsilon_grows_with_steps_and_shrinks_with_noise_and_sampling() -> None:
    base = GaussianMechanism("server", 1.0, 0.1, 1.0, 1e-5)
    eps = epsilons(base, [0, 1, 10, 100])
    assert eps[0] == 0.0
    assert eps[1] < eps[2] < eps[3]
    assert epsilons(GaussianMechanism("server", 2.0, 0.1, 1.0, 1e-5), [10])[0] < eps[2]
    assert epsilons(GaussianMechanism("server", 1.0, 1.0, 1.0, 1e-5), [10])[0] > eps[2]
    assert epsilons(GaussianMechanism("server", 0.0, 0.1, 1.0, 1e-5), [0, 3]) == [0.0, math.inf]


@pytest.mark.parametrize(
    ("mods", "expected"),
    [
        ([{"kind": "clip", "max_norm": 0.5}, {"kind": "gaussian", "std": 0.05}], 0.05),
        (
            [
                {"kind": "clip", "max_norm": 2.0},
                {"kind": "clip", "max_norm": 0.5},
                {"kind": "gaussian", "std": 0.1, "delta": 1e-6},
                {"kind": "clip", "max_norm": 9.0},  # after the noise: post-processing
            ],
            0.1,
        ),
        ([{"kind": "gaussian", "std": 0.05}], None),  # no bound on the update
        ([{"kind": "gaussian", "std": 0.05}, {"kind": "clip", "max_norm": 0.5}], None),
        ([{"kind": "clip", "max_norm": 0.5}], None),  # no noise
    ],
)
def test_local_mechanism_needs_a_clip_before_the_noise(
    mods: list[dict[str, Any]], expected: float | None
) -> None:
    found = local_mechanism(load_mods(mods))
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert found.where == "client"
    assert found.sampling_rate == 1.0  # the server sees who took part: no amplification
    assert found.noise_multiplier == pytest.approx(expected)  # std / (2 * clip)
    assert found.clip_norm == 0.5


def record(n: int, sampled: tuple[str, ...], aborted: bool = False) -> RoundRecord:
    return RoundRecord(n, sampled, sampled, (), aborted=aborted)


def test_steps_count_released_rounds_centrally_and_the_busiest_client_locally() -> None:
    rounds = [
        record(1, ("a", "b")),
        record(2, ("a",), aborted=True),
        record(3, ("b",)),
        record(4, ("a", "c")),
    ]
    central = GaussianMechanism("server", 1.0, 0.5, 1.0, 1e-5)
    report = privacy_report(central, rounds)
    assert report is not None
    assert report["accountant"] == ACCOUNTANT
    # an aborted round releases nothing: epsilon stays
    assert report["epsilon"] == epsilons(central, [1, 1, 2, 3])
    local = GaussianMechanism("client", 1.0, 1.0, 1.0, 1e-5)
    report = privacy_report(local, rounds)
    assert report is not None
    assert report["epsilon"] == epsilons(local, [1, 2, 2, 3])  # "a": rounds 1, 2, 4
    assert privacy_report(None, rounds) is None


def test_dp_fedavg_reports_epsilon_per_round_in_json_and_the_table() -> None:
    strategy = {"kind": "dp-fedavg", "clip_norm": 0.5, "noise_multiplier": 1.1, "delta": 1e-6}
    result = run_scenario(quickstart(strategy=strategy, fraction=0.5))
    summary = json.loads(result.to_json())
    privacy = summary["privacy"]
    assert privacy == {
        "accountant": ACCOUNTANT,
        "where": "server",
        "noise_multiplier": 1.1,
        "sampling_rate": 0.5,  # 5 of 10 clients a round
        "clip_norm": 0.5,
        "delta": 1e-6,
        "epsilon": summary["metrics"][-1]["epsilon"],
    }
    expected = epsilons(GaussianMechanism("server", 1.1, 0.5, 0.5, 1e-6), [1, 2, 3, 4, 5])
    assert [m["epsilon"] for m in summary["metrics"]] == pytest.approx(expected)
    text = io.StringIO()
    Console(file=text, width=120).print(round_table(result))
    assert "epsilon" in text.getvalue()
    assert f"{expected[-1]:.2f}" in text.getvalue()
    html = rounds_table(result, result.trace.events)  # the report's round table
    assert "<th>epsilon</th>" in html
    assert f"<td>{expected[0]:.4f}</td>" in html


def test_client_mods_report_local_epsilon_and_a_plain_run_none() -> None:
    mods = [{"kind": "clip", "max_norm": 0.05}, {"kind": "gaussian", "std": 0.01}]
    summary = run_scenario(quickstart(mods=mods)).summary()
    assert summary["privacy"]["where"] == "client"
    assert summary["privacy"]["noise_multiplier"] == pytest.approx(0.1)
    eps = [m["epsilon"] for m in summary["metrics"]]
    assert eps == sorted(eps)
    assert eps[0] > 0
    plain = run_scenario(QUICKSTART).summary()
    assert plain["privacy"] is None
    assert all("epsilon" not in m for m in plain["metrics"])


def test_the_scenario_schema_describes_strategy_and_mod_options() -> None:
    import jsonschema

    schema = scenario_json_schema()
    fedavg = schema["$defs"]["protocol-fedavg"]["properties"]
    kinds = [b["properties"]["kind"].get("const") for b in fedavg["strategy"]["anyOf"]]
    assert kinds == ["dp-fedavg", "fedavg", "krum", None]  # None: "package.module:Class"
    assert "noise_multiplier" in fedavg["strategy"]["anyOf"][0]["properties"]
    assert "max_norm" in fedavg["mods"]["items"]["anyOf"][0]["properties"]
    with (QUICKSTART.parent / "dp_fedavg.toml").open("rb") as handle:
        table = tomllib.load(handle)
    check = jsonschema.Draft202012Validator(schema)
    check.validate(table)
    table["protocol"]["mods"] = [{"kind": "gaussian", "std": 0.1, "delta": 1e-6}]
    check.validate(table)
    table["protocol"]["strategy"] = {"kind": "mypkg.strategies:Mine", "anything": 1}
    check.validate(table)
    for bad in (
        {"kind": "dp-fedavg", "clip_norm": -1.0},
        {"kind": "krum", "typo": 1},
        {"kind": "nope"},
    ):
        table["protocol"]["strategy"] = bad
        assert not check.is_valid(table), bad


def test_without_opacus_the_mechanism_is_reported_with_no_epsilon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opacus.accountants.analysis.rdp", None)  # import fails
    central = GaussianMechanism("server", 1.0, 0.5, 1.0, 1e-5)
    report = privacy_report(central, [record(1, ("a",)), record(2, ("b",))])
    assert report is not None
    assert report["accountant"] == "none (pip install 'simkit[dp]')"
    assert report["epsilon"] == [None, None]
    assert report["noise_multiplier"] == 1.0


def test_the_shipped_dp_scenario_keeps_its_digests_and_reports_epsilon() -> None:
    summary = run_scenario(QUICKSTART.parent / "dp_fedavg.toml").summary()
    assert (summary["trace_digest"], summary["weights_digest"]) == (
        "77eb06f3a87fc9f6d85183e3d5402037576c918246c4d8b59083685bae85534a",
        "2fdb1ebbd87da2cea7f114baf47695fafacb8f131988504b1483b9cfee602bf9",
    )
    # all 20 clients every round (no amplification), noise 1.0, 10 rounds, delta 1e-5
    assert summary["privacy"]["sampling_rate"] == 1.0
    assert summary["privacy"]["epsilon"] == pytest.approx(19.0536, abs=1e-3)
