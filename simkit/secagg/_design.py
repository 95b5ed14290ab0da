"""The SecAgg+ design point and the bound the default neighbour degree is chosen from.

Design point: a third of the cohort drops out during a round
(:data:`DESIGN_DROPOUT`, the 33 % of Bell et al.'s parameter table), each
client independently, and at most one round in a thousand may abort
(:data:`DESIGN_ABORT_RATE`), with the threshold a strict majority of a
neighbourhood, ``t = k/2 + 1`` for an even degree ``k``.

A round cannot abort while every window of ``k + 1`` consecutive clients on
the graph's ring (every closed neighbourhood) keeps ``t`` clients to the
end (``U4``): each secret to rebuild then has ``t`` holders, no client stops
for lack of neighbours, and a ring cut needs two gaps of ``k/2`` clients.
With each client in ``U4`` independently with probability ``q``, the first
window fails, or somewhere a failing window follows a passing one; that
needs the window's ``k`` shared clients to hold exactly ``t - 1`` of ``U4``,
the client leaving the window in ``U4`` and the one entering it not. Hence

    P(abort) <= P(Bin(k+1, q) < t) + (n - 1) q (1 - q) P(Bin(k, q) = t - 1)

:func:`abort_bound` computes it; :data:`~simkit.secagg.DEGREE_TABLE` holds
the smallest even ``k`` whose bound is a quarter of the design rate
(:data:`DESIGN_MARGIN`) at each tabulated ``n``.
"""

from __future__ import annotations

from math import comb
from typing import Final

__all__ = ["DESIGN_ABORT_RATE", "DESIGN_DROPOUT", "DESIGN_MARGIN", "abort_bound", "degree_for"]

DESIGN_DROPOUT: Final = 0.33
"""Share of the cohort that drops out during a round at the design point."""

DESIGN_ABORT_RATE: Final = 1e-3
"""Most rounds in a thousand that may abort at the design point (one)."""

DESIGN_MARGIN: Final = 4
"""The table keeps the bound at ``DESIGN_ABORT_RATE / DESIGN_MARGIN``, so a
measurement over a few thousand rounds stays clear of the requirement."""


def _pmf(m: int, q: float, i: int) -> float:
    return comb(m, i) * q**i * (1.0 - q) ** (m - i)


def abort_bound(n: int, k: int, dropout: float = DESIGN_DROPOUT) -> float:
    """An upper bound on the abort probability of a SecAgg+ round (see the module doc).

    Args:
        n: Clients in the cohort.
        k: The neighbour degree (even; ``t = k/2 + 1``).
        dropout: Probability that a client drops out during the round.
    """
    q = 1.0 - dropout
    t = (k + 1) // 2 + 1
    first = sum(_pmf(k + 1, q, i) for i in range(t))
    return first + (n - 1) * q * (1.0 - q) * _pmf(k, q, t - 1)


def degree_for(
    n: int, dropout: float = DESIGN_DROPOUT, rate: float = DESIGN_ABORT_RATE / DESIGN_MARGIN
) -> int:
    """The smallest even degree whose :func:`abort_bound` is at most ``rate``.

    Raises:
        ValueError: No degree up to 4096 meets it (a dropout of 1/2 or more
            can never keep a strict majority).
    """
    for k in range(2, 4097, 2):
        if abort_bound(n, k, dropout) <= rate:
            return k
    raise ValueError(f"no degree keeps a strict majority at {dropout:.0%} dropouts")
