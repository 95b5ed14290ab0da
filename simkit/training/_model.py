"""The model interface and the numpy models (logistic and linear regression).

A :class:`Model` holds trainable weights, computes batch gradients (recording
the batch loss), applies updates and predicts. The numpy models here use
analytic gradients and are written for many small batches: no per-sample
Python, few temporaries, cached index arrays.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from simkit.rng import SeedTree
from simkit.training._weights import Array, Weights

__all__ = ["LinearRegression", "LogisticRegression", "Model", "Task"]

Task = Literal["classification", "regression"]


class Model(ABC):
    """A trainable model: weights in, gradients out.

    Subclasses implement the abstract methods; the training manager and the
    optimizers use nothing else. ``task`` selects the default metrics
    (classification: loss and accuracy; regression: loss and MSE).
    """

    task: Task = "classification"

    def __init__(self) -> None:
        self._losses: list[float] = []

    @abstractmethod
    def get_weights(self, copy: bool = True) -> Weights:
        """The trainable weights.

        Args:
            copy: Return copies (default). With ``False`` the arrays may be
                the model's own storage: read them, never write them, and do
                not keep them across updates.
        """

    @abstractmethod
    def set_weights(self, weights: Weights) -> None:
        """Replace the trainable weights (values are copied in).

        Raises:
            ValueError: Names or shapes do not match the model's.
        """

    @abstractmethod
    def compute_batch_gradients(self, x: Array, y: Array) -> Weights:
        """Gradients of the mean batch loss; records the loss.

        The returned arrays may be reused by the next call: consume them first.
        """

    @abstractmethod
    def apply_updates(self, updates: Weights) -> None:
        """Add ``updates`` to the weights, in place."""

    @abstractmethod
    def evaluate_batch(self, x: Array, y: Array) -> tuple[float, Array]:
        """The mean loss over the batch and the batch's predictions."""

    @abstractmethod
    def predict(self, x: Array) -> Array:
        """Predictions (class probabilities, or regression outputs)."""

    def collect_training_losses(self) -> list[float]:
        """The batch losses recorded since the last call, oldest first."""
        losses, self._losses = self._losses, []
        return losses

    def session(self) -> contextlib.AbstractContextManager[None]:
        """A context entered around a training or evaluation round.

        Numpy models need none; :class:`~simkit.training.TorchModel` uses it
        to switch torch to deterministic algorithms and its own generator.
        """
        return contextlib.nullcontext()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore the model (weights, and more for some)."""
        return {"weights": self.get_weights().to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.set_weights(Weights(state["weights"]))

    def local_state(self) -> dict[str, Any]:
        """What the model carries from round to round besides its weights.

        Empty for the numpy models; a torch model's generator state and
        buffers. A :class:`~simkit.training.ModelPool` keeps it per client.
        """
        return {}

    def load_local_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`local_state` (keys it does not know are ignored)."""
        return None


class _NumpyModel(Model):
    """Shared storage and bookkeeping of the numpy models."""

    def __init__(self, arrays: dict[str, Array]) -> None:
        super().__init__()
        self._params = arrays
        self._view = Weights(arrays)
        self._arange: Array = np.arange(0)

    def get_weights(self, copy: bool = True) -> Weights:
        return self._view.copy() if copy else self._view

    def set_weights(self, weights: Weights) -> None:
        if weights.names != self._view.names:
            raise ValueError(f"expected weights {self._view.names}, got {weights.names}")
        for name, arr in self._params.items():
            new = weights[name]
            if new.shape != arr.shape:
                raise ValueError(f"weight {name!r}: expected shape {arr.shape}, got {new.shape}")
            np.copyto(arr, new, casting="same_kind")

    def apply_updates(self, updates: Weights) -> None:
        for name, arr in self._params.items():
            np.add(arr, updates[name], out=arr, casting="same_kind")

    def _rows(self, n: int) -> Array:
        if self._arange.shape[0] < n:
            self._arange = np.arange(max(n, 2 * self._arange.shape[0]))
        return self._arange[:n]

    def _cast(self, x: Array) -> Array:
        return np.asarray(x, dtype=self._params["weight"].dtype)


class LogisticRegression(_NumpyModel):
    """Multinomial logistic regression (softmax) with analytic gradients.

    Weights: ``weight`` of shape ``(n_features, n_classes)`` and ``bias`` of
    shape ``(n_classes,)``. The loss is the mean cross-entropy; labels are
    integer class indices.

    Args:
        n_features: Input dimension.
        n_classes: Number of classes (at least 2).
        dtype: Floating dtype of the weights (inputs are cast to it).
        seed: If given, draws the initial weights from ``N(0, 0.01)`` with
            the stream ``seed.numpy("init")``; otherwise they start at zero.
    """

    task: Task = "classification"

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        dtype: npt.DTypeLike = np.float64,
        seed: SeedTree | None = None,
    ) -> None:
        if n_features < 1 or n_classes < 2:
            raise ValueError(
                f"need n_features >= 1 and n_classes >= 2, got {n_features}, {n_classes}"
            )
        weight = np.zeros((n_features, n_classes), dtype=dtype)
        if seed is not None:
            weight[...] = seed.numpy("init").normal(0.0, 0.01, weight.shape)
        super().__init__({"bias": np.zeros(n_classes, dtype=dtype), "weight": weight})
        self.n_features = n_features
        self.n_classes = n_classes

    def _probabilities(self, x: Array) -> tuple[Array, Array, Array]:
        """Softmax probabilities, shifted logits and the log partition function."""
        z = x @ self._params["weight"]
        z += self._params["bias"]
        # ufunc reductions directly: ndarray.max/sum add a Python-level wrapper per call
        z -= np.maximum.reduce(z, axis=1, keepdims=True)
        p = np.exp(z)
        total = np.add.reduce(p, axis=1, keepdims=True)
        p /= total
        return p, z, np.log(total[:, 0])

    def compute_batch_gradients(self, x: Array, y: Array) -> Weights:
        x = self._cast(x)
        n = x.shape[0]
        rows = self._rows(n)
        p, z, log_total = self._probabilities(x)
        self._losses.append(float(np.add.reduce(log_total - z[rows, y])) / n)
        p[rows, y] -= 1.0
        p /= n
        return Weights._wrap({"bias": np.add.reduce(p, axis=0), "weight": x.T @ p})

    def evaluate_batch(self, x: Array, y: Array) -> tuple[float, Array]:
        x = self._cast(x)
        p, z, log_total = self._probabilities(x)
        loss = float((log_total - z[self._rows(x.shape[0]), y]).mean())
        return loss, p

    def predict(self, x: Array) -> Array:
        p: Array = self._probabilities(self._cast(x))[0]
        return p


class LinearRegression(_NumpyModel):
    """Least-squares linear regression with analytic gradients.

    Weights: ``weight`` of shape ``(n_features, n_outputs)`` and ``bias`` of
    shape ``(n_outputs,)``. The loss is the mean squared error over samples
    and outputs; targets of shape ``(n,)`` are read as ``(n, 1)``.

    Args:
        n_features: Input dimension.
        n_outputs: Output dimension.
        dtype: Floating dtype of the weights (inputs are cast to it).
    """

    task: Task = "regression"

    def __init__(self, n_features: int, n_outputs: int = 1, dtype: npt.DTypeLike = np.float64):
        if n_features < 1 or n_outputs < 1:
            raise ValueError(f"need n_features, n_outputs >= 1, got {n_features}, {n_outputs}")
        super().__init__(
            {
                "bias": np.zeros(n_outputs, dtype=dtype),
                "weight": np.zeros((n_features, n_outputs), dtype=dtype),
            }
        )
        self.n_features = n_features
        self.n_outputs = n_outputs

    def _residual(self, x: Array, y: Array) -> tuple[Array, Array]:
        pred = x @ self._params["weight"]
        pred += self._params["bias"]
        target = np.asarray(y).reshape(pred.shape)
        return pred, pred - target

    def compute_batch_gradients(self, x: Array, y: Array) -> Weights:
        x = self._cast(x)
        _, r = self._residual(x, y)
        self._losses.append(float(np.mean(r * r)))
        r *= 2.0 / r.size
        return Weights._wrap({"bias": r.sum(axis=0), "weight": x.T @ r})

    def evaluate_batch(self, x: Array, y: Array) -> tuple[float, Array]:
        pred, r = self._residual(self._cast(x), y)
        return float(np.mean(r * r)), pred

    def predict(self, x: Array) -> Array:
        pred = self._cast(x) @ self._params["weight"]
        out: Array = pred + self._params["bias"]
        return out
