"""Numpy models: analytic gradients against finite differences, API contracts."""

from __future__ import annotations

import numpy as np
import pytest

from simkit.rng import SeedTree
from simkit.training import LinearRegression, LogisticRegression, Model, Weights


def _finite_difference(model: Model, x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> Weights:
    base = model.get_weights()
    out = {}
    for name, arr in base.items():
        grad = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            for sign in (1.0, -1.0):
                shifted = base.to_dict(copy=True)
                shifted[name][idx] += sign * eps
                model.set_weights(Weights(shifted))
                loss, _ = model.evaluate_batch(x, y)
                grad[idx] += sign * loss / (2 * eps)
        out[name] = grad
    model.set_weights(base)
    return Weights(out)


def _random_weights(model: Model, rng: np.random.Generator) -> Weights:
    return model.get_weights().map(lambda a: rng.normal(0.0, 0.5, a.shape))


@pytest.mark.parametrize("n", [1, 7])
def test_logistic_gradients_match_finite_differences(n: int) -> None:
    rng = SeedTree(3).numpy("fd")
    model = LogisticRegression(5, 4)
    model.set_weights(_random_weights(model, rng))
    x, y = rng.normal(size=(n, 5)), rng.integers(0, 4, n)
    analytic = model.compute_batch_gradients(x, y)
    numeric = _finite_difference(model, x, y)
    for name in analytic.names:
        np.testing.assert_allclose(analytic[name], numeric[name], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_linear_gradients_match_finite_differences(n_outputs: int) -> None:
    rng = SeedTree(4).numpy("fd")
    model = LinearRegression(6, n_outputs)
    model.set_weights(_random_weights(model, rng))
    x = rng.normal(size=(9, 6))
    y = rng.normal(size=(9,) if n_outputs == 1 else (9, n_outputs))
    analytic = model.compute_batch_gradients(x, y)
    numeric = _finite_difference(model, x, y)
    for name in analytic.names:
        np.testing.assert_allclose(analytic[name], numeric[name], rtol=1e-5, atol=1e-8)


def test_recorded_losses_match_evaluation_and_are_collected_once() -> None:
    rng = SeedTree(5).numpy("x")
    model = LogisticRegression(3, 3)
    model.set_weights(_random_weights(model, rng))
    x, y = rng.normal(size=(4, 3)), rng.integers(0, 3, 4)
    loss, probs = model.evaluate_batch(x, y)
    model.compute_batch_gradients(x, y)
    model.compute_batch_gradients(x, y)
    assert model.collect_training_losses() == pytest.approx([loss, loss])
    assert model.collect_training_losses() == []
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(model.predict(x), probs)


def test_zero_weights_give_log_n_classes_loss() -> None:
    model = LogisticRegression(2, 5)
    loss, _ = model.evaluate_batch(np.ones((3, 2)), np.array([0, 1, 4]))
    assert loss == pytest.approx(np.log(5))


def test_logistic_is_stable_for_huge_logits() -> None:
    model = LogisticRegression(1, 2)
    model.set_weights(Weights({"bias": np.zeros(2), "weight": np.array([[1e4, -1e4]])}))
    grads = model.compute_batch_gradients(np.array([[1.0], [-1.0]]), np.array([0, 0]))
    assert grads.is_finite()
    assert np.isfinite(model.collect_training_losses()[0])


def test_get_set_apply() -> None:
    model = LinearRegression(2)
    w = model.get_weights()
    w["weight"][0, 0] = 5.0  # a copy: the model is unchanged
    assert model.get_weights()["weight"][0, 0] == 0.0
    model.set_weights(w)
    assert model.get_weights() == w
    model.apply_updates(w)
    assert model.get_weights() == w * 2
    view = model.get_weights(copy=False)
    assert view["weight"][0, 0] == 10.0


def test_set_weights_validates() -> None:
    model = LogisticRegression(2, 3)
    with pytest.raises(ValueError, match="expected weights"):
        model.set_weights(Weights({"weight": np.zeros((2, 3))}))
    with pytest.raises(ValueError, match="expected shape"):
        model.set_weights(Weights({"bias": np.zeros(3), "weight": np.zeros((3, 3))}))


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="n_classes >= 2"):
        LogisticRegression(3, 1)
    with pytest.raises(ValueError, match="n_features"):
        LinearRegression(0)


def test_seeded_init_is_deterministic_and_float32_works() -> None:
    a = LogisticRegression(4, 3, seed=SeedTree(1))
    b = LogisticRegression(4, 3, seed=SeedTree(1))
    assert a.get_weights().digest() == b.get_weights().digest()
    assert a.get_weights() != LogisticRegression(4, 3).get_weights()
    c = LogisticRegression(4, 3, dtype=np.float32)
    grads = c.compute_batch_gradients(np.ones((2, 4)), np.array([0, 2]))
    assert grads["weight"].dtype == np.float32


def test_state_dict_round_trip() -> None:
    a = LogisticRegression(3, 2, seed=SeedTree(2))
    b = LogisticRegression(3, 2)
    b.load_state_dict(a.state_dict())
    assert a.get_weights() == b.get_weights()
    assert a.session().__enter__() is None
