"""What a run leaves: :class:`RunResult` (the JSON summary), :class:`ClientResult`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from simkit._outcomes import dropped_by_cause
from simkit.faults import Fault, fault_to_dict
from simkit.protocol import SERVER, RoundRecord, ScenarioSetup
from simkit.trace import TRACKED_KINDS

if TYPE_CHECKING:
    from simkit.trace import Trace
    from simkit.training import Weights

__all__ = [
    "ACTION_TYPES",
    "SUMMARY_KEYS",
    "ClientResult",
    "RunError",
    "RunResult",
    "TransportName",
]

TransportName = Literal["memory", "tcp"]
"""``"memory"``: the in-memory network, virtual time. ``"tcp"``: loopback TCP, real time."""


ACTION_TYPES = frozenset({"Join", "Accept", "Reject", "Ping", "Pong", "Drop"})
"""The runtime's own message types (joins, heartbeats), not the protocol's."""


SUMMARY_KEYS = (
    "scenario",
    "protocol",
    "seed",
    "clients",
    "rounds_completed",
    "dropped",
    "virtual_time_s",
    "wall_time_s",
    "messages",
    "bytes",
    "trace_digest",
    "weights_digest",
    "metrics",
    "refused",
)
"""The keys of :meth:`RunResult.summary` required by the JSON contract, in order."""


_DROP_KINDS = ("actor_error", "crash")


class RunError(RuntimeError):
    """The simulation itself failed (deadlock, time limit, an actor with ``fail_fast``)."""


@dataclass(slots=True)
class RunResult:
    """A finished run.

    Attributes:
        scenario: The scenario's name.
        protocol: The protocol's name.
        seed: The seed the run used.
        setup: What the protocol was built from (clients, data, factories).
        rounds: The protocol's round records, in order (aborted ones included).
        weights: The final global weights.
        trace: The recorded trace.
        virtual_time_s: Virtual time at the end of the run.
        wall_time_s: Wall-clock seconds the simulation took (reporting only).
        errors: ``(actor, error text)`` for each actor that raised (and each
            client process that failed); an actor's text ends with where it
            raised: ``ValueError: boom (at protocols.fedavg._server:123 in f)``.
        transport: ``"memory"`` (virtual time) or ``"tcp"`` (real time: then
            ``virtual_time_s`` is the real time the run took, as the server saw it).
        artifacts: Protocol extras for the report (a protocol run's optional
            ``artifacts()``: FedAvg's SecAgg teaching view).
        tracebacks: ``(actor, full traceback)`` in the order of ``errors``
            (``simkit run --verbose`` prints them).
        unfired_faults: Faults of the schedule that never applied: their
            trigger never matched, or the run ended before their time.
        server: The protocol's server actor (``None``: a serverless protocol,
            whose round records merge its peers' views).
        privacy: A protocol run's optional ``privacy()``: its DP mechanism
            (``accountant``, ``delta``, ``noise_multiplier``, ``sampling_rate``
            ...) and ``epsilon``, a list with one value per round (``None``:
            the run adds no noise).
    """

    scenario: str
    protocol: str
    seed: int
    setup: ScenarioSetup
    rounds: list[RoundRecord]
    weights: Weights
    trace: Trace
    virtual_time_s: float
    wall_time_s: float
    errors: list[tuple[str, str]] = field(default_factory=list)
    transport: TransportName = "memory"
    artifacts: dict[str, Any] = field(default_factory=dict)
    tracebacks: list[tuple[str, str]] = field(default_factory=list)
    unfired_faults: list[Fault] = field(default_factory=list)
    server: str | None = SERVER
    privacy: dict[str, Any] | None = None

    @property
    def clients(self) -> list[str]:
        """The clients' names, sorted."""
        return self.setup.client_names

    @property
    def rounds_completed(self) -> int:
        """Rounds that ended with a model update (aborted rounds do not count)."""
        return sum(1 for r in self.rounds if not r.aborted)

    @property
    def dropped(self) -> list[str]:
        """Every client seen to drop: crashed, raised, or failed to answer a round (sorted)."""
        names = set(self.clients)
        seen = {name for r in self.rounds for name in r.failed if name in names}
        if self.trace.keep:  # tracked as the trace is recorded: no scan of the events
            for kind in _DROP_KINDS:
                seen |= self.trace.sources(kind) & names
        return sorted(seen)

    def metrics(self) -> list[dict[str, Any]]:
        """``{round, participants, loss, accuracy, late}`` per round (``None``: unknown),
        and ``epsilon`` (``None``: infinite) when the run reports its privacy."""
        rows = [
            {
                "round": r.round,
                "participants": len(r.replied),
                "loss": _finite(r.loss),
                "accuracy": _finite(r.accuracy),
                "late": r.late,
            }
            for r in self.rounds
        ]
        if self.privacy is not None:
            for row, eps in zip(rows, self.privacy["epsilon"], strict=True):
                row["epsilon"] = _finite(eps)
        return rows

    def privacy_summary(self) -> dict[str, Any] | None:
        """:attr:`privacy` with ``epsilon`` the value after the last round."""
        if self.privacy is None:
            return None
        spent = self.privacy["epsilon"]
        return {**self.privacy, "epsilon": _finite(spent[-1]) if spent else 0.0}

    def summary(self) -> dict[str, Any]:
        """The JSON contract object (what ``simkit run --json`` prints last)."""
        stats = self.trace.stats()
        return {
            "scenario": self.scenario,
            "protocol": self.protocol,
            "seed": self.seed,
            "clients": len(self.clients),
            "rounds_completed": self.rounds_completed,
            "dropped": self.dropped,
            "virtual_time_s": self.virtual_time_s,
            "wall_time_s": self.wall_time_s,
            "messages": stats["messages"],
            "bytes": stats["bytes"],
            "trace_digest": self.trace.digest(),
            "weights_digest": self.weights.digest(),
            "metrics": self.metrics(),
            "refused": self.trace.count("reject"),
            "dropped_by_cause": dropped_by_cause(
                self.rounds,
                # only the kinds it reads, indexed as recorded: no scan of the trace
                self.trace.events_of(*TRACKED_KINDS) if self.trace.keep else [],
                self.clients,
            ),
            "errors": [f"{actor}: {text}" for actor, text in self.errors],
            "unfired_faults": [fault_to_dict(f) for f in self.unfired_faults],
            "privacy": self.privacy_summary(),
        }

    def _repr_html_(self) -> str:
        """The notebook view: facts, the round table and the metric plots inline."""
        from simkit.report import notebook_html

        return notebook_html(self)

    def to_json(self) -> str:
        """:meth:`summary` as one line of JSON."""
        return json.dumps(self.summary(), separators=(",", ":"))

    def save_weights(self, path: str | os.PathLike[str]) -> None:
        """Write the final weights as an ``.npz`` archive (one array per name)."""
        import numpy as np

        savez: Any = np.savez  # numpy's stubs reject **arrays (they clash with allow_pickle)
        with open(path, "wb") as f:
            savez(f, **self.weights.to_dict())


@dataclass(slots=True)
class ClientResult:
    """One client's run (``simkit client``), as the client saw it.

    Attributes:
        name: The client's name.
        server: The server's ``host:port``.
        trace: The client's trace (its sends, deliveries, joins).
        wall_time_s: Seconds the run took.
        errors: ``(actor, error text)`` if the client raised.
        tracebacks: ``(actor, full traceback)`` in the order of ``errors``.
    """

    name: str
    server: str
    trace: Trace
    wall_time_s: float
    errors: list[tuple[str, str]] = field(default_factory=list)
    tracebacks: list[tuple[str, str]] = field(default_factory=list)

    @property
    def joined(self) -> bool:
        """Whether the server accepted the client's ``Join``."""
        return any(e.kind == "peer_up" and e.src == self.name for e in self.trace.events)

    def problem(self) -> str | None:
        """Why the run failed (never joined, raised), or ``None``."""
        if self.errors:
            return "; ".join(f"{actor} raised: {text}" for actor, text in self.errors)
        if self.joined:
            return None
        events = self.trace.events
        if any(e.kind == "deliver" and e.type == "Reject" for e in events):
            how = "the server rejected its Join (wrong token or version)"
        elif any(e.kind == "send" and e.type == "Join" for e in events):
            how = "the server did not accept its Join"
        else:
            how = "could not connect"
        logs = [e.info for e in events if e.kind == "log" and e.src == self.name]
        detail = f" ({logs[-1]})" if logs else ""
        return f"{self.name} never joined the server at {self.server}: {how}{detail}"

    def summary(self) -> dict[str, Any]:
        """What ``simkit client --json`` prints: application messages and bytes each way."""
        sent = [e for e in self.trace.events if e.kind == "send" and e.type not in ACTION_TYPES]
        got = [e for e in self.trace.events if e.kind == "deliver" and e.type not in ACTION_TYPES]
        return {
            "client": self.name,
            "server": self.server,
            "joined": self.joined,
            "messages_sent": len(sent),
            "messages_received": len(got),
            "bytes_sent": sum(e.nbytes for e in sent),
            "bytes_received": sum(e.nbytes for e in got),
            "wall_time_s": self.wall_time_s,
            "errors": [f"{actor}: {text}" for actor, text in self.errors],
        }


def _finite(value: float | None) -> float | None:
    """A JSON-safe number: NaN and infinities become ``None``."""
    return float(value) if value is not None and math.isfinite(value) else None
