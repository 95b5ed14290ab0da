"""Aggregators: weighted mean, mean, median, trimmed mean; order independence."""

from __future__ import annotations

import numpy as np
import pytest

from simkit.rng import SeedTree
from simkit.training import (
    Aggregator,
    Mean,
    Median,
    ModelUpdates,
    TrimmedMean,
    WeightedMean,
    Weights,
    weight_for,
)


def _update(value: float) -> Weights:
    return Weights({"w": np.array([value, -value])})


def _replies(agg: Aggregator, values: dict[str, tuple[float, int, int]]) -> dict[str, ModelUpdates]:
    return {name: agg.prepare(_update(v), n, s) for name, (v, n, s) in values.items()}


VALUES = {"c2": (1.0, 10, 1), "c0": (4.0, 30, 3), "c1": (-2.0, 60, 2)}


def test_weighted_mean_by_samples() -> None:
    agg = WeightedMean()
    out = agg.aggregate(_replies(agg, VALUES))
    expected = (1.0 * 10 + 4.0 * 30 - 2.0 * 60) / 100
    np.testing.assert_allclose(out["w"], [expected, -expected])
    assert agg.supports_secagg


def test_weighted_mean_by_steps_and_plain_mean() -> None:
    by_steps = WeightedMean(by="steps")
    out = by_steps.aggregate(_replies(by_steps, VALUES))
    np.testing.assert_allclose(out["w"][0], (1.0 + 12.0 - 4.0) / 6)
    mean = Mean()
    np.testing.assert_allclose(mean.aggregate(_replies(mean, VALUES))["w"][0], 1.0)


def test_median_and_trimmed_mean_ignore_outliers() -> None:
    values = {f"c{i}": (float(i), 1, 1) for i in range(9)} | {"evil": (1e9, 1000, 1)}
    med = Median()
    assert med.aggregate(_replies(med, values))["w"][0] == 4.5
    trimmed = TrimmedMean(0.1)
    assert trimmed.aggregate(_replies(trimmed, values))["w"][0] == pytest.approx(4.5)
    assert not med.supports_secagg
    # robust aggregators read each client's mean update, whatever its weighting
    weighted = {k: ModelUpdates.weighted(_update(v), n) for k, (v, n, _) in values.items()}
    assert med.aggregate(weighted)["w"][0] == 4.5


def test_trimmed_mean_zero_is_mean() -> None:
    values = {f"c{i}": (float(i * i), 1, 1) for i in range(5)}
    agg = TrimmedMean(0.0)
    assert agg.aggregate(_replies(agg, values))["w"][0] == pytest.approx(6.0)


@pytest.mark.parametrize("agg", [WeightedMean(), Mean(), Median(), TrimmedMean(0.2)])
def test_result_does_not_depend_on_arrival_order(agg: Aggregator) -> None:
    rng = SeedTree(0).numpy("order")
    replies = {
        f"c{i:02d}": agg.prepare(Weights({"w": rng.normal(size=50)}), int(rng.integers(1, 99)), 3)
        for i in range(20)
    }
    forward = agg.aggregate(replies)
    backward = agg.aggregate(dict(reversed(list(replies.items()))))
    assert forward.digest() == backward.digest()


def test_errors() -> None:
    with pytest.raises(ValueError, match="nothing"):
        WeightedMean().aggregate({})
    with pytest.raises(ValueError, match="nothing"):
        Median().aggregate({})
    with pytest.raises(ValueError, match="by must be"):
        WeightedMean(by="bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fraction"):
        TrimmedMean(0.5)
    with pytest.raises(ValueError, match="weighting"):
        weight_for("bytes", 1, 1)  # type: ignore[arg-type]
    assert "TrimmedMean(fraction=0.2)" == repr(TrimmedMean(0.2))
    assert "samples" in repr(WeightedMean())
