"""A gossip peer as a sans-I/O machine: events in, commands out, time passed in.

One :class:`GossipCore` per peer decides everything the peer does; it never
awaits, reads a clock or touches the network (h11's rule). Its driver asks
for the next command with :meth:`GossipCore.next_command` (passing the
time), performs it, and hands the outcome back with :meth:`GossipCore.handle`.

A round ``r`` of decentralized SGD (D-PSGD, Lian et al. 2017) at one peer:

1. **look and dial**: learn which neighbours are connected; dial the missing
   ones whose name sorts after ours (one connection per edge: the lower name
   dials, so a restarted peer is redialled by its lower neighbours and
   redials its higher ones);
2. **catch up**: if a neighbour is already in a later round ``R`` (its share
   of ``R`` arrived), jump to ``R`` and start from the mean of the shares of
   ``R`` held (a peer that fell behind, or restarted, rejoins the others);
3. **train** locally from the current weights;
4. **share** the trained weights with every connected neighbour;
5. **collect** their shares of round ``r`` until each expected neighbour has
   answered, gone away, or moved on to a later round, or until ``timeout``
   seconds after sharing (a silent neighbour is skipped); a neighbour that
   connects meanwhile, or reconnects (a restarted one: a new session), is
   sent the share too and waited for;
6. **average** the trained weights with the shares heard (uniform weights,
   own first, then by neighbour name) and **record** the round.

Before its first round a peer **gathers**: it dials and waits (up to
``timeout``, looking again after :data:`RETRY` seconds, then twice as long
each time, waking at once for a join or a share) until every
neighbour is connected, so that round 1 already has the whole graph. A
restarted peer (``rejoining=True``) gathers until a share arrives instead:
it then knows the others' round and catches up before training rather than
after.

Peers are untrusted: a share from a non-neighbour, of a round outside
``1..rounds``, of other shapes, with non-finite values or undecodable is
counted in :attr:`GossipCore.rejected` and ignored. Per neighbour the core
keeps at most two shares (of this round, and its newest of a later one), so
its state is bounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from protocols.gossip._messages import Share
from simkit.training import Weights

__all__ = [
    "RETRY",
    "Arrived",
    "Command",
    "Connect",
    "Connected",
    "Event",
    "GossipCore",
    "Listen",
    "LocalRound",
    "Look",
    "Peers",
    "Record",
    "Send",
    "Sent",
    "Stop",
    "Train",
    "Trained",
    "Wait",
]

RETRY = 0.5
"""Seconds before the first look again while gathering (then doubling)."""

# ----------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Listen:
    """Accept joins from ``admit`` (the neighbours) only. No answer."""

    admit: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Look:
    """Report the connected peers; answered by :class:`Peers`."""


@dataclass(frozen=True, slots=True)
class Connect:
    """Dial ``peer``; answered by :class:`Connected`."""

    peer: str


@dataclass(frozen=True, slots=True)
class Train:
    """Train locally one round from ``weights``; answered by :class:`Trained`."""

    round: int
    weights: Weights


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to ``peers``; answered by :class:`Sent`."""

    peers: tuple[str, ...]
    message: Share


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait up to ``timeout`` s for a share, one of ``watch`` going away, a join (``joins``).

    Answered by :class:`Arrived` (a share came) or :class:`Peers` (anything else).
    """

    watch: tuple[str, ...]
    timeout: float
    joins: bool = False


@dataclass(frozen=True, slots=True)
class Record:
    """A round is over at this peer: report it. No answer."""

    local: LocalRound


@dataclass(frozen=True, slots=True)
class Stop:
    """The last round is done: the actor returns."""


Command: TypeAlias = Listen | Look | Connect | Train | Send | Wait | Record | Stop

# ----------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Peers:
    """The peers connected now, and each one's session number where known (a
    peer that reconnected has a new one; unknown: 0)."""

    connected: frozenset[str]
    sessions: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Connected:
    """The outcome of :class:`Connect` (``session``: the new connection's number)."""

    peer: str
    ok: bool
    session: int = 0


@dataclass(frozen=True, slots=True)
class Trained:
    """The outcome of :class:`Train`: the new weights (the old ones if training failed)."""

    round: int
    weights: Weights
    loss: float | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """The outcome of :class:`Send`: the peers it did not reach (sorted)."""

    failed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Arrived:
    """A message of type ``gossip.Share`` from ``src`` (``None``: it did not decode)."""

    src: str
    share: Share | None


Event: TypeAlias = Peers | Connected | Trained | Sent | Arrived


@dataclass(frozen=True, slots=True)
class LocalRound:
    """One round as one peer lived it.

    Attributes:
        peer: The peer.
        round: The round (1-based).
        t_start: When it started the round (after dialling).
        t_end: When it averaged.
        expected: Neighbours it shared with and waited for.
        heard: Neighbours whose share of the round it averaged (sorted).
        skipped: Expected neighbours it did not hear: gone, silent until the
            deadline, or already in a later round (sorted).
        loss: Its local training loss (``None``: unknown or training failed).
        weights: Its weights after averaging.
        late: Shares of earlier rounds that arrived during the round (discarded).
        caught_up: The round it jumped from to catch up (0: it did not jump).
    """

    peer: str
    round: int
    t_start: float
    t_end: float
    expected: tuple[str, ...]
    heard: tuple[str, ...]
    skipped: tuple[str, ...]
    loss: float | None
    weights: Weights
    late: int = 0
    caught_up: int = 0


# ----------------------------------------------------------------------------- the core


class GossipCore:
    """The decisions of one gossip peer (see the module docstring).

    Args:
        name: The peer's name.
        neighbours: Its neighbours in the graph.
        weights: The weights it starts from.
        rounds: The last round.
        timeout: Seconds to wait for shares after sharing, and at most for
            the neighbours (or, rejoining, a share) before the first round.
        rejoining: A restarted peer: gather until a share arrives.

    Raises:
        ValueError: No rounds, a timeout that is not positive, or itself as a neighbour.
    """

    def __init__(
        self,
        name: str,
        neighbours: Sequence[str],
        weights: Weights,
        *,
        rounds: int,
        timeout: float,
        rejoining: bool = False,
    ) -> None:
        if rounds < 1 or not timeout > 0 or name in neighbours:
            raise ValueError(
                f"{name}: need rounds >= 1, timeout > 0 and no self-loop, got rounds={rounds}, "
                f"timeout={timeout}, neighbours={list(neighbours)}"
            )
        self.name = name
        self.neighbours = tuple(sorted(set(neighbours)))
        self.weights = weights
        self.rounds = rounds
        self.timeout = float(timeout)
        self.round = 1
        self.connected: frozenset[str] = frozenset()
        self._sessions: dict[str, int] = {}
        self._shared: dict[str, int] = {}  # neighbour -> session this round's share went to
        self._sending: tuple[str, ...] = ()
        self.rejected = 0
        self._phase = "listen"
        self._rejoining = rejoining
        self._gathering = True
        self._gather_until: float | None = None
        self._retry = RETRY
        self._heard: dict[str, Weights] = {}  # neighbour -> its share of this round
        self._ahead: dict[str, tuple[int, Weights]] = {}  # its newest share of a later round
        self._dial: list[str] = []
        self._expected: tuple[str, ...] = ()
        self._deadline = 0.0
        self._t_start = 0.0
        self._loss: float | None = None
        self._late = 0
        self._jumped_from = 0

    # -- the driver's two calls ---------------------------------------------------------------

    def next_command(self, now: float) -> Command:
        """What to do next, at time ``now``."""
        phase = self._phase
        if phase == "listen":
            self._phase = "look"
            return Listen(self.neighbours)
        if phase == "look":
            self._phase = "looking"
            return Look()
        if phase == "dial":
            return self._next_dial(now)
        if phase == "train":
            self._phase = "training"
            return Train(self.round, self.weights)
        if phase == "share":
            return self._next_share(now)
        if phase == "collect":
            return self._next_collect(now)
        if phase == "done":
            return Stop()
        raise RuntimeError(f"{self.name}: next_command while waiting for an event ({phase})")

    def handle(self, event: Event, now: float) -> None:
        """The outcome of the last command, at time ``now``.

        Raises:
            RuntimeError: An event the last command cannot have produced.
        """
        match event:
            case Peers(connected, sessions):
                self.connected, self._sessions = connected, dict(sessions)
                if self._phase == "looking":
                    self._dial = [n for n in self.neighbours if n > self.name]
                    self._dial = [n for n in self._dial if n not in connected]
                    self._phase = "dial"
                elif self._phase == "gathering":
                    self._phase = "look"
            case Connected(peer, ok, session) if self._phase == "dial":
                self._dial.remove(peer)
                if ok:
                    self.connected = self.connected | {peer}
                    self._sessions[peer] = session
            case Trained(round, weights, loss) if self._phase == "training":
                self._check_round(round)
                self.weights, self._loss = weights, loss
                self._phase = "share"
            case Sent(failed) if self._phase == "sending":
                reached = [n for n in self._sending if n not in failed]
                self._shared.update((n, self._sessions.get(n, 0)) for n in reached)
                self._expected = tuple(sorted({*self._expected, *reached}))
                self.connected = self.connected - set(failed)
                self._phase = "collect"
            case Arrived(src, share) if self._phase in ("gathering", "collect"):
                self._take(src, share)
                if self._phase == "gathering":
                    self._phase = "look"
            case _:
                raise RuntimeError(f"{self.name}: unexpected {event!r} in phase {self._phase}")

    # -- phases ---------------------------------------------------------------------------------

    def _next_dial(self, now: float) -> Command:
        if self._dial:
            return Connect(self._dial[0])
        if not self._gathering:
            return self._begin_round(now)
        if self._gather_until is None:
            self._gather_until = now + self.timeout  # the first look: gathering starts
        if self._gathered() or now >= self._gather_until:
            self._gathering = False
            return self._begin_round(now)
        self._phase = "gathering"
        wait, self._retry = min(self._retry, self._gather_until - now), 2 * self._retry
        return Wait((), wait, joins=True)

    def _gathered(self) -> bool:
        if self._rejoining:
            return bool(self._heard or self._ahead)
        return all(n in self.connected for n in self.neighbours)

    def _begin_round(self, now: float) -> Command:
        self._jumped_from = 0
        latest = max((r for r, _ in self._ahead.values()), default=0)
        if latest > self.round:  # fell behind: start from the latest round's shares
            self._jumped_from = self.round
            self.weights = _mean([w for _, (r, w) in sorted(self._ahead.items()) if r == latest])
            self._heard.clear()
            self._advance(latest)
        self._t_start, self._late = now, 0
        self._phase = "train"
        return self.next_command(now)

    def _advance(self, round: int) -> None:
        """Make ``round`` current: the shares held for it become heard."""
        self.round = round
        for n in sorted(self._ahead):
            if self._ahead[n][0] <= round:
                r, w = self._ahead.pop(n)
                if r == round:
                    self._heard[n] = w

    def _next_share(self, now: float) -> Command:
        self._expected, self._shared = (), {}
        self._deadline = now + self.timeout
        self._phase = "collect"
        return self.next_command(now)

    def _next_collect(self, now: float) -> Command:
        if now < self._deadline:
            fresh = tuple(n for n in self.neighbours if self._needs_share(n))
            if fresh:  # the round's share, or a (re)connected neighbour's
                self._phase, self._sending = "sending", fresh
                return Send(fresh, Share(self.round, self.weights))
            waiting = self._unresolved()
            if waiting:
                return Wait(waiting, self._deadline - now, joins=True)
        return self._finish(now)

    def _needs_share(self, n: str) -> bool:
        """Connected, and not yet sent this round's share on its current session."""
        return n in self.connected and self._shared.get(n) != self._sessions.get(n, 0)

    def _finish(self, now: float) -> Command:
        heard = dict(sorted(self._heard.items()))
        self.weights = _mean([self.weights, *heard.values()])
        local = LocalRound(
            peer=self.name,
            round=self.round,
            t_start=self._t_start,
            t_end=now,
            expected=self._expected,
            heard=tuple(heard),
            skipped=tuple(n for n in self._expected if n not in heard),
            loss=self._loss,
            weights=self.weights,
            late=self._late,
            caught_up=self._jumped_from,
        )
        self._heard.clear()
        if self.round >= self.rounds:
            self._phase = "done"
        else:
            self._advance(self.round + 1)
            self._phase = "look"
        return Record(local)

    # -- shares ---------------------------------------------------------------------------------

    def _unresolved(self) -> tuple[str, ...]:
        """Expected neighbours still connected that have not sent this round's share or later."""
        return tuple(
            n
            for n in self._expected
            if n in self.connected and n not in self._heard and n not in self._ahead
        )

    def _take(self, src: str, share: Share | None) -> None:
        if share is None or src not in self.neighbours or not self._valid(share):
            self.rejected += 1
            return
        if share.round < self.round or (share.round == self.round and src in self._heard):
            self._late += 1  # stale, or a second share of this round
        elif share.round == self.round:
            self._heard[src] = share.weights
        elif share.round > self._ahead.get(src, (0, share.weights))[0]:
            self._ahead[src] = (share.round, share.weights)  # only its newest is kept
        else:
            self._late += 1

    def _valid(self, share: Share) -> bool:
        if not 1 <= share.round <= self.rounds:
            return False
        weights = share.weights
        return weights.shapes == self.weights.shapes and weights.is_finite()

    def _check_round(self, round: int) -> None:
        if round != self.round:
            raise RuntimeError(f"{self.name}: trained round {round}, expected {self.round}")

    @property
    def holding(self) -> int:
        """Shares held: at most two per neighbour (this round's and its newest later one)."""
        return len(self._heard) + len(self._ahead)


def _mean(weights: Sequence[Weights]) -> Weights:
    total = weights[0]
    for w in weights[1:]:
        total = total + w
    return total / float(len(weights)) if len(weights) > 1 else total
