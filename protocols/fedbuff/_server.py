"""The FedBuff server actor: a thin event loop around :class:`FedBuffCore`."""

from __future__ import annotations

from pathlib import Path

from protocols._tables import checkpoint_header
from protocols.fedbuff._core import FedBuffCore
from protocols.messages import Error, TrainReply, expect_train
from simkit.actors import Actor, Context, Received
from simkit.protocol import RoundRecord
from simkit.training import save_state
from simkit.validation import Bad, Late, check_reply

__all__ = ["SERVER_NAME", "FedBuffServer", "checkpoint_path"]

SERVER_NAME = "server"
_REPLIES = (TrainReply, Error)


def checkpoint_path(directory: Path) -> Path:
    """Where the server keeps its state inside a checkpoint directory."""
    return directory / "fedbuff.npz"


class FedBuffServer(Actor):
    """Keeps clients training, buffers their updates, applies one every K arrivals.

    One loop: take the next reply (a training reply or an ``Error``) and feed
    it to the core; when none is waiting, see who left or joined, set idle
    clients to work, and wait for whatever happens next. It stops after
    ``rounds`` updates, or when no training reply arrived for
    ``update_timeout`` seconds.

    Args:
        core: The server's logic and state (restored from a checkpoint when resuming).
        token: Joins must present this token (empty: none).
    """

    def __init__(self, core: FedBuffCore, *, token: str = "") -> None:
        self.name = SERVER_NAME
        self.core = core
        self.token = token
        self._known = frozenset(core.setup.client_names)
        self._sessions: dict[str, int] = {}  # connected clients -> session, as last seen

    async def run(self, ctx: Context) -> None:
        core, setup, options = self.core, self.core.setup, self.core.options
        ctx.listen(token=self.token, admit=self._known)
        if core.done:
            ctx.log(f"nothing to do: resumed after update {core.version} of {setup.rounds}")
            return
        try:
            await ctx.wait_for_peers(len(self._known), timeout=options.join_timeout)
        except TimeoutError:
            ctx.log(f"{len(self._clients(ctx))} of {len(self._known)} clients joined in time")
        core.start(ctx.now())
        ctx.mark("round", f"update {core.version + 1}")
        last_reply = ctx.now()
        item: Received | None = None
        while not core.done:
            if item is None:
                item = ctx.take(_REPLIES)
            if item is not None:
                if self._handle(ctx, item) and item.type == TrainReply.typename:
                    last_reply = ctx.now()
                item = None
                continue
            self._sync(ctx)
            await self._dispatch(ctx)
            left = last_reply + options.update_timeout - ctx.now()
            if left <= 0:
                core.stopped = (
                    f"no training reply for {options.update_timeout:g} s: stopped after "
                    f"update {core.version} of {setup.rounds} ({len(core.jobs)} clients "
                    f"training, {len(self._sessions)} connected, {core.buffered} buffered)"
                )
                ctx.log(core.stopped)
                break
            item = await ctx.wait_any(
                _REPLIES, watch=sorted(self._sessions), joins=True, timeout=left
            )

    def _clients(self, ctx: Context) -> list[str]:
        return [p for p in ctx.peers() if p in self._known]

    def _handle(self, ctx: Context, item: Received) -> bool:
        """Check ``item`` and feed it to the core; returns whether it was not bad."""
        if item.src not in self._known:
            return False
        core = self.core
        job = core.jobs.get(item.src)
        got = check_reply(item, expect_train(None if job is None else job.round, core.weights, {}))
        if isinstance(got, Late):
            core.on_late()
        elif isinstance(got, Bad):
            ctx.log(f"{item.src} failed its request: bad {got.type}: {got.reason}")
            core.on_bad_reply(item.src)
            return False
        elif isinstance(got, Error):
            what = core.on_error(item.src, got)
            ctx.log(
                f"{item.src} failed its request of round {got.round} ({got.stage}): "
                f"{got.text}; {what}"
            )
        elif isinstance(got, TrainReply):
            record = core.on_reply(item.src, got, ctx.now())
            if record is not None:
                self._updated(ctx, record)
        return True

    def _updated(self, ctx: Context, record: RoundRecord) -> None:
        core, setup = self.core, self.core.setup
        staleness = core.last_staleness
        ctx.log(
            f"update {record.round}: {len(staleness)} updates from {len(record.replied)} "
            f"clients, staleness {min(staleness)}..{max(staleness)} "
            f"(mean {sum(staleness) / len(staleness):.2f})"
        )
        if setup.on_round is not None:
            setup.on_round(record)
        if setup.checkpoint_dir is not None:
            self._checkpoint(setup.checkpoint_dir)
        if not core.done:
            ctx.mark("round", f"update {core.version + 1}")

    def _sync(self, ctx: Context) -> None:
        """Tell the core who went away (or came back under a new session) since last time."""
        now = {c: ctx.session(c) for c in self._clients(ctx)}
        for c in sorted(self._sessions):
            if now.get(c) != self._sessions[c]:
                self.core.on_gone(c)
        self._sessions = now

    async def _dispatch(self, ctx: Context) -> None:
        """Set idle clients to work, encoding each distinct request once."""
        chosen = self.core.choose(self._sessions)
        for request, clients in self.core.requests(chosen, self._sessions):
            for c in await ctx.broadcast(clients, request):
                self.core.unreachable(c)

    def _checkpoint(self, directory: Path) -> None:
        setup = self.core.setup
        save_state(
            checkpoint_path(directory),
            {
                "protocol": "fedbuff",
                **checkpoint_header(setup),
                "core": self.core.state_dict(),
            },
        )
