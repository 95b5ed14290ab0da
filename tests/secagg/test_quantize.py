"""Quantization: headroom, exactness of the scale, and the documented error bound."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simkit.rng import SeedTree
from simkit.secagg import MAX_BITS, Quantizer

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def setups(draw: st.DrawFn) -> tuple[Quantizer, list[list[float]]]:
    n = draw(st.integers(1, 50))
    bits = draw(st.integers(max(2, n.bit_length() + 1), MAX_BITS))
    clip = draw(st.floats(1e-3, 1e3))
    qz = Quantizer(clip=clip, bits=bits, n=n)
    m = draw(st.integers(1, n))
    dim = draw(st.integers(1, 5))
    xs = draw(st.lists(st.lists(finite, min_size=dim, max_size=dim), min_size=m, max_size=m))
    return qz, xs


def exact_error(qz: Quantizer, xs: list[list[float]], total: np.ndarray) -> list[Fraction]:
    clipped = [[min(max(v, -qz.clip), qz.clip) for v in x] for x in xs]
    got = qz.dequantize(total)
    return [
        abs(Fraction(float(got[j])) - sum(Fraction(x[j]) for x in clipped))
        for j in range(len(xs[0]))
    ]


@given(setups())
def test_sum_error_within_m_half_steps(case: tuple[Quantizer, list[list[float]]]) -> None:
    qz, xs = case
    total = qz.sum(qz.quantize(np.array(x)) for x in xs)
    bound = Fraction(qz.error_bound(len(xs)))
    assert bound == Fraction(len(xs)) * Fraction(qz.step) / 2
    assert all(err <= bound for err in exact_error(qz, xs, total))


@given(setups(), st.integers(0, 2**32))
def test_stochastic_rounding_within_m_steps(
    case: tuple[Quantizer, list[list[float]]], seed: int
) -> None:
    qz, xs = case
    rng = SeedTree(seed).numpy("rounding")
    total = qz.sum(qz.quantize(np.array(x), rng) for x in xs)
    bound = Fraction(qz.error_bound(len(xs), stochastic=True))
    assert all(err < bound for err in exact_error(qz, xs, total))


@given(st.integers(1, 1000), st.integers(12, MAX_BITS), st.floats(1e-3, 1e4), st.booleans())
def test_n_extreme_inputs_do_not_wrap(n: int, bits: int, clip: float, negative: bool) -> None:
    qz = Quantizer(clip=clip, bits=bits, n=n)
    assert n * math.ceil(clip * qz.scale) <= min(2 ** (bits - 1) - 1, 2**53)
    assert math.log2(qz.scale).is_integer()
    x = np.array([-clip if negative else clip, 0.0])
    q = qz.quantize(x)
    assert int(q.max()) < 2**bits
    total = qz.dequantize(qz.sum([q] * n))
    # the bound is exact in rationals (see the Fraction tests); comparing in
    # float64 adds the rounding of n * x[0] and of the dequantized total
    slack = 4 * float(np.spacing(abs(n * x[0])))
    assert total[0] == pytest.approx(n * x[0], abs=n * qz.step / 2 + slack)
    assert total[1] == 0.0
    # the scale is the largest power of two with that headroom
    assert n * math.ceil(clip * 2 * qz.scale) > min(2 ** (bits - 1) - 1, 2**53)


def test_stochastic_rounding_is_seeded_and_unbiased() -> None:
    qz = Quantizer(clip=1.0, bits=16, n=1)
    x = np.full(20_000, qz.step / 4)
    a = qz.quantize(x, SeedTree(1).numpy("r"))
    b = qz.quantize(x, SeedTree(1).numpy("r"))
    np.testing.assert_array_equal(a, b)
    mean = qz.dequantize(a).mean()
    assert mean == pytest.approx(qz.step / 4, rel=0.1)
    assert not qz.quantize(x).any()  # round half to even: a quarter step rounds to 0


def test_negative_values_are_twos_complement() -> None:
    qz = Quantizer(clip=1.0, bits=8, n=1)
    q = qz.quantize(np.array([-qz.step, qz.step, 0.0]))
    assert q.tolist() == [255, 1, 0]
    assert qz.dequantize(q).tolist() == [-qz.step, qz.step, 0.0]


def test_shape_is_kept() -> None:
    qz = Quantizer(clip=2.0, bits=32, n=4)
    q = qz.quantize(np.ones((2, 3)))
    assert q.shape == (2, 3)
    assert q.dtype == np.uint64
    np.testing.assert_array_equal(qz.dequantize(q), np.ones((2, 3)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bits": 63}, r"bits must be in \[2, 62\]"),
        ({"bits": 1}, r"bits must be in \[2, 62\]"),
        ({"clip": 0.0}, "clip must be positive"),
        ({"clip": math.inf}, "clip must be positive"),
        ({"n": 0}, "n must be a positive int"),
        ({"bits": 4, "n": 8}, "no headroom for n=8"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Quantizer(**{"clip": 1.0, "bits": 16, "n": 2, **kwargs})


def test_non_finite_input_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        Quantizer(clip=1.0, bits=16, n=2).quantize(np.array([0.0, np.nan]))


def test_empty_sum_is_refused() -> None:
    with pytest.raises(ValueError, match="no vectors"):
        Quantizer(clip=1.0, bits=16, n=2).sum([])
