"""Shamir t-of-n secret sharing of 32-byte secrets.

The field is the integers modulo ``SHAMIR_PRIME = 2**256 + 297``, the
smallest prime above ``2**256``: every 32-byte string (read big-endian) is a
field element as it is, with no chunking and no restriction on the secret. A
share is the point ``(index, f(index))`` of a random polynomial ``f`` of
degree ``t - 1`` with ``f(0) = secret``; the index is the holder's party
number (``1..n``). Any ``t`` shares determine ``f`` and so the secret; any
``t - 1`` of them are consistent with every candidate secret (for each
candidate there is exactly one polynomial of degree ``t - 1`` through it and
the ``t - 1`` points), so they reveal nothing.

The ``t - 1`` random coefficients come from the seed tree: coefficient ``j``
is 48 derived bytes reduced modulo the prime (statistical distance from
uniform below ``2**-128``), so a run's shares are replayable.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from simkit.secagg._crypto import ByteSource

__all__ = [
    "SECRET_BYTES",
    "SHAMIR_PRIME",
    "SHARE_BYTES",
    "ShamirError",
    "Share",
    "interpolate_at_zero",
    "reconstruct_secret",
    "split_secret",
]

SHAMIR_PRIME: Final = (1 << 256) + 297
"""The field modulus: the smallest prime above ``2**256``."""

SECRET_BYTES: Final = 32
"""Length of a shared secret."""

SHARE_BYTES: Final = 33
"""Length of an encoded share value (the field needs 257 bits)."""

_COEF_BYTES: Final = 48


class ShamirError(ValueError):
    """Shares that cannot give the secret: too few, inconsistent or malformed."""


@dataclass(frozen=True, slots=True)
class Share:
    """One share: the point ``(index, value)`` of the sharing polynomial.

    Attributes:
        index: The holder's party number, ``>= 1``.
        value: ``f(index)`` modulo :data:`SHAMIR_PRIME`.
    """

    index: int
    value: int

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise ShamirError(f"share index must be an int, got {self.index!r}")
        if not 1 <= self.index < SHAMIR_PRIME:
            raise ShamirError(f"share index must be >= 1, got {self.index}")
        if not 0 <= self.value < SHAMIR_PRIME:
            raise ShamirError("share value is not a field element")

    def value_bytes(self) -> bytes:
        """The value as :data:`SHARE_BYTES` big-endian bytes."""
        return self.value.to_bytes(SHARE_BYTES, "big")

    @classmethod
    def from_bytes(cls, index: int, data: bytes) -> Share:
        """Rebuild a share from its index and :meth:`value_bytes`.

        Raises:
            ShamirError: ``data`` is not :data:`SHARE_BYTES` long or not a
                field element.
        """
        if len(data) != SHARE_BYTES:
            raise ShamirError(f"a share value is {SHARE_BYTES} bytes, got {len(data)}")
        return cls(index, int.from_bytes(data, "big"))


def _check_threshold(threshold: int, count: int) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ShamirError(f"threshold must be a positive int, got {threshold!r}")
    if threshold > count:
        raise ShamirError(f"threshold {threshold} exceeds the number of shares {count}")


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    """``f(x)`` by Horner's rule; ``coefficients[0]`` is ``f(0)``."""
    acc = 0
    for c in reversed(coefficients):
        acc = (acc * x + c) % SHAMIR_PRIME
    return acc


def split_secret(
    secret: bytes, threshold: int, indices: Iterable[int], seed: ByteSource
) -> dict[int, Share]:
    """Split ``secret`` into one share per index, any ``threshold`` of which rebuild it.

    Args:
        secret: :data:`SECRET_BYTES` bytes.
        threshold: ``t``, the number of shares needed; ``1 <= t <= len(indices)``.
        indices: Distinct party numbers ``>= 1`` of the holders.
        seed: The seed-tree node (or :class:`~simkit.secagg.OsEntropy`) the
            polynomial's coefficients come from; use one node per secret
            (reusing one for two secrets leaks their difference to anyone
            holding one share of each).

    Returns:
        Index -> share, in the order of ``indices``.

    Raises:
        ShamirError: The secret has the wrong length, indices repeat or are
            not positive, or the threshold is out of range.
    """
    if len(secret) != SECRET_BYTES:
        raise ShamirError(f"a secret is {SECRET_BYTES} bytes, got {len(secret)}")
    xs = list(indices)
    if len(set(xs)) != len(xs):
        raise ShamirError("share indices must be distinct")
    _check_threshold(threshold, len(xs))
    coefficients = [int.from_bytes(secret, "big")]
    for j in range(1, threshold):
        raw = int.from_bytes(seed.bytes("shamir", "coef", j, n=_COEF_BYTES), "big")
        coefficients.append(raw % SHAMIR_PRIME)
    return {x: Share(x, _evaluate(coefficients, x)) for x in xs}


@functools.lru_cache(maxsize=64)
def _lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """The Lagrange basis at 0 for the points ``xs``, cached: in a round, the
    secrets of many clients are rebuilt from shares held by one set of clients.

    ``l_j(0) = prod_{m != j} x_m / prod_{m != j} (x_m - x_j)``: numerators from
    prefix and suffix products, and all denominators inverted with one modular
    inversion (Montgomery's trick) instead of one each.
    """
    p, k = SHAMIR_PRIME, len(xs)
    prefix = [1] * (k + 1)  # prefix[j] = x_0 ... x_{j-1}
    for j, x in enumerate(xs):
        prefix[j + 1] = prefix[j] * x % p
    suffix = [1] * (k + 1)  # suffix[j] = x_j ... x_{k-1}
    for j in range(k - 1, -1, -1):
        suffix[j] = suffix[j + 1] * xs[j] % p
    dens = []
    for j, xj in enumerate(xs):
        den = 1
        for m, xm in enumerate(xs):
            if m != j:
                den = den * (xm - xj) % p
        dens.append(den)
    running = [1] * (k + 1)  # running[j] = dens[0] ... dens[j-1]
    for j, den in enumerate(dens):
        running[j + 1] = running[j] * den % p
    inv = pow(running[k], -1, p)  # 1 / (dens[0] ... dens[k-1])
    coefficients = [0] * k
    for j in range(k - 1, -1, -1):
        den_inv = inv * running[j] % p  # 1 / dens[j]
        inv = inv * dens[j] % p
        coefficients[j] = prefix[j] * suffix[j + 1] % p * den_inv % p
    return tuple(coefficients)


def interpolate_at_zero(shares: Sequence[Share]) -> int:
    """``f(0)`` of the polynomial of degree ``len(shares) - 1`` through the shares.

    Raises:
        ShamirError: No shares, or two shares with one index.
    """
    if not shares:
        raise ShamirError("no shares to interpolate")
    xs = tuple(s.index for s in shares)
    if len(set(xs)) != len(xs):
        raise ShamirError("two shares have the same index")
    basis = _lagrange_at_zero(xs)
    return sum(s.value * c for s, c in zip(shares, basis, strict=True)) % SHAMIR_PRIME


def reconstruct_secret(shares: Iterable[Share], threshold: int) -> bytes:
    """Rebuild a secret from at least ``threshold`` shares.

    The ``threshold`` shares with the smallest indices are used; with honest
    holders any ``threshold`` of them give the same secret.

    Args:
        shares: Shares of one secret (duplicates of one share are allowed).
        threshold: ``t`` of the sharing.

    Returns:
        The :data:`SECRET_BYTES`-byte secret.

    Raises:
        ShamirError: Fewer than ``threshold`` distinct shares, two different
            values for one index, or shares that do not interpolate to a
            32-byte secret (they belong to different sharings).
    """
    by_index: dict[int, Share] = {}
    for share in shares:
        old = by_index.setdefault(share.index, share)
        if old.value != share.value:
            raise ShamirError(f"two different shares for index {share.index}")
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ShamirError(f"threshold must be a positive int, got {threshold!r}")
    if len(by_index) < threshold:
        raise ShamirError(
            f"need {threshold} shares to reconstruct, got {len(by_index)}; "
            "fewer than the threshold reveal nothing about the secret"
        )
    chosen = [by_index[i] for i in sorted(by_index)[:threshold]]
    secret = interpolate_at_zero(chosen)
    if secret >= 1 << (8 * SECRET_BYTES):
        raise ShamirError("shares are inconsistent: they interpolate outside the secret range")
    return secret.to_bytes(SECRET_BYTES, "big")
