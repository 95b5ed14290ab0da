"""FedAvg end to end: rounds, faults, strategies, resume, and the equalities it must keep."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from protocols.fedavg import FedAvgCore, FedAvgOptions
from simkit.runner import RunResult, run_scenario
from simkit.scenario import ScenarioError, build, load_scenario
from simkit.training import ModelUpdates

SCENARIOS = Path(__file__).parents[2] / "scenarios"

BASE: dict[str, Any] = {
    "name": "small",
    "seed": 3,
    "rounds": 4,
    "protocol": {"name": "fedavg", "round_timeout": 30.0},
    "clients": {"count": 6},
    "data": {"alpha": 0.5, "beta": 0.5, "samples": 80, "dim": 10, "classes": 3},
    "training": {"batch_size": 16, "n_epoch": 1},
    "optimizer": {"client": {"lr": 0.1}},
    "network": {"latency": 0.01},
}


def scenario(**changes: Any) -> dict[str, Any]:
    """BASE with nested changes: ``scenario(protocol={"fraction": 0.5})`` merges tables."""
    out = copy.deepcopy(BASE)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def crash_on_request(actor: str, count: int, mode: str = "silent") -> dict[str, Any]:
    """A crash of ``actor`` when its ``count``-th TrainRequest is delivered."""
    trigger = {"kind": "deliver", "dst": actor, "type": "TrainRequest", "count": count}
    return {"kind": "crash", "actor": actor, "mode": mode, "on": trigger}


def losses(result: RunResult) -> list[float]:
    return [r.loss for r in result.rounds if r.loss is not None]


# ----------------------------------------------------------------------------- options


def test_options_defaults_and_types() -> None:
    options = FedAvgOptions.from_table({"fraction": 1, "round_timeout": 5}, "x.toml")
    assert options.fraction == 1.0
    assert isinstance(options.round_timeout, float)
    assert options.min_replies == 1
    assert options.on_abort == "continue"


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"fractoin": 0.5}, "protocol.fractoin: unknown key"),
        ({"fraction": 0.0}, "protocol.fraction: must be a finite number > 0 and <= 1"),
        ({"fraction": 1.5}, "protocol.fraction"),
        ({"min_replies": 0}, "protocol.min_replies: must be an integer >= 1"),
        ({"min_replies": True}, "protocol.min_replies"),
        ({"round_timeout": "10"}, "protocol.round_timeout"),
        ({"on_abort": "retry"}, "protocol.on_abort: must be 'continue' or 'stop'"),
        ({"min_clients": 2, "min_replies": 3}, "protocol.min_replies: 3 exceeds"),
    ],
)
def test_options_errors_name_the_file_and_key(table: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=r"^x\.toml: ") as info:
        FedAvgOptions.from_table(table, "x.toml")
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_invalid_protocol_table_fails_the_run_with_one_line() -> None:
    with pytest.raises(ScenarioError, match=r"protocol\.fraction"):
        run_scenario(scenario(protocol={"fraction": 2.0}))


# ----------------------------------------------------------------------------- sampling


def core_for(data: dict[str, Any]) -> FedAvgCore:
    setup = build(load_scenario(data)).setup
    return FedAvgCore(setup, FedAvgOptions.from_table(setup.protocol, "test"))


def test_a_secure_sum_of_total_weight_zero_fails_the_round_not_the_server() -> None:
    core = core_for(scenario())
    zero = ModelUpdates.weighted(core.weights * 0.0, 0.0)
    before = core.version
    outcome = core.aggregate_sum(zero, ["c000", "c001"], {})
    assert not outcome.updated
    assert "total weight is 0" in outcome.reason
    assert core.version == before


def test_sampling_is_seeded_sized_and_sorted() -> None:
    core = core_for(scenario(protocol={"fraction": 0.5, "min_clients": 2}))
    pool = [f"c{i:03d}" for i in range(10)]
    first = core.sample(1, pool)
    assert first == sorted(first)
    assert len(first) == 5
    assert set(first) <= set(pool)
    assert core.sample(1, list(reversed(pool))) == first  # availability order is irrelevant
    assert any(core.sample(r, pool) != first for r in range(2, 6))
    assert len(core.sample(1, pool[:3])) == 2  # min_clients wins over the fraction
    assert core.sample(1, pool[:1]) == pool[:1]  # fewer than min_clients: all of them


# ----------------------------------------------------------------------------- rounds


def test_a_clean_run_uses_every_client_and_learns() -> None:
    result = run_scenario(scenario(rounds=6))
    assert result.rounds_completed == 6
    for record in result.rounds:
        assert record.replied == record.sampled
        assert not record.failed
        assert not record.aborted
        assert record.accuracy is not None
        assert record.eval_loss is not None
    assert losses(result)[-1] < losses(result)[0]


def test_one_client_full_batch_gd_equals_centralized_gd() -> None:
    data = scenario(
        rounds=5,
        clients={"count": 1},
        data={"samples": 120, "test_fraction": 0.0},
        training={"batch_size": 10_000, "n_epoch": 1},
        optimizer={"client": {"lr": 0.5}},
    )
    result = run_scenario(data)
    setup = build(load_scenario(data)).setup
    model = setup.model()
    train = setup.clients[0].train
    weights = model.get_weights()
    for _ in range(5):  # plain gradient descent on the whole training set
        model.set_weights(weights)
        weights = weights - model.compute_batch_gradients(train.x, train.y) * 0.5
    # One full batch per round: FedAvg (server lr 1) is exactly one GD step per
    # round; the client shuffles its batch, so sums differ only in the last bits.
    for name, array in weights.to_dict().items():
        np.testing.assert_allclose(result.weights.to_dict()[name], array, rtol=1e-12, atol=1e-14)


def test_late_replies_are_counted_and_discarded() -> None:
    # c000 trains ~64 samples at 0.01 s each and speed 0.3: about 2 s, past
    # every 1 s deadline; its replies arrive during later rounds.
    data = scenario(
        rounds=5,
        protocol={"round_timeout": 1.0},
        clients={"speeds": {"kind": "list", "values": [0.3, 1, 1, 1, 1, 1]}},
        cost={"per_sample": 0.01},
    )
    result = run_scenario(data)
    assert all("c000" not in r.replied for r in result.rounds)
    assert "c000" in result.rounds[0].failed
    assert sum(r.late for r in result.rounds) >= 1
    assert not any(e.kind == "crash" for e in result.trace.events)  # slow, not gone


def test_restarted_client_rejoins_and_takes_part_again() -> None:
    data = scenario(
        rounds=8,
        protocol={"round_timeout": 1.0},
        heartbeat={"interval": 0.25, "misses": 2},
        faults={
            "events": [
                crash_on_request("c004", 2),
                {"kind": "restart", "at": 0.65, "actor": "c004"},
            ]
        },
    )
    result = run_scenario(data)
    took_part = [r.round for r in result.rounds if "c004" in r.replied]
    missing = [r.round for r in result.rounds if "c004" not in r.replied]
    assert missing
    assert took_part
    assert max(took_part) > min(missing)


def test_errors_in_user_code_fail_the_client_not_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from simkit.training import LogisticRegression

    original = LogisticRegression.compute_batch_gradients

    calls = []

    def flaky(self: LogisticRegression, x: Any, y: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # the first client to train, in round 1
            raise FloatingPointError("exploding gradient")
        return original(self, x, y)

    monkeypatch.setattr(LogisticRegression, "compute_batch_gradients", flaky)
    data = scenario(rounds=2, clients={"count": 3}, training={"batch_size": 7})
    result = run_scenario(data)
    assert result.rounds_completed == 2
    assert len(result.rounds[0].failed) == 1
    assert len(result.rounds[0].replied) == 2
    assert len(result.rounds[1].replied) == 3
    logs = [e.info for e in result.trace.events if e.kind == "log"]
    assert any("FloatingPointError: exploding gradient" in text for text in logs)


# ----------------------------------------------------------------------------- strategies


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"optimizer": {"client": {"lr": 0.1, "prox_mu": 0.1}}},
        {"optimizer": {"client": {"lr": 0.1}, "server": {"kind": "fedavgm", "lr": 1.0}}},
        {"optimizer": {"client": {"lr": 0.1}, "server": {"kind": "fedadam", "lr": 0.05}}},
        {"optimizer": {"client": {"lr": 0.1}, "server": {"kind": "fedyogi", "lr": 0.05}}},
        {"optimizer": {"client": {"lr": 0.1}, "server": {"kind": "fedadagrad", "lr": 0.05}}},
        {"optimizer": {"client": {"lr": 0.1, "scaffold": True}}},
        {"optimizer": {"client": {"kind": "adam", "lr": 0.01}}},
        {"aggregator": {"kind": "median"}},
        {"aggregator": {"kind": "trimmed_mean", "fraction": 0.2}},
        {"aggregator": {"kind": "weighted_mean", "by": "steps"}},
    ],
    ids=[
        "fedavg",
        "fedprox",
        "fedavgm",
        "fedadam",
        "fedyogi",
        "fedadagrad",
        "scaffold",
        "client-adam",
        "median",
        "trimmed",
        "by-steps",
    ],
)
def test_every_strategy_runs_and_learns(changes: dict[str, Any]) -> None:
    result = run_scenario(scenario(rounds=6, **changes))
    assert result.rounds_completed == 6
    evals = [r.eval_loss for r in result.rounds if r.eval_loss is not None]
    assert evals[-1] < evals[0]


def test_strategies_differ() -> None:
    digests = {
        run_scenario(scenario(**c)).summary()["weights_digest"]
        for c in (
            {},
            {"optimizer": {"server": {"kind": "fedavgm"}}},
            {"aggregator": {"kind": "median"}},
        )
    }
    assert len(digests) == 3


def test_fedprox_beats_fedavg_under_stragglers() -> None:
    # Li et al. 2020 in scenarios/stragglers.toml, shortened: FedAvg as in the
    # paper (every client must finish its epochs, stragglers miss the deadline)
    # against FedProx mu = 1 with partial work; same seed, same deadline.
    path = SCENARIOS / "stragglers.toml"
    fedprox = run_scenario(path, overrides=["rounds=15"])
    fedavg = run_scenario(
        path, overrides=["rounds=15", "optimizer.client.prox_mu=0", "training.timeout=1000"]
    )
    assert fedavg.rounds[-1].eval_loss is not None
    assert fedprox.rounds[-1].eval_loss is not None
    assert fedprox.rounds[-1].eval_loss < fedavg.rounds[-1].eval_loss
    assert sum(len(r.failed) for r in fedavg.rounds) > 0  # its stragglers were dropped
    assert all(not r.failed for r in fedprox.rounds)


# ----------------------------------------------------------------------------- resume


def test_resume_continues_bit_for_bit(tmp_path: Path) -> None:
    straight = run_scenario(
        scenario(
            rounds=6,
            optimizer={"client": {"lr": 0.1, "momentum": 0.9}, "server": {"kind": "fedadam"}},
        )
    )
    data = scenario(
        optimizer={"client": {"lr": 0.1, "momentum": 0.9}, "server": {"kind": "fedadam"}}
    )
    first = run_scenario({**data, "rounds": 3}, checkpoint=tmp_path / "ck")
    resumed = run_scenario({**data, "rounds": 6}, resume=tmp_path / "ck")
    assert first.rounds_completed == 3
    assert resumed.summary()["weights_digest"] == straight.summary()["weights_digest"]
    assert resumed.summary()["metrics"] == straight.summary()["metrics"]


def test_resume_refuses_another_scenario(tmp_path: Path) -> None:
    run_scenario(scenario(rounds=1), checkpoint=tmp_path / "ck")
    with pytest.raises(ScenarioError, match="seed 3 with 6 clients; this run is 'small' seed 4"):
        run_scenario(scenario(rounds=2, seed=4), resume=tmp_path / "ck")
    with pytest.raises(ScenarioError, match="no FedAvg checkpoint"):
        run_scenario(scenario(rounds=2), resume=tmp_path)


def test_resume_after_the_last_round_does_nothing(tmp_path: Path) -> None:
    first = run_scenario(scenario(rounds=2), checkpoint=tmp_path / "ck")
    again = run_scenario(scenario(rounds=2), resume=tmp_path / "ck")
    assert again.summary()["weights_digest"] == first.summary()["weights_digest"]
    assert again.rounds_completed == 2


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_run_with_faults() -> None:
    data = scenario(
        rounds=5,
        clients={"count": 10},
        network={"latency": {"kind": "lognormal", "median": 0.02, "sigma": 0.5}},
        faults={"dropout": {"fraction": 0.3, "when": "round", "message": "TrainRequest"}},
    )
    a, b = run_scenario(data).summary(), run_scenario(data).summary()
    for key in ("trace_digest", "weights_digest", "dropped", "metrics", "messages", "bytes"):
        assert a[key] == b[key]
    assert a["dropped"]
