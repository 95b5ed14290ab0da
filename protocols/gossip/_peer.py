"""The gossip peer actor: a thin driver of :class:`~protocols.gossip.GossipCore`.

It performs each command with the actor's :class:`~simkit.actors.Context`
and the training core, and hands the outcome back. Nothing here decides
anything: which neighbour to wait for, when to give up, what to average and
how to rejoin are the core's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from protocols.gossip._core import (
    Arrived,
    Command,
    Connect,
    Connected,
    Event,
    GossipCore,
    Listen,
    LocalRound,
    Look,
    Peers,
    Record,
    Send,
    Sent,
    Stop,
    Train,
    Trained,
    Wait,
)
from protocols.gossip._messages import Share
from protocols.gossip._options import GossipOptions
from simkit.actors import Actor, Context
from simkit.channels import ConnectError
from simkit.codec import DecodeError
from simkit.protocol import ClientSetup, ScenarioSetup
from simkit.training import TrainFailure, TrainingManager, TrainInstructions, Weights

__all__ = ["GossipPeer"]


class GossipPeer(Actor):
    """One peer: trains on its shard, shares with its neighbours, averages.

    Args:
        setup: The scenario.
        client: This peer's shard and speed.
        neighbours: Its neighbours in the graph.
        options: The protocol's options.
        initial: The weights every peer starts from.
        report: Called with each finished round (the run's collector).
    """

    def __init__(
        self,
        setup: ScenarioSetup,
        client: ClientSetup,
        neighbours: Sequence[str],
        options: GossipOptions,
        initial: Weights,
        report: Callable[[LocalRound], None],
    ) -> None:
        self.name = client.name
        self.setup, self.client = setup, client
        self.neighbours = tuple(neighbours)
        self.options, self.initial, self.report = options, initial, report

    async def run(self, ctx: Context) -> None:
        core = GossipCore(
            self.name,
            self.neighbours,
            self.initial,
            rounds=self.setup.rounds,
            timeout=self.options.share_timeout,
            rejoining=ctx.incarnation > 0,
        )
        # A restarted peer is a fresh process: a new batch stream for each life.
        manager = TrainingManager(
            self.setup.models,
            self.setup.client_optimizer(),
            self.client.train,
            self.client.valid,
            seed_tree=self.setup.seeds.child("gossip", self.name, ctx.incarnation),
            cost=self.setup.cost,
            speed=self.client.speed,
        )
        while not isinstance(command := core.next_command(ctx.now()), Stop):
            event = await self._perform(ctx, manager, command)
            if event is not None:
                core.handle(event, ctx.now())

    async def _perform(
        self, ctx: Context, manager: TrainingManager, command: Command
    ) -> Event | None:
        match command:
            case Listen(admit):
                ctx.listen(admit=admit)
            case Look():
                return _peers(ctx)
            case Connect(peer):
                try:
                    await ctx.connect(peer, timeout=self.options.connect_timeout)
                except (ConnectError, TimeoutError):
                    return Connected(peer, False)
                return Connected(peer, True, ctx.session(peer))
            case Train(r, weights):
                return await self._train(ctx, manager, r, weights)
            case Send(peers, message):
                return Sent(tuple(await ctx.broadcast(peers, message)))
            case Wait(watch, timeout, joins):
                got = await ctx.wait_any(Share, watch=watch, joins=joins, timeout=timeout)
                if got is None:
                    return _peers(ctx)
                try:
                    share = got.decode()
                except (DecodeError, ValueError, TypeError):
                    return Arrived(got.src, None)
                return Arrived(got.src, share if isinstance(share, Share) else None)
            case Record(local):
                self.report(local)
        return None

    async def _train(
        self, ctx: Context, manager: TrainingManager, r: int, weights: Weights
    ) -> Trained:
        t = self.setup.training
        ctx.mark("training", f"trains (round {r})")  # the timeline: training starts
        result = manager.training_round(
            TrainInstructions(
                round=r,
                weights=weights,
                batch_size=t.batch_size,
                n_epoch=t.n_epoch,
                n_steps=t.n_steps,
                timeout=t.timeout,
            )
        )
        if isinstance(result, TrainFailure):
            ctx.log(f"round {r}: training failed: {result.error_text}")
            return Trained(r, weights, None)
        await ctx.compute(result.effort.t_spent)
        update = result.updates
        new = weights + update.updates / update.weight if update.weight > 0 else weights
        return Trained(r, new, float(result.metrics["loss"].result()))


def _peers(ctx: Context) -> Peers:
    names = ctx.peers()
    return Peers(frozenset(names), {n: ctx.session(n) for n in names})
