"""The ``[protocol]`` table of a FedBuff scenario, and the staleness weights."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from protocols._tables import TableChecker
from protocols.fedavg._strategy import check_mods

__all__ = ["FedBuffOptions", "Staleness", "staleness_weight"]

Staleness = Literal["polynomial", "constant", "hinge"]
_STALENESS = ("polynomial", "constant", "hinge")


def staleness_weight(
    staleness: int,
    kind: Staleness = "polynomial",
    *,
    exponent: float = 0.5,
    slope: float = 10.0,
    threshold: float = 4.0,
) -> float:
    """How much an update ``staleness`` server updates old counts (Xie et al. 2019).

    Args:
        staleness: Server updates applied since the weights the client
            trained from (0: it trained from the latest).
        kind: ``"constant"``: 1; ``"polynomial"``: ``1 / (1 + s) ** exponent``
            (FedBuff's ``1 / sqrt(1 + s)`` with the default exponent 0.5);
            ``"hinge"``: 1 up to ``threshold``, then ``1 / (slope * (s -
            threshold) + 1)``.
        exponent: The polynomial's exponent ``a``.
        slope: The hinge's slope ``a``.
        threshold: The hinge's threshold ``b``.

    Raises:
        ValueError: A negative staleness or an unknown kind.
    """
    if staleness < 0:
        raise ValueError(f"staleness must be >= 0, got {staleness}")
    if kind == "constant":
        return 1.0
    if kind == "polynomial":
        return float((1.0 + staleness) ** -exponent)
    if kind == "hinge":
        return 1.0 if staleness <= threshold else 1.0 / (slope * (staleness - threshold) + 1.0)
    raise ValueError(f"staleness kind must be one of {_STALENESS}, got {kind!r}")


@dataclass(frozen=True, slots=True)
class FedBuffOptions:
    """How the FedBuff server keeps clients busy and when it updates.

    Attributes:
        buffer_size: ``K``: the server applies an update every K arrivals.
        concurrency: Clients kept training at once (``None``: every connected
            client). Fewer than connected: each free slot goes to a seeded
            random idle client.
        staleness: Weighting of a stale update: ``"polynomial"``,
            ``"constant"`` or ``"hinge"`` (see :func:`staleness_weight`).
        staleness_exponent: The polynomial's exponent.
        hinge_slope: The hinge's slope.
        hinge_threshold: The hinge's threshold (updates this stale or fresher weigh 1).
        max_staleness: Updates staler than this are discarded and counted
            late (``None``: none are).
        sync_interval: A client is sent the global weights again only once it
            lags ``sync_interval`` server updates behind (1: whenever it lacks
            the latest); until then it trains again from the global weights it
            holds.
        update_timeout: Stop the run when no training reply arrives for this
            many seconds.
        join_timeout: Seconds the server waits at the start for every client
            to join (it then goes on with those that did).
        eval_every: Evaluate the global model on the test set every k updates
            (and after the last); 0 never.
        mods: Client mods applied in order to each update (as FedAvg's,
            docs/protocols.md).
    """

    buffer_size: int = 10
    concurrency: int | None = None
    staleness: Staleness = "polynomial"
    staleness_exponent: float = 0.5
    hinge_slope: float = 10.0
    hinge_threshold: float = 4.0
    max_staleness: int | None = None
    sync_interval: int = 1
    update_timeout: float = 600.0
    join_timeout: float = 60.0
    eval_every: int = 1
    mods: tuple[Mapping[str, Any], ...] = ()

    def weight(self, staleness: int) -> float:
        """The weight of an update ``staleness`` server updates old."""
        return staleness_weight(
            staleness,
            self.staleness,
            exponent=self.staleness_exponent,
            slope=self.hinge_slope,
            threshold=self.hinge_threshold,
        )

    @classmethod
    def keys(cls) -> list[str]:
        """The table's keys (besides ``name``)."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_table(cls, table: Mapping[str, Any], source: str) -> FedBuffOptions:
        """Validate the ``[protocol]`` table (without ``name``).

        Raises:
            ValueError: One line naming ``source`` and ``protocol.<key>``.
        """
        known = cls.keys()
        for key in sorted(table):
            if key not in known:
                raise ValueError(
                    f"{source}: protocol.{key}: unknown key (FedBuff knows {', '.join(known)})"
                )
        check = TableChecker(table, source)
        check.integer("buffer_size", 1)
        check.integer("concurrency", 1, optional=True)
        check.choice("staleness", _STALENESS)
        check.number("staleness_exponent", 0.0, inclusive=True)
        check.number("hinge_slope", 0.0, inclusive=True)
        check.number("hinge_threshold", 0.0, inclusive=True)
        check.integer("max_staleness", 0, optional=True)
        check.integer("sync_interval", 1)
        check.number("update_timeout", 0.0, inclusive=False)
        check.number("join_timeout", 0.0, inclusive=False)
        check.integer("eval_every", 0)
        values = {k: table[k] for k in known if k in table and table[k] is not None}
        if "mods" in values:
            values["mods"] = check_mods(values["mods"], source)
        for key in (
            "staleness_exponent",
            "hinge_slope",
            "hinge_threshold",
            "update_timeout",
            "join_timeout",
        ):
            if key in values:
                values[key] = float(values[key])
        return cls(**values)
