"""The Aggregate API: field-wise sums, overrides, secagg split, order independence."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simkit.training import (
    Aggregate,
    AuxVar,
    MeanState,
    ModelUpdates,
    ScaffoldAuxVar,
    Weights,
    register_aggregate,
    sum_in_order,
)


@dataclasses.dataclass(frozen=True)
class Counts(Aggregate):
    n: int
    vec: np.ndarray
    w: Weights
    note: None = None


@dataclasses.dataclass(frozen=True)
class Peak(Aggregate):
    total: float
    peak: float

    def aggregate_peak(self, mine: float, theirs: float) -> float:
        return max(mine, theirs)


def _counts(n: int, values: list[int]) -> Counts:
    arr = np.array(values, dtype=np.int64)
    return Counts(n, arr, Weights({"a": arr * 2}))


def _same(a: Counts, b: Counts) -> bool:
    return a.n == b.n and np.array_equal(a.vec, b.vec) and a.w == b.w and a.note == b.note


ints = st.integers(-(2**40), 2**40)
counts = st.builds(lambda n, v: _counts(n, v), ints, st.lists(ints, min_size=3, max_size=3))


@given(counts, counts)
def test_integer_sums_are_commutative(a: Counts, b: Counts) -> None:
    assert _same(a + b, b + a)


@given(counts, counts, counts)
def test_integer_sums_are_associative(a: Counts, b: Counts, c: Counts) -> None:
    assert _same((a + b) + c, a + (b + c))


floats = st.floats(-1e6, 1e6, allow_nan=False)


@given(st.dictionaries(st.text(min_size=1, max_size=4), floats, min_size=1, max_size=6))
def test_float_sums_do_not_depend_on_arrival_order(values: dict[str, float]) -> None:
    aggs = {k: MeanState(v, 1.0) for k, v in values.items()}
    results = set()
    for order in itertools.islice(itertools.permutations(aggs), 24):
        shuffled = {k: aggs[k] for k in order}  # same content, other insertion order
        total = sum_in_order(shuffled)
        results.add((total.total, total.count))
    assert len(results) == 1


@given(floats, floats)
def test_float_sums_are_commutative(x: float, y: float) -> None:
    a = ModelUpdates(Weights({"w": np.array([x])}), 1.0)
    b = ModelUpdates(Weights({"w": np.array([y])}), 2.0)
    assert (a + b).updates.digest() == (b + a).updates.digest()


def test_custom_field_rule() -> None:
    assert Peak(1.0, 5.0) + Peak(2.0, 3.0) == Peak(3.0, 5.0)


def test_dict_fields_sum_key_by_key() -> None:
    @dataclasses.dataclass(frozen=True)
    class Tally(Aggregate):
        by: dict[str, int]

    assert (Tally({"a": 1, "b": 2}) + Tally({"b": 3, "c": 4})).by == {"a": 1, "b": 5, "c": 4}


def test_adding_other_types_is_refused() -> None:
    with pytest.raises(TypeError):
        _ = Peak(1.0, 1.0) + MeanState(1.0, 1.0)  # type: ignore[operator]


def test_prepare_for_secagg_default_and_rebuild() -> None:
    u = ModelUpdates.weighted(Weights({"w": np.array([1.0, 2.0])}), 3.0)
    masked, clear = u.prepare_for_secagg()
    assert set(masked) == {"updates", "weight"}
    assert clear == {}
    assert ModelUpdates.from_secagg(masked, clear) == u


def test_prepare_for_secagg_refuses_custom_rules() -> None:
    with pytest.raises(NotImplementedError, match="peak"):
        Peak(1.0, 1.0).prepare_for_secagg()


def test_model_updates() -> None:
    delta = Weights({"w": np.array([1.0, -1.0])})
    total = ModelUpdates.weighted(delta, 1.0) + ModelUpdates.weighted(delta * 3, 3.0)
    assert total.weight == 4.0
    assert total.mean() == delta * 2.5
    with pytest.raises(ValueError, match="weight"):
        ModelUpdates(delta, -1.0)
    with pytest.raises(ValueError, match="weight"):
        ModelUpdates(delta, math.nan)
    with pytest.raises(TypeError, match="Weights"):
        ModelUpdates({"w": 1}, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ZeroDivisionError):
        ModelUpdates(delta, 0.0).mean()


def test_mean_state() -> None:
    assert MeanState.of([1, 2, 3]).result() == 2.0
    assert math.isnan(MeanState(0.0, 0.0).result())


def test_sum_in_order_needs_values() -> None:
    with pytest.raises(ValueError, match="nothing"):
        sum_in_order({})


def test_from_fields_rebuilds_weights_and_checks_names() -> None:
    aux = ScaffoldAuxVar.from_fields({"delta": {"w": np.ones(2)}, "n_clients": 1})
    assert isinstance(aux.delta, Weights)
    with pytest.raises(TypeError, match="no field"):
        ScaffoldAuxVar.from_fields({"bogus": 1})


def test_codec_round_trips_aggregates() -> None:
    codec = pytest.importorskip("simkit.codec")

    @dataclasses.dataclass(frozen=True)
    class MyAux(AuxVar):
        value: float

    assert register_aggregate(MyAux, "tests.training.MyAux")
    for value in (
        ModelUpdates.weighted(Weights({"w": np.arange(3.0)}), 2.0),
        MeanState(3.0, 4.0),
        ScaffoldAuxVar(Weights({"w": np.ones(2)})),
        MyAux(1.5),
    ):
        assert codec.unpackb(codec.packb(value)) == value
