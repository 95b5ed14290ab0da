"""FedBuff's server as a sans-I/O machine, run by :func:`simkit.driver.drive`.

:class:`FedBuffMachine` is the server's event loop without I/O: take the
next reply (checked by :mod:`simkit.validation`) and feed it to
:class:`~protocols.fedbuff.FedBuffCore`; when none is waiting, see who left
or joined, set idle clients to work, and wait for whatever happens next. It
stops after ``rounds`` updates, or when no training reply arrived for
``update_timeout`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocols._tables import checkpoint_header
from protocols.fedbuff._core import FedBuffCore
from protocols.messages import Error, TrainReply, expect_train
from simkit.actors import Context, Received
from simkit.driver import (
    Broadcast,
    Call,
    Flow,
    FlowMachine,
    Listen,
    Log,
    Look,
    Mark,
    Peers,
    Sent,
    Take,
    Taken,
    WaitAny,
    WaitPeers,
)
from simkit.protocol import RoundRecord
from simkit.training import save_state
from simkit.validation import Bad, Late, check_reply

__all__ = ["REPLIES", "FedBuffMachine", "checkpoint_path"]

REPLIES = (TrainReply, Error)
"""The replies a FedBuff server takes."""


def checkpoint_path(directory: Path) -> Path:
    """Where the server keeps its state inside a checkpoint directory."""
    return directory / "fedbuff.npz"


class FedBuffMachine(FlowMachine):
    """The FedBuff server's decisions as a :class:`~simkit.driver.Machine`.

    Args:
        core: The server's logic and state (restored from a checkpoint when resuming).
        token: Joins must present this token (empty: none).
    """

    def __init__(self, core: FedBuffCore, *, token: str = "") -> None:
        super().__init__()
        self.core = core
        self.token = token
        self.known = frozenset(core.setup.client_names)
        self.sessions: dict[str, int] = {}  # connected clients -> session, as last seen

    def flow(self) -> Flow[None]:
        core, setup, options = self.core, self.core.setup, self.core.options
        yield Listen(self.token, self.known)
        if core.done:
            yield Log(f"nothing to do: resumed after update {core.version} of {setup.rounds}")
            return
        peers = yield from self.ask(WaitPeers(len(self.known), options.join_timeout), Peers)
        if peers.timed_out:
            joined = sum(1 for p in peers.connected if p in self.known)
            yield Log(f"{joined} of {len(self.known)} clients joined in time")
        core.start(self.now)
        yield Mark("round", f"update {core.version + 1}")
        last_reply = self.now
        item: Received | None = None
        while not core.done:
            if item is None:
                item = (yield from self.ask(Take(REPLIES), Taken)).item
            if item is not None:
                if (yield from self._handle(item)) and item.type == TrainReply.typename:
                    last_reply = self.now
                item = None
                continue
            yield from self._sync()
            yield from self._dispatch()
            left = last_reply + options.update_timeout - self.now
            if left <= 0:
                core.stopped = (
                    f"no training reply for {options.update_timeout:g} s: stopped after "
                    f"update {core.version} of {setup.rounds} ({len(core.jobs)} clients "
                    f"training, {len(self.sessions)} connected, {core.buffered} buffered)"
                )
                yield Log(core.stopped)
                return
            wait = WaitAny(REPLIES, tuple(sorted(self.sessions)), True, left)
            item = (yield from self.ask(wait, Taken)).item

    def _handle(self, item: Received) -> Flow[bool]:
        """Check ``item`` and feed it to the core; returns whether it was not bad."""
        if item.src not in self.known:
            return False
        core = self.core
        job = core.jobs.get(item.src)
        got = check_reply(item, expect_train(None if job is None else job.round, core.weights, {}))
        if isinstance(got, Late):
            core.on_late()
        elif isinstance(got, Bad):
            yield Log(f"{item.src} failed its request: bad {got.type}: {got.reason}")
            core.on_bad_reply(item.src)
            return False
        elif isinstance(got, Error):
            what = core.on_error(item.src, got)
            yield Log(
                f"{item.src} failed its request of round {got.round} ({got.stage}): "
                f"{got.text}; {what}"
            )
        elif isinstance(got, TrainReply):
            record = core.on_reply(item.src, got, self.now)
            if record is not None:
                yield from self._updated(record)
        return True

    def _updated(self, record: RoundRecord) -> Flow[None]:
        core = self.core
        staleness = core.last_staleness
        yield Log(
            f"update {record.round}: {len(staleness)} updates from {len(record.replied)} "
            f"clients, staleness {min(staleness)}..{max(staleness)} "
            f"(mean {sum(staleness) / len(staleness):.2f})"
        )
        yield Call(self._after_update(record), "after update")
        if not core.done:
            yield Mark("round", f"update {core.version + 1}")

    def _after_update(self, record: RoundRecord) -> Callable[[Context], Any]:
        core, setup = self.core, self.core.setup

        async def effects(ctx: Context) -> None:
            if setup.on_round is not None:
                setup.on_round(record)
            if setup.checkpoint_dir is not None:
                state = {"protocol": "fedbuff", **checkpoint_header(setup)}
                save_state(
                    checkpoint_path(setup.checkpoint_dir), {**state, "core": core.state_dict()}
                )

        return effects

    def _sync(self) -> Flow[None]:
        """Tell the core who went away (or came back under a new session) since last time."""
        peers = yield from self.ask(Look(), Peers)
        now = {c: s for c, s in peers.connected.items() if c in self.known}
        for c in sorted(self.sessions):
            if now.get(c) != self.sessions[c]:
                self.core.on_gone(c)
        self.sessions = now

    def _dispatch(self) -> Flow[None]:
        """Set idle clients to work, encoding each distinct request once."""
        chosen = self.core.choose(self.sessions)
        for request, clients in self.core.requests(chosen, self.sessions):
            sent = yield from self.ask(Broadcast(tuple(clients), request), Sent)
            for c in sent.failed:
                self.core.unreachable(c)
