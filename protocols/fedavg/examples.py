"""Two FedAvg variants as strategies: each is the whole variant (docs/protocols.md).

``strategy = { kind = "krum", byzantine = 1 }`` and ``strategy = { kind =
"dp-fedavg", clip_norm = 1.0, noise_multiplier = 1.0 }`` select them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydantic import Field

from protocols.fedavg._privacy import GaussianMechanism
from protocols.fedavg._strategy import NoOptions, Strategy
from simkit.training import ModelUpdates, Weights

__all__ = ["DPFedAvg", "Krum"]


class _KrumOptions(NoOptions):
    byzantine: int = Field(default=1, ge=0, description="Clients that may lie (f).")


class Krum(Strategy):
    """Krum (Blanchard et al. 2017): the update closest to its n - f - 2 nearest others."""

    Options = _KrumOptions

    def aggregate(self, round: int, updates: Mapping[str, ModelUpdates]) -> Weights:
        names = sorted(updates)
        means = [updates[c].mean() for c in names]
        flat = np.stack([np.concatenate([a.ravel() for a in m.values()]) for m in means])
        dist = ((flat[:, None, :] - flat[None, :, :]) ** 2).sum(axis=2)
        f = self.options.byzantine  # type: ignore[attr-defined]
        k = min(max(1, len(names) - f - 2), len(names) - 1)
        scores = [np.sort(np.delete(row, i))[:k].sum() for i, row in enumerate(dist)]
        return means[int(np.argmin(scores))] if len(names) > 1 else means[0]


class _DPOptions(NoOptions):
    clip_norm: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    noise_multiplier: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    delta: float = Field(default=1e-5, gt=0, lt=1, description="The delta of the epsilon reported.")


class DPFedAvg(Strategy):
    """DP-FedAvg (McMahan et al. 2018): clip each update, average, add Gaussian noise."""

    Options = _DPOptions

    def aggregate(self, round: int, updates: Mapping[str, ModelUpdates]) -> Weights:
        c, z = self.options.clip_norm, self.options.noise_multiplier  # type: ignore[attr-defined]
        clipped = []
        for name in sorted(updates):
            u = updates[name].mean()
            norm = float(np.sqrt(sum(float(np.vdot(a, a)) for a in u.values())))
            clipped.append(u * min(1.0, c / norm) if norm > 0 else u)
        mean = sum(clipped[1:], clipped[0]) / float(len(clipped))
        rng = self.setup.seeds.numpy("fedavg", "dp-fedavg", round)
        std = z * c / len(clipped)
        return Weights(
            {n: a + rng.normal(0.0, std, a.shape).astype(a.dtype) for n, a in mean.items()}
        )

    def mechanism(self) -> GaussianMechanism:
        o, n = self.options, len(self.setup.clients)
        rate = min(1.0, self.cohort_size(n) / n)  # every client connected
        return GaussianMechanism("server", o.noise_multiplier, rate, o.clip_norm, o.delta)  # type: ignore[attr-defined]
