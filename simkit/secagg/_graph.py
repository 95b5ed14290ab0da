"""Neighbour graphs: the complete graph (SecAgg) and random k-regular graphs (SecAgg+).

In SecAgg+ (Bell et al. 2020) a client masks against, and shares its
secrets with, only its ``k`` neighbours; with ``k = O(log n)`` the cost per
client drops from ``O(n)`` to ``O(log n)`` at the same security and
dropout tolerance. The graph here is a Harary-like circulant: the clients
are placed on a ring in a random order drawn from the seed tree, and each is
joined to the ``k / 2`` nearest on either side. The complete graph is the
same object with ``k = n - 1``, so SecAgg is SecAgg+ on the complete graph
and one protocol implementation serves both.

Default degree: the smallest even ``k`` such that, with a third of the
clients dropping out (each independently) and the threshold a strict
majority ``t = k/2 + 1`` of a neighbourhood, a bound on the abort rate is
at most a quarter of one round in a thousand (:mod:`simkit.secagg._design`
derives it): ``k = 144`` at ``n = 10**2``, ``178`` at ``10**3``, ``214`` at
``10**4``, ``250`` at ``10**5``, ``286`` at ``10**6``, ``324`` at ``10**7``.
:func:`default_degree` interpolates linearly in ``log10(n)`` between these
points (extrapolates with the last slope above them), rounds up to even and
caps the degree at ``n - 1``. Google's parameter finder (security
``2**-40``, 5 % adversarial clients) asks for less at every ``n`` (72 at
``10**3``, 86 at ``10**4``, 96 at ``10**5``): with its threshold below a
strict majority, not ours.

Party numbers: a client's number is its 1-based position among all client
names sorted; Shamir shares are evaluated at it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from simkit.rng import SeedTree

__all__ = ["DEGREE_TABLE", "NeighbourGraph", "default_degree"]

DEGREE_TABLE: Final = (
    (100, 144),
    (1_000, 178),
    (10_000, 214),
    (100_000, 250),
    (1_000_000, 286),
    (10_000_000, 324),
)
"""``(n, k)`` points of the default SecAgg+ degree (``simkit.secagg._design.degree_for``)."""


def default_degree(n: int) -> int:
    """The default SecAgg+ neighbour degree for ``n`` clients (see the module doc).

    Raises:
        ValueError: ``n < 2``.
    """
    if n < 2:
        raise ValueError(f"a neighbour graph needs at least 2 clients, got {n}")
    (_, k), *_ = DEGREE_TABLE
    x = float(k)
    for (na, ka), (nb, kb) in itertools.pairwise(DEGREE_TABLE):
        if na <= n:
            slope = (kb - ka) / (math.log10(nb) - math.log10(na))
            x = ka + slope * (math.log10(n) - math.log10(na))
    k = math.ceil(x - 1e-9)
    return min(n - 1, k + k % 2)


def _sorted_names(names: Iterable[str]) -> tuple[str, ...]:
    ordered = tuple(sorted(names))
    if len(ordered) < 2:
        raise ValueError(f"a neighbour graph needs at least 2 clients, got {len(ordered)}")
    if any(not isinstance(n, str) or not n for n in ordered):
        raise ValueError("client names must be non-empty strings")
    for a, b in itertools.pairwise(ordered):
        if a == b:
            raise ValueError(f"client name {a!r} appears twice")
    return ordered


@dataclass(frozen=True, slots=True)
class NeighbourGraph:
    """An undirected graph over client names, with party numbers.

    Build one with :meth:`complete` or :meth:`regular`.

    Attributes:
        names: All client names, sorted.
        degree: Every client's number of neighbours.
    """

    names: tuple[str, ...]
    degree: int
    _adjacency: Mapping[str, tuple[str, ...]]
    _index: Mapping[str, int]

    @classmethod
    def complete(cls, names: Iterable[str]) -> NeighbourGraph:
        """The complete graph (SecAgg): everyone neighbours everyone.

        Raises:
            ValueError: Fewer than two names, empty or repeated names.
        """
        ordered = _sorted_names(names)
        adjacency = {name: tuple(n for n in ordered if n != name) for name in ordered}
        return cls._make(ordered, len(ordered) - 1, adjacency)

    @classmethod
    def regular(cls, names: Iterable[str], k: int | None, seed: SeedTree) -> NeighbourGraph:
        """A random ``k``-regular graph (SecAgg+) drawn from ``seed``.

        Args:
            names: Client names.
            k: The degree; ``None`` for :func:`default_degree`. An odd ``k``
                is rounded up to even (a circulant is regular of even degree);
                ``k >= n - 1`` gives the complete graph.
            seed: The seed-tree node the ring order is drawn from.

        Raises:
            ValueError: Bad names, or ``k < 1``.
        """
        ordered = _sorted_names(names)
        n = len(ordered)
        k = default_degree(n) if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"the neighbour degree k must be a positive int, got {k!r}")
        k += k % 2
        if k >= n - 1:
            return cls.complete(ordered)
        order = seed.numpy("neighbour-graph").permutation(n)
        ring = [ordered[i] for i in order]
        adjacency = {
            ring[i]: tuple(sorted(ring[(i + d) % n] for j in range(1, k // 2 + 1) for d in (j, -j)))
            for i in range(n)
        }
        return cls._make(ordered, k, adjacency)

    @classmethod
    def _make(
        cls, ordered: tuple[str, ...], degree: int, adjacency: Mapping[str, tuple[str, ...]]
    ) -> NeighbourGraph:
        index = {name: i + 1 for i, name in enumerate(ordered)}
        return cls(ordered, degree, adjacency, index)

    @property
    def is_complete(self) -> bool:
        """Whether every client neighbours every other one (plain SecAgg)."""
        return self.degree == len(self.names) - 1

    def neighbours(self, name: str) -> tuple[str, ...]:
        """The neighbours of ``name``, sorted (``name`` itself excluded).

        Raises:
            KeyError: ``name`` is not in the graph.
        """
        try:
            return self._adjacency[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a client of this graph") from None

    def index(self, name: str) -> int:
        """The party number of ``name`` (its 1-based rank among the sorted names).

        Raises:
            KeyError: ``name`` is not in the graph.
        """
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a client of this graph") from None

    def closed_neighbourhood(self, name: str) -> tuple[str, ...]:
        """``name`` and its neighbours, sorted: the holders of its shares."""
        return tuple(sorted((name, *self.neighbours(name))))

    def components(self, members: Iterable[str]) -> list[tuple[str, ...]]:
        """The connected components of the graph induced on ``members``, each sorted.

        Components come in the order of their smallest name.
        """
        inside = set(members)
        seen: set[str] = set()
        out: list[tuple[str, ...]] = []
        for start in sorted(inside):
            if start in seen:
                continue
            seen.add(start)
            group, todo = [start], [start]
            while todo:
                for n in self._adjacency[todo.pop()]:
                    if n in inside and n not in seen:
                        seen.add(n)
                        group.append(n)
                        todo.append(n)
            out.append(tuple(sorted(group)))
        return out
