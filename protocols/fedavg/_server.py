"""The FedAvg server actor: :func:`simkit.driver.drive` running a :class:`FedAvgMachine`."""

from __future__ import annotations

from typing import Any

from protocols.fedavg._core import FedAvgCore
from protocols.fedavg._machine import FedAvgMachine, checkpoint_path
from protocols.secagg import SecAggSettings, SecureSumOutcome, ServerFactory
from simkit.actors import Actor, Context
from simkit.driver import drive
from simkit.secagg import SecAggServer

__all__ = ["SERVER_NAME", "FedAvgServer", "checkpoint_path"]

SERVER_NAME = "server"


class FedAvgServer(Actor):
    """Runs the rounds: sample, send, collect with a deadline, aggregate, evaluate.

    Every decision is the machine's (:class:`FedAvgMachine`); this actor only
    performs its commands.

    Args:
        core: The round logic and state (restored from a checkpoint when resuming).
        token: Joins must present this token (empty: none).
        secagg: Secure aggregation settings (``None``: updates travel in clear).
        secagg_factory: Builds the SecAgg server core (a subclass changes its
            behaviour: the testing tutorial's buggy server).
    """

    def __init__(
        self,
        core: FedAvgCore,
        *,
        token: str = "",
        secagg: SecAggSettings | None = None,
        secagg_factory: ServerFactory = SecAggServer,
    ) -> None:
        self.name = SERVER_NAME
        self.core = core
        self.machine = FedAvgMachine(
            core, token=token, secagg=secagg, secagg_factory=secagg_factory
        )

    @property
    def secagg_outcomes(self) -> list[SecureSumOutcome]:
        """Every secure sum's outcome, in order."""
        return self.machine.secagg_outcomes

    @property
    def seen_masked(self) -> dict[str, Any] | None:
        """The first secure round's teaching view (see :class:`FedAvgMachine`)."""
        return self.machine.seen_masked

    async def run(self, ctx: Context) -> None:
        await drive(ctx, self.machine)
