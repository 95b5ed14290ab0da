"""SecAgg+ default degree at its design point: how many rounds abort. Prints one JSON object.

The design point (docs/secagg.md, "Default degree"): each client of the
cohort drops out with probability 0.33, at a stage drawn uniformly among the
four; the threshold is the default strict majority ``t = k/2 + 1``. Whether
a round aborts is decided by the neighbour graph and the dropout pattern
alone, so most rounds are simulated combinatorially: the graph comes from
the real code (``NeighbourGraph.regular`` with the server's seed path), and
the outcome from the rules the cores apply, stage by stage (clients stop
when their neighbourhood falls below ``t``; the server aborts below ``t``
answers, when a survivor has fewer than ``t`` surviving neighbours or the
survivors' graph splits; unmasking needs ``t`` holders of every secret).
A few full cryptographic rounds (the real cores, X25519, Shamir, AES-GCM)
on the same graphs and patterns check that the model predicts them.

Usage: ``python bench/bench_secagg_defaults.py [--quick]``
(full: 2,000 rounds at n = 1,000, 200 at n = 10,000, the same at the old
degree 72 / 86, and 3 full rounds at n = 1,000; about 10 minutes).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from simkit.rng import SeedTree
from simkit.secagg import (
    DESIGN_DROPOUT,
    NeighbourGraph,
    SecAggAbort,
    SecAggClient,
    SecAggConfig,
    SecAggServer,
    abort_bound,
    default_degree,
)

Mask = npt.NDArray[np.bool_]


def names_for(n: int) -> list[str]:
    width = len(str(n - 1))
    return [f"c{i:0{width}d}" for i in range(n)]


def graph_for(n: int, k: int, seed: int, round_id: int) -> NeighbourGraph:
    """The graph ``SecAggServer`` builds for this seed and round."""
    return NeighbourGraph.regular(names_for(n), k, SeedTree(seed).child("secagg", round_id))


def adjacency(g: NeighbourGraph) -> npt.NDArray[np.intp]:
    """Row ``i``: the indices of the neighbours of ``g.names[i]``."""
    index = {name: i for i, name in enumerate(g.names)}
    return np.array([[index[m] for m in g.neighbours(name)] for name in g.names], dtype=np.intp)


def drop_stages(n: int, seed: int, round_id: int) -> npt.NDArray[np.int64]:
    """Per client: the stage (1-4) it drops in, or 5 (it stays)."""
    rng = SeedTree(seed).numpy("bench", "dropouts", round_id)
    drops = rng.random(n) < DESIGN_DROPOUT
    return np.where(drops, rng.integers(1, 5, size=n), 5)


def hood(adj: npt.NDArray[np.intp], members: Mask) -> npt.NDArray[np.int64]:
    """Per client: members in its closed neighbourhood."""
    return members[adj].sum(axis=1) + members


def connected(adj: npt.NDArray[np.intp], members: Mask) -> bool:
    """Whether the graph induced on ``members`` is connected (label propagation)."""
    n = len(members)
    big = np.iinfo(np.int64).max
    labels = np.where(members, np.arange(n), big)
    while True:
        around = np.where(members[adj], labels[adj], big).min(axis=1)
        new = np.where(members, np.minimum(labels, around), big)
        new = np.where(members, new[np.minimum(new, n - 1)], big)  # jump to the label's label
        if np.array_equal(new, labels):
            break
        labels = new
    return len(np.unique(labels[members])) <= 1


def predict(adj: npt.NDArray[np.intp], stages: npt.NDArray[np.int64], t: int) -> str | None:
    """The stage in which the round aborts, or ``None`` if it completes."""
    up = [stages > s for s in range(5)]
    u1 = up[1]
    if u1.sum() < t:
        return "advertise-keys"
    u2 = up[2] & u1 & (hood(adj, u1) >= t)
    if u2.sum() < t:
        return "share-keys"
    u3 = up[3] & u2 & (hood(adj, u2) >= t)
    if u3.sum() < t or (hood(adj, u3)[u3] < t).any() or not connected(adj, u3):
        return "masked-input"
    u4 = up[4] & u3
    if u4.sum() < t:
        return "unmasking"
    have = hood(adj, u4)
    relevant = u2 & ~u3 & (u3[adj].any(axis=1))
    if (have[u3] < t).any() or (have[relevant] < t).any():
        return "unmasking"
    return None


def simulate(n: int, k: int, rounds: int, seed: int = 0) -> dict[str, Any]:
    """Abort rate over ``rounds`` generated rounds (a new graph every ``per_graph``)."""
    t = k // 2 + 1
    per_graph = 1 if n <= 2_000 else 20  # a 10^4 graph takes seconds to build
    start = time.process_time()
    aborts: dict[str, int] = {}
    adj = None
    for r in range(1, rounds + 1):
        if adj is None or (r - 1) % per_graph == 0:
            adj = adjacency(graph_for(n, k, seed, r))
        stage = predict(adj, drop_stages(n, seed, r), t)
        if stage is not None:
            aborts[stage] = aborts.get(stage, 0) + 1
    return {
        "n": n,
        "k": k,
        "t": t,
        "rounds": rounds,
        "aborted": sum(aborts.values()),
        "abort_rate": sum(aborts.values()) / rounds,
        "aborted_in": aborts,
        "bound": min(1.0, abort_bound(n, k)),
        "cpu_s": round(time.process_time() - start, 1),
    }


def full_round(n: int, k: int, seed: int, round_id: int) -> dict[str, Any]:
    """One round through the real cores; its outcome beside the model's prediction."""
    stages = drop_stages(n, seed, round_id)
    config = SecAggConfig(k // 2 + 1, 16, 1, mode="secagg+", degree=k, round_id=round_id)
    tree = SeedTree(seed)
    start = time.process_time()
    server = SecAggServer(config, names_for(n), tree)
    adj = adjacency(server.graph)
    expected = predict(adj, stages, config.threshold)
    drop = dict(zip(server.graph.names, stages.tolist(), strict=True))
    clients = {
        c: SecAggClient(c, tree.child("client", c), np.ones(1, np.uint64))
        for c in server.graph.names
    }
    sends = server.start()
    for stage in range(1, 5):
        replies = {}
        for name, msg in sorted(sends.items()):
            if drop[name] > stage and not isinstance(msg, SecAggAbort):
                reply = clients[name].receive(msg)
                if reply is not None:
                    replies[name] = reply
        sends = server.step(replies, [c for c in server.graph.names if drop[c] > stage])
        if server.result is not None:
            break
    assert server.result is not None
    got = None if server.result.ok else server.result.aborted_in
    return {
        "n": n,
        "k": k,
        "round": round_id,
        "dropped": int((stages < 5).sum()),
        "outcome": got.value if got is not None else "done",
        "predicted": expected or "done",
        "cpu_s": round(time.process_time() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 rounds at n = 1,000, 1 full")
    args = parser.parse_args()
    rounds, big, full = (200, 20, 1) if args.quick else (2_000, 200, 3)
    report: dict[str, Any] = {"dropout": DESIGN_DROPOUT}
    report["default"] = [
        simulate(1_000, default_degree(1_000), rounds),
        simulate(10_000, default_degree(10_000), big),
    ]
    report["old_default"] = [simulate(1_000, 72, rounds // 4), simulate(10_000, 86, big // 2)]
    report["full_rounds"] = [
        full_round(1_000, default_degree(1_000), 0, r) for r in range(1, full + 1)
    ]
    # small rings, where aborts are common: the model against the cores, round by round
    report["full_rounds_small"] = [full_round(60, 12, 0, r) for r in range(1, 6 + 1)]
    report["model_matches_cores"] = all(
        f["outcome"] == f["predicted"] for f in report["full_rounds"] + report["full_rounds_small"]
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
