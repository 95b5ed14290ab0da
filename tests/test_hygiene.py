"""The suite's guard: a test that touches the global random state fails (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def test_a_test_touching_global_random_state_fails(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(
        test_probe="""
import random

import numpy as np


def test_python_random() -> None:
    random.random()


def test_numpy_global() -> None:
    np.random.seed(3)


def test_seed_tree_is_fine() -> None:
    np.random.default_rng(3).random()
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*changed the global random state*"])
