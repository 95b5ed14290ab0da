"""The FedBuff server actor: :func:`simkit.driver.drive` running a :class:`FedBuffMachine`."""

from __future__ import annotations

from protocols.fedbuff._core import FedBuffCore
from protocols.fedbuff._machine import FedBuffMachine, checkpoint_path
from simkit.actors import Actor, Context
from simkit.driver import drive

__all__ = ["SERVER_NAME", "FedBuffServer", "checkpoint_path"]

SERVER_NAME = "server"


class FedBuffServer(Actor):
    """Keeps clients training, buffers their updates, applies one every K arrivals.

    Every decision is the machine's (:class:`FedBuffMachine`); this actor
    only performs its commands.

    Args:
        core: The server's logic and state (restored from a checkpoint when resuming).
        token: Joins must present this token (empty: none).
    """

    def __init__(self, core: FedBuffCore, *, token: str = "") -> None:
        self.name = SERVER_NAME
        self.core = core
        self.machine = FedBuffMachine(core, token=token)

    async def run(self, ctx: Context) -> None:
        await drive(ctx, self.machine)
