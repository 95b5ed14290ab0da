"""The server side of SecAgg / SecAgg+ as a pure, sans-I/O state machine.

:class:`SecAggServer` is fed, stage by stage, the replies it received and
the clients still alive, and returns the messages to send next; when the
round ends, :attr:`SecAggServer.result` holds the sum or the reason it
aborted. It never sends, waits or reads a clock: the driver decides how long
to wait for replies and whom it considers alive.

The surviving sets shrink stage by stage, ``U1 >= U2 >= U3 >= U4``:
a client enters ``U_i`` when its stage-``i`` reply is in ``replies`` and it
is in ``alive`` (a reply from a client declared dead is ignored, as are
replies from clients outside ``U_{i-1}``). Whenever a set is smaller than the
threshold ``t`` the round aborts, and the result holds no sum. In the last
stage every secret to rebuild (the self-mask seed ``b`` of each survivor in
``U3``, the masking key ``s_sk`` of each client of ``U2 \\ U3`` that
neighbours a survivor) needs ``t`` shares from ``U4``, or the round aborts.

Security model: semi-honest (honest-but-curious) server, Bonawitz et al.
2017, Section 4. The server sees masked vectors, ciphertexts it cannot open,
and, per client, either ``t`` shares of ``b`` or ``t`` shares of ``s_sk``,
never both (every client refuses to reveal both), so it learns the sum of
the survivors' inputs and nothing else about them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Final, TypeVar

import numpy as np

from simkit.messages import Message
from simkit.rng import SeedTree
from simkit.secagg._crypto import KeyPair, agree, mask_seed
from simkit.secagg._errors import SecAggLocalError, SecAggRemoteError
from simkit.secagg._graph import NeighbourGraph
from simkit.secagg._masking import pair_sign, sum_masked, unmask_sum
from simkit.secagg._messages import (
    SecAggAbort,
    SecAggAdvertiseKeys,
    SecAggCiphertexts,
    SecAggConfig,
    SecAggConsistencyCheck,
    SecAggConsistencySignature,
    SecAggKeyList,
    SecAggMaskedInput,
    SecAggResult,
    SecAggSetup,
    SecAggShareKeys,
    SecAggSignedKeyList,
    SecAggSignedKeys,
    SecAggSignedUnmaskRequest,
    SecAggStage,
    SecAggUnmaskRequest,
    SecAggUnmaskShares,
)
from simkit.secagg._shamir import ShamirError, Share, reconstruct_secret

__all__ = ["ACTIVE_STAGES", "PASSIVE_STAGES", "SecAggServer"]

Stage = SecAggStage
M = TypeVar("M", bound=Message)

_REPLY_TYPES: Final[dict[SecAggStage, type[Message]]] = {
    Stage.ADVERTISE_KEYS: SecAggAdvertiseKeys,
    Stage.SHARE_KEYS: SecAggShareKeys,
    Stage.MASKED_INPUT: SecAggMaskedInput,
    Stage.UNMASKING: SecAggUnmaskShares,
}
_ACTIVE_REPLY_TYPES: Final[dict[SecAggStage, type[Message]]] = {
    **_REPLY_TYPES,
    Stage.ADVERTISE_KEYS: SecAggSignedKeys,
    Stage.CONSISTENCY: SecAggConsistencySignature,
}
PASSIVE_STAGES: Final = (
    Stage.ADVERTISE_KEYS,
    Stage.SHARE_KEYS,
    Stage.MASKED_INPUT,
    Stage.UNMASKING,
)
"""The stages of a passive-mode round, in order; stage ``i`` builds ``U_i``."""
ACTIVE_STAGES: Final = (
    Stage.ADVERTISE_KEYS,
    Stage.SHARE_KEYS,
    Stage.MASKED_INPUT,
    Stage.CONSISTENCY,
    Stage.UNMASKING,
)
"""The stages of an active-mode round: a consistency check before unmasking."""


class _Abort(Exception):
    """The round cannot go on; ``str(self)`` says why."""


class SecAggServer:
    """The server's SecAgg state machine for one round.

    Args:
        config: The round's parameters.
        clients: The names of the clients invited (U0).
        seed_tree: A seed-tree node; the SecAgg+ graph is drawn from
            ``("secagg", round_id)`` below it.

    Attributes:
        config: The round's parameters.
        graph: The neighbour graph (complete for ``mode="secagg"``).
        stage: The stage whose replies it waits for, or how the round ended.
        result: The outcome, once ``stage`` is ``DONE`` or ``ABORTED``.
        received: Every reply admitted, in order, as ``(client, message)``:
            all the server holds (for audits and tests).
        rejected: Client -> why its reply was refused (it then counts as
            having dropped out in that stage).

    Raises:
        ValueError: Fewer than two clients, or a threshold above the number
            of clients.

    Example:
        A driver's loop::

            sends = core.start()
            while core.result is None:
                replies, alive = await exchange(sends)  # send, wait, collect
                sends = core.step(replies, alive)
            await notify(sends)  # SecAggAbort notices, if it aborted
    """

    def __init__(self, config: SecAggConfig, clients: Collection[str], seed_tree: SeedTree) -> None:
        self.config = config
        if config.mode == "secagg":
            self.graph = NeighbourGraph.complete(clients)
        else:
            tree = seed_tree.child("secagg", config.round_id)
            self.graph = NeighbourGraph.regular(clients, config.degree, tree)
        if config.threshold > min(len(self.graph.names), self.graph.degree + 1):
            raise ValueError(
                f"threshold {config.threshold} exceeds the neighbourhood size "
                f"{self.graph.degree + 1} (degree {self.graph.degree} + the client itself)"
            )
        self.stage = Stage.SETUP
        self.result: SecAggResult | None = None
        self._sets: list[frozenset[str]] = [frozenset(self.graph.names)]
        self._replies: dict[str, Message] = {}
        self._keys: dict[str, SecAggAdvertiseKeys] = {}
        self._boxes: dict[str, SecAggShareKeys] = {}
        self._requests: dict[str, SecAggUnmaskRequest] = {}
        self._total: np.ndarray | None = None
        self.received: list[tuple[str, Message]] = []
        self.rejected: dict[str, str] = {}

    # ------------------------------------------------------------------ the driver's API

    def start(self) -> dict[str, Message]:
        """The setup message for every client (stage 1 begins).

        Raises:
            SecAggLocalError: The round has already started.
        """
        if self.stage is not Stage.SETUP:
            raise SecAggLocalError("start() called twice")
        self.stage = Stage.ADVERTISE_KEYS
        cfg, g = self.config, self.graph
        return {
            name: SecAggSetup(
                cfg.round_id,
                cfg.threshold,
                cfg.bits,
                cfg.length,
                cfg.prg,
                g.index(name),
                g.neighbours(name),
                tuple(g.index(n) for n in g.neighbours(name)),
            )
            for name in g.names
        }

    def step(self, replies: Mapping[str, Message], alive: Collection[str]) -> dict[str, Message]:
        """Close the current stage with its replies; the messages of the next one.

        Args:
            replies: Client name -> the reply it sent in this stage.
            alive: The clients still considered alive.

        Returns:
            Client name -> message. After the last stage, or on abort,
            :attr:`result` is set and the messages are the
            :class:`SecAggAbort` notices for the clients still in the round
            (none after success).

        Raises:
            SecAggLocalError: Called before :meth:`start` or after the end.
            SecAggRemoteError: The replies together break a rule the server
                must never break (both shares of one client revealed); the
                round is recorded as aborted. A reply that breaks a rule on
                its own only fails its sender (:attr:`rejected`).
        """
        expected = self._reply_types.get(self.stage)
        if expected is None:
            raise SecAggLocalError(f"step() in stage {self.stage.value}")
        previous = self._sets[-1]
        alive_set = set(alive)
        answered = sorted(n for n in replies if n in previous and n in alive_set)
        stage = self.stage
        current = frozenset(n for n in answered if self._admit(n, replies[n], expected))
        self._sets.append(current)
        try:
            self._check_threshold(current)
            sends: dict[str, Message] = getattr(self, self._HANDLERS[stage])(current)
        except _Abort as exc:
            return self._abort(str(exc), stage, previous & alive_set)
        except SecAggRemoteError as exc:
            self._abort(f"protocol error: {exc}", stage, ())
            raise
        following = (*self.stages, Stage.DONE)
        self.stage = following[following.index(stage) + 1]
        return sends

    @property
    def stages(self) -> tuple[SecAggStage, ...]:
        """The round's stages in order (:data:`PASSIVE_STAGES` or :data:`ACTIVE_STAGES`)."""
        return ACTIVE_STAGES if self.active else PASSIVE_STAGES

    @property
    def active(self) -> bool:
        """Whether the round runs in active-adversary mode."""
        return self.config.adversary == "active"

    def expected_reply(self) -> type[Message] | None:
        """The reply type of the stage in progress (``None`` before or after the stages)."""
        return self._reply_types.get(self.stage)

    @property
    def _reply_types(self) -> dict[SecAggStage, type[Message]]:
        return _ACTIVE_REPLY_TYPES if self.active else _REPLY_TYPES

    @property
    def survivors(self) -> tuple[tuple[str, ...], ...]:
        """The sets U1, U2, ... reached so far, each sorted."""
        return tuple(tuple(sorted(s)) for s in self._sets[1:])

    # ------------------------------------------------------------------ checks

    def _admit(self, name: str, msg: Message, expected: type[Message]) -> bool:
        """Whether ``name``'s reply is admitted; a bad one fails that client alone.

        A reply that breaks a rule (wrong type, round or sender, bundles to
        the wrong recipients, a masked input of the wrong shape, shares of
        other clients than asked) is recorded in :attr:`rejected` and its
        sender treated as having dropped out: one lying client never ends the
        round for the others, let alone the server.
        """
        try:
            self._check_reply(name, msg, expected)
        except SecAggRemoteError as exc:
            self.rejected[name] = str(exc)
            return False
        self.received.append((name, msg))
        self._replies[name] = msg
        return True

    def _check_reply(self, name: str, msg: Message, expected: type[Message]) -> None:
        if not isinstance(msg, expected):
            raise SecAggRemoteError(
                f"{name} sent {type(msg).__name__} in stage {self.stage.value}, "
                f"expected {expected.__name__}"
            )
        if (
            getattr(msg, "round_id", None) != self.config.round_id
            or getattr(msg, "sender", None) != name
        ):
            raise SecAggRemoteError(f"{name} sent a {expected.__name__} of another round or sender")
        if isinstance(msg, SecAggShareKeys):
            wanted = tuple(n for n in self._in(name, self._sets[1]) if n != name)
            if msg.recipients != wanted:
                raise SecAggRemoteError(
                    f"{name} sent bundles to {msg.recipients}, expected {wanted}"
                )
        elif isinstance(msg, SecAggMaskedInput):
            if msg.masked.shape != (self.config.length,):
                raise SecAggRemoteError(f"{name} sent a masked input of shape {msg.masked.shape}")
        elif isinstance(msg, SecAggUnmaskShares):
            asked = self._requests[name]
            if (msg.b_owners, msg.sk_owners) != (asked.survivors, asked.dropped):
                raise SecAggRemoteError(f"{name} revealed shares of other clients than asked")

    def _check_threshold(self, current: frozenset[str]) -> None:
        t = self.config.threshold
        if len(current) < t:
            raise _Abort(
                f"{len(current)} clients answered in stage {self.stage.value}, threshold {t}"
            )

    def _abort(
        self, reason: str, stage: SecAggStage, notify: Collection[str]
    ) -> dict[str, Message]:
        self.stage = Stage.ABORTED
        self.result = SecAggResult(
            self.config.round_id, None, (), self.survivors, reason, aborted_in=stage
        )
        return {name: SecAggAbort(self.config.round_id, reason) for name in sorted(notify)}

    def _reply(self, name: str, cls: type[M]) -> M:
        msg = self._replies[name]
        assert isinstance(msg, cls)  # _admit checked the type
        return msg

    def _in(self, name: str, members: frozenset[str]) -> list[str]:
        """``name``'s closed neighbourhood within ``members``, sorted."""
        return [n for n in self.graph.closed_neighbourhood(name) if n in members]

    # ------------------------------------------------------------------ stages

    def _after_advertise(self, u1: frozenset[str]) -> dict[str, Message]:
        for name in u1:
            self._keys[name] = self._reply(name, SecAggAdvertiseKeys)
        out: dict[str, Message] = {}
        for v in sorted(u1):
            names = self._in(v, u1)
            keys = [self._keys[n] for n in names]
            columns = (
                self.config.round_id,
                tuple(names),
                tuple(k.c_pk for k in keys),
                tuple(k.s_pk for k in keys),
            )
            if self.active:
                signatures = tuple(k.signature for k in keys if isinstance(k, SecAggSignedKeys))
                out[v] = SecAggSignedKeyList(*columns, signatures)
            else:
                out[v] = SecAggKeyList(*columns)
        return out

    def _after_share_keys(self, u2: frozenset[str]) -> dict[str, Message]:
        u1 = self._sets[1]
        inbox: dict[str, tuple[list[str], list[bytes]]] = {v: ([], []) for v in u2}
        for u in sorted(u2):
            msg = self._reply(u, SecAggShareKeys)
            wanted = [n for n in self._in(u, u1) if n != u]
            if list(msg.recipients) != wanted:
                raise SecAggRemoteError(f"{u} sent bundles to {msg.recipients}, expected {wanted}")
            for v, box in zip(msg.recipients, msg.ciphertexts, strict=True):
                if v in inbox:
                    inbox[v][0].append(u)
                    inbox[v][1].append(box)
        return {
            v: SecAggCiphertexts(self.config.round_id, tuple(senders), tuple(boxes))
            for v, (senders, boxes) in sorted(inbox.items())
        }

    def _after_masked_input(self, u3: frozenset[str]) -> dict[str, Message]:
        vectors = []
        for u in sorted(u3):
            msg = self._reply(u, SecAggMaskedInput)
            if msg.masked.shape != (self.config.length,):
                raise SecAggRemoteError(f"{u} sent a masked input of shape {msg.masked.shape}")
            vectors.append(msg.masked)
        self._check_survivors(u3)
        self._total = sum_masked(vectors, self.config.length, self.config.bits)
        dropped = self._masks_to_recover(self._sets[2], u3)
        for v in sorted(u3):
            self._requests[v] = SecAggUnmaskRequest(
                self.config.round_id,
                tuple(self._in(v, u3)),
                tuple(n for n in self.graph.neighbours(v) if n in dropped),
                len(u3),
            )
        if self.active:
            check = SecAggConsistencyCheck(self.config.round_id, tuple(sorted(u3)))
            return dict.fromkeys(sorted(u3), check)
        return dict(self._requests)

    def _after_consistency(self, signed: frozenset[str]) -> dict[str, Message]:
        """Active mode: each signer's unmask request, with its neighbourhood's signatures."""
        sigs = {v: self._reply(v, SecAggConsistencySignature).signature for v in signed}
        out: dict[str, Message] = {}
        for v in sorted(signed):
            asked, signers = self._requests[v], self._in(v, signed)
            out[v] = self._requests[v] = SecAggSignedUnmaskRequest(
                *(asked.round_id, asked.survivors, asked.dropped, asked.n_survivors),
                tuple(signers),
                tuple(sigs[n] for n in signers),
            )
        return out

    def _check_survivors(self, u3: frozenset[str]) -> None:
        """Abort before any share is asked for when unmasking would fail or leak.

        Every survivor needs ``t`` holders of its shares among the survivors
        (its clients refuse otherwise, Bell et al. 2020), and the survivors'
        graph must be connected: the masks of two groups with no edge between
        them cancel within each group, so unmasking would reveal each group's
        sum, down to a single client's input.
        """
        t = self.config.threshold
        for v in sorted(u3):
            have = len(self._in(v, u3))
            if have < t:
                raise _Abort(f"{v} has {have} survivors in its neighbourhood, threshold {t}")
        groups = self.graph.components(u3)
        if len(groups) > 1:
            sizes = sorted(len(g) for g in groups)
            raise _Abort(
                f"the survivors' graph splits into {len(groups)} groups of sizes {sizes}: "
                "unmasking would reveal each group's sum"
            )

    def _masks_to_recover(self, u2: frozenset[str], u3: frozenset[str]) -> frozenset[str]:
        """The clients of ``U2 \\ U3`` whose pairwise masks are in the sum.

        They shared keys, then sent no masked input; the survivors they
        neighbour added ``+-PRG(s_du)`` for them, so their masking keys
        ``s_sk`` are asked for in the last stage. A subclass that returns too
        few here leaves masks in the sum: the way tests and tutorials build a
        buggy server without copying the rest.
        """
        return frozenset(d for d in u2 - u3 if any(n in u3 for n in self.graph.neighbours(d)))

    def _after_unmask(self, u4: frozenset[str]) -> dict[str, Message]:
        b_shares: dict[str, list[Share]] = {}
        sk_shares: dict[str, list[Share]] = {}
        for v in sorted(u4):
            msg, asked = self._reply(v, SecAggUnmaskShares), self._requests[v]
            if (msg.b_owners, msg.sk_owners) != (asked.survivors, asked.dropped):
                raise SecAggRemoteError(f"{v} revealed shares of other clients than asked")
            x = self.graph.index(v)
            for owner, raw in zip(msg.b_owners, msg.b_shares, strict=True):
                b_shares.setdefault(owner, []).append(Share.from_bytes(x, raw))
            for owner, raw in zip(msg.sk_owners, msg.sk_shares, strict=True):
                sk_shares.setdefault(owner, []).append(Share.from_bytes(x, raw))
        if b_shares.keys() & sk_shares.keys():  # clients refuse this; a server must never hold it
            raise SecAggRemoteError(
                f"both shares revealed for {sorted(b_shares.keys() & sk_shares.keys())}"
            )
        u3 = self._sets[3]
        self_seeds = [self._rebuild(u, b_shares, "self-mask seed b") for u in sorted(u3)]
        corrections = []
        for d in sorted({o for v in u3 for o in self._requests[v].dropped}):
            sk = self._rebuild(d, sk_shares, "masking key s_sk")
            if KeyPair.from_seed(sk).public != self._keys[d].s_pk:
                raise _Abort(f"the masking key rebuilt for {d} does not match its public key")
            for u in sorted(n for n in self.graph.neighbours(d) if n in u3):
                seed = mask_seed(agree(sk, self._keys[u].s_pk), d, u, self.config.round_id)
                corrections.append((pair_sign(u, d), seed))
        assert self._total is not None
        total = unmask_sum(
            self._total,
            self_seeds=self_seeds,
            pair_corrections=corrections,
            bits=self.config.bits,
            prg=self.config.prg,
        )
        survivors = tuple(sorted(u3))
        self.result = SecAggResult(self.config.round_id, total, survivors, self.survivors)
        return {}

    def _rebuild(self, owner: str, shares: Mapping[str, list[Share]], what: str) -> bytes:
        got = shares.get(owner, [])
        t = self.config.threshold
        if len(got) < t:
            raise _Abort(f"cannot rebuild the {what} of {owner}: {len(got)} shares, threshold {t}")
        try:
            return reconstruct_secret(got, t)
        except ShamirError as exc:
            raise _Abort(f"cannot rebuild the {what} of {owner}: {exc}") from None

    # by name, so that a subclass (a test's lying server) can override a stage
    _HANDLERS: Final = {
        Stage.ADVERTISE_KEYS: "_after_advertise",
        Stage.SHARE_KEYS: "_after_share_keys",
        Stage.MASKED_INPUT: "_after_masked_input",
        Stage.CONSISTENCY: "_after_consistency",
        Stage.UNMASKING: "_after_unmask",
    }
