"""Tests of simkit.trace: recording, digest, JSONL, divergence and views."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import msgpack
import pytest

from simkit.trace import (
    HEARTBEAT_TYPES,
    Event,
    Trace,
    TraceFormatError,
    events_digest,
    filter_events,
    first_divergence,
    format_bytes,
    format_divergence,
    read_jsonl,
    timeline_text,
    to_mermaid,
    write_jsonl,
)

# (t, kind, src, dst, type, nbytes, digest, info): a tiny round with a fault.
SCRIPT: list[tuple[float, str, str, str, str, int, str, str]] = [
    (0.0, "actor_start", "server", "", "", 0, "", ""),
    (0.0, "send", "server", "c01", "TrainRequest", 1200, "aa11", ""),
    (0.0, "send", "server", "c02", "TrainRequest", 1200, "aa11", ""),
    (0.05, "deliver", "server", "c01", "TrainRequest", 1200, "aa11", ""),
    (0.05, "lost", "server", "c02", "TrainRequest", 1200, "aa11", "partition"),
    (1.0, "send", "c01", "server", "Ping", 8, "", ""),
    (1.01, "deliver", "c01", "server", "Ping", 8, "", ""),
    (2.0, "crash", "c02", "", "", 0, "", "silent"),
    (2.5, "send", "c01", "server", "TrainReply", 2_500_000, "bb22", ""),
    (3.0, "deliver", "c01", "server", "TrainReply", 2_500_000, "bb22", ""),
    (3.0, "mark", "server", "", "round 1 done", 0, "", ""),
]

# sha256 over the canonical msgpack of SCRIPT's events. If this changes, every
# recorded trace digest changes: bump the trace format deliberately, not by accident.
EXPECTED_DIGEST = "cfe5feb859dbc8366b9353996e79011065b615c98ec1caee4a9a16d75207c8a3"


def make_trace(**kwargs: bool) -> Trace:
    trace = Trace(**kwargs)
    for row in SCRIPT:
        trace.record(*row)
    return trace


@pytest.fixture
def events() -> list[Event]:
    return make_trace().events


# ----------------------------------------------------------------------------- recording


def test_events_get_sequence_numbers_in_record_order(events: list[Event]) -> None:
    assert [e.seq for e in events] == list(range(len(SCRIPT)))
    assert events[4] == Event(
        0.05, 4, "lost", "server", "c02", "TrainRequest", 1200, "aa11", "partition"
    )
    assert events[4].as_tuple() == (0.05, 4, *SCRIPT[4][1:])


def test_time_is_stored_as_float() -> None:
    trace = Trace()
    trace.record(3, "mark", "server")
    assert type(trace.events[0].t) is float


def test_digest_is_stable() -> None:
    assert make_trace().digest() == EXPECTED_DIGEST


def test_digest_is_sha256_of_concatenated_canonical_msgpack(events: list[Event]) -> None:
    sha = hashlib.sha256()
    for e in events:
        sha.update(msgpack.packb(list(e.as_tuple()), use_bin_type=True))
    assert events_digest(events) == sha.hexdigest() == EXPECTED_DIGEST


def test_digest_of_empty_trace() -> None:
    assert Trace().digest() == hashlib.sha256(b"").hexdigest()


def test_digest_does_not_depend_on_keep_or_batching() -> None:
    kept, streamed = Trace(keep=True), Trace(keep=False)
    for i in range(10_000):  # more than one internal batch
        for trace in (kept, streamed):
            trace.record(i * 0.5, "send", f"c{i % 7}", "server", "X", i)
        if i == 5_555:
            assert kept.digest() == streamed.digest()  # mid-batch reads are fine
    assert kept.digest() == streamed.digest() == events_digest(kept.events)
    assert len(kept) == len(streamed) == 10_000


def test_keep_false_keeps_no_events() -> None:
    trace = make_trace(keep=False)
    assert trace.digest() == EXPECTED_DIGEST
    with pytest.raises(ValueError, match="keep=False"):
        _ = trace.events


def test_heartbeats_false_records_no_heartbeat() -> None:
    trace = make_trace(heartbeats=False)
    events = trace.events
    assert len(trace) == len(SCRIPT) - 2
    assert not any(e.is_heartbeat() for e in events)
    assert [e.seq for e in events] == list(range(len(events)))
    assert trace.digest() == events_digest(events)


def test_counters() -> None:
    trace = make_trace()
    assert trace.message_count == trace.count("send") == 4
    assert trace.lost_count == 1
    assert trace.count("crash") == 1
    assert trace.count("nothing") == 0
    assert trace.bytes_sent == 1200 * 2 + 8 + 2_500_000
    assert trace.app_bytes_sent == 1200 * 2 + 2_500_000
    assert trace.counts()["deliver"] == 3
    assert trace.stats() == {
        "events": 11,
        "messages": 4,
        "bytes": trace.bytes_sent,
        "app_bytes": trace.app_bytes_sent,
        "lost": 1,
    }


def test_counters_with_keep_false_over_many_batches() -> None:
    trace = Trace(keep=False)
    for _ in range(9_000):
        trace.record(0.0, "send", "a", "b", "Ping", 3)
    assert trace.message_count == 9_000
    assert trace.bytes_sent == 27_000
    assert trace.app_bytes_sent == 0


def test_listeners_see_every_event_even_unrecorded_heartbeats() -> None:
    seen: list[tuple[float, str, str, str, str, int]] = []
    trace = Trace(heartbeats=False)
    trace.add_listener(lambda *args: seen.append(args))
    trace.record(1.0, "send", "c01", "server", "Ping", 8)
    trace.record(2.0, "send", "c01", "server", "TrainReply", 100, "dd", "x")
    assert seen == [
        (1.0, "send", "c01", "server", "Ping", 8),
        (2.0, "send", "c01", "server", "TrainReply", 100),
    ]
    assert len(trace) == 1


def test_listener_may_record_and_is_called_after_the_event() -> None:
    trace = Trace()

    def crash_on_second_reply(t: float, kind: str, src: str, dst: str, type: str, n: int) -> None:
        if kind == "send" and type == "Reply" and trace.count("send") == 2:
            trace.record(t, "crash", src, info="triggered")

    trace.add_listener(crash_on_second_reply)
    for i in range(3):
        trace.record(float(i), "send", "c03", "server", "Reply")
    assert [e.kind for e in trace.events] == ["send", "send", "crash", "send"]
    trace.remove_listener(crash_on_second_reply)


def test_unencodable_field_names_the_problem() -> None:
    trace = Trace()
    trace.record(0.0, "send", "a", "b", "X", object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'nbytes' must be int"):
        trace.digest()


def test_heartbeat_types() -> None:
    assert frozenset({"Ping", "Pong"}) == HEARTBEAT_TYPES
    assert Event(0.0, 0, "send", type="Pong").is_heartbeat()


# ----------------------------------------------------------------------------- filters


def test_filter_events(events: list[Event]) -> None:
    assert len(filter_events(events)) == len(events) - 2
    assert len(filter_events(events, hide_heartbeats=False)) == len(events)
    assert [e.seq for e in filter_events(events, kinds=["lost", "crash"])] == [4, 7]
    assert {e.seq for e in filter_events(events, actors=["c02"])} == {2, 4, 7}
    assert [e.seq for e in filter_events(events, t_from=2.0, t_to=2.5)] == [7, 8]


# ----------------------------------------------------------------------------- JSONL


def test_jsonl_round_trip_preserves_digest(events: list[Event], tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_jsonl(events, path)
    header = json.loads(path.read_text().splitlines()[0])
    assert header == {"simkit_trace": 1, "events": len(events), "digest": EXPECTED_DIGEST}
    back = read_jsonl(path)
    assert back == events
    assert events_digest(back) == EXPECTED_DIGEST


def test_jsonl_to_file_object_and_without_header(events: list[Event], tmp_path: Path) -> None:
    buf = io.StringIO()
    write_jsonl(iter(events), buf)
    path = tmp_path / "t.jsonl"
    path.write_text("".join(buf.getvalue().splitlines(keepends=True)[1:]))
    assert read_jsonl(path) == events


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got an array"),
        ('{"seq": 0, "kind": "x"}', "no 't' field"),
        ('{"t": "1", "seq": 0, "kind": "x"}', "'t' must be a number, got a string"),
        ('{"t": 1, "seq": 1.5, "kind": "x"}', "'seq' must be an integer, got a number"),
        ('{"t": 1, "seq": 0, "kind": "x", "src": 3}', "'src' must be a string"),
        ('{"t": 1, "seq": 0, "kind": "x", "colour": "red"}', "unknown event field"),
        ('{"simkit_trace": 1}', "header must be the first line"),
    ],
)
def test_read_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"t": 0.0, "seq": 0, "kind": "mark"}\n\n' + line + "\n")
    with pytest.raises(TraceFormatError, match=message) as info:
        read_jsonl(path)
    assert str(info.value).startswith(f"{path}:3: ")


def test_read_checks_header(events: list[Event], tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_jsonl(events, path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    with pytest.raises(TraceFormatError, match="header says 11 events, file has 10"):
        read_jsonl(path)
    assert len(read_jsonl(path, verify=False)) == 10
    path.write_text("".join(lines).replace('"c01"', '"c09"'))
    with pytest.raises(TraceFormatError, match="do not match the header digest"):
        read_jsonl(path)
    path.write_text('{"simkit_trace": 7}\n')
    with pytest.raises(TraceFormatError, match=r":1: unsupported trace format version 7"):
        read_jsonl(path)


# ----------------------------------------------------------------------------- divergence


def test_first_divergence_equal(events: list[Event]) -> None:
    assert first_divergence(events, list(events)) is None
    assert format_divergence(events, events) == "traces are identical (11 events)"


def test_first_divergence_mid_way(events: list[Event]) -> None:
    other = list(events)
    other[6] = Event(1.02, 6, "deliver", "c01", "server", "Ping", 8)
    assert first_divergence(events, other) == (6, events[6], other[6])
    text = format_divergence(events, other, context=2)
    assert text.splitlines()[0] == "traces diverge at event #6 (A: 11 events, B: 11 events)"
    assert "#4 " in text
    assert "#5 " in text
    assert "#3 " not in text
    assert text.splitlines()[-1] == "  differing fields: t"


def test_first_divergence_prefix(events: list[Event]) -> None:
    assert first_divergence(events[:5], events) == (5, None, events[5])
    assert first_divergence(events, events[:5]) == (5, events[5], None)
    text = format_divergence(events, events[:5], names=("run1", "run2"))
    assert "run2: <end of trace>" in text
    assert "differing fields" not in text
    assert first_divergence([], events) == (0, None, events[0])


# ----------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1234, "1.2 kB"),
        (999_960, "1.0 MB"),
        (2_500_000, "2.5 MB"),
        (3 * 10**9, "3.0 GB"),
        (5 * 10**15, "5000.0 TB"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_timeline_text(events: list[Event]) -> None:
    lines = timeline_text(events).splitlines()
    assert lines[0] == (
        "trace: 11 events, 0.000s .. 3.000s (duration 3.000s), 2 heartbeat events hidden"
    )
    assert len(lines) == 1 + 9
    assert "     2.500s     send     c01 -> server  TrainReply  2.5 MB" in lines
    assert "     0.050s  !! lost     server -> c02  TrainRequest  1.2 kB  (partition)" in lines
    assert "     2.000s  !! crash    c02  (silent)" in lines
    assert "     3.000s  -- mark     server  round 1 done" in lines
    assert "Ping" not in "\n".join(lines)
    assert "Ping" in timeline_text(events, hide_heartbeats=False)
    assert all(len(line) <= 30 for line in timeline_text(events, width=30).splitlines())
    assert timeline_text([]) == "trace: 0 events"


# ----------------------------------------------------------------------------- mermaid


def test_mermaid(events: list[Event]) -> None:
    text = to_mermaid(events)
    lines = text.splitlines()
    assert lines[:4] == [
        "sequenceDiagram",
        "    participant server",
        "    participant c01",
        "    participant c02",
    ]
    assert "    server->>c01: TrainRequest (1.2 kB) @0.050s" in lines
    assert "    server-xc02: TrainRequest lost (partition) @0.050s" in lines
    assert "    c01->>server: TrainReply (2.5 MB) @3.000s" in lines
    assert "    Note over c02: crash (silent) @2.000s" in lines
    assert "    Note over server: round 1 done @3.000s" in lines
    assert "Ping" not in text
    assert "TrainRequest" in lines[5]  # delivered message drawn once, at delivery
    assert sum("TrainRequest" in line for line in lines) == 2
    assert "c01->>server: Ping" in to_mermaid(events, hide_heartbeats=False)


def test_mermaid_undelivered_send_and_truncation() -> None:
    events = [
        Event(0.0, 0, "send", "a", "b", "Req", 10),
        Event(1.0, 1, "partition", info="a | b"),
        Event(2.0, 2, "mark", "b", type="x"),
    ]
    lines = to_mermaid(events).splitlines()
    assert "    a-)b: Req (10 B) @0.000s sent" in lines
    assert "    Note over a,b: partition (a | b) @1.000s" in lines
    truncated = to_mermaid(events, max_events=1).splitlines()
    assert truncated[-1] == "    Note over a,b: ... 2 more events not shown (max_events=1)"
    assert to_mermaid([Event(0.0, 0, "heal")]).splitlines()[1:] == [
        "    participant trace",
        "    Note over trace: heal @0.000s",
    ]


def test_mermaid_escapes_names_and_text() -> None:
    events = [
        Event(0.0, 0, "deliver", "end", "client #1", "A;B<C>", 1),
        Event(0.0, 1, "actor_error", "client #1", info="bad;\nthing"),
    ]
    lines = to_mermaid(events).splitlines()
    assert lines[1:3] == ["    participant p0_ as end", "    participant p1_ as client #35;1"]
    assert "    p0_->>p1_: A#59;B#60;C#62; (1 B) @0.000s" in lines
    assert "    Note over p1_: actor_error (bad#59; thing) @0.000s" in lines


def test_mermaid_actor_filter(events: list[Event]) -> None:
    text = to_mermaid(events, actors=["c02"])
    assert "c01" not in text
    assert "server-xc02" in text


# ----------------------------------------------------------------------------- volume


def test_a_long_trace_digests_the_same_kept_or_streamed() -> None:
    # 100,000 records: keeping the events in memory or only folding them into
    # the digest must give the same digest (speed is measured by the bench,
    # not asserted here).
    kept, streamed = Trace(keep=True), Trace(keep=False)
    for trace in (kept, streamed):
        for i in range(100_000):
            trace.record(i * 0.001, "send", "c03", "server", "TrainReply", 1200, "0123456789abcdef")
    assert kept.digest() == streamed.digest()
    assert len(kept) == len(streamed) == 100_000
