"""run_scenario with a small fake protocol: the summary contract, determinism, outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import simkit
from simkit.protocol import RoundRecord
from simkit.runner import SUMMARY_KEYS, RunResult, run_scenario
from simkit.scenario import ScenarioError
from simkit.trace import events_digest, read_jsonl

from .fakeproto import PLUGIN, FakePlugin


@pytest.fixture(scope="module")
def result() -> RunResult:
    from .conftest import SMALL

    return run_scenario(SMALL, seed=5)


def test_public_api_is_lazy_and_exported() -> None:
    assert simkit.run_scenario is run_scenario
    assert simkit.RunResult is RunResult
    assert simkit.ScenarioError is ScenarioError


def test_summary_keys_and_types(result: RunResult) -> None:
    summary = result.summary()
    assert list(summary)[: len(SUMMARY_KEYS)] == list(SUMMARY_KEYS)
    assert summary["scenario"] == "small"
    assert summary["seed"] == 5
    assert summary["protocol"] == "tests.scenario.fakeproto:PLUGIN"
    assert summary["clients"] == 5
    assert summary["rounds_completed"] == 3
    assert summary["dropped"] == []
    assert isinstance(summary["virtual_time_s"], float)
    assert summary["virtual_time_s"] > 0
    assert isinstance(summary["wall_time_s"], float)
    assert isinstance(summary["messages"], int)
    assert isinstance(summary["bytes"], int)
    assert len(summary["trace_digest"]) == 64
    assert len(summary["weights_digest"]) == 64
    assert [m["round"] for m in summary["metrics"]] == [1, 2, 3]
    for m in summary["metrics"]:
        assert set(m) == {"round", "participants", "loss", "accuracy", "late"}
        assert m["participants"] == 5
        assert isinstance(m["loss"], float)
    assert json.loads(result.to_json()) == summary


def test_result_holds_trace_rounds_weights(result: RunResult) -> None:
    assert result.trace.digest() == result.summary()["trace_digest"]
    assert all(isinstance(r, RoundRecord) for r in result.rounds)
    assert result.weights.digest() == result.summary()["weights_digest"]


def test_same_seed_same_digests_other_seed_other(result: RunResult, small: dict[str, Any]) -> None:
    again = run_scenario(small, seed=5).summary()
    other = run_scenario(small, seed=6).summary()
    for key in ("trace_digest", "weights_digest", "metrics"):
        assert again[key] == result.summary()[key]
        assert other[key] != result.summary()[key]


def test_seed_argument_beats_the_file_and_overrides(small: dict[str, Any]) -> None:
    run = run_scenario(small, seed=9, overrides=["seed=1", "rounds=1"])
    assert run.seed == 9
    assert len(run.rounds) == 1


def test_file_and_mapping_agree(small_file: Path, result: RunResult) -> None:
    from_file = run_scenario(small_file, seed=5).summary()
    assert from_file["trace_digest"] == result.summary()["trace_digest"]


def test_save_weights(result: RunResult, tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    result.save_weights(path)
    with np.load(path, allow_pickle=False) as saved:
        assert sorted(saved.files) == sorted(result.weights)
        for name, array in result.weights.items():
            np.testing.assert_array_equal(saved[name], array)


def test_trace_file(small: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    run = run_scenario(small, trace_file=path)
    assert events_digest(read_jsonl(path)) == run.summary()["trace_digest"]


def test_on_round_sees_every_round(small: dict[str, Any]) -> None:
    seen: list[int] = []
    run_scenario(small, on_round=lambda r: seen.append(r.round))
    assert seen == [1, 2, 3]


def test_dropped_lists_crashed_clients(small: dict[str, Any]) -> None:
    small["faults"] = {"dropout": {"fraction": 0.4, "when": "time", "window": [0.0, 0.05]}}
    small["protocol"]["round_timeout"] = 10.0
    run = run_scenario(small)
    assert len(run.summary()["dropped"]) == 2
    assert run.summary()["dropped"] == sorted(run.summary()["dropped"])
    assert run.rounds[-1].replied
    assert len(run.rounds[-1].replied) == 3


def test_extra_fault_file(small: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text('[[faults]]\nkind = "crash"\nat = 0.0\nactor = "c003"\nmode = "loud"\n')
    assert run_scenario(small, faults=path).summary()["dropped"] == ["c003"]
    path.write_text('[[faults]]\nkind = "crash"\nat = 0.0\nactor = "c999"\n')
    with pytest.raises(ScenarioError, match="faults: no actor named 'c999'"):
        run_scenario(small, faults=path)
    path.write_text('[[faults]]\nkind = "explode"\n')
    with pytest.raises(ScenarioError, match=r"f\.toml\.faults\[0\]\.kind"):
        run_scenario(small, faults=path)


def test_unknown_protocol(small: dict[str, Any]) -> None:
    small["protocol"]["name"] = "no-such-protocol"
    with pytest.raises(ScenarioError, match=r"protocol\.name: unknown protocol 'no-such-protocol'"):
        run_scenario(small)
    small["protocol"]["name"] = "scenario.fakeproto:NOPE"
    with pytest.raises(ScenarioError, match=r"protocol\.name: cannot load"):
        run_scenario(small)


def test_plugin_validation_errors_become_scenario_errors(small: dict[str, Any]) -> None:
    small["protocol"]["fraction"] = 0.5
    with pytest.raises(ScenarioError, match=r"^<mapping>: protocol: unknown key 'fraction'$"):
        run_scenario(small)


def test_plugin_object_and_directories(small: dict[str, Any], tmp_path: Path) -> None:
    plugin = FakePlugin()
    del small["protocol"]
    with pytest.raises(ScenarioError, match="--checkpoint: protocol 'fedavg' does not support"):
        run_scenario(small, plugin=plugin, checkpoint=tmp_path / "ck")
    plugin.checkpoints = True  # type: ignore[attr-defined]  # it says it can
    run_scenario(small, plugin=plugin, checkpoint=tmp_path / "ck")
    assert plugin.built[0].checkpoint_dir == tmp_path / "ck"
    assert (tmp_path / "ck").is_dir()
    run_scenario(small, plugin=plugin, resume=tmp_path / "ck")
    assert plugin.built[1].resume_dir == tmp_path / "ck"
    with pytest.raises(ScenarioError, match="no such resume directory"):
        run_scenario(small, plugin=plugin, resume=tmp_path / "missing")
    assert PLUGIN is not plugin


def test_report_writes_every_file(result: RunResult, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from simkit.report import REPORT_FILES, write_report

    index = write_report(result, tmp_path / "rep")
    for name in REPORT_FILES:
        assert (tmp_path / "rep" / name).stat().st_size > 0, name
    assert json.loads((tmp_path / "rep" / "summary.json").read_text())["scenario"] == "small"
    assert (tmp_path / "rep" / "sequence.mmd").read_text().startswith("sequenceDiagram")
    assert "Ping" not in (tmp_path / "rep" / "sequence.mmd").read_text()
    assert (tmp_path / "rep" / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert 'src="timeline.png"' in index.read_text()
