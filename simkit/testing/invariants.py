"""Invariants of simkit runs, each failing with an explanation a person can read.

Every check raises :class:`InvariantViolation` (an ``AssertionError``, so
pytest and hypothesis treat it as a failed test) whose message says what
rule broke, where, and with which values — never a bare ``assert False``.

- runtime: :class:`RuntimeRules` (time order, nothing delivered to or from
  a crashed actor, per-link FIFO, every send resolved, heartbeat detection
  within bounds) and :func:`check_terminates`;
- FedAvg: :func:`check_rounds` (participation and round bookkeeping) and
  :func:`check_weighted_mean` (aggregation);
- secure aggregation: :func:`check_secure_sum` (exactness) and
  :func:`check_no_clear_update` (the server never sees an update in clear).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from simkit.heartbeat import HeartbeatConfig
from simkit.protocol import RoundRecord
from simkit.trace import Event, Trace

__all__ = [
    "InvariantViolation",
    "RuntimeRules",
    "check_no_clear_update",
    "check_rounds",
    "check_runtime_rules",
    "check_secure_sum",
    "check_terminates",
    "check_weighted_mean",
]


class InvariantViolation(AssertionError):
    """An invariant does not hold; the message explains how."""


def _fail(text: str) -> None:
    raise InvariantViolation(text)


# ----------------------------------------------------------------------------- runtime


def check_terminates(end_time: float, bound: float, what: str = "the run") -> None:
    """``what`` ended by virtual time ``bound``."""
    if not end_time <= bound:
        _fail(f"{what} ended at t={end_time:g} s, after its bound of {bound:g} s")


class RuntimeRules:
    """The runtime's rules, checked on a trace one batch of events at a time.

    - virtual time never goes backwards and sequence numbers are consecutive;
    - nothing is delivered to or from a crashed actor;
    - each link delivers in the order it sent (when reordering is off);
    - every sent message is delivered or recorded lost (see :meth:`check_resolved`);
    - a silent crash of a peer of ``watcher`` is declared by ``watcher``'s
      heartbeat within ``[interval*(misses-1) - L, interval*misses + L]``,
      ``L`` being the largest one-way latency (crashes near partitions and
      restarts are exempt: they disturb what silence means).

    Args:
        heartbeat: The run's heartbeat settings (``None``: no detection checks).
        max_latency: Largest one-way latency of the network model, seconds.
        watcher: The actor whose detections are checked (a server, a hub).
        fifo: Check per-link FIFO (turn off for networks that reorder).
    """

    def __init__(
        self,
        heartbeat: HeartbeatConfig | None = None,
        *,
        max_latency: float = 0.0,
        watcher: str | None = None,
        fifo: bool = True,
    ) -> None:
        self.heartbeat = heartbeat
        self.max_latency = max_latency
        self.watcher = watcher
        self.fifo = fifo
        self._last: Event | None = None
        self._down: set[str] = set()
        self._in_flight: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
        self._crashed_at: dict[str, float] = {}
        self._disturbed: set[str] = set()
        self._partitioned = False
        self._healed_at = -1e18
        self._peers: set[str] = set()

    @property
    def bounds(self) -> tuple[float, float]:
        """Earliest and latest detection delay after a silent crash."""
        if self.heartbeat is None:
            return (0.0, float("inf"))
        hb, lat = self.heartbeat, self.max_latency
        return (hb.interval * (hb.misses - 1) - lat, hb.interval * hb.misses + lat)

    def feed(self, events: Iterable[Event]) -> None:
        """Check new events, in trace order."""
        for e in events:
            self._check_time(e)
            self._check_crashes(e)
            self._check_link(e)
            if self.watcher is not None and self.heartbeat is not None:
                self._check_detection(e)

    def check_pending(self, now: float) -> None:
        """Every undisturbed silent crash was declared by now if it was due."""
        hi = self.bounds[1]
        for name, t0 in sorted(self._crashed_at.items()):
            if name not in self._disturbed and now > t0 + hi + 1e-9:
                _fail(
                    f"{name} crashed silently at t={t0:g} s and {self.watcher} had not "
                    f"declared it gone at t={now:g} s (heartbeat bound {hi:g} s)"
                )

    def check_resolved(self, older_than: float) -> None:
        """Every message sent before ``older_than`` was delivered or recorded lost."""
        for (src, dst), queue in sorted(self._in_flight.items()):
            stale = [t for _, t in queue if t < older_than]
            if stale:
                _fail(
                    f"{len(stale)} message(s) from {src} to {dst} vanished: sent at "
                    f"t={stale[0]:g} s, neither delivered nor recorded lost"
                )

    # -- rules -------------------------------------------------------------------------

    def _check_time(self, e: Event) -> None:
        last = self._last
        if last is not None:
            if e.t < last.t:
                _fail(f"time went back from {last.t:g} to {e.t:g} s: {last} then {e}")
            if e.seq != last.seq + 1:
                _fail(f"trace sequence jumps from {last.seq} to {e.seq}")
        self._last = e

    def _check_crashes(self, e: Event) -> None:
        if e.kind == "crash":
            self._down.add(e.src)
        elif e.kind == "actor_start":
            self._down.discard(e.src)
        elif e.kind == "deliver":
            for who, role in ((e.src, "from"), (e.dst, "to")):
                if who in self._down:
                    _fail(f"a {e.type} was delivered {role} crashed actor {who} at t={e.t:g} s")

    def _check_link(self, e: Event) -> None:
        link = (e.src, e.dst)
        if e.kind == "send":
            self._in_flight[link].append((e.digest, e.t))
        elif e.kind in ("deliver", "lost"):
            queue = self._in_flight[link]
            digests = [d for d, _ in queue]
            if e.digest not in digests:
                _fail(f"{e.kind} of a {e.type} from {e.src} to {e.dst} that was never sent")
            i = digests.index(e.digest)
            if self.fifo and e.kind == "deliver" and i != 0:
                _fail(
                    f"{e.src}->{e.dst}: a {e.type} sent at t={queue[i][1]:g} s was delivered "
                    f"before {i} message(s) sent earlier on the same link"
                )
            del queue[i]

    def _check_detection(self, e: Event) -> None:
        watcher = self.watcher
        if e.kind in ("peer_up", "peer_down") and e.src == watcher:
            (self._peers.add if e.kind == "peer_up" else self._peers.discard)(e.dst)
        assert self.heartbeat is not None
        if (
            e.kind == "crash"
            and e.info == "silent"
            and e.src in self._peers
            and e.src not in self._crashed_at
        ):
            self._crashed_at[e.src] = e.t
            self._disturbed.discard(e.src)
            recent_heal = e.t < self._healed_at + self.heartbeat.interval + self.max_latency
            if self._partitioned or recent_heal:
                self._disturbed.add(e.src)
        elif e.kind in ("partition", "heal"):
            self._partitioned = e.kind == "partition"
            if e.kind == "heal":
                self._healed_at = e.t
            self._disturbed.update(self._crashed_at)
        elif e.kind == "restart":
            self._disturbed.update(self._crashed_at)
        if e.kind == "peer_down" and e.src == watcher and e.dst in self._crashed_at:
            t0 = self._crashed_at.pop(e.dst)
            lo, hi = self.bounds
            if e.dst not in self._disturbed and "heartbeat" in e.info:
                if not t0 + lo - 1e-9 <= e.t <= t0 + hi + 1e-9:
                    _fail(
                        f"{e.dst} crashed silently at t={t0:g} s and was declared gone at "
                        f"t={e.t:g} s, outside the heartbeat bounds [{lo:g}, {hi:g}] s"
                    )


def check_runtime_rules(
    trace: Trace,
    heartbeat: HeartbeatConfig | None = None,
    *,
    max_latency: float = 0.0,
    watcher: str | None = None,
    fifo: bool = True,
) -> None:
    """Check a finished run's trace with :class:`RuntimeRules` (needs ``keep=True``)."""
    rules = RuntimeRules(heartbeat, max_latency=max_latency, watcher=watcher, fifo=fifo)
    events = trace.events
    rules.feed(events)
    if events:
        rules.check_resolved(older_than=events[-1].t - max_latency)


# ----------------------------------------------------------------------------- FedAvg


def check_rounds(
    rounds: Sequence[RoundRecord],
    *,
    min_replies: int = 1,
    crashed_at: Mapping[str, float] | None = None,
) -> None:
    """FedAvg participation and round bookkeeping.

    - rounds are numbered 1, 2, ... and do not overlap in time;
    - ``sampled``, ``replied`` and ``failed`` are sorted; ``replied`` and
      ``failed`` split ``sampled``;
    - a completed round used at least ``min_replies`` replies; an aborted
      one says why;
    - a client that crashed (for good) before a round started never replied
      in it (``crashed_at``: actor -> crash time, for clients never restarted).
    """
    crashed = crashed_at or {}
    previous_end = -float("inf")
    for i, r in enumerate(rounds, start=1):
        where = f"round {r.round}"
        if r.round != i:
            _fail(f"round {i} is numbered {r.round}")
        if not previous_end <= r.t_start <= r.t_end:
            _fail(
                f"{where} runs from t={r.t_start:g} to {r.t_end:g} s, after one ending "
                f"at {previous_end:g} s"
            )
        previous_end = r.t_end
        for label, names in (("sampled", r.sampled), ("replied", r.replied), ("failed", r.failed)):
            if list(names) != sorted(set(names)):
                _fail(f"{where}: {label} is not sorted and unique: {list(names)}")
        if set(r.replied) & set(r.failed):
            _fail(f"{where}: {sorted(set(r.replied) & set(r.failed))} both replied and failed")
        if set(r.replied) | set(r.failed) != set(r.sampled):
            odd = sorted(set(r.sampled) ^ (set(r.replied) | set(r.failed)))
            _fail(f"{where}: replied + failed differ from sampled on {odd}")
        if r.aborted and not r.reason:
            _fail(f"{where} aborted without a reason")
        if not r.aborted and len(r.replied) < min_replies:
            _fail(
                f"{where} completed with {len(r.replied)} replies, below min_replies {min_replies}"
            )
        ghosts = [c for c in r.replied if c in crashed and crashed[c] < r.t_start]
        if ghosts:
            _fail(
                f"{where}: {ghosts} replied although they crashed before it started "
                f"(t={r.t_start:g} s)"
            )


def check_weighted_mean(
    result: npt.ArrayLike,
    parts: Mapping[str, tuple[npt.ArrayLike, float]],
    *,
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> None:
    """``result`` is the weighted mean of ``parts`` (name -> (value, weight))."""
    if not parts:
        _fail("a weighted mean of no parts")
    names = sorted(parts)
    total = sum(float(parts[n][1]) for n in names)
    if not total > 0:
        _fail(f"weights of {names} sum to {total:g}")
    expected = sum(np.asarray(parts[n][0], np.float64) * float(parts[n][1]) for n in names)
    expected = np.asarray(expected) / total
    got = np.asarray(result, np.float64)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=rtol, atol=atol):
        err = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else None
        _fail(
            f"aggregate is not the weighted mean of {names}: max error {err} "
            f"(shapes {got.shape} vs {expected.shape})"
        )


# ----------------------------------------------------------------------------- SecAgg


def check_secure_sum(
    total: npt.ArrayLike | None,
    inputs: Mapping[str, npt.ArrayLike],
    survivors: Sequence[str],
    *,
    modulus: int,
) -> None:
    """The unmasked sum equals the survivors' quantized inputs summed modulo ``modulus``.

    Args:
        total: What the server unmasked (integers), or ``None`` if it aborted.
        inputs: Each client's quantized input (integers in ``[0, modulus)``).
        survivors: The clients whose inputs the sum must hold.
        modulus: The ring size, ``2**bits``.
    """
    if total is None:
        _fail(f"the round aborted although {list(survivors)} survived")
    missing = [c for c in survivors if c not in inputs]
    if missing:
        _fail(f"no input recorded for survivors {missing}")
    got = np.asarray(total).astype(object) % modulus
    expected = np.zeros(got.shape, dtype=object)
    for name in sorted(survivors):
        expected = (expected + np.asarray(inputs[name]).astype(object)) % modulus
    wrong = np.flatnonzero(got != expected)
    if wrong.size:
        i = int(wrong[0])
        _fail(
            f"unmasked sum differs from the survivors' sum at {wrong.size} of {got.size} "
            f"coordinates; first at [{i}]: {got.flat[i]} != {expected.flat[i]} "
            f"(survivors {sorted(survivors)})"
        )


def check_no_clear_update(
    received: Mapping[str, Sequence[npt.ArrayLike]],
    updates: Mapping[str, npt.ArrayLike],
    *,
    atol: float = 0.0,
) -> None:
    """The server never received any client's update in clear.

    Args:
        received: Sender -> every array the server received from it.
        updates: Client -> its true update (or its quantized form) that must
            stay hidden.
        atol: Tolerance of the comparison.
    """
    for client in sorted(updates):
        secret = np.asarray(updates[client]).ravel()
        if secret.size == 0 or not np.any(secret):
            continue  # an all-zero update carries no information to hide
        for src in sorted(received):
            for arr in received[src]:
                flat = np.asarray(arr).ravel()
                if flat.shape == secret.shape and np.allclose(
                    flat.astype(np.float64), secret.astype(np.float64), rtol=0.0, atol=atol
                ):
                    _fail(f"the server received {client}'s update in clear (sent by {src})")
