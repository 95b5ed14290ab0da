"""What a scenario needs in memory, estimated before anything is allocated.

A scenario whose sizes cannot fit (``clients.count = 1e12``, ``data.dim =
1e9``, ``model.hidden = [1e9]``) is refused when it is loaded, with one line
naming the key and the estimate, instead of failing later with a
``MemoryError`` deep inside numpy or torch, or swapping for hours::

    scenarios/x.toml: clients.count=1000000000000 needs ~54000.0 TB of memory
    (clients 20000.0 TB, data 34000.0 TB ...), more than the 24.0 GB of this machine

The estimate is a floor, not a forecast: each part counts only what the
run certainly holds at once (every client's shard and model copy, the
per-client actor state, the trace's events per round), so a scenario that
fits is never refused. The limit is the machine's physical memory, or the
``SIMKIT_MEMORY_LIMIT`` environment variable (bytes, or with a suffix:
``512M``, ``8G``, ``1T``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass

from simkit.scenario._schema import (
    DigitsData,
    LinearModelConfig,
    LogisticModelConfig,
    MLPModelConfig,
    ScenarioConfig,
    SyntheticData,
)

__all__ = [
    "LIMIT_ENV",
    "MemoryEstimate",
    "estimate_memory",
    "memory_limit",
    "size_problem",
]

LIMIT_ENV = "SIMKIT_MEMORY_LIMIT"

PER_CLIENT_BYTES = 20_000
"""Actor, mailbox, training manager and setup of one client, floor (measured ~60 kB)."""

TRACE_BYTES_PER_ROUND = 800
"""Four trace events of ~200 B each (a request and a reply, sent and delivered)."""

SYNTHETIC_SAMPLES = 100
"""Samples per client of the default power law ``int(lognormal(4, 2)) + 50`` (median ~104)."""

DIGITS = (1797, 64, 10)
"""The bundled digits: samples, features, classes."""

_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """A floor on the bytes a scenario's run holds at once, by part."""

    clients: int
    data: int
    model: int
    trace: int

    @property
    def total(self) -> int:
        return self.clients + self.data + self.model + self.trace

    def parts(self) -> str:
        """``clients 20.0 kB, data 1.2 MB ...`` (largest first, zero parts left out)."""
        from simkit.trace import format_bytes

        named = [
            ("clients", self.clients),
            ("data", self.data),
            ("model copies", self.model),
            ("trace", self.trace),
        ]
        named.sort(key=lambda item: -item[1])
        return ", ".join(f"{name} {format_bytes(n)}" for name, n in named if n > 0)


def estimate_memory(cfg: ScenarioConfig) -> MemoryEstimate:
    """The floor on memory ``cfg`` needs (see the module docstring)."""
    n = cfg.clients.count
    data, n_features, n_classes = _data(cfg)
    trace = 0 if cfg.run.max_time is not None else cfg.rounds * TRACE_BYTES_PER_ROUND
    return MemoryEstimate(
        clients=n * PER_CLIENT_BYTES,
        data=data,
        model=(n + 1) * _model_bytes(cfg, n_features, n_classes),
        trace=trace,
    )


def _data(cfg: ScenarioConfig) -> tuple[int, int, int]:
    """Bytes of every client's data, input dimension and classes (0: unknown)."""
    spec = cfg.data
    if isinstance(spec, SyntheticData):
        samples = spec.samples if spec.samples is not None else SYNTHETIC_SAMPLES
        # inputs (float64) and a label (int64) per sample
        return cfg.clients.count * samples * (spec.dim + 1) * 8, spec.dim, spec.classes
    if isinstance(spec, DigitsData):
        samples, features, classes = DIGITS
        return samples * (features + 1) * 8, features, classes
    return 0, 0, 2  # an npz file: its size is its own


def _model_bytes(cfg: ScenarioConfig, n_features: int, n_classes: int) -> int:
    spec = cfg.model
    if isinstance(spec, LogisticModelConfig):
        return (n_features + 1) * n_classes * 8
    if isinstance(spec, LinearModelConfig):
        return (n_features + 1) * 8
    if isinstance(spec, MLPModelConfig):
        widths = [n_features, *spec.hidden, n_classes]
        return sum((a + 1) * b for a, b in itertools.pairwise(widths)) * 4
    return 0  # a user's model: unknown until it is built


def memory_limit() -> int | None:
    """The bytes a run may use: ``$SIMKIT_MEMORY_LIMIT``, else physical memory.

    Raises:
        ValueError: ``SIMKIT_MEMORY_LIMIT`` is not a size.
    """
    text = os.environ.get(LIMIT_ENV, "").strip()
    if text:
        return _parse_size(text)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): no check
        return None


def _parse_size(text: str) -> int:
    unit = text[-1].upper() if text[-1].isalpha() else ""
    number = text[: len(text) - len(unit)].strip()
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or not value > 0 or value == float("inf"):
        raise ValueError(f"{LIMIT_ENV} must be a size such as 8G or 512M, got {text!r}")
    return int(value * _UNITS[unit])


# The keys whose values drive the estimate, each with how to put it back to
# its default: the key blamed is the one whose default shrinks the estimate most.
_RESETS: dict[str, Callable[[ScenarioConfig], ScenarioConfig | None]] = {
    "clients.count": lambda c: c.model_copy(
        update={"clients": c.clients.model_copy(update={"count": 10})}
    ),
    "rounds": lambda c: c.model_copy(update={"rounds": 10}),
    "data.samples": lambda c: _reset_data(c, "samples", None),
    "data.dim": lambda c: _reset_data(c, "dim", 60),
    "data.classes": lambda c: _reset_data(c, "classes", 10),
    "model.hidden": lambda c: (
        c.model_copy(update={"model": c.model.model_copy(update={"hidden": [64]})})
        if isinstance(c.model, MLPModelConfig)
        else None
    ),
}


def _reset_data(cfg: ScenarioConfig, key: str, value: object) -> ScenarioConfig | None:
    if not isinstance(cfg.data, SyntheticData):
        return None
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={key: value})})


def _culprit(cfg: ScenarioConfig, total: int) -> str:
    best, saved = "clients.count", 0
    for key, reset in _RESETS.items():
        smaller = reset(cfg)
        gain = 0 if smaller is None else total - estimate_memory(smaller).total
        if gain > saved:
            best, saved = key, gain
    return best


def _value(cfg: ScenarioConfig, key: str) -> object:
    node: object = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def size_problem(cfg: ScenarioConfig, limit: int | None = None) -> tuple[str, str] | None:
    """``(key, problem)`` when ``cfg`` cannot fit in ``limit`` bytes, else ``None``.

    Args:
        cfg: A validated scenario.
        limit: The bytes available (default :func:`memory_limit`).
    """
    from simkit.trace import format_bytes

    limit = memory_limit() if limit is None else limit
    if limit is None:
        return None
    estimate = estimate_memory(cfg)
    if estimate.total <= limit:
        return None
    key = _culprit(cfg, estimate.total)
    value = _value(cfg, key)
    shown = str(value).replace(" ", "") if isinstance(value, list) else str(value)
    where = "of this machine" if os.environ.get(LIMIT_ENV) is None else f"allowed by ${LIMIT_ENV}"
    return key, (
        f"{key}={shown} needs ~{format_bytes(estimate.total)} of memory "
        f"({estimate.parts()}), more than the {format_bytes(limit)} {where}"
    )
