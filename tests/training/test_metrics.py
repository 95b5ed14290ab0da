"""Metrics with mergeable states, the scalar tracker, early stopping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simkit.rng import SeedTree
from simkit.training import (
    Accuracy,
    EarlyStopping,
    Loss,
    MeanSquaredError,
    ScalarMeanTracker,
    aggregate_metrics,
    default_metrics,
    metric_results,
)


def test_merged_client_states_equal_the_centralized_value() -> None:
    rng = SeedTree(0).numpy("m")
    y = rng.integers(0, 3, 100)
    pred = rng.random((100, 3))
    central = Accuracy()
    central.update(y, pred, 0.0)
    per_client = {}
    for i, (lo, hi) in enumerate([(0, 13), (13, 60), (60, 100)]):
        acc = Accuracy()
        acc.update(y[lo:hi], pred[lo:hi], 0.0)
        per_client[f"c{i}"] = {"accuracy": acc.state()}
    merged = aggregate_metrics(per_client)
    assert merged["accuracy"].result() == pytest.approx(central.result())
    assert metric_results(merged) == {"accuracy": pytest.approx(central.result())}


def test_loss_mse_and_reset() -> None:
    loss = Loss()
    loss.update(np.zeros(2), np.zeros(2), 1.0)
    loss.update(np.zeros(6), np.zeros(6), 3.0)
    assert loss.result() == pytest.approx(2.5)
    mse = MeanSquaredError()
    mse.update(np.array([1.0, 2.0]), np.array([[1.0], [4.0]]), 0.0)
    assert mse.result() == 2.0
    mse.reset()
    assert math.isnan(mse.result())


def test_binary_accuracy_from_scores() -> None:
    acc = Accuracy()
    acc.update(np.array([1, 0, 1]), np.array([0.9, 0.2, 0.1]), 0.0)
    assert acc.result() == pytest.approx(2 / 3)


def test_default_metrics_and_partial_merge() -> None:
    assert [m.name for m in default_metrics("classification")] == ["loss", "accuracy"]
    assert [m.name for m in default_metrics("regression")] == ["loss", "mse"]
    a, b = Loss(), Loss()
    a.update(np.zeros(1), np.zeros(1), 2.0)
    b.update(np.zeros(1), np.zeros(1), 4.0)
    merged = aggregate_metrics(
        {"x": {"loss": a.state()}, "y": {"loss": b.state(), "acc": a.state()}}
    )
    assert merged["loss"].result() == 3.0
    assert merged["acc"].result() == 2.0


def test_scalar_mean_tracker() -> None:
    t = ScalarMeanTracker()
    t.add_scalars({"loss": 1.0, "acc": 0.5})
    t.add_scalars({"loss": 4.0}, n=2)
    t.add_scalars({"acc": 1.0}, n={"acc": 3})
    assert t.means() == {"acc": pytest.approx(0.875), "loss": 3.0}
    assert t.pop_and_reset() == {"acc": pytest.approx(0.875), "loss": 3.0}
    assert t.means() == {}


def test_early_stopping_min_mode() -> None:
    stop = EarlyStopping(patience=2, min_delta=0.1)
    assert [stop.update(v) for v in (1.0, 0.95, 0.5, 0.45, 0.44)] == [
        False,
        False,
        False,
        False,
        True,
    ]
    assert stop.best == 0.5
    assert stop.best_index == 2


def test_early_stopping_max_mode_nan_and_state() -> None:
    stop = EarlyStopping(patience=1, mode="max")
    assert not stop.update(0.5)
    assert stop.update(math.nan)
    again = EarlyStopping(patience=1, mode="max")
    again.load_state_dict(stop.state_dict())
    assert again.should_stop
    assert again.best == 0.5
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)
