"""Admission and bounded per-peer state: strangers are refused, floods drop their sender."""

from __future__ import annotations

import gc
from dataclasses import dataclass

import pytest

from simkit._mailbox import Mailbox
from simkit.actors import Actor, Context, PeerGone, Received, Rejected
from simkit.messages import Message, SerializedMessage
from simkit.simulation import Simulation
from simkit.trace import Trace


@dataclass(frozen=True, slots=True)
class Filler(Message):
    blob: bytes


@dataclass(frozen=True, slots=True)
class LastWord(Message):
    n: int


class Sink(Actor):
    """Listens (admitting ``admit``) and reads nothing until ``until``."""

    def __init__(self, admit: list[str] | None = None, until: float = 1e6) -> None:
        self.name = "server"
        self.admit = admit
        self.until = until
        self.seen: dict[str, object] = {}

    async def run(self, ctx: Context) -> None:
        ctx.listen(admit=self.admit)
        await ctx.sleep(self.until)
        first = ctx.take(Filler)
        self.seen = {
            "peers": ctx.peers(),
            "pending": ctx.pending() + (first is not None),
            "first": first.src if first is not None else None,
            "held": len(ctx._mailbox._held),
        }


class Sender(Actor):
    """Joins, sends ``count`` messages of ``size`` bytes, then leaves (or stays)."""

    def __init__(self, name: str, count: int, size: int = 1024, stay: float = 0.0) -> None:
        self.name = name
        self.count = count
        self.size = size
        self.stay = stay
        self.outcome = ""

    async def run(self, ctx: Context) -> None:
        try:
            await ctx.connect("server")
        except Rejected as exc:
            self.outcome = f"rejected: {exc.flag}"
            return
        blob = bytes(self.size)
        try:
            for _ in range(self.count):
                await ctx.send("server", Filler(blob))
            if self.stay:
                await ctx.recv(src="server", timeout=self.stay)
        except PeerGone as exc:
            self.outcome = f"gone: {exc.reason}"
            return
        except TimeoutError:
            pass
        self.outcome = "sent"


def test_listen_admit_refuses_other_names_and_counts_them() -> None:
    sim = Simulation(seed=1)
    sink = Sink(admit=["c0", "c1"], until=5.0)
    sim.add(sink)
    senders = [Sender(name, 1) for name in ("c0", "c1", "x0", "x1", "x2")]
    for sender in senders:
        sim.add(sender, daemon=True, start_at=0.1)
    result = sim.run()
    assert [s.outcome for s in senders] == ["sent"] * 2 + ["rejected: name"] * 3
    assert result.trace.count("reject") == 3
    rejects = [e for e in result.trace.events if e.kind == "reject"]
    assert [e.dst for e in rejects] == ["x0", "x1", "x2"]
    assert "not admitted" in rejects[0].info


def test_a_flooding_peer_is_dropped_with_a_reason_and_the_actor_goes_on() -> None:
    sim = Simulation(seed=1, peer_queue_messages=50)
    sink = Sink(until=5.0)
    sim.add(sink)
    flood = Sender("flood", 200, stay=1.0)
    calm = Sender("calm", 10, stay=2.0)
    sim.add(flood, daemon=True, start_at=0.1)
    sim.add(calm, daemon=True, start_at=0.1)
    result = sim.run()
    assert result.errors == []
    assert flood.outcome.startswith("gone: ")
    assert calm.outcome == "sent"
    downs = [e for e in result.trace.events if e.kind == "peer_down"]
    assert [(e.src, e.dst) for e in downs][:2] == [("server", "flood"), ("flood", "server")]
    assert downs[0].info.startswith("mailbox full: 51 messages from flood unread")
    assert "limit 50 messages" in downs[0].info
    assert downs[1].info.startswith("left: mailbox full: 51 messages")


def test_byte_limit_drops_the_peer_but_one_message_always_fits() -> None:
    sim = Simulation(seed=1, peer_queue_bytes=10_000)
    sink = Sink(until=5.0)
    sim.add(sink)
    big = Sender("big", 1, size=50_000, stay=1.0)  # one message over the limit: fits
    two = Sender("two", 2, size=6_000, stay=1.0)
    sim.add(big, daemon=True, start_at=0.1)
    sim.add(two, daemon=True, start_at=0.1)
    result = sim.run()
    assert big.outcome == "sent"
    assert two.outcome.startswith("gone: ")
    info = [e.info for e in result.trace.events if e.kind == "peer_down" and e.src == "two"]
    assert info == [
        "left: mailbox full: 2 messages from two unread (limit 1024 messages or 10000 bytes)"
    ]


def test_departed_peers_keep_their_last_words_within_one_share() -> None:
    """Many peers send and leave: the mailbox holds at most one peer's share of them."""
    sim = Simulation(seed=2, peer_queue_messages=100, trace=Trace(keep=False))
    sink = Sink(until=60.0)
    sim.add(sink)
    for i in range(50):
        sim.add(Sender(f"p{i:02d}", 100), daemon=True, start_at=0.1 + i * 0.5)
    result = sim.run()
    assert result.errors == []
    # The newest 100 of 5,000 (the last peer's), and nothing else kept.
    assert sink.seen == {"peers": [], "pending": 100, "first": "p49", "held": 1}


def test_a_reply_sent_just_before_leaving_is_still_taken() -> None:
    class Asker(Actor):
        name = "server"
        got: list[int] = []

        async def run(self, ctx: Context) -> None:
            ctx.listen()
            await ctx.wait_for_peers(1)
            await ctx.sleep(5.0)  # busy while the peer answers and leaves
            item = await ctx.recv(LastWord)
            msg = item.decode()
            assert isinstance(msg, LastWord)
            Asker.got.append(msg.n)

    class Leaver(Actor):
        name = "c0"

        async def run(self, ctx: Context) -> None:
            await ctx.connect("server")
            await ctx.sleep(1.0)  # the server is past wait_for_peers, busy
            await ctx.send("server", LastWord(7))

    sim = Simulation(seed=1)
    sim.add(Asker())
    sim.add(Leaver(), daemon=True)
    result = sim.run()
    assert result.errors == []
    assert Asker.got == [7]


def _item(src: str, nbytes: int = 10, type_name: str = "T") -> Received:
    return Received(src, SerializedMessage(type_name, b"\x80", bytes(nbytes)), 0.0)


def test_mailbox_shares_rejoin_and_discard() -> None:
    box = Mailbox(max_messages=3, max_bytes=1000)
    assert box.put(_item("a"))
    assert box.put(_item("a"))
    assert box.put(_item("b", type_name="U"))
    assert box.held("a") == 2
    assert box.count(frozenset({"U"})) == 1
    box.peer_left("a")
    box.peer_left("a")  # idempotent
    box.peer_left("nobody")
    box.peer_joined("a")  # back: its two count as its own again
    assert box.put(_item("a"))
    assert not box.put(_item("a"))  # a fourth: over its share
    box.discard("a")
    box.discard("a")
    assert box.held("a") == 0
    assert len(box) == 1
    taken = box.take(frozenset({"U"}), {"b"})
    assert taken is not None
    assert box.take(None, None) is None
    box.put(_item("c"))
    box.peer_left("c")
    box.discard("c")  # a departed peer's mail discarded at once
    assert len(box) == 0
    box.put(_item("d"))
    box.clear()
    assert len(box) == 0
    assert box.held("d") == 0


def test_mailbox_departed_mail_is_trimmed_oldest_first() -> None:
    box = Mailbox(max_messages=4, max_bytes=1000)
    for src in ("a", "a", "a", "b", "b", "b", "live"):
        box.put(_item(src))
    box.peer_left("a")
    box.peer_left("b")  # 6 departed > 4: the two oldest (a's) go
    assert [item.src for item in box.items] == ["a", "b", "b", "b", "live"]
    first = box.take(None, {"a"})
    assert first is not None  # taking a departed peer's mail frees its share
    assert box.held("a") == 0
    box.peer_left("live")
    assert [item.src for item in box.items] == ["b", "b", "b", "live"]


def test_mailbox_byte_share_of_departed_peers() -> None:
    box = Mailbox(max_messages=100, max_bytes=100)
    for src in ("a", "b", "c"):
        box.put(_item(src, nbytes=60))
    for src in ("a", "b", "c"):
        box.peer_left(src)
    assert [item.src for item in box.items] == ["c"]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
def test_rss_after_200k_sends_from_departed_peers_stays_near_baseline() -> None:
    """200,000 x 1 KB from 400 peers that each send 500 and leave: < 20 MiB growth."""

    def run(peers: int) -> Sink:
        sim = Simulation(seed=3, trace=Trace(keep=False))
        sink = Sink(until=peers * 0.5 + 10.0)
        sim.add(sink)
        for i in range(peers):
            sim.add(Sender(f"p{i:03d}", 500), daemon=True, start_at=0.1 + i * 0.5)
        sim.run()
        return sink

    run(4)  # warm up imports and caches
    gc.collect()
    before = _rss()
    sink = run(400)
    gc.collect()
    grown = _rss() - before
    assert sink.seen["pending"] == 1024
    assert grown < 20 << 20, f"RSS grew {grown / 2**20:.1f} MiB"
