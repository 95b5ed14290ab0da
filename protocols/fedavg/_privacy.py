"""The differential privacy of a FedAvg run: its Gaussian mechanism and epsilon per round.

A run is private when its strategy adds Gaussian noise to the clipped
aggregate (central DP, :class:`~protocols.fedavg.examples.DPFedAvg`: the
strategy's :meth:`~protocols.fedavg._strategy.Strategy.mechanism`) or when
each client clips then noises its own update (local DP: a ``clip`` mod
followed by a ``gaussian`` mod). The epsilon for the mechanism's delta comes
from opacus's RDP accountant, which models the *Poisson*-subsampled Gaussian
mechanism (docs/protocols.md says what that assumes about simkit's sampling).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from simkit.protocol import RoundRecord

__all__ = ["ACCOUNTANT", "GaussianMechanism", "epsilons", "privacy_report"]

ACCOUNTANT = "opacus.accountants.RDPAccountant"
"""The accountant's name in ``--json`` (``privacy.accountant``)."""

# opacus's RDPAccountant.DEFAULT_ALPHAS: the RDP orders searched for the best conversion.
_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


@dataclass(frozen=True, slots=True)
class GaussianMechanism:
    """One subsampled Gaussian mechanism per round.

    Attributes:
        where: ``"server"`` (noise on the aggregate: one step per completed
            round) or ``"client"`` (noise on each update: one step per round
            a client is asked to train in, no amplification by sampling since
            the server sees who took part).
        noise_multiplier: Noise std over the L2 sensitivity of one client.
        sampling_rate: Probability a client takes part in a step.
        clip_norm: The L2 bound of a client's update.
        delta: The delta epsilon is reported for.
    """

    where: Literal["server", "client"]
    noise_multiplier: float
    sampling_rate: float
    clip_norm: float
    delta: float


def epsilons(mechanism: GaussianMechanism, steps: Sequence[int]) -> list[float]:
    """Epsilon at ``mechanism.delta`` after each count of ``steps`` (``inf``: no noise).

    The Rényi DP of one step is computed once; k steps compose to k times it.
    """
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    if mechanism.noise_multiplier == 0:
        return [0.0 if k == 0 else math.inf for k in steps]
    one = compute_rdp(
        q=mechanism.sampling_rate,
        noise_multiplier=mechanism.noise_multiplier,
        steps=1,
        orders=_ORDERS,
    )
    out = []
    with warnings.catch_warnings():
        # Weak noise puts the best order at the edge of the range: still a bound, just loose.
        warnings.filterwarnings("ignore", message="Optimal order is the", category=UserWarning)
        for k in steps:
            spent = get_privacy_spent(orders=_ORDERS, rdp=one * k, delta=mechanism.delta)[0]
            out.append(0.0 if k == 0 else float(spent))
    return out


def _steps(mechanism: GaussianMechanism, records: Sequence[RoundRecord]) -> list[int]:
    """The mechanism's steps after each round."""
    out, done = [], 0
    counts: dict[str, int] = {}
    for r in records:
        if mechanism.where == "server":
            done += 0 if r.aborted else 1
        else:  # the client asked most often so far
            for name in r.sampled:
                counts[name] = counts.get(name, 0) + 1
            done = max(counts.values(), default=0)
        out.append(done)
    return out


def privacy_report(
    mechanism: GaussianMechanism | None, records: Sequence[RoundRecord]
) -> dict[str, Any] | None:
    """``{accountant, where, noise_multiplier, sampling_rate, clip_norm, delta,
    epsilon: [after each round]}`` (``None``: the run adds no noise; each epsilon
    ``None`` when opacus is not installed)."""
    if mechanism is None:
        return None
    try:
        spent: list[float | None] = list(epsilons(mechanism, _steps(mechanism, records)))
        accountant = ACCOUNTANT
    except ImportError:  # installed without the ``dp`` extra: the run still reports
        spent, accountant = [None] * len(records), "none (pip install 'simkit[dp]')"
    return {"accountant": accountant, **asdict(mechanism), "epsilon": spent}
