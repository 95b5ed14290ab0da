"""The client's SecAgg driver: answer the server's stage messages with a :class:`SecAggClient`.

:func:`secure_contribute` is what a FedAvg client calls right after it has
trained: it waits for the server's :class:`SecAggQuantization` of the round,
quantizes its vector, then answers each stage message through the pure core
until the core is done (its unmasking shares sent) or the round aborts.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from protocols.secagg._keys import identity_for, key_source, registry_for
from protocols.secagg._messages import SecAggQuantization
from protocols.secagg._settings import SecAggSettings
from simkit.actors import Context, PeerGone, TypeFilter
from simkit.codec import DecodeError
from simkit.messages import Message
from simkit.rng import SeedTree
from simkit.secagg import (
    ByteSource,
    SecAggAbort,
    SecAggCiphertexts,
    SecAggClient,
    SecAggConsistencyCheck,
    SecAggCryptoError,
    SecAggKeyList,
    SecAggRemoteError,
    SecAggSetup,
    SecAggSignedKeyList,
    SecAggSignedUnmaskRequest,
    SecAggStage,
    SecAggUnmaskRequest,
)

__all__ = ["secure_contribute"]

_FROM_SERVER: Final = (
    SecAggSetup,
    SecAggKeyList,
    SecAggSignedKeyList,
    SecAggCiphertexts,
    SecAggConsistencyCheck,
    SecAggUnmaskRequest,
    SecAggSignedUnmaskRequest,
    SecAggAbort,
)
_NO_PKI: Final = (
    "refusing: secagg.adversary = 'active' needs a PKI, which simkit simulates with the "
    "seed tree only (virtual time, or secagg.keys = 'seeded')"
)


async def secure_contribute(
    ctx: Context,
    server: str,
    vector: npt.ArrayLike,
    settings: SecAggSettings,
    seeds: ByteSource,
    round: int,
    *,
    start_timeout: float | None = None,
) -> bool:
    """Take part in ``round``'s secure sum with ``vector``; whether this client completed it.

    Completed means the client answered every stage, its unmasking shares
    included; the server may still abort afterwards (too few shares from the
    others), which only the server knows. The client stops early, returning
    ``False``, when the server aborts or releases it (``SecAggAbort``), when
    the server is gone, when it hears nothing for ``2 * stage_timeout``
    seconds (the server went on without it), when its neighbourhood is below
    the threshold (the core's own check), or when the server breaks a
    protocol rule (logged). Messages of earlier rounds are discarded.

    Args:
        ctx: The client's context, connected to ``server``.
        server: The server's name.
        vector: The float input, 1-d (:func:`~protocols.secagg.flatten_fields`
            of the masked fields). Values are clipped to the server's range
            (logged when any is).
        settings: Only ``stage_timeout`` and ``keys`` are read: the server
            decides the rest and sends it.
        seeds: The client's seed-tree node; keys, seeds and nonces come from
            ``("secagg", round, name)`` below it in virtual time, from the OS
            over real sockets (unless ``settings.keys`` says otherwise).
        round: The round, as the server numbers it.
        start_timeout: Seconds to wait for the server's first message; ``None``
            waits until it comes, the server releases this client, or the
            server is gone.

    Returns:
        Whether the client sent its share of every stage.

    Raises:
        ValueError: ``vector`` is not 1-d, or its length differs from the
            round's (the server and client disagree on what is summed).
    """
    x = np.asarray(vector, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{ctx.name}: the secure-sum input must be 1-d, got shape {x.shape}")
    first = await _next(ctx, server, round, (SecAggQuantization, SecAggAbort), start_timeout)
    if not isinstance(first, SecAggQuantization):
        if isinstance(first, SecAggAbort):
            ctx.log(f"secagg round {round}: released: {first.reason}")
        return False
    if first.length != x.size:
        raise ValueError(
            f"{ctx.name}: round {round} sums vectors of {first.length} values, "
            f"this client has {x.size}"
        )
    quantizer = first.quantizer()
    clipped = int(np.count_nonzero(np.abs(x) > quantizer.clip))
    if clipped:
        ctx.log(
            f"secagg round {round}: {clipped} of {x.size} values clipped to +-{quantizer.clip:g}"
        )
    source = key_source(settings, ctx.virtual, seeds)
    if settings.adversary == "active":
        if not isinstance(seeds, SeedTree) or not (ctx.virtual or settings.keys == "seeded"):
            ctx.log(f"secagg round {round}: {_NO_PKI}")
            return False
        identity = identity_for(seeds, ctx.name)
        core = SecAggClient(
            ctx.name, source, quantizer.quantize(x), identity=identity, registry=registry_for(seeds)
        )
    else:
        core = SecAggClient(ctx.name, source, quantizer.quantize(x))
    return await _answer(ctx, server, core, round, 2 * settings.stage_timeout)


async def _answer(
    ctx: Context, server: str, core: SecAggClient, round: int, patience: float
) -> bool:
    """Feed the server's messages to ``core`` and send its replies, until it ends."""
    while True:
        msg = await _next(ctx, server, round, _FROM_SERVER, patience)
        if msg is None:
            return False
        try:
            reply = core.receive(msg)
        except (SecAggRemoteError, SecAggCryptoError) as exc:
            ctx.log(f"secagg round {round}: refusing to go on: {exc}")
            return False
        if reply is not None:
            try:
                await ctx.send(server, reply)
            except PeerGone:
                return False
        if core.stage is SecAggStage.DONE:
            return True
        if core.stage is SecAggStage.ABORTED:
            ctx.log(f"secagg round {round}: {core.abort_reason}")
            return False


async def _next(
    ctx: Context, server: str, round: int, types: TypeFilter, timeout: float | None
) -> Message | None:
    """The server's next message of ``types`` for ``round``; ``None`` if none will come."""
    deadline = None if timeout is None else ctx.now() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - ctx.now())
        try:
            item = await ctx.recv(types, src=server, timeout=left)
        except TimeoutError:
            ctx.log(f"secagg round {round}: no word from {server} for {timeout:g} s")
            return None
        except PeerGone:
            return None
        try:
            msg = item.decode()
        except DecodeError as exc:
            ctx.log(f"secagg round {round}: undecodable {item.type} from {server}: {exc}")
            continue
        other = getattr(msg, "round_id", round)
        if other == round:
            return msg
        if other > round:
            ctx.log(f"secagg round {round}: {server} has moved on to round {other}")
            return None
        # an earlier round's message: this client had already left that round
