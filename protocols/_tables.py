"""Shared by the protocol plugins: ``[protocol]`` table checks, checkpoint files,
round records and the mean training loss."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from simkit.protocol import RoundRecord, ScenarioSetup
from simkit.scenario import ScenarioError
from simkit.training import MetricState, Weights, load_state, sum_in_order

__all__ = [
    "TableChecker",
    "checkpoint_header",
    "checkpoint_weights",
    "mean_loss",
    "read_checkpoint",
    "record_from_state",
    "record_state",
]


class TableChecker:
    """Type and range checks of a ``[protocol]`` table, each failing with one line.

    Every message names the source file and ``protocol.<key>``.
    """

    def __init__(self, table: Mapping[str, Any], source: str) -> None:
        self.table = table
        self.source = source

    def _bad(self, key: str, what: str) -> ValueError:
        return ValueError(f"{self.source}: protocol.{key}: must be {what}, got {self.table[key]!r}")

    def known(self, keys: Sequence[str], protocol: str) -> None:
        """No key outside ``keys``."""
        for key in sorted(self.table):
            if key not in keys:
                raise ValueError(
                    f"{self.source}: protocol.{key}: unknown key ({protocol} knows "
                    f"{', '.join(keys)})"
                )

    def number(self, key: str, low: float, *, inclusive: bool, high: float | None = None) -> None:
        """A finite int or float above ``low`` (and at most ``high``), if present."""
        if key not in self.table:
            return
        value = self.table[key]
        ok = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (value >= low if inclusive else value > low)
            and (high is None or value <= high)
        )
        if not ok:
            lower = f">= {low:g}" if inclusive else f"> {low:g}"
            upper = "" if high is None else f" and <= {high:g}"
            raise self._bad(key, f"a finite number {lower}{upper}")

    def integer(self, key: str, low: int, *, optional: bool = False) -> None:
        """An int (not a bool) of at least ``low``, if present (``None`` allowed if optional)."""
        if key not in self.table or (optional and self.table[key] is None):
            return
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self._bad(key, f"an integer >= {low}")

    def choice(self, key: str, allowed: tuple[str, ...]) -> None:
        """One of ``allowed``, if present."""
        if key in self.table and self.table[key] not in allowed:
            raise self._bad(key, " or ".join(repr(a) for a in allowed))


def checkpoint_header(setup: ScenarioSetup) -> dict[str, Any]:
    """What a server checkpoint records to refuse another scenario's resume."""
    return {"scenario": setup.name, "seed": setup.seed, "clients": setup.client_names}


def read_checkpoint(setup: ScenarioSetup, path: Path, protocol: str) -> dict[str, Any]:
    """The state a server saved at ``path`` (with :func:`checkpoint_header`), checked.

    Raises:
        ScenarioError: Missing or unreadable file, or a checkpoint of another
            scenario, seed or client set.
    """
    if not path.exists():
        raise ScenarioError(f"{path.parent}: no {protocol} checkpoint ({path.name} is missing)")
    try:
        state = load_state(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ScenarioError(f"{path}: unreadable checkpoint: {exc}") from None
    found = (state.get("scenario"), state.get("seed"), list(state.get("clients", [])))
    wanted = (setup.name, setup.seed, setup.client_names)
    if found != wanted:
        raise ScenarioError(
            f"{path}: checkpoint of scenario {found[0]!r} seed {found[1]} with "
            f"{len(found[2])} clients; this run is {wanted[0]!r} seed {wanted[1]} with "
            f"{len(wanted[2])} clients"
        )
    return state


def mean_loss(metrics: Mapping[str, Mapping[str, MetricState]]) -> float | None:
    """The mean training loss over the replies that report one (sorted order); NaN if not finite."""
    losses = {k: m["loss"] for k, m in metrics.items() if "loss" in m}
    if not losses:
        return None
    value = sum_in_order(losses).result()
    return float(value) if math.isfinite(value) else float("nan")


def record_state(record: RoundRecord) -> dict[str, Any]:
    """A round record as checkpoint data (lists instead of tuples)."""
    out = dataclasses.asdict(record)
    for key in ("sampled", "replied", "failed"):
        out[key] = list(out[key])
    return out


def record_from_state(state: Mapping[str, Any]) -> RoundRecord:
    """Inverse of :func:`record_state`."""
    values = dict(state)
    for key in ("sampled", "replied", "failed"):
        values[key] = tuple(values[key])
    return RoundRecord(**values)


def checkpoint_weights(saved: Mapping[str, Any], current: Weights) -> Weights:
    """The global weights of a checkpoint, checked to fit the scenario's model.

    Raises:
        ValueError: Their names are not those of ``current``.
    """
    weights = Weights.from_dict(saved)
    if sorted(weights.to_dict()) != sorted(current.to_dict()):
        raise ValueError(
            f"checkpoint weights {sorted(weights.to_dict())} do not fit the scenario's "
            f"model {sorted(current.to_dict())}"
        )
    return weights
