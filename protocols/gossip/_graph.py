"""Who talks to whom: a ring, or a seeded random graph made of random cycles.

Both are undirected, connected and the same on every machine for a given
seed. A random graph of degree ``d`` is the union of ``d // 2`` cycles
through the peers, each in a seeded random order (a classic way to build a
random regular expander): connected because the first cycle visits every
peer, of degree at most ``d`` (edges drawn twice count once).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Graph", "random_graph", "ring"]

Graph = dict[str, tuple[str, ...]]
"""Peer -> its neighbours (sorted); symmetric."""


def _cycles(orders: Sequence[Sequence[str]], reach: int) -> Graph:
    edges: dict[str, set[str]] = {name: set() for name in orders[0]}
    for order in orders:
        n = len(order)
        for i, name in enumerate(order):
            for step in range(1, reach + 1):
                other = order[(i + step) % n]
                if other != name:
                    edges[name].add(other)
                    edges[other].add(name)
    return {name: tuple(sorted(edges[name])) for name in sorted(edges)}


def ring(names: Sequence[str], degree: int = 2) -> Graph:
    """Each peer linked to the ``degree // 2`` next and previous ones, in name order.

    Raises:
        ValueError: Fewer than two peers, or a degree below 2.
    """
    _check(names, degree)
    return _cycles([sorted(names)], degree // 2)


def random_graph(names: Sequence[str], degree: int, rng: np.random.Generator) -> Graph:
    """The union of ``degree // 2`` cycles through the peers in random orders.

    Raises:
        ValueError: Fewer than two peers, or a degree below 2.
    """
    _check(names, degree)
    peers = sorted(names)
    orders = [[peers[i] for i in rng.permutation(len(peers))] for _ in range(degree // 2)]
    return _cycles(orders, 1)


def _check(names: Sequence[str], degree: int) -> None:
    if len(names) < 2:
        raise ValueError(f"a gossip graph needs at least 2 peers, got {len(names)}")
    if degree < 2:
        raise ValueError(f"a gossip graph needs degree >= 2, got {degree}")
