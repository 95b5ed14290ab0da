"""Optimizer plug-ins: gradient-transforming modules and regularizers.

A module rewrites the gradients between the model and the learning rate
(momentum, Adam, SCAFFOLD's correction); a regularizer adds a term that
depends on the current weights (FedProx). Modules may keep state across
steps and rounds (checkpointed with ``state_dict``) and may exchange
auxiliary variables (:class:`~simkit.training.AuxVar`) between clients and
the server: SCAFFOLD's control variates travel this way.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from simkit.training._aggregate import AuxVar
from simkit.training._weights import Array, Weights

__all__ = [
    "AdagradModule",
    "AdamModule",
    "FedProxRegularizer",
    "MomentumModule",
    "OptiModule",
    "Regularizer",
    "ScaffoldAuxVar",
    "ScaffoldClientModule",
    "ScaffoldServerAuxVar",
    "ScaffoldServerModule",
    "YogiModule",
]


def _dump(weights: Weights | None) -> dict[str, Array] | None:
    return None if weights is None else weights.to_dict(copy=True)


def _load(arrays: Any) -> Weights | None:
    return None if arrays is None else Weights(arrays).copy()


class OptiModule:
    """A gradient transformation with optional state and auxiliary variables.

    Subclasses set ``name`` (unique within one optimizer; aux vars are routed
    by it) and override :meth:`run` and whatever hooks they need.
    """

    name: ClassVar[str] = "module"
    aux_type: ClassVar[type[AuxVar] | None] = None
    """The auxiliary variable this module takes from the other side (``None``: none)."""

    def run(self, grads: Weights) -> Weights:
        """Transform the gradients of one step."""
        return grads

    def start_round(self, weights: Weights) -> None:
        """Called before the first step of a round with the starting weights."""

    def collect_aux_var(self) -> AuxVar | None:
        """An auxiliary variable to send after a round (``None``: nothing)."""
        return None

    def process_aux_var(self, aux: AuxVar) -> None:
        """Take an auxiliary variable received before a round.

        Raises:
            TypeError: This module expects no (or another kind of) aux var.
        """
        raise TypeError(f"{type(self).__name__} takes no auxiliary variable, got {aux!r}")

    def state_dict(self) -> dict[str, Any]:
        """The module's state (for checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({params})"

    def _params(self) -> dict[str, Any]:
        return {}


class MomentumModule(OptiModule):
    """Heavy-ball momentum, as ``torch.optim.SGD``: ``v = beta * v + g``.

    Args:
        beta: Momentum coefficient in ``[0, 1)``.
        nesterov: Return ``g + beta * v`` instead of ``v``.
    """

    name: ClassVar[str] = "momentum"

    def __init__(self, beta: float = 0.9, nesterov: bool = False) -> None:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        self.beta = beta
        self.nesterov = nesterov
        self.velocity: Weights | None = None

    def _params(self) -> dict[str, Any]:
        return {"beta": self.beta, "nesterov": self.nesterov}

    def run(self, grads: Weights) -> Weights:
        if self.velocity is None:
            self.velocity = grads.copy()
        else:
            for name, v in self.velocity.items():
                v *= self.beta
                v += grads[name]
        if self.nesterov:
            return grads + self.velocity * self.beta
        return self.velocity  # modules never write into their input

    def state_dict(self) -> dict[str, Any]:
        return {"velocity": _dump(self.velocity)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.velocity = _load(state["velocity"])


class AdamModule(OptiModule):
    """Adam's moment estimates: ``m / (sqrt(v) + eps)``.

    ``m = b1 m + (1 - b1) g`` and ``v = b2 v + (1 - b2) g^2``, bias-corrected
    by default (Kingma & Ba). Server-side FedAdam (Reddi et al., 2021) uses
    no bias correction and ``eps = tau``.

    Args:
        beta1: First-moment decay.
        beta2: Second-moment decay.
        eps: Added to the root of the second moment.
        bias_correction: Divide the moments by ``1 - beta^t``.
    """

    name: ClassVar[str] = "adam"

    def __init__(
        self,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        bias_correction: bool = True,
    ) -> None:
        for label, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{label} must be in [0, 1), got {beta}")
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.bias_correction = bias_correction
        self.steps = 0
        self.m: Weights | None = None
        self.v: Weights | None = None

    def _params(self) -> dict[str, Any]:
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _update_v(self, v: Array, g2: Array) -> None:
        v *= self.beta2
        v += (1.0 - self.beta2) * g2

    def run(self, grads: Weights) -> Weights:
        if self.m is None or self.v is None:
            self.m, self.v = grads.zeros_like(), grads.zeros_like()
        self.steps += 1
        for name, m in self.m.items():
            g = grads[name]
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            self._update_v(self.v[name], g * g)
        m_hat, v_hat = self.m, self.v
        if self.bias_correction:
            m_hat = self.m / (1.0 - self.beta1**self.steps)
            v_hat = self.v / (1.0 - self.beta2**self.steps)
        return m_hat.zip_map(v_hat, lambda m, v: m / (np.sqrt(v) + self.eps))

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "m": _dump(self.m), "v": _dump(self.v)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.m, self.v = _load(state["m"]), _load(state["v"])


class YogiModule(AdamModule):
    """Yogi (Zaheer et al., 2018): ``v -= (1 - b2) g^2 sign(v - g^2)``; FedYogi's core."""

    name: ClassVar[str] = "yogi"

    def _update_v(self, v: Array, g2: Array) -> None:
        v -= (1.0 - self.beta2) * g2 * np.sign(v - g2)


class AdagradModule(AdamModule):
    """Adagrad's accumulator ``v += g^2`` (with momentum ``beta1``); FedAdagrad's core."""

    name: ClassVar[str] = "adagrad"

    def __init__(self, beta1: float = 0.0, eps: float = 1e-8) -> None:
        super().__init__(beta1=beta1, beta2=0.0, eps=eps, bias_correction=False)

    def _update_v(self, v: Array, g2: Array) -> None:
        v += g2


@dataclasses.dataclass(frozen=True)
class ScaffoldAuxVar(AuxVar):
    """A client's SCAFFOLD message: the change of its control variate.

    Args:
        delta: ``c_i(new) - c_i(old)``.
        n_clients: 1 per client; sums to the number of contributors.
    """

    codec_name: ClassVar[str | None] = "training.ScaffoldAuxVar"

    delta: Weights
    n_clients: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.delta, Weights):
            raise TypeError(
                f"ScaffoldAuxVar.delta must be Weights, got {type(self.delta).__name__}"
            )
        n = self.n_clients
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
            raise ValueError(f"ScaffoldAuxVar.n_clients must be an int >= 1, got {n!r}")


@dataclasses.dataclass(frozen=True)
class ScaffoldServerAuxVar(AuxVar):
    """The server's SCAFFOLD message: the global control variate (``None``: zero)."""

    codec_name: ClassVar[str | None] = "training.ScaffoldServerAuxVar"

    state: Weights | None = None

    def __post_init__(self) -> None:
        if self.state is not None and not isinstance(self.state, Weights):
            raise TypeError(
                "ScaffoldServerAuxVar.state must be Weights or None, "
                f"got {type(self.state).__name__}"
            )


class ScaffoldClientModule(OptiModule):
    """SCAFFOLD's client correction (Karimireddy et al., 2020): ``g - c_i + c``.

    After a round the client's control variate becomes the mean raw gradient
    of the round, which equals the paper's "option II" update
    ``c_i - c + (x - y_i) / (K lr)`` for plain SGD, and stays cheap and
    well-defined with other modules. Put this module first.
    """

    name: ClassVar[str] = "scaffold"
    aux_type: ClassVar[type[AuxVar] | None] = ScaffoldServerAuxVar

    def __init__(self) -> None:
        self.local: Weights | None = None
        self.server: Weights | None = None
        self._grad_sum: Weights | None = None
        self._steps = 0

    def process_aux_var(self, aux: AuxVar) -> None:
        if not isinstance(aux, ScaffoldServerAuxVar):
            raise TypeError(f"scaffold client expects ScaffoldServerAuxVar, got {aux!r}")
        self.server = None if aux.state is None else aux.state.copy()

    def start_round(self, weights: Weights) -> None:
        self._grad_sum, self._steps = None, 0

    def run(self, grads: Weights) -> Weights:
        if self._grad_sum is None:
            self._grad_sum = grads.copy()
        else:
            for name, acc in self._grad_sum.items():
                acc += grads[name]
        self._steps += 1
        out = grads
        if self.local is not None:
            out = out - self.local
        if self.server is not None:
            out = out + self.server
        return out

    def collect_aux_var(self) -> AuxVar | None:
        if self._grad_sum is None:
            return None
        new_local = self._grad_sum / float(self._steps)
        delta = new_local if self.local is None else new_local - self.local
        self.local, self._grad_sum, self._steps = new_local, None, 0
        return ScaffoldAuxVar(delta=delta, n_clients=1)

    def state_dict(self) -> dict[str, Any]:
        return {"local": _dump(self.local), "server": _dump(self.server)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.local, self.server = _load(state["local"]), _load(state["server"])


class ScaffoldServerModule(OptiModule):
    """SCAFFOLD's server side: keeps ``c``, updated by the clients' summed deltas.

    ``c += sum(delta_i) / N`` with ``N = n_clients`` (the federation size, as
    in the paper) or, when ``None``, the number of contributing clients.
    Gradients pass through unchanged.
    """

    name: ClassVar[str] = "scaffold"
    aux_type: ClassVar[type[AuxVar] | None] = ScaffoldAuxVar

    def __init__(self, n_clients: int | None = None) -> None:
        if n_clients is not None and n_clients < 1:
            raise ValueError(f"n_clients must be positive, got {n_clients}")
        self.n_clients = n_clients
        self.state: Weights | None = None

    def process_aux_var(self, aux: AuxVar) -> None:
        if not isinstance(aux, ScaffoldAuxVar):
            raise TypeError(f"scaffold server expects summed ScaffoldAuxVar, got {aux!r}")
        step = aux.delta / float(self.n_clients or aux.n_clients)
        self.state = step if self.state is None else self.state + step

    def collect_aux_var(self) -> AuxVar | None:
        return ScaffoldServerAuxVar(state=self.state)

    def state_dict(self) -> dict[str, Any]:
        return {"state": _dump(self.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = _load(state["state"])


class Regularizer:
    """A loss term whose gradient depends on the weights: ``g += grad R(w)``."""

    name: ClassVar[str] = "regularizer"

    def start_round(self, weights: Weights) -> None:
        """Called before the first step of a round with the starting weights."""

    def run(self, grads: Weights, weights: Weights) -> Weights:
        """Add the regularizer's gradient."""
        return grads

    def state_dict(self) -> dict[str, Any]:
        """The regularizer's state (for checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""


class FedProxRegularizer(Regularizer):
    """FedProx's proximal term (Li et al., 2020): ``g += mu (w - w_round_start)``.

    Args:
        mu: Strength (>= 0); ``mu = 0`` is plain local training.
    """

    name: ClassVar[str] = "fedprox"

    def __init__(self, mu: float) -> None:
        if mu < 0:
            raise ValueError(f"mu must be >= 0, got {mu}")
        self.mu = mu
        self.reference: Weights | None = None

    def start_round(self, weights: Weights) -> None:
        self.reference = weights.copy()

    def run(self, grads: Weights, weights: Weights) -> Weights:
        if self.reference is None:
            self.reference = weights.copy()
        return grads + (weights - self.reference) * self.mu

    def state_dict(self) -> dict[str, Any]:
        return {"reference": _dump(self.reference)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reference = _load(state["reference"])

    def __repr__(self) -> str:
        return f"FedProxRegularizer(mu={self.mu})"
