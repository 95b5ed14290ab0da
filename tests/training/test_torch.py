"""TorchModel: determinism, no global RNG side effects, parity with torch.optim."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from simkit.rng import SeedTree
from simkit.training import (
    SGD,
    Adam,
    Dataset,
    EvalInstructions,
    EvalResult,
    TorchModel,
    TrainingManager,
    TrainInstructions,
    TrainResult,
    Weights,
)


def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.3),
        torch.nn.Linear(16, 3),
    )


def _data(seed: int = 0) -> Dataset:
    rng = SeedTree(seed).numpy("data")
    return Dataset(rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 3, 40))


def _run(seed: int, rounds: int = 2, module: torch.nn.Module | None = None) -> TorchModel:
    tree = SeedTree(seed)
    net = module if module is not None else _mlp()
    model = TorchModel(net, torch.nn.CrossEntropyLoss(), seed=tree.child("model"))
    manager = TrainingManager(model, SGD(0.1, momentum=0.9), _data(), seed_tree=tree)
    for r in range(rounds):
        result = manager.training_round(TrainInstructions(round=r, batch_size=8))
        assert isinstance(result, TrainResult), result
    return model


def test_same_seed_gives_identical_weight_bytes() -> None:
    a, b = _run(3), _run(3)
    assert a.get_weights().digest() == b.get_weights().digest()
    assert a.get_weights().digest() != _run(4).get_weights().digest()


def test_global_torch_state_is_left_alone() -> None:
    module = _mlp()  # building a module draws from the global generator: do it first
    before = torch.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    _run(1, module=module)
    assert torch.equal(before, torch.get_rng_state())
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_session_is_deterministic_and_reentrant() -> None:
    model = TorchModel(_mlp(), torch.nn.CrossEntropyLoss(), num_threads=1)
    threads = torch.get_num_threads()
    with model.session():
        assert torch.are_deterministic_algorithms_enabled()
        with model.session():
            assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == threads


def test_seeded_init_is_reproducible() -> None:
    a = TorchModel(_mlp(), torch.nn.CrossEntropyLoss(), seed=SeedTree(9))
    b = TorchModel(_mlp(), torch.nn.CrossEntropyLoss(), seed=SeedTree(9))
    assert a.get_weights().digest() == b.get_weights().digest()
    assert a.get_weights().names == ("0.bias", "0.weight", "3.bias", "3.weight")


def _parity(opt_simkit: object, opt_torch: type[torch.optim.Optimizer], **kw: Any) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    ref = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    ref.load_state_dict(net.state_dict())
    model = TorchModel(net, torch.nn.CrossEntropyLoss())
    torch_opt = opt_torch(ref.parameters(), **kw)
    data = _data()
    loss_fn = torch.nn.CrossEntropyLoss()
    for x, y in data.batches(8, shuffle=False):
        opt_simkit.step(model, model.compute_batch_gradients(x, y))  # type: ignore[attr-defined]
        torch_opt.zero_grad()
        loss_fn(ref(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        torch_opt.step()
    for name, param in ref.named_parameters():
        np.testing.assert_allclose(model.get_weights()[name], param.detach().numpy(), atol=1e-5)


def test_sgd_momentum_weight_decay_matches_torch() -> None:
    _parity(
        SGD(0.1, momentum=0.9, weight_decay=0.01),
        torch.optim.SGD,
        lr=0.1,
        momentum=0.9,
        weight_decay=0.01,
    )


def test_adam_matches_torch() -> None:
    _parity(Adam(0.01), torch.optim.Adam, lr=0.01)


def test_evaluation_and_prediction() -> None:
    model = _run(2)
    manager = TrainingManager(model, SGD(0.1), _data(), seed_tree=SeedTree(0))
    result = manager.evaluation_round(EvalInstructions(round=0))
    assert isinstance(result, EvalResult)
    assert 0.0 <= result.metrics["accuracy"].result() <= 1.0
    probs = model.predict(_data().x[:4])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_regression_task_is_inferred_and_weights_validate() -> None:
    model = TorchModel(torch.nn.Linear(3, 1), torch.nn.MSELoss())
    assert model.task == "regression"
    assert model.predict(np.zeros((2, 3))).shape == (2, 1)
    with pytest.raises(ValueError, match="expected weights"):
        model.set_weights(Weights({"w": np.zeros(1)}))
    with pytest.raises(ValueError, match="expected shape"):
        model.set_weights(Weights({"bias": np.zeros(2), "weight": np.zeros((1, 3))}))


def test_state_dict_restores_weights_buffers_and_generator() -> None:
    def make() -> TorchModel:
        net = torch.nn.Sequential(
            torch.nn.Linear(6, 4),
            torch.nn.BatchNorm1d(4),
            torch.nn.Dropout(0.5),
            torch.nn.Linear(4, 3),
        )
        return TorchModel(net, torch.nn.CrossEntropyLoss(), seed=SeedTree(1))

    a = make()
    x, y = _data().x[:8], _data().y[:8]
    with a.session():
        a.compute_batch_gradients(x, y)
    b = make()
    b.load_state_dict(a.state_dict())
    with a.session():
        ga = a.compute_batch_gradients(x, y)
    with b.session():
        gb = b.compute_batch_gradients(x, y)
    assert ga.digest() == gb.digest()
