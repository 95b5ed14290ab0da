"""Mask expansion from 32-byte seeds, masked inputs, the masked sum and unmasking.

A mask is a vector of uint64 values expanded from a 32-byte seed by a
pseudo-random generator, produced directly in integer dtype (no float
detour). Three generators:

* ``"philox"`` (default): numpy's Philox4x64, a keyed counter-based
  generator; the seed's first 16 bytes are the 128-bit key, the last 16 the
  high half of the 256-bit counter (the low half counts blocks). All 256
  bits are used.
* ``"pcg64"``: numpy's PCG64 seeded through ``SeedSequence`` with the
  whole seed as one 256-bit integer (never truncated). Fastest.
* ``"aes-ctr"``: AES-256 in counter mode (the ``cryptography`` package),
  keyed with the seed, encrypting zeros: the cryptographic option.

Arithmetic is modulo ``2**64`` in uint64 (numpy arrays wrap silently) and
reduced modulo ``2**bits`` at the end, which is correct because ``2**bits``
divides ``2**64``. Masks are added to an accumulator chunk by chunk, so the
generator's output stays in cache and no full-length temporary is made.

Signs: a client adds the pairwise mask it shares with a peer when its name
sorts first, and subtracts it otherwise, so the masks of a pair cancel in the
sum; a self mask is always added.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from simkit.secagg._crypto import KEY_BYTES
from simkit.secagg._quantize import MAX_BITS

__all__ = [
    "DEFAULT_PRG",
    "PRGS",
    "Prg",
    "add_mask",
    "expand_mask",
    "mask_input",
    "pair_sign",
    "sum_masked",
    "unmask_sum",
    "wire_dtype",
]

Prg = Literal["philox", "pcg64", "aes-ctr"]
PRGS: Final[tuple[Prg, ...]] = ("philox", "pcg64", "aes-ctr")
DEFAULT_PRG: Final[Prg] = "philox"

_CHUNK: Final = 1 << 15  # 256 KiB of uint64: stays in L2 while it is added
_ZERO_BLOCK: Final = bytes(8 * _CHUNK)
U64Array = npt.NDArray[np.uint64]


def _check(seed: bytes, prg: str) -> None:
    if len(seed) != KEY_BYTES:
        raise ValueError(f"a mask seed is {KEY_BYTES} bytes, got {len(seed)}")
    if prg not in PRGS:
        raise ValueError(f"unknown mask generator {prg!r}; choose one of {', '.join(PRGS)}")


def _check_bits(bits: int) -> np.uint64:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 < bits <= MAX_BITS:
        raise ValueError(f"bits must be an int in [2, {MAX_BITS}], got {bits!r}")
    return np.uint64((1 << bits) - 1)


def _bit_generator(seed: bytes, prg: Prg) -> np.random.BitGenerator:
    if prg == "philox":
        key = int.from_bytes(seed[:16], "little")
        counter = int.from_bytes(seed[16:], "little") << 128
        return np.random.Philox(key=key, counter=counter)
    return np.random.PCG64(np.random.SeedSequence(int.from_bytes(seed, "little")))


def _chunks(seed: bytes, length: int, prg: Prg) -> Iterator[tuple[int, U64Array]]:
    """``(start, raw uint64 chunk)`` covering ``length`` values of the stream."""
    if prg == "aes-ctr":
        enc = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
        buf = bytearray(8 * _CHUNK + 15)  # update_into wants block_size - 1 spare bytes
        for start in range(0, length, _CHUNK):
            count = min(_CHUNK, length - start)
            enc.update_into(memoryview(_ZERO_BLOCK)[: 8 * count], buf)
            yield start, np.frombuffer(buf, dtype="<u8", count=count)
        return
    bg = _bit_generator(seed, prg)
    for start in range(0, length, _CHUNK):
        yield start, bg.random_raw(min(_CHUNK, length - start))


def add_mask(acc: U64Array, seed: bytes, sign: int = 1, prg: Prg = DEFAULT_PRG) -> None:
    """Add (``sign=1``) or subtract (``sign=-1``) the mask of ``seed`` to ``acc``, in place.

    The result is modulo ``2**64``; reduce it modulo ``2**bits`` when done.

    Args:
        acc: A contiguous one-dimensional uint64 array.
        seed: The 32-byte mask seed.
        sign: ``1`` or ``-1``.
        prg: The mask generator.

    Raises:
        ValueError: Bad seed, sign, generator or accumulator.
    """
    _check(seed, prg)
    if sign not in (1, -1):
        raise ValueError(f"sign must be 1 or -1, got {sign!r}")
    if acc.dtype != np.uint64 or acc.ndim != 1:
        raise ValueError(f"masks apply to 1-d uint64 arrays, got {acc.dtype} of shape {acc.shape}")
    op = np.add if sign == 1 else np.subtract
    for start, chunk in _chunks(seed, acc.shape[0], prg):
        part = acc[start : start + chunk.shape[0]]
        op(part, chunk, out=part)


def expand_mask(seed: bytes, length: int, bits: int, prg: Prg = DEFAULT_PRG) -> U64Array:
    """The mask of ``seed``: ``length`` uint64 values in ``[0, 2**bits)``.

    Args:
        seed: 32 bytes (a self-mask seed or a pairwise seed from HKDF).
        length: Number of values.
        bits: Modulus exponent, ``2 <= bits <= 62``.
        prg: ``"philox"``, ``"pcg64"`` or ``"aes-ctr"``.

    Raises:
        ValueError: Bad seed length, generator, length or bits.
    """
    mask = _check_bits(bits)
    _check(seed, prg)
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    out = np.empty(length, dtype=np.uint64)
    for start, chunk in _chunks(seed, length, prg):
        np.bitwise_and(chunk, mask, out=out[start : start + chunk.shape[0]])
    return out


def wire_dtype(bits: int) -> np.dtype[np.unsignedinteger[Any]]:
    """The narrowest unsigned dtype holding values below ``2**bits`` (how masked inputs travel)."""
    _check_bits(bits)
    for dtype in (np.uint8, np.uint16, np.uint32):
        if bits <= 8 * np.dtype(dtype).itemsize:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def pair_sign(me: str, peer: str) -> int:
    """``+1`` when ``me`` sorts before ``peer`` (it adds their mask), else ``-1``."""
    if me == peer:
        raise ValueError(f"a client has no pairwise mask with itself ({me!r})")
    return 1 if me < peer else -1


def mask_input(
    q: npt.ArrayLike,
    *,
    me: str,
    self_seed: bytes,
    pair_seeds: Iterable[tuple[str, bytes]],
    bits: int,
    prg: Prg = DEFAULT_PRG,
) -> U64Array:
    """A client's masked input ``q + PRG(b) + sum_v sign(me, v) PRG(s_me,v) mod 2**bits``.

    Args:
        q: The quantized input (uint64 values below ``2**bits``, 1-d).
        me: The client's name.
        self_seed: The self-mask seed ``b``.
        pair_seeds: ``(peer, seed)`` for every peer whose mask it adds.
        bits: Modulus exponent.
        prg: The mask generator.
    """
    mask = _check_bits(bits)
    acc = np.array(q, dtype=np.uint64).reshape(-1)
    add_mask(acc, self_seed, 1, prg)
    for peer, seed in pair_seeds:
        add_mask(acc, seed, pair_sign(me, peer), prg)
    np.bitwise_and(acc, mask, out=acc)
    return acc


def sum_masked(vectors: Iterable[npt.ArrayLike], length: int, bits: int) -> U64Array:
    """The modular sum of masked inputs, each of ``length`` values.

    Raises:
        ValueError: A vector has another length.
    """
    mask = _check_bits(bits)
    total = np.zeros(length, dtype=np.uint64)
    for v in vectors:
        arr = np.asarray(v, dtype=np.uint64)
        if arr.shape != (length,):
            raise ValueError(f"masked input of shape {arr.shape}, expected ({length},)")
        np.add(total, arr, out=total)
    np.bitwise_and(total, mask, out=total)
    return total


def unmask_sum(
    total: npt.ArrayLike,
    *,
    self_seeds: Iterable[bytes],
    pair_corrections: Iterable[tuple[int, bytes]],
    bits: int,
    prg: Prg = DEFAULT_PRG,
) -> U64Array:
    """Remove the survivors' self masks and the pairwise masks they share with dropped peers.

    Args:
        total: The modular sum of the survivors' masked inputs.
        self_seeds: The reconstructed self-mask seeds of the survivors.
        pair_corrections: ``(sign, seed)`` per (survivor, dropped peer) pair,
            ``sign`` being the one the survivor used (:func:`pair_sign`).
        bits: Modulus exponent.
        prg: The mask generator.

    Returns:
        The sum of the survivors' quantized inputs modulo ``2**bits``.
    """
    mask = _check_bits(bits)
    acc = np.array(total, dtype=np.uint64).reshape(-1)
    for seed in self_seeds:
        add_mask(acc, seed, -1, prg)
    for sign, seed in pair_corrections:
        add_mask(acc, seed, -sign, prg)
    np.bitwise_and(acc, mask, out=acc)
    return acc
