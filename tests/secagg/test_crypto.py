"""X25519 agreement, HKDF derivations and AES-GCM bundles."""

from __future__ import annotations

import pytest

from simkit.rng import SeedTree
from simkit.secagg import (
    KeyPair,
    SecAggCryptoError,
    agree,
    decrypt,
    encrypt,
    encryption_key,
    mask_seed,
)


def pair(name: str) -> KeyPair:
    return KeyPair.from_seed(SeedTree(3).bytes("key", name))


def test_keys_come_from_the_seed() -> None:
    assert pair("a").public == pair("a").public
    assert pair("a").public != pair("b").public
    assert len(pair("a").public) == 32
    assert pair("a").private_bytes() == SeedTree(3).bytes("key", "a")


def test_agreement_is_symmetric_and_derivations_are_separated() -> None:
    a, b = pair("a"), pair("b")
    shared = agree(a.private, b.public)
    assert shared == agree(b.private_bytes(), a.public)
    assert mask_seed(shared, "a", "b", 1) == mask_seed(shared, "b", "a", 1)
    assert mask_seed(shared, "a", "b", 1) != mask_seed(shared, "a", "b", 2)
    to_b, to_a = encryption_key(shared, "a", "b", 1), encryption_key(shared, "b", "a", 1)
    assert len({to_b, to_a, mask_seed(shared, "a", "b", 1), shared}) == 4


def test_low_order_public_key_is_refused() -> None:
    with pytest.raises(SecAggCryptoError, match="key agreement failed"):
        agree(pair("a").private, bytes(32))
    with pytest.raises(SecAggCryptoError, match="public key is 32 bytes"):
        agree(pair("a").private, b"short")
    with pytest.raises(SecAggCryptoError, match="private key is 32 bytes"):
        KeyPair.from_seed(b"short")


def test_bundle_round_trip_and_bindings() -> None:
    key = encryption_key(agree(pair("a").private, pair("b").public), "a", "b", 0)
    nonce = SeedTree(3).bytes("nonce", n=12)
    box = encrypt(key, b"shares", sender="a", receiver="b", round_id=0, nonce=nonce)
    assert box[:12] == nonce
    assert decrypt(key, box, sender="a", receiver="b", round_id=0) == b"shares"
    for sender, receiver, round_id in [("c", "b", 0), ("a", "c", 0), ("a", "b", 1)]:
        with pytest.raises(SecAggCryptoError, match="does not authenticate"):
            decrypt(key, box, sender=sender, receiver=receiver, round_id=round_id)
    tampered = box[:-1] + bytes([box[-1] ^ 1])
    with pytest.raises(SecAggCryptoError, match="does not authenticate"):
        decrypt(key, tampered, sender="a", receiver="b", round_id=0)
    with pytest.raises(SecAggCryptoError, match="too short"):
        decrypt(key, box[:20], sender="a", receiver="b", round_id=0)
    with pytest.raises(SecAggCryptoError, match="12-byte nonce"):
        encrypt(key, b"x", sender="a", receiver="b", round_id=0, nonce=b"123")
