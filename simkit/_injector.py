"""Fault injection: when each fault of a schedule applies, and what applying it does.

A :class:`FaultInjector` arms a :class:`~simkit.faults.FaultSchedule` on a
loop: faults ``at`` a time become timers; faults ``on`` a trigger are
indexed by ``(kind, type)`` and ``dst`` and counted as the trace records
matching events. Applying a fault goes through the public API of its target
(:class:`FaultTarget`: crash, restart, slow down; the in-memory network's
``cut``, ``heal``, ``degrade``, ``restore``), and is recorded in the trace.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from simkit.channels import MemoryNetwork, Transport
from simkit.faults import (
    Crash,
    Degrade,
    Fault,
    FaultSchedule,
    Heal,
    Partition,
    Restart,
    Restore,
    Slowdown,
    Trigger,
    fault_kind,
)
from simkit.trace import Trace

__all__ = ["FaultInjector", "FaultTarget"]


class FaultTarget(Protocol):
    """What faults act on: the actors (through their supervisor) and the network."""

    @property
    def trace(self) -> Trace: ...

    @property
    def transport(self) -> Transport: ...

    def crash(self, name: str, *, loud: bool = False) -> None: ...

    def restart(self, name: str) -> None: ...

    def slow_down(self, name: str, factor: float) -> None: ...


class FaultInjector:
    """Applies a fault schedule to a target, at its times and on its triggers."""

    def __init__(self, faults: FaultSchedule, target: FaultTarget) -> None:
        self.faults = faults
        self.target = target
        self._counts: list[int] = []
        self._triggered: list[tuple[Trigger, Fault]] = []
        self._index: dict[tuple[str, str | None], dict[str | None, list[int]]] = {}
        self._pending_restarts: dict[str, int] = {}

    def arm(self, loop: asyncio.AbstractEventLoop, origin: float) -> None:
        """Schedule the timed faults (times count from ``origin``) and watch the triggers."""
        for fault in self.faults:
            if isinstance(fault, Restart) and fault.at is not None:
                self._pending_restarts[fault.actor] = self._pending_restarts.get(fault.actor, 0) + 1
            if fault.at is not None:
                loop.call_at(origin + fault.at, self._apply_timed, fault)
            else:
                assert fault.on is not None
                on = fault.on
                by_dst = self._index.setdefault((on.kind, on.type), {})
                by_dst.setdefault(on.dst, []).append(len(self._triggered))
                self._triggered.append((on, fault))
                self._counts.append(0)
        if self._triggered:
            self.target.trace.add_listener(self._on_event)

    def restart_pending(self, name: str) -> bool:
        """Whether a timed restart of ``name`` is still to come."""
        return bool(self._pending_restarts.get(name))

    def unfired(self, end: float) -> list[Fault]:
        """Faults that never applied: a trigger short of its count, a time after ``end``."""
        short = {
            id(fault)
            for (trigger, fault), seen in zip(self._triggered, self._counts, strict=True)
            if seen < trigger.count
        }
        return [f for f in self.faults if id(f) in short or (f.at is not None and f.at > end)]

    def _apply_timed(self, fault: Fault) -> None:
        if isinstance(fault, Restart):
            self._pending_restarts[fault.actor] -= 1
        self.apply(fault)

    def _on_event(
        self, t: float, kind: str, src: str, dst: str, type_name: str, nbytes: int
    ) -> None:
        # Indexed by (kind, type) then dst, with None as the wildcard of each:
        # a run with thousands of triggered faults stays linear in its events.
        hits: list[int] = []
        for key in ((kind, type_name), (kind, None)):
            by_dst = self._index.get(key)
            if by_dst is not None:
                hits.extend(by_dst.get(dst, ()))
                hits.extend(by_dst.get(None, ()))
        if len(hits) > 1:
            hits.sort()  # apply in schedule order, as listed
        for i in hits:
            trigger, fault = self._triggered[i]
            if trigger.matches(kind, src, dst, type_name):
                self._counts[i] += 1
                if self._counts[i] == trigger.count:
                    self.apply(fault)

    def apply(self, fault: Fault) -> None:
        """Apply one fault now (recorded in the trace first)."""
        target, kind = self.target, fault_kind(fault)
        if isinstance(fault, Crash):
            self._record(kind, fault.actor, fault.mode)
            target.crash(fault.actor, loud=fault.mode == "loud")
        elif isinstance(fault, Restart):
            self._record(kind, fault.actor, "")
            target.restart(fault.actor)
        elif isinstance(fault, Partition):
            a, b = fault.groups
            self._record(kind, ",".join(a), "|".join(b))
            self._memory().cut(a, b)
        elif isinstance(fault, Heal):
            self._record(kind, "", "")
            self._memory().heal()
        elif isinstance(fault, Degrade):
            self._record(kind, fault.actor, repr(fault.changes()))
            self._memory().degrade(fault.actor, **fault.changes())
        elif isinstance(fault, Restore):
            self._record(kind, fault.actor, "")
            self._memory().restore(fault.actor)
        elif isinstance(fault, Slowdown):
            self._record(kind, fault.actor, f"x{fault.factor:g}")
            target.slow_down(fault.actor, fault.factor)

    def _record(self, kind: str, actor: str, info: str) -> None:
        trace = self.target.trace
        trace.record(asyncio.get_running_loop().time(), kind, actor, "", "", 0, "", info)

    def _memory(self) -> MemoryNetwork:
        transport = self.target.transport
        if not isinstance(transport, MemoryNetwork):
            raise TypeError("network faults need the in-memory network")
        return transport
