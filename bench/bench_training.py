"""Training-core benchmarks (issue 4). Prints one JSON object; asserts nothing.

1. ``numpy_client_rounds``: client rounds per second of numpy multinomial
   logistic regression, dimension 100, 10 classes. One client round = one
   epoch over the client's 50 samples with batch 10 (5 SGD steps), through
   ``TrainingManager.training_round`` (set weights, train, weighted update,
   loss metric), for many clients each with its own manager and shard; plus
   the server-side ``WeightedMean`` over all of their updates.
2. ``torch_vs_bare``: steps per second of ``TrainingManager`` training a small
   MLP (100-128-10, batch 32, plain SGD) against a bare torch loop
   (``torch.optim.SGD``, same initial weights, same data, same batch order) in
   the same process, interleaved repetitions, median ratio.

torch runs with one intra-op thread in both loops: on a shared 2-core machine
OpenMP's spinning threads make small ops 10x slower and the timings noise.

``--sanity`` instead prints the centralized sanity accuracies of
docs/training.md (numpy logistic regression on digits and Synthetic(0, 0)).

Usage: ``python bench/bench_training.py [--quick | --sanity]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np
import torch

from simkit.rng import SeedTree
from simkit.training import (
    SGD,
    Dataset,
    LogisticRegression,
    TorchModel,
    TrainingManager,
    TrainInstructions,
    TrainResult,
    WeightedMean,
    load_digits,
    synthetic,
)


def bench_numpy_rounds(n_clients: int, repeats: int) -> dict[str, Any]:
    """Client rounds/s for numpy logistic regression (dim 100, 10 classes)."""
    tree = SeedTree(0)
    managers = []
    for i in range(n_clients):
        rng = tree.numpy("data", i)
        data = Dataset(rng.normal(size=(50, 100)), rng.integers(0, 10, 50))
        managers.append(
            TrainingManager(LogisticRegression(100, 10), SGD(0.1), data, seed_tree=tree.child(i))
        )
    weights = LogisticRegression(100, 10).get_weights()
    agg = WeightedMean()
    best_round, best_agg = float("inf"), float("inf")
    for r in range(repeats):
        ins = TrainInstructions(round=r, weights=weights, batch_size=10, n_epoch=1)
        start = time.perf_counter()
        replies = {}
        for i, manager in enumerate(managers):
            result = manager.training_round(ins)
            assert isinstance(result, TrainResult)
            replies[f"c{i:05d}"] = result.updates
        mid = time.perf_counter()
        weights = weights + agg.aggregate(replies)
        end = time.perf_counter()
        best_round, best_agg = min(best_round, mid - start), min(best_agg, end - mid)
    return {
        "clients": n_clients,
        "samples_per_client": 50,
        "batch_size": 10,
        "steps_per_round": 5,
        "client_rounds_per_s": round(n_clients / best_round, 1),
        "us_per_client_round": round(best_round / n_clients * 1e6, 1),
        "aggregate_s": round(best_agg, 4),
        "weights_digest": weights.digest()[:16],
    }


def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(100, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def _bare_epoch(
    module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, order: np.ndarray, batch: int
) -> int:
    opt = torch.optim.SGD(module.parameters(), lr=0.05)
    loss_fn = torch.nn.CrossEntropyLoss()
    xs, ys = x[torch.from_numpy(order)], y[torch.from_numpy(order)]
    steps = 0
    for lo in range(0, len(order), batch):
        opt.zero_grad()
        loss_fn(module(xs[lo : lo + batch]), ys[lo : lo + batch]).backward()
        opt.step()
        steps += 1
    return steps


def bench_torch(n_samples: int, repeats: int) -> dict[str, Any]:
    """TrainingManager vs a bare torch loop, same model, data and batch order."""
    torch.set_num_threads(1)
    tree = SeedTree(1)
    rng = tree.numpy("data")
    data = Dataset(
        rng.normal(size=(n_samples, 100)).astype(np.float32), rng.integers(0, 10, n_samples)
    )
    model = TorchModel(_mlp(), torch.nn.CrossEntropyLoss(), seed=tree.child("model"))
    manager = TrainingManager(model, SGD(0.05), data, seed_tree=tree.child("client"))
    bare = _mlp()
    with torch.no_grad():
        for name, param in bare.named_parameters():
            param.copy_(torch.from_numpy(model.get_weights()[name]))
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    manager.training_round(TrainInstructions(round=0, batch_size=32, n_epoch=1))  # warm-up
    order = tree.child("client").numpy("batches").permutation(n_samples)
    _bare_epoch(bare, x, y, order, 32)
    # the bare loop replays the manager's shuffle stream: same batches, same steps
    shuffle = tree.child("client").numpy("batches")
    shuffle.permutation(n_samples)  # the warm-up epoch's draw
    ratios, ours, theirs = [], [], []
    for r in range(repeats):
        start = time.perf_counter()
        result = manager.training_round(TrainInstructions(round=r, batch_size=32, n_epoch=1))
        t_ours = time.perf_counter() - start
        assert isinstance(result, TrainResult)
        order = shuffle.permutation(n_samples)
        start = time.perf_counter()
        steps = _bare_epoch(bare, x, y, order, 32)
        t_bare = time.perf_counter() - start
        assert steps == result.effort.n_steps
        ours.append(steps / t_ours)
        theirs.append(steps / t_bare)
        ratios.append(t_bare / t_ours)
    drift = max(
        float(np.abs(model.get_weights()[n] - p.detach().numpy()).max())
        for n, p in bare.named_parameters()
    )
    return {
        "model": "MLP 100-128-10, SGD, batch 32, CPU, 1 thread",
        "steps_per_epoch": data.n_batches(32),
        "manager_steps_per_s": round(statistics.median(ours), 1),
        "bare_torch_steps_per_s": round(statistics.median(theirs), 1),
        "ratio_manager_over_bare": round(statistics.median(ratios), 3),
        "max_weight_difference_after": drift,
    }


def _centralized(
    train: Dataset, tests: list[Dataset], epochs: int, lr: float
) -> tuple[dict[str, Any], TrainingManager]:
    tree = SeedTree(0)
    model = LogisticRegression(train.x.shape[1], 10)
    manager = TrainingManager(model, SGD(lr), train, seed_tree=tree.child("central"))
    for r in range(epochs):
        manager.training_round(TrainInstructions(round=r, batch_size=32, n_epoch=1))
    test = Dataset(np.concatenate([t.x for t in tests]), np.concatenate([t.y for t in tests]))
    states, _ = manager.evaluate_under_constraints(data=test)
    train_states, _ = manager.evaluate_under_constraints(data=train)
    summary = {
        "train_samples": len(train),
        "test_samples": len(test),
        "epochs": epochs,
        "lr": lr,
        "batch_size": 32,
        "test_accuracy": round(states["accuracy"].result(), 4),
        "test_loss": round(states["loss"].result(), 4),
        "train_accuracy": round(train_states["accuracy"].result(), 4),
    }
    return summary, manager


def sanity() -> dict[str, Any]:
    """Centralized numpy logistic regression on digits and pooled Synthetic(0, 0).

    Synthetic: 30 clients, each split 80/20; one model trained on the pooled
    training parts; test accuracy pooled (sample-weighted) and averaged over
    clients (each client's own test part).
    """
    split = SeedTree(0).numpy("split")
    digits_train, digits_test = load_digits().split(0.75, split)
    digits, _ = _centralized(digits_train, [digits_test], epochs=30, lr=0.5)
    parts = [c.split(0.8, split) for c in synthetic(0.0, 0.0, 30, SeedTree(0))]
    pooled = Dataset(
        np.concatenate([p[0].x for p in parts]), np.concatenate([p[0].y for p in parts])
    )
    syn, manager = _centralized(pooled, [p[1] for p in parts], epochs=30, lr=0.1)
    per_client = [
        manager.evaluate_under_constraints(data=p[1])[0]["accuracy"].result() for p in parts
    ]
    syn["clients"] = len(parts)
    syn["largest_client_share"] = round(max(len(p[0]) for p in parts) / len(pooled), 3)
    syn["mean_client_test_accuracy"] = round(float(np.mean(per_client)), 4)
    return {"digits": digits, "synthetic_0_0": syn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer clients and repeats")
    parser.add_argument("--sanity", action="store_true", help="centralized accuracies only")
    args = parser.parse_args()
    if args.sanity:
        print(json.dumps({"bench": "training-sanity", **sanity()}, indent=2))
        return
    clients, repeats = (200, 2) if args.quick else (2000, 5)
    out = {
        "bench": "training",
        "numpy_client_rounds": bench_numpy_rounds(clients, repeats),
        "torch_vs_bare": bench_torch(2048, 3 if args.quick else 7),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
