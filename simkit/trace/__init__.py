"""The trace: the witness of a run.

Every send, delivery, loss, fault, actor lifecycle event and protocol mark is
one :class:`Event` ``(t, seq, kind, src, dst, type, nbytes, digest, info)``.
A :class:`Trace` records them and keeps a running SHA-256 digest over their
canonical msgpack encoding, so that the same scenario and seed give the same
digest on any machine (DESIGN.md, determinism contract, rule 6).

Canonical encoding: each event is ``msgpack.packb([t, seq, kind, src, dst,
type, nbytes, digest, info], use_bin_type=True)`` with ``t`` a float64; the
trace digest is the SHA-256 of the concatenation of these encodings, in record
order. Concatenation makes the digest independent of how events are batched
before hashing, which lets :meth:`Trace.record` defer the hashing work.

Nothing here reads the wall clock. Besides recording, the module exports and
reads traces as JSON lines, finds the first divergence between two traces and
renders them as a text timeline or a Mermaid sequence diagram.
"""

from simkit.trace._events import (
    FAULT_KINDS,
    HEARTBEAT_TYPES,
    TRACKED_KINDS,
    Event,
    EventTuple,
    Listener,
    Trace,
    TraceFormatError,
    events_digest,
    filter_events,
)
from simkit.trace._files import read_jsonl, write_jsonl
from simkit.trace._render import (
    first_divergence,
    format_bytes,
    format_divergence,
    format_event,
    timeline_text,
    to_mermaid,
)

__all__ = [
    "FAULT_KINDS",
    "HEARTBEAT_TYPES",
    "TRACKED_KINDS",
    "Event",
    "EventTuple",
    "Listener",
    "Trace",
    "TraceFormatError",
    "events_digest",
    "filter_events",
    "first_divergence",
    "format_bytes",
    "format_divergence",
    "format_event",
    "read_jsonl",
    "timeline_text",
    "to_mermaid",
    "write_jsonl",
]
