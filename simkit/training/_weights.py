"""Named collections of arrays: model weights, gradients and updates.

:class:`Weights` is the currency of the training core: models hand out their
parameters and gradients as ``Weights``, optimizers transform them, clients
send differences of them and aggregators sum them. Names are kept sorted, so
every iteration (and hence every floating-point sum over the names) happens
in one canonical order.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["Array", "SharedWeights", "Weights", "same_bits"]

Array: TypeAlias = npt.NDArray[Any]
Operand: TypeAlias = "Weights | float | int"

_DIGEST_DOMAIN = b"simkit.training.weights.v1"


class Weights:
    """An immutable mapping of sorted names to numpy arrays, with arithmetic.

    ``+``, ``-`` and ``*`` and ``/`` work between two ``Weights`` with the
    same names (element-wise) and between ``Weights`` and a Python scalar.
    Results are new ``Weights``; operands are never modified. Scalars keep
    the arrays' dtype (NEP 50), so float32 weights stay float32.

    The mapping itself is immutable, but the arrays are shared, not copied:
    use :meth:`copy` before handing weights to code that writes into arrays.

    Args:
        arrays: Name -> array. Values are converted with ``np.asarray``.

    Example:
        >>> w = Weights({"b": np.zeros(2), "a": np.ones(3)})
        >>> w.names
        ('a', 'b')
        >>> float((w * 2 + 1)["a"].sum())
        9.0
    """

    __slots__ = ("_arrays",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, arrays: Mapping[str, npt.ArrayLike]) -> None:
        for name in arrays:
            if not isinstance(name, str):
                raise TypeError(f"weight names must be str, got {name!r}")
        self._arrays: dict[str, Array] = {name: np.asarray(arrays[name]) for name in sorted(arrays)}

    @classmethod
    def _wrap(cls, arrays: dict[str, Array]) -> Weights:
        """Build without validation from an already sorted dict (hot path)."""
        new = cls.__new__(cls)
        new._arrays = arrays
        return new

    # ------------------------------------------------------------------ mapping

    @property
    def names(self) -> tuple[str, ...]:
        """The names, sorted."""
        return tuple(self._arrays)

    def __getitem__(self, name: str) -> Array:
        return self._arrays[name]

    def __contains__(self, name: object) -> bool:
        return name in self._arrays

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def items(self) -> Iterator[tuple[str, Array]]:
        """(name, array) pairs in sorted name order."""
        return iter(self._arrays.items())

    def values(self) -> Iterator[Array]:
        """Arrays in sorted name order."""
        return iter(self._arrays.values())

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> array shape."""
        return {name: arr.shape for name, arr in self._arrays.items()}

    @property
    def size(self) -> int:
        """Total number of scalars."""
        return sum(int(arr.size) for arr in self._arrays.values())

    @property
    def nbytes(self) -> int:
        """Total number of bytes of the arrays."""
        return sum(int(arr.nbytes) for arr in self._arrays.values())

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {a.dtype}{list(a.shape)}" for n, a in self._arrays.items())
        return f"Weights({{{parts}}})"

    # ---------------------------------------------------------------- arithmetic

    def _check_names(self, other: Weights) -> None:
        if self._arrays.keys() != other._arrays.keys():
            raise ValueError(
                f"weights have different names: {list(self._arrays)} vs {list(other._arrays)}"
            )

    def _binary(self, other: Operand, op: Callable[[Array, Any], Array]) -> Weights:
        if isinstance(other, Weights):
            self._check_names(other)
            theirs = other._arrays
            return Weights._wrap({n: op(a, theirs[n]) for n, a in self._arrays.items()})
        if isinstance(other, int | float) and not isinstance(other, bool):
            return Weights._wrap({n: op(a, other) for n, a in self._arrays.items()})
        return NotImplemented  # type: ignore[no-any-return]

    def __add__(self, other: Operand) -> Weights:
        return self._binary(other, np.add)

    def __radd__(self, other: Operand) -> Weights:
        # ``sum(list_of_weights)`` starts from the int 0.
        if isinstance(other, int) and other == 0:
            return self
        return self._binary(other, np.add)

    def __sub__(self, other: Operand) -> Weights:
        return self._binary(other, np.subtract)

    def __rsub__(self, other: Operand) -> Weights:
        return self._binary(other, lambda a, b: np.subtract(b, a))

    def __mul__(self, other: Operand) -> Weights:
        return self._binary(other, np.multiply)

    __rmul__ = __mul__

    def __truediv__(self, other: Operand) -> Weights:
        return self._binary(other, np.true_divide)

    def __neg__(self) -> Weights:
        return Weights._wrap({n: np.negative(a) for n, a in self._arrays.items()})

    def __eq__(self, other: object) -> bool:
        """Same names, dtypes, shapes and values (``NaN`` never equals)."""
        if not isinstance(other, Weights):
            return NotImplemented
        if self._arrays.keys() != other._arrays.keys():
            return False
        return all(
            a.dtype == other._arrays[n].dtype
            and a.shape == other._arrays[n].shape
            and bool(np.array_equal(a, other._arrays[n]))
            for n, a in self._arrays.items()
        )

    def map(self, fn: Callable[[Array], npt.ArrayLike]) -> Weights:
        """Apply ``fn`` to every array; returns new ``Weights``."""
        return Weights._wrap({n: np.asarray(fn(a)) for n, a in self._arrays.items()})

    def zip_map(self, other: Weights, fn: Callable[[Array, Array], npt.ArrayLike]) -> Weights:
        """Apply ``fn(mine, theirs)`` name by name; names must match."""
        self._check_names(other)
        return Weights._wrap(
            {n: np.asarray(fn(a, other._arrays[n])) for n, a in self._arrays.items()}
        )

    def copy(self) -> Weights:
        """A deep copy (new arrays)."""
        return Weights._wrap({n: a.copy() for n, a in self._arrays.items()})

    def zeros_like(self) -> Weights:
        """Zeros of the same names, shapes and dtypes."""
        return Weights._wrap({n: np.zeros_like(a) for n, a in self._arrays.items()})

    def astype(self, dtype: npt.DTypeLike) -> Weights:
        """The same weights converted to ``dtype``."""
        return Weights._wrap({n: a.astype(dtype) for n, a in self._arrays.items()})

    def dot(self, other: Weights) -> float:
        """Sum over all names of the element-wise products (in name order)."""
        self._check_names(other)
        total = 0.0
        for n, a in self._arrays.items():
            total += float(np.vdot(a, other._arrays[n]))
        return total

    def norm(self) -> float:
        """The Euclidean norm of all the scalars taken together."""
        return float(np.sqrt(self.dot(self)))

    def is_finite(self) -> bool:
        """Whether no array holds ``NaN`` or an infinity."""
        return all(bool(np.isfinite(a).all()) for a in self._arrays.values())

    # ------------------------------------------------------------ serialization

    def to_dict(self, copy: bool = False) -> dict[str, Array]:
        """Name -> array, sorted by name.

        Args:
            copy: Copy the arrays (default: share them).
        """
        if copy:
            return {n: a.copy() for n, a in self._arrays.items()}
        return dict(self._arrays)

    @classmethod
    def from_dict(cls, arrays: Mapping[str, npt.ArrayLike]) -> Weights:
        """Build from a name -> array mapping (the inverse of :meth:`to_dict`)."""
        return cls(arrays)

    def digest(self) -> str:
        """A sha256 hex digest of names, dtypes, shapes and bytes.

        The layout is canonical (names sorted, arrays little-endian and
        C-ordered), so equal weights have equal digests on every machine,
        independently of the codec.
        """
        hasher = hashlib.sha256(_DIGEST_DOMAIN)
        for name, arr in self._arrays.items():
            canon = np.ascontiguousarray(arr)
            if canon.dtype.byteorder == ">":
                canon = canon.astype(canon.dtype.newbyteorder("<"))
            header = f"{name}\x00{canon.dtype.str}\x00{canon.shape}\x00".encode()
            hasher.update(len(header).to_bytes(8, "big") + header)
            hasher.update(canon.nbytes.to_bytes(8, "big"))
            hasher.update(canon.tobytes())
        return hasher.hexdigest()


def stack(weights: list[Weights]) -> dict[str, Array]:
    """Stack same-named arrays along a new first axis (for robust aggregators)."""
    if not weights:
        raise ValueError("cannot stack an empty list of weights")
    first = weights[0]
    for other in weights[1:]:
        first._check_names(other)
    return {name: np.stack([w[name] for w in weights]) for name in first.names}


def same_bits(a: Weights, b: Weights) -> bool:
    """Same names, dtypes, shapes and bytes (``-0.0`` differs from ``0.0``; ``NaN`` may match)."""
    if a.names != b.names:
        return False
    for name, x in a.items():
        y = b[name]
        if x.dtype != y.dtype or x.shape != y.shape:
            return False
        bx = np.ascontiguousarray(x).reshape(-1).view(np.uint8)
        by = np.ascontiguousarray(y).reshape(-1).view(np.uint8)
        if not np.array_equal(bx, by):
            return False
    return True


class SharedWeights:
    """One copy of each global model version, shared by the clients that hold it.

    A simulated client keeps the global weights it was sent (the server then
    sends only the version number); a thousand clients would keep a thousand
    copies of the same values. :meth:`share` returns the copy already held
    for ``key`` when its bytes are the same, so only one stays alive.
    Arrays handed out must be treated as read-only (decoded message arrays
    are).

    Args:
        keep: How many keys (versions) to remember.
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._held: list[tuple[int, Weights]] = []
        self._lock = threading.Lock()

    def share(self, key: int, weights: Weights) -> Weights:
        """``weights``, or an identical copy already shared under ``key``."""
        with self._lock:
            for held_key, held in self._held:
                if held_key == key and (held is weights or same_bits(held, weights)):
                    return held
            self._held.append((key, weights))
            del self._held[: -self.keep]
            return weights
