"""The connection driver: feeds a :class:`~simkit._session.Session` and carries out its effects.

A :class:`Connection` is the short loop between a channel, the session core
and the actor that owns them: each message that arrives, each close and each
timer becomes an event for the core; each effect the core returns becomes a
send on the channel, a call on the owner (deliver, peer up, peer lost, a
trace record) or a timer. All decisions are in the core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, cast

from simkit._session import (
    Broken,
    Closed,
    Deliver,
    Effect,
    Ended,
    Event,
    JoinFailed,
    Leave,
    Lost,
    Opened,
    Refused,
    Session,
    SessionState,
    Tick,
    Transmit,
    Violation,
)
from simkit._waiting import Wake
from simkit.channels import BrokenChannel, Channel, ChannelClosed, ConnectError
from simkit.messages import ActionMessage, Send, SerializedMessage

__all__ = ["Connection", "Owner", "Rejected"]


_TICK = Tick()  # one is enough: it carries nothing


class Rejected(ConnectError):
    """The server answered ``Join`` with ``Reject``."""

    def __init__(self, flag: str, detail: str) -> None:
        super().__init__(f"join rejected ({flag}): {detail}")
        self.flag = flag
        self.detail = detail


class Owner(Protocol):
    """What a connection needs of the actor context that owns it."""

    _now: Callable[[], float]  # the current time

    def _call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle: ...

    def _record(self, kind: str, dst: str = "", type: str = "", info: str = "") -> None: ...

    def _deliver(self, src: str, message: SerializedMessage) -> None: ...

    def _add_peer(self, conn: Connection) -> None: ...

    def _lost_peer(self, conn: Connection, reason: str) -> None: ...

    def _drop_pending(self, conn: Connection) -> None: ...


class Connection:
    """One connection of one actor: a channel, its session, its timer."""

    __slots__ = ("_now", "_timer", "channel", "joined", "number", "owner", "session")

    def __init__(self, owner: Owner, channel: Channel, session: Session) -> None:
        self.owner = owner
        self._now = owner._now
        self.channel = channel
        self.session = session
        self._timer: asyncio.TimerHandle | None = None
        self.number = 0  # the owner numbers each open session (Context.session)
        #: Fired with a connecting side's outcome: ``None`` (accepted) or the error.
        self.joined: Wake | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.owner}->{self.session.peer} {self.session.state.name}>"

    @property
    def peer(self) -> str:
        """The peer's name (as its ``Join`` gave it, once known)."""
        return self.session.peer

    @property
    def is_open(self) -> bool:
        """Whether the session is open."""
        return self.session.state is SessionState.OPEN

    def start(self) -> None:
        """Start receiving from the channel."""
        self.channel.start(self._on_message, self._on_close)

    # -- sending -----------------------------------------------------------------------

    def send(self, msg: ActionMessage) -> int:
        """Send an action message (``Join``); any send is a sign of life."""
        nbytes = self.channel.send_nowait(msg)
        self.session.sent(self._now())
        return nbytes

    def send_encoded(self, body: bytes, type_name: str) -> int:
        """Send an encoded ``Send`` body.

        Raises:
            ChannelClosed: This end was closed.
            BrokenChannel: The other end went away.
        """
        nbytes = self.channel.send_encoded(body, type_name)
        self.session.monitor.sent(self._now())
        return nbytes

    # -- events in ---------------------------------------------------------------------

    def _on_message(self, msg: ActionMessage) -> None:
        now = self._now()
        if self.session.data(msg, now):  # most messages: skip building the effects
            payload = cast("Send", msg).payload  # a received Send's is a SerializedMessage
            self.owner._deliver(self.session.peer, cast("SerializedMessage", payload))
        else:
            self._apply(self.session.receive(msg, now))

    def _on_close(self, reason: str) -> None:
        self._feed(Closed(reason))

    def _feed(self, event: Event) -> None:
        self._apply(self.session.receive(event, self._now()))

    def close(self, reason: str, *, word: bool = False) -> None:
        """End the connection (saying ``Drop(reason)`` first if ``word`` and open)."""
        self._feed(Leave(reason, word))
        self._shut(reason)

    # -- timers ------------------------------------------------------------------------

    def arm_join_expiry(self) -> None:
        """A joining peer that never says ``Join`` is shown the door."""
        self.owner._call_at(self.session.join_deadline(), self._join_timer)

    def _join_timer(self) -> None:
        if self.session.state is SessionState.JOINING:
            self._feed(_TICK)

    def start_heartbeats(self) -> None:
        """Arm the heartbeat timer (an open session with heartbeats on)."""
        when = self.session.next_timer()
        if when is not None:
            self._timer = self.owner._call_at(when, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._feed(_TICK)
        if self._timer is None and self.is_open:
            self.start_heartbeats()

    # -- effects out ---------------------------------------------------------------------

    def _apply(self, effects: list[Effect]) -> None:
        owner = self.owner
        for effect in effects:
            if type(effect) is Deliver:  # the common case first
                owner._deliver(self.session.peer, effect.payload)
            elif isinstance(effect, Transmit):
                if not self._transmit(effect):
                    return  # the session was told and has moved on
            elif isinstance(effect, Opened):
                owner._add_peer(self)
                self._settle(None)
            elif isinstance(effect, Refused):
                owner._record("reject", effect.name, info=f"{effect.flag}: {effect.detail}")
            elif isinstance(effect, Violation):
                owner._record("protocol_error", self.peer, info=effect.detail)
            elif isinstance(effect, Lost):
                owner._lost_peer(self, effect.reason)
            elif isinstance(effect, Ended):
                owner._drop_pending(self)
                self._shut(effect.reason)
            elif isinstance(effect, JoinFailed):
                self._settle(_join_error(effect))

    def _transmit(self, effect: Transmit) -> bool:
        try:
            self.channel.send_nowait(effect.msg)
        except (ChannelClosed, BrokenChannel) as exc:
            if effect.must:
                self._feed(Broken(str(exc)))
                return False
        return True

    def _settle(self, outcome: ConnectError | None) -> None:
        if self.joined is not None and self.joined.open:
            self.joined.fire(outcome)

    def _shut(self, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.channel.close(reason)


def _join_error(effect: JoinFailed) -> ConnectError:
    if effect.kind == "rejected":
        return Rejected(effect.flag, effect.detail)
    return ConnectError(effect.detail)
