"""The server's SecAgg driver: one round of :class:`~simkit.secagg.SecAggServer` over actors.

:func:`secure_sum` is the short loop STYLE.md asks for: send what the core
returns, wait for the stage's replies (with a deadline), feed them to the
core, repeat until the core holds a result. The core makes every protocol
decision; the driver only decides whom it heard from in time.

Stage by stage the driver records a trace mark (``ctx.mark("secagg",
stage)``), so timelines and reports can show the stages; replies of other
rounds are discarded and counted, never fed to the core.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from protocols.secagg._attack import SplitViewServer, parse_attack, split_view
from protocols.secagg._keys import warn_if_seeded
from protocols.secagg._messages import SecAggQuantization
from protocols.secagg._settings import SecAggSettings
from simkit.actors import Context, Received
from simkit.messages import Message
from simkit.rng import SeedTree
from simkit.secagg import (
    PASSIVE_STAGES,
    Quantizer,
    SecAggAbort,
    SecAggAdvertiseKeys,
    SecAggConfig,
    SecAggConsistencySignature,
    SecAggMaskedInput,
    SecAggRemoteError,
    SecAggServer,
    SecAggShareKeys,
    SecAggSignedKeys,
    SecAggStage,
    SecAggUnmaskShares,
)
from simkit.validation import Bad, Expect, Late, check_reply

__all__ = ["STAGES", "SecureSumOutcome", "ServerFactory", "release", "secure_sum"]

ServerFactory = Callable[[SecAggConfig, Sequence[str], SeedTree], SecAggServer]
"""Builds the core: :class:`~simkit.secagg.SecAggServer` or a subclass of it."""

STAGES: Final = PASSIVE_STAGES
"""The four stages, in order; stage ``i`` (1-based) builds the set ``U_i``.

Active mode adds ``consistency-check`` before ``unmasking`` (:data:`~simkit.secagg.ACTIVE_STAGES`).
"""

_REPLY_TYPES: Final = (
    SecAggAdvertiseKeys,
    SecAggSignedKeys,
    SecAggShareKeys,
    SecAggMaskedInput,
    SecAggConsistencySignature,
    SecAggUnmaskShares,
)


@dataclass(frozen=True, slots=True, eq=False)
class SecureSumOutcome:
    """How one :func:`secure_sum` ended.

    Attributes:
        round: The round (the core's ``round_id``).
        total: The sum of the survivors' inputs, dequantized (float64), within
            :meth:`error_bound` of the sum of their clipped inputs; ``None``
            when the round aborted.
        total_int: The same sum in the integer domain: the survivors'
            quantized inputs summed modulo ``2**bits`` (uint64), exactly.
        survivors: ``U3``, the clients whose inputs are in the sum (sorted).
        stages: Stage name -> the clients that completed it (``U1`` ... ``U4``,
            sorted), for the stages the round reached.
        dropped: Client -> the stage in which it dropped out (sorted by
            client). A client of ``U3`` that drops in ``"unmasking"`` is still
            in the sum.
        reason: Why the round aborted; ``None`` when it completed.
        aborted_in: ``"setup"`` or the stage in which it aborted.
        quantizer: How floats became integers (``None`` if setup failed).
        config: The core's parameters (``None`` if setup failed).
        stale: Replies of other rounds discarded.
        late: Replies of this round that came after their stage had closed.
    """

    round: int
    total: npt.NDArray[np.float64] | None
    total_int: npt.NDArray[np.uint64] | None
    survivors: tuple[str, ...] = ()
    stages: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dropped: Mapping[str, str] = field(default_factory=dict)
    reason: str | None = None
    aborted_in: str | None = None
    quantizer: Quantizer | None = None
    config: SecAggConfig | None = None
    stale: int = 0
    late: int = 0

    @property
    def aborted(self) -> bool:
        """Whether the round ended without a sum."""
        return self.total is None

    def error_bound(self) -> float:
        """Per-coordinate bound on ``|total - sum of the survivors' clipped inputs|``.

        Raises:
            ValueError: The round aborted.
        """
        if self.total is None or self.quantizer is None:
            raise ValueError(f"round {self.round} aborted: no sum to bound")
        return self.quantizer.error_bound(len(self.survivors))


async def secure_sum(
    ctx: Context,
    clients: Collection[str],
    vector_length: int,
    settings: SecAggSettings,
    seeds: SeedTree,
    round: int,
    *,
    server_factory: ServerFactory = SecAggServer,
    observe: Callable[[str, Message], None] | None = None,
) -> SecureSumOutcome:
    """Run one SecAgg (or SecAgg+) round among ``clients`` and return the sum.

    Each client must be running :func:`~protocols.secagg.secure_contribute`
    for the same ``round``. The server sends each client the round's
    :class:`~protocols.secagg.SecAggQuantization` and ``SecAggSetup``, then,
    stage by stage, waits up to ``settings.stage_timeout`` seconds for the
    replies, feeds those of this round to the core and sends what it returns.
    A client that cannot be reached, is gone, or does not answer in time
    drops out of that stage; the core aborts the round when fewer than the
    threshold remain. Clients still connected but no longer in the round (or
    all of them, on abort) get ``SecAggAbort``, so none waits in vain. Run one
    ``secure_sum`` at a time per actor: at the end it discards the SecAgg
    replies left in the mailbox.

    Args:
        ctx: The server's context; ``clients`` are connected peers.
        clients: The cohort (``U0``), in any order.
        vector_length: Coordinates of every input.
        settings: Mode, threshold, quantization and the stage timeout.
        seeds: The server's seed-tree node; the SecAgg+ graph comes from
            ``("secagg", round)`` below it.
        round: The round number (bound into every key, seed and ciphertext).
        server_factory: Builds the core from ``(config, clients, seeds)``;
            pass a :class:`~simkit.secagg.SecAggServer` subclass to change its
            behaviour (a buggy server in a test kit tutorial, say).
        observe: Called with ``(client, reply)`` for every reply of this
            round the core is fed: what the server sees (teaching views,
            tests of what leaks).

    Returns:
        The outcome: the sum, or why the round aborted, and who dropped when.

    Raises:
        ValueError: ``vector_length < 1`` or ``round < 0``.
    """
    if isinstance(vector_length, bool) or not isinstance(vector_length, int) or vector_length < 1:
        raise ValueError(f"vector_length must be an int >= 1, got {vector_length!r}")
    if isinstance(round, bool) or not isinstance(round, int) or round < 0:
        raise ValueError(f"round must be an int >= 0, got {round!r}")
    driver = _Driver(ctx, sorted(set(clients)), settings, round, observe)
    return await driver.run(vector_length, seeds, server_factory)


async def release(ctx: Context, clients: Collection[str], round: int, reason: str) -> list[str]:
    """Tell ``clients`` that ``round``'s secure sum will not include them.

    A client waiting in :func:`~protocols.secagg.secure_contribute` returns
    ``False`` at once (instead of waiting for a setup that never comes): a
    FedAvg server calls this for the clients it asked to train but leaves out
    of :func:`secure_sum` (their replies were late, say).

    Returns:
        The clients that could not be reached (sorted).
    """
    return await ctx.broadcast(sorted(set(clients)), SecAggAbort(round, reason))


class _Driver:
    """The bookkeeping of one :func:`secure_sum`."""

    def __init__(
        self,
        ctx: Context,
        names: list[str],
        settings: SecAggSettings,
        round: int,
        observe: Callable[[str, Message], None] | None = None,
    ) -> None:
        self.observe = observe
        self.ctx = ctx
        self.names = names
        self.settings = settings
        self.round = round
        self.stale = 0
        self.late = 0

    async def run(self, length: int, seeds: SeedTree, factory: ServerFactory) -> SecureSumOutcome:
        ctx, n = self.ctx, len(self.names)
        warn_if_seeded(self.settings, ctx.virtual)
        if self.settings.attack is not None:  # teaching: a lying server
            factory = split_view(parse_attack(self.settings.attack))
        try:
            config = self.settings.config(n, length, self.round)
            quantizer = self.settings.quantizer(n)
            core = factory(config, self.names, seeds)
        except ValueError as exc:
            reason = f"cannot set up round {self.round} among {n} clients: {exc}"
            return await self._setup_failed(reason)
        ctx.mark("secagg", SecAggStage.ADVERTISE_KEYS.value)
        sends = core.start()
        plan = SecAggQuantization(self.round, quantizer.clip, quantizer.bits, n, length)
        gone = set(await ctx.broadcast(self.names, plan))
        gone |= await self._send({c: m for c, m in sends.items() if c not in gone})
        while core.result is None:
            kind = core.expected_reply()
            assert kind is not None  # the core is in one of its stages
            replies = await self._collect([c for c in sorted(sends) if c not in gone], kind)
            connected = [c for c in self.names if ctx.is_connected(c)]
            alive = sorted(set(replies) | set(connected))
            known = len(core.rejected)
            try:
                sends = core.step(replies, alive)
            except SecAggRemoteError as exc:  # the core recorded an aborted result
                ctx.log(f"secagg round {self.round}: {exc}")
                sends = {}
            for name, reason in list(core.rejected.items())[known:]:  # that client fails alone
                ctx.log(f"secagg round {self.round}: {name} failed: {reason}")
            if core.result is None:
                ctx.mark("secagg", core.stage.value)
            gone = await self._send(sends)
        if isinstance(core, SplitViewServer):
            stolen = ", ".join(core.stolen) or "no input"
            ctx.log(f"secagg round {self.round}: attack on {core.target}: recovered {stolen}")
        return await self._finish(core, quantizer, notified=set(sends))

    async def _setup_failed(self, reason: str) -> SecureSumOutcome:
        self.ctx.mark("secagg", "aborted")
        self.ctx.log(f"secagg round {self.round} aborted: {reason}")
        await release(self.ctx, self.names, self.round, reason)
        return SecureSumOutcome(self.round, None, None, reason=reason, aborted_in="setup")

    async def _send(self, sends: Mapping[str, Message]) -> set[str]:
        """Send each client its message, encoding equal ones once; the unreachable."""
        failed: set[str] = set()
        items = sorted(sends.items())
        i = 0
        while i < len(items):
            msg, j = items[i][1], i + 1
            while j < len(items) and _equal(items[j][1], msg):
                j += 1
            failed.update(await self.ctx.broadcast([name for name, _ in items[i:j]], msg))
            i = j
        return failed

    async def _collect(self, peers: list[str], kind: type[Message]) -> dict[str, Message]:
        """This round's ``kind`` reply of each of ``peers`` that answers before the deadline."""
        ctx = self.ctx
        deadline = ctx.now() + self.settings.stage_timeout
        replies: dict[str, Message] = {}
        waiting = peers
        while waiting:
            left = max(0.0, deadline - ctx.now())
            got, _failed = await ctx.wait_for_replies(waiting, kind, timeout=left)
            waiting = []
            for name, item in got.items():
                msg = self._decode(item)
                if msg is None:
                    continue
                if getattr(msg, "round_id", None) == self.round:
                    replies[name] = msg
                    if self.observe is not None:
                        self.observe(name, msg)
                else:  # an old round's straggler: wait on for this round's reply
                    self.stale += 1
                    waiting.append(name)
        return replies

    def _decode(self, item: Received) -> Message | None:
        """The decoded reply, through the shared boundary check (simkit.validation).

        A reply that does not decode, or is no SecAgg reply at all, fails its
        sender (logged; it counts as not having answered); the core then
        checks it against the round's state.
        """
        got = check_reply(item, Expect(_REPLY_TYPES, round=self.round))
        if isinstance(got, Bad):
            self.ctx.log(f"secagg round {self.round}: {got}")
            return None
        if isinstance(got, Late):  # not reached: a round is always outstanding here
            return None
        return got

    def _drain(self) -> None:
        """Discard the SecAgg replies left in the mailbox (late or stale)."""
        while (item := self.ctx.take(_REPLY_TYPES)) is not None:
            msg = self._decode(item)
            if msg is not None and getattr(msg, "round_id", None) == self.round:
                self.late += 1
            else:
                self.stale += 1

    async def _finish(
        self, core: SecAggServer, quantizer: Quantizer, notified: set[str]
    ) -> SecureSumOutcome:
        ctx, result = self.ctx, core.result
        assert result is not None
        sets = [tuple(s) for s in result.stages]
        stages = {s.value: members for s, members in zip(core.stages, sets, strict=False)}
        dropped = _dropped(self.names, core.stages, sets)
        if result.ok:
            reason = f"left out of round {self.round}"
            final = set(sets[-1]) if sets else set()
        else:
            reason = result.reason or "aborted"
            final = set()
        rest = [c for c in self.names if c not in final and c not in notified]
        await release(ctx, [c for c in rest if ctx.is_connected(c)], self.round, reason)
        self._drain()
        if result.total is None:
            assert result.aborted_in is not None
            ctx.mark("secagg", "aborted")
            ctx.log(f"secagg round {self.round} aborted in {result.aborted_in.value}: {reason}")
            return SecureSumOutcome(
                self.round,
                None,
                None,
                stages=stages,
                dropped=dropped,
                reason=result.reason,
                aborted_in=result.aborted_in.value,
                quantizer=quantizer,
                config=core.config,
                stale=self.stale,
                late=self.late,
            )
        ctx.mark("secagg", "done")
        return SecureSumOutcome(
            self.round,
            quantizer.dequantize(result.total),
            result.total,
            result.survivors,
            stages,
            dropped,
            quantizer=quantizer,
            config=core.config,
            stale=self.stale,
            late=self.late,
        )


def _dropped(
    names: Sequence[str], order: Sequence[SecAggStage], sets: Sequence[tuple[str, ...]]
) -> dict[str, str]:
    """Client -> the stage in which it left: ``U_{i-1} \\ U_i`` left in stage ``i``."""
    out: dict[str, str] = {}
    previous: Collection[str] = names
    for stage, members in zip(order, sets, strict=False):
        kept = set(members)
        for name in previous:
            if name not in kept:
                out[name] = stage.value
        previous = members
    return dict(sorted(out.items()))


def _equal(a: Message, b: Message) -> bool:
    """Whether two messages are equal (messages holding arrays compare by identity)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except ValueError:  # ndarray fields: ambiguous truth value
        return False
