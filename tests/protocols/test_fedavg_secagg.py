"""FedAvg with secure aggregation: same result as in clear up to quantization, under dropouts.

The property at the end is the one docs/testing.md builds step by step: for
any schedule of client crashes at any stage of any round, FedAvg over SecAgg
ends with the weights of FedAvg in clear (same seed, same crashes) within the
quantization bound. A deliberately buggy SecAgg server (it forgets to remove
the pairwise masks of clients that dropped after ShareKeys) fails it, and
hypothesis shrinks the failure to one crash.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from protocols.fedavg import FedAvgPlugin
from protocols.secagg import SecAggSettings
from simkit.cli import main
from simkit.faults import FaultSchedule
from simkit.runner import RunResult, run_scenario
from simkit.scenario import ScenarioError, build, client_names, load_scenario
from simkit.secagg import SecAggServer
from simkit.testing import InvariantViolation, fault_schedules, note_schedule

SCENARIOS = Path(__file__).parents[2] / "scenarios"

SMALL: dict[str, Any] = {
    "name": "secure",
    "seed": 1,
    "rounds": 2,
    "protocol": {"name": "fedavg", "round_timeout": 30.0, "min_replies": 2},
    "clients": {"count": 6},
    "data": {"alpha": 0.5, "beta": 0.5, "samples": 40, "dim": 6, "classes": 3},
    "training": {"batch_size": 8, "n_epoch": 1},
    "network": {"latency": 0.01},
    "heartbeat": {"interval": 1.0, "misses": 2},
    "secagg": {"mode": "secagg"},
    "run": {"trace_heartbeats": False},
}
STAGES = [
    "TrainRequest",
    "SecAggSetup",
    "SecAggKeyList",
    "SecAggCiphertexts",
    "SecAggUnmaskRequest",
]


def with_mode(scenario: dict[str, Any], mode: str) -> dict[str, Any]:
    out = copy.deepcopy(scenario)
    out["secagg"] = {**out.get("secagg", {}), "mode": mode}
    return out


def quantization_bound(result: RunResult, scenario: dict[str, Any]) -> float:
    """First-order bound on |secure - clear| final weights (docs/secagg.md).

    Per round, the secure sum of ``w_i u_i / W`` and of ``w_i / W`` is off by
    at most ``e = n * step / 2`` per coordinate; the mean update then by at
    most ``e * (1 + clip) / (S - e)``, ``S`` the survivors' summed weights.
    """
    setup = build(load_scenario(scenario)).setup
    table = SecAggSettings.from_table(scenario["secagg"], "test")
    assert table is not None
    weights = {c.name: len(c.train) for c in setup.clients}
    cap = max(weights.values())
    e = table.quantizer(len(setup.clients)).error_bound(len(setup.clients))
    total = 0.0
    for record in result.rounds:
        if record.aborted:
            continue
        s = sum(weights[c] for c in record.replied) / cap
        total += e * (1 + table.clip) / (s - e)
    return total


def max_difference(a: RunResult, b: RunResult) -> float:
    wa, wb = a.weights.to_dict(), b.weights.to_dict()
    return max(float(np.max(np.abs(wa[k] - wb[k]))) for k in wa)


def test_shipped_secagg_matches_fedavg_in_clear() -> None:
    pytest.importorskip("sklearn")
    path = SCENARIOS / "secagg.toml"
    secure = run_scenario(path)
    clear = run_scenario(path, overrides=['secagg.mode="off"'])
    assert secure.dropped == clear.dropped == ["c003", "c007", "c011", "c015", "c019"]
    assert [r.replied for r in secure.rounds] == [r.replied for r in clear.rounds]
    data = load_scenario(path).config.model_dump(exclude_none=True)
    diff = max_difference(secure, clear)
    assert 0 < diff <= quantization_bound(secure, data)
    assert secure.summary()["bytes"] > clear.summary()["bytes"]  # masks, keys, shares


def test_no_update_travels_in_clear() -> None:
    result = run_scenario(SMALL)
    types = {e.type for e in result.trace.events if e.kind == "send" and e.dst == "server"}
    assert "TrainReply" not in types
    assert {"TrainDone", "SecAggMaskedInput"} <= types
    marks = [e.info for e in result.trace.events if e.kind == "mark" and e.type == "secagg"]
    assert marks[:4] == ["advertise-keys", "share-keys", "masked-input", "unmasking"]


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"aggregator": {"kind": "median"}}, "needs an aggregator that is a sum"),
        ({"optimizer": {"client": {"scaffold": True}}}, "cannot run SCAFFOLD"),
        ({"clients": {"count": 1}}, "at least 2 clients"),
        (
            {"secagg": {"mode": "secagg", "threshold": 7}},
            r"secagg\.threshold: threshold 7 exceeds the cohort of 6 clients",
        ),
        (
            {"secagg": {"mode": "secagg", "threshold": 3}},
            r"secagg\.threshold: threshold 3 is not a strict majority of the cohort of 6 "
            r"clients \(needs >= 4\).*allow_weak_threshold",
        ),
        (
            {"secagg": {"mode": "secagg+", "neighbours": 4, "threshold": 0.4}},
            r"threshold 2 is not a strict majority of the neighbourhood \(degree \+ 1\) of 5",
        ),
        (
            {
                "protocol": {**SMALL["protocol"], "fraction": 0.5},
                "secagg": {"mode": "secagg", "threshold": 4},
            },
            "threshold 4 exceeds the cohort of 3 clients",
        ),
        (
            {"secagg": {"mode": "secagg", "clip": 1e300}},
            r"secagg\.clip = 1e\+300 with secagg\.bits = 32 .* updates would round to zero",
        ),
    ],
)
def test_unsupported_combinations_fail_with_one_line(changes: dict[str, Any], needle: str) -> None:
    scenario = {**copy.deepcopy(SMALL), **changes}
    with pytest.raises(ScenarioError, match=needle):
        run_scenario(scenario)


def test_a_weak_threshold_runs_only_when_the_scenario_insists() -> None:
    weak = {**copy.deepcopy(SMALL), "rounds": 1}
    weak["secagg"] = {"mode": "secagg", "threshold": 3, "allow_weak_threshold": True}
    result = run_scenario(weak)
    assert result.summary()["rounds_completed"] == 1


# ----------------------------------------------------------------------------- the tutorial


class ForgetfulServer(SecAggServer):
    """The tutorial's bug: never recover the masks of clients that dropped after ShareKeys."""

    def _masks_to_recover(self, u2: frozenset[str], u3: frozenset[str]) -> frozenset[str]:
        return frozenset()


def check_matches_clear(schedule: FaultSchedule, plugin: FedAvgPlugin | None = None) -> None:
    """The property: secure FedAvg ends where FedAvg in clear does, within quantization."""
    note_schedule(schedule, scenario="secure.toml", seed=SMALL["seed"])
    secure = run_scenario(SMALL, faults=schedule, plugin=plugin)
    clear = run_scenario(with_mode(SMALL, "off"), faults=schedule)
    if any(r.aborted for r in secure.rounds):
        # Too few survived a stage: SecAgg must abort cleanly, with the reason,
        # where FedAvg in clear would have gone on. Nothing more to compare.
        for r in secure.rounds:
            if r.aborted and not r.reason.startswith("secure aggregation aborted"):
                raise InvariantViolation(f"round {r.round} aborted: {r.reason}")
        return
    if secure.dropped != clear.dropped:
        raise InvariantViolation(f"dropped {secure.dropped} with SecAgg, {clear.dropped} without")
    diff, bound = max_difference(secure, clear), quantization_bound(secure, SMALL)
    if not diff <= bound:
        raise InvariantViolation(
            f"final weights differ by {diff:.3g} from FedAvg in clear (bound {bound:.3g}); "
            f"rounds: {[(r.round, r.replied, r.reason) for r in secure.rounds]}"
        )


schedules = fault_schedules(client_names(6), stages=STAGES, rounds=2, max_faults=3)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules)
def test_secure_fedavg_equals_fedavg_in_clear(schedule: FaultSchedule) -> None:
    check_matches_clear(schedule)


def test_the_buggy_server_is_found_and_shrunk_to_one_crash() -> None:
    buggy = FedAvgPlugin(secagg_factory=ForgetfulServer)
    found: list[FaultSchedule] = []

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(schedules)
    def prop(schedule: FaultSchedule) -> None:
        try:
            check_matches_clear(schedule, buggy)
        except InvariantViolation:
            found.append(schedule)
            raise

    with pytest.raises(InvariantViolation, match=r"differ by|not a valid update"):
        prop()
    shrunk = found[-1]  # hypothesis replays the minimal example last
    assert len(shrunk) <= 2
    assert any(f.on is not None and f.on.type == "SecAggCiphertexts" for f in shrunk)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules)
def test_secure_fedavg_equals_fedavg_in_clear_1000_examples(schedule: FaultSchedule) -> None:
    check_matches_clear(schedule)


def test_report_shows_what_the_server_sees(tmp_path: Path) -> None:
    from simkit.report import write_report

    result = run_scenario(SMALL)
    view = result.artifacts["secagg"]
    assert view["round"] == 1
    assert view["client"] == "c000"
    for name, masked in view["masked"].items():
        assert np.all((masked >= 0) & (masked < 1))
        assert not np.allclose(masked, view["true"][name])  # the update is hidden
    index = write_report(result, tmp_path).read_text()
    assert (tmp_path / "secagg.png").stat().st_size > 0
    assert "What the server sees under secure aggregation" in index
    assert "SecAggShareKeys" in index  # bytes per stage
    plain = run_scenario(with_mode(SMALL, "off"))
    assert plain.artifacts == {}
    assert "What the server sees" not in write_report(plain, tmp_path / "plain").read_text()


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("secagg.threshold=21", "secagg.threshold: threshold 21 exceeds the cohort of 20 clients"),
        ("secagg.threshold=10", "secagg.threshold: threshold 10 is not a strict majority"),
    ],
)
def test_cli_refuses_a_bad_threshold_with_exit_2_and_one_line(
    command: str, override: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run"] if command == "run" else ["scenario", "check"]
    assert main([*argv, str(SCENARIOS / "secagg.toml"), "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert "\n" not in err


@pytest.mark.parametrize("adversary", ["passive", "active"])
def test_the_lying_server_scenario_reads_an_update_only_in_passive_mode(adversary: str) -> None:
    result = run_scenario(
        SCENARIOS / "secagg_lying_server.toml",
        overrides=[f'secagg.adversary="{adversary}"', "rounds=1"],
    )
    logs = [e.info for e in result.trace.events if e.kind == "log"]
    attack = [line for line in logs if "attack on c003" in line]
    refusals = [line for line in logs if "refusing to unmask" in line]
    assert result.rounds_completed == 0
    if adversary == "passive":
        assert attack == ["secagg round 1: attack on c003: recovered c003"]
        assert refusals == []
    else:
        assert attack == ["secagg round 1: attack on c003: recovered no input"]
        assert len(refusals) == 10
        sent = {e.type for e in result.trace.events if e.kind == "send"}
        assert "SecAggUnmaskShares" not in sent


SHIPPED_DIGESTS = {
    # (trace_digest, weights_digest): passive SecAgg messages and defaults must not move them
    "secagg": (
        "e3b34d7838806b3c314336b52bae600c713ab3aa5273d7f8b05b860a84174778",
        "b2dfbeee3e35e6fbedac08902b1aa0786cc996506cfecfed9ad9183778d2e345",
    ),
    "secagg_plus": (
        "bb63fe912fb65bebca236a45bdb6b9026d5749590227b25a11d5aa8cc2e49c06",
        "c0eab4599bcd04e96bbe292509ebcbb25b06f1d8884d60e4dc2f102047be5e72",
    ),
}


@pytest.mark.parametrize(
    "name",
    ["secagg", pytest.param("secagg_plus", marks=pytest.mark.slow)],  # 100 clients: ~6 s
)
def test_shipped_secagg_digests_are_pinned(name: str) -> None:
    pytest.importorskip("sklearn")  # secagg.toml uses the digits
    summary = run_scenario(SCENARIOS / f"{name}.toml").summary()
    assert (summary["trace_digest"], summary["weights_digest"]) == SHIPPED_DIGESTS[name]
