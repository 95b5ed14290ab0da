"""The session core: the join handshake and liveness of one connection, sans I/O.

One :class:`Session` is one end of one connection. It takes events (the
action messages that arrive, and local happenings: the channel closed, a
timer fell due, a send failed, the actor leaves) with the current time, and
returns **effects** for its driver to carry out (transmit this, deliver that,
the peer is up, the peer is lost). It never reads a clock, never sends, never
sleeps: the driver (:mod:`simkit._connection`) does, and tests feed it events
by hand (``tests/test_session.py``, with a ``SessionPair`` that wires two
sessions back to back, as h11's ``ConnectionPair`` does).

The states and every transition between them are in one table,
:data:`TRANSITIONS`: ``(state, event kind) -> (next state, action)``. An
event is first **classified** into a kind (a ``Join`` is ``"join"`` or
``"join-refused"`` by the :class:`JoinPolicy`; a timer is ``"tick"``,
``"silent"`` or ``"expired"`` by the liveness monitor); the table then says
where the session goes and which action computes the effects. A pair missing
from the table is a protocol error (the peer sent what this state does not
allow), except in ``CLOSED``, where everything is ignored.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from simkit.heartbeat import HeartbeatConfig, LivenessMonitor
from simkit.messages import (
    PROTOCOL_VERSION,
    Accept,
    ActionMessage,
    Drop,
    Join,
    Ping,
    Pong,
    Reject,
    Send,
    SerializedMessage,
    version_compatible,
)

__all__ = [
    "TRANSITIONS",
    "Broken",
    "Closed",
    "Deliver",
    "Effect",
    "Ended",
    "Event",
    "JoinFailed",
    "JoinPolicy",
    "Leave",
    "Lost",
    "Opened",
    "Refused",
    "Session",
    "SessionState",
    "Tick",
    "Transmit",
    "Violation",
]

MAX_NAME = 128


class SessionState(enum.Enum):
    """Where a session is."""

    CONNECTING = "connecting"  # we sent Join; waiting for Accept or Reject
    JOINING = "joining"  # a peer connected to us; waiting for its Join
    OPEN = "open"
    CLOSED = "closed"


# ----------------------------------------------------------------------------- local events


@dataclass(slots=True)
class Closed:
    """The channel closed under us (the peer closed, or the link broke)."""

    reason: str


@dataclass(slots=True)
class Tick:
    """A timer the driver armed (at :meth:`Session.next_timer`) fell due."""


@dataclass(slots=True)
class Broken:
    """A transmit the session asked for failed."""

    reason: str


@dataclass(slots=True)
class Leave:
    """The actor ends the session: say ``Drop(reason)`` if open (``word``), then close."""

    reason: str
    word: bool = True


Event = ActionMessage | Closed | Tick | Broken | Leave


# ----------------------------------------------------------------------------- effects


@dataclass(slots=True)
class Transmit:
    """Send ``msg`` to the peer. If it fails and ``must``, feed back :class:`Broken`."""

    msg: ActionMessage
    must: bool = True


@dataclass(slots=True)
class Deliver:
    """An application message arrived: put it in the mailbox."""

    payload: SerializedMessage


@dataclass(slots=True)
class Opened:
    """The session is open with ``peer`` (it joined us, or we joined it)."""

    peer: str


@dataclass(slots=True)
class Refused:
    """We refused ``name``'s ``Join`` (a ``Transmit(Reject)`` and an ``Ended`` follow)."""

    name: str
    flag: str
    detail: str


@dataclass(slots=True)
class JoinFailed:
    """Our ``Join`` failed: ``"rejected"`` (with the server's flag) or ``"closed"``."""

    kind: str
    flag: str
    detail: str


@dataclass(slots=True)
class Violation:
    """The peer broke the session protocol (to record)."""

    detail: str


@dataclass(slots=True)
class Lost:
    """The open session is over: the peer is gone for ``reason``."""

    reason: str


@dataclass(slots=True)
class Ended:
    """Close the channel (with ``reason``, for the peer) and disarm the timer."""

    reason: str


Effect = Transmit | Deliver | Opened | Refused | JoinFailed | Violation | Lost | Ended


# ----------------------------------------------------------------------------- join policy


@dataclass(frozen=True, slots=True)
class JoinPolicy:
    """Which joins a listening actor accepts.

    Args:
        token: Joins must carry this token (empty: any).
        admit: The only names accepted (``None``: any valid name).
        version: The protocol version spoken here.
    """

    token: str = ""
    admit: frozenset[str] | None = None
    version: str = PROTOCOL_VERSION

    def problem(self, join: Join) -> tuple[str, str] | None:
        """``(flag, detail)`` of a ``Reject`` for ``join``, or ``None`` to accept it."""
        if not version_compatible(self.version, join.version):
            return "version", f"server speaks {self.version}, client {join.version}"
        if self.token and not hmac.compare_digest(join.token.encode(), self.token.encode()):
            return "auth", "wrong token"
        if not join.name or len(join.name) > MAX_NAME or not join.name.isprintable():
            return "name", f"invalid actor name {join.name[:40]!r}"
        if self.admit is not None and join.name not in self.admit:
            return "name", f"{join.name!r} is not admitted here"
        return None


# ----------------------------------------------------------------------------- the table

S = SessionState
_OPEN = SessionState.OPEN  # module constants: enum attribute access is slow on hot paths
_CLOSED = SessionState.CLOSED

#: ``(state, event kind) -> (next state, action)``: every transition, in one place.
#: Kinds: ``join``/``join-refused`` (a Join, judged by the policy), ``accept``,
#: ``reject``, ``send``, ``ping``, ``pong``, ``drop``, ``other`` (any other
#: action message), ``closed``, ``broken``, ``leave``, ``tick`` (nothing due),
#: ``silent`` (heartbeat silence limit), ``expired`` (no Join in time).
TRANSITIONS: dict[tuple[SessionState, str], tuple[SessionState, str]] = {
    (S.JOINING, "join"): (S.OPEN, "accept_join"),
    (S.JOINING, "join-refused"): (S.CLOSED, "refuse_join"),
    (S.JOINING, "tick"): (S.JOINING, "nothing"),
    (S.JOINING, "expired"): (S.CLOSED, "join_expired"),
    (S.JOINING, "closed"): (S.CLOSED, "end_quietly"),
    (S.JOINING, "broken"): (S.CLOSED, "end_quietly"),
    (S.JOINING, "leave"): (S.CLOSED, "end_quietly"),
    (S.CONNECTING, "accept"): (S.OPEN, "joined"),
    (S.CONNECTING, "reject"): (S.CLOSED, "rejected"),
    (S.CONNECTING, "closed"): (S.CLOSED, "closed_in_join"),
    (S.CONNECTING, "broken"): (S.CLOSED, "closed_in_join"),
    (S.CONNECTING, "tick"): (S.CONNECTING, "nothing"),
    (S.CONNECTING, "leave"): (S.CLOSED, "end_quietly"),
    (S.OPEN, "send"): (S.OPEN, "deliver"),
    (S.OPEN, "ping"): (S.OPEN, "answer_ping"),
    (S.OPEN, "pong"): (S.OPEN, "take_pong"),
    (S.OPEN, "drop"): (S.CLOSED, "peer_left"),
    (S.OPEN, "closed"): (S.CLOSED, "connection_closed"),
    (S.OPEN, "broken"): (S.CLOSED, "broken"),
    (S.OPEN, "tick"): (S.OPEN, "heartbeat"),
    (S.OPEN, "silent"): (S.CLOSED, "silent"),
    (S.OPEN, "leave"): (S.CLOSED, "leave"),
}

#: Kinds of the action messages (a Join is judged by the policy first), for the
#: liveness monitor: any of these arriving on an open session is a sign of life.
_MESSAGE_KINDS = frozenset(
    {"join", "join-refused", "accept", "reject", "send", "ping", "pong", "drop", "other"}
)

_KINDS: dict[type, str] = {
    Accept: "accept",
    Reject: "reject",
    Send: "send",
    Ping: "ping",
    Pong: "pong",
    Drop: "drop",
    Closed: "closed",
    Broken: "broken",
    Leave: "leave",
}


class Session:
    """One end of one connection: handshake and liveness (see the module docstring).

    Args:
        state: ``CONNECTING`` (we connect) or ``JOINING`` (a peer connected to us).
        peer: The peer's name as known so far (a ``Join`` names it).
        heartbeat: The heartbeat settings.
        now: The time the connection was made.
        policy: What joins to accept (``JOINING`` only).
    """

    __slots__ = ("_expires", "monitor", "peer", "policy", "state")

    def __init__(
        self,
        state: SessionState,
        peer: str,
        heartbeat: HeartbeatConfig,
        now: float,
        policy: JoinPolicy | None = None,
    ) -> None:
        if state not in (S.CONNECTING, S.JOINING):
            raise ValueError(f"a session starts CONNECTING or JOINING, not {state.name}")
        self.state: SessionState = state
        self.peer = peer
        self.policy = policy or JoinPolicy()
        self.monitor = LivenessMonitor(heartbeat, now)
        self._expires = now + heartbeat.silence_limit  # JOINING: no Join by then -> closed

    def __repr__(self) -> str:
        return f"<Session {self.peer} {self.state.name}>"

    # -- the driver's calls --------------------------------------------------------------

    def receive(self, event: Event, now: float) -> list[Effect]:
        """Feed one event; return the effects to carry out, in order."""
        state = self.state
        if state is _OPEN:  # the heartbeat rows, (OPEN, ping) and (OPEN, tick), looked up fast
            cls = type(event)
            if cls is Ping:
                self.monitor.last_heard = now
                return self._answer_ping(event, now)
            if cls is Tick and not self.monitor.is_gone(now):
                return self._heartbeat(event, now)
        elif state is _CLOSED:
            return []
        kind = _KINDS.get(type(event)) or self._classify(event, now)
        if state is _OPEN and kind in _MESSAGE_KINDS:
            self.monitor.last_heard = now
        step = _STEPS.get((state, kind))
        if step is None:
            return self._violation(event)
        self.state, act = step
        return act(self, event, now)

    def data(self, event: Event, now: float) -> bool:
        """The hot row of the table, ``(OPEN, send) -> (OPEN, deliver)``, without effects.

        Returns:
            Whether ``event`` is a ``Send`` on an open session, to deliver as
            :meth:`receive` would (``Deliver(event.payload)``); if not, the
            driver calls :meth:`receive`.
        """
        if type(event) is Send and self.state is _OPEN:
            self.monitor.last_heard = now
            return True
        return False

    def sent(self, now: float) -> None:
        """The driver sent something to the peer (any message counts as life)."""
        self.monitor.sent(now)

    def join_deadline(self) -> float:
        """When a ``JOINING`` session without a ``Join`` expires."""
        return self._expires

    def next_timer(self) -> float | None:
        """When the driver should feed the next :class:`Tick` (``None``: no timer)."""
        if self.state is S.OPEN and self.monitor.config.enabled:
            return self.monitor.next_check()
        return None

    # -- classification ------------------------------------------------------------------

    def _classify(self, event: Event, now: float) -> str:
        """The kind of an event whose type alone does not say it (see :data:`TRANSITIONS`)."""
        if isinstance(event, Join):
            return "join" if self.policy.problem(event) is None else "join-refused"
        if isinstance(event, Tick):
            if self.state is S.JOINING and now >= self._expires:
                return "expired"
            if self.state is S.OPEN and self.monitor.is_gone(now):
                return "silent"
            return "tick"
        return "other"

    # -- actions: each returns the effects of one transition -----------------------------

    def _nothing(self, event: Event, now: float) -> list[Effect]:
        return []

    def _end_quietly(self, event: Event, now: float) -> list[Effect]:
        assert isinstance(event, (Closed, Broken, Leave))
        return [Ended(event.reason)]

    def _accept_join(self, event: Event, now: float) -> list[Effect]:
        assert isinstance(event, Join)
        self.peer = event.name
        self.monitor.sent(now)
        return [Transmit(Accept()), Opened(event.name)]

    def _refuse_join(self, event: Event, now: float) -> list[Effect]:
        assert isinstance(event, Join)
        problem = self.policy.problem(event)
        assert problem is not None
        flag, detail = problem
        return [
            Refused(event.name, flag, detail),
            Transmit(Reject(flag, detail), must=False),
            Ended(f"rejected: {flag}"),
        ]

    def _join_expired(self, event: Event, now: float) -> list[Effect]:
        return [Violation("no Join in time"), Ended("no Join in time")]

    def _joined(self, event: Event, now: float) -> list[Effect]:
        return [Opened(self.peer)]

    def _rejected(self, event: Event, now: float) -> list[Effect]:
        assert isinstance(event, Reject)
        return [Ended("rejected"), JoinFailed("rejected", event.flag, event.detail)]

    def _closed_in_join(self, event: Event, now: float) -> list[Effect]:
        assert isinstance(event, (Closed, Broken))
        detail = f"connection closed during join: {event.reason}"
        return [JoinFailed("closed", "", detail)]

    def _deliver(self, event: Event, now: float) -> list[Effect]:
        assert isinstance(event, Send)
        assert isinstance(event.payload, SerializedMessage)
        return [Deliver(event.payload)]

    def _answer_ping(self, event: Event, now: float) -> list[Effect]:
        assert isinstance(event, Ping)
        if not self.monitor.pong_due(now):
            return []
        self.monitor.sent(now)
        return [Transmit(Pong(event.seq))]

    def _take_pong(self, event: Event, now: float) -> list[Effect]:
        assert isinstance(event, Pong)
        self.monitor.pong(event.seq, now)
        return []

    def _peer_left(self, event: Event, now: float) -> list[Effect]:
        assert isinstance(event, Drop)
        return [Lost(f"left: {event.reason or 'no reason given'}")]

    def _connection_closed(self, event: Event, now: float) -> list[Effect]:
        assert isinstance(event, Closed)
        return [Lost(f"connection closed: {event.reason}")]

    def _broken(self, event: Event, now: float) -> list[Effect]:
        assert isinstance(event, Broken)
        return [Lost(event.reason)]

    def _heartbeat(self, event: Event, now: float) -> list[Effect]:
        seq = self.monitor.ping_due(now)
        return [] if seq is None else [Transmit(Ping(seq))]

    def _silent(self, event: Event, now: float) -> list[Effect]:
        silence = now - self.monitor.last_heard
        return [Lost(f"silent for {silence:g} s (heartbeat)")]

    def _leave(self, event: Event, now: float) -> list[Effect]:
        assert isinstance(event, Leave)
        effects: list[Effect] = [Transmit(Drop(event.reason), must=False)] if event.word else []
        return [*effects, Ended(event.reason)]

    def _violation(self, event: Event) -> list[Effect]:
        """A message this state does not allow: record it and close."""
        name = type(event).__name__
        if self.state is S.JOINING:
            detail = f"expected Join, got {name}"
            effects: list[Effect] = [Violation(detail), Ended(detail)]
        elif self.state is S.CONNECTING:
            detail = f"expected Accept or Reject, got {name}"
            effects = [
                Violation(detail),
                Ended(detail),
                JoinFailed("rejected", "protocol", f"unexpected {name}"),
            ]
        else:
            detail = f"unexpected {name} on an open connection"
            effects = [Violation(detail), Lost(f"protocol error: {detail}")]
        self.state = S.CLOSED
        return effects


#: :data:`TRANSITIONS` with each action resolved to its method, once.
_STEPS: dict[tuple[SessionState, str], tuple[SessionState, Callable[..., list[Effect]]]] = {
    key: (target, getattr(Session, "_" + action)) for key, (target, action) in TRANSITIONS.items()
}
