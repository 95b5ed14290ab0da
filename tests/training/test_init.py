"""The public surface of simkit.training and its import boundaries."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

import simkit.training as training
from simkit.rng import SeedTree


def test_all_is_unique_and_resolvable() -> None:
    assert len(set(training.__all__)) == len(training.__all__)
    for name in training.__all__:
        assert getattr(training, name) is not None, name


def test_imports_only_the_seed_tree_and_codec_and_not_torch_eagerly() -> None:
    code = (
        "import sys, json, simkit.training;"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('simkit') "
        "or m == 'torch')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    outside = [
        m
        for m in loaded
        if not m.startswith(("simkit.training", "simkit.wire"))
        and m not in {"simkit", "simkit._version", "simkit.rng", "simkit.codec", "simkit.wire"}
    ]
    assert outside == []


def test_training_never_touches_numpy_global_rng() -> None:
    before = np.random.get_state(legacy=False)["state"]["key"].copy()  # noqa: NPY002 -- the point
    data = training.Dataset(np.ones((20, 3)), np.arange(20) % 2)
    manager = training.TrainingManager(
        training.LogisticRegression(3, 2), training.SGD(0.1), data, seed_tree=SeedTree(0)
    )
    manager.training_round(training.TrainInstructions(round=0, batch_size=4))
    training.synthetic(1.0, 1.0, 2, SeedTree(0))
    after = np.random.get_state(legacy=False)["state"]["key"]  # noqa: NPY002
    assert np.array_equal(before, after)
