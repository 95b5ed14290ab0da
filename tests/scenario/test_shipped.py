"""The scenario files in scenarios/: they validate, build, and run end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from simkit.runner import run_scenario
from simkit.scenario import build, load_scenario

SCENARIOS = Path(__file__).parents[2] / "scenarios"
FILES = sorted(SCENARIOS.glob("*.toml"))
FAKE = 'protocol={name="tests.scenario.fakeproto:PLUGIN", round_timeout=30.0}'


def test_catalogue_lists_every_file() -> None:
    readme = (SCENARIOS / "README.md").read_text(encoding="utf-8")
    names = {p.stem for p in FILES}
    assert {"quickstart", "dropouts", "stragglers", "torch_mlp", "fedbuff", "scale"} <= names
    for name in names:
        assert f"{name}.toml" in readme


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_files_validate_and_say_what_they_teach(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# {path.stem}:")
    assert "Teaches:" in text
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.config.rounds > 0


@pytest.mark.parametrize("name", ["quickstart", "dropouts", "stragglers"])
def test_files_build(name: str) -> None:
    built = build(load_scenario(SCENARIOS / f"{name}.toml"))
    assert built.setup.client_names[0] == "c000"


def test_quickstart_runs_with_a_stand_in_protocol() -> None:
    result = run_scenario(SCENARIOS / "quickstart.toml", overrides=[FAKE])
    assert result.rounds_completed == 5


# ----------------------------------------------------------------------------- with FedAvg


def test_quickstart_with_fedavg_is_reproducible() -> None:
    pytest.importorskip("protocols.fedavg")
    a = run_scenario(SCENARIOS / "quickstart.toml").summary()
    b = run_scenario(SCENARIOS / "quickstart.toml").summary()
    c = run_scenario(SCENARIOS / "quickstart.toml", seed=1).summary()
    assert a["rounds_completed"] == 5
    assert (a["trace_digest"], a["weights_digest"]) == (b["trace_digest"], b["weights_digest"])
    assert a["trace_digest"] != c["trace_digest"]
    assert a["weights_digest"] != c["weights_digest"]


def test_dropouts_with_fedavg_lists_dropped_clients() -> None:
    pytest.importorskip("protocols.fedavg")
    result = run_scenario(SCENARIOS / "dropouts.toml")
    summary = result.summary()
    assert len(summary["dropped"]) >= 6
    assert summary["rounds_completed"] >= 1
