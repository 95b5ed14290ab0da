"""Mask expansion and the masked-sum arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from simkit.secagg import (
    MAX_BITS,
    PRGS,
    add_mask,
    expand_mask,
    mask_input,
    pair_sign,
    sum_masked,
    unmask_sum,
    wire_dtype,
)
from simkit.secagg._masking import _CHUNK

seeds = st.binary(min_size=32, max_size=32)
prgs = st.sampled_from(PRGS)


@given(seeds, prgs, st.integers(2, MAX_BITS), st.integers(0, 300))
def test_same_seed_same_mask_in_range(seed: bytes, prg: str, bits: int, length: int) -> None:
    a = expand_mask(seed, length, bits, prg)  # type: ignore[arg-type]
    b = expand_mask(seed, length, bits, prg)  # type: ignore[arg-type]
    assert a.dtype == np.uint64
    assert a.shape == (length,)
    np.testing.assert_array_equal(a, b)
    assert length == 0 or int(a.max()) < 2**bits


@given(seeds, prgs, st.integers(0, 31), st.integers(0, 7))
def test_every_seed_bit_matters(seed: bytes, prg: str, byte: int, bit: int) -> None:
    other = bytearray(seed)
    other[byte] ^= 1 << bit
    a = expand_mask(seed, 8, 62, prg)  # type: ignore[arg-type]
    b = expand_mask(bytes(other), 8, 62, prg)  # type: ignore[arg-type]
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("prg", PRGS)
def test_generators_differ_from_each_other(prg: str) -> None:
    others = [p for p in PRGS if p != prg]
    mine = expand_mask(bytes(32), 16, 62, prg)  # type: ignore[arg-type]
    for other in others:
        assert not np.array_equal(mine, expand_mask(bytes(32), 16, 62, other))  # type: ignore[arg-type]


@pytest.mark.parametrize("prg", PRGS)
def test_chunked_addition_matches_expansion(prg: str) -> None:
    seed = bytes(range(32))
    length = 2 * _CHUNK + 123
    acc = np.zeros(length, dtype=np.uint64)
    add_mask(acc, seed, 1, prg)  # type: ignore[arg-type]
    np.testing.assert_array_equal(acc & np.uint64(2**40 - 1), expand_mask(seed, length, 40, prg))  # type: ignore[arg-type]
    add_mask(acc, seed, -1, prg)  # type: ignore[arg-type]
    assert not acc.any()


def test_aes_ctr_is_aes_256_ctr_over_zeros() -> None:
    seed = bytes(range(32))
    enc = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    raw = np.frombuffer(enc.update(bytes(8 * 100)), dtype="<u8")
    np.testing.assert_array_equal(expand_mask(seed, 100, 62, "aes-ctr"), raw & np.uint64(2**62 - 1))


def test_pcg64_and_philox_are_uniform_enough() -> None:
    for prg in ("pcg64", "philox"):
        mask = expand_mask(b"\x07" * 32, 100_000, 8, prg)
        counts = np.bincount(mask.astype(np.int64), minlength=256)
        assert counts.min() > 300
        assert counts.max() < 500


@given(st.integers(2, 6), st.integers(2, MAX_BITS), st.integers(0, 2**32), prgs)
def test_pairwise_masks_cancel_and_self_masks_unmask(
    n: int, bits: int, seed: int, prg: str
) -> None:
    rng = np.random.default_rng(seed)
    names = [f"c{i}" for i in range(n)]
    q = {u: rng.integers(0, 2**bits, size=7, dtype=np.uint64) for u in names}
    b = {u: rng.bytes(32) for u in names}
    s = {frozenset((u, v)): rng.bytes(32) for u in names for v in names if u < v}
    masked = [
        mask_input(
            q[u],
            me=u,
            self_seed=b[u],
            pair_seeds=[(v, s[frozenset((u, v))]) for v in names if v != u],
            bits=bits,
            prg=prg,  # type: ignore[arg-type]
        )
        for u in names
    ]
    assert all(int(m.max()) < 2**bits for m in masked)
    # the last client dropped after masking: its masks with the others are removed
    survivors, gone = names[:-1], names[-1]
    total = sum_masked(masked[:-1], 7, bits)
    plain = unmask_sum(
        total,
        self_seeds=[b[u] for u in survivors],
        pair_corrections=[(pair_sign(u, gone), s[frozenset((u, gone))]) for u in survivors],
        bits=bits,
        prg=prg,  # type: ignore[arg-type]
    )
    expected = sum_masked([q[u] for u in survivors], 7, bits)
    np.testing.assert_array_equal(plain, expected)


def test_signs_follow_name_order() -> None:
    assert pair_sign("a", "b") == 1
    assert pair_sign("b", "a") == -1
    with pytest.raises(ValueError, match="with itself"):
        pair_sign("a", "a")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: expand_mask(b"short", 4, 16), "a mask seed is 32 bytes"),
        (lambda: expand_mask(bytes(32), 4, 16, "md5"), "unknown mask generator 'md5'"),  # type: ignore[arg-type]
        (lambda: expand_mask(bytes(32), 4, 64), r"bits must be an int in \[2, 62\]"),
        (lambda: expand_mask(bytes(32), -1, 16), "length must be >= 0"),
        (lambda: add_mask(np.zeros(3), bytes(32)), "1-d uint64"),
        (lambda: add_mask(np.zeros(3, np.uint64), bytes(32), 2), "sign must be 1 or -1"),
        (lambda: sum_masked([np.zeros(2, np.uint64)], 3, 16), r"shape \(2,\), expected \(3,\)"),
    ],
)
def test_bad_arguments_are_named(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("bits", "dtype"),
    [(2, np.uint8), (8, np.uint8), (9, np.uint16), (32, np.uint32), (33, np.uint64)],
)
def test_wire_dtype_is_the_narrowest(bits: int, dtype: type) -> None:
    assert wire_dtype(bits) == np.dtype(dtype)
