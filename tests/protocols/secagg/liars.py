"""Lying SecAgg servers for tests, and what a server can rebuild from the shares it got.

A :class:`LyingServer` runs the honest core up to the masked inputs, then
sends each client the unmask request its :meth:`~LyingServer.lie` makes up.
It never unmasks: after the last stage it aborts, and
:func:`stolen_inputs` tells which individual inputs the shares it received
(its :attr:`~simkit.secagg.SecAggServer.received`) let it isolate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from simkit.rng import SeedTree
from simkit.secagg import (
    KeyPair,
    SecAggCiphertexts,
    SecAggConfig,
    SecAggMaskedInput,
    SecAggServer,
    SecAggUnmaskRequest,
    SecAggUnmaskShares,
    ShamirError,
    Share,
    agree,
    mask_seed,
    pair_sign,
    reconstruct_secret,
    unmask_sum,
)
from simkit.secagg._server import _Abort  # the core's own way to end a round

Lie = Callable[["LyingServer", str, frozenset[str]], tuple[tuple[str, ...], tuple[str, ...]]]
"""(server, client, U3) -> (survivors, dropped) told to that client."""


class LyingServer(SecAggServer):
    """A core that lies in the unmask request (see the module doc)."""

    lie: Lie

    def _after_share_keys(self, u2: frozenset[str]) -> dict:
        sends = super()._after_share_keys(u2)
        self.forwarded = {
            v: m.senders for v, m in sends.items() if isinstance(m, SecAggCiphertexts)
        }
        return sends

    def _check_survivors(self, u3: frozenset[str]) -> None:
        pass  # a liar does not care whether unmasking would work

    def _after_masked_input(self, u3: frozenset[str]) -> dict:
        super()._after_masked_input(u3)
        for v in sorted(u3):
            survivors, dropped = type(self).lie(self, v, u3)
            self._requests[v] = SecAggUnmaskRequest(
                self.config.round_id, survivors, dropped, len(self.graph.names)
            )
        return dict(self._requests)

    def _after_unmask(self, u4: frozenset[str]) -> dict:
        raise _Abort("a lying server does not unmask")


def liar(lie: Lie) -> Callable[[SecAggConfig, Sequence[str], SeedTree], SecAggServer]:
    """A ``server_factory`` building a :class:`LyingServer` that tells ``lie``; keeps the cores."""

    class Liar(LyingServer):
        pass

    Liar.lie = lie  # type: ignore[assignment]
    built: list[SecAggServer] = []

    def factory(config: SecAggConfig, names: Sequence[str], seeds: SeedTree) -> SecAggServer:
        built.append(Liar(config, names, seeds))
        return built[-1]

    factory.built = built  # type: ignore[attr-defined]
    return factory


def pair_lie(target: str) -> Lie:
    """The issue's lie: tell each client ``c`` that only ``{c, target}`` survived."""

    def lie(server: LyingServer, c: str, u3: frozenset[str]) -> tuple[tuple[str, ...], ...]:
        held = {c, *server.forwarded.get(c, ())}
        survivors = tuple(sorted({c, target} & held))
        return survivors, tuple(sorted(held - set(survivors)))

    return lie  # type: ignore[return-value]


def split_lie(target: str) -> Lie:
    """Tell half the clients ``target`` survived and the other half it dropped."""

    def lie(server: LyingServer, c: str, u3: frozenset[str]) -> tuple[tuple[str, ...], ...]:
        held = {c, *server.forwarded.get(c, ())}
        survivors = held & u3
        if c != target and server.graph.index(c) % 2 == 0:
            survivors -= {target}
        return tuple(sorted(survivors)), tuple(sorted(held - survivors))

    return lie  # type: ignore[return-value]


def _rebuild(shares: dict[str, list[Share]], owner: str, t: int) -> bytes | None:
    got = shares.get(owner, [])
    if len(got) < t:
        return None
    try:
        return reconstruct_secret(got, t)
    except ShamirError:
        return None


def stolen_inputs(core: SecAggServer) -> dict[str, np.ndarray]:
    """Client -> its quantized input, for every input the core's shares isolate.

    ``y_u - PRG(b_u) - sum_v +-PRG(s_uv)`` needs ``b_u`` and, for every peer
    ``v`` that ``u`` masked with, ``s_sk`` of ``u`` or of ``v``.
    """
    cfg, g = core.config, core.graph
    b: dict[str, list[Share]] = {}
    sk: dict[str, list[Share]] = {}
    masked: dict[str, np.ndarray] = {}
    s_pk: dict[str, bytes] = {}
    for src, msg in core.received:
        if isinstance(msg, SecAggMaskedInput):
            masked[src] = msg.masked.astype(np.uint64)
        elif isinstance(msg, SecAggUnmaskShares):
            x = g.index(src)
            for owner, raw in zip(msg.b_owners, msg.b_shares, strict=True):
                b.setdefault(owner, []).append(Share.from_bytes(x, raw))
            for owner, raw in zip(msg.sk_owners, msg.sk_shares, strict=True):
                sk.setdefault(owner, []).append(Share.from_bytes(x, raw))
        elif hasattr(msg, "s_pk"):
            s_pk[src] = msg.s_pk
    keys = {o: _rebuild(sk, o, cfg.threshold) for o in sk}
    forwarded = getattr(core, "forwarded", {})
    out = {}
    for u, y in sorted(masked.items()):
        b_u = _rebuild(b, u, cfg.threshold)
        if b_u is None:
            continue
        corrections = []
        for v in forwarded.get(u, ()):
            if keys.get(u) is not None:
                shared = agree(keys[u], s_pk[v])  # type: ignore[arg-type]
            elif keys.get(v) is not None:
                shared = agree(keys[v], s_pk[u])  # type: ignore[arg-type]
            else:
                break
            corrections.append((pair_sign(u, v), mask_seed(shared, u, v, cfg.round_id)))
        else:
            out[u] = unmask_sum(
                y, self_seeds=[b_u], pair_corrections=corrections, bits=cfg.bits, prg=cfg.prg
            )
    assert all(KeyPair.from_seed(k).public == s_pk[o] for o, k in keys.items() if k is not None)
    return out
