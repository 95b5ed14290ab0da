"""The user's models and data in scenario files: ``package.module:function``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simkit.cli import main
from simkit.runner import check_scenario, run_scenario
from simkit.scenario import ScenarioError, build, load_scenario
from simkit.training import pathological

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[2]

CNN = {
    "name": "cnn_digits",
    "rounds": 3,
    "protocol": {"name": "fedavg"},
    "clients": {"count": 5},
    "data": {
        "source": "digits",
        "test_fraction": 0.25,
        "partition": {"kind": "pathological", "classes_per_client": 4},
    },
    "model": {"kind": "tests.fixtures.cnn:make", "options": {"channels": 4}},
    "training": {"batch_size": 32, "n_epoch": 1},
    "optimizer": {"client": {"kind": "adam", "lr": 0.01}},
}


CNN_FILE = ROOT / "tests" / "fixtures" / "cnn_digits.toml"


@pytest.fixture(autouse=True)
def on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))


def with_(**changes: Any) -> dict[str, Any]:
    out = {**CNN}
    for key, value in changes.items():
        table, _, name = key.partition("__")
        out[table] = {**out[table], name: value} if name else value
    return out


def test_a_user_cnn_trains_on_digits_as_8x8_images() -> None:
    pytest.importorskip("protocols.fedavg")
    assert load_scenario(CNN_FILE).config == load_scenario(CNN).config  # the same scenario
    state = torch.random.get_rng_state()
    result = run_scenario(CNN_FILE)
    assert torch.equal(torch.random.get_rng_state(), state)  # global torch RNG untouched
    conv = result.weights.to_dict()["1.weight"]
    assert conv.shape == (4, 1, 3, 3)  # a real convolution over 8x8 images
    accuracy = [r.accuracy for r in result.rounds]
    assert result.rounds_completed == 3
    assert accuracy[-1] is not None
    assert accuracy[0] is not None
    assert accuracy[-1] > accuracy[0] + 0.1
    for client in result.setup.clients:  # pathological: exactly 4 digits each
        labels = client.train.rows(0, len(client.train))[1]
        assert len(np.unique(labels)) == 4


def test_a_user_loader_gives_images() -> None:
    data = {"source": "tests.fixtures.cnn:digits_images", "options": {"scale": 0.5}}
    built = build(load_scenario(with_(data=data, rounds=1)))
    x, _ = built.setup.clients[0].train.rows(0, 2)
    assert x.shape == (2, 1, 8, 8)
    weights = built.setup.model().get_weights()
    assert weights.to_dict()["0.weight"].shape == (4, 1, 3, 3)  # no Unflatten: images in
    again = build(load_scenario(with_(data=data, rounds=1))).setup.model().get_weights()
    assert again.digest() == weights.digest()  # initialized from the seed tree
    other = load_scenario(with_(data=data, rounds=1, seed=1))
    assert build(other).setup.model().get_weights().digest() != weights.digest()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"model__kind": "tests.fixtures.nope:make"},
            "model.kind: cannot import 'tests.fixtures.nope': No module named",
        ),
        (
            {"model__kind": "tests.fixtures.cnn:mkae"},
            "model.kind: module 'tests.fixtures.cnn' has no 'mkae'",
        ),
        (
            {"model__kind": "tests.fixtures.cnn:torch"},
            "model.kind: tests.fixtures.cnn:torch is a module",
        ),
        (
            {"model__options": {"chanels": 4}},
            "model.options: tests.fixtures.cnn:make(): got an unexpected keyword argument "
            "'chanels'",
        ),
        ({"model__options": {"n_classes": 3}}, "model.options: 'n_classes' is given by simkit"),
        (
            {"model": {"kind": "tests.fixtures.cnn:not_a_model"}},
            "model.kind: tests.fixtures.cnn:not_a_model returned an int, not a torch.nn.Module",
        ),
        (
            {"model": {"kind": "tests.fixtures.cnn:broken"}},
            "model.kind: tests.fixtures.cnn:broken(...) raised RuntimeError: no model for 10 "
            "classes (at tests.fixtures.cnn:",
        ),
        ({"model": {"kind": "cnn"}}, "model: 'kind' must be one of 'logistic', 'linear', 'mlp', "),
        ({"model": {"kind": "a b:c"}}, "model.kind: must be package.module:function, got 'a b:c'"),
        (
            {"data": {"source": "tests.fixtures.cnn:make"}},
            "data.options: tests.fixtures.cnn:make(): missing a required argument: 'input_shape'",
        ),
        (
            {"data": {"source": "tests.fixtures.cnn:not_a_model", "options": {"n_classes": 2}}},
            "data.source: tests.fixtures.cnn:not_a_model returned an int, not a Dataset",
        ),
        (
            {"data": {"source": "tests.fixtures.cnn:digits_images", "options": {"scale": np.nan}}},
            "data.source: x holds NaN or infinite values",
        ),
        (
            {"data__partition": {"kind": "pathological", "classes_per_client": 11}},
            "data.partition: classes_per_client must be in [1, 10] here, got 11",
        ),
    ],
)
def test_user_code_errors_name_the_key(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(ScenarioError) as info:
        check_scenario(load_scenario(with_(**changes)))
    assert expected in str(info.value)


def test_scenario_check_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cnn.toml"
    path.write_text('[model]\nkind = "tests.fixtures.cnn:mkae"\n', encoding="utf-8")
    assert main(["scenario", "check", str(path)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.endswith("model.kind: module 'tests.fixtures.cnn' has no 'mkae'")


def test_pathological_gives_each_client_k_classes() -> None:
    labels = np.repeat(np.arange(10), 30)
    parts = pathological(labels, 7, 3, np.random.default_rng(1))
    assert [len(np.unique(labels[p])) for p in parts] == [3] * 7
    flat = np.concatenate(parts)
    assert len(flat) == len(np.unique(flat)) == 300  # disjoint, every class held (7 * 3 >= 10)
    again = pathological(labels, 7, 3, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    with pytest.raises(ValueError, match="one integer label per row"):
        pathological(labels.astype(float), 7, 3, np.random.default_rng(1))
    with pytest.raises(ValueError, match="class 0 has 1 rows for 2 clients"):
        pathological(np.array([0, 1, 1]), 2, 2, np.random.default_rng(1))


def test_a_natural_partition_follows_a_column_of_client_ids(tmp_path: Path) -> None:
    writers = np.repeat(np.array(["ann", "bob", "cyd", "dan"]), [10, 20, 30, 40])
    x = np.repeat(np.arange(4.0), [10, 20, 30, 40]).reshape(-1, 1)  # the writer, as a feature
    y = np.arange(100) % 2
    np.savez(tmp_path / "w.npz", x=x, y=y, writer=writers)
    data = {
        "source": "npz",
        "path": str(tmp_path / "w.npz"),
        "test_fraction": 0.2,
        "partition": {"kind": "natural", "column": "writer"},
    }
    built = build(load_scenario({"clients": {"count": 3}, "data": data}))
    held = [c.train.rows(0, len(c.train))[0][:, 0] for c in built.setup.clients]
    assert [set(h.tolist()) for h in held] == [{0.0}, {1.0}, {2.0}]  # ann, bob, cyd
    test = built.setup.test
    assert test is not None
    assert len(test) == 20
    held_out = test.rows(0, len(test))[0][:, 0]
    assert sum(len(h) for h in held) == 60 - int(np.sum(held_out < 3))  # every other row
    for count, expected in [(5, "clients.count: 5 clients, but the natural partition has 4")]:
        with pytest.raises(ScenarioError, match=expected):
            build(load_scenario({"clients": {"count": count}, "data": data}))
    bad = {**data, "partition": {"kind": "natural", "column": "who"}}
    with pytest.raises(ScenarioError, match=r"data.partition.column: no array 'who' \(has"):
        build(load_scenario({"clients": {"count": 3}, "data": bad}))
    with pytest.raises(ScenarioError, match="kind = 'natural' needs column"):
        load_scenario({"data": {**data, "partition": {"kind": "natural"}}})
