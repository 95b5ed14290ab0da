"""The in-process network: channels between actors over a seeded network model.

Every message is really encoded to bytes when sent and decoded when delivered,
so byte counts are real and a malformed message fails as it would on TCP. Each
directed link has its own random stream from the seed tree, so traffic on one
link never changes the draws of another.

Timing of one message on a link ``src -> dst`` (all in virtual seconds)::

    start   = max(now, link busy until)            # one message at a time
    done    = start + nbytes / bandwidth           # transfer time
    arrival = done + latency draw
    arrival = max(arrival, previous arrival)       # per-link FIFO unless reorder

A message is lost when a random draw falls under the link's loss probability
or when the link is cut by a partition at send time; it is also lost when,
at delivery, its sender has crashed or its receiving end has closed. Every
loss is recorded in the trace with its reason.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from simkit.channels._base import (
    BrokenChannel,
    Channel,
    ChannelClosed,
    ConnectError,
    ConnectRefused,
    Listener,
    OnClose,
    OnMessage,
    Transport,
    check_body_size,
)
from simkit.channels._model import (
    Constant,
    Latency,
    LinkModel,
    LogNormal,
    NetworkModel,
    Uniform,
    latency_from_spec,
)
from simkit.codec import DEFAULT_MAX_BODY, DecodeError
from simkit.messages import ActionMessage, decode_action
from simkit.rng import SeedTree

__all__ = [
    "Constant",
    "Latency",
    "LinkModel",
    "LogNormal",
    "MemoryChannel",
    "MemoryListener",
    "MemoryNetwork",
    "NetworkModel",
    "TraceSink",
    "Uniform",
    "latency_from_spec",
]


class TraceSink(Protocol):
    """What the network needs of a trace recorder."""

    def record(
        self,
        t: float,
        kind: str,
        src: str = "",
        dst: str = "",
        type: str = "",
        nbytes: int = 0,
        digest: str = "",
        info: str = "",
    ) -> None: ...


class _NullTrace:
    def record(self, *args: Any, **kwargs: Any) -> None:
        pass


class _Link:
    """Mutable state of one directed link."""

    __slots__ = ("busy_until", "last_arrival", "model", "rng")

    def __init__(self, model: LinkModel, rng: np.random.Generator | None) -> None:
        self.model = model
        self.rng = rng
        self.busy_until = 0.0
        self.last_arrival = 0.0


# ----------------------------------------------------------------------------- network


class MemoryNetwork(Transport):
    """An in-process network of :class:`MemoryChannel` connections.

    Args:
        model: The network model.
        seeds: The seed tree node for network randomness (per-link streams are
            derived below it as ``(src, dst)``).
        trace: Where events are recorded (optional).
        max_body: The frame size limit, in bytes.
        digests: Record a payload digest per message in the trace (one
            SHA-256 per message; turn off for very large payload benchmarks).
    """

    def __init__(
        self,
        model: NetworkModel | None = None,
        *,
        seeds: SeedTree | None = None,
        trace: TraceSink | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        digests: bool = True,
    ) -> None:
        self.model = model or NetworkModel()
        self.seeds = seeds if seeds is not None else SeedTree(0, ("net",))
        self.trace: TraceSink = trace if trace is not None else _NullTrace()
        self.max_body = max_body
        self.digests = digests
        self._listeners: dict[str, MemoryListener] = {}
        self._links: dict[tuple[str, str], _Link] = {}
        self._ends: dict[str, list[MemoryChannel]] = {}
        self._cuts: set[tuple[str, str]] = set()
        self._degraded: dict[str, dict[str, Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Deliveries due now, drained by one loop callback (one handle per burst).
        self._due: deque[tuple[MemoryChannel, MemoryChannel, bytes, str, str]] = deque()

    # -- topology ------------------------------------------------------------------

    def listen(self, owner: str, address: str) -> MemoryListener:
        if address in self._listeners:
            raise ConnectError(f"address {address!r} is already in use")
        listener = MemoryListener(self, owner, address)
        self._listeners[address] = listener
        return listener

    async def connect(self, owner: str, address: str) -> MemoryChannel:
        return self.connect_nowait(owner, address)

    def connect_nowait(self, owner: str, address: str) -> MemoryChannel:
        """Connect at once (the in-memory handshake takes no time).

        Raises:
            ConnectRefused: Nothing listens at ``address``.
        """
        listener = self._listeners.get(address)
        if listener is None:
            raise ConnectRefused(f"{owner}: nothing listens at {address!r}")
        mine = MemoryChannel(self, owner, listener.owner)
        theirs = MemoryChannel(self, listener.owner, owner)
        mine._peer, theirs._peer = theirs, mine
        self._ends.setdefault(owner, []).append(mine)
        self._ends.setdefault(listener.owner, []).append(theirs)
        listener._accept(theirs)
        return mine

    def _drop_listener(self, listener: MemoryListener) -> None:
        if self._listeners.get(listener.address) is listener:
            del self._listeners[listener.address]

    # -- faults --------------------------------------------------------------------

    def crash(self, owner: str, *, loud: bool) -> None:
        """Kill every connection end and listener of ``owner``.

        In-flight messages from or to it are lost. A loud crash tells each
        peer at once (as a closed TCP connection would); a silent one tells
        nobody, and only heartbeats will notice.
        """
        for listener in [lst for lst in self._listeners.values() if lst.owner == owner]:
            listener.close()
        for end in self._ends.pop(owner, []):
            end._die(loud=loud)

    def cut(self, group_a: Iterable[str], group_b: Iterable[str]) -> None:
        """Partition: messages between the two groups are lost (both ways)."""
        for a in group_a:
            for b in group_b:
                self._cuts.add((a, b))
                self._cuts.add((b, a))

    def heal(self) -> None:
        """Remove every partition."""
        self._cuts.clear()

    def degrade(self, actor: str, **changes: Any) -> None:
        """Change the links to and from ``actor`` (``latency``, ``loss``, ``bandwidth``).

        Raises:
            ValueError: An unknown field or a bad value.
        """
        if "latency" in changes:
            changes["latency"] = latency_from_spec(changes["latency"])
        replace(self.model.default, **changes)  # validates names and values
        self._degraded[actor] = {**self._degraded.get(actor, {}), **changes}
        for (src, dst), link in self._links.items():
            if actor in (src, dst):
                link.model = self._model_for(src, dst)

    def restore(self, actor: str) -> None:
        """Undo :meth:`degrade` for ``actor``."""
        self._degraded.pop(actor, None)
        for (src, dst), link in self._links.items():
            if actor in (src, dst):
                link.model = self._model_for(src, dst)

    # -- transmission ----------------------------------------------------------------

    def _model_for(self, src: str, dst: str) -> LinkModel:
        model = self.model.links.get((src, dst), self.model.default)
        for actor in (src, dst):
            changes = self._degraded.get(actor)
            if changes:
                model = replace(model, **changes)
        return model

    def _link(self, src: str, dst: str) -> _Link:
        link = self._links.get((src, dst))
        if link is None:
            model = self._model_for(src, dst)
            link = _Link(model, None)
            self._links[(src, dst)] = link
        return link

    def _rng(self, link: _Link, src: str, dst: str) -> np.random.Generator:
        if link.rng is None:
            link.rng = self.seeds.numpy(src, dst)
        return link.rng

    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _transmit(self, end: MemoryChannel, body: bytes, type_name: str, digest: str) -> None:
        loop = self.loop()
        now = loop.time()
        src, dst = end.local, end.remote
        nbytes = len(body)
        trace = self.trace
        trace.record(now, "send", src, dst, type_name, nbytes, digest)
        if (src, dst) in self._cuts:
            trace.record(now, "lost", src, dst, type_name, nbytes, digest, "partition")
            return
        link = self._link(src, dst)
        model = link.model
        if model.loss > 0.0 and self._rng(link, src, dst).random() < model.loss:
            trace.record(now, "lost", src, dst, type_name, nbytes, digest, "random")
            return
        start = now if link.busy_until < now else link.busy_until
        if model.bandwidth is not None:
            start += nbytes / model.bandwidth
            link.busy_until = start
        latency = model.latency
        arrival = start + (
            latency.seconds
            if isinstance(latency, Constant)
            else latency.sample(self._rng(link, src, dst))
        )
        if not self.model.reorder and arrival < link.last_arrival:
            arrival = link.last_arrival
        link.last_arrival = arrival
        assert end._peer is not None
        if arrival <= now:
            # Due now: skip the timer heap, and batch the burst into one loop
            # callback. FIFO holds, as every same-instant delivery takes this
            # path, in send order.
            due = self._due
            if not due:
                loop.call_soon(self._drain)
            due.append((end._peer, end, body, type_name, digest))
        else:
            loop.call_at(arrival, end._peer._arrive, end, body, type_name, digest)

    def _drain(self) -> None:
        due = self._due
        try:
            while due:
                receiver, sender, body, type_name, digest = due.popleft()
                receiver._arrive(sender, body, type_name, digest)
        finally:
            if due:  # a callback raised: deliver the rest in a new callback
                self.loop().call_soon(self._drain)

    def _transmit_close(self, end: MemoryChannel, reason: str) -> None:
        """A graceful close travels like data: after what was sent before it."""
        loop = self.loop()
        link = self._link(end.local, end.remote)
        arrival = max(loop.time() + _base_latency(link.model), link.last_arrival)
        link.last_arrival = arrival
        assert end._peer is not None
        loop.call_at(arrival, end._peer._remote_closed, end, reason)


def _base_latency(model: LinkModel) -> float:
    latency = model.latency
    if isinstance(latency, Constant):
        return latency.seconds
    if isinstance(latency, Uniform):
        return latency.low
    return latency.median


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


# ----------------------------------------------------------------------------- ends


class MemoryListener(Listener):
    """Accepts :class:`MemoryChannel` connections at an address."""

    def __init__(self, network: MemoryNetwork, owner: str, address: str) -> None:
        self._network = network
        self.owner = owner
        self.address = address
        self._on_accept: Callable[[Channel], None] | None = None
        self._backlog: list[MemoryChannel] = []
        self._closed = False

    def start(self, on_accept: Callable[[Channel], None]) -> None:
        self._on_accept = on_accept
        backlog, self._backlog = self._backlog, []
        for channel in backlog:
            on_accept(channel)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._network._drop_listener(self)

    def _accept(self, channel: MemoryChannel) -> None:
        if self._on_accept is None:
            self._backlog.append(channel)
        else:
            self._on_accept(channel)


class MemoryChannel(Channel):
    """One end of an in-memory connection (see the module docstring)."""

    __slots__ = (
        "_backlog",
        "_closed",
        "_dead",
        "_network",
        "_on_close",
        "_on_message",
        "_peer",
        "_remote_gone",
        "local",
        "remote",
    )

    def __init__(self, network: MemoryNetwork, local: str, remote: str) -> None:
        self._network = network
        self.local = local
        self.remote = remote
        self._peer: MemoryChannel | None = None
        self._on_message: OnMessage | None = None
        self._on_close: OnClose | None = None
        self._backlog: list[ActionMessage] = []
        self._closed = False  # this end can no longer send
        self._dead = False  # this end's owner crashed
        self._remote_gone = False  # closed because the other end went away

    def __repr__(self) -> str:
        return f"<MemoryChannel {self.local}->{self.remote}{' closed' if self._closed else ''}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self, on_message: OnMessage, on_close: OnClose) -> None:
        self._on_message, self._on_close = on_message, on_close
        backlog, self._backlog = self._backlog, []
        for msg in backlog:
            on_message(msg)

    @property
    def max_body(self) -> int:
        return self._network.max_body

    def send_encoded(self, body: bytes, type_name: str) -> int:
        """Send an already encoded body (a broadcast encodes once)."""
        self._check_open()
        net = self._network
        check_body_size(body, net.max_body, self.local)
        digest = _digest(body) if net.digests else ""
        net._transmit(self, body, type_name, digest)
        return len(body)

    def close(self, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        self._on_message = None
        if not self._dead and self._peer is not None:
            self._network._transmit_close(self, reason or "closed by peer")

    # -- network side ------------------------------------------------------------------

    def _check_open(self) -> None:
        # A silently crashed peer looks alive: sends go out and are lost on arrival.
        if self._closed:
            if self._remote_gone:
                raise BrokenChannel(f"{self.local}: {self.remote} closed the connection")
            raise ChannelClosed(f"{self.local}: channel to {self.remote} is closed")

    def _die(self, *, loud: bool) -> None:
        if self._dead:
            return
        was_closed = self._closed
        self._dead = True
        self._closed = True
        self._on_message = None
        self._on_close = None
        peer = self._peer
        if loud and not was_closed and peer is not None:
            self._network.loop().call_soon(peer._remote_closed, self, "peer crashed")

    def _arrive(self, sender: MemoryChannel, body: bytes, type_name: str, digest: str) -> None:
        net = self._network
        now = net.loop().time()
        if sender._dead or self._closed:
            if sender._dead:
                reason = "sender crashed"
            else:
                reason = "receiver crashed" if self._dead else "receiver closed"
            net.trace.record(
                now, "lost", sender.local, self.local, type_name, len(body), digest, reason
            )
            return
        net.trace.record(now, "deliver", sender.local, self.local, type_name, len(body), digest)
        try:
            msg = decode_action(body, net.max_body)
        except DecodeError as exc:
            net.trace.record(
                now,
                "decode_error",
                sender.local,
                self.local,
                type_name,
                len(body),
                digest,
                str(exc),
            )
            self._fail(f"undecodable message from {sender.local}: {exc}")
            return
        if self._on_message is not None:
            self._on_message(msg)
        else:
            self._backlog.append(msg)

    def _remote_closed(self, sender: MemoryChannel, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._remote_gone = True
        self._on_message = None
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(reason)

    def _fail(self, reason: str) -> None:
        """Close both ends after a protocol error on this one."""
        on_close = self._on_close
        self.close(reason)
        self._on_close = None
        if on_close is not None:
            on_close(reason)
