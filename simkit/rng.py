"""The seed tree: named, independent random streams derived from one seed.

A run is named by one integer seed. Every consumer of randomness (a client's
data shard, a link's latency draws, a SecAgg key) asks the tree for a stream by
a *path* such as ``("client", "c07", "data")``. The stream is derived by hashing
the seed and the path with SHA-256 (never Python's ``hash()``, which is salted
per process), so it is the same on every machine and independent of the order
in which streams are requested.

Nothing here touches numpy's or torch's global generators.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["PathPart", "SeedTree", "derive_bytes"]

PathPart = str | int

_DOMAIN = b"simkit.rng.v1"


def _encode_parts(path: tuple[PathPart, ...]) -> bytes:
    """Canonical, injective byte encoding of path parts (typed, length-prefixed)."""
    out = bytearray()
    for part in path:
        if isinstance(part, str):
            raw, tag = part.encode(), b"s"
        elif isinstance(part, int) and not isinstance(part, bool):
            raw, tag = str(part).encode(), b"i"
        else:
            raise TypeError(f"seed path parts must be str or int, got {part!r}")
        out += b"\x00" + tag + len(raw).to_bytes(4, "big") + raw
    return bytes(out)


def _encode_path(seed: int, path: tuple[PathPart, ...]) -> bytes:
    """Canonical, injective byte encoding of (seed, path)."""
    return _DOMAIN + b"\x00" + str(seed).encode() + _encode_parts(path)


def derive_bytes(seed: int, path: tuple[PathPart, ...], n: int = 32) -> bytes:
    """Derive ``n`` pseudo-random bytes for ``path`` under ``seed`` (SHAKE-256)."""
    return hashlib.shake_256(_encode_path(seed, path)).digest(n)


class SeedTree:
    """A node of the seed tree.

    Args:
        seed: The run's seed (any integer).
        path: The node's path below the root; usually left empty and reached
            through :meth:`child`.

    Example:
        >>> tree = SeedTree(42)
        >>> rng = tree.numpy("client", "c07", "data")
        >>> tree.child("client", "c07").numpy("data").integers(100) == rng.integers(100)
        True
    """

    __slots__ = ("_prefix", "path", "seed")

    def __init__(self, seed: int, path: tuple[PathPart, ...] = ()) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self.path = tuple(path)
        self._prefix = _encode_path(seed, self.path)  # validates the parts

    def __repr__(self) -> str:
        return f"SeedTree({self.seed}, path={self.path!r})"

    def child(self, *path: PathPart) -> SeedTree:
        """The node at ``path`` below this one."""
        node = SeedTree.__new__(SeedTree)
        node.seed = self.seed
        node.path = self.path + path
        node._prefix = self._prefix + _encode_parts(path)  # the encoding extends
        return node

    def bytes(self, *path: PathPart, n: int = 32) -> bytes:
        """``n`` derived bytes for the node at ``path`` (keys, nonces, mask seeds)."""
        return hashlib.shake_256(self._prefix + _encode_parts(path)).digest(n)

    def integer(self, *path: PathPart, bits: int = 64) -> int:
        """A derived non-negative integer of ``bits`` bits."""
        nbytes = (bits + 7) // 8
        value = int.from_bytes(self.bytes(*path, n=nbytes), "big")
        return value >> (nbytes * 8 - bits)

    def numpy(self, *path: PathPart) -> np.random.Generator:
        """A fresh ``numpy.random.Generator`` (PCG64) for the node at ``path``.

        Calling it twice with the same path gives two generators in the same
        state: keep the generator if you want the stream to continue.
        """
        entropy = int.from_bytes(self.bytes(*path, n=32), "big")
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))

    def torch(self, *path: PathPart) -> torch.Generator:
        """A fresh CPU ``torch.Generator`` for the node at ``path``."""
        import torch

        gen = torch.Generator(device="cpu")
        gen.manual_seed(self.integer(*path, bits=63))
        return gen
