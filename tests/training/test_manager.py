"""TrainingManager: effort constraints, cost model, failures, evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from simkit.rng import SeedTree
from simkit.training import (
    SGD,
    CostModel,
    Dataset,
    Effort,
    EvalInstructions,
    EvalResult,
    LinearRegression,
    LogisticRegression,
    MeanState,
    Model,
    ScaffoldServerAuxVar,
    TrainFailure,
    TrainingManager,
    TrainInstructions,
    TrainResult,
    Weights,
)


def _data(n: int = 50, seed: int = 0) -> Dataset:
    rng = SeedTree(seed).numpy("data")
    return Dataset(rng.normal(size=(n, 4)), rng.integers(0, 3, n))


def _manager(
    n: int = 50, cost: CostModel | None = None, speed: float = 1.0, **kw: object
) -> TrainingManager:
    return TrainingManager(
        LogisticRegression(4, 3),
        SGD(0.1),
        _data(n),
        seed_tree=SeedTree(1).child("c0"),
        cost=cost or CostModel(per_sample=0.01),
        speed=speed,
        **kw,  # type: ignore[arg-type]
    )


def _train(manager: TrainingManager, **kw: object) -> TrainResult:
    result = manager.training_round(TrainInstructions(round=0, batch_size=10, **kw))  # type: ignore[arg-type]
    assert isinstance(result, TrainResult), result
    return result


def test_default_is_one_epoch() -> None:
    effort = _train(_manager()).effort
    assert effort == Effort(n_epoch=1, n_steps=5, n_samples=50, t_spent=0.5)


@pytest.mark.parametrize(("n_steps", "epochs", "samples"), [(1, 0, 10), (5, 1, 50), (12, 2, 120)])
def test_n_steps_is_exact(n_steps: int, epochs: int, samples: int) -> None:
    effort = _train(_manager(), n_steps=n_steps).effort
    assert (effort.n_steps, effort.n_epoch, effort.n_samples) == (n_steps, epochs, samples)


def test_n_epoch_is_exact_with_a_short_last_batch() -> None:
    effort = _train(_manager(n=47), n_epoch=3).effort
    assert (effort.n_epoch, effort.n_steps, effort.n_samples) == (3, 15, 141)
    assert effort.t_spent == pytest.approx(1.41)


def test_first_limit_reached_wins() -> None:
    assert _train(_manager(), n_epoch=2, n_steps=7).effort.n_steps == 7
    assert _train(_manager(), n_epoch=1, n_steps=70).effort.n_steps == 5
    assert _train(_manager(), n_epoch=3, timeout=0.65).effort.n_steps == 6


def test_timeout_counts_virtual_seconds_and_never_overshoots() -> None:
    # each step: (0.01 * 10 + 0.05) / 0.5 = 0.3 s; round overhead 0.2 / 0.5 = 0.4 s
    manager = _manager(cost=CostModel(per_sample=0.01, per_step=0.05, per_round=0.2), speed=0.5)
    effort = _train(manager, timeout=2.0).effort
    assert effort.n_steps == 5  # 0.4 + 5 * 0.3 = 1.9 <= 2.0 < 2.2
    assert effort.t_spent == pytest.approx(1.9)
    assert effort.t_spent <= 2.0
    assert effort.n_epoch == 1
    # a step that would end exactly at the timeout is taken
    exact = _train(_manager(), timeout=0.3).effort
    assert (exact.n_steps, exact.t_spent) == (3, 0.3)


def test_timeout_shorter_than_one_step_trains_nothing() -> None:
    manager = _manager()
    before = manager.model.get_weights()
    result = _train(manager, weights=before, timeout=0.05)
    assert result.effort == Effort(0, 0, 0, 0.0)
    assert result.updates.mean() == before.zeros_like()


def test_faster_clients_do_more_within_a_timeout() -> None:
    slow = _train(_manager(speed=0.5), n_epoch=10, timeout=1.0).effort
    fast = _train(_manager(speed=2.0), n_epoch=10, timeout=1.0).effort
    assert (slow.n_steps, fast.n_steps) == (5, 20)


def test_timeout_only_with_free_steps_is_refused() -> None:
    manager = _manager(cost=CostModel(per_sample=0.0))
    result = manager.training_round(TrainInstructions(round=0, timeout=1.0))
    assert isinstance(result, TrainFailure)
    assert "cost 0 virtual seconds" in result.error_text


def test_drop_remainder_with_too_little_data_fails_cleanly() -> None:
    result = _manager(n=5).training_round(
        TrainInstructions(round=0, batch_size=10, drop_remainder=True)
    )
    assert isinstance(result, TrainFailure)
    assert "no batch" in result.error_text


class _FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _SlowModel(LogisticRegression):
    """Each step takes 0.3 "real" seconds on a fake clock."""

    def __init__(self, clock: _FakeClock) -> None:
        super().__init__(4, 3)
        self.clock = clock

    def compute_batch_gradients(self, x: np.ndarray, y: np.ndarray) -> Weights:
        self.clock.now += 0.3
        return super().compute_batch_gradients(x, y)


def test_real_mode_measures_with_the_clock() -> None:
    clock = _FakeClock()
    manager = TrainingManager(
        _SlowModel(clock), SGD(0.1), _data(), seed_tree=SeedTree(0), clock=clock
    )
    effort = _train(manager, n_epoch=5, timeout=1.0).effort
    # steps start at 0, 0.3, 0.6 and 0.9 (< 1.0): the last one ends after the timeout
    assert effort.n_steps == 4
    assert effort.t_spent == pytest.approx(1.2)


def test_updates_are_weighted_as_instructed() -> None:
    res_samples = _train(_manager(), n_steps=3)
    res_steps = _train(_manager(), n_steps=3, weighting="steps")
    res_none = _train(_manager(), n_steps=3, weighting="none")
    assert (res_samples.updates.weight, res_steps.updates.weight, res_none.updates.weight) == (
        50.0,
        3.0,
        1.0,
    )
    for res in (res_steps, res_none):
        np.testing.assert_allclose(
            res.updates.mean()["weight"], res_samples.updates.mean()["weight"]
        )
    assert res_samples.metrics["loss"].result() > 0


def test_update_is_new_weights_minus_instructed_weights() -> None:
    manager = _manager()
    start = Weights({"bias": np.ones(3), "weight": np.zeros((4, 3))})
    result = _train(manager, weights=start)
    new = manager.model.get_weights()
    np.testing.assert_allclose(new["weight"], (start + result.updates.mean())["weight"])


def test_training_is_deterministic_and_seeded() -> None:
    a = _train(_manager(), n_epoch=3).updates.updates.digest()
    b = _train(_manager(), n_epoch=3).updates.updates.digest()
    other = TrainingManager(
        LogisticRegression(4, 3), SGD(0.1), _data(), seed_tree=SeedTree(2).child("c0")
    )
    c = _train(other, n_epoch=3).updates.updates.digest()
    assert a == b != c


class _Exploding(LinearRegression):
    def compute_batch_gradients(self, x: np.ndarray, y: np.ndarray) -> Weights:
        raise RuntimeError("boom in user code")

    def evaluate_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        raise ArithmeticError


def test_exception_in_train_step_becomes_a_failure() -> None:
    manager = TrainingManager(_Exploding(4), SGD(0.1), _data(), seed_tree=SeedTree(0))
    result = manager.training_round(TrainInstructions(round=7))
    assert result == TrainFailure(7, "train", "RuntimeError: boom in user code")
    evaluated = manager.evaluation_round(EvalInstructions(round=7))
    assert evaluated == TrainFailure(7, "evaluate", "ArithmeticError")


def test_bad_weights_and_bad_aux_become_failures() -> None:
    manager = _manager()
    bad = manager.training_round(TrainInstructions(round=0, weights=Weights({"x": np.ones(1)})))
    assert isinstance(bad, TrainFailure)
    assert "expected weights" in bad.error_text
    aux = manager.training_round(
        TrainInstructions(round=0, aux={"scaffold": ScaffoldServerAuxVar()})
    )
    assert isinstance(aux, TrainFailure)
    assert "KeyError" in aux.error_text


def test_instructions_validate() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        TrainInstructions(round=0, batch_size=0)
    with pytest.raises(ValueError, match="n_steps"):
        TrainInstructions(round=0, n_steps=True)
    with pytest.raises(ValueError, match="timeout"):
        TrainInstructions(round=0, timeout=-1.0)
    with pytest.raises(ValueError, match="weighting"):
        TrainInstructions(round=0, weighting="bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="weights"):
        TrainInstructions(round=0, weights={"w": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="round"):
        EvalInstructions(round=-1)
    with pytest.raises(ValueError, match="speed"):
        _manager(speed=0.0)
    with pytest.raises(ValueError, match="per_sample"):
        CostModel(per_sample=-1.0)


def test_evaluation_round() -> None:
    manager = _manager(n=30)
    manager.valid_data = _data(25, seed=5)
    result = manager.evaluation_round(EvalInstructions(round=1, batch_size=10))
    assert isinstance(result, EvalResult)
    assert sorted(result.metrics) == ["accuracy", "loss"]
    assert result.metrics["loss"].result() == pytest.approx(np.log(3))
    assert result.effort.t_spent == pytest.approx(25 * 0.01 / 3)
    assert (result.effort.n_epoch, result.effort.n_steps, result.effort.n_samples) == (1, 3, 25)
    limited = manager.evaluation_round(EvalInstructions(round=1, batch_size=10, n_steps=2))
    assert isinstance(limited, EvalResult)
    assert limited.effort.n_steps == 2
    assert limited.effort.n_epoch == 0


def test_evaluation_falls_back_to_training_data_and_times_out() -> None:
    manager = _manager(n=30)
    states, effort = manager.evaluate_under_constraints(10, timeout=0.25 / 3)
    assert effort.n_samples == 20
    accuracy = states["accuracy"]
    assert isinstance(accuracy, MeanState)
    assert accuracy.count == 20


def test_regression_metrics() -> None:
    rng = SeedTree(0).numpy("r")
    x = rng.normal(size=(20, 2))
    data = Dataset(x, x @ np.array([1.0, -2.0]) + 0.5)
    manager = TrainingManager(LinearRegression(2), SGD(0.1), data, seed_tree=SeedTree(0))
    for r in range(30):
        manager.training_round(TrainInstructions(round=r, batch_size=5))
    states, _ = manager.evaluate_under_constraints()
    assert sorted(states) == ["loss", "mse"]
    assert states["mse"].result() < 1e-3


def test_verbose_progress_does_not_change_results() -> None:
    quiet = _train(_manager(), n_epoch=2).updates.updates
    loud = _train(_manager(verbose=True), n_epoch=2).updates.updates
    assert quiet == loud


def test_model_abc_defaults() -> None:
    assert Model.session(LogisticRegression(2, 2)).__enter__() is None
