"""Quantization of float vectors to integers modulo 2^bits, and back.

Secure aggregation sums integers modulo ``2**bits``; the inputs are floats.
:class:`Quantizer` clips each coordinate to ``[-clip, clip]``, multiplies by
a scale and rounds to an integer, stored in two's complement modulo
``2**bits`` (so ``-1`` is ``2**bits - 1``). The sum of the quantized vectors
of at most ``n`` clients, taken modulo ``2**bits``, is lifted back to a signed
integer and multiplied by the step ``1 / scale``.

How the scale is chosen
-----------------------
The scale is a power of two, ``scale = 2**e``, with ``e`` the largest
integer such that ``n * ceil(clip * 2**e) <= min(2**(bits-1) - 1, 2**53)``:

* ``n * ceil(clip * scale)`` bounds ``|sum q_i|`` over ``n`` summands, so
  the sum never wraps: the signed lift of the modular sum is the exact sum;
* a power of two makes ``x * scale`` exact in float64 (only the exponent
  changes) and the sum, at most ``2**53`` in magnitude, converts back to
  float64 exactly, so floating point adds no error of its own;
* the price is at most a factor of two of resolution against the largest
  possible scale.

Error bound
-----------
With the default round-half-to-even, each coordinate of a clipped input is
off by at most ``step / 2``, hence for the sum of ``m <= n`` clipped inputs::

    |dequantize(sum q_i) - sum x_i| <= m * step / 2     (per coordinate)

With stochastic rounding (a seeded ``numpy.random.Generator`` passed in) each
coordinate rounds up with probability equal to its fractional part: unbiased,
with per-coordinate error below ``step`` and a sum error below ``m * step``.
Coordinates outside ``[-clip, clip]`` are clipped first; the bound holds for
the clipped values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_BITS", "Quantizer"]

MAX_BITS: Final = 62
"""Largest modulus exponent: sums of two masks stay below 2^64 before reduction."""

_FLOAT_EXACT: Final = 1 << 53


def _headroom(bits: int) -> int:
    """The largest ``|sum q_i|`` allowed: no wrap-around, exact in float64."""
    return min((1 << (bits - 1)) - 1, _FLOAT_EXACT)


def _scale_exponent(clip: float, bits: int, n: int) -> int:
    """Largest ``e`` with ``n * ceil(clip * 2**e) <= headroom``."""
    headroom = _headroom(bits)
    per_client = headroom // n
    if per_client < 1:
        raise ValueError(
            f"bits={bits} leaves no headroom for n={n} summands: "
            f"need 2**(bits-1) - 1 >= n; use more bits"
        )
    e = math.floor(math.log2(per_client / clip))
    # log2 may be off by one either way near powers of two: settle it exactly.
    while math.ceil(math.ldexp(clip, e + 1)) <= per_client:
        e += 1
    while math.ceil(math.ldexp(clip, e)) > per_client:
        e -= 1
    return e


@dataclass(frozen=True, slots=True)
class Quantizer:
    """Clip, scale and round floats to integers modulo ``2**bits``.

    Args:
        clip: Half-width of the clipping range ``[-clip, clip]``; positive
            and finite.
        bits: Modulus exponent, ``1 < bits <= 62``.
        n: Largest number of vectors that will be summed (the number of
            clients); the scale leaves headroom for that many.

    Attributes:
        scale: ``2**e``, the factor from floats to integer levels.
        step: ``1 / scale``, the spacing of representable values.

    Raises:
        ValueError: A parameter is out of range, or ``bits`` is too small for
            ``n`` summands.

    Example:
        >>> qz = Quantizer(clip=1.0, bits=32, n=10)
        >>> q = [qz.quantize(np.array([0.25, -0.5])) for _ in range(3)]
        >>> qz.dequantize(qz.sum(q)).tolist()
        [0.75, -1.5]
    """

    clip: float
    bits: int
    n: int
    scale: float = field(init=False)
    step: float = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise TypeError(f"bits must be an int, got {self.bits!r}")
        if not 1 < self.bits <= MAX_BITS:
            raise ValueError(f"bits must be in [2, {MAX_BITS}], got {self.bits}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be a positive int, got {self.n!r}")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"clip must be positive and finite, got {self.clip!r}")
        e = _scale_exponent(float(self.clip), self.bits, self.n)
        object.__setattr__(self, "scale", math.ldexp(1.0, e))
        object.__setattr__(self, "step", math.ldexp(1.0, -e))

    @property
    def modulus_mask(self) -> np.uint64:
        """``2**bits - 1``, to reduce uint64 values modulo ``2**bits``."""
        return np.uint64((1 << self.bits) - 1)

    def error_bound(self, m: int, *, stochastic: bool = False) -> float:
        """Per-coordinate bound on the error of a dequantized sum of ``m`` inputs.

        Args:
            m: Number of summed (clipped) inputs.
            stochastic: Whether stochastic rounding was used.

        Returns:
            ``m * step / 2`` (deterministic rounding) or ``m * step``.
        """
        return m * self.step if stochastic else m * self.step / 2

    def quantize(
        self, x: npt.ArrayLike, rng: np.random.Generator | None = None
    ) -> npt.NDArray[np.uint64]:
        """Quantize ``x`` (any shape) to uint64 values modulo ``2**bits``.

        Args:
            x: Finite floats.
            rng: A seeded generator for stochastic rounding; ``None`` (the
                default) rounds half to even, deterministically.

        Returns:
            A new uint64 array of ``x``'s shape, every value below ``2**bits``.

        Raises:
            ValueError: ``x`` holds a NaN or an infinity.
        """
        y = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(y)):
            raise ValueError("cannot quantize NaN or infinite values")
        y = np.clip(y, -self.clip, self.clip) * self.scale  # exact: scale is 2**e
        if rng is None:
            levels = np.rint(y)
        else:
            low = np.floor(y)
            levels = low + (rng.random(y.shape) < (y - low))
        signed = levels.astype(np.int64)
        return signed.view(np.uint64) & self.modulus_mask

    def sum(self, vectors: Any) -> npt.NDArray[np.uint64]:
        """Sum quantized vectors modulo ``2**bits`` (in the order given).

        Args:
            vectors: An iterable of uint64 arrays of one shape.

        Raises:
            ValueError: ``vectors`` is empty.
        """
        total: npt.NDArray[np.uint64] | None = None
        for v in vectors:
            arr = np.asarray(v, dtype=np.uint64)
            total = arr.copy() if total is None else np.add(total, arr, out=total)
        if total is None:
            raise ValueError("nothing to sum: no vectors")
        return total & self.modulus_mask

    def dequantize(self, q_sum: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Lift a modular sum to signed integers and scale back to floats.

        Args:
            q_sum: uint64 values modulo ``2**bits``: one quantized vector or
                the modular sum of up to ``n`` of them.

        Returns:
            float64 values; the sum of the clipped inputs within
            :meth:`error_bound`.
        """
        q = np.asarray(q_sum, dtype=np.uint64) & self.modulus_mask
        signed = q.astype(np.int64)
        half = np.int64(1 << (self.bits - 1))
        signed = np.where(signed >= half, signed - np.int64(1 << self.bits), signed)
        return signed.astype(np.float64) * self.step
