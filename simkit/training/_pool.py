"""One model per worker: clients borrow it for a round and hand it back.

A simulated client needs a model only while it computes. Holding one per
client makes memory grow with clients x parameters (1,000 clients of a 10^6
parameter model: 8 GB), although a client's model is overwritten by the
global weights at the start of every round. As in pfl-research, a
:class:`ModelPool` keeps one model per worker (per thread that computes at
the same time: one in a virtual-time run) and a
:class:`~simkit.training.TrainingManager` borrows it for each round. What a
model carries besides its weights from one round to the next (a torch
model's generator and buffers: :meth:`Model.local_state`) is kept per client,
compactly, and loaded into the borrowed model first; a numpy model has none.
The global weights clients keep between rounds are shared the same way
(:class:`~simkit.training.SharedWeights`: one copy per version).
Training from a borrowed model is bit for bit training from a model of one's
own.
"""

from __future__ import annotations

import contextlib
import pickle
import threading
from collections.abc import Callable, Iterator
from typing import Any

from simkit.training._model import Model
from simkit.training._weights import SharedWeights

__all__ = ["ModelPool"]


class ModelPool:
    """Models lent to clients one round at a time.

    Args:
        factory: Makes a fresh model (the same initial state every call).
    """

    def __init__(self, factory: Callable[[], Model]) -> None:
        self.factory = factory
        self._idle: list[Model] = []
        self._lock = threading.Lock()
        self._initial: dict[str, Any] | None = None
        self.made = 0
        self.shared = SharedWeights()
        """The global weights the clients of this worker hold, one copy per version."""

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Model]:
        """A model for the duration of the block (made if none is idle)."""
        with self._lock:
            model = self._idle.pop() if self._idle else None
        if model is None:
            model = self._make()
        try:
            yield model
        finally:
            with self._lock:
                self._idle.append(model)

    def _make(self) -> Model:
        model = self.factory()
        with self._lock:
            self.made += 1
            if self._initial is None:
                self._initial = model.local_state()
        return model

    @property
    def initial_local_state(self) -> dict[str, Any]:
        """What a fresh model carries besides its weights (a client's first state)."""
        if self._initial is None:
            with self.borrow():
                pass
        assert self._initial is not None
        return self._initial

    def __reduce__(self) -> tuple[Any, ...]:
        # another process (a worker of a process pool) keeps one pool per
        # factory, so its jobs borrow the same few models round after round
        return (_pool_in_worker, (pickle.dumps(self.factory),))


_WORKER_POOLS: dict[bytes, ModelPool] = {}


def _pool_in_worker(factory: bytes) -> ModelPool:
    pool = _WORKER_POOLS.get(factory)
    if pool is None:
        pool = _WORKER_POOLS[factory] = ModelPool(pickle.loads(factory))
    return pool
