"""Shamir sharing: any t shares rebuild the secret, t - 1 reveal nothing."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simkit.rng import SeedTree
from simkit.secagg import (
    SHAMIR_PRIME,
    ShamirError,
    Share,
    interpolate_at_zero,
    reconstruct_secret,
    split_secret,
)

secrets = st.binary(min_size=32, max_size=32)


@st.composite
def sharings(draw: st.DrawFn) -> tuple[bytes, int, dict[int, Share], random.Random]:
    n = draw(st.integers(1, 20))
    t = draw(st.integers(1, n))
    secret = draw(secrets)
    indices = draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    shares = split_secret(secret, t, indices, SeedTree(draw(st.integers(0, 2**32))))
    return secret, t, shares, random.Random(draw(st.integers(0, 2**32)))


def is_probable_prime(n: int) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in random.Random(0).sample(range(2, 10_000), 40):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def test_the_field_holds_every_32_byte_secret() -> None:
    assert SHAMIR_PRIME > 2**256
    assert is_probable_prime(SHAMIR_PRIME)


@given(sharings())
def test_any_t_shares_reconstruct(case: tuple[bytes, int, dict[int, Share], random.Random]) -> None:
    secret, t, shares, rng = case
    size = rng.randint(t, len(shares))
    chosen = rng.sample(list(shares.values()), size)
    assert reconstruct_secret(chosen, t) == secret


@given(sharings(), secrets)
def test_t_minus_1_shares_reveal_nothing(
    case: tuple[bytes, int, dict[int, Share], random.Random], candidate: bytes
) -> None:
    secret, t, shares, rng = case
    few = rng.sample(list(shares.values()), t - 1)
    with pytest.raises(ShamirError, match=f"need {t} shares"):
        reconstruct_secret(few, t)
    if t >= 2:
        assert interpolate_at_zero(few).to_bytes(33, "big") != b"\0" + secret
    # Every candidate secret is consistent with the t - 1 shares: one more share,
    # on the polynomial through (0, candidate) and them, rebuilds the candidate.
    points = [(0, int.from_bytes(candidate, "big"))] + [(s.index, s.value) for s in few]
    fresh = max(shares) + 1
    completing = Share(fresh, lagrange_at(points, fresh))
    assert reconstruct_secret([*few, completing], t) == candidate


def lagrange_at(points: list[tuple[int, int]], x: int) -> int:
    total = 0
    for j, (xj, yj) in enumerate(points):
        num = den = 1
        for m, (xm, _) in enumerate(points):
            if m != j:
                num = num * (x - xm) % SHAMIR_PRIME
                den = den * (xj - xm) % SHAMIR_PRIME
        total = (total + yj * num * pow(den, -1, SHAMIR_PRIME)) % SHAMIR_PRIME
    return total


def test_coefficients_come_from_the_seed_tree() -> None:
    secret = bytes(range(32))
    a = split_secret(secret, 3, [1, 2, 3, 4], SeedTree(1).child("x"))
    b = split_secret(secret, 3, [1, 2, 3, 4], SeedTree(1).child("x"))
    c = split_secret(secret, 3, [1, 2, 3, 4], SeedTree(1).child("y"))
    assert a == b
    assert a != c


def test_share_bytes_round_trip() -> None:
    share = split_secret(b"\xff" * 32, 2, [7, 9], SeedTree(0))[7]
    assert Share.from_bytes(7, share.value_bytes()) == share
    with pytest.raises(ShamirError, match="33 bytes"):
        Share.from_bytes(7, b"\0" * 32)
    with pytest.raises(ShamirError, match="not a field element"):
        Share.from_bytes(7, SHAMIR_PRIME.to_bytes(33, "big"))


@pytest.mark.parametrize(
    ("secret", "t", "indices", "match"),
    [
        (b"short", 2, [1, 2], "a secret is 32 bytes"),
        (bytes(32), 3, [1, 2], "threshold 3 exceeds the number of shares 2"),
        (bytes(32), 0, [1, 2], "threshold must be a positive int"),
        (bytes(32), 2, [1, 1], "distinct"),
        (bytes(32), 1, [0], "share index must be >= 1"),
    ],
)
def test_bad_splits_are_named(secret: bytes, t: int, indices: list[int], match: str) -> None:
    with pytest.raises(ShamirError, match=match):
        split_secret(secret, t, indices, SeedTree(0))


def test_conflicting_shares_are_refused() -> None:
    shares = split_secret(bytes(32), 2, [1, 2], SeedTree(0))
    forged = Share(1, (shares[1].value + 1) % SHAMIR_PRIME)
    with pytest.raises(ShamirError, match="two different shares for index 1"):
        reconstruct_secret([shares[1], forged, shares[2]], 2)
    # a duplicate of the same share does not count twice
    with pytest.raises(ShamirError, match="need 2 shares to reconstruct, got 1"):
        reconstruct_secret([shares[1], shares[1]], 2)
