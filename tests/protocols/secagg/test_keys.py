"""Where SecAgg secrets come from: the seed tree in virtual time, the OS over real sockets."""

from __future__ import annotations

import copy
from typing import Any, Literal

import pytest

from protocols.fedavg import FedAvgPlugin
from protocols.secagg import SecAggSettings
from protocols.secagg import _keys as keys_module
from simkit.rng import SeedTree
from simkit.runner import run_scenario
from simkit.secagg import OsEntropy, SecAggAdvertiseKeys, SecAggServer

from . import kit
from .kit import run_sum


def advertised(settings: SecAggSettings, mode: Literal["virtual", "real"]) -> dict[str, bytes]:
    """Client -> the masking public key it advertised in one 3-client round."""
    run = run_sum(3, settings, length=4, mode=mode)
    assert not run.outcome().aborted, run.outcome().reason
    return {
        src: msg.s_pk
        for src, msg in run.result.actors["server"].cores[0].received  # type: ignore[attr-defined]
        if isinstance(msg, SecAggAdvertiseKeys)
    }


@pytest.fixture(autouse=True)
def _keep_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the kit's server keep its cores (``server.cores``)."""

    original = kit.SumServer.run

    async def run(self: Any, ctx: Any) -> None:
        self.cores = []

        def factory(config: Any, names: Any, seeds: Any) -> SecAggServer:
            self.cores.append(SecAggServer(config, names, seeds))
            return self.cores[-1]

        self.factory = factory
        await original(self, ctx)

    monkeypatch.setattr(kit.SumServer, "run", run)


def test_virtual_runs_are_seeded_and_replay() -> None:
    assert advertised(SecAggSettings(), "virtual") == advertised(SecAggSettings(), "virtual")


def test_two_real_runs_derive_different_keys() -> None:
    first, second = advertised(SecAggSettings(), "real"), advertised(SecAggSettings(), "real")
    assert sorted(first) == sorted(second) == ["c00", "c01", "c02"]
    assert all(first[c] != second[c] for c in first)
    assert set(first.values()).isdisjoint(advertised(SecAggSettings(), "virtual").values())


def test_seeded_keys_over_real_sockets_warn_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(keys_module, "_warned", [])
    seeded = SecAggSettings(keys="seeded")
    assert advertised(seeded, "real") == advertised(seeded, "real") == advertised(seeded, "virtual")
    err = capsys.readouterr().err
    assert err.count("server operator can unmask every update") == 1
    assert err.strip() == keys_module.SEEDED_WARNING


def test_os_keys_can_be_asked_for_in_virtual_time() -> None:
    settings = SecAggSettings(keys="os")
    assert advertised(settings, "virtual") != advertised(settings, "virtual")
    assert isinstance(keys_module.key_source(settings, True, SeedTree(0)), OsEntropy)


def test_keys_must_be_os_or_seeded() -> None:
    with pytest.raises(ValueError, match=r"x\.toml: secagg\.keys: must be 'os' or 'seeded'"):
        SecAggSettings.from_table({"mode": "secagg", "keys": "random"}, "x.toml")


SMALL: dict[str, Any] = {
    "name": "keys",
    "seed": 3,
    "rounds": 1,
    "protocol": {"name": "fedavg", "round_timeout": 30.0, "min_replies": 2},
    "clients": {"count": 3},
    "data": {"alpha": 0.5, "beta": 0.5, "samples": 20, "dim": 4, "classes": 2},
    "training": {"batch_size": 8, "n_epoch": 1},
    "secagg": {"mode": "secagg"},
}


def _keys_advertised(transport: str, secagg: dict[str, Any]) -> list[bytes]:
    """The masking public keys advertised in a 3-client FedAvg round over ``transport``."""
    scenario = copy.deepcopy(SMALL)
    scenario["secagg"].update(secagg)
    cores: list[SecAggServer] = []

    def keep(config: Any, names: Any, seeds: Any) -> SecAggServer:
        cores.append(SecAggServer(config, names, seeds))
        return cores[-1]

    result = run_scenario(scenario, plugin=FedAvgPlugin(secagg_factory=keep), transport=transport)
    assert result.rounds_completed == 1, result.summary()
    return [m.s_pk for _, m in cores[0].received if isinstance(m, SecAggAdvertiseKeys)]


def test_over_tcp_keys_come_from_the_os_unless_seeded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(keys_module, "_warned", [])
    a, b = _keys_advertised("tcp", {}), _keys_advertised("tcp", {})
    assert len(a) == 3
    assert set(a).isdisjoint(b)
    assert "warning" not in capsys.readouterr().err
    seeded = {"keys": "seeded"}
    assert _keys_advertised("tcp", seeded) == _keys_advertised("memory", seeded)
    assert keys_module.SEEDED_WARNING in capsys.readouterr().err
