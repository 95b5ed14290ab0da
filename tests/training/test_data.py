"""Dataset batching, partitioners, built-in data, centralized sanity checks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simkit.rng import SeedTree
from simkit.training import (
    SGD,
    Dataset,
    EvalInstructions,
    EvalResult,
    LogisticRegression,
    TrainingManager,
    TrainInstructions,
    dirichlet,
    evenly_distribute_count_into_bins,
    iid,
    load_digits,
    load_npz,
    quantity_skew,
    synthetic,
)


def _data(n: int = 23) -> Dataset:
    return Dataset(np.arange(n * 2, dtype=np.float64).reshape(n, 2), np.arange(n) % 3)


def _covers(parts: list[np.ndarray], n: int) -> bool:
    joined = np.concatenate(parts)
    return sorted(joined.tolist()) == list(range(n))


def test_dataset_validates_lengths() -> None:
    with pytest.raises(ValueError, match="same number of rows"):
        Dataset(np.zeros((3, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="same number of rows"):
        Dataset(np.zeros(()), np.zeros(()))


def test_batches_cover_one_epoch_in_order_without_shuffle() -> None:
    data = _data()
    batches = list(data.batches(5, shuffle=False))
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    assert np.array_equal(np.concatenate([x for x, _ in batches]), data.x)
    assert data.n_batches(5) == 5
    assert data.n_batches(5, drop_remainder=True) == 4
    assert data.batch_sizes(5, drop_remainder=True) == [5, 5, 5, 5]
    assert data.batch_sizes(23) == [23]


def test_shuffled_batches_are_a_seeded_permutation() -> None:
    data = _data()
    run = [
        np.concatenate([y for _, y in data.batches(4, rng=SeedTree(1).numpy("b"))])
        for _ in range(2)
    ]
    assert np.array_equal(run[0], run[1])
    assert sorted(run[0].tolist()) == sorted(data.y.tolist())
    other = np.concatenate([y for _, y in data.batches(4, rng=SeedTree(2).numpy("b"))])
    assert not np.array_equal(run[0], other)
    # rows stay paired
    for x, y in data.batches(4, rng=SeedTree(1).numpy("b")):
        assert np.array_equal((x[:, 0] / 2).astype(int) % 3, y)


def test_shuffle_needs_rng_and_batch_size_is_checked() -> None:
    with pytest.raises(ValueError, match="needs an rng"):
        list(_data().batches(4))
    with pytest.raises(ValueError, match="batch_size"):
        _data().n_batches(0)


def test_subset_split_partition() -> None:
    data = _data(10)
    assert np.array_equal(data.subset([3, 1]).y, data.y[[3, 1]])
    a, b = data.split(0.7, SeedTree(0).numpy("s"))
    assert (len(a), len(b)) == (7, 3)
    assert sorted(np.concatenate([a.x[:, 0], b.x[:, 0]]).tolist()) == data.x[:, 0].tolist()
    parts = data.partition(iid(10, 3, SeedTree(0).numpy("p")))
    assert [len(p) for p in parts] == [4, 3, 3]
    with pytest.raises(ValueError, match="fraction"):
        data.split(1.0, SeedTree(0).numpy("s"))


@given(st.integers(0, 1000), st.integers(1, 50))
def test_evenly_distribute_count_into_bins(count: int, n_bins: int) -> None:
    bins = evenly_distribute_count_into_bins(count, n_bins)
    assert len(bins) == n_bins
    assert sum(bins) == count
    assert max(bins) - min(bins) <= 1
    assert bins == sorted(bins, reverse=True)


def test_evenly_distribute_examples_and_errors() -> None:
    assert evenly_distribute_count_into_bins(7, 3) == [3, 2, 2]
    with pytest.raises(ValueError, match="count >= 0"):
        evenly_distribute_count_into_bins(-1, 3)


def test_iid_partition() -> None:
    parts = iid(103, 10, SeedTree(0).numpy("p"))
    assert _covers(parts, 103)
    assert sorted(len(p) for p in parts) == [10] * 7 + [11] * 3
    again = iid(103, 10, SeedTree(0).numpy("p"))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    with pytest.raises(ValueError, match="n_clients"):
        iid(10, 0, SeedTree(0).numpy("p"))


def test_quantity_skew_partition() -> None:
    parts = quantity_skew(1000, 8, SeedTree(0).numpy("q"), alpha=0.3, min_size=5)
    assert _covers(parts, 1000)
    sizes = [len(p) for p in parts]
    assert min(sizes) >= 5
    assert max(sizes) > 2 * min(sizes)  # skewed
    with pytest.raises(ValueError, match="cannot give"):
        quantity_skew(10, 8, SeedTree(0).numpy("q"), min_size=2)
    with pytest.raises(ValueError, match="alpha"):
        quantity_skew(10, 2, SeedTree(0).numpy("q"), alpha=0)


def test_dirichlet_partition_skews_labels() -> None:
    labels = np.repeat(np.arange(10), 100)
    skewed = dirichlet(labels, 10, 0.1, SeedTree(0).numpy("d"), min_size=10)
    flat = dirichlet(labels, 10, 1000.0, SeedTree(0).numpy("d"))
    assert _covers(skewed, 1000)
    assert _covers(flat, 1000)
    assert min(len(p) for p in skewed) >= 10

    def mean_classes(parts: list[np.ndarray]) -> float:
        return float(np.mean([np.count_nonzero(np.bincount(labels[p]) > 5) for p in parts]))

    assert mean_classes(skewed) < 5 < mean_classes(flat)


def test_dirichlet_gives_up_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no Dirichlet"):
        dirichlet(np.zeros(10, dtype=int), 5, 1.0, SeedTree(0).numpy("d"), min_size=3, max_tries=3)


def test_synthetic_shapes_and_labels() -> None:
    clients = synthetic(0.5, 0.5, 4, SeedTree(1), samples_per_client=30)
    assert len(clients) == 4
    for data in clients:
        assert data.x.shape == (30, 60)
        assert data.y.dtype == np.int64
        assert data.y.min() >= 0
        assert data.y.max() < 10


def test_synthetic_is_seeded_and_per_client() -> None:
    a = synthetic(1.0, 1.0, 3, SeedTree(7))
    b = synthetic(1.0, 1.0, 5, SeedTree(7))
    for da, db in zip(a, b[:3], strict=True):
        assert np.array_equal(da.x, db.x)
        assert np.array_equal(da.y, db.y)
    c = synthetic(1.0, 1.0, 3, SeedTree(8))
    assert not np.array_equal(a[0].x[:5], c[0].x[:5])
    assert all(len(d) >= 50 for d in a)  # power law sizes start at 50


def test_synthetic_heterogeneity_grows_with_beta() -> None:
    def spread(beta: float) -> float:
        clients = synthetic(0.0, beta, 8, SeedTree(3), samples_per_client=50)
        return float(np.std([d.x.mean() for d in clients]))

    assert spread(5.0) > spread(0.0)


def test_synthetic_iid_and_validation() -> None:
    clients = synthetic(0.0, 0.0, 2, SeedTree(1), samples_per_client=[20, 40], iid=True)
    assert [len(d) for d in clients] == [20, 40]
    with pytest.raises(ValueError, match="entries"):
        synthetic(0.0, 0.0, 3, SeedTree(1), samples_per_client=[1, 2])
    with pytest.raises(ValueError, match=">= 0"):
        synthetic(-1.0, 0.0, 3, SeedTree(1))


def test_load_digits() -> None:
    pytest.importorskip("sklearn")
    data = load_digits()
    assert data.x.shape == (1797, 64)
    assert 0.0 <= data.x.min()
    assert data.x.max() <= 1.0
    assert sorted(set(data.y.tolist())) == list(range(10))


def test_load_digits_without_sklearn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"simkit\[digits\]"):
        load_digits()


def test_load_npz(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((4, 2)), y=np.arange(4), labels=np.zeros(4))
    data = load_npz(path)
    assert data.x.shape == (4, 2)
    assert np.array_equal(load_npz(path, y_key="labels").y, np.zeros(4))
    with pytest.raises(KeyError, match="has"):
        load_npz(path, x_key="inputs")


def _centralized(train: Dataset, test: Dataset, n_features: int, epochs: int, lr: float) -> float:
    tree = SeedTree(0)
    model = LogisticRegression(n_features, 10)
    manager = TrainingManager(model, SGD(lr), train, test, seed_tree=tree)
    for r in range(epochs):
        manager.training_round(TrainInstructions(round=r, batch_size=32, n_epoch=1))
    result = manager.evaluation_round(EvalInstructions(round=epochs))
    assert isinstance(result, EvalResult)
    return result.metrics["accuracy"].result()


def test_centralized_digits_accuracy_at_least_0_9() -> None:
    pytest.importorskip("sklearn")
    train, test = load_digits().split(0.75, SeedTree(0).numpy("split"))
    assert _centralized(train, test, 64, epochs=30, lr=0.5) >= 0.9


def test_centralized_synthetic_0_0_learns() -> None:
    clients = synthetic(0.0, 0.0, 30, SeedTree(0))
    pooled = Dataset(np.concatenate([c.x for c in clients]), np.concatenate([c.y for c in clients]))
    train, test = pooled.split(0.8, SeedTree(0).numpy("split"))
    majority = np.bincount(test.y).max() / len(test)
    assert _centralized(train, test, 60, epochs=5, lr=0.1) > majority + 0.1
