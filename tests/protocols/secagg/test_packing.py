"""flatten_fields / unflatten_fields: the masked fields of an aggregate as one vector, and back."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from protocols.secagg import cap_weight, flatten_fields, unflatten_fields
from simkit.training import Aggregate, ModelUpdates, Weights, sum_in_order


def updates(seed: int, weight: float) -> ModelUpdates:
    rng = np.random.default_rng(seed)
    w = Weights({"w": rng.normal(size=(3, 2)).astype(np.float32), "b": rng.normal(size=2)})
    return ModelUpdates.weighted(w, weight)


def test_model_updates_round_trip() -> None:
    u = updates(1, 3.0)
    vector, spec = flatten_fields(u)
    assert vector.dtype == np.float64
    assert vector.shape == (9,) == (spec.length,)
    assert spec.names == ("updates", "weight")
    back = unflatten_fields(vector, spec, u)
    assert back == u
    assert back.updates["w"].dtype == np.float32
    assert back.updates["w"].shape == (3, 2)


def test_the_layout_is_fixed_and_sums_commute_with_flattening() -> None:
    clients = {f"c{i}": updates(i, float(i + 1)) for i in range(4)}
    vectors = {c: flatten_fields(u) for c, u in clients.items()}
    specs = {spec for _, spec in vectors.values()}
    assert len(specs) == 1
    spec = specs.pop()
    template = ModelUpdates(clients["c0"].updates.zeros_like(), 0.0)
    assert flatten_fields(template)[1] == spec  # the server builds the same layout
    total = np.sum([v for v, _ in vectors.values()], axis=0)
    summed = unflatten_fields(total, spec, template)
    expected = sum_in_order(clients)
    assert summed.weight == pytest.approx(expected.weight)
    for name in expected.updates:
        np.testing.assert_allclose(summed.updates[name], expected.updates[name], rtol=1e-6)


@dataclasses.dataclass(frozen=True)
class Mixed(Aggregate):
    """Masked: arrays, ints, dicts, None; clear: a peak kept by a custom rule."""

    counts: np.ndarray
    n: int
    extra: dict[str, Any]
    nothing: None
    peak: float

    def aggregate_peak(self, mine: float, theirs: float) -> float:
        return max(mine, theirs)

    def prepare_for_secagg(self) -> tuple[dict[str, Any], dict[str, Any]]:
        fields = self.to_fields()
        clear = {"peak": fields.pop("peak")}
        return fields, clear


def test_nested_values_ints_and_clear_fields() -> None:
    a = Mixed(np.array([1, 2, 3]), 4, {"z": 1.5, "a": {"k": np.ones(2)}}, None, 7.0)
    b = Mixed(np.array([0, 5, 1]), 2, {"z": -0.5, "a": {"k": np.zeros(2)}}, None, 9.0)
    (va, spec), (vb, _) = flatten_fields(a), flatten_fields(b)
    assert spec.names == ("counts", "extra", "n", "nothing")
    noisy = va + vb + 1e-7  # a dequantized sum is a little off
    total = unflatten_fields(noisy, spec, a, clear={"peak": 9.0})
    assert total.counts.dtype == a.counts.dtype
    assert total.counts.tolist() == [1, 7, 4]
    assert total.n == 6
    assert total.extra["z"] == pytest.approx(1.0)
    assert total.nothing is None
    np.testing.assert_allclose(total.extra["a"]["k"], [1.0, 1.0], atol=1e-6)
    assert total.peak == 9.0
    assert unflatten_fields(va, spec, a).peak == 7.0  # the template's clear fields by default


def test_errors_name_the_field() -> None:
    @dataclasses.dataclass(frozen=True)
    class Bad(Aggregate):
        label: str

    with pytest.raises(TypeError, match="label: cannot mask a str"):
        flatten_fields(Bad("x"))

    @dataclasses.dataclass(frozen=True)
    class Peak(Aggregate):
        top: float

        def aggregate_top(self, mine: float, theirs: float) -> float:
            return max(mine, theirs)

    with pytest.raises(NotImplementedError, match="override prepare_for_secagg"):
        flatten_fields(Peak(1.0))
    vector, spec = flatten_fields(updates(0, 1.0))
    with pytest.raises(ValueError, match="the vector has 8 values, the layout 9"):
        unflatten_fields(vector[:-1], spec, updates(0, 1.0))


def test_cap_weight_keeps_the_mean_and_the_range() -> None:
    light, heavy = updates(1, 50.0), updates(2, 5000.0)
    capped = {"a": cap_weight(light, 1000.0), "b": cap_weight(heavy, 1000.0)}
    assert capped["a"].weight == pytest.approx(0.05)
    assert capped["b"].weight == 1.0
    for u, c in ((light, capped["a"]), (heavy, capped["b"])):
        np.testing.assert_allclose(c.mean()["b"], u.mean()["b"])  # each client's own update
        assert np.max(np.abs(c.updates["b"])) <= np.max(np.abs(u.mean()["b"])) + 1e-12
    mean = sum_in_order(capped).mean()
    raw = {"a": light, "b": ModelUpdates.weighted(heavy.mean(), 1000.0)}  # heavy counts as 1000
    np.testing.assert_allclose(mean["b"], sum_in_order(raw).mean()["b"])
    with pytest.raises(ValueError, match="max_weight must be > 0"):
        cap_weight(light, 0.0)
