"""The one message the drivers add to the core's: how to quantize this round.

The core's :class:`~simkit.secagg.SecAggSetup` says how many bits and
coordinates a round has, not how floats become integers; that needs the
clipping range and the number of summands (the quantizer leaves headroom for
that many), which only the server knows once it has picked the cohort. It
sends :class:`SecAggQuantization` to every client just before the setup, so
the server and the clients always quantize and dequantize alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simkit.messages import Message
from simkit.secagg import Quantizer

__all__ = ["SecAggQuantization"]


@dataclass(frozen=True, slots=True)
class SecAggQuantization(Message):
    """Server -> client, just before ``SecAggSetup``: the round's quantizer.

    Args:
        round_id: The round.
        clip: Inputs are clipped to ``[-clip, clip]``.
        bits: Integers modulo ``2**bits``.
        n: The number of summands the scale leaves room for (the cohort size).
        length: Coordinates of the input vector.
    """

    round_id: int
    clip: float
    bits: int
    n: int
    length: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"SecAggQuantization.clip must be finite and > 0, got {self.clip!r}")
        for name in ("round_id", "length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"SecAggQuantization.{name} must be an int >= 0, got {value!r}")
        self.quantizer()  # checks bits and n

    def quantizer(self) -> Quantizer:
        """The :class:`~simkit.secagg.Quantizer` these parameters describe."""
        return Quantizer(clip=self.clip, bits=self.bits, n=self.n)
