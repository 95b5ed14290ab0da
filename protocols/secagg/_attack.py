"""A lying SecAgg server for teaching and tests: the split-view attack on one client.

The attack (what the client checks of passive mode cannot see): the server

1. forwards the target ``u`` only ``t - 1`` of its peers' share bundles,
   so ``u`` masks its input with those peers ``P`` alone;
2. tells every other client a different, individually plausible survivor
   list: ``u`` survived (they reveal shares of its self-mask seed ``b_u``)
   and as many of ``P`` as their threshold allows dropped (they reveal
   shares of those peers' masking keys ``s_sk``), spreading ``P`` so that
   each peer is declared dropped to ``t`` clients;
3. rebuilds ``b_u`` and every ``s_sk_v`` for ``v`` in ``P``, hence every
   mask in ``u``'s masked input, and reads ``u``'s input.

It needs ``(t - 1) t <= (n - 1)(n - t)`` holder slots, which a strict
majority leaves open (``n = 10, t = 6``). In active mode every client signs
the survivor list it was shown and reveals nothing unless ``t`` of its
neighbourhood signed the same list: the split views are caught.
:func:`recover_inputs` is what any server can rebuild from what it received.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from simkit.messages import Message
from simkit.rng import SeedTree
from simkit.secagg import (
    SecAggAdvertiseKeys,
    SecAggCiphertexts,
    SecAggConfig,
    SecAggConsistencyCheck,
    SecAggConsistencySignature,
    SecAggMaskedInput,
    SecAggServer,
    SecAggSignedUnmaskRequest,
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

__all__ = ["SplitViewServer", "parse_attack", "recover_inputs", "split_view"]

U64 = npt.NDArray[np.uint64]


def parse_attack(text: str) -> str:
    """The target of ``"split-view:<client>"``.

    Raises:
        ValueError: Another form.
    """
    kind, _, target = text.partition(":")
    if kind != "split-view" or not target:
        raise ValueError(f"must be 'split-view:<client name>', got {text!r}")
    return target


class SplitViewServer(SecAggServer):
    """A core running the split-view attack on :attr:`target` (see the module doc).

    Attributes:
        target: The client whose input it is after.
        forwarded: Client -> the senders whose bundles it was forwarded.
        stolen: Client -> its quantized input, for every input recovered.
    """

    target = ""

    def __init__(self, config: SecAggConfig, clients: Sequence[str], seed_tree: SeedTree) -> None:
        super().__init__(config, clients, seed_tree)
        self.forwarded: dict[str, tuple[str, ...]] = {}
        self.stolen: dict[str, U64] = {}
        self._views: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def _check_survivors(self, u3: frozenset[str]) -> None:
        pass  # a liar does not care whether unmasking would work

    def _after_share_keys(self, u2: frozenset[str]) -> dict[str, Message]:
        sends = super()._after_share_keys(u2)
        t, u = self.config.threshold, self.target
        box = sends.get(u)
        if isinstance(box, SecAggCiphertexts) and len(box.senders) >= t - 1:
            sends[u] = SecAggCiphertexts(
                box.round_id, box.senders[: t - 1], box.ciphertexts[: t - 1]
            )
        self.forwarded = {
            v: m.senders for v, m in sends.items() if isinstance(m, SecAggCiphertexts)
        }
        return sends

    def _after_masked_input(self, u3: frozenset[str]) -> dict[str, Message]:
        super()._after_masked_input(u3)
        self._views = self._split(u3)
        r = self.config.round_id
        if self.active:
            return {c: SecAggConsistencyCheck(r, s) for c, (s, _d) in self._views.items()}
        self._requests = {
            c: SecAggUnmaskRequest(r, s, d, len(self.graph.names))
            for c, (s, d) in self._views.items()
        }
        return dict(self._requests)

    def _split(self, u3: frozenset[str]) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Per client: the survivors and dropped it is told (greedy, fewest-declared first)."""
        t, u = self.config.threshold, self.target
        peers = [p for p in self.forwarded.get(u, ()) if p != u]
        declared = dict.fromkeys(peers, 0)
        views = {}
        for c in sorted(u3):
            held = {c, *self.forwarded.get(c, ())} & u3
            room = len(held) - t
            candidates = sorted(
                (p for p in peers if p in held and p != c), key=lambda p: declared[p]
            )
            dropped = set(candidates[: max(0, room)]) if c != u else set()
            for p in dropped:
                declared[p] += 1
            views[c] = (tuple(sorted(held - dropped)), tuple(sorted(dropped)))
        return views

    def _after_consistency(self, signed: frozenset[str]) -> dict[str, Message]:
        sigs = {v: self._reply(v, SecAggConsistencySignature).signature for v in signed}
        signers = tuple(sorted(signed))
        out: dict[str, Message] = {}
        for c in signers:
            survivors, dropped = self._views[c]
            out[c] = self._requests[c] = SecAggSignedUnmaskRequest(
                self.config.round_id,
                survivors,
                dropped,
                len(self.graph.names),
                signers,
                tuple(sigs[s] for s in signers),
            )
        return out

    def _after_unmask(self, u4: frozenset[str]) -> dict[str, Message]:
        self.stolen = recover_inputs(self, self.forwarded)
        if self.stolen:
            raise _Abort(f"attack: the server recovered the input of {', '.join(self.stolen)}")
        raise _Abort("attack: the server recovered no input")


def split_view(target: str) -> Callable[[SecAggConfig, Sequence[str], SeedTree], SecAggServer]:
    """A ``server_factory`` for :func:`~protocols.secagg.secure_sum` attacking ``target``."""

    class Attacker(SplitViewServer):
        pass

    Attacker.target = target
    return Attacker


def _rebuild(shares: dict[str, list[Share]], owner: str, t: int) -> bytes | None:
    got = shares.get(owner, [])
    if len(got) < t:
        return None
    try:
        return reconstruct_secret(got, t)
    except ShamirError:
        return None


def recover_inputs(core: SecAggServer, forwarded: dict[str, tuple[str, ...]]) -> dict[str, U64]:
    """Client -> its quantized input, for every input the core's received shares isolate.

    ``y_u - PRG(b_u) - sum_v +-PRG(s_uv)`` needs ``b_u`` and, for every peer
    ``v`` whose bundle ``u`` was forwarded (``forwarded[u]``), the masking key
    of ``u`` or of ``v``.
    """
    cfg, g = core.config, core.graph
    b: dict[str, list[Share]] = {}
    sk: dict[str, list[Share]] = {}
    masked: dict[str, U64] = {}
    s_pk: dict[str, bytes] = {}
    for src, msg in core.received:
        if isinstance(msg, SecAggMaskedInput):
            masked[src] = msg.masked.astype(np.uint64)
        elif isinstance(msg, SecAggAdvertiseKeys):
            s_pk[src] = msg.s_pk
        elif isinstance(msg, SecAggUnmaskShares):
            x = g.index(src)
            for owner, raw in zip(msg.b_owners, msg.b_shares, strict=True):
                b.setdefault(owner, []).append(Share.from_bytes(x, raw))
            for owner, raw in zip(msg.sk_owners, msg.sk_shares, strict=True):
                sk.setdefault(owner, []).append(Share.from_bytes(x, raw))
    keys = {o: _rebuild(sk, o, cfg.threshold) for o in sorted(sk)}
    out: dict[str, U64] = {}
    for u, y in sorted(masked.items()):
        b_u = _rebuild(b, u, cfg.threshold)
        if b_u is None:
            continue
        corrections = []
        for v in forwarded.get(u, ()):
            key_u, key_v = keys.get(u), keys.get(v)
            if key_u is not None:
                shared = agree(key_u, s_pk[v])
            elif key_v is not None:
                shared = agree(key_v, s_pk[u])
            else:
                break
            corrections.append((pair_sign(u, v), mask_seed(shared, u, v, cfg.round_id)))
        else:
            out[u] = unmask_sum(
                y, self_seeds=[b_u], pair_corrections=corrections, bits=cfg.bits, prg=cfg.prg
            )
    return out
