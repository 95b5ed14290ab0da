"""FedAvg's Strategy API and client mods, selected from the ``[protocol]`` table."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from protocols.fedavg import FedAvgOptions
from protocols.fedavg._strategy import Clip, GaussianNoise, Strategy, load_mods
from protocols.fedbuff import FedBuffOptions
from protocols.messages import TrainRequest
from simkit.runner import RunResult, run_scenario
from simkit.training import Weights

from .test_fedavg_machine import reply, start

QUICKSTART = Path(__file__).parents[2] / "scenarios" / "quickstart.toml"


def quickstart(**protocol: Any) -> dict[str, Any]:
    with QUICKSTART.open("rb") as handle:
        table = tomllib.load(handle)
    table["protocol"] = {**table["protocol"], **protocol}
    return table


def flat(result: RunResult) -> np.ndarray:
    return np.concatenate([a.ravel() for a in result.weights.values()])


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        (
            {"strategy": {"kind": "nope"}},
            "protocol.strategy.kind: unknown 'nope' (built in: dp-fedavg, fedavg, krum",
        ),
        ({"strategy": {"kind": "krum", "byzantine": -1}}, "protocol.strategy.byzantine: "),
        ({"strategy": {"kind": "krum", "typo": 1}}, "protocol.strategy.typo: Extra inputs"),
        ({"strategy": "krum"}, "protocol.strategy: must be a table with a 'kind'"),
        ({"strategy": {"kind": "simkit.training:Weights"}}, "is not a Strategy"),
        ({"strategy": {"kind": "no.such.module:X"}}, "protocol.strategy.kind: cannot load"),
        ({"mods": [{"kind": "clip", "max_norm": 0}]}, "protocol.mods[0].max_norm: "),
        ({"mods": [{"kind": "clip", "max_norm": 1}, {"kind": "x"}]}, "protocol.mods[1].kind"),
        ({"mods": {"kind": "clip"}}, "protocol.mods: must be a list of tables"),
    ],
)
def test_strategy_and_mod_errors_are_one_line_naming_the_key(
    table: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ValueError, match=r"^x\.toml: ") as info:
        FedAvgOptions.from_table(table, "x.toml")
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_plain_strategy_is_the_default_and_changes_nothing() -> None:
    plain = run_scenario(QUICKSTART).summary()
    named = run_scenario(quickstart(strategy={"kind": "fedavg"})).summary()
    assert (named["trace_digest"], named["weights_digest"]) == (
        plain["trace_digest"],
        plain["weights_digest"],
    )


def test_clip_bounds_the_norm_and_noise_is_seeded() -> None:
    update = Weights({"a": np.full(4, 3.0), "b": np.full(2, 4.0)})
    clipped = Clip(Clip.Options(max_norm=1.0))(update, np.random.default_rng(0))
    norm = np.sqrt(sum(float((a**2).sum()) for a in clipped.values()))
    assert norm == pytest.approx(1.0)
    small = Weights({"a": np.full(4, 0.1)})
    assert Clip(Clip.Options(max_norm=1.0))(small, np.random.default_rng(0)) is small
    noise = GaussianNoise(GaussianNoise.Options(std=0.5))
    one = noise(update, np.random.default_rng(3))
    two = noise(update, np.random.default_rng(3))
    assert np.array_equal(one["a"], two["a"])
    assert not np.array_equal(one["a"], update["a"])
    assert [type(m) for m in load_mods([{"kind": "clip", "max_norm": 2.0}])] == [Clip]


def test_client_mods_change_the_run_deterministically() -> None:
    mods = [{"kind": "clip", "max_norm": 0.05}, {"kind": "gaussian", "std": 0.001}]
    plain = run_scenario(QUICKSTART)
    first = run_scenario(quickstart(mods=mods))
    again = run_scenario(quickstart(mods=mods))
    assert first.rounds_completed == 5
    assert first.summary()["weights_digest"] == again.summary()["weights_digest"]
    assert first.summary()["weights_digest"] != plain.summary()["weights_digest"]
    # each round moves the model by at most the clip norm (plus the noise)
    assert np.linalg.norm(flat(first)) < np.linalg.norm(flat(plain))


def test_krum_resists_a_poisoning_client_that_moves_plain_fedavg() -> None:
    def poisoned(**options: Any) -> float:
        h = start(**options)
        names = h.waiting()
        h.feed([reply(h, names[0], "poison")] + [reply(h, c) for c in names[1:]])
        assert h.m.core.records[0].replied == names  # well formed: it takes part
        return (h.m.core.weights - start().m.core.weights).norm()

    assert poisoned() > 10  # one client's 1e3 moves the mean
    assert poisoned(strategy={"kind": "krum", "byzantine": 1}) == 0.0  # an honest zero update


def one_round(**options: Any) -> Weights:
    """The global weights after a first round in which every client replies (no event loop)."""
    h = start(**options)
    h.feed([reply(h, c) for c in h.waiting()])
    assert h.m.core.version == 1
    return h.m.core.weights


def test_dp_fedavg_adds_seeded_noise() -> None:
    dp = {"kind": "dp-fedavg", "clip_norm": 0.5, "noise_multiplier": 1.0}
    first, again = one_round(strategy=dp), one_round(strategy=dp)
    assert first == again  # the noise comes from the seed tree
    quiet = one_round(strategy={**dp, "noise_multiplier": 0.0})
    assert first != quiet
    # the crafted replies carry zero updates: without noise the weights stay
    assert quiet == start().m.core.weights
    h = start(strategy={**dp, "noise_multiplier": 0.0})
    names = h.waiting()
    h.feed([reply(h, names[0], "poison")] + [reply(h, c) for c in names[1:]])
    moved = (h.m.core.weights - start().m.core.weights).norm()
    assert 0 < moved <= 0.5 / len(names) + 1e-9  # the poisoned update clipped to 0.5


class OneStep(Strategy):
    """Per-client configuration: c000 trains one step, the others as asked."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.seen: dict[tuple[int, int], TrainRequest] = {}

    def configure(self, round: int, client: str, request: TrainRequest) -> TrainRequest:
        if client != "c000":
            return request
        key = (round, id(request))
        if key not in self.seen:
            self.seen[key] = dataclasses.replace(request, n_epoch=None, n_steps=1)
        return self.seen[key]


def test_a_strategy_configures_each_client_and_samples_the_cohort() -> None:
    h = start(strategy={"kind": f"{__name__}:OneStep"})
    names = h.waiting()
    assert names == tuple(h.m.core.setup.client_names)  # the default cohort: everyone
    for r in (1, 2):
        requests = [b for b in h.sent if isinstance(b.message, TrainRequest)][-2:]
        assert [b.peers for b in requests] == [("c000",), names[1:]]  # c000 in a group of its own
        assert requests[0].message.n_steps == 1
        assert requests[0].message.round == requests[1].message.round == r
        assert requests[1].message.n_steps is None
        h.feed([reply(h, c) for c in names])
    assert [r.replied for r in h.m.core.records] == [names, names]


def test_fedbuff_takes_the_same_client_mods() -> None:
    table = quickstart()
    table["protocol"] = {"name": "fedbuff", "buffer_size": 3}
    plain = run_scenario(table)
    table["protocol"]["mods"] = [{"kind": "clip", "max_norm": 0.05}]
    clipped = run_scenario(table)
    assert clipped.rounds_completed == 5
    assert clipped.summary()["weights_digest"] != plain.summary()["weights_digest"]
    with pytest.raises(ValueError, match=r"^x\.toml: protocol\.mods\[0\]\.max_norm: "):
        FedBuffOptions.from_table({"mods": [{"kind": "clip", "max_norm": -1}]}, "x.toml")


def test_the_dp_fedavg_scenario_runs_and_its_overrides_work() -> None:
    path = QUICKSTART.parent / "dp_fedavg.toml"
    noisy = run_scenario(path)
    assert noisy.rounds_completed == 10
    quiet = run_scenario(
        path,
        overrides=['protocol.strategy={kind="dp-fedavg", clip_norm=0.5, noise_multiplier=0.0}'],
    )
    local = run_scenario(
        path,
        overrides=[
            'protocol.strategy={kind="fedavg"}',
            'protocol.mods=[{kind="clip", max_norm=0.5}, {kind="gaussian", std=0.05}]',
        ],
    )
    digests = {r.summary()["weights_digest"] for r in (noisy, quiet, local)}
    assert len(digests) == 3
    assert quiet.rounds_completed == local.rounds_completed == 10


def test_each_shipped_variant_is_at_most_40_lines() -> None:
    import ast

    import protocols.fedavg.examples as examples

    source = Path(examples.__file__).read_text(encoding="utf-8")
    classes = {n.name: n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)}
    for variant, options in (("Krum", "_KrumOptions"), ("DPFedAvg", "_DPOptions")):
        lines = sum(
            c.end_lineno - c.lineno + 1  # type: ignore[operator]
            for c in (classes[variant], classes[options])
        )
        assert lines <= 40, (variant, lines)
