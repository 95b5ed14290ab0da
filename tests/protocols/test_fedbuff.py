"""FedBuff: options, staleness weights, the sans-IO core, and whole runs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from protocols.fedbuff import FedBuffCore, FedBuffOptions, staleness_weight
from protocols.messages import Error, TrainReply, TrainRequest
from simkit.runner import RunResult, run_scenario
from simkit.scenario import ScenarioError, build, load_scenario
from simkit.training import Effort, MeanState, ModelUpdates, TrainResult, Weights

SCENARIOS = Path(__file__).parents[2] / "scenarios"

BASE: dict[str, Any] = {
    "name": "small",
    "seed": 3,
    "rounds": 6,
    "protocol": {"name": "fedbuff", "buffer_size": 3},
    "clients": {"count": 6, "speeds": {"kind": "lognormal", "median": 1.0, "sigma": 0.8}},
    "data": {"alpha": 0.5, "beta": 0.5, "samples": 80, "dim": 10, "classes": 3},
    "training": {"batch_size": 16, "n_steps": 4},
    "optimizer": {"client": {"lr": 0.1}},
    "network": {"latency": {"kind": "uniform", "low": 0.01, "high": 0.05}},
}


def scenario(**changes: Any) -> dict[str, Any]:
    """BASE with nested changes: ``scenario(protocol={"buffer_size": 2})`` merges tables."""
    out = copy.deepcopy(BASE)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def logs(result: RunResult, src: str = "server") -> list[str]:
    return [e.info for e in result.trace.events if e.kind == "log" and e.src == src]


def stalenesses(result: RunResult) -> list[tuple[int, int]]:
    """(min, max) staleness of each update, from the server's log."""
    out = []
    for line in logs(result):
        if line.startswith("update ") and "staleness " in line:
            low, high = line.split("staleness ")[1].split(" ")[0].split("..")
            out.append((int(low), int(high)))
    return out


# ----------------------------------------------------------------------------- options


def test_options_defaults_and_types() -> None:
    options = FedBuffOptions.from_table({"update_timeout": 5, "staleness_exponent": 1}, "x.toml")
    assert options.buffer_size == 10
    assert options.concurrency is None
    assert options.staleness == "polynomial"
    assert options.sync_interval == 1
    assert options.max_staleness is None
    assert isinstance(options.update_timeout, float)
    assert isinstance(options.staleness_exponent, float)


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"bufer_size": 5}, "protocol.bufer_size: unknown key (FedBuff knows buffer_size"),
        ({"buffer_size": 0}, "protocol.buffer_size: must be an integer >= 1, got 0"),
        ({"buffer_size": 2.5}, "protocol.buffer_size: must be an integer >= 1"),
        ({"concurrency": True}, "protocol.concurrency: must be an integer >= 1"),
        ({"staleness": "linear"}, "protocol.staleness: must be 'polynomial' or 'constant' or"),
        ({"staleness_exponent": -1}, "protocol.staleness_exponent: must be a finite number >= 0"),
        ({"max_staleness": -1}, "protocol.max_staleness: must be an integer >= 0"),
        ({"sync_interval": 0}, "protocol.sync_interval: must be an integer >= 1"),
        ({"update_timeout": "10"}, "protocol.update_timeout: must be a finite number > 0"),
        ({"eval_every": -2}, "protocol.eval_every"),
    ],
)
def test_options_errors_name_the_file_and_key(table: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=r"^x\.toml: ") as info:
        FedBuffOptions.from_table(table, "x.toml")
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_invalid_protocol_table_fails_the_run_with_one_line() -> None:
    with pytest.raises(ScenarioError, match=r"protocol\.buffer_size"):
        run_scenario(scenario(protocol={"buffer_size": -1}))


# ----------------------------------------------------------------------------- staleness


def test_staleness_weights() -> None:
    assert [staleness_weight(s, "constant") for s in (0, 1, 50)] == [1.0, 1.0, 1.0]
    # FedBuff's default: 1 / sqrt(1 + s)
    assert staleness_weight(0) == 1.0
    assert staleness_weight(3) == pytest.approx(0.5)
    assert staleness_weight(8) == pytest.approx(1 / 3)
    assert staleness_weight(3, exponent=1.0) == pytest.approx(0.25)
    assert staleness_weight(7, exponent=0.0) == 1.0
    # hinge (Xie et al. 2019): 1 up to the threshold b, then 1 / (a (s - b) + 1)
    hinge = [staleness_weight(s, "hinge", slope=10.0, threshold=4) for s in (0, 4, 5, 6)]
    assert hinge == pytest.approx([1.0, 1.0, 1 / 11, 1 / 21])
    weights = [staleness_weight(s) for s in range(20)]
    assert weights == sorted(weights, reverse=True)  # staler never weighs more
    with pytest.raises(ValueError, match="staleness must be >= 0"):
        staleness_weight(-1)
    options = FedBuffOptions(staleness="hinge", hinge_slope=1.0, hinge_threshold=1.0)
    assert options.weight(3) == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- the core


def core_for(**protocol: Any) -> FedBuffCore:
    data = scenario(protocol=protocol)
    setup = build(load_scenario(data)).setup
    return FedBuffCore(setup, FedBuffOptions.from_table(setup.protocol, "test"))


def reply(
    core: FedBuffCore, client: str, value: float, n: float = 1.0, loss: float = 1.0
) -> TrainReply:
    """A training reply to ``client``'s current job: the update ``value`` everywhere, weight n."""
    delta = Weights({k: np.full_like(v, value) for k, v in core.weights.to_dict().items()})
    result = TrainResult(
        round=core.jobs[client].round,
        updates=ModelUpdates.weighted(delta, n),
        aux={},
        metrics={"loss": MeanState(loss, 1.0)},
        effort=Effort(0, 1, 16, 0.1),
    )
    return TrainReply(result.round, result)


def send(core: FedBuffCore, *clients: str, session: int = 1) -> dict[str, TrainRequest]:
    """Dispatch ``clients`` (all in ``session``); the request each one gets."""
    sessions = dict.fromkeys(clients, session)
    out = {}
    for request, names in core.requests(list(clients), sessions):
        for name in names:
            out[name] = request
    return out


def test_requests_carry_weights_only_to_clients_lacking_them() -> None:
    core = core_for(buffer_size=2)
    first = send(core, "c000", "c001", "c002")
    assert all(r.weights is not None and r.version == 0 and r.round == 1 for r in first.values())
    core.on_reply("c000", reply(core, "c000", 1.0), 1.0)
    assert send(core, "c000")["c000"].weights is None  # holds version 0, the latest
    assert core.on_reply("c001", reply(core, "c001", 1.0), 2.0) is not None  # update 1
    again = send(core, "c001")["c001"]
    assert again.weights is not None
    assert (again.version, again.round) == (1, 2)
    # a new session (a restarted client) holds nothing
    core.on_gone("c002")
    assert send(core, "c002", session=2)["c002"].weights is not None


def test_sync_interval_decouples_training_from_weight_sync() -> None:
    core = core_for(buffer_size=1, sync_interval=3)
    seen = []
    for t in range(6):
        request = send(core, "c000")["c000"]
        seen.append((request.weights is not None, request.version, request.round))
        core.on_reply("c000", reply(core, "c000", 0.1), float(t))
    # synced at versions 0 and 3; in between it trains from the version it holds
    assert seen == [
        (True, 0, 1),
        (False, 0, 2),
        (False, 0, 3),
        (True, 3, 4),
        (False, 3, 5),
        (False, 3, 6),
    ]
    assert core.last_staleness == (2,)
    # weights that max_staleness would discard are refreshed earlier
    strict = core_for(buffer_size=1, sync_interval=3, max_staleness=1)
    synced = []
    for t in range(4):
        request = send(strict, "c000")["c000"]
        synced.append(request.weights is not None)
        strict.on_reply("c000", reply(strict, "c000", 0.1), float(t))
    assert synced == [True, False, True, False]


def test_an_update_is_the_staleness_weighted_buffered_mean() -> None:
    core = core_for(buffer_size=2)
    w0 = core.weights
    send(core, "c000", "c001", "c002")
    assert core.on_reply("c000", reply(core, "c000", 1.0, n=10), 0.5) is None
    first = core.on_reply("c001", reply(core, "c001", 3.0, n=30, loss=3.0), 1.0)
    assert first is not None
    assert (first.round, first.replied, first.loss) == (1, ("c000", "c001"), 2.0)
    lr = core.optimizer.lr
    w1 = core.weights
    for name, arr in w1.to_dict().items():
        np.testing.assert_allclose(arr, w0[name] + lr * (10 * 1.0 + 30 * 3.0) / 40)
    # c002 trained from version 0 (staleness 1), c000 from version 1 (staleness 0)
    send(core, "c000")
    core.on_reply("c002", reply(core, "c002", 2.0, n=20), 1.5)
    second = core.on_reply("c000", reply(core, "c000", 1.0, n=20), 2.0)
    assert second is not None
    assert (second.t_start, second.t_end) == (1.0, 2.0)
    assert core.last_staleness == (0, 1)  # in (client, arrival) order
    expected = (20 * 2.0 / np.sqrt(2) + 20 * 1.0) / 40  # not renormalised: smaller step
    for name, arr in core.weights.to_dict().items():
        np.testing.assert_allclose(arr, w1[name] + lr * expected, rtol=1e-6)


def test_max_staleness_discards_and_counts_late() -> None:
    core = core_for(buffer_size=2, max_staleness=0)
    send(core, "c000", "c001", "c002")
    core.on_reply("c000", reply(core, "c000", 1.0), 1.0)
    assert core.on_reply("c001", reply(core, "c001", 1.0), 2.0) is not None
    before = core.weights
    assert core.on_reply("c002", reply(core, "c002", 100.0), 3.0) is None  # staleness 1
    assert core.buffered == 0
    assert core.weights is before
    send(core, "c000", "c001")
    core.on_reply("c000", reply(core, "c000", 1.0), 4.0)
    record = core.on_reply("c001", reply(core, "c001", 1.0), 5.0)
    assert record is not None
    assert record.late == 1
    assert "c002" not in record.replied


def test_unexpected_replies_errors_and_departures() -> None:
    core = core_for(buffer_size=2)
    send(core, "c000", "c001", "c002", "c003")
    # an Error for lack of weights: re-sent with the weights, not a failure
    core.holds["c000"] = (1, 0)
    assert "weights" in core.on_error("c000", Error(1, "weights", "holds -1"))
    assert send(core, "c000")["c000"].weights is not None
    # a failure in user code: failed, and no new work until the next update
    core.on_error("c001", Error(1, "train", "FloatingPointError: boom"))
    assert "c001" not in core.choose({"c001": 1})
    # a departure: its job is gone; a reply that answers no job is late
    stale = reply(core, "c002", 1.0)
    core.on_gone("c002")
    assert core.on_reply("c002", stale, 1.0) is None
    core.on_reply("c003", reply(core, "c003", 1.0), 1.0)
    record = core.on_reply("c000", reply(core, "c000", 1.0), 2.0)
    assert record is not None
    assert record.failed == ("c001", "c002")
    assert record.late == 1
    assert core.choose({"c001": 1}) == ["c001"]  # the next update lifts the bench
    # a reply that does not decode fails its client like an Error
    send(core, "c001")
    core.on_bad_reply("c001")
    assert "c001" not in core.jobs
    assert core.choose({"c001": 1}) == []


def test_concurrency_fills_free_slots_with_a_seeded_choice() -> None:
    core = core_for(concurrency=2)
    connected = {f"c{i:03d}": 1 for i in range(6)}
    first = core.choose(connected)
    assert len(first) == 2
    assert first == sorted(first)
    assert core_for(concurrency=2).choose(connected) == first  # seeded
    send(core, *first)
    assert core.choose(connected) == []  # every slot taken
    assert core_for().choose(connected) == sorted(connected)  # default: everyone
    picks = set()
    for t in range(10):
        done = sorted(core.jobs)[0]
        core.on_reply(done, reply(core, done, 0.1), float(t))
        (picked,) = core.choose(connected)
        send(core, picked)
        picks.add(picked)
    assert len(picks) > 2  # slots go to various idle clients


# ----------------------------------------------------------------------------- whole runs


def test_shipped_scenario_runs_and_is_deterministic() -> None:
    a = run_scenario(SCENARIOS / "fedbuff.toml")
    b = run_scenario(SCENARIOS / "fedbuff.toml")
    c = run_scenario(SCENARIOS / "fedbuff.toml", seed=1)
    sa, sb, sc = a.summary(), b.summary(), c.summary()
    assert sa["protocol"] == "fedbuff"
    assert sa["rounds_completed"] == a.rounds[-1].round == len(a.rounds)
    assert (sa["trace_digest"], sa["weights_digest"]) == (sb["trace_digest"], sb["weights_digest"])
    assert sa["metrics"] == sb["metrics"]
    assert sa["trace_digest"] != sc["trace_digest"]
    assert sa["weights_digest"] != sc["weights_digest"]
    assert max(high for _, high in stalenesses(a)) >= 1  # asynchronous: some updates are stale


def test_loss_decreases_over_the_run() -> None:
    result = run_scenario(SCENARIOS / "fedbuff.toml")
    evals = [r.eval_loss for r in result.rounds if r.eval_loss is not None]
    train = [r.loss for r in result.rounds if r.loss is not None]
    assert len(evals) == len(result.rounds)
    assert evals[-1] < evals[0]
    assert np.mean(train[-5:]) < np.mean(train[:5])


def test_synchronous_setting_equals_fedavg() -> None:
    # K = every client, no latency, equal speeds and work: the replies of a
    # "round" arrive at one instant, the server takes them all before it
    # sends new work, so every update is a FedAvg round, bit for bit.
    data = scenario(
        clients={"count": 6, "speeds": {"kind": "constant"}},
        network={"latency": 0.0},
        training={"batch_size": 16, "n_steps": 4},
        rounds=4,
    )
    fedavg = run_scenario({**data, "protocol": {"name": "fedavg", "round_timeout": 30.0}})
    for staleness in ("constant", "polynomial"):
        protocol = {"name": "fedbuff", "buffer_size": 6, "staleness": staleness}
        fedbuff = run_scenario({**data, "protocol": protocol})
        assert fedbuff.summary()["weights_digest"] == fedavg.summary()["weights_digest"]
        assert fedbuff.summary()["metrics"] == fedavg.summary()["metrics"]
        assert [(r.t_start, r.t_end) for r in fedbuff.rounds] == [
            (r.t_start, r.t_end) for r in fedavg.rounds
        ]
        assert stalenesses(fedbuff) == [(0, 0)] * 4


def test_max_staleness_discards_stale_updates_in_a_run() -> None:
    result = run_scenario(scenario(rounds=8, protocol={"buffer_size": 2, "max_staleness": 0}))
    assert result.rounds_completed == 8
    assert sum(r.late for r in result.rounds) > 0
    assert stalenesses(result) == [(0, 0)] * 8
    free = run_scenario(scenario(rounds=8, protocol={"buffer_size": 2}))
    assert sum(r.late for r in free.rounds) == 0
    assert max(high for _, high in stalenesses(free)) > 0


def test_a_dropout_mid_run_is_tolerated_and_the_client_rejoins() -> None:
    data = scenario(
        rounds=30,
        heartbeat={"interval": 0.25, "misses": 2},
        faults={
            "events": [
                {"kind": "crash", "at": 0.5, "actor": "c002", "mode": "silent"},
                {"kind": "restart", "at": 2.0, "actor": "c002"},
            ]
        },
    )
    result = run_scenario(data)
    assert result.rounds_completed == 30
    assert "c002" in result.summary()["dropped"]
    (gone,) = [r for r in result.rounds if "c002" in r.failed]
    assert 0.5 < gone.t_end
    after = [r.round for r in result.rounds if "c002" in r.replied and r.t_start > 2.0]
    assert after  # restarted, rejoined and given work again


def test_no_reply_for_update_timeout_stops_the_run_with_a_reason() -> None:
    crashes = [
        {"kind": "crash", "at": 0.3, "actor": f"c{i:03d}", "mode": "silent"} for i in range(6)
    ]
    result = run_scenario(
        scenario(rounds=50, protocol={"update_timeout": 20.0}, faults={"events": crashes})
    )
    assert result.rounds_completed < 50
    (reason,) = [line for line in logs(result) if line.startswith("no training reply")]
    assert f"stopped after update {result.rounds_completed} of 50" in reason
    assert result.summary()["virtual_time_s"] < 25.0


def test_scaffold_and_secagg_are_refused() -> None:
    with pytest.raises(ScenarioError, match="SCAFFOLD is not supported by protocol 'fedbuff'"):
        run_scenario(scenario(optimizer={"client": {"lr": 0.1, "scaffold": True}}))
    with pytest.raises(ScenarioError, match=r"secagg\.mode = 'secagg' is not supported"):
        run_scenario(scenario(secagg={"mode": "secagg"}))


# ----------------------------------------------------------------------------- resume


def test_resume_continues_from_the_last_update(tmp_path: Path) -> None:
    data = scenario(optimizer={"client": {"lr": 0.1}, "server": {"kind": "fedavgm"}})
    straight = run_scenario({**data, "rounds": 6})
    first = run_scenario({**data, "rounds": 3}, checkpoint=tmp_path / "ck")
    resumed = run_scenario({**data, "rounds": 6}, resume=tmp_path / "ck")
    assert first.rounds_completed == 3
    assert resumed.rounds_completed == 6
    # the first three updates are the straight run's; the rest restart the
    # clients' work from the checkpoint (work in flight is not saved)
    assert resumed.summary()["metrics"][:3] == straight.summary()["metrics"][:3]
    assert [r.round for r in resumed.rounds] == list(range(1, 7))
    again = run_scenario({**data, "rounds": 6}, resume=tmp_path / "ck")
    assert again.summary()["weights_digest"] == resumed.summary()["weights_digest"]


def test_resume_refuses_another_scenario(tmp_path: Path) -> None:
    run_scenario(scenario(rounds=1), checkpoint=tmp_path / "ck")
    with pytest.raises(ScenarioError, match="seed 3 with 6 clients; this run is 'small' seed 4"):
        run_scenario(scenario(rounds=2, seed=4), resume=tmp_path / "ck")
    with pytest.raises(ScenarioError, match="no FedBuff checkpoint"):
        run_scenario(scenario(rounds=2), resume=tmp_path)


@pytest.mark.parametrize(
    "aggregator",
    [{"kind": "mean"}, {"kind": "median"}, {"kind": "trimmed_mean", "fraction": 0.2}],
)
def test_every_aggregator_runs_and_learns(aggregator: dict[str, Any]) -> None:
    result = run_scenario(scenario(rounds=10, aggregator=aggregator))
    evals = [r.eval_loss for r in result.rounds if r.eval_loss is not None]
    assert result.rounds_completed == 10
    assert evals[-1] < evals[0]


def max_training(result: RunResult) -> int:
    """The most requests outstanding at once (sent, reply not yet delivered)."""
    out, most = 0, 0
    for e in result.trace.events:
        if e.kind == "send" and e.type == "TrainRequest":
            out += 1
        elif e.kind == "deliver" and e.type == "TrainReply":
            out -= 1
        most = max(most, out)
    return most


def test_concurrency_and_sync_interval_in_a_run() -> None:
    def requests(result: RunResult) -> list[int]:
        return [
            e.nbytes for e in result.trace.events if e.kind == "send" and e.type == "TrainRequest"
        ]

    data = scenario(rounds=12, clients={"count": 8}, protocol={"buffer_size": 2})
    eager = run_scenario(data)
    assert max_training(eager) == 8  # default: every client
    lazy = run_scenario(scenario(**{**data, "protocol": {**data["protocol"], "sync_interval": 4}}))
    small = min(requests(eager))  # a request without weights
    with_weights = [n for n in requests(eager) if n > 2 * small]
    lazy_weights = [n for n in requests(lazy) if n > 2 * small]
    assert len(lazy_weights) < len(with_weights)
    assert lazy.rounds_completed == 12
    capped = run_scenario(scenario(**{**data, "protocol": {"buffer_size": 2, "concurrency": 3}}))
    assert capped.rounds_completed == 12
    assert max_training(capped) == 3
    assert len({c for r in capped.rounds for c in r.replied}) > 3  # slots move around
