"""The gossip protocol end to end: a serverless run, its report, its properties."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import simkit.protocol as protocol_module
from protocols.gossip import PLUGIN, GossipOptions, GossipRun, random_graph, ring
from simkit.cli import main
from simkit.protocol import RoundRecord
from simkit.report import write_report
from simkit.runner import run_scenario, serve_scenario
from simkit.scenario import ScenarioError, client_names
from simkit.testing import fault_schedules, kit_settings, run_scenario_example, scenarios

ROOT = Path(__file__).parents[2]
SCENARIO = ROOT / "scenarios" / "gossip.toml"

# Pinned: same scenario and seed, same trace and weights on any machine.
DIGESTS = (
    "0b752768c75ab92ab4d5235c9cdf5b5a4cde476a9cfc5ef0bcc2f69caea1880a",
    "6f46a1a1aa17ccb33c1280dffe9f628844d7d7e299ef8b37a073c2e76de0edb7",
)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``gossip`` in the entry points even where the install predates it (an old egg-info)."""
    if "gossip" not in protocol_module.available_protocols():
        extra = EntryPoint("gossip", "protocols.gossip:PLUGIN", protocol_module.ENTRY_POINT_GROUP)

        def patched(*, group: str) -> list[EntryPoint]:
            found = list(entry_points(group=group))
            return [*found, extra] if group == protocol_module.ENTRY_POINT_GROUP else found

        monkeypatch.setattr(protocol_module, "entry_points", patched)
    return


def test_the_entry_point_is_declared() -> None:
    table = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    group = table["project"]["entry-points"]["simkit.protocols"]
    assert group["gossip"] == "protocols.gossip:PLUGIN"


# ----------------------------------------------------------------------------- graphs, options


def test_graphs_are_symmetric_connected_and_seeded() -> None:
    names = client_names(12)
    assert ring(names)["c000"] == ("c001", "c011")
    a = random_graph(names, 4, np.random.default_rng(1))
    assert a == random_graph(names, 4, np.random.default_rng(1))
    assert a != random_graph(names, 4, np.random.default_rng(2))
    for graph in (ring(names, 4), a):
        assert all(n in graph[m] for n in graph for m in graph[n])  # symmetric
        assert all(n not in graph[n] and 2 <= len(graph[n]) <= 4 for n in graph)
        seen, todo = {"c000"}, ["c000"]
        while todo:
            todo += [m for m in graph[todo.pop()] if m not in seen and not seen.add(m)]
        assert seen == set(names)
    with pytest.raises(ValueError, match="at least 2 peers"):
        ring(["c000"])


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"degre": 4}, r"protocol\.degre: unknown key \(gossip knows topology, degree"),
        ({"degree": 1}, r"protocol\.degree: .*greater than or equal to 2, got 1"),
        ({"topology": "star"}, r"protocol\.topology: .*'ring' or 'random', got 'star'"),
        ({"share_timeout": 0}, r"protocol\.share_timeout: .*greater than 0"),
    ],
)
def test_bad_options_are_one_line_naming_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GossipOptions.from_table(table, "x.toml")
    assert GossipOptions.from_table({"share_timeout": 5}, "x.toml").share_timeout == 5.0


# ----------------------------------------------------------------------------- the scenario


def test_the_scenario_is_deterministic_with_dropouts_and_rejoins(registered: None) -> None:
    shown: list[RoundRecord] = []
    first = run_scenario(SCENARIO, on_round=shown.append)
    assert shown == first.rounds  # each round shown once every running peer finished it
    again = run_scenario(SCENARIO).summary()
    summary = first.summary()
    digests = (summary["trace_digest"], summary["weights_digest"])
    assert digests == (again["trace_digest"], again["weights_digest"])
    assert digests == DIGESTS
    assert summary["protocol"] == "gossip"
    assert first.server is None
    assert summary["rounds_completed"] == 10
    assert not summary["errors"]
    crashed = summary["dropped_by_cause"]["crashed"]
    assert len(crashed) == 3
    restarts = {e.src: e.t for e in first.trace.events if e.kind == "restart"}
    assert sorted(restarts) == crashed
    for peer, t in restarts.items():  # each restarted peer trained and shared again
        shared = [e for e in first.trace.events if e.kind == "deliver" and e.src == peer]
        assert any(e.t > t and e.type == "gossip.Share" for e in shared), peer
    skipped = {n for r in first.rounds for n in r.failed}
    assert skipped
    assert skipped <= set(crashed)
    assert first.rounds[-1].replied == tuple(first.clients)  # everyone ends together
    assert first.rounds[-1].accuracy is not None
    assert first.rounds[-1].accuracy > 0.5


def test_simkit_run_writes_a_peers_only_report(
    registered: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["run", str(SCENARIO), "--report", str(out), "--quiet"]) == 0
    mermaid = (out / "sequence.mmd").read_text(encoding="utf-8")
    assert "participant server" not in mermaid
    assert "gossip.Share" in mermaid
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "a few chosen peers" in page
    assert "12 peers; " in page
    assert (out / "timeline.png").stat().st_size > 0


def test_a_serverless_run_without_round_records_still_reports(
    registered: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GossipRun, "rounds", lambda self: [])
    result = run_scenario(SCENARIO, overrides=["rounds=1", "faults.dropout.fraction=0"])
    assert result.rounds == []
    assert result.summary()["rounds_completed"] == 0
    write_report(result, tmp_path)
    assert "participant c000" in (tmp_path / "sequence.mmd").read_text(encoding="utf-8")
    assert (tmp_path / "index.html").is_file()


def test_the_same_peers_run_over_tcp_in_real_time(registered: None) -> None:
    small = ["rounds=2", "clients.count=4", "cost.per_sample=0.0001", "faults.dropout.fraction=0"]
    result = run_scenario(SCENARIO, overrides=small, transport="tcp")
    assert not result.errors
    assert [r.replied for r in result.rounds] == [tuple(result.clients)] * 2
    virtual = run_scenario(SCENARIO, overrides=small)
    assert [r.replied for r in virtual.rounds] == [r.replied for r in result.rounds]


def test_split_runs_refuse_a_serverless_protocol(registered: None) -> None:
    with pytest.raises(ScenarioError, match="'gossip' has no server"):
        run_scenario(SCENARIO, transport="tcp", processes=True)
    with pytest.raises(ScenarioError, match="simkit serve: protocol 'gossip' has no server"):
        serve_scenario(SCENARIO)


# ----------------------------------------------------------------------------- properties


@kit_settings(max_examples=10, database=None)
@given(
    data=st.data(),
    scenario=scenarios(protocol=PLUGIN, min_clients=3, max_clients=6, max_rounds=4),
)
def test_peers_that_never_crash_finish_every_round(
    data: st.DataObject, scenario: dict[str, Any]
) -> None:
    names = client_names(scenario["clients"]["count"])
    faults = data.draw(fault_schedules(names, horizon=2.0, restart_after=1.0, max_faults=2))
    result = run_scenario_example(scenario, faults=faults, plugin=PLUGIN, check_determinism=True)
    assert not result.errors, result.errors
    crashed = {f.actor for f in faults}
    last = result.rounds[-1]
    assert last.round == scenario["rounds"]
    assert set(names) - crashed <= set(last.replied)
    for record in result.rounds:
        assert not set(record.replied) & set(record.failed)
        assert record.sampled == tuple(sorted({*record.replied, *record.failed}))
    assert result.weights.is_finite()
