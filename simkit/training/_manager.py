"""The training manager: one client's rounds under effort constraints.

The manager never sleeps and, in virtual mode, never reads a clock: it
*returns* the seconds a round cost according to a :class:`CostModel`, and the
actor that drives it sleeps that long in virtual time. So timeouts count in
virtual seconds and stragglers reproduce bit for bit. Given a ``clock``
(real mode), it measures instead.

Timeout rule (virtual mode): a step is taken only if it *ends* within the
timeout (up to float rounding: three steps of 0.1 s fit in 0.3 s), so
``t_spent <= timeout`` always and the reported effort is exactly what was
done. With a clock, a step starts only while the elapsed time is
below the timeout (the last step may end after it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from simkit.rng import SeedTree
from simkit.training._aggregate import MeanState, MetricState, ModelUpdates
from simkit.training._aggregators import weight_for
from simkit.training._data import Dataset
from simkit.training._messages import (
    Effort,
    EvalInstructions,
    EvalResult,
    TrainFailure,
    TrainInstructions,
    TrainResult,
)
from simkit.training._metrics import Metric, default_metrics, evaluate_metrics
from simkit.training._model import Model
from simkit.training._optimizer import Optimizer
from simkit.training._pool import ModelPool

__all__ = ["CostModel", "TrainingManager"]

Clock = Callable[[], float]

# Summed step costs carry float rounding (0.1 + 0.1 + 0.1 > 0.3): a step that
# ends at the timeout up to this relative slack is taken, and t_spent is then
# reported as the timeout itself, so t_spent <= timeout always holds.
_SLACK = 1.0 + 1e-9


@dataclass(frozen=True, slots=True)
class CostModel:
    """Virtual seconds charged for computing, at speed 1.

    A training step on ``b`` samples costs ``(per_sample * b + per_step) /
    speed``; an evaluation step ``(per_sample * eval_ratio * b + per_step) /
    speed``; each round adds ``per_round / speed`` once. ``speed`` is the
    client's speed factor: 2.0 is twice as fast, 0.25 a straggler taking four
    times as long.

    Args:
        per_sample: Seconds per training sample.
        per_step: Fixed seconds per step (optimizer, data loading).
        per_round: Fixed seconds per round (setup).
        eval_ratio: Cost of evaluating a sample relative to training on it.
    """

    per_sample: float = 1e-3
    per_step: float = 0.0
    per_round: float = 0.0
    eval_ratio: float = 1.0 / 3.0

    def __post_init__(self) -> None:
        for name in ("per_sample", "per_step", "per_round", "eval_ratio"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"CostModel.{name} must be >= 0, got {value!r}")

    def train_step(self, batch: int, speed: float = 1.0) -> float:
        """Seconds for one training step on ``batch`` samples."""
        return (self.per_sample * batch + self.per_step) / speed

    def eval_step(self, batch: int, speed: float = 1.0) -> float:
        """Seconds for one evaluation step on ``batch`` samples."""
        return (self.per_sample * self.eval_ratio * batch + self.per_step) / speed

    def round_overhead(self, speed: float = 1.0) -> float:
        """Fixed seconds per round."""
        return self.per_round / speed


class _Meter:
    """Elapsed seconds: summed from the cost model, or read from a clock."""

    __slots__ = ("clock", "start", "t", "timeout")

    def __init__(self, clock: Clock | None, timeout: float | None, overhead: float) -> None:
        self.clock, self.timeout = clock, timeout
        self.start = clock() if clock is not None else 0.0
        self.t = 0.0 if clock is not None else overhead

    def allows(self, cost: float) -> bool:
        if self.timeout is None:
            return True
        if self.clock is None:
            return self.t + cost <= self.timeout * _SLACK
        return self.clock() - self.start < self.timeout

    def charge(self, cost: float) -> None:
        if self.clock is None:
            self.t += cost

    def spent(self) -> float:
        if self.clock is not None:
            return self.clock() - self.start
        if self.timeout is not None and self.t > self.timeout:
            return self.timeout  # only float rounding noise can get here (see _SLACK)
        return self.t


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class TrainingManager:
    """Runs a client's training and evaluation rounds.

    Args:
        model: The model to train (its weights are replaced by each round's),
            or a :class:`ModelPool` to borrow one from for each round: the
            manager then keeps only the model's local state between rounds,
            and every round's instructions must carry the weights.
        optimizer: The client optimizer.
        train_data: Training set.
        valid_data: Evaluation set (``None``: evaluate on ``train_data``).
        seed_tree: The client's node of the seed tree; batches are shuffled
            with the stream ``seed_tree.numpy("batches")``, which continues
            across rounds (and is saved in :meth:`state_dict`).
        cost: The cost model.
        speed: The client's speed factor (see :class:`CostModel`).
        clock: Real mode: a clock in seconds; ``t_spent`` is then measured.
        metrics: Factory of the evaluation metrics (default: by model task).
        verbose: Show a progress bar (rich) during rounds.
    """

    def __init__(
        self,
        model: Model | ModelPool,
        optimizer: Optimizer,
        train_data: Dataset,
        valid_data: Dataset | None = None,
        *,
        seed_tree: SeedTree,
        cost: CostModel | None = None,
        speed: float = 1.0,
        clock: Clock | None = None,
        metrics: Callable[[], Sequence[Metric]] | None = None,
        verbose: bool = False,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        self._pool = model if isinstance(model, ModelPool) else None
        self._model: Model | None = None if isinstance(model, ModelPool) else model
        self._local: dict[str, Any] | None = None  # pooled: the model's state between rounds
        self.optimizer = optimizer
        self.train_data = train_data
        self.valid_data = valid_data
        self.seed_tree = seed_tree
        self.cost = cost if cost is not None else CostModel()
        self.speed = speed
        self.clock = clock
        self.metrics = metrics
        self.verbose = verbose
        self.rounds_done = 0
        self._rng = seed_tree.numpy("batches")

    # ------------------------------------------------------------------ model

    @property
    def model(self) -> Model:
        """The model (pooled: the borrowed one, only during a round).

        Raises:
            RuntimeError: The model is pooled and no round is running.
        """
        if self._model is None:
            raise RuntimeError("a pooled model is borrowed only during a round")
        return self._model

    @contextlib.contextmanager
    def _holding(self) -> Iterator[Model]:
        """The model for a round: borrowed from the pool (re-entrant) or our own."""
        if self._pool is None or self._model is not None:
            yield self.model
            return
        with self._pool.borrow() as model:
            local = self._local if self._local is not None else self._pool.initial_local_state
            model.load_local_state(local)
            self._model = model
            try:
                yield model
            finally:
                self._model = None
                state = model.local_state()
                self._local = state or None

    # ------------------------------------------------------------------ rounds

    def training_round(self, instructions: TrainInstructions) -> TrainResult | TrainFailure:
        """Train from the instructed weights and return the weighted update.

        Any exception raised on the way (by the model, optimizer or data)
        becomes a :class:`TrainFailure` carrying its text; it never escapes.
        """
        try:
            with self._holding():
                return self._training_round(instructions)
        except Exception as exc:
            return TrainFailure(instructions.round, "train", _describe(exc))

    def _training_round(self, ins: TrainInstructions) -> TrainResult:
        model, opt = self.model, self.optimizer
        if ins.weights is not None:
            model.set_weights(ins.weights)
        elif self._pool is not None:
            raise ValueError("a model borrowed from a pool needs the round's weights")
        start = model.get_weights()
        opt.process_aux_var(ins.aux)
        opt.start_round(ins.round, start)
        model.collect_training_losses()  # drop anything stale
        effort = self.train_under_constraints(
            ins.batch_size,
            ins.n_epoch,
            ins.n_steps,
            ins.timeout,
            shuffle=ins.shuffle,
            drop_remainder=ins.drop_remainder,
        )
        delta = model.get_weights(copy=False) - start
        weight = weight_for(ins.weighting, len(self.train_data), effort.n_steps)
        losses = model.collect_training_losses()
        self.rounds_done += 1
        return TrainResult(
            round=ins.round,
            updates=ModelUpdates.weighted(delta, weight),
            aux=opt.collect_aux_var(),
            metrics={"loss": MeanState(float(sum(losses)), float(len(losses)))},
            effort=effort,
        )

    def evaluation_round(self, instructions: EvalInstructions) -> EvalResult | TrainFailure:
        """Evaluate the instructed weights; exceptions become a :class:`TrainFailure`."""
        try:
            with self._holding() as model:
                if instructions.weights is not None:
                    model.set_weights(instructions.weights)
                elif self._pool is not None:
                    raise ValueError("a model borrowed from a pool needs the round's weights")
                states, effort = self.evaluate_under_constraints(
                    instructions.batch_size, instructions.n_steps, instructions.timeout
                )
            return EvalResult(instructions.round, states, effort)
        except Exception as exc:
            return TrainFailure(instructions.round, "evaluate", _describe(exc))

    # ------------------------------------------------------------- constraints

    def train_under_constraints(
        self,
        batch_size: int = 32,
        n_epoch: int | None = None,
        n_steps: int | None = None,
        timeout: float | None = None,
        *,
        shuffle: bool = True,
        drop_remainder: bool = False,
    ) -> Effort:
        """Train until the first of ``n_epoch``, ``n_steps``, ``timeout`` is reached.

        With no limit at all, trains one epoch. Exceptions propagate (the
        round methods wrap them).

        Returns:
            The exact effort: complete epochs, steps, samples and seconds.

        Raises:
            ValueError: An epoch has no batch, or only a timeout is given while
                steps cost zero virtual seconds (training would never stop).
        """
        if n_epoch is None and n_steps is None and timeout is None:
            n_epoch = 1
        with self._holding():
            return self._train(batch_size, n_epoch, n_steps, timeout, shuffle, drop_remainder)

    def _train(
        self,
        batch_size: int,
        n_epoch: int | None,
        n_steps: int | None,
        timeout: float | None,
        shuffle: bool,
        drop_remainder: bool,
    ) -> Effort:
        data, model, opt = self.train_data, self.model, self.optimizer
        sizes = data.batch_sizes(batch_size, drop_remainder)
        if not sizes:
            raise ValueError(f"{len(data)} samples make no batch of {batch_size} (drop_remainder)")
        costs = [self.cost.train_step(s, self.speed) for s in sizes]
        self._check_termination(n_epoch, n_steps, costs)
        meter = _Meter(self.clock, timeout, self.cost.round_overhead(self.speed))
        steps = epochs = samples = 0
        with model.session(), self._progress("train", n_epoch, n_steps, len(sizes)) as tick:
            while n_epoch is None or epochs < n_epoch:
                if (n_steps is not None and steps >= n_steps) or not meter.allows(costs[0]):
                    break
                x, y = data.epoch(self._rng, shuffle)
                for i, size in enumerate(sizes):
                    if (n_steps is not None and steps >= n_steps) or not meter.allows(costs[i]):
                        break
                    lo = i * batch_size
                    opt.step(
                        model, model.compute_batch_gradients(x[lo : lo + size], y[lo : lo + size])
                    )
                    meter.charge(costs[i])
                    steps += 1
                    samples += size
                    tick()
                else:
                    epochs += 1
                    continue
                break
        return Effort(epochs, steps, samples, meter.spent())

    def _check_termination(
        self, n_epoch: int | None, n_steps: int | None, costs: list[float]
    ) -> None:
        if n_epoch is None and n_steps is None and self.clock is None and min(costs) <= 0:
            raise ValueError(
                "only a timeout bounds this round but steps cost 0 virtual seconds: "
                "give the CostModel a positive per_sample or per_step"
            )

    def evaluate_under_constraints(
        self,
        batch_size: int = 128,
        n_steps: int | None = None,
        timeout: float | None = None,
        data: Dataset | None = None,
    ) -> tuple[dict[str, MetricState], Effort]:
        """One ordered pass over ``data`` (default: validation, else training data).

        Stops early at ``n_steps`` batches or when the next batch would end
        after ``timeout`` seconds.

        Returns:
            Metric name -> state (sorted), and the effort.
        """
        if data is None:
            data = self.valid_data if self.valid_data is not None else self.train_data
        with self._holding():
            return self._evaluate(data, batch_size, n_steps, timeout)

    def _evaluate(
        self, data: Dataset, batch_size: int, n_steps: int | None, timeout: float | None
    ) -> tuple[dict[str, MetricState], Effort]:
        metrics = list(self.metrics() if self.metrics else default_metrics(self.model.task))
        sizes = data.batch_sizes(batch_size)
        meter = _Meter(self.clock, timeout, self.cost.round_overhead(self.speed))
        steps = samples = 0
        with self.model.session(), self._progress("evaluate", 1, n_steps, len(sizes)) as tick:
            for i, size in enumerate(sizes):
                cost = self.cost.eval_step(size, self.speed)
                if (n_steps is not None and steps >= n_steps) or not meter.allows(cost):
                    break
                lo = i * batch_size
                x, y = data.rows(lo, lo + size)
                loss, pred = self.model.evaluate_batch(x, y)
                evaluate_metrics(metrics, y, pred, loss)
                meter.charge(cost)
                steps += 1
                samples += size
                tick()
        epochs = 1 if steps == len(sizes) else 0
        states: dict[str, MetricState] = {m.name: m.state() for m in metrics}
        return dict(sorted(states.items())), Effort(epochs, steps, samples, meter.spent())

    @contextlib.contextmanager
    def _progress(
        self, label: str, n_epoch: int | None, n_steps: int | None, per_epoch: int
    ) -> Iterator[Callable[[], None]]:
        if not self.verbose:
            yield _noop
            return
        from rich.progress import Progress

        total = n_steps if n_epoch is None else per_epoch * n_epoch
        if n_steps is not None and n_epoch is not None:
            total = min(n_steps, per_epoch * n_epoch)
        with Progress(transient=True) as progress:
            task = progress.add_task(label, total=total)
            yield lambda: progress.advance(task)

    # ------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer (with module states), batch RNG state and round count.

        With a pooled model, ``"model"`` holds only its local state (the
        weights come with every round's instructions).
        """
        if self._pool is not None and self._model is None:
            model = self._local if self._local is not None else self._pool.initial_local_state
        else:
            model = self.model.state_dict()
        return {
            "model": model,
            "optimizer": self.optimizer.state_dict(),
            "rng": self._rng.bit_generator.state,
            "rounds_done": self.rounds_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; training then continues bit for bit."""
        if self._pool is not None and self._model is None:
            local = {k: v for k, v in state["model"].items() if k != "weights"}
            self._local = local or None
        else:
            self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._rng.bit_generator.state = state["rng"]
        self.rounds_done = int(state["rounds_done"])


def _noop() -> None:
    return None
