"""simkit: deterministic virtual-time actor simulation for federated learning protocols."""

from simkit._version import __version__
from simkit.rng import SeedTree

__all__ = ["SeedTree", "__version__"]
