"""FedAvg's extension points: a server :class:`Strategy` and client :class:`ClientMod` s.

A FedAvg variant is a small class, not a new plugin. A scenario names it in
its ``[protocol]`` table, with options validated by the pydantic model the
class declares (``Options``)::

    [protocol]
    name = "fedavg"
    strategy = { kind = "krum", byzantine = 1 }
    mods = [{ kind = "clip", max_norm = 1.0 }, { kind = "gaussian", std = 0.01 }]

``kind`` is a built-in name (:data:`STRATEGIES`, :data:`MODS`) or
``"package.module:Class"``. A strategy decides, server side, the cohort of a
round (:meth:`Strategy.sample`), each client's request
(:meth:`Strategy.configure`), how updates are combined
(:meth:`Strategy.aggregate`), when a round fails (:meth:`Strategy.accept`)
and when to evaluate (:meth:`Strategy.evaluates`). A client mod rewrites a
client's update after local training and before it is sent (clipping,
noise, compression), with randomness from the seed tree.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocols.fedavg._privacy import GaussianMechanism
from protocols.messages import TrainRequest
from simkit.protocol import ScenarioSetup
from simkit.training import ModelUpdates, Weights

__all__ = [
    "MODS",
    "STRATEGIES",
    "ClientMod",
    "Clip",
    "GaussianNoise",
    "NoOptions",
    "RoundRules",
    "Strategy",
    "load_mods",
    "load_strategy",
    "local_mechanism",
]


class RoundRules(Protocol):
    """What a strategy reads of FedAvg's ``[protocol]`` options
    (:class:`~protocols.fedavg.FedAvgOptions` has them)."""

    @property
    def min_clients(self) -> int: ...
    @property
    def fraction(self) -> float: ...
    @property
    def min_replies(self) -> int: ...
    @property
    def eval_every(self) -> int: ...


class NoOptions(BaseModel):
    """The options of a class that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Strategy:
    """The server's policy of FedAvg rounds; the defaults are plain FedAvg.

    Subclass it and override what changes; declare options as a pydantic
    model in ``Options`` (``extra="forbid"``), read as ``self.options``.

    Args:
        options: The validated options.
        setup: The scenario.
        fedavg: The ``[protocol]`` options.
    """

    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel, setup: ScenarioSetup, fedavg: RoundRules) -> None:
        self.options = options
        self.setup = setup
        self.fedavg = fedavg

    def sample(self, round: int, pool: Sequence[str]) -> list[str]:
        """The clients asked to train in ``round`` among the connected ``pool`` (sorted).

        Default: ``max(min_clients, ceil(fraction * n))`` of them, drawn from
        the seed-tree stream ``("fedavg", "sample", round)``; all when fewer.
        """
        want = self.cohort_size(len(pool))
        if want >= len(pool):
            return list(pool)
        rng = self.setup.seeds.numpy("fedavg", "sample", round)
        chosen = rng.choice(len(pool), size=want, replace=False)
        return sorted(pool[int(i)] for i in chosen)

    def cohort_size(self, pool: int) -> int:
        """How many of ``pool`` connected clients :meth:`sample` asks (before capping)."""
        return max(self.fedavg.min_clients, math.ceil(self.fedavg.fraction * pool - 1e-9))

    def mechanism(self) -> GaussianMechanism | None:
        """The Gaussian mechanism this strategy runs each round, for the privacy
        accountant (default: none; see :class:`protocols.fedavg.examples.DPFedAvg`)."""
        return None

    def configure(self, round: int, client: str, request: TrainRequest) -> TrainRequest:
        """The request ``client`` is sent (default: the round's, unchanged).

        Return the same object for clients that get the same request: each
        distinct request is encoded once.
        """
        return request

    def aggregate(self, round: int, updates: Mapping[str, ModelUpdates]) -> Weights:
        """The round's update from the clients' (default: the scenario's aggregator)."""
        return self.setup.aggregator.aggregate(updates)

    def accept(self, round: int, used: Sequence[str]) -> str:
        """Why the round fails with these usable replies (``""``: it does not).

        Default: fewer than ``min_replies``.
        """
        if len(used) < self.fedavg.min_replies:
            return f"{len(used)} usable replies < min_replies {self.fedavg.min_replies}"
        return ""

    def evaluates(self, round: int) -> bool:
        """Whether ``round`` ends with an evaluation (default: every ``eval_every``, the last)."""
        every = self.fedavg.eval_every
        return every > 0 and (round % every == 0 or round == self.setup.rounds)


class ClientMod:
    """A rewrite of a client's update after local training (clipping, noise ...).

    Args:
        options: The validated options (declare them in ``Options``).
    """

    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel) -> None:
        self.options = options

    def __call__(self, update: Weights, rng: np.random.Generator) -> Weights:
        """The new update (the client's weights change of the round)."""
        raise NotImplementedError


class _ClipOptions(NoOptions):
    max_norm: float = Field(gt=0, allow_inf_nan=False, description="Largest L2 norm kept.")


class Clip(ClientMod):
    """Scale the update down to an L2 norm of at most ``max_norm`` (over all arrays)."""

    Options = _ClipOptions

    def __call__(self, update: Weights, rng: np.random.Generator) -> Weights:
        norm = math.sqrt(sum(float(np.vdot(a, a).real) for a in update.values()))
        limit = float(self.options.max_norm)  # type: ignore[attr-defined]
        return update if norm <= limit else update * (limit / norm)


class _NoiseOptions(NoOptions):
    std: float = Field(ge=0, allow_inf_nan=False, description="Standard deviation.")
    delta: float = Field(
        default=1e-5, gt=0, lt=1, description="The delta epsilon is reported for (after a clip)."
    )


class GaussianNoise(ClientMod):
    """Add independent N(0, ``std``^2) noise to every value (local DP with :class:`Clip`)."""

    Options = _NoiseOptions

    def __call__(self, update: Weights, rng: np.random.Generator) -> Weights:
        std = float(self.options.std)  # type: ignore[attr-defined]
        noisy = {n: a + rng.normal(0.0, std, a.shape).astype(a.dtype) for n, a in update.items()}
        return Weights(noisy)


STRATEGIES: dict[str, str] = {
    "fedavg": "protocols.fedavg._strategy:Strategy",
    "krum": "protocols.fedavg.examples:Krum",
    "dp-fedavg": "protocols.fedavg.examples:DPFedAvg",
}
"""Built-in strategy names -> ``module:Class``."""

MODS: dict[str, str] = {
    "clip": "protocols.fedavg._strategy:Clip",
    "gaussian": "protocols.fedavg._strategy:GaussianNoise",
}
"""Built-in client mod names -> ``module:Class``."""


def options_schema(builtins: Mapping[str, str]) -> dict[str, Any]:
    """The JSON Schema of a ``{kind = ..., **options}`` table: one branch per
    built-in class (its ``Options`` model, ``kind`` fixed) and one for
    ``"package.module:Class"`` (whose options its class validates)."""
    branches: list[dict[str, Any]] = []
    for kind, target in sorted(builtins.items()):
        module, _, name = target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        schema = cls.Options.model_json_schema()
        schema["properties"] = {"kind": {"const": kind}, **schema.get("properties", {})}
        schema["required"] = ["kind", *schema.get("required", [])]
        schema["title"] = kind
        schema["description"] = (cls.__doc__ or "").strip().splitlines()[0]
        branches.append(schema)
    branches.append(
        {
            "title": "package.module:Class",
            "type": "object",
            "properties": {"kind": {"type": "string", "pattern": r"^[\w.]+:\w+$"}},
            "required": ["kind"],
            "description": "A class of yours: its Options model validates the other keys.",
        }
    )
    return {"anyOf": branches}


def _load(spec: object, where: str, builtins: Mapping[str, str], base: type[Any]) -> Any:
    """``(class, options)`` of a ``{kind = ..., **options}`` table.

    Raises:
        ValueError: One line naming ``where`` and the bad key.
    """
    if not isinstance(spec, Mapping) or not isinstance(spec.get("kind"), str):
        raise ValueError(f"{where}: must be a table with a 'kind' string, got {spec!r}")
    kind = spec["kind"]
    target = builtins.get(kind, kind)
    module, _, name = target.partition(":")
    if not name:
        known = ", ".join(sorted(builtins))
        raise ValueError(
            f"{where}.kind: unknown {kind!r} (built in: {known}; or 'package.module:Class')"
        )
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{where}.kind: cannot load {kind!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        known = ", ".join(sorted(builtins))
        raise ValueError(
            f"{where}.kind: {kind!r} is not a {base.__name__} (built in: {known}; "
            "or 'package.module:Class')"
        )
    try:
        options = cls.Options(**{k: v for k, v in spec.items() if k != "kind"})  # type: ignore[attr-defined]
    except ValidationError as exc:
        error = exc.errors()[0]
        path = ".".join(str(p) for p in error["loc"])
        raise ValueError(f"{where}.{path}: {error['msg']}") from None
    return cls, options


def load_strategy(
    spec: Mapping[str, Any] | None, setup: ScenarioSetup, fedavg: RoundRules
) -> Strategy:
    """The strategy a ``protocol.strategy`` table names (``None``: plain FedAvg).

    Raises:
        ValueError: One line naming ``protocol.strategy`` and the bad key.
    """
    if spec is None:
        return Strategy(NoOptions(), setup, fedavg)
    cls, options = _load(spec, "protocol.strategy", STRATEGIES, Strategy)
    strategy: Strategy = cls(options, setup, fedavg)
    return strategy


def load_mods(specs: Sequence[Mapping[str, Any]]) -> list[ClientMod]:
    """The client mods a ``protocol.mods`` list names, in order.

    Raises:
        ValueError: One line naming ``protocol.mods[i]`` and the bad key.
    """
    mods = []
    for i, spec in enumerate(specs):
        cls, options = _load(spec, f"protocol.mods[{i}]", MODS, ClientMod)
        mods.append(cls(options))
    return mods


def check_mods(specs: object, source: str) -> tuple[Mapping[str, Any], ...]:
    """A ``protocol.mods`` value checked (each mod loads, its options fit), as a tuple.

    Raises:
        ValueError: One line naming ``source`` and ``protocol.mods...``.
    """
    if not isinstance(specs, list | tuple):
        raise ValueError(f"{source}: protocol.mods: must be a list of tables, got {specs!r}")
    try:
        load_mods(specs)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    return tuple(specs)


def apply_mods(
    mods: Sequence[ClientMod], updates: ModelUpdates, rng: np.random.Generator
) -> ModelUpdates:
    """``updates`` with its update rewritten by ``mods`` in order (weight kept)."""
    if not mods or updates.weight == 0:
        return updates
    update = updates.mean()
    for mod in mods:
        update = mod(update, rng)
    return ModelUpdates.weighted(update, updates.weight)


def local_mechanism(mods: Sequence[ClientMod]) -> GaussianMechanism | None:
    """The local mechanism of ``mods``: a ``clip`` then (only clips between) a ``gaussian``.

    A client's data may change its update anywhere in the clip ball, so the
    L2 sensitivity is ``2 * max_norm`` (replace-one) and the noise multiplier
    ``std / (2 * max_norm)``. Mods after the noise are post-processing.
    """
    clip: float | None = None
    for mod in mods:
        if isinstance(mod, Clip):
            limit = float(mod.options.max_norm)  # type: ignore[attr-defined]
            clip = limit if clip is None else min(clip, limit)
        elif isinstance(mod, GaussianNoise) and clip is not None:
            std, delta = float(mod.options.std), float(mod.options.delta)  # type: ignore[attr-defined]
            return GaussianMechanism("client", std / (2 * clip), 1.0, clip, delta)
        else:
            clip = None  # anything else between the clip and the noise voids the bound
    return None
