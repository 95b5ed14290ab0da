"""A tiny protocol for notebook 03: a server polls its clients for a number each round.

The same protocol as docs/testing.md's tutorial, as a module the notebook
imports (so that scenario files and replay files can name it ``poll:PLUGIN``
and ``python -m simkit run`` finds it from this directory).

Each round the server asks its clients for a number, waits for the answers
up to a deadline and keeps the mean of that round's answers. A client takes
``1 / speed`` virtual seconds to answer. ``FORGETFUL`` is the same protocol
with a planted bug: its server never drops a client that left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simkit.actors import Actor, Context, PeerGone
from simkit.messages import Message
from simkit.protocol import RoundRecord
from simkit.testing import InvariantViolation
from simkit.training import Weights


@dataclass(frozen=True, slots=True)
class Ask(Message):
    typename: ClassVar[str] = "poll.Ask"
    round: int


@dataclass(frozen=True, slots=True)
class Answer(Message):
    typename: ClassVar[str] = "poll.Answer"
    round: int
    value: float


class PollOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    round_timeout: float = Field(default=3.0, gt=0, le=10)


def value_of(client: str, r: int) -> float:
    """What a client answers: c003 answers 23.0 in round 2."""
    return float(int(client[1:]) + 10 * r)


class PollServer(Actor):
    name = "server"

    def __init__(self, setup: Any, options: PollOptions) -> None:
        self.setup, self.options = setup, options
        self.records: list[RoundRecord] = []
        self.means: list[float] = []

    def roster(self, ctx: Context, members: list[str]) -> list[str]:
        """Who to ask this round: those still connected."""
        return [m for m in members if ctx.is_connected(m)]

    async def run(self, ctx: Context) -> None:
        ctx.listen()
        members = await ctx.wait_for_peers(len(self.setup.clients), timeout=10.0)
        for r in range(1, self.setup.rounds + 1):
            members = self.roster(ctx, members)
            t_start = ctx.now()
            ctx.mark("round", str(r))
            await ctx.broadcast(members, Ask(r))
            replies, failed = await ctx.wait_for_replies(
                members, Answer, timeout=self.options.round_timeout
            )
            answers = {name: item.decode() for name, item in sorted(replies.items())}
            used = {n: a.value for n, a in answers.items() if a.round == r}
            self.means.append(float(np.mean(list(used.values()))) if used else 0.0)
            self.records.append(
                RoundRecord(
                    r, tuple(members), tuple(used), tuple(failed), t_start=t_start, t_end=ctx.now()
                )
            )


class ForgetfulServer(PollServer):
    def roster(self, ctx: Context, members: list[str]) -> list[str]:
        return members  # the planted bug: never drops anyone


class PollClient(Actor):
    def __init__(self, client: Any) -> None:
        self.name, self.speed = client.name, client.speed

    async def run(self, ctx: Context) -> None:
        await ctx.connect("server", timeout=10.0)
        while True:
            try:
                ask = (await ctx.recv(Ask, src="server")).decode()
                await ctx.compute(1.0 / self.speed)  # a straggler takes longer
                await ctx.send("server", Answer(ask.round, value_of(self.name, ask.round)))
            except PeerGone:
                return


class PollRun:
    def __init__(self, server: PollServer) -> None:
        self.server = server

    def rounds(self) -> list[RoundRecord]:
        return list(self.server.records)

    def weights(self) -> Weights:
        return Weights({"means": np.asarray(self.server.means, np.float64)})


class PollPlugin:
    options_model = PollOptions

    def __init__(self, name: str, server: type[PollServer] = PollServer) -> None:
        self.name, self.server = name, server

    def validate(self, table: Any, source: str) -> None:
        try:
            PollOptions.model_validate(dict(table))
        except ValueError as exc:
            raise ValueError(f"{source}: protocol: {exc}") from None

    def build(self, setup: Any, sim: Any, only: Any = None) -> PollRun:
        server = self.server(setup, PollOptions.model_validate(dict(setup.protocol)))
        sim.add(server)
        for c in setup.clients:  # factories: a restarted client is a fresh actor
            sim.add(lambda c=c: PollClient(c), name=c.name, daemon=True)
        return PollRun(server)


PLUGIN = PollPlugin("poll:PLUGIN")
FORGETFUL = PollPlugin("poll:FORGETFUL", server=ForgetfulServer)


def check_poll(result: Any) -> None:
    """The property: each round keeps the mean of its own answers, and asks no one gone.

    Raises:
        InvariantViolation: With the round and what went wrong.
    """
    gone: set[str] = set()
    gone_at_start: dict[int, set[str]] = {}
    for e in result.trace.events:
        if e.src == "server" and e.kind == "peer_down":
            gone.add(e.dst)
        elif e.src == "server" and e.kind == "peer_up":
            gone.discard(e.dst)
        elif e.src == "server" and e.kind == "mark" and e.type == "round":
            gone_at_start[int(e.info)] = set(gone)
    for record, mean in zip(result.rounds, result.weights.to_dict()["means"], strict=True):
        asked_gone = sorted(set(record.sampled) & gone_at_start[record.round])
        if asked_gone:
            raise InvariantViolation(f"round {record.round} asked {asked_gone}, already gone")
        expected = [value_of(c, record.round) for c in record.replied]
        if expected and not np.isclose(mean, np.mean(expected)):
            raise InvariantViolation(
                f"round {record.round} kept {mean:g}, but its answers average {np.mean(expected):g}"
            )
