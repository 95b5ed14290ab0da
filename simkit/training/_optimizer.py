"""The optimizer (modules and regularizers around a learning rate), schedules, presets.

One :class:`Optimizer` class serves clients and the server. A step turns
gradients into updates::

    g = grads + w_decay * w          (coupled weight decay, as torch's SGD)
    g = regularizer.run(g, w) ...    (FedProx)
    g = module.run(g) ...            (SCAFFOLD correction, momentum, Adam ...)
    update = -lr(round) * g

On the server the "gradient" is the negated aggregated client update
(Reddi et al., 2021), which :meth:`Optimizer.apply_server_update` does for
you: FedAvg is then plain SGD with ``lr = 1``, FedAdam is Adam without bias
correction, and so on (see the presets at the end of this module).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from simkit.training._aggregate import AuxVar
from simkit.training._model import Model
from simkit.training._modules import (
    AdagradModule,
    AdamModule,
    FedProxRegularizer,
    MomentumModule,
    OptiModule,
    Regularizer,
    ScaffoldClientModule,
    ScaffoldServerModule,
    YogiModule,
)
from simkit.training._weights import Weights

__all__ = [
    "SGD",
    "Adam",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedYogi",
    "LinearDecay",
    "MultiLinearDecay",
    "Optimizer",
    "Schedule",
]

Schedule = Callable[[int], float]


class LinearDecay:
    """A learning-rate multiplier going linearly from ``startp`` to ``endp``.

    ``LinearDecay(steps)(t)`` is ``startp + (endp - startp) * min(t / steps, 1)``
    (as AllenAct's), where ``t`` is the round index.

    Args:
        steps: Rounds over which to decay (> 0).
        startp: Multiplier at ``t = 0``.
        endp: Multiplier from ``t = steps`` on.
    """

    def __init__(self, steps: int, startp: float = 1.0, endp: float = 0.0) -> None:
        if steps <= 0:
            raise ValueError(f"steps must be positive, got {steps}")
        self.steps, self.startp, self.endp = steps, startp, endp

    def __call__(self, t: int) -> float:
        return self.startp + (self.endp - self.startp) * min(t / self.steps, 1.0)

    def __repr__(self) -> str:
        return f"LinearDecay(steps={self.steps}, startp={self.startp}, endp={self.endp})"


class MultiLinearDecay:
    """Linear decays one after another: each runs for its ``steps`` rounds.

    After the last one ends, its ``endp`` holds.

    Args:
        schedules: The pieces, in order (at least one).
    """

    def __init__(self, schedules: Sequence[LinearDecay]) -> None:
        if not schedules:
            raise ValueError("MultiLinearDecay needs at least one LinearDecay")
        self.schedules = list(schedules)

    def __call__(self, t: int) -> float:
        for piece in self.schedules:
            if t < piece.steps:
                return piece(t)
            t -= piece.steps
        last = self.schedules[-1]
        return last(last.steps)

    def __repr__(self) -> str:
        return f"MultiLinearDecay({self.schedules!r})"


class Optimizer:
    """Gradient descent with plug-in modules, regularizers and a schedule.

    Args:
        lrate: Base learning rate (> 0).
        w_decay: Coupled L2 weight decay added to the gradients.
        regularizers: Applied in order before the modules (FedProx).
        modules: Applied in order; names must be unique.
        schedule: Round index -> learning-rate multiplier.

    Raises:
        ValueError: Bad rates, or two modules with the same name.
    """

    def __init__(
        self,
        lrate: float = 0.01,
        w_decay: float = 0.0,
        regularizers: Sequence[Regularizer] = (),
        modules: Sequence[OptiModule] = (),
        schedule: Schedule | None = None,
    ) -> None:
        if not lrate > 0:
            raise ValueError(f"lrate must be positive, got {lrate}")
        if w_decay < 0:
            raise ValueError(f"w_decay must be >= 0, got {w_decay}")
        names = [m.name for m in modules]
        if len(set(names)) != len(names):
            raise ValueError(f"module names must be unique, got {names}")
        self.lrate = lrate
        self.w_decay = w_decay
        self.regularizers = list(regularizers)
        self.modules = list(modules)
        self.schedule = schedule
        self.round = 0
        self._lr = lrate * (schedule(0) if schedule else 1.0)

    @property
    def lr(self) -> float:
        """The learning rate of the current round."""
        return self._lr

    def __repr__(self) -> str:
        return (
            f"Optimizer(lrate={self.lrate}, w_decay={self.w_decay}, "
            f"regularizers={self.regularizers}, modules={self.modules}, "
            f"schedule={self.schedule!r})"
        )

    # ------------------------------------------------------------------- rounds

    def start_round(self, round_index: int, weights: Weights) -> None:
        """Set the round (for the schedule) and give hooks the starting weights."""
        self.round = round_index
        self._lr = self.lrate * (self.schedule(round_index) if self.schedule else 1.0)
        for reg in self.regularizers:
            reg.start_round(weights)
        for mod in self.modules:
            mod.start_round(weights)

    def collect_aux_var(self) -> dict[str, AuxVar]:
        """Module name -> the auxiliary variable it sends (sorted by name)."""
        out = {}
        for mod in self.modules:
            aux = mod.collect_aux_var()
            if aux is not None:
                out[mod.name] = aux
        return dict(sorted(out.items()))

    def aux_types(self) -> dict[str, type[AuxVar]]:
        """Module name -> the auxiliary variable type it takes (modules that take one)."""
        return {m.name: m.aux_type for m in self.modules if m.aux_type is not None}

    def process_aux_var(self, aux: Mapping[str, AuxVar]) -> None:
        """Route received auxiliary variables to modules by name.

        Raises:
            KeyError: No module has one of the names.
        """
        by_name = {m.name: m for m in self.modules}
        for name in sorted(aux):
            if name not in by_name:
                raise KeyError(f"aux var for {name!r} but modules are {sorted(by_name)}")
            by_name[name].process_aux_var(aux[name])

    # -------------------------------------------------------------------- steps

    def _needs_weights(self) -> bool:
        return bool(self.w_decay or self.regularizers)

    def compute_updates(self, grads: Weights, weights: Weights | None = None) -> Weights:
        """The update ``-lr * transform(grads)``; ``weights`` needed for decay/regularizers."""
        if self._needs_weights():
            if weights is None:
                raise ValueError("weight decay and regularizers need the current weights")
            if self.w_decay:
                grads = grads + weights * self.w_decay
            for reg in self.regularizers:
                grads = reg.run(grads, weights)
        for mod in self.modules:
            grads = mod.run(grads)
        return grads * (-self._lr)

    def step(self, model: Model, grads: Weights) -> None:
        """Apply one step to ``model`` in place."""
        weights = model.get_weights(copy=False) if self._needs_weights() else None
        model.apply_updates(self.compute_updates(grads, weights))

    def step_weights(self, weights: Weights, grads: Weights) -> Weights:
        """One step on bare weights; returns the new weights."""
        return weights + self.compute_updates(grads, weights)

    def apply_server_update(self, weights: Weights, update: Weights) -> Weights:
        """Server side: step with pseudo-gradient ``-update`` (the aggregated client update)."""
        return self.step_weights(weights, -update)

    # -------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Round index and the states of modules and regularizers."""
        return {
            "round": self.round,
            "modules": {m.name: m.state_dict() for m in self.modules},
            "regularizers": [r.state_dict() for r in self.regularizers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (same modules, same order).

        Raises:
            ValueError: The state's modules do not match this optimizer's.
        """
        names = sorted(m.name for m in self.modules)
        if sorted(state["modules"]) != names or len(state["regularizers"]) != len(
            self.regularizers
        ):
            raise ValueError(f"checkpoint optimizer modules {sorted(state['modules'])} != {names}")
        self.round = int(state["round"])
        self._lr = self.lrate * (self.schedule(self.round) if self.schedule else 1.0)
        for mod in self.modules:
            mod.load_state_dict(state["modules"][mod.name])
        for reg, reg_state in zip(self.regularizers, state["regularizers"], strict=True):
            reg.load_state_dict(reg_state)


# ------------------------------------------------------------------ presets


def SGD(
    lr: float = 0.01,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    mu: float = 0.0,
    scaffold: bool = False,
    schedule: Schedule | None = None,
) -> Optimizer:
    """Client SGD: momentum and weight decay as ``torch.optim.SGD``, FedProx ``mu``, SCAFFOLD.

    ``mu > 0`` adds FedProx's proximal term (``mu = 0``: none; the tests
    check that a ``FedProxRegularizer(0)`` is exactly SGD). ``scaffold=True`` adds SCAFFOLD's client
    correction before momentum.
    """
    modules: list[OptiModule] = [ScaffoldClientModule()] if scaffold else []
    if momentum:
        modules.append(MomentumModule(momentum, nesterov))
    regs: list[Regularizer] = [FedProxRegularizer(mu)] if mu else []
    return Optimizer(lr, weight_decay, regs, modules, schedule)


def Adam(
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    mu: float = 0.0,
    schedule: Schedule | None = None,
) -> Optimizer:
    """Client Adam (bias-corrected, coupled weight decay as ``torch.optim.Adam``)."""
    regs: list[Regularizer] = [FedProxRegularizer(mu)] if mu else []
    return Optimizer(lr, weight_decay, regs, [AdamModule(beta1, beta2, eps)], schedule)


def _server(
    lr: float,
    core: OptiModule | None,
    scaffold: bool,
    n_clients: int | None,
    schedule: Schedule | None,
) -> Optimizer:
    modules: list[OptiModule] = [ScaffoldServerModule(n_clients)] if scaffold else []
    if core is not None:
        modules.append(core)
    return Optimizer(lr, 0.0, (), modules, schedule)


def FedAvg(
    lr: float = 1.0,
    scaffold: bool = False,
    n_clients: int | None = None,
    schedule: Schedule | None = None,
) -> Optimizer:
    """Server FedAvg: ``w += lr * aggregated_update`` (``lr = 1``: plain averaging).

    ``scaffold=True`` adds SCAFFOLD's server module (``n_clients``: federation size).
    """
    return _server(lr, None, scaffold, n_clients, schedule)


def FedAvgM(
    lr: float = 1.0,
    momentum: float = 0.9,
    scaffold: bool = False,
    n_clients: int | None = None,
    schedule: Schedule | None = None,
) -> Optimizer:
    """Server FedAvg with momentum (Hsu et al., 2019)."""
    return _server(lr, MomentumModule(momentum), scaffold, n_clients, schedule)


def FedAdam(
    lr: float = 0.01,
    beta1: float = 0.9,
    beta2: float = 0.99,
    tau: float = 1e-3,
    scaffold: bool = False,
    n_clients: int | None = None,
    schedule: Schedule | None = None,
) -> Optimizer:
    """Server FedAdam (Reddi et al., 2021): Adam without bias correction, ``eps = tau``."""
    core = AdamModule(beta1, beta2, tau, bias_correction=False)
    return _server(lr, core, scaffold, n_clients, schedule)


def FedYogi(
    lr: float = 0.01,
    beta1: float = 0.9,
    beta2: float = 0.99,
    tau: float = 1e-3,
    scaffold: bool = False,
    n_clients: int | None = None,
    schedule: Schedule | None = None,
) -> Optimizer:
    """Server FedYogi (Reddi et al., 2021)."""
    core = YogiModule(beta1, beta2, tau, bias_correction=False)
    return _server(lr, core, scaffold, n_clients, schedule)


def FedAdagrad(
    lr: float = 0.01,
    beta1: float = 0.0,
    tau: float = 1e-3,
    scaffold: bool = False,
    n_clients: int | None = None,
    schedule: Schedule | None = None,
) -> Optimizer:
    """Server FedAdagrad (Reddi et al., 2021)."""
    return _server(lr, AdagradModule(beta1, tau), scaffold, n_clients, schedule)
