"""Checkpoints (restore and continue bit for bit) and codec registration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from simkit.rng import SeedTree
from simkit.training import (
    SGD,
    Adam,
    Dataset,
    Effort,
    EvalInstructions,
    EvalResult,
    LogisticRegression,
    MeanState,
    ModelUpdates,
    ScaffoldServerAuxVar,
    TorchModel,
    TrainFailure,
    TrainingManager,
    TrainInstructions,
    TrainResult,
    Weights,
    load_checkpoint,
    load_state,
    save_checkpoint,
    save_state,
)

Factory = Callable[[], TrainingManager]


def _numpy_manager() -> TrainingManager:
    tree = SeedTree(11)
    rng = tree.numpy("data")
    data = Dataset(rng.normal(size=(37, 5)), rng.integers(0, 4, 37))
    opt = SGD(0.05, momentum=0.9, weight_decay=1e-3, mu=0.1, scaffold=True)
    return TrainingManager(LogisticRegression(5, 4), opt, data, seed_tree=tree.child("c"))


def _torch_manager() -> TrainingManager:
    tree = SeedTree(12)
    rng = tree.numpy("data")
    data = Dataset(rng.normal(size=(37, 5)).astype(np.float32), rng.integers(0, 4, 37))
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 4))
    model = TorchModel(net, torch.nn.CrossEntropyLoss(), seed=tree.child("model"))
    return TrainingManager(model, Adam(0.01), data, seed_tree=tree.child("c"))


def _round(manager: TrainingManager, r: int) -> TrainResult:
    server = ScaffoldServerAuxVar(state=None)
    aux = (
        {"scaffold": server} if any(m.name == "scaffold" for m in manager.optimizer.modules) else {}
    )
    result = manager.training_round(TrainInstructions(round=r, batch_size=8, n_steps=7, aux=aux))
    assert isinstance(result, TrainResult), result
    return result


@pytest.mark.parametrize("factory", [_numpy_manager, _torch_manager])
def test_restore_and_continue_equals_uninterrupted(factory: Factory, tmp_path: Path) -> None:
    straight = factory()
    digests = [_round(straight, r).updates.updates.digest() for r in range(5)]

    first = factory()
    for r in range(2):
        _round(first, r)
    save_checkpoint(tmp_path / "ckpt", first, extra={"round": 2})
    _round(first, 99)  # the saved state must not see later changes

    resumed = factory()
    assert load_checkpoint(tmp_path / "ckpt", resumed) == {"round": 2}
    assert [_round(resumed, r).updates.updates.digest() for r in range(2, 5)] == digests[2:]
    assert resumed.model.get_weights().digest() == straight.model.get_weights().digest()
    assert resumed.rounds_done == 5


def test_state_tree_round_trip(tmp_path: Path) -> None:
    state = {
        "a": np.arange(3, dtype=np.int16),
        "nested": {"x": [1, 2.5, None, "s", True], "w": Weights({"k": np.ones(2)})},
        "big": 2**100,
        "scalar": np.float32(1.5),
    }
    save_state(tmp_path / "s.npz", state)
    back = load_state(tmp_path / "s.npz")
    assert back["a"].dtype == np.int16
    assert back["a"].tolist() == [0, 1, 2]
    assert back["nested"]["x"] == [1, 2.5, None, "s", True]
    assert back["nested"]["w"]["k"].tolist() == [1.0, 1.0]
    assert back["big"] == 2**100
    assert back["scalar"] == 1.5


def test_bad_states_and_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot checkpoint"):
        save_state(tmp_path / "s", {"f": object()})
    with pytest.raises(TypeError, match="keys must be str"):
        save_state(tmp_path / "s", {"f": {1: 2}})
    assert not list(tmp_path.iterdir())  # no temporary file left behind
    np.savez(tmp_path / "other.npz", x=np.ones(2))
    with pytest.raises(ValueError, match="not a simkit checkpoint"):
        load_state(tmp_path / "other.npz")


def test_codec_round_trips_manager_io() -> None:
    codec = pytest.importorskip("simkit.codec")
    w = Weights({"w": np.arange(4.0)})
    values = [
        TrainInstructions(
            round=3, weights=w, n_steps=5, timeout=2.0, aux={"scaffold": ScaffoldServerAuxVar(w)}
        ),
        TrainResult(
            3,
            ModelUpdates.weighted(w, 2.0),
            {},
            {"loss": MeanState(1.0, 2.0)},
            Effort(1, 2, 3, 0.5),
        ),
        EvalInstructions(round=1, weights=w),
        EvalResult(1, {"accuracy": MeanState(3.0, 4.0)}, Effort(1, 1, 4, 0.1)),
        TrainFailure(2, "train", "RuntimeError: boom"),
    ]
    for value in values:
        back = codec.unpackb(codec.packb(value))
        assert type(back) is type(value)
        assert codec.canonical_digest(back) == codec.canonical_digest(value)
