"""Optimizers, modules, regularizers, schedules, server presets, SCAFFOLD."""

from __future__ import annotations

import numpy as np
import pytest

from simkit.rng import SeedTree
from simkit.training import (
    SGD,
    Adam,
    AdamModule,
    Dataset,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProxRegularizer,
    FedYogi,
    LinearDecay,
    LogisticRegression,
    MeanState,
    MomentumModule,
    MultiLinearDecay,
    Optimizer,
    ScaffoldAuxVar,
    ScaffoldClientModule,
    ScaffoldServerAuxVar,
    ScaffoldServerModule,
    TrainingManager,
    TrainInstructions,
    TrainResult,
    Weights,
    sum_in_order,
)


def _w(*values: float) -> Weights:
    return Weights({"w": np.array(values, dtype=np.float64)})


def _train(opt: Optimizer, seed: int = 0, rounds: int = 3) -> Weights:
    tree = SeedTree(seed)
    rng = tree.numpy("data")
    data = Dataset(rng.normal(size=(40, 5)), rng.integers(0, 3, 40))
    model = LogisticRegression(5, 3)
    manager = TrainingManager(model, opt, data, seed_tree=tree.child("client"))
    weights = model.get_weights()
    for r in range(rounds):
        result = manager.training_round(TrainInstructions(round=r, weights=weights, batch_size=8))
        assert isinstance(result, TrainResult)
        weights = weights + result.updates.mean()
    return weights


def test_plain_sgd_step() -> None:
    opt = Optimizer(lrate=0.5)
    assert opt.step_weights(_w(1.0, 2.0), _w(2.0, -2.0)) == _w(0.0, 3.0)


def test_fedprox_with_mu_zero_equals_sgd() -> None:
    plain = _train(SGD(0.1, momentum=0.5))
    prox = _train(
        Optimizer(0.1, modules=[MomentumModule(0.5)], regularizers=[FedProxRegularizer(0.0)])
    )
    assert plain == prox
    assert plain != _train(SGD(0.1, momentum=0.5, mu=1.0))


def test_fedprox_pulls_towards_the_round_start() -> None:
    reg = FedProxRegularizer(2.0)
    reg.start_round(_w(1.0))
    assert reg.run(_w(0.0), _w(3.0)) == _w(4.0)
    with pytest.raises(ValueError, match="mu"):
        FedProxRegularizer(-1.0)


def test_weight_decay_and_momentum_match_torch_formula() -> None:
    opt = SGD(0.1, momentum=0.9, weight_decay=0.01)
    w, torch_w, buf = _w(1.0, -1.0), np.array([1.0, -1.0]), np.zeros(2)
    for g in ([0.5, 0.5], [0.1, -0.3], [0.0, 1.0]):
        w = opt.step_weights(w, _w(*g))
        d = np.array(g) + 0.01 * torch_w
        buf = 0.9 * buf + d
        torch_w = torch_w - 0.1 * buf
    np.testing.assert_allclose(w["w"], torch_w, rtol=1e-12)


def test_nesterov_momentum() -> None:
    mod = MomentumModule(0.5, nesterov=True)
    assert mod.run(_w(1.0)) == _w(1.5)
    assert mod.run(_w(1.0)) == _w(1.0 + 0.5 * 1.5)


def test_adam_first_step_is_sign_times_lr() -> None:
    opt = Adam(lr=0.01)
    new = opt.step_weights(_w(0.0, 0.0), _w(3.0, -0.2))
    np.testing.assert_allclose(new["w"], [-0.01, 0.01], rtol=1e-6)


def test_fed_adam_yogi_adagrad_formulas() -> None:
    delta = _w(0.2, -0.4)
    # Reddi et al.: m = (1-b1) d, v = (1-b2) d^2, x += lr m / (sqrt(v) + tau)
    out = FedAdam(lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3).apply_server_update(_w(0, 0), delta)
    d = delta["w"]
    np.testing.assert_allclose(out["w"], 0.1 * 0.1 * d / (np.sqrt(0.01 * d * d) + 1e-3))
    yogi = FedYogi(lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3).apply_server_update(_w(0, 0), delta)
    np.testing.assert_allclose(yogi["w"], out["w"])  # v starts at 0: sign(0 - d^2) = -1
    ada = FedAdagrad(lr=0.1, tau=1e-3).apply_server_update(_w(0, 0), delta)
    np.testing.assert_allclose(ada["w"], 0.1 * d / (np.abs(d) + 1e-3))


def test_fedavg_and_fedavgm() -> None:
    assert FedAvg().apply_server_update(_w(1.0), _w(0.5)) == _w(1.5)
    avgm = FedAvgM(lr=1.0, momentum=0.5)
    w = avgm.apply_server_update(_w(0.0), _w(1.0))
    assert avgm.apply_server_update(w, _w(1.0)) == _w(1.0 + 1.5)


def test_schedules() -> None:
    lin = LinearDecay(10, startp=1.0, endp=0.0)
    assert [lin(t) for t in (0, 5, 10, 20)] == [1.0, 0.5, 0.0, 0.0]
    multi = MultiLinearDecay([LinearDecay(2, 1.0, 0.5), LinearDecay(2, 0.5, 0.1)])
    assert [multi(t) for t in range(6)] == pytest.approx([1.0, 0.75, 0.5, 0.3, 0.1, 0.1])
    opt = SGD(0.2, schedule=lin)
    opt.start_round(5, _w(0.0))
    assert opt.lr == pytest.approx(0.1)
    with pytest.raises(ValueError, match="steps"):
        LinearDecay(0)
    with pytest.raises(ValueError, match="at least one"):
        MultiLinearDecay([])
    assert "LinearDecay(steps=2" in repr(multi)


def test_validation() -> None:
    with pytest.raises(ValueError, match="lrate"):
        Optimizer(0.0)
    with pytest.raises(ValueError, match="unique"):
        Optimizer(0.1, modules=[MomentumModule(), MomentumModule()])
    with pytest.raises(ValueError, match="beta"):
        MomentumModule(1.0)
    with pytest.raises(ValueError, match="eps"):
        AdamModule(eps=0.0)
    with pytest.raises(ValueError, match="need the current weights"):
        SGD(0.1, weight_decay=0.1).compute_updates(_w(1.0))
    with pytest.raises(KeyError, match="modules are"):
        SGD(0.1).process_aux_var({"scaffold": ScaffoldServerAuxVar()})
    with pytest.raises(TypeError, match="no auxiliary"):
        MomentumModule().process_aux_var(ScaffoldServerAuxVar())
    assert "MomentumModule(beta=0.9" in repr(SGD(0.1, momentum=0.9))


def test_scaffold_client_control_variate_is_mean_gradient() -> None:
    mod = ScaffoldClientModule()
    mod.process_aux_var(ScaffoldServerAuxVar(state=_w(1.0)))
    mod.start_round(_w(0.0))
    assert mod.run(_w(2.0)) == _w(3.0)  # g - 0 + c
    mod.run(_w(4.0))
    aux = mod.collect_aux_var()
    assert isinstance(aux, ScaffoldAuxVar)
    assert aux.delta == _w(3.0)
    mod.start_round(_w(0.0))
    assert mod.run(_w(2.0)) == _w(2.0 - 3.0 + 1.0)
    mod.run(_w(0.0))
    aux2 = mod.collect_aux_var()
    assert isinstance(aux2, ScaffoldAuxVar)
    assert aux2.delta == _w(1.0 - 3.0)


def test_scaffold_round_trip_through_server() -> None:
    server = FedAvg(scaffold=True, n_clients=4)
    clients = {f"c{i}": SGD(0.1, scaffold=True) for i in range(2)}
    sent = server.collect_aux_var()
    assert sent == {"scaffold": ScaffoldServerAuxVar(state=None)}
    replies = {}
    for i, (name, opt) in enumerate(sorted(clients.items())):
        opt.process_aux_var(sent)
        opt.start_round(0, _w(0.0))
        opt.compute_updates(_w(float(i + 1)))
        replies[name] = opt.collect_aux_var()["scaffold"]
    server.process_aux_var({"scaffold": sum_in_order(replies)})
    state = server.collect_aux_var()["scaffold"]
    assert isinstance(state, ScaffoldServerAuxVar)
    assert state.state == _w(3.0 / 4)
    assert ScaffoldServerModule().run(_w(1.0)) == _w(1.0)
    with pytest.raises(TypeError):
        ScaffoldServerModule().process_aux_var(MeanState(1, 1))  # type: ignore[arg-type]


def test_scaffold_training_is_deterministic_and_differs_from_sgd() -> None:
    scaffold = _train(SGD(0.1, scaffold=True), rounds=3)
    assert scaffold == _train(SGD(0.1, scaffold=True), rounds=3)
    assert scaffold != _train(SGD(0.1), rounds=3)


def test_state_dict_round_trip_continues_identically() -> None:
    def fresh() -> Optimizer:
        return Optimizer(
            0.1,
            w_decay=0.01,
            regularizers=[FedProxRegularizer(0.1)],
            modules=[ScaffoldClientModule(), MomentumModule(0.9), AdamModule()],
        )

    grads = [_w(float(i), -float(i) / 2) for i in range(1, 6)]
    a, w = fresh(), _w(1.0, 1.0)
    a.start_round(0, w)
    for g in grads[:2]:
        w = a.step_weights(w, g)
    b = fresh()
    b.load_state_dict(a.state_dict())
    wa, wb = w, w
    for g in grads[2:]:
        wa, wb = a.step_weights(wa, g), b.step_weights(wb, g)
    assert wa.digest() == wb.digest()
    with pytest.raises(ValueError, match="modules"):
        SGD(0.1).load_state_dict(a.state_dict())
