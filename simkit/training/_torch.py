"""A :class:`~simkit.training.Model` around any ``torch.nn.Module`` (CPU).

Determinism without touching global state for good. Inside
:meth:`TorchModel.session` (entered by the training manager around each
round):

* ``torch.use_deterministic_algorithms(True)`` is set, and the previous
  setting restored on exit;
* torch's default CPU generator is forked (``torch.random.fork_rng``) and
  loaded with the model's own generator state, drawn from the seed tree and
  saved back on exit. Dropout and other layers that can only use the default
  generator thus draw from the model's stream, and the caller's global state
  is left exactly as it was. ``torch.manual_seed`` is never called;
* ``torch.set_num_threads(num_threads)`` is applied only when asked: results
  are bitwise reproducible on one machine with its default thread count;
  pin the count (e.g. 1) to compare runs across machines with different cores.

Weights are exchanged as numpy arrays sharing memory with the parameters, so
getting gradients and applying updates costs no copy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from simkit.rng import SeedTree
from simkit.training._model import Model, Task
from simkit.training._weights import Array, Weights

__all__ = ["TorchModel"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_CLASSIFICATION_LOSSES = (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)


class TorchModel(Model):
    """Wrap a torch module and a loss (mean-reduced) as a simkit model.

    Args:
        module: The network; its trainable parameters are the weights.
        loss: ``loss(outputs, targets) -> scalar``, e.g. ``nn.CrossEntropyLoss()``.
        seed: Seed tree node. If given, parameters are re-initialized with
            each submodule's ``reset_parameters`` under the stream
            ``seed.torch("init")``, and dropout draws from ``seed.torch("torch")``.
            Without it the module's weights are kept and the stream comes from
            ``SeedTree(0)``.
        task: ``"classification"`` or ``"regression"`` (default: classification
            for cross-entropy and NLL losses).
        x_dtype: Numpy dtype inputs are converted to.
        num_threads: Pin torch's intra-op threads during sessions.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        loss: LossFn,
        *,
        seed: SeedTree | None = None,
        task: Task | None = None,
        x_dtype: npt.DTypeLike = np.float32,
        num_threads: int | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        self.loss_fn = loss
        self.task = task or (
            "classification" if isinstance(loss, _CLASSIFICATION_LOSSES) else "regression"
        )
        self.x_dtype = np.dtype(x_dtype)
        self.num_threads = num_threads
        named = sorted((n, p) for n, p in module.named_parameters() if p.requires_grad)
        self._params: dict[str, torch.nn.Parameter] = dict(named)
        self._views: dict[str, Array] = {n: p.detach().numpy() for n, p in named}
        self._view = Weights(self._views)
        self._training_mode: bool | None = None
        self._depth = 0
        tree = seed if seed is not None else SeedTree(0)
        self._rng_state: torch.Tensor = tree.torch("torch").get_state()
        if seed is not None:
            self._reset_parameters(seed.torch("init"))

    def _reset_parameters(self, generator: torch.Generator) -> None:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.default_generator.set_state(generator.get_state())
            for sub in self.module.modules():
                reset = getattr(sub, "reset_parameters", None)
                if callable(reset):
                    reset()

    # ----------------------------------------------------------------- session

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        was_det = torch.are_deterministic_algorithms_enabled()
        was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        threads = torch.get_num_threads()
        torch.use_deterministic_algorithms(True)
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        self._depth = 1
        try:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.set_state(self._rng_state)
                try:
                    yield
                finally:
                    self._rng_state = torch.default_generator.get_state()
        finally:
            self._depth = 0
            torch.use_deterministic_algorithms(was_det, warn_only=was_warn)
            if self.num_threads is not None:
                torch.set_num_threads(threads)

    def session(self) -> contextlib.AbstractContextManager[None]:
        """Deterministic algorithms and the model's own generator (re-entrant)."""
        return self._session()

    def _mode(self, training: bool) -> None:
        if self._training_mode is not training:
            self.module.train(training)
            self._training_mode = training

    def _tensors(self, x: Array, y: Array) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.asarray(x, dtype=self.x_dtype)), torch.as_tensor(y)

    # ----------------------------------------------------------------- weights

    def get_weights(self, copy: bool = True) -> Weights:
        return self._view.copy() if copy else self._view

    def set_weights(self, weights: Weights) -> None:
        if weights.names != self._view.names:
            raise ValueError(f"expected weights {self._view.names}, got {weights.names}")
        for name, view in self._views.items():
            new = weights[name]
            if new.shape != view.shape:
                raise ValueError(f"weight {name!r}: expected shape {view.shape}, got {new.shape}")
            np.copyto(view, new, casting="same_kind")

    def apply_updates(self, updates: Weights) -> None:
        for name, view in self._views.items():
            np.add(view, updates[name], out=view, casting="same_kind")

    # ---------------------------------------------------------------- compute

    def compute_batch_gradients(self, x: Array, y: Array) -> Weights:
        self._mode(True)
        xt, yt = self._tensors(x, y)
        for p in self._params.values():
            p.grad = None
        loss = self.loss_fn(self.module(xt), yt)
        loss.backward()  # type: ignore[no-untyped-call]
        self._losses.append(float(loss.item()))
        grads = {}
        for name, p in self._params.items():
            grads[name] = p.grad.numpy() if p.grad is not None else np.zeros_like(self._views[name])
        return Weights._wrap(grads)

    def evaluate_batch(self, x: Array, y: Array) -> tuple[float, Array]:
        """Mean loss and the module's raw outputs (logits for classifiers)."""
        self._mode(False)
        xt, yt = self._tensors(x, y)
        with torch.no_grad():
            out = self.module(xt)
            loss = float(self.loss_fn(out, yt).item())
        return loss, out.numpy()

    def predict(self, x: Array) -> Array:
        """Class probabilities (softmax of the outputs) or regression outputs."""
        self._mode(False)
        with torch.no_grad():
            out = self.module(torch.from_numpy(np.asarray(x, dtype=self.x_dtype)))
            if self.task == "classification":
                out = torch.softmax(out, dim=-1)
        result: Array = out.numpy()
        return result

    # ------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Weights, buffers (e.g. batch-norm statistics) and the generator state."""
        return {"weights": self.get_weights().to_dict(), **self.local_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_weights(Weights(state["weights"]))
        self.load_local_state(state)

    def local_state(self) -> dict[str, Any]:
        """Buffers (e.g. batch-norm statistics) and the generator state."""
        buffers = {n: b.detach().numpy().copy() for n, b in sorted(self.module.named_buffers())}
        return {"buffers": buffers, "rng": self._rng_state.numpy().copy()}

    def load_local_state(self, state: dict[str, Any]) -> None:
        named = dict(self.module.named_buffers())
        with torch.no_grad():
            for name in sorted(state["buffers"]):
                named[name].copy_(torch.from_numpy(np.array(state["buffers"][name])))
        self._rng_state = torch.from_numpy(np.array(state["rng"], dtype=np.uint8))
