"""Sans-I/O protocol machines and the one driver loop that runs any of them.

A protocol's decisions live in a *machine*: a plain object that never
awaits, never reads a clock and does no I/O (h11's rule). The driver asks it
for the next :class:`Command` (passing the time in), performs it with the
actor's :class:`~simkit.actors.Context`, and hands the outcome back as an
:class:`Event`::

    while True:
        command = machine.next_command(ctx.now())
        if isinstance(command, Stop):
            return
        event = await perform(ctx, command)
        if event is not None:
            machine.handle(event, ctx.now())

Commands are effects (:class:`Listen`, :class:`Log`, :class:`Mark`,
:class:`Broadcast`, :class:`Drain`, :class:`Call`) and waits
(:class:`WaitPeers`, :class:`WaitReplies`, :class:`WaitAny`, :class:`Take`,
:class:`Look`); each wait answers with one event (:class:`Peers`,
:class:`Collected`, :class:`Taken`), :class:`Broadcast` with :class:`Sent`,
:class:`Drain` with :class:`Drained`. Tests drive a machine synchronously by
feeding it events; the driver is tested once per transport through the
protocols that use it (FedAvg, FedBuff).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeAlias, TypeVar

from simkit.wire import Message

if TYPE_CHECKING:
    from simkit.actors import Context, Received

__all__ = [
    "Broadcast",
    "Call",
    "Collected",
    "Command",
    "Drain",
    "Drained",
    "Event",
    "Flow",
    "FlowMachine",
    "Listen",
    "Log",
    "Look",
    "Machine",
    "Mark",
    "Peers",
    "Sent",
    "Stop",
    "Take",
    "Taken",
    "WaitAny",
    "WaitPeers",
    "WaitReplies",
    "drive",
    "perform",
]

Types = tuple[type[Message], ...]

# ----------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Peers:
    """The connected peers (name -> session) the machine may count on, after a wait or a look.

    Attributes:
        connected: Every connected peer and its session number.
        timed_out: The wait ended at its timeout, short of its count.
    """

    connected: Mapping[str, int]
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class Sent:
    """A :class:`Broadcast` was made; ``failed`` are the peers it did not reach (sorted)."""

    message: Message
    failed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Drained:
    """:class:`Drain` discarded ``count`` messages."""

    count: int


@dataclass(frozen=True, slots=True)
class Collected:
    """The outcome of :class:`WaitReplies`: one message per peer that answered, in
    arrival order, and the peers that went away (sorted)."""

    replies: Sequence[Received]
    gone: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Taken:
    """The outcome of :class:`Take` or :class:`WaitAny`: a message, or ``None`` (see them)."""

    item: Received | None


Event: TypeAlias = Peers | Sent | Drained | Collected | Taken | object
"""What the driver hands back (a :class:`Call` may return any event of its machine's)."""

# ----------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Listen:
    """Accept joins (with ``token``; only the names in ``admit`` when given)."""

    token: str = ""
    admit: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Log:
    """Record a free-text line in the trace."""

    text: str


@dataclass(frozen=True, slots=True)
class Mark:
    """Record a protocol milestone (a round start) in the trace."""

    label: str
    info: str = ""


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``message`` to ``peers`` (encoded once); answered by :class:`Sent`."""

    peers: tuple[str, ...]
    message: Message


@dataclass(frozen=True, slots=True)
class Drain:
    """Discard the waiting messages of ``types`` without decoding; answered by :class:`Drained`."""

    types: Types


@dataclass(frozen=True, slots=True)
class Look:
    """Report the connected peers now; answered by :class:`Peers`."""


@dataclass(frozen=True, slots=True)
class WaitPeers:
    """Wait for ``count`` connected peers or ``timeout``; answered by :class:`Peers`."""

    count: int
    timeout: float | None


@dataclass(frozen=True, slots=True)
class WaitReplies:
    """Collect one message of ``types`` from each of ``peers`` until ``timeout``.

    Answered by :class:`Collected` as soon as every peer answered or went away.
    """

    peers: tuple[str, ...]
    types: Types
    timeout: float


@dataclass(frozen=True, slots=True)
class Take:
    """Take the oldest waiting message of ``types`` now; answered by :class:`Taken`."""

    types: Types


@dataclass(frozen=True, slots=True)
class WaitAny:
    """Wait for a message of ``types``, a ``watch``ed peer leaving, a join (``joins``)
    or ``timeout``; answered by :class:`Taken` (``None`` but for a message)."""

    types: Types
    watch: tuple[str, ...] = ()
    joins: bool = False
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """Run a sub-protocol or an outside effect; its result (an event, or ``None``) goes back.

    The escape hatch for what has its own driver (a secure sum) or touches
    the outside world (a checkpoint file, a progress callback).
    """

    run: Callable[[Context], Awaitable[object]] = field(repr=False)
    what: str = ""


@dataclass(frozen=True, slots=True)
class Stop:
    """The machine is done: the actor returns."""


Command: TypeAlias = (
    Listen
    | Log
    | Mark
    | Broadcast
    | Drain
    | Look
    | WaitPeers
    | WaitReplies
    | Take
    | WaitAny
    | Call
    | Stop
)


class Machine(Protocol):
    """A sans-I/O protocol machine."""

    def next_command(self, now: float) -> Command:
        """The next thing to do, at time ``now``."""
        ...

    def handle(self, event: object, now: float) -> None:
        """The outcome of the last command, at time ``now``."""
        ...


E = TypeVar("E")
Flow = Generator[Command, object, E]
"""A protocol's flow: yields commands, receives their events, returns an ``E``."""


class FlowMachine:
    """A :class:`Machine` written as a generator, top to bottom like the protocol.

    Subclasses implement :meth:`flow`: ``yield`` a command, receive its event
    (``event = yield Look()``, or typed with :meth:`ask`), ``return`` to
    stop. :attr:`now` is the time of the last command or event.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._event: object = None
        self._flow: Flow[None] | None = None

    def flow(self) -> Flow[None]:
        """The protocol, as a generator of commands."""
        raise NotImplementedError

    def next_command(self, now: float) -> Command:
        """The next command, at time ``now`` (:class:`Stop` when the flow returned)."""
        self.now = now
        if self._flow is None:
            self._flow = self.flow()
        event, self._event = self._event, None
        try:
            return self._flow.send(event)
        except StopIteration:
            return Stop()

    def handle(self, event: object, now: float) -> None:
        """The outcome of the last command, at time ``now``."""
        self.now = now
        self._event = event

    def ask(self, command: Command, kind: type[E]) -> Flow[E]:
        """Yield ``command`` and return its event, checked to be a ``kind``."""
        event = yield command
        if not isinstance(event, kind):
            raise TypeError(f"{command!r} must be answered by {kind.__name__}, got {event!r}")
        return event


# ----------------------------------------------------------------------------- driving


async def drive(ctx: Context, machine: Machine) -> None:
    """Run ``machine`` with ``ctx`` until it says :class:`Stop`."""
    while True:
        command = machine.next_command(ctx.now())
        if isinstance(command, Stop):
            return
        event = await perform(ctx, command)
        if event is not None:
            machine.handle(event, ctx.now())


def _peers(ctx: Context, timed_out: bool = False) -> Peers:
    return Peers({p: ctx.session(p) for p in ctx.peers()}, timed_out)


async def perform(ctx: Context, command: Command) -> object:
    """Do one command; return its event (``None`` for plain effects)."""
    match command:
        case Log(text):
            ctx.log(text)
        case Mark(label, info):
            ctx.mark(label, info)
        case Broadcast(peers, message):
            return Sent(message, tuple(await ctx.broadcast(peers, message)))
        case Drain(types):
            count = 0
            while ctx.take(types) is not None:
                count += 1
            return Drained(count)
        case Look():
            return _peers(ctx)
        case WaitPeers(count, timeout):
            try:
                await ctx.wait_for_peers(count, timeout=timeout)
            except TimeoutError:
                return _peers(ctx, timed_out=True)
            return _peers(ctx)
        case WaitReplies(peers, types, timeout):
            replies, gone = await ctx.wait_for_replies(peers, types, timeout=timeout)
            return Collected(list(replies.values()), tuple(gone))
        case Take(types):
            return Taken(ctx.take(types))
        case WaitAny(types, watch, joins, timeout):
            return Taken(await ctx.wait_any(types, watch=watch, joins=joins, timeout=timeout))
        case Call(run):
            return await run(ctx)
        case Listen(token, admit):
            ctx.listen(token=token, admit=admit)
        case _:
            raise TypeError(f"not a driver command: {command!r}")
    return None
