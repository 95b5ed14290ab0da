"""The SecAgg configuration, stage names, stage payloads and round result.

Every payload is a frozen, slotted :class:`~simkit.messages.Message`, so a
driver sends it as it is and the codec carries it; each validates its fields
on construction (a decoded message that breaks a rule is a ``DecodeError``).
Names start with ``SecAgg`` to stay clear of other protocols' types.

Stage by stage (server ``S``, client ``u``)::

    S -> u  SecAggSetup            round parameters, u's neighbours and party numbers
    u -> S  SecAggAdvertiseKeys    c_pk (encryption) and s_pk (masking) public keys    U1
    S -> u  SecAggKeyList          the keys of u's neighbours in U1
    u -> S  SecAggShareKeys        encrypted share bundles, one per neighbour in U1    U2
    S -> u  SecAggCiphertexts      the bundles addressed to u from neighbours in U2
    u -> S  SecAggMaskedInput      y_u = x_u + PRG(b_u) + sum_v +-PRG(s_uv)            U3
    S -> u  SecAggUnmaskRequest    survivors (U3) and dropped (U2 \\ U3) neighbours
    u -> S  SecAggUnmaskShares     b shares of survivors, s_sk shares of dropped       U4
    S -> u  SecAggAbort            (any stage) the reason the round stopped

In active-adversary mode (Bonawitz et al. 2017, §6) AdvertiseKeys and the
key list carry Ed25519 signatures (``SecAggSignedKeys``,
``SecAggSignedKeyList``), and a consistency check comes before unmasking::

    S -> u  SecAggConsistencyCheck      U3, the same list for everyone
    u -> S  SecAggConsistencySignature  u's signature of U3                   U3'
    S -> u  SecAggSignedUnmaskRequest   the request, with the signatures of U3
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from simkit.messages import Message
from simkit.secagg._crypto import KEY_BYTES, SIGNATURE_BYTES
from simkit.secagg._masking import PRGS, Prg
from simkit.secagg._quantize import MAX_BITS
from simkit.secagg._shamir import SHARE_BYTES

__all__ = [
    "SecAggAbort",
    "SecAggAdvertiseKeys",
    "SecAggCiphertexts",
    "SecAggConfig",
    "SecAggConsistencyCheck",
    "SecAggConsistencySignature",
    "SecAggKeyList",
    "SecAggMaskedInput",
    "SecAggResult",
    "SecAggSetup",
    "SecAggShareKeys",
    "SecAggSignedKeyList",
    "SecAggSignedKeys",
    "SecAggSignedUnmaskRequest",
    "SecAggStage",
    "SecAggUnmaskRequest",
    "SecAggUnmaskShares",
]


class SecAggStage(enum.Enum):
    """Where a core stands: the stage in progress, or how the round ended."""

    SETUP = "setup"
    ADVERTISE_KEYS = "advertise-keys"
    SHARE_KEYS = "share-keys"
    MASKED_INPUT = "masked-input"
    CONSISTENCY = "consistency-check"
    UNMASKING = "unmasking"
    DONE = "done"
    ABORTED = "aborted"


def _positive(owner: object, name: str, value: object, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{type(owner).__name__}.{name} must be an int >= {low}, got {value!r}")


def _parallel(owner: object, **columns: tuple[object, ...]) -> None:
    lengths = {name: len(col) for name, col in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{type(owner).__name__}: columns differ in length: {lengths}")


def _sized(owner: object, name: str, items: tuple[bytes, ...], size: int) -> None:
    for item in items:
        if len(item) != size:
            raise ValueError(
                f"{type(owner).__name__}.{name}: items are {size} bytes, got {len(item)}"
            )


@dataclass(frozen=True, slots=True)
class SecAggConfig:
    """Parameters of one SecAgg round, fixed by the server.

    Args:
        threshold: ``t``: shares needed to rebuild a secret, and the fewest
            clients that must survive every stage.
        bits: Inputs and masks are integers modulo ``2**bits`` (``<= 62``).
        length: Number of coordinates of every input vector.
        mode: ``"secagg"`` (complete graph) or ``"secagg+"`` (random
            ``degree``-regular graph).
        degree: SecAgg+ neighbour degree; ``None`` for the default table.
        prg: Mask generator: ``"philox"``, ``"pcg64"`` or ``"aes-ctr"``.
        round_id: The round number (bound into keys, seeds and ciphertexts).
        adversary: ``"passive"`` (semi-honest server) or ``"active"``
            (signed keys and a consistency check before unmasking).
    """

    threshold: int
    bits: int
    length: int
    mode: Literal["secagg", "secagg+"] = "secagg"
    degree: int | None = None
    prg: Prg = "philox"
    round_id: int = 0
    adversary: Literal["passive", "active"] = "passive"

    def __post_init__(self) -> None:
        _positive(self, "threshold", self.threshold, 2)
        if self.adversary not in ("passive", "active"):
            raise ValueError(
                f"SecAggConfig.adversary must be 'passive' or 'active', got {self.adversary!r}"
            )
        _positive(self, "length", self.length)
        _positive(self, "round_id", self.round_id, 0)
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise ValueError(f"SecAggConfig.bits must be an int, got {self.bits!r}")
        if not 1 < self.bits <= MAX_BITS:
            raise ValueError(f"SecAggConfig.bits must be in [2, {MAX_BITS}], got {self.bits}")
        if self.mode not in ("secagg", "secagg+"):
            raise ValueError(f"SecAggConfig.mode must be 'secagg' or 'secagg+', got {self.mode!r}")
        if self.degree is not None:
            _positive(self, "degree", self.degree)
        if self.prg not in PRGS:
            raise ValueError(f"SecAggConfig.prg must be one of {PRGS}, got {self.prg!r}")


@dataclass(frozen=True, slots=True)
class SecAggSetup(Message):
    """Server -> client: the round's parameters and the client's place in the graph."""

    round_id: int
    threshold: int
    bits: int
    length: int
    prg: str
    index: int
    neighbours: tuple[str, ...]
    indices: tuple[int, ...]

    def __post_init__(self) -> None:
        _parallel(self, neighbours=self.neighbours, indices=self.indices)
        _positive(self, "threshold", self.threshold, 2)
        _positive(self, "index", self.index)
        if self.prg not in PRGS:
            raise ValueError(f"SecAggSetup.prg must be one of {PRGS}, got {self.prg!r}")
        if not 1 < self.bits <= MAX_BITS:
            raise ValueError(f"SecAggSetup.bits must be in [2, {MAX_BITS}], got {self.bits}")


@dataclass(frozen=True, slots=True)
class SecAggAdvertiseKeys(Message):
    """Client -> server (stage 1): the client's two public keys."""

    round_id: int
    sender: str
    c_pk: bytes
    s_pk: bytes

    def __post_init__(self) -> None:
        _sized(self, "keys", (self.c_pk, self.s_pk), KEY_BYTES)


@dataclass(frozen=True, slots=True)
class SecAggKeyList(Message):
    """Server -> client (stage 2): public keys of the client's neighbourhood in U1."""

    round_id: int
    names: tuple[str, ...]
    c_pks: tuple[bytes, ...]
    s_pks: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _parallel(self, names=self.names, c_pks=self.c_pks, s_pks=self.s_pks)
        _sized(self, "c_pks", self.c_pks, KEY_BYTES)
        _sized(self, "s_pks", self.s_pks, KEY_BYTES)


@dataclass(frozen=True, slots=True)
class SecAggSignedKeys(SecAggAdvertiseKeys):
    """Client -> server (stage 1, active mode): the keys and the client's signature of them."""

    signature: bytes

    def __post_init__(self) -> None:
        SecAggAdvertiseKeys.__post_init__(self)
        _sized(self, "signature", (self.signature,), SIGNATURE_BYTES)


@dataclass(frozen=True, slots=True)
class SecAggSignedKeyList(SecAggKeyList):
    """Server -> client (stage 2, active mode): the key list with each owner's signature."""

    signatures: tuple[bytes, ...]

    def __post_init__(self) -> None:
        SecAggKeyList.__post_init__(self)
        _parallel(self, names=self.names, signatures=self.signatures)
        _sized(self, "signatures", self.signatures, SIGNATURE_BYTES)


@dataclass(frozen=True, slots=True)
class SecAggShareKeys(Message):
    """Client -> server (stage 2): one encrypted share bundle per neighbour in U1."""

    round_id: int
    sender: str
    recipients: tuple[str, ...]
    ciphertexts: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _parallel(self, recipients=self.recipients, ciphertexts=self.ciphertexts)


@dataclass(frozen=True, slots=True)
class SecAggCiphertexts(Message):
    """Server -> client (stage 3): the bundles addressed to it by neighbours in U2."""

    round_id: int
    senders: tuple[str, ...]
    ciphertexts: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _parallel(self, senders=self.senders, ciphertexts=self.ciphertexts)


@dataclass(frozen=True, slots=True, eq=False)
class SecAggMaskedInput(Message):
    """Client -> server (stage 3): the masked input vector, modulo ``2**bits``.

    It travels in the narrowest unsigned dtype that holds ``bits`` bits
    (``uint32`` for ``bits <= 32``), so masking costs no more bandwidth than
    the input itself at that precision.
    """

    round_id: int
    sender: str
    masked: np.ndarray

    def __post_init__(self) -> None:
        if self.masked.dtype.kind != "u" or self.masked.ndim != 1:
            raise ValueError(
                f"SecAggMaskedInput.masked must be a 1-d unsigned integer array, "
                f"got {self.masked.dtype} of shape {self.masked.shape}"
            )


@dataclass(frozen=True, slots=True)
class SecAggUnmaskRequest(Message):
    """Server -> client (stage 4): whose b shares and whose s_sk shares to reveal.

    ``n_survivors`` is the server's count of ``U3``, informational only: a
    client counts the lists it is given and never trusts this field.
    """

    round_id: int
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    n_survivors: int

    def __post_init__(self) -> None:
        _positive(self, "n_survivors", self.n_survivors, 0)


@dataclass(frozen=True, slots=True)
class SecAggConsistencyCheck(Message):
    """Server -> client (active mode): U3, the clients whose masked inputs are in the sum."""

    round_id: int
    survivors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SecAggConsistencySignature(Message):
    """Client -> server (active mode): the client's signature of the U3 it was sent."""

    round_id: int
    sender: str
    signature: bytes

    def __post_init__(self) -> None:
        _sized(self, "signature", (self.signature,), SIGNATURE_BYTES)


@dataclass(frozen=True, slots=True)
class SecAggSignedUnmaskRequest(SecAggUnmaskRequest):
    """Server -> client (active mode): the unmask request, with signatures of U3 to check."""

    signers: tuple[str, ...]
    signatures: tuple[bytes, ...]

    def __post_init__(self) -> None:
        SecAggUnmaskRequest.__post_init__(self)
        _parallel(self, signers=self.signers, signatures=self.signatures)
        _sized(self, "signatures", self.signatures, SIGNATURE_BYTES)


@dataclass(frozen=True, slots=True)
class SecAggUnmaskShares(Message):
    """Client -> server (stage 4): b shares of survivors, s_sk shares of dropped clients."""

    round_id: int
    sender: str
    b_owners: tuple[str, ...]
    b_shares: tuple[bytes, ...]
    sk_owners: tuple[str, ...]
    sk_shares: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _parallel(self, b_owners=self.b_owners, b_shares=self.b_shares)
        _parallel(self, sk_owners=self.sk_owners, sk_shares=self.sk_shares)
        _sized(self, "b_shares", self.b_shares, SHARE_BYTES)
        _sized(self, "sk_shares", self.sk_shares, SHARE_BYTES)


@dataclass(frozen=True, slots=True)
class SecAggAbort(Message):
    """Server -> client (any stage): the round stopped; nothing more will be asked."""

    round_id: int
    reason: str


@dataclass(frozen=True, slots=True, eq=False)
class SecAggResult:
    """How a round ended, on the server.

    Attributes:
        round_id: The round.
        total: The sum modulo ``2**bits`` of the quantized inputs of
            ``survivors``; ``None`` when the round aborted.
        survivors: U3, the clients whose masked inputs are in the sum.
        stages: The sets U1, U2, ... the round reached (each sorted).
        reason: Why the round aborted; ``None`` when it completed.
        aborted_in: The stage in which it aborted, if it did.
    """

    round_id: int
    total: np.ndarray | None
    survivors: tuple[str, ...] = ()
    stages: tuple[tuple[str, ...], ...] = field(default=())
    reason: str | None = None
    aborted_in: SecAggStage | None = None

    @property
    def ok(self) -> bool:
        """Whether the round completed with a sum."""
        return self.total is not None
