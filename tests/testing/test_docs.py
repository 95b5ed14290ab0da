"""docs/testing.md: its code blocks, in order, are one test file, and it holds."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from simkit.cli import main
from simkit.testing import InvariantViolation, NondeterministicRun, set_check_determinism
from simkit.testing._run import check_determinism_enabled

DOC = Path(__file__).parents[2] / "docs" / "testing.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


@pytest.fixture(scope="module")
def tutorial() -> Iterator[types.ModuleType]:
    """The blocks executed as the module ``test_poll`` (the name the tutorial uses).

    Under a small derandomized profile, which the tutorial's ``kit_settings()``
    picks up: each planted bug must be found within 25 examples.
    """
    settings.register_profile("docs", max_examples=25, derandomize=True, database=None)
    before = settings.get_current_profile_name()
    settings.load_profile("docs")
    module = types.ModuleType("test_poll")
    module.__file__ = str(DOC)
    sys.modules["test_poll"] = module
    try:
        for i, block in enumerate(BLOCK.findall(DOC.read_text())):
            exec(compile(block, f"{DOC}:block{i}", "exec"), module.__dict__)
        yield module
    finally:
        del sys.modules["test_poll"]
        settings.load_profile(before)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # run_scenario_example(replay_dir=) writes replays/ here


def test_the_correct_protocol_passes(tutorial: types.ModuleType) -> None:
    tutorial.test_poll_keeps_its_invariants()


@pytest.mark.parametrize(
    ("name", "message"),
    [("test_forgetful", "round 2 asked"), ("test_lax", "round 2 kept")],
)
def test_each_planted_bug_is_found_with_a_replay_file(
    tutorial: types.ModuleType,
    name: str,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(InvariantViolation, match=message):
        getattr(tutorial, name)()
    (saved,) = (tmp_path / "replays").iterdir()  # named after the running test
    assert saved.name.startswith("test_each_planted_bug")
    assert name.removeprefix("test_").upper() in saved.read_text()
    capsys.readouterr()
    assert main(["replay", str(saved)]) == 1
    assert capsys.readouterr().out.startswith(f"reproduced: InvariantViolation: {message}")


def test_the_noisy_client_fails_only_the_determinism_check(
    tutorial: types.ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    global_random: None,  # the replay runs the planted global-RNG client outside Hypothesis
) -> None:
    tutorial.test_noisy()
    before = check_determinism_enabled()
    set_check_determinism(True)
    try:
        with pytest.raises(NondeterministicRun, match="first divergent event"):
            tutorial.test_noisy()
    finally:
        set_check_determinism(before)
    (saved,) = (tmp_path / "replays").iterdir()
    assert main(["replay", str(saved)]) == 1
    assert capsys.readouterr().out.startswith("reproduced: NondeterministicRun:")
