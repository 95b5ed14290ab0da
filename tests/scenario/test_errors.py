"""Errors and faults of a run: where an actor raised, failed runs, faults that never fire."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest

from simkit.actors import Actor, Context
from simkit.cli import main
from simkit.protocol import RoundRecord, ScenarioSetup
from simkit.runner import RunResult, run_scenario
from simkit.scenario import ScenarioError
from simkit.simulation import Simulation
from simkit.training import Weights
from tests.scenario.fakeproto import PLUGIN

ROOT = Path(__file__).resolve().parents[2]

FAKE = "tests.scenario.fakeproto:PLUGIN"
BROKEN = "tests.scenario.test_errors:BROKEN_PLUGIN"


def scenario(protocol: str = FAKE, **extra: Any) -> dict[str, Any]:
    return {
        "name": "errors",
        "rounds": 2,
        "protocol": {"name": protocol},
        "clients": {"count": 3},
        "data": {"samples": 20, "dim": 3, "classes": 2},
        **extra,
    }


def write(tmp_path: Path, data: dict[str, Any]) -> str:
    """A scenario file for the CLI (only the keys these tests use)."""
    lines = [f'name = "{data["name"]}"', f"rounds = {data['rounds']}"]
    lines += ["[protocol]", f'name = "{data["protocol"]["name"]}"']
    lines += ["[clients]", "count = 3", "[data]", "samples = 20", "dim = 3", "classes = 2"]
    path = tmp_path / "s.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(autouse=True)
def on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))


# ----------------------------------------------------------------------------- a broken protocol


class BrokenServer(Actor):
    """Marks round 1, then raises: the run has no round record at all."""

    async def run(self, ctx: Context) -> None:
        ctx.mark("round", "round 1")
        self.explode()

    def explode(self) -> None:
        raise ValueError("the server's bug")


class BrokenRun:
    def __init__(self, setup: ScenarioSetup) -> None:
        self.setup = setup

    def rounds(self) -> list[RoundRecord]:
        return []

    def weights(self) -> Weights:
        return self.setup.model().get_weights()


class BrokenPlugin:
    name = "broken"

    def validate(self, table: Any, source: str) -> None:
        pass

    def build(
        self, setup: ScenarioSetup, sim: Simulation, only: Collection[str] | None = None
    ) -> BrokenRun:
        sim.add(BrokenServer(), name="server")
        return BrokenRun(setup)


BROKEN_PLUGIN = BrokenPlugin()


def test_an_actor_error_says_where_it_was_raised() -> None:
    result = run_scenario(scenario(BROKEN))
    [(actor, text)] = result.errors
    assert actor == "server"
    assert text.startswith("ValueError: the server's bug (at tests.scenario.test_errors:")
    assert text.endswith(" in explode)")
    [event] = [e for e in result.trace.events if e.kind == "actor_error"]
    assert event.info == text  # the trace keeps it too, with no machine's path
    [(_, full)] = result.tracebacks
    assert full.startswith("Traceback (most recent call last):")
    assert "self.explode()" in full
    assert result.summary()["errors"] == [f"server: {text}"]


def test_a_run_with_no_round_prints_its_table_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, scenario(BROKEN))
    assert main(["run", path]) == 1
    captured = capsys.readouterr()
    assert "0/0 rounds completed" in captured.out
    [line] = captured.err.strip().splitlines()
    assert line.startswith("simkit: warning: actor server raised: ValueError: the server's bug")
    assert "(at tests.scenario.test_errors:" in line


def test_verbose_prints_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, scenario(BROKEN))
    assert main(["run", path, "--quiet", "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "--- actor server:\nTraceback (most recent call last):" in err
    assert 'raise ValueError("the server\'s bug")' in err


# ----------------------------------------------------------------------------- faults


def test_a_mistyped_trigger_is_refused_naming_the_known_types() -> None:
    faults = {"dropout": {"fraction": 0.5, "message": "fake.Trian"}}
    with pytest.raises(ScenarioError) as info:
        run_scenario(scenario(faults=faults))
    text = str(info.value)
    assert "faults.dropout.message: no message type is named 'fake.Trian'" in text
    assert "known: " in text
    assert "fake.Train" in text.split("known: ")[1].split(", ")


@pytest.mark.parametrize("command", ["run", "scenario check"])
def test_a_mistyped_trigger_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = write(tmp_path, scenario())
    events = 'faults.events=[{kind="crash", actor="c001", on={kind="deliver", type="fake.Trian"}}]'
    assert main([*command.split(), path, "--set", events]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "faults: no message type is named 'fake.Trian'" in line
    assert "fake.Train" in line


def test_faults_that_never_fired_are_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [
        {"kind": "crash", "actor": "c001", "at": 1e6},  # after the run's end
        {"kind": "crash", "actor": "c002", "on": {"kind": "deliver", "type": "fake.Train"}},
        {"kind": "crash", "actor": "c000", "on": {"kind": "deliver", "type": "fake.Train"}},
    ]
    events[2]["on"]["count"] = 9  # the clients get 2 requests
    result: RunResult = run_scenario(scenario(faults={"events": events}))
    unfired = result.summary()["unfired_faults"]
    assert unfired == [
        {"kind": "crash", "at": 1e6, "actor": "c001", "mode": "silent"},
        {
            "kind": "crash",
            "on": {"kind": "deliver", "type": "fake.Train", "count": 9},
            "actor": "c000",
            "mode": "silent",
        },
    ]
    path = write(tmp_path, scenario())
    fault_file = tmp_path / "f.toml"
    fault_file.write_text('[[faults]]\nkind = "crash"\nactor = "c001"\nat = 1e6\n', "utf-8")
    assert main(["run", path, "--faults", str(fault_file)]) == 0
    assert "faults that never fired: crash c001 at 1e+06 s" in capsys.readouterr().out


@pytest.mark.parametrize("option", ["--checkpoint", "--resume"])
def test_checkpoints_need_a_protocol_that_supports_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    path = write(tmp_path, scenario())
    built = len(PLUGIN.built)
    assert main(["run", path, option, str(tmp_path)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f"simkit: error: {option}: protocol {FAKE!r} does not support checkpoints"
    assert len(PLUGIN.built) == built  # refused before anything was built


class RoundPlugin(type(PLUGIN)):  # type: ignore[misc]
    """The fake protocol, saying which request starts a client's round."""

    round_message = "fake.Train"


def test_a_dropout_fraction_counts_the_plugins_round_request() -> None:
    data = scenario(faults={"dropout": {"fraction": 0.67}}, rounds=3)
    data["clients"] = {"count": 3}
    dropping = run_scenario(data, plugin=RoundPlugin())
    assert len(dropping.dropped) == 2
    assert dropping.unfired_faults == []
    per_round = run_scenario(scenario(faults={"per_round": {"rate": 1.0}}), plugin=RoundPlugin())
    assert per_round.dropped == ["c000", "c001", "c002"]
