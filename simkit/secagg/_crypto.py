"""Key agreement (X25519), key derivation (HKDF-SHA256) and share encryption (AES-GCM).

Every client holds two X25519 key pairs per round: ``c`` keys agree on the
keys that encrypt share bundles sent through the server, ``s`` keys agree on
the seeds of pairwise masks. Private keys are 32 bytes from the seed tree
(``X25519PrivateKey.from_private_bytes``), so a run replays exactly; a real
deployment draws them from the operating system instead: give the client
core an :class:`OsEntropy` in place of its seed-tree node, the only change
needed.

The raw X25519 secret is never used directly: HKDF-SHA256 derives

* the **mask seed** of a pair, with info ``simkit.secagg.v1/mask`` and the
  round and the two names in sorted order (both ends derive the same seed);
* the **encryption key** of one direction, with info
  ``simkit.secagg.v1/encrypt`` and the round, the sender and the receiver.

A directional encryption key encrypts one bundle per round; its nonce comes
from the sender's seed tree and travels in front of the ciphertext, so a
nonce is never reused under a key. The associated data binds the sender,
the receiver and the round: a bundle replayed to another client, from
another sender or into another round fails to decrypt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from simkit.rng import PathPart
from simkit.secagg._errors import SecAggCryptoError

__all__ = [
    "KEY_BYTES",
    "NONCE_BYTES",
    "SIGNATURE_BYTES",
    "ByteSource",
    "Identity",
    "KeyPair",
    "OsEntropy",
    "agree",
    "associated_data",
    "decrypt",
    "encrypt",
    "encryption_key",
    "mask_seed",
    "signed_keys_statement",
    "survivors_statement",
    "verify",
]

KEY_BYTES: Final = 32
"""Length of private keys, public keys, mask seeds and encryption keys."""

NONCE_BYTES: Final = 12
"""AES-GCM nonce length."""

_MASK_INFO: Final = b"simkit.secagg.v1/mask"
_ENCRYPT_INFO: Final = b"simkit.secagg.v1/encrypt"
_AAD_INFO: Final = b"simkit.secagg.v1/bundle"
_KEYS_INFO: Final = b"simkit.secagg.v1/keys"
_SURVIVORS_INFO: Final = b"simkit.secagg.v1/survivors"

SIGNATURE_BYTES: Final = 64
"""Length of an Ed25519 signature."""


class ByteSource(Protocol):
    """Where secret bytes come from: :class:`~simkit.rng.SeedTree` or :class:`OsEntropy`."""

    def bytes(self, *path: PathPart, n: int = 32) -> bytes:
        """``n`` bytes for the purpose named by ``path``."""
        ...

    def child(self, *path: PathPart) -> ByteSource:
        """The source for the purposes below ``path``."""
        ...


class OsEntropy:
    """A :class:`ByteSource` of fresh operating-system randomness (``os.urandom``).

    Give it to :class:`~simkit.secagg.SecAggClient` instead of a seed tree to
    draw keys, seeds, Shamir coefficients and nonces as a real deployment
    must: the round is then no longer replayable.
    """

    def bytes(self, *path: PathPart, n: int = 32) -> bytes:
        """``n`` fresh random bytes (``path`` is ignored)."""
        return os.urandom(n)

    def child(self, *path: PathPart) -> OsEntropy:
        """Itself: every draw is fresh anyway."""
        return self


def _encode(*parts: str | int) -> bytes:
    """Injective encoding of names and integers (length-prefixed, typed)."""
    out = bytearray()
    for part in parts:
        if isinstance(part, str):
            raw, tag = part.encode(), b"s"
        else:
            raw, tag = str(part).encode(), b"i"
        out += tag + len(raw).to_bytes(4, "big") + raw
    return bytes(out)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An X25519 key pair.

    Attributes:
        private: The private key.
        public: The raw 32-byte public key, as advertised.
    """

    private: X25519PrivateKey
    public: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """The key pair whose private key is ``seed`` (32 bytes, e.g. from the seed tree).

        Raises:
            SecAggCryptoError: ``seed`` is not 32 bytes.
        """
        if len(seed) != KEY_BYTES:
            raise SecAggCryptoError(f"an X25519 private key is {KEY_BYTES} bytes, got {len(seed)}")
        private = X25519PrivateKey.from_private_bytes(seed)
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(private, public)

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key (what Shamir shares of ``s_sk`` carry)."""
        return self.private.private_bytes_raw()


def agree(private: X25519PrivateKey | bytes, peer_public: bytes) -> bytes:
    """The raw X25519 shared secret of ``private`` and a peer's public key.

    Raises:
        SecAggCryptoError: The public key is malformed or of low order (the
            shared secret would be all zeros).
    """
    if isinstance(private, bytes):
        private = KeyPair.from_seed(private).private
    if len(peer_public) != KEY_BYTES:
        raise SecAggCryptoError(
            f"an X25519 public key is {KEY_BYTES} bytes, got {len(peer_public)}"
        )
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:
        raise SecAggCryptoError(f"key agreement failed: {exc}") from None


def _hkdf(shared: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(shared)


def mask_seed(shared: bytes, a: str, b: str, round_id: int) -> bytes:
    """The 32-byte seed of the pairwise mask of ``a`` and ``b`` (symmetric in them)."""
    lo, hi = sorted((a, b))
    return _hkdf(shared, _MASK_INFO + _encode(round_id, lo, hi))


def encryption_key(shared: bytes, sender: str, receiver: str, round_id: int) -> bytes:
    """The AES-256-GCM key for bundles from ``sender`` to ``receiver`` in one round."""
    return _hkdf(shared, _ENCRYPT_INFO + _encode(round_id, sender, receiver))


def associated_data(sender: str, receiver: str, round_id: int) -> bytes:
    """What a bundle's authentication tag binds: sender, receiver and round."""
    return _AAD_INFO + _encode(round_id, sender, receiver)


def encrypt(
    key: bytes, plaintext: bytes, *, sender: str, receiver: str, round_id: int, nonce: bytes
) -> bytes:
    """Encrypt and authenticate ``plaintext``; returns ``nonce || ciphertext || tag``.

    Args:
        key: A key from :func:`encryption_key`.
        plaintext: The bundle.
        sender: The sending client's name.
        receiver: The receiving client's name.
        round_id: The round.
        nonce: :data:`NONCE_BYTES` bytes never used before with ``key``.

    Raises:
        SecAggCryptoError: The key or nonce has the wrong length.
    """
    if len(nonce) != NONCE_BYTES or len(key) != KEY_BYTES:
        raise SecAggCryptoError(
            f"AES-GCM needs a {KEY_BYTES}-byte key and a {NONCE_BYTES}-byte nonce"
        )
    aad = associated_data(sender, receiver, round_id)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def decrypt(key: bytes, box: bytes, *, sender: str, receiver: str, round_id: int) -> bytes:
    """Inverse of :func:`encrypt`.

    Raises:
        SecAggCryptoError: The box is too short, was altered, or was made for
            another sender, receiver, round or key.
    """
    if len(box) < NONCE_BYTES + 16:
        raise SecAggCryptoError(f"ciphertext from {sender!r} is too short ({len(box)} bytes)")
    aad = associated_data(sender, receiver, round_id)
    try:
        return AESGCM(key).decrypt(box[:NONCE_BYTES], box[NONCE_BYTES:], aad)
    except InvalidTag:
        raise SecAggCryptoError(
            f"ciphertext from {sender!r} to {receiver!r} in round {round_id} does not "
            "authenticate (altered, misrouted or under another key)"
        ) from None


@dataclass(frozen=True, slots=True)
class Identity:
    """A client's long-term Ed25519 signing key (active-adversary mode).

    Its public half must reach the other clients without passing through
    the server (a PKI); the server relays signatures it cannot forge.

    Attributes:
        private: The signing key.
        public: The raw 32-byte verification key.
    """

    private: Ed25519PrivateKey
    public: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The identity whose private key is ``seed`` (32 bytes).

        Raises:
            SecAggCryptoError: ``seed`` is not 32 bytes.
        """
        if len(seed) != KEY_BYTES:
            raise SecAggCryptoError(f"an Ed25519 private key is {KEY_BYTES} bytes, got {len(seed)}")
        private = Ed25519PrivateKey.from_private_bytes(seed)
        return cls(private, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def sign(self, statement: bytes) -> bytes:
        """The 64-byte signature of ``statement`` (deterministic)."""
        return self.private.sign(statement)


def verify(public: bytes, signature: bytes, statement: bytes) -> bool:
    """Whether ``signature`` is ``public``'s signature of ``statement``."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, statement)
    except (InvalidSignature, ValueError):
        return False
    return True


def signed_keys_statement(round_id: int, name: str, c_pk: bytes, s_pk: bytes) -> bytes:
    """What a client signs in AdvertiseKeys: its two public keys for the round."""
    return _KEYS_INFO + _encode(round_id, name) + c_pk + s_pk


def survivors_statement(round_id: int, survivors: tuple[str, ...]) -> bytes:
    """What a client signs in the consistency check: the round's U3, sorted."""
    return _SURVIVORS_INFO + _encode(round_id, len(survivors), *sorted(survivors))
