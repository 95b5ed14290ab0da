"""The session core, synchronously: no event loop, no channel, time passed by hand."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from simkit._session import (
    TRANSITIONS,
    Broken,
    Closed,
    Deliver,
    Effect,
    Ended,
    JoinFailed,
    JoinPolicy,
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
from simkit.heartbeat import HeartbeatConfig
from simkit.messages import (
    PROTOCOL_VERSION,
    Accept,
    Drop,
    Join,
    Message,
    Ping,
    Pong,
    Reject,
    Send,
    SerializedMessage,
)

S = SessionState
HB = HeartbeatConfig(interval=1.0, misses=3)


@dataclass(frozen=True, slots=True)
class SessionNote(Message):
    n: int


class SessionPair:
    """A client and a server session wired back to back (h11's ConnectionPair)."""

    def __init__(self, policy: JoinPolicy | None = None, hb: HeartbeatConfig = HB) -> None:
        self.client = Session(S.CONNECTING, "server", hb, 0.0)
        self.server = Session(S.JOINING, "127.0.0.1:5", hb, 0.0, policy)
        self.effects: dict[str, list[Effect]] = {"client": [], "server": []}

    def side(self, name: str) -> Session:
        return self.client if name == "client" else self.server

    def send(self, src: str, msg: object, now: float = 0.0) -> list[Effect]:
        """``src`` sends ``msg``; the other side receives it; pass its transmits back."""
        dst = "server" if src == "client" else "client"
        effects = self.side(dst).receive(msg, now)  # type: ignore[arg-type]
        self.effects[dst].extend(effects)
        for effect in effects:
            if isinstance(effect, Transmit):
                self.send(dst, effect.msg, now)
        return effects

    def join(self, name: str = "c1", token: str = "") -> list[Effect]:
        self.client.sent(0.0)
        return self.send("client", Join(name, PROTOCOL_VERSION, token))


def kinds(effects: list[Effect]) -> list[str]:
    return [type(e).__name__ for e in effects]


def test_the_table_is_one_place_and_names_existing_actions() -> None:
    for (state, kind), (target, action) in TRANSITIONS.items():
        assert hasattr(Session, "_" + action), (state, kind, action)
        assert isinstance(target, SessionState)
    assert not any(state is S.CLOSED for state, _ in TRANSITIONS)


def test_join_accept_opens_both_sides() -> None:
    pair = SessionPair()
    effects = pair.join()
    assert kinds(effects) == ["Transmit", "Opened"]
    assert effects[1] == Opened("c1")
    assert pair.server.state is S.OPEN
    assert pair.server.peer == "c1"
    assert pair.client.state is S.OPEN
    assert pair.effects["client"] == [Opened("server")]


@pytest.mark.parametrize(
    ("join", "policy", "flag"),
    [
        (Join("c1", "2.0", ""), JoinPolicy(), "version"),
        (Join("c1", PROTOCOL_VERSION, "nope"), JoinPolicy(token="s3cret"), "auth"),
        (Join("", PROTOCOL_VERSION, ""), JoinPolicy(), "name"),
        (Join("x" * 200, PROTOCOL_VERSION, ""), JoinPolicy(), "name"),
        (Join("bad\x00", PROTOCOL_VERSION, ""), JoinPolicy(), "name"),
        (Join("x9", PROTOCOL_VERSION, ""), JoinPolicy(admit=frozenset({"c1"})), "name"),
    ],
)
def test_refused_joins(join: Join, policy: JoinPolicy, flag: str) -> None:
    pair = SessionPair(policy)
    effects = pair.send("client", join)
    assert kinds(effects) == ["Refused", "Transmit", "Ended"]
    refused = effects[0]
    assert isinstance(refused, Refused)
    assert refused.flag == flag
    assert effects[1] == Transmit(Reject(flag, refused.detail), must=False)
    assert effects[2] == Ended(f"rejected: {flag}")
    assert pair.server.state is S.CLOSED
    client = pair.effects["client"]
    assert client == [Ended("rejected"), JoinFailed("rejected", flag, refused.detail)]
    assert pair.client.state is S.CLOSED


def test_a_good_token_and_an_admitted_name_pass() -> None:
    pair = SessionPair(JoinPolicy(token="s3cret", admit=frozenset({"c1"})))
    assert kinds(pair.join("c1", "s3cret")) == ["Transmit", "Opened"]


def test_joining_side_wants_join_first_and_expires_without_one() -> None:
    pair = SessionPair()
    effects = pair.server.receive(Ping(1), 0.0)
    assert effects == [Violation("expected Join, got Ping"), Ended("expected Join, got Ping")]
    quiet = Session(S.JOINING, "peer", HB, 0.0)
    assert quiet.join_deadline() == 3.0
    assert quiet.next_timer() is None
    assert quiet.receive(Tick(), 1.0) == []
    assert quiet.receive(Tick(), 3.0) == [Violation("no Join in time"), Ended("no Join in time")]
    assert quiet.receive(Tick(), 4.0) == []  # closed: everything is ignored


@pytest.mark.parametrize("event", [Closed("eof"), Broken("reset"), Leave("bye")])
def test_joining_side_ends_quietly(event: object) -> None:
    session = Session(S.JOINING, "peer", HB, 0.0)
    assert session.receive(event, 0.0) == [Ended(event.reason)]  # type: ignore[arg-type, attr-defined]
    assert session.state is S.CLOSED


def test_connecting_side_outcomes() -> None:
    closed = Session(S.CONNECTING, "server", HB, 0.0)
    assert closed.receive(Tick(), 0.5) == []
    assert closed.receive(Closed("eof"), 1.0) == [
        JoinFailed("closed", "", "connection closed during join: eof")
    ]
    broken = Session(S.CONNECTING, "server", HB, 0.0)
    assert kinds(broken.receive(Broken("reset"), 1.0)) == ["JoinFailed"]
    odd = Session(S.CONNECTING, "server", HB, 0.0)
    assert odd.receive(Pong(1), 1.0) == [
        Violation("expected Accept or Reject, got Pong"),
        Ended("expected Accept or Reject, got Pong"),
        JoinFailed("rejected", "protocol", "unexpected Pong"),
    ]
    gave_up = Session(S.CONNECTING, "server", HB, 0.0)
    assert gave_up.receive(Leave("join timed out", word=False), 10.0) == [Ended("join timed out")]
    with pytest.raises(ValueError, match="starts CONNECTING or JOINING"):
        Session(S.OPEN, "x", HB, 0.0)


def open_pair(hb: HeartbeatConfig = HB) -> SessionPair:
    pair = SessionPair(hb=hb)
    pair.join()
    return pair


def test_open_session_delivers_and_leaves() -> None:
    pair = open_pair()
    payload = SerializedMessage.from_message(SessionNote(3))
    assert pair.server.receive(Send(payload.type, payload), 0.5) == [Deliver(payload)]
    assert pair.server.monitor.last_heard == 0.5
    assert pair.server.receive(Drop(""), 0.6) == [Lost("left: no reason given")]
    other = open_pair()
    assert other.client.receive(Drop("done"), 0.1) == [Lost("left: done")]
    assert other.server.receive(Closed("eof"), 0.2) == [Lost("connection closed: eof")]
    broken = open_pair()
    assert broken.server.receive(Broken("reset"), 0.2) == [Lost("reset")]


def test_leaving_an_open_session_says_drop_unless_told_not_to() -> None:
    pair = open_pair()
    assert pair.server.receive(Leave("finished"), 1.0) == [
        Transmit(Drop("finished"), must=False),
        Ended("finished"),
    ]
    quiet = open_pair()
    assert quiet.server.receive(Leave("crashed", word=False), 1.0) == [Ended("crashed")]


@pytest.mark.parametrize("msg", [Join("c1", PROTOCOL_VERSION, ""), Accept(), Reject("x", "y")])
def test_handshake_messages_on_an_open_session_are_violations(msg: object) -> None:
    pair = open_pair()
    name = type(msg).__name__
    detail = f"unexpected {name} on an open connection"
    assert pair.server.receive(msg, 1.0) == [  # type: ignore[arg-type]
        Violation(detail),
        Lost(f"protocol error: {detail}"),
    ]
    assert pair.server.state is S.CLOSED


def test_heartbeats_ping_pong_and_silence() -> None:
    pair = open_pair()
    server = pair.server
    assert server.next_timer() == 1.0
    assert server.receive(Tick(), 0.5) == []  # nothing due yet
    assert server.receive(Tick(), 1.0) == [Transmit(Ping(1))]
    # The client spoke at 0: it answers a Ping at 1.0 ...
    assert pair.client.receive(Ping(1), 1.0) == [Transmit(Pong(1))]
    # ... but not one at 1.2, having spoken within half an interval.
    assert pair.client.receive(Ping(2), 1.2) == []
    assert server.receive(Pong(1), 1.1) == []
    assert server.monitor.rtt == pytest.approx(0.1)
    assert server.receive(Tick(), 4.1) == [Lost("silent for 3 s (heartbeat)")]
    assert server.next_timer() is None


def test_heartbeats_off_means_no_timer() -> None:
    pair = open_pair(HeartbeatConfig(enabled=False))
    assert pair.server.next_timer() is None
    assert pair.server.receive(Tick(), 100.0) == []


def test_repr() -> None:
    assert repr(Session(S.JOINING, "peer", HB, 0.0)) == "<Session peer JOINING>"


def test_the_data_fast_path_is_the_send_row() -> None:
    pair = open_pair()
    payload = SerializedMessage.from_message(SessionNote(1))
    assert pair.server.data(Send(payload.type, payload), 2.0)
    assert pair.server.monitor.last_heard == 2.0
    assert not pair.server.data(Ping(1), 2.0)
    joining = Session(S.JOINING, "peer", HB, 0.0)
    assert not joining.data(Send(payload.type, payload), 1.0)
    assert kinds(joining.receive(Send(payload.type, payload), 1.0)) == ["Violation", "Ended"]


def test_an_unknown_event_is_a_violation() -> None:
    pair = open_pair()
    assert kinds(pair.server.receive(object(), 1.0)) == ["Violation", "Lost"]  # type: ignore[arg-type]
