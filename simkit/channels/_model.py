"""The network model of the in-process network: latency distributions and link settings.

Data only (frozen dataclasses validated on construction); the draws are made
by :class:`~simkit.channels.memory.MemoryNetwork` from the seed tree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Constant",
    "Latency",
    "LinkModel",
    "LogNormal",
    "NetworkModel",
    "Uniform",
    "latency_from_spec",
]


# ----------------------------------------------------------------------------- latency


@dataclass(frozen=True, slots=True)
class Constant:
    """A fixed latency, in seconds."""

    seconds: float = 0.0

    def __post_init__(self) -> None:
        _check_nonneg("latency", self.seconds)

    def sample(self, rng: np.random.Generator) -> float:
        return self.seconds

    def to_spec(self) -> dict[str, Any]:
        return {"kind": "constant", "seconds": self.seconds}


@dataclass(frozen=True, slots=True)
class Uniform:
    """A latency drawn uniformly from ``[low, high]`` seconds."""

    low: float
    high: float

    def __post_init__(self) -> None:
        _check_nonneg("uniform latency low", self.low)
        if not self.high >= self.low:
            raise ValueError(f"uniform latency needs high >= low, got {self.low}..{self.high}")

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def to_spec(self) -> dict[str, Any]:
        return {"kind": "uniform", "low": self.low, "high": self.high}


@dataclass(frozen=True, slots=True)
class LogNormal:
    """A log-normal latency with the given median (seconds) and log-space sigma."""

    median: float
    sigma: float = 0.5

    def __post_init__(self) -> None:
        if not self.median > 0:
            raise ValueError(f"lognormal latency median must be > 0, got {self.median}")
        _check_nonneg("lognormal latency sigma", self.sigma)

    def sample(self, rng: np.random.Generator) -> float:
        return float(self.median * math.exp(self.sigma * rng.standard_normal()))

    def to_spec(self) -> dict[str, Any]:
        return {"kind": "lognormal", "median": self.median, "sigma": self.sigma}


Latency = Constant | Uniform | LogNormal

_LATENCY_KINDS: dict[str, Callable[..., Latency]] = {
    "constant": Constant,
    "uniform": Uniform,
    "lognormal": LogNormal,
}


def latency_from_spec(spec: float | int | Mapping[str, Any] | Latency) -> Latency:
    """Build a latency from a number (constant seconds) or a ``{"kind": ...}`` table.

    Raises:
        ValueError: Unknown kind or bad parameters, named in the message.
    """
    if isinstance(spec, (Constant, Uniform, LogNormal)):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Constant(float(spec))
    if not isinstance(spec, Mapping):
        raise ValueError(f"latency must be a number or a table with 'kind', got {spec!r}")
    params = dict(spec)
    kind = params.pop("kind", None)
    if kind not in _LATENCY_KINDS:
        raise ValueError(f"latency kind must be one of {sorted(_LATENCY_KINDS)}, got {kind!r}")
    try:
        return _LATENCY_KINDS[kind](**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for {kind} latency: {exc}") from None


def _check_nonneg(what: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")


# ----------------------------------------------------------------------------- models


@dataclass(frozen=True, slots=True)
class LinkModel:
    """How one directed link behaves.

    Args:
        latency: One-way latency distribution.
        bandwidth: Bytes per second, or ``None`` for instantaneous transfer.
        loss: Probability that a message is lost.
    """

    latency: Latency = Constant(0.0)
    bandwidth: float | None = None
    loss: float = 0.0

    def __post_init__(self) -> None:
        # A number or a {"kind": ...} table is accepted too (scenario files).
        object.__setattr__(self, "latency", latency_from_spec(self.latency))
        if self.bandwidth is not None and not self.bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0 bytes/s or None, got {self.bandwidth!r}")
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be a probability in [0, 1], got {self.loss!r}")


@dataclass(frozen=True, slots=True)
class NetworkModel:
    """The whole network: a default link, per-link overrides, reordering.

    Args:
        default: The model of every link without an override.
        links: Overrides keyed by ``(src, dst)`` actor names.
        reorder: Allow messages on one link to overtake each other (per-link
            FIFO otherwise).
    """

    default: LinkModel = LinkModel()
    links: Mapping[tuple[str, str], LinkModel] = field(default_factory=dict)
    reorder: bool = False
