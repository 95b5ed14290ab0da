"""The client side of SecAgg / SecAgg+ as a pure, sans-I/O state machine.

:class:`SecAggClient` takes the server's message and returns its reply (or
``None``); it never sends, sleeps or reads a clock, so a driver is a short
loop (receive, feed the core, send what it returns) and the core is tested
synchronously. Its transitions are one table, :data:`_TRANSITIONS`.

All of its randomness comes from the seed tree, below
``("secagg", round_id, name)``: the two X25519 private keys ``c_sk`` and
``s_sk``, the self-mask seed ``b``, the Shamir coefficients of each secret
and the AES-GCM nonce of each bundle.

A client reveals, for any peer, either the share of its self-mask seed ``b``
(the peer survived) or the share of its masking key ``s_sk`` (the peer
dropped), never both: with both, the server could unmask that peer's input
alone. The core enforces this across everything it reveals in a round.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from simkit.codec import DecodeError, packb, unpackb
from simkit.messages import Message
from simkit.secagg._crypto import (
    ByteSource,
    Identity,
    KeyPair,
    agree,
    decrypt,
    encrypt,
    encryption_key,
    mask_seed,
    signed_keys_statement,
    survivors_statement,
    verify,
)
from simkit.secagg._errors import SecAggCryptoError, SecAggLocalError, SecAggRemoteError
from simkit.secagg._masking import mask_input, wire_dtype
from simkit.secagg._messages import (
    SecAggAbort,
    SecAggAdvertiseKeys,
    SecAggCiphertexts,
    SecAggConsistencyCheck,
    SecAggConsistencySignature,
    SecAggKeyList,
    SecAggMaskedInput,
    SecAggSetup,
    SecAggShareKeys,
    SecAggSignedKeyList,
    SecAggSignedKeys,
    SecAggSignedUnmaskRequest,
    SecAggStage,
    SecAggUnmaskRequest,
    SecAggUnmaskShares,
)
from simkit.secagg._shamir import ShamirError, Share, split_secret

__all__ = ["Registry", "SecAggClient"]

Stage = SecAggStage
Registry = Callable[[str], bytes | None]
"""Active mode: a client name -> its Ed25519 verification key, from a PKI, not the server."""


def pack_bundle(sender: str, receiver: str, sk_share: Share, b_share: Share) -> bytes:
    """The plaintext of one share bundle: who to whom, and the two shares."""
    return packb([sender, receiver, sk_share.value_bytes(), b_share.value_bytes()])


def unpack_bundle(data: bytes, sender: str, receiver: str, index: int) -> tuple[Share, Share]:
    """Parse a decrypted bundle, checking that it names ``sender`` and ``receiver``.

    Raises:
        SecAggRemoteError: The bundle is malformed or names other parties.
    """
    try:
        fields = unpackb(data)
        who, whom, sk, b = fields
        if (who, whom) != (sender, receiver):
            raise SecAggRemoteError(f"bundle from {sender!r} names {who!r} -> {whom!r}")
        return Share.from_bytes(index, sk), Share.from_bytes(index, b)
    except (DecodeError, ShamirError, TypeError, ValueError) as exc:
        raise SecAggRemoteError(f"malformed share bundle from {sender!r}: {exc}") from None


class SecAggClient:
    """One client's SecAgg state machine for one round.

    Args:
        name: The client's name (as the server knows it).
        seed_tree: A seed-tree node (the client's own or the root); keys,
            seeds and nonces come from ``("secagg", round_id, name)`` below it.
            An :class:`~simkit.secagg.OsEntropy` draws them from the operating
            system instead (a real deployment; no longer replayable).
        vector: The quantized input: 1-d uint64 values below ``2**bits``.
        identity: Active-adversary mode: the client's Ed25519 identity; it
            signs its keys and the survivor set (Bonawitz et al. 2017, §6).
        registry: Active mode: name -> Ed25519 verification key (or
            ``None`` if unknown), learnt without the server (a PKI).

    Attributes:
        name: The client's name.
        stage: The stage it is in; ``DONE`` after its last reply.
        abort_reason: Why the round aborted, once ``stage`` is ``ABORTED``.

    Example:
        A driver's loop::

            reply = core.receive(message)
            if reply is not None:
                await ctx.send("server", reply)
            if core.stage in (SecAggStage.DONE, SecAggStage.ABORTED):
                return
    """

    def __init__(
        self,
        name: str,
        seed_tree: ByteSource,
        vector: npt.ArrayLike,
        *,
        identity: Identity | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.name = name
        if (identity is None) != (registry is None):
            raise SecAggLocalError(f"{name}: active mode needs both an identity and a registry")
        self._identity = identity
        self._registry = registry
        self.stage = Stage.SETUP
        self.abort_reason: str | None = None
        self._root = seed_tree
        self._vector = np.array(vector, dtype=np.uint64)
        if self._vector.ndim != 1:
            raise SecAggLocalError(f"{name}: the input must be a 1-d vector")
        self._revealed: dict[str, str] = {}  # peer -> "b" or "sk"
        self._held: dict[str, tuple[Share, Share]] = {}  # owner -> (sk share, b share)
        # peer -> X25519 secret of our c key and theirs: one agreement serves the
        # encryption keys of both directions (they differ by their HKDF info)
        self._c_shared: dict[str, bytes] = {}

    # ------------------------------------------------------------------ the driver's API

    def receive(self, msg: Message) -> Message | None:
        """Feed one server message; returns the reply to send, or ``None``.

        Raises:
            SecAggRemoteError: The message does not belong in this stage, is
                for another round, or breaks a protocol rule.
            SecAggCryptoError: A key or a ciphertext from a peer is bad.
        """
        if isinstance(msg, SecAggAbort):
            self._on_abort(msg)
            return None
        entry = _TRANSITIONS.get((self.stage, type(msg)))
        if entry is None:
            raise SecAggRemoteError(
                f"{self.name}: unexpected {type(msg).__name__} in stage {self.stage.value}"
            )
        if self.stage is not Stage.SETUP and getattr(msg, "round_id", None) != self._round:
            raise SecAggRemoteError(f"{self.name}: message for another round: {msg!r}")
        handler, next_stage = entry
        reply = handler(self, msg)
        if self.stage is not Stage.ABORTED:
            self.stage = next_stage
        return reply

    # ------------------------------------------------------------------ handlers

    def _on_abort(self, msg: SecAggAbort) -> None:
        if self.stage is Stage.ABORTED:
            raise SecAggRemoteError(f"{self.name}: abort after the round already aborted")
        self._abort(f"server aborted: {msg.reason}")

    def _abort(self, reason: str) -> None:
        self.stage = Stage.ABORTED
        self.abort_reason = reason

    def _on_setup(self, msg: SecAggSetup) -> SecAggAdvertiseKeys:
        if self._vector.shape != (msg.length,):
            raise SecAggLocalError(
                f"{self.name}: input has {self._vector.shape[0]} values, "
                f"the round wants {msg.length}"
            )
        if self._vector.size and int(self._vector.max()) >> msg.bits:
            raise SecAggLocalError(f"{self.name}: input values must be below 2**{msg.bits}")
        if self.name in msg.neighbours:
            raise SecAggRemoteError(f"{self.name}: listed as its own neighbour")
        self._setup = msg
        self._round = msg.round_id
        self._tree = self._root.child("secagg", msg.round_id, self.name)
        self._indices = dict(zip(msg.neighbours, msg.indices, strict=True))
        self._indices[self.name] = msg.index
        self._c = KeyPair.from_seed(self._tree.bytes("c_sk"))
        self._s = KeyPair.from_seed(self._tree.bytes("s_sk"))
        self._b = self._tree.bytes("b")
        self._c_shared = {}
        keys = (self._round, self.name, self._c.public, self._s.public)
        if self._identity is not None:
            return SecAggSignedKeys(*keys, self._identity.sign(signed_keys_statement(*keys)))
        return SecAggAdvertiseKeys(*keys)

    def _on_key_list(self, msg: SecAggKeyList) -> SecAggShareKeys | None:
        self._check_key_signatures(msg)
        keys = {n: (c, s) for n, c, s in zip(msg.names, msg.c_pks, msg.s_pks, strict=True)}
        if len(keys) != len(msg.names) or keys.get(self.name) != (self._c.public, self._s.public):
            raise SecAggRemoteError(f"{self.name}: key list repeats names or misstates its keys")
        if not keys.keys() <= self._indices.keys():
            raise SecAggRemoteError(f"{self.name}: key list names clients that are not neighbours")
        if len(set(msg.c_pks) | set(msg.s_pks)) != 2 * len(keys):
            raise SecAggRemoteError(f"{self.name}: two advertised public keys coincide")
        t = self._setup.threshold
        if len(keys) < t:
            self._abort(f"only {len(keys)} of its neighbourhood advertised keys, threshold {t}")
            return None
        self._keys = keys
        holders = [self._indices[n] for n in msg.names]
        sk_shares = split_secret(self._s.private_bytes(), t, holders, self._tree.child("sk"))
        b_shares = split_secret(self._b, t, holders, self._tree.child("b"))
        recipients, boxes = [], []
        for peer in sorted(keys):
            i = self._indices[peer]
            if peer == self.name:
                self._held[peer] = (sk_shares[i], b_shares[i])
                continue
            shared = self._c_shared[peer] = agree(self._c.private, keys[peer][0])
            key = encryption_key(shared, self.name, peer, self._round)
            plain = pack_bundle(self.name, peer, sk_shares[i], b_shares[i])
            nonce = self._tree.bytes("nonce", peer, n=12)
            recipients.append(peer)
            boxes.append(
                encrypt(
                    key, plain, sender=self.name, receiver=peer, round_id=self._round, nonce=nonce
                )
            )
        return SecAggShareKeys(self._round, self.name, tuple(recipients), tuple(boxes))

    def _check_key_signatures(self, msg: SecAggKeyList) -> None:
        """Active mode: every listed key pair must carry its owner's signature.

        Raises:
            SecAggRemoteError: An unsigned list, an owner the registry does not
                know, or a signature that does not verify (keys the server
                swapped for its own).
        """
        if self._registry is None:
            return
        if not isinstance(msg, SecAggSignedKeyList):
            raise SecAggRemoteError(f"{self.name}: active mode needs a signed key list")
        for n, c, s, sig in zip(msg.names, msg.c_pks, msg.s_pks, msg.signatures, strict=True):
            public = self._registry(n)
            statement = signed_keys_statement(self._round, n, c, s)
            if public is None or not verify(public, sig, statement):
                raise SecAggRemoteError(f"{self.name}: the keys of {n!r} are not signed by {n!r}")

    def _on_ciphertexts(self, msg: SecAggCiphertexts) -> SecAggMaskedInput | None:
        senders = set(msg.senders)
        if len(senders) != len(msg.senders) or self.name in senders:
            raise SecAggRemoteError(f"{self.name}: ciphertext senders repeat or include itself")
        if not senders <= self._keys.keys():
            raise SecAggRemoteError(
                f"{self.name}: ciphertexts from clients without advertised keys"
            )
        t = self._setup.threshold
        if len(senders) + 1 < t:
            self._abort(f"only {len(senders) + 1} of its neighbourhood shared keys, threshold {t}")
            return None
        for sender, box in zip(msg.senders, msg.ciphertexts, strict=True):
            self._held[sender] = self._open(sender, box)
        self._peers = tuple(sorted(senders))
        pair_seeds = [
            (
                peer,
                mask_seed(
                    agree(self._s.private, self._keys[peer][1]), self.name, peer, self._round
                ),
            )
            for peer in self._peers
        ]
        masked = mask_input(
            self._vector,
            me=self.name,
            self_seed=self._b,
            pair_seeds=pair_seeds,
            bits=self._setup.bits,
            prg=self._setup.prg,  # type: ignore[arg-type]  # validated by SecAggSetup
        )
        wire = masked.astype(wire_dtype(self._setup.bits), copy=False)
        return SecAggMaskedInput(self._round, self.name, wire)

    def _open(self, sender: str, box: bytes) -> tuple[Share, Share]:
        shared = self._c_shared.get(sender)
        if shared is None:
            shared = self._c_shared[sender] = agree(self._c.private, self._keys[sender][0])
        key = encryption_key(shared, sender, self.name, self._round)
        try:
            plain = decrypt(key, box, sender=sender, receiver=self.name, round_id=self._round)
        except SecAggCryptoError as exc:
            raise SecAggRemoteError(f"{self.name}: {exc}") from None
        return unpack_bundle(plain, sender, self.name, self._indices[self.name])

    def _on_consistency(self, msg: SecAggConsistencyCheck) -> SecAggConsistencySignature | None:
        """Active mode: check U3 and sign it (the unmask request must show t signed the same)."""
        if self._identity is None:
            raise SecAggRemoteError(f"{self.name}: a consistency check in passive mode")
        u3, t = set(msg.survivors), self._setup.threshold
        if len(u3) != len(msg.survivors) or self.name not in u3:
            raise SecAggRemoteError(f"{self.name}: the survivor set repeats names or omits it")
        mine = u3 & self._indices.keys()
        if not mine <= self._held.keys():
            raise SecAggRemoteError(f"{self.name}: survivors it holds no shares of: {sorted(mine)}")
        if len(mine) < t:
            self._abort(
                f"refusing to sign: {len(mine)} of its neighbourhood survive, threshold {t}"
            )
            return None
        self._u3 = frozenset(u3)
        statement = survivors_statement(self._round, msg.survivors)
        return SecAggConsistencySignature(self._round, self.name, self._identity.sign(statement))

    def _check_signed(self, msg: SecAggUnmaskRequest) -> None:
        """Active mode: ``t`` of its neighbourhood signed the U3 this client signed.

        Raises:
            SecAggRemoteError: An unsigned request, survivors outside the
                signed U3 or dropped clients inside it, or fewer than ``t``
                valid signatures (the server showed others another U3).
        """
        if self._registry is None:
            return
        if not isinstance(msg, SecAggSignedUnmaskRequest):
            raise SecAggRemoteError(f"{self.name}: active mode needs the consistency check")
        if not set(msg.survivors) <= self._u3 or set(msg.dropped) & self._u3:
            raise SecAggRemoteError(f"{self.name}: unmask request contradicts the signed U3")
        statement = survivors_statement(self._round, tuple(self._u3))
        valid = set()
        for signer, sig in zip(msg.signers, msg.signatures, strict=True):
            public = self._registry(signer) if signer in self._indices else None
            if signer in self._u3 and public is not None and verify(public, sig, statement):
                valid.add(signer)
        if len(valid) < self._setup.threshold:
            raise SecAggRemoteError(
                f"{self.name}: refusing to unmask: {len(valid)} of its neighbourhood signed "
                f"its survivor set, threshold {self._setup.threshold}"
            )

    def _on_unmask(self, msg: SecAggUnmaskRequest) -> SecAggUnmaskShares | None:
        self._check_signed(msg)
        survivors, dropped = self._check_unmask(msg)
        if len(survivors) < self._setup.threshold:
            # counted from the list itself: ``n_survivors`` is the server's claim
            self._abort(
                f"refusing to unmask: {len(survivors)} of its neighbourhood survive, "
                f"threshold {self._setup.threshold}"
            )
            return None
        self._reveal(survivors, "b")
        self._reveal(dropped, "sk")
        b_owners, sk_owners = sorted(survivors), sorted(dropped)
        return SecAggUnmaskShares(
            self._round,
            self.name,
            tuple(b_owners),
            tuple(self._held[o][1].value_bytes() for o in b_owners),
            tuple(sk_owners),
            tuple(self._held[o][0].value_bytes() for o in sk_owners),
        )

    def _check_unmask(self, msg: SecAggUnmaskRequest) -> tuple[set[str], set[str]]:
        """The request's survivor and dropped sets, after the checks that need no threshold.

        Bonawitz et al. (2017) have every client check the server's lists
        itself: a server that lies about them (``{c, u}`` survived, everyone
        else dropped) would otherwise collect both kinds of shares of ``u``.

        Raises:
            SecAggRemoteError: A list repeats a name, the lists overlap, name
                this client as dropped or leave it out of the survivors, or
                name clients it holds no shares of (outside its neighbourhood,
                or that never sent it a bundle).
        """
        survivors, dropped = set(msg.survivors), set(msg.dropped)
        me = self.name
        if len(survivors) != len(msg.survivors) or len(dropped) != len(msg.dropped):
            raise SecAggRemoteError(f"{me}: unmask request repeats names")
        if survivors & dropped:
            raise SecAggRemoteError(f"{me}: asked for both shares of {sorted(survivors & dropped)}")
        if me in dropped or me not in survivors:
            raise SecAggRemoteError(f"{me}: unmask request does not list it as a survivor")
        strangers = (survivors | dropped) - self._held.keys()
        if strangers:
            raise SecAggRemoteError(
                f"{me}: unmask request names clients it holds no shares of: {sorted(strangers)}"
            )
        return survivors, dropped

    def _reveal(self, owners: set[str], kind: str) -> None:
        """Record what is revealed; refuse the other kind of share of a peer, ever."""
        for owner in owners:
            if self._revealed.setdefault(owner, kind) != kind:
                raise SecAggRemoteError(
                    f"{self.name}: refusing to reveal the {kind} share of {owner!r}: "
                    "its other share was already revealed"
                )
        assert all(self._revealed[o] == kind for o in owners)


_Handler = Callable[[SecAggClient, Any], Message | None]

_TRANSITIONS: Final[dict[tuple[SecAggStage, type[Message]], tuple[_Handler, SecAggStage]]] = {
    (Stage.SETUP, SecAggSetup): (SecAggClient._on_setup, Stage.ADVERTISE_KEYS),
    (Stage.ADVERTISE_KEYS, SecAggKeyList): (SecAggClient._on_key_list, Stage.SHARE_KEYS),
    (Stage.SHARE_KEYS, SecAggCiphertexts): (SecAggClient._on_ciphertexts, Stage.MASKED_INPUT),
    (Stage.MASKED_INPUT, SecAggUnmaskRequest): (SecAggClient._on_unmask, Stage.DONE),
    # active mode
    (Stage.ADVERTISE_KEYS, SecAggSignedKeyList): (SecAggClient._on_key_list, Stage.SHARE_KEYS),
    (Stage.MASKED_INPUT, SecAggConsistencyCheck): (
        SecAggClient._on_consistency,
        Stage.CONSISTENCY,
    ),
    (Stage.CONSISTENCY, SecAggSignedUnmaskRequest): (SecAggClient._on_unmask, Stage.DONE),
}
"""(stage, message type) -> (handler, stage after it): every transition of a client."""
