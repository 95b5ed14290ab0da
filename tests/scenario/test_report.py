"""The report's data (activity, staleness, drop causes, sequence diagrams) and its page."""

from __future__ import annotations

import io
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from simkit._outcomes import drop_events, dropped_by_cause, dropped_in_round
from simkit.protocol import RoundRecord
from simkit.report import Span, algorithm, client_activity, reply_staleness
from simkit.report._sequence import choose_clients, round_diagram, to_mermaid_text, to_svg
from simkit.trace import Trace

SCENARIOS = Path(__file__).parents[2] / "scenarios"


def _trace() -> Trace:
    trace = Trace()
    rec = trace.record
    rec(0.0, "actor_start", "c1")
    rec(0.1, "send", "c1", "server", "Join", 10, "j")
    rec(0.2, "deliver", "c1", "server", "Join", 10, "j")
    rec(0.2, "send", "server", "c1", "Accept", 10, "a")
    rec(0.3, "deliver", "server", "c1", "Accept", 10, "a")  # not a training request
    rec(1.0, "mark", "server", type="round", info="round 1")
    rec(1.0, "send", "server", "c1", "TrainRequest", 10, "r")
    rec(1.5, "deliver", "server", "c1", "TrainRequest", 10, "r")
    rec(1.6, "send", "c1", "server", "Ping", 8, "p")  # heartbeats are ignored
    rec(3.5, "send", "c1", "server", "TrainReply", 10, "b")
    rec(4.0, "deliver", "c1", "server", "TrainReply", 10, "b")
    rec(5.0, "crash", "c1", info="silent")
    rec(8.0, "peer_down", "server", "c1", info="silent for 3 s (heartbeat)")
    rec(8.5, "actor_start", "c1")
    rec(9.0, "crash", "c1", info="loud")
    return trace


ROUND1 = RoundRecord(1, ("c1",), ("c1",), (), t_start=1.0, t_end=6.0)


def test_activity_spans_follow_training_requests_not_any_delivery() -> None:
    spans = client_activity(_trace().events, ["c1", "c2"], end=10.0, rounds=[ROUND1])
    assert spans["c1"] == [
        Span(0.0, 5.0, "idle"),
        Span(8.5, 9.0, "idle"),
        Span(0.1, 0.2, "sending"),  # the Join
        Span(0.2, 0.3, "waiting"),  # for the Accept
        Span(1.5, 3.5, "training"),  # from the request's delivery to the reply
        Span(3.5, 4.0, "sending"),
        Span(4.0, 5.0, "waiting"),  # reply delivered, round still on, until the crash
        Span(5.0, 5.0, "crash"),
        Span(5.0, 8.5, "dropped"),
        Span(8.0, 8.0, "gone"),  # the heartbeat's verdict, 3 s after the crash
        Span(9.0, 9.0, "crash"),
        Span(9.0, 10.0, "dropped"),
    ]
    assert spans["c2"] == []


def test_waiting_ends_with_the_round() -> None:
    trace = Trace()
    trace.record(0.0, "actor_start", "c1")
    trace.record(1.0, "deliver", "server", "c1", "TrainRequest", 1, "r")
    trace.record(2.0, "send", "c1", "server", "TrainReply", 1, "b")
    trace.record(2.5, "deliver", "c1", "server", "TrainReply", 1, "b")
    record = RoundRecord(1, ("c1",), ("c1",), (), t_start=1.0, t_end=4.0)
    spans = client_activity(trace.events, ["c1"], end=10.0, rounds=[record])
    assert Span(2.5, 4.0, "waiting") in spans["c1"]


def test_staleness_counts_updates_between_request_and_reply() -> None:
    trace = Trace()
    rec = trace.record
    rec(0.0, "send", "server", "a", "TrainRequest", 1, "1")
    rec(0.0, "send", "server", "b", "TrainRequest", 1, "2")
    rec(1.0, "deliver", "a", "server", "TrainReply", 1, "3")  # ends update 1
    rec(1.0, "send", "server", "a", "TrainRequest", 1, "4")
    rec(2.0, "deliver", "a", "server", "TrainReply", 1, "5")  # ends update 2
    rec(2.5, "deliver", "b", "server", "TrainReply", 1, "6")  # trained from version 0
    rounds = [
        RoundRecord(1, ("a",), ("a",), (), t_start=0.0, t_end=1.0),
        RoundRecord(2, ("a",), ("a",), (), t_start=1.0, t_end=2.0),
        RoundRecord(3, ("b",), ("b",), (), t_start=2.0, t_end=3.0),
    ]
    assert reply_staleness(trace.events, rounds) == [[0], [0], [2]]


def test_dropped_split_by_cause() -> None:
    events = _trace().events
    rounds = [
        RoundRecord(1, ("c1", "c2", "c3"), (), ("c1", "c2", "c3"), t_start=1.0, t_end=9.0),
    ]
    trace = Trace()
    trace.record(2.0, "peer_down", "server", "c3", info="closed")
    split = dropped_by_cause(rounds, [*events, *trace.events], ["c1", "c2", "c3"])
    assert split == {"crashed": ["c1"], "left": ["c3"], "timed_out": ["c2"]}
    assert dropped_in_round(rounds[0], drop_events(events)) == ["c1", "c2", "c3"]
    # a crash after the client's input was used (SecAgg unmasking) still counts
    used = RoundRecord(1, ("c1",), ("c1",), (), t_start=4.5, t_end=6.0)
    assert dropped_in_round(used, drop_events(events)) == ["c1"]


def test_choose_clients_shows_a_crash_a_timeout_and_a_reply() -> None:
    record = RoundRecord(
        2, ("a", "b", "c", "d", "e"), ("c", "d", "e"), ("a", "b"), t_start=1.0, t_end=5.0
    )
    assert choose_clients(record, [(2.0, "b")], k=3) == ["a", "b", "c"]
    assert choose_clients(record, [], k=2) == ["a", "c"]


def test_round_diagram_is_compact_ordered_and_svg() -> None:
    events = _trace().events
    diagram = round_diagram(events, RoundRecord(1, ("c1",), (), (), t_end=9.5), ["c1"])
    assert diagram.participants == ["server", "c1"]
    labels = [s.label for s in diagram.steps]
    assert labels.count("joins (Join, Accept folded)") == 1
    assert not any("Ping" in label for label in labels)
    assert "1 heartbeat messages not drawn" in diagram.caption
    assert "c1 declared gone: silent for 3 s (heartbeat)" in labels
    svg = to_svg(diagram, "t")
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert svg.index(">server<") < svg.index(">c1<")
    text = to_mermaid_text(diagram)
    assert text.splitlines()[1:3] == ["    participant server", "    participant c1"]
    assert "server->>c1: TrainRequest (10 B) @1.500s" in text


def _fake(**setup: Any) -> Any:
    return SimpleNamespace(protocol="fedavg", setup=SimpleNamespace(**setup))


def test_titles_name_the_algorithm() -> None:
    from simkit.scenario import build, load_scenario

    setup = build(load_scenario(SCENARIOS / "stragglers.toml")).setup
    assert algorithm(SimpleNamespace(protocol="fedavg", setup=setup)) == "fedprox"
    plain = build(load_scenario(SCENARIOS / "quickstart.toml")).setup
    assert algorithm(SimpleNamespace(protocol="fedavg", setup=plain)) == "fedavg"


@pytest.fixture(scope="module")
def dropouts_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("protocols.fedavg")
    pytest.importorskip("matplotlib")
    from simkit.report import write_report
    from simkit.runner import run_scenario

    result = run_scenario(
        SCENARIOS / "dropouts.toml", overrides=["rounds=3", "protocol.min_replies=17"]
    )
    return write_report(result, tmp_path_factory.mktemp("report"))


def test_page_is_offline_and_draws_svg(dropouts_page: Path) -> None:
    page = dropouts_page.read_text()
    assert not re.findall(r"(?:src|href)=\"(?:https?:)?//", page)
    assert "http" not in page.replace("http-equiv", "")
    assert "mermaid" not in page.replace("sequence.mmd", "")
    assert page.count("<svg") == 3  # one diagram per round
    assert 'option value="1">round 2 (aborted)' in page
    for name in ("metrics.png", "timeline.png", "labels.png", "sequence.svg"):
        assert (dropouts_page.parent / name).stat().st_size > 1000


def test_page_table_shows_drops_and_reasons(dropouts_page: Path) -> None:
    page = dropouts_page.read_text()
    assert 'class="aborted"' in page
    assert "usable replies &lt; min_replies 17" in page
    assert "crashed" in page  # the headline's split


def test_cli_table_gives_abort_reasons_and_late() -> None:
    from rich.console import Console

    from simkit.cli._run import round_table

    rounds = [
        RoundRecord(1, ("a",), ("a",), (), late=2, t_end=123.45),
        RoundRecord(2, ("a",), (), ("a",), t_end=130.0, aborted=True, reason="0 replies < 1"),
    ]
    result = SimpleNamespace(
        scenario="s", protocol="fedbuff", seed=0, rounds=rounds, trace=Trace(keep=False)
    )
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(round_table(result))
    text = console.export_text()
    assert "late" in text
    assert "123.45 s" in text  # the time column does not wrap at 80 columns
    assert "round 2 aborted: 0 replies < 1" in text


def test_replies_carry_client_time_and_staleness() -> None:
    from simkit.report._activity import replies

    trace = Trace()
    trace.record(0.0, "send", "server", "a", "TrainRequest", 1, "1")
    trace.record(2.0, "deliver", "a", "server", "TrainReply", 1, "2")
    rounds = [RoundRecord(1, (), (), (), t_start=0.0, t_end=1.0)]
    assert replies(trace.events, [*rounds, RoundRecord(2, (), (), (), 0, t_end=3.0)]) == [
        ("a", 2.0, 1)
    ]
