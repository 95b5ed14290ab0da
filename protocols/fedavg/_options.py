"""The ``[protocol]`` table of a FedAvg scenario, validated into :class:`FedAvgOptions`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from pydantic import TypeAdapter

from protocols._tables import TableChecker

__all__ = ["FedAvgOptions", "fedavg_json_schema"]

_EVALUATE = ("auto", "server", "train", "clients")
_ON_ABORT = ("continue", "stop")
_STOP_METRICS = ("loss", "accuracy", "eval_loss")


@dataclass(frozen=True, slots=True)
class FedAvgOptions:
    """How the FedAvg server runs its rounds.

    Attributes:
        fraction: Share of the connected clients sampled each round (0 < f <= 1).
        min_clients: Sample at least this many; a round waits up to
            ``join_timeout`` for them to be connected, else it aborts.
        min_replies: Fewer usable replies than this and the round aborts
            without an update.
        round_timeout: Seconds the server waits for replies (the deadline).
        join_timeout: Seconds the server waits at the start for every client
            to join (it then goes on with those that did).
        eval_every: Evaluate the global model every k rounds (and after the
            last); 0 never.
        evaluate: ``"server"`` on the held-out test set, ``"clients"`` by
            federated evaluation on the participants' validation shards,
            ``"train"`` by the server on the union of the clients' training
            shards (the global training loss of Li et al. 2020; the simulator
            sees every shard), ``"auto"`` server when there is a test set,
            else clients.
        eval_timeout: Deadline of a federated evaluation.
        on_abort: After an aborted round, ``"continue"`` or ``"stop"`` the run.
        patience: Early stopping: stop after this many evaluations without
            improvement (``None``: never stop early).
        min_delta: Early stopping: the margin an improvement must beat.
        stop_metric: Early stopping: ``"loss"`` (training), ``"eval_loss"``
            or ``"accuracy"``.
        strategy: The server strategy, ``{kind = ..., **options}``
            (``None``: plain FedAvg; see :mod:`protocols.fedavg._strategy`).
        mods: Client mods applied in order to each update, each
            ``{kind = ..., **options}``.
    """

    fraction: float = 1.0
    min_clients: int = 1
    min_replies: int = 1
    round_timeout: float = 600.0
    join_timeout: float = 60.0
    eval_every: int = 1
    evaluate: Literal["auto", "server", "train", "clients"] = "auto"
    eval_timeout: float = 600.0
    on_abort: Literal["continue", "stop"] = "continue"
    patience: int | None = None
    min_delta: float = 0.0
    stop_metric: Literal["loss", "accuracy", "eval_loss"] = "eval_loss"
    strategy: Mapping[str, Any] | None = None
    mods: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def keys(cls) -> list[str]:
        """The table's keys (besides ``name``)."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_table(cls, table: Mapping[str, Any], source: str) -> FedAvgOptions:
        """Validate the ``[protocol]`` table (without ``name``).

        Raises:
            ValueError: One line naming ``source`` and ``protocol.<key>``.
        """
        known = cls.keys()
        check = TableChecker(table, source)
        check.known(known, "FedAvg")
        number, integer, choice = check.number, check.integer, check.choice

        number("fraction", 0.0, inclusive=False, high=1.0)
        integer("min_clients", 1)
        integer("min_replies", 1)
        number("round_timeout", 0.0, inclusive=False)
        number("join_timeout", 0.0, inclusive=False)
        integer("eval_every", 0)
        choice("evaluate", _EVALUATE)
        number("eval_timeout", 0.0, inclusive=False)
        choice("on_abort", _ON_ABORT)
        integer("patience", 1, optional=True)
        number("min_delta", 0.0, inclusive=True)
        choice("stop_metric", _STOP_METRICS)
        values = {k: table[k] for k in known if k in table and table[k] is not None}
        _check_extensions(values, source)
        for key in ("fraction", "round_timeout", "join_timeout", "eval_timeout", "min_delta"):
            if key in values:
                values[key] = float(values[key])
        options = cls(**values)
        if options.min_replies > options.min_clients and "min_clients" in table:
            raise ValueError(
                f"{source}: protocol.min_replies: {options.min_replies} exceeds "
                f"protocol.min_clients = {options.min_clients} (a round could never succeed)"
            )
        return options


def _check_extensions(values: dict[str, Any], source: str) -> None:
    """Validate ``strategy`` and ``mods`` (their classes load, their options fit)."""
    from protocols.fedavg._strategy import STRATEGIES, Strategy, _load, check_mods

    if "strategy" in values:
        try:
            _load(values["strategy"], "protocol.strategy", STRATEGIES, Strategy)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
    if "mods" in values:
        values["mods"] = check_mods(values["mods"], source)


def fedavg_json_schema() -> dict[str, Any]:
    """The JSON Schema of FedAvg's ``[protocol]`` keys (``name`` aside), with
    the options of the built-in strategies and client mods."""
    from protocols.fedavg._strategy import MODS, STRATEGIES, options_schema

    schema = TypeAdapter(FedAvgOptions).json_schema()
    schema["description"] = "FedAvg's [protocol] keys (docs/protocols.md)."
    props = schema["properties"]
    props["strategy"] = {
        **options_schema(STRATEGIES),
        "description": "The server strategy, {kind = ..., options...}.",
    }
    props["mods"] = {
        "type": "array",
        "items": options_schema(MODS),
        "description": "Client mods applied in order to each update.",
    }
    return schema
