"""Client activity spans derived from a trace (the timeline's data)."""

from __future__ import annotations

from simkit.report import Span, client_activity
from simkit.trace import Trace


def test_activity_spans() -> None:
    trace = Trace()
    trace.record(0.0, "actor_start", "c1")
    trace.record(1.0, "send", "server", "c1", "Req", 10, "a")
    trace.record(1.5, "deliver", "server", "c1", "Req", 10, "a")
    trace.record(1.6, "send", "c1", "server", "Ping", 8, "p")  # heartbeats are ignored
    trace.record(3.5, "send", "c1", "server", "Reply", 10, "b")
    trace.record(4.0, "deliver", "c1", "server", "Reply", 10, "b")
    trace.record(5.0, "crash", "c1", info="silent")
    trace.record(8.0, "actor_start", "c1")
    trace.record(9.0, "crash", "c1", info="loud")
    spans = client_activity(trace.events, ["c1", "c2"], end=10.0)
    assert spans["c1"] == [
        Span(0.0, 10.0, "waiting"),
        Span(1.5, 3.5, "training"),
        Span(3.5, 4.0, "sending"),
        Span(5.0, 8.0, "dropped"),
        Span(9.0, 10.0, "dropped"),
    ]
    assert spans["c2"] == []
