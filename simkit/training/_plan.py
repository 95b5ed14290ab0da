"""The virtual seconds a round will cost, known before it runs.

In virtual time a round's cost comes from the :class:`CostModel` and the
effort constraints alone: which steps fit depends on batch sizes, costs and
the timeout, never on the values trained. So a client can hand its round to
an executor (:mod:`simkit.executor`), sleep the planned seconds in virtual
time and collect the result when it wakes: the trace is the one an inline
round would give, however long the outside work really takes. These
functions walk the same loops as :meth:`TrainingManager.train_under_constraints`
and :meth:`~TrainingManager.evaluate_under_constraints` (a test holds them
equal).
"""

from __future__ import annotations

from typing import Any

from simkit.training._manager import TrainingManager, _Meter
from simkit.training._messages import (
    EvalInstructions,
    EvalResult,
    TrainFailure,
    TrainInstructions,
    TrainResult,
)

__all__ = ["outside_round", "planned_evaluation", "planned_training"]


def outside_round(
    manager: TrainingManager, ins: TrainInstructions | EvalInstructions
) -> tuple[TrainResult | EvalResult | TrainFailure, dict[str, Any]]:
    """Run one round (a job for an executor): its result and the manager's new state.

    In a worker process ``manager`` is a copy: the caller loads the returned
    state (optimizer, batch generator, the model's local state) into its own.
    """
    if isinstance(ins, TrainInstructions):
        return manager.training_round(ins), manager.state_dict()
    return manager.evaluation_round(ins), manager.state_dict()


def planned_training(manager: TrainingManager, ins: TrainInstructions) -> float:
    """Virtual seconds ``manager.training_round(ins)`` will report (0.0 if it fails early).

    Raises:
        ValueError: The manager measures real time (it has a clock).
    """
    if manager.clock is not None:
        raise ValueError("a round measured in real time cannot be planned")
    n_epoch, n_steps = ins.n_epoch, ins.n_steps
    if n_epoch is None and n_steps is None and ins.timeout is None:
        n_epoch = 1
    sizes = manager.train_data.batch_sizes(ins.batch_size, ins.drop_remainder)
    if not sizes:
        return 0.0
    costs = [manager.cost.train_step(s, manager.speed) for s in sizes]
    if n_epoch is None and n_steps is None and min(costs) <= 0:
        return 0.0  # the round fails (never stops)
    meter = _Meter(None, ins.timeout, manager.cost.round_overhead(manager.speed))
    steps = epochs = 0
    while n_epoch is None or epochs < n_epoch:
        if (n_steps is not None and steps >= n_steps) or not meter.allows(costs[0]):
            break
        for cost in costs:
            if (n_steps is not None and steps >= n_steps) or not meter.allows(cost):
                break
            meter.charge(cost)
            steps += 1
        else:
            epochs += 1
            continue
        break
    return meter.spent()


def planned_evaluation(manager: TrainingManager, ins: EvalInstructions) -> float:
    """Virtual seconds ``manager.evaluation_round(ins)`` will report.

    Raises:
        ValueError: The manager measures real time (it has a clock).
    """
    if manager.clock is not None:
        raise ValueError("a round measured in real time cannot be planned")
    data = manager.valid_data if manager.valid_data is not None else manager.train_data
    meter = _Meter(None, ins.timeout, manager.cost.round_overhead(manager.speed))
    steps = 0
    for size in data.batch_sizes(ins.batch_size):
        cost = manager.cost.eval_step(size, manager.speed)
        if (ins.n_steps is not None and steps >= ins.n_steps) or not meter.allows(cost):
            break
        meter.charge(cost)
        steps += 1
    return meter.spent()
