"""The Builder: seeded, deterministic objects from a validated scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simkit.channels import TcpTransport
from simkit.faults import Crash, Restart
from simkit.scenario import ScenarioError, build, client_names, load_scenario
from simkit.training import FedAdam, LogisticRegression, Median, WeightedMean


def built(data: dict[str, Any], overrides: list[str] | None = None) -> Any:
    return build(load_scenario(data, overrides))


def fingerprint(data: dict[str, Any], overrides: list[str] | None = None) -> list[Any]:
    setup = built(data, overrides).setup
    return [(c.name, c.speed, c.train.x.tobytes(), c.train.y.tobytes()) for c in setup.clients] + [
        setup.test.x.tobytes() if setup.test is not None else None
    ]


def test_client_names() -> None:
    assert client_names(3) == ["c000", "c001", "c002"]
    assert client_names(1001)[-1] == "c1000"
    assert client_names(1001)[0] == "c0000"


def test_same_seed_same_shards_and_speeds(small: dict[str, Any]) -> None:
    small["clients"]["speeds"] = {"kind": "lognormal", "sigma": 1.0}
    assert fingerprint(small) == fingerprint(small)
    assert fingerprint(small) != fingerprint(small, ["seed=1"])


def test_setup_fields(small: dict[str, Any]) -> None:
    setup = built(small, ["training.n_steps=4", "aggregator.kind=median"]).setup
    assert setup.name == "small"
    assert setup.rounds == 3
    assert setup.seed == 0
    assert setup.client_names == ["c000", "c001", "c002", "c003", "c004"]
    assert setup.training.n_steps == 4
    assert setup.training.n_epoch is None
    assert isinstance(setup.aggregator, Median)
    assert setup.secagg == {"mode": "off"}
    model = setup.model()
    assert isinstance(model, LogisticRegression)
    assert model.get_weights().digest() == setup.model().get_weights().digest()
    assert sum(len(c.train) for c in setup.clients) + len(setup.test) == 5 * 60


def test_default_effort_is_one_epoch(small: dict[str, Any]) -> None:
    assert built(small).setup.training.n_epoch == 1
    assert built(small, ["training.timeout=2.0"]).setup.training.n_epoch is None


def test_two_tier_speeds(small: dict[str, Any]) -> None:
    small["clients"] = {"count": 10, "speeds": {"kind": "two_tier", "fraction": 0.3}}
    speeds = [c.speed for c in built(small).setup.clients]
    assert sorted(speeds) == [0.25] * 3 + [1.0] * 7


def test_list_speeds(small: dict[str, Any]) -> None:
    small["clients"]["speeds"] = {"kind": "list", "values": [1, 2, 3, 4, 5]}
    assert [c.speed for c in built(small).setup.clients] == [1, 2, 3, 4, 5]


def test_optimizers(small: dict[str, Any]) -> None:
    setup = built(
        small,
        [
            "optimizer.server.kind=fedadam",
            "optimizer.server.schedule={steps=10}",
            "optimizer.client.prox_mu=0.1",
        ],
    ).setup
    server = setup.server_optimizer()
    assert repr(server) == repr(FedAdam(0.01, schedule=server.schedule))
    assert server.schedule is not None
    assert server.schedule(5) == pytest.approx(0.5)
    client = setup.client_optimizer()
    assert [type(r).__name__ for r in client.regularizers] == ["FedProxRegularizer"]


def test_scaffold_reaches_the_server(small: dict[str, Any]) -> None:
    setup = built(small, ["optimizer.client.scaffold=true"]).setup
    names = [m.name for m in setup.server_optimizer().modules]
    assert "scaffold" in " ".join(names)


def test_digits_partition(small: dict[str, Any]) -> None:
    pytest.importorskip("sklearn")
    small["data"] = {"source": "digits", "partition": {"kind": "dirichlet", "alpha": 0.3}}
    setup = built(small).setup
    assert setup.test is not None
    assert len(setup.test) == round(0.2 * 1797)
    assert sum(len(c.train) for c in setup.clients) == 1797 - len(setup.test)
    assert setup.model().get_weights()["weight"].shape == (64, 10)
    assert isinstance(setup.aggregator, WeightedMean)


def test_npz_path_is_relative_to_the_scenario(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(40, 3)), y=rng.integers(0, 2, 40))
    scenario = tmp_path / "s.toml"
    scenario.write_text('[clients]\ncount = 4\n[data]\nsource = "npz"\npath = "d.npz"\n')
    setup = build(load_scenario(scenario)).setup
    assert [len(c.train) for c in setup.clients] == [8, 8, 8, 8]
    missing = tmp_path / "m.toml"
    missing.write_text('[data]\nsource = "npz"\npath = "nope.npz"\n')
    with pytest.raises(ScenarioError, match=r"m\.toml: data\.path: no such file"):
        build(load_scenario(missing))


def test_more_clients_than_samples(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), y=np.zeros(3, dtype=np.int64))
    data = {"clients": {"count": 5}, "data": {"source": "npz", "path": str(tmp_path / "d.npz")}}
    with pytest.raises(ScenarioError, match=r"data: client c00. gets no samples"):
        built(data, ["data.test_fraction=0"])


def test_valid_fraction(small: dict[str, Any]) -> None:
    setup = built(small, ["data.valid_fraction=0.25"]).setup
    assert all(c.valid is not None and len(c.valid) == 12 for c in setup.clients)


def test_mlp_model(small: dict[str, Any]) -> None:
    small["model"] = {"kind": "mlp", "hidden": [8, 4], "activation": "tanh", "dropout": 0.1}
    setup = built(small).setup
    a, b = setup.model(), setup.model()
    assert a.get_weights().digest() == b.get_weights().digest()
    shapes = sorted(w.shape for w in a.get_weights().values())
    assert (10, 8) in shapes or (8, 10) in shapes


def test_dropout_faults_are_seeded(small: dict[str, Any]) -> None:
    small["clients"]["count"] = 10
    small["faults"] = {"dropout": {"fraction": 0.3}}
    faults = list(built(small).sim.faults)
    assert len(faults) == 3
    assert all(isinstance(f, Crash) and f.on is not None for f in faults)
    assert [f.on.count for f in faults if isinstance(f, Crash) and f.on] == [
        f.on.count for f in built(small).sim.faults if isinstance(f, Crash) and f.on
    ]
    assert all(1 <= f.on.count <= 3 for f in faults if isinstance(f, Crash) and f.on)
    timed = built(
        small,
        [
            "faults.dropout.when=time",
            "faults.dropout.restart_after=5.0",
            "faults.dropout.loud=true",
        ],
    ).sim.faults
    crashes = [f for f in timed if isinstance(f, Crash)]
    restarts = [f for f in timed if isinstance(f, Restart)]
    assert len(crashes) == len(restarts) == 3
    assert all(c.mode == "loud" for c in crashes)
    assert all(r.at == pytest.approx(c.at + 5.0) for c, r in zip(crashes, restarts, strict=True))


def test_explicit_fault_events(small: dict[str, Any]) -> None:
    small["faults"] = {"events": [{"kind": "crash", "at": 1.0, "actor": "c001"}]}
    assert [f.actor for f in built(small).sim.faults if isinstance(f, Crash)] == ["c001"]
    small["faults"] = {"events": [{"kind": "crash", "at": 1.0}]}
    with pytest.raises(ScenarioError, match=r"faults\.events\[0\]: crash: 'actor'"):
        built(small)


def test_network_and_heartbeat(small: dict[str, Any]) -> None:
    sim = built(
        small,
        [
            "network.latency={kind='lognormal', median=0.05}",
            "network.loss=0.1",
            "heartbeat.interval=2.0",
            "run.max_time=100.0",
        ],
    ).sim
    assert sim.network_model.default.loss == 0.1
    assert sim.network_model.default.latency.to_spec()["kind"] == "lognormal"
    assert sim.heartbeat.interval == 2.0
    assert sim.max_time == 100.0


def test_a_transport_replaces_the_network_model(small: dict[str, Any]) -> None:
    transport = TcpTransport()
    sim = build(load_scenario(small), transport=transport).sim
    assert sim.transport is transport


def test_network_faults_need_the_in_memory_network(small: dict[str, Any]) -> None:
    small["faults"] = {
        "events": [{"kind": "partition", "at": 1.0, "groups": [["c000"], ["server"]]}]
    }
    build(load_scenario(small))  # fine in memory
    with pytest.raises(ScenarioError, match="partition fault needs the in-memory network"):
        build(load_scenario(small), transport=TcpTransport())


def test_only_keeps_the_faults_of_the_actors_built_here(small: dict[str, Any]) -> None:
    small["faults"] = {
        "events": [
            {"kind": "crash", "at": 1.0, "actor": "c001"},
            {"kind": "crash", "at": 2.0, "actor": "c002"},
        ]
    }
    faults = build(load_scenario(small), transport=TcpTransport(), only={"c002"}).sim.faults
    assert [(f.actor, f.at) for f in faults if isinstance(f, Crash)] == [("c002", 2.0)]
