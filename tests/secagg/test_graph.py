"""Neighbour graphs: regularity, symmetry, determinism and the default degree."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simkit.rng import SeedTree
from simkit.secagg import DEGREE_TABLE, NeighbourGraph, default_degree
from simkit.secagg._design import DESIGN_ABORT_RATE, DESIGN_DROPOUT, abort_bound, degree_for


def names(n: int) -> list[str]:
    return [f"n{i:03d}" for i in range(n)]


@settings(deadline=None)  # a 200-client graph on a loaded machine can take 0.3 s
@given(st.integers(3, 200), st.integers(1, 210), st.integers(0, 2**32))
def test_regular_graph_is_regular_and_symmetric(n: int, k: int, seed: int) -> None:
    g = NeighbourGraph.regular(names(n), k, SeedTree(seed))
    want = n - 1 if k + k % 2 >= n - 1 else k + k % 2
    assert g.degree == want
    for u in g.names:
        nb = g.neighbours(u)
        assert len(nb) == want
        assert u not in nb
        assert list(nb) == sorted(set(nb))
        assert all(u in g.neighbours(v) for v in nb)
    assert g.is_complete == (want == n - 1)


def test_graph_is_drawn_from_the_seed() -> None:
    a = NeighbourGraph.regular(names(50), 6, SeedTree(1))
    b = NeighbourGraph.regular(names(50), 6, SeedTree(1))
    c = NeighbourGraph.regular(names(50), 6, SeedTree(2))
    adjacency = [[g.neighbours(u) for u in g.names] for g in (a, b, c)]
    assert adjacency[0] == adjacency[1] != adjacency[2]


def test_party_numbers_follow_sorted_names() -> None:
    g = NeighbourGraph.complete(["b", "c", "a"])
    assert g.names == ("a", "b", "c")
    assert [g.index(n) for n in g.names] == [1, 2, 3]
    assert g.closed_neighbourhood("b") == ("a", "b", "c")
    with pytest.raises(KeyError, match="'z' is not a client"):
        g.index("z")


def test_default_degree_table() -> None:
    assert default_degree(1_000) == 178
    assert default_degree(10_000) == 214
    assert default_degree(100_000) == 250
    assert default_degree(10**7) == 324
    assert default_degree(40) == 39
    assert default_degree(145) == 144  # the complete graph ends at n = k + 1
    assert 178 < default_degree(3_000) < 214
    ks = [default_degree(n) for n in range(2, 200_000, 997)]
    assert ks == sorted(ks)
    assert all(k % 2 == 0 for n, k in ((n, default_degree(n)) for n in range(250, 50_000, 331)))


def test_the_table_is_the_smallest_degree_meeting_the_design_point() -> None:
    for n, k in DEGREE_TABLE:
        assert degree_for(n) == k
        assert abort_bound(n, k) <= DESIGN_ABORT_RATE / 4 < abort_bound(n, k - 2)


@pytest.mark.parametrize("n", [250, 700, 1_000, 2_500, 10_000, 31_623, 400_000, 5_000_000])
def test_interpolated_degrees_meet_the_design_point(n: int) -> None:
    k = default_degree(n)
    assert abort_bound(n, k) <= DESIGN_ABORT_RATE / 4
    assert k >= 72  # never below Google's security table


def test_the_bound_is_an_upper_bound() -> None:
    # small rings, every dropout pattern weighed exactly: P(some window < t) <= bound
    for n, k in [(8, 2), (10, 4), (12, 4), (13, 6)]:
        t, q = k // 2 + 1, 1 - DESIGN_DROPOUT
        exact = 0.0
        for mask in range(1 << n):
            up = [(mask >> i) & 1 for i in range(n)]
            if any(sum(up[(i + j) % n] for j in range(k + 1)) < t for i in range(n)):
                exact += q ** sum(up) * (1 - q) ** (n - sum(up))
        assert exact <= abort_bound(n, k) <= 2 * exact + 1e-12


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: NeighbourGraph.complete(["a"]), "at least 2 clients"),
        (lambda: NeighbourGraph.complete(["a", "a"]), "'a' appears twice"),
        (lambda: NeighbourGraph.complete(["a", ""]), "non-empty strings"),
        (lambda: NeighbourGraph.regular(["a", "b", "c"], 0, SeedTree(0)), "positive int"),
    ],
)
def test_bad_graphs_are_named(build: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()  # type: ignore[operator]


def test_components_of_a_ring_cut_in_two_places() -> None:
    g = NeighbourGraph.regular(names(12), 4, SeedTree(3))
    ring = [g.names[i] for i in SeedTree(3).numpy("neighbour-graph").permutation(12)]
    assert set(g.neighbours(ring[0])) == {ring[1], ring[2], ring[10], ring[11]}
    survivors = set(g.names) - {ring[2], ring[3], ring[8], ring[9]}  # two gaps of k/2
    assert sorted(len(c) for c in g.components(survivors)) == [4, 4]
    assert g.components(g.names) == [g.names]
