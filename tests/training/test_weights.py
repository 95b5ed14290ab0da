"""Weights: arithmetic, digest, serialization."""

from __future__ import annotations

import numpy as np
import pytest

from simkit.training import Weights


def _w(scale: float = 1.0) -> Weights:
    return Weights({"b": np.arange(3.0) * scale, "a": np.ones((2, 2), dtype=np.float32) * scale})


def test_names_are_sorted_and_mapping_works() -> None:
    w = _w()
    assert w.names == ("a", "b")
    assert list(w) == ["a", "b"]
    assert "a" in w
    assert "z" not in w
    assert len(w) == 2
    assert w.size == 7
    assert w.shapes == {"a": (2, 2), "b": (3,)}
    assert w.nbytes == 4 * 4 + 3 * 8


def test_arithmetic_with_weights_and_scalars() -> None:
    w = _w()
    assert (w + w) == w * 2
    assert (w - w) == w.zeros_like()
    assert (w / 2) * 2 == w
    assert -w == w * -1
    assert 2 * w == w * 2
    assert (1 - w)["b"].tolist() == [1.0, 0.0, -1.0]
    assert sum([w, w, w]) == w * 3
    assert (w * w)["b"].tolist() == [0.0, 1.0, 4.0]


def test_scalar_ops_keep_dtype() -> None:
    w = _w()
    assert (w * 0.5)["a"].dtype == np.float32
    assert (w / 3)["a"].dtype == np.float32


def test_operands_are_not_modified() -> None:
    w = _w()
    before = w.copy()
    _ = w + w * 3 - 1
    assert w == before


def test_mismatched_names_are_refused() -> None:
    with pytest.raises(ValueError, match="different names"):
        _ = _w() + Weights({"a": np.ones((2, 2))})


def test_unsupported_operand() -> None:
    with pytest.raises(TypeError):
        _ = _w() + "x"  # type: ignore[operator]
    with pytest.raises(TypeError, match="names must be str"):
        Weights({1: np.ones(2)})  # type: ignore[dict-item]


def test_equality_checks_dtype_and_values() -> None:
    w = _w()
    assert w == w.copy()
    assert w != w.astype(np.float64)
    assert w != w + 1
    assert w != Weights({"a": w["a"]})
    assert (w == 3) is False


def test_dot_norm_finite() -> None:
    w = Weights({"x": np.array([3.0]), "y": np.array([4.0])})
    assert w.dot(w) == 25.0
    assert w.norm() == 5.0
    assert w.is_finite()
    assert not Weights({"x": np.array([np.inf])}).is_finite()


def test_map_and_zip_map() -> None:
    w = _w()
    assert w.map(np.abs) == w
    assert w.zip_map(w, np.maximum) == w


def test_digest_is_canonical() -> None:
    w = _w()
    assert w.digest() == w.copy().digest()
    # insertion order does not matter
    assert Weights({"a": w["a"], "b": w["b"]}).digest() == w.digest()
    # byte order does not matter
    big = Weights({"a": w["a"].astype(">f4"), "b": w["b"].astype(">f8")})
    assert big.digest() == w.digest()
    # non-contiguous arrays digest like their contiguous copies
    strided = Weights({"a": np.ones((2, 4), dtype=np.float32)[:, ::2], "b": w["b"]})
    assert strided.digest() == w.digest()


def test_digest_sees_values_dtype_shape_and_names() -> None:
    w = _w()
    digests = {
        w.digest(),
        (w + 1).digest(),
        w.astype(np.float64).digest(),
        Weights({"a": w["a"].reshape(4), "b": w["b"]}).digest(),
        Weights({"c": w["a"], "b": w["b"]}).digest(),
    }
    assert len(digests) == 5


def test_to_dict_from_dict_round_trip() -> None:
    w = _w()
    d = w.to_dict()
    assert list(d) == ["a", "b"]
    assert Weights.from_dict(d) == w
    copied = w.to_dict(copy=True)
    copied["a"][0, 0] = 99
    assert w["a"][0, 0] == 1


def test_repr_mentions_names() -> None:
    assert "a: float32[2, 2]" in repr(_w())


def test_codec_round_trip() -> None:
    codec = pytest.importorskip("simkit.codec")
    w = _w()
    back = codec.unpackb(codec.packb(w))
    assert isinstance(back, Weights)
    assert back == w
    assert codec.canonical_digest(w) == codec.canonical_digest(w.copy())
