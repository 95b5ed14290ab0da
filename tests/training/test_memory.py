"""Memory that follows what is active: index views, lazy data, mapped files, pooled models."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simkit.rng import SeedTree
from simkit.trace import Trace
from simkit.training import (
    SGD,
    CostModel,
    DataCache,
    Dataset,
    EvalInstructions,
    EvalResult,
    FileArray,
    LogisticRegression,
    ModelPool,
    SharedWeights,
    TrainingManager,
    TrainInstructions,
    TrainResult,
    Weights,
    iid,
    load_npz,
    planned_evaluation,
    planned_training,
    same_bits,
    synthetic,
)
from simkit.training._dataset import npy_on_disk


def _data(n: int = 30) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(rng.standard_normal((n, 4)), rng.integers(0, 3, n))


def test_subset_is_an_index_view_with_the_values_of_a_copy() -> None:
    data = _data()
    view = data.subset([5, 1, 7, 2])
    assert view.is_view
    assert view.nbytes == 4 * np.dtype(np.intp).itemsize
    assert np.array_equal(view.x, data.x[[5, 1, 7, 2]])
    inner = view.subset([3, -1])  # a view of a view composes the indices
    assert np.array_equal(inner.y, data.y[[2, 2]])
    with pytest.raises(IndexError, match="out of range for 4 rows"):
        view.subset([4])


def test_a_view_trains_bit_for_bit_like_the_copy_it_replaces() -> None:
    data = _data(40)
    idx = np.sort(np.random.default_rng(1).permutation(40)[:25])
    view, copy = data.subset(idx), Dataset(data.x[idx].copy(), data.y[idx].copy())
    for a, b in zip(
        view.epoch(SeedTree(3).numpy("e")), copy.epoch(SeedTree(3).numpy("e")), strict=True
    ):
        assert np.array_equal(a, b)
    assert np.array_equal(view.rows(3, 9)[0], copy.x[3:9])
    assert view.materialize().nbytes == copy.nbytes


def test_lazy_synthetic_has_the_values_of_the_eager_one() -> None:
    tree = SeedTree(4)
    eager = synthetic(0.5, 0.5, 6, tree, n_features=5, n_classes=3)
    cache = DataCache(max_bytes=0)  # keeps only the latest: every other access reloads
    lazy = synthetic(0.5, 0.5, 6, tree, n_features=5, n_classes=3, cache=cache)
    assert [len(d) for d in lazy] == [len(d) for d in eager]
    assert cache.loads == 0  # sizes are known without drawing the data
    for _ in range(2):
        for e, z in zip(eager, lazy, strict=True):
            assert np.array_equal(e.x, z.x)
            assert np.array_equal(e.y, z.y)
    assert cache.loads == 12
    assert len(cache) == 1


def test_data_cache_keeps_the_most_recent_within_its_budget() -> None:
    tree = SeedTree(0)
    one = synthetic(0.0, 0.0, 1, tree, n_features=10, samples_per_client=10)[0].nbytes
    cache = DataCache(max_bytes=2 * one)
    lazy = synthetic(0.0, 0.0, 4, tree, n_features=10, samples_per_client=10, cache=cache)
    for d in lazy:
        d.x  # noqa: B018 - load it
    assert len(cache) == 2
    assert cache.nbytes == 2 * one
    lazy[3].y  # noqa: B018 - a hit
    assert cache.loads == 4


def test_load_npz_leaves_an_uncompressed_x_on_disk(tmp_path: Path) -> None:
    x, y = np.arange(200.0).reshape(50, 4), np.arange(50) % 3
    np.savez(tmp_path / "plain.npz", x=x, y=y)
    np.savez_compressed(tmp_path / "packed.npz", x=x, y=y)
    on_disk = load_npz(tmp_path / "plain.npz", on_disk=True)
    packed = load_npz(tmp_path / "packed.npz", on_disk=True)  # cannot: read instead
    assert on_disk.nbytes == y.nbytes  # only y is read
    assert packed.nbytes == x.nbytes + y.nbytes
    parts = on_disk.partition(iid(50, 3, SeedTree(0).numpy("p")))
    assert np.array_equal(np.sort(np.concatenate([p.x[:, 0] for p in parts])), x[:, 0])
    epochs = on_disk.epoch(SeedTree(1).numpy("e")), packed.epoch(SeedTree(1).numpy("e"))
    for a, b in zip(*epochs, strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(on_disk.subset([7, 8, 9, 3]).rows(1, 4)[0], x[[8, 9, 3]])
    assert np.array_equal(np.concatenate([c for c, _ in on_disk.chunks(nbytes=96)]), x)
    assert load_npz(tmp_path / "plain.npz").nbytes == x.nbytes + y.nbytes  # small: read
    clone = pickle.loads(pickle.dumps(parts[1]))  # a worker process opens the file itself
    assert np.array_equal(clone.x, parts[1].x)


def test_a_truncated_file_is_named(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((10, 3)))
    array = npy_on_disk(tmp_path / "x.npy")
    assert isinstance(array, FileArray)
    with open(tmp_path / "x.npy", "r+b") as f:
        f.truncate(100)
    with pytest.raises(OSError, match=r"x\.npy: short read"):
        array.take([9])
    with pytest.raises(IndexError, match="out of range for 10 rows"):
        array.take([10])


def _instructions(r: int, weights: Weights) -> TrainInstructions:
    return TrainInstructions(round=r, weights=weights, batch_size=4, n_epoch=1)


def test_clients_borrowing_one_model_train_as_with_their_own() -> None:
    data = _data(24).partition(iid(24, 2, SeedTree(0).numpy("p")))
    start = LogisticRegression(4, 3, seed=SeedTree(1)).get_weights()

    def clients(model: object) -> list[TrainingManager]:
        return [
            TrainingManager(
                model if isinstance(model, ModelPool) else LogisticRegression(4, 3),
                SGD(0.1, momentum=0.9),
                d,
                seed_tree=SeedTree(2).child("c", i),
            )
            for i, d in enumerate(data)
        ]

    pool = ModelPool(lambda: LogisticRegression(4, 3))
    own, pooled = clients(None), clients(pool)
    for r in range(3):
        for a, b in zip(own, pooled, strict=True):
            ra = a.training_round(_instructions(r, start))
            rb = b.training_round(_instructions(r, start))
            assert isinstance(ra, TrainResult)
            assert isinstance(rb, TrainResult)
            assert ra.updates.updates == rb.updates.updates
    assert pool.made == 1
    with pytest.raises(RuntimeError, match="borrowed only during a round"):
        pooled[0].model  # noqa: B018
    failed = pooled[0].training_round(TrainInstructions(round=9, batch_size=4))
    assert "needs the round's weights" in getattr(failed, "error_text", "")


def test_a_pooled_torch_model_keeps_each_clients_generator() -> None:
    torch = pytest.importorskip("torch")
    from simkit.training import TorchModel

    def make() -> TorchModel:
        module = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3)
        )
        return TorchModel(module, torch.nn.CrossEntropyLoss(), seed=SeedTree(5))

    data = _data(16).partition(iid(16, 2, SeedTree(0).numpy("p")))
    start = make().get_weights()
    own = [TrainingManager(make(), SGD(0.1), d, seed_tree=SeedTree(6)) for d in data]
    pool = ModelPool(make)
    pooled = [TrainingManager(pool, SGD(0.1), d, seed_tree=SeedTree(6)) for d in data]
    for r in range(2):
        for a, b in zip(own, pooled, strict=True):
            ra = a.training_round(_instructions(r, start))
            rb = b.training_round(_instructions(r, start))
            assert isinstance(ra, TrainResult)
            assert isinstance(rb, TrainResult)
            assert ra.updates.updates == rb.updates.updates
    state = pooled[1].state_dict()
    assert "weights" not in state["model"]
    assert "rng" in state["model"]


def test_shared_weights_keep_one_copy_per_version() -> None:
    shared = SharedWeights()
    a = Weights({"w": np.array([1.0, 0.0])})
    b = Weights({"w": np.array([1.0, 0.0])})
    assert shared.share(1, a) is a
    assert shared.share(1, b) is a
    negative_zero = Weights({"w": np.array([1.0, -0.0])})
    assert not same_bits(a, negative_zero)
    assert shared.share(1, negative_zero) is negative_zero  # equal values, other bits
    assert shared.share(2, b) is b  # another version


def test_trace_tracks_crash_sources_as_it_records() -> None:
    trace = Trace()
    trace.record(0.0, "crash", "c1")
    trace.record(0.0, "send", "c2", "server", "TrainReply", 10)
    trace.record(1.0, "actor_error", "c3")
    trace.record(2.0, "peer_down", "server", "c4")
    assert trace.sources("crash") == {"c1"}
    assert trace.sources("actor_error") == {"c3"}
    kept = [e for e in trace.events if e.kind in ("crash", "peer_down")]
    assert trace.events_of("peer_down", "crash") == kept
    with pytest.raises(KeyError, match="not tracked"):
        trace.sources("send")


@given(
    st.integers(1, 40),
    st.integers(1, 12),
    st.none() | st.integers(1, 3),
    st.none() | st.integers(1, 20),
    st.none() | st.floats(0.0, 0.2),
    st.booleans(),
    st.floats(0.25, 4.0),
)
def test_planned_cost_is_the_cost_the_round_reports(
    n: int,
    batch: int,
    n_epoch: int | None,
    n_steps: int | None,
    timeout: float | None,
    drop: bool,
    speed: float,
) -> None:
    cost = CostModel(per_sample=1e-3, per_step=2e-3, per_round=1e-2)
    manager = TrainingManager(
        LogisticRegression(4, 3), SGD(0.1), _data(n), seed_tree=SeedTree(0), cost=cost, speed=speed
    )
    weights = manager.model.get_weights()
    ins = TrainInstructions(0, weights, batch, n_epoch, n_steps, timeout, drop_remainder=drop)
    result = manager.training_round(ins)
    planned = planned_training(manager, ins)
    assert planned == (result.effort.t_spent if isinstance(result, TrainResult) else 0.0)
    evaluation = EvalInstructions(0, weights, batch, n_steps, timeout)
    evaluated = manager.evaluation_round(evaluation)
    assert isinstance(evaluated, EvalResult)
    assert planned_evaluation(manager, evaluation) == evaluated.effort.t_spent
