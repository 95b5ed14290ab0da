"""Hostile input against a live TCP server: only the offending connection closes.

One Echo server runs in real time on its own thread for the whole module.
Each test talks to it with plain blocking sockets, checks how its connection
ended (a Reject first where the protocol allows, a close notice naming the
problem, a logged reason), and then checks that honest clients are still
served.
"""

from __future__ import annotations

import logging
import resource
import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simkit.messages import Accept, Join, Ping, Reject, Send

from .tcp_helpers import LiveServer, TcpNote, attack, frame, honest_round, join_frame, live_server

TOKEN = "s3cret"
LOGGER = "simkit.channels.tcp"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server(TOKEN, read_timeout=0.3, close_timeout=0.3) as live:
        yield live


@pytest.fixture
def tcp_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=LOGGER)
    return caplog


def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records if r.name == LOGGER)


def test_garbage_bytes_close_the_connection_with_a_reason(
    server: LiveServer, tcp_log: pytest.LogCaptureFixture
) -> None:
    reply = attack(server.address, b"\x00\x00\x00\x05hello")
    assert reply.messages == []
    assert reply.notice is not None
    assert "undecodable frame" in reply.notice
    assert logged(tcp_log, "undecodable frame")
    assert honest_round(server, TOKEN) == [[0, 1]] * 3


def test_http_request_is_refused_by_its_length(
    server: LiveServer, tcp_log: pytest.LogCaptureFixture
) -> None:
    reply = attack(server.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.notice is not None
    assert "above the limit of 65536" in reply.notice  # "GET " read as a length


def test_huge_length_prefix_is_refused_before_allocating(
    server: LiveServer, tcp_log: pytest.LogCaptureFixture
) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for length in (2**31, 2**32 - 1):
        reply = attack(server.address, struct.pack(">I", length) + b"\x00" * 16)
        assert reply.notice == f"frame of {length} bytes is above the limit of 65536"
    # After a Join: the full limit applies (1 GiB), still checked before allocating.
    reply = attack(server.address, join_frame("big", TOKEN) + struct.pack(">I", 2**31))
    assert reply.messages == [Accept()]
    assert reply.notice == f"frame of {2**31} bytes is above the limit of {2**30}"
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024
    assert logged(tcp_log, "above the limit")


def test_a_large_announced_frame_that_stalls_costs_no_memory(
    server: LiveServer, tcp_log: pytest.LogCaptureFixture
) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    data = join_frame("staller", TOKEN) + struct.pack(">I", 2**29) + b"\x00" * 1000
    reply = attack(server.address, data, half_close=False)
    assert reply.messages[:1] == [Accept()]
    assert reply.notice is None  # a stalled peer is broken, not told
    assert reply.ended == "eof"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024
    assert logged(tcp_log, "no read progress")


def test_truncated_frame_then_close_is_logged(
    server: LiveServer, tcp_log: pytest.LogCaptureFixture
) -> None:
    reply = attack(server.address, struct.pack(">I", 100) + b"\x01" * 10)
    assert reply.messages == []
    assert logged(tcp_log, "connection closed inside a frame (14 of 104 bytes)")


def test_half_a_frame_then_stall_times_out(
    server: LiveServer, tcp_log: pytest.LogCaptureFixture
) -> None:
    reply = attack(server.address, join_frame("slow", TOKEN)[:7], half_close=False)
    assert reply.ended == "eof"  # closed by the server after read_timeout
    assert logged(tcp_log, "no read progress for 0.3 s")
    assert honest_round(server, TOKEN, n=1) == [[0, 1]]


def test_unknown_action_code_closes(server: LiveServer, tcp_log: pytest.LogCaptureFixture) -> None:
    body = struct.pack(">I", 2) + b"\x91\x09"  # head [9]
    reply = attack(server.address, struct.pack(">I", len(body)) + body)
    assert reply.notice is not None
    assert "undecodable frame" in reply.notice


def test_send_before_join_is_a_protocol_error(server: LiveServer) -> None:
    reply = attack(server.address, frame(Send("TcpNote", TcpNote(1))))
    assert reply.messages == []
    assert reply.notice == "expected Join, got Send"


def test_unknown_message_type_after_join_is_ignored_by_the_server(server: LiveServer) -> None:
    payload = b"\x80"  # an empty map
    head = b"\x94\x04\xaaNoSuchType" + bytes([0x01, 0x00])
    body = struct.pack(">I", len(head)) + head + payload
    data = join_frame("odd", TOKEN) + struct.pack(">I", len(body)) + body + frame(Ping(1))
    reply = attack(server.address, data)
    assert reply.messages[0] == Accept()
    assert honest_round(server, TOKEN, n=1) == [[0, 1]]


def test_undecodable_payload_of_a_known_type_does_not_kill_the_server(
    server: LiveServer,
) -> None:
    head = b"\x94\x04\xa7TcpNote" + bytes([0x01, 0x00])
    body = struct.pack(">I", len(head)) + head + b"\xc1"  # 0xc1: never valid msgpack
    before = server.echo.undecodable
    attack(server.address, join_frame("bad", TOKEN) + struct.pack(">I", len(body)) + body)
    assert honest_round(server, TOKEN, n=1) == [[0, 1]]
    assert server.echo.undecodable == before + 1


def test_wrong_version_gets_a_reject_first(server: LiveServer) -> None:
    reply = attack(server.address, join_frame("v2", TOKEN, version="2.0"))
    assert len(reply.messages) == 1
    assert isinstance(reply.messages[0], Reject)
    assert reply.messages[0].flag == "version"
    assert reply.notice == "rejected: version"


def test_wrong_token_gets_a_reject_first(server: LiveServer) -> None:
    reply = attack(server.address, join_frame("thief", "guess"))
    assert reply.messages == [Reject("auth", "wrong token")]
    assert reply.notice == "rejected: auth"


def test_bad_name_gets_a_reject(server: LiveServer) -> None:
    reply = attack(server.address, frame(Join("bad\nname", "1.0", TOKEN)))
    assert [type(m) for m in reply.messages] == [Reject]
    assert reply.messages[0].flag == "name"  # type: ignore[union-attr]


def test_silent_connection_is_shown_the_door(server: LiveServer) -> None:
    # No Join within the heartbeat silence limit (0.5 s * 3): the Context closes it.
    reply = attack(server.address, b"", half_close=False)
    assert reply.notice == "no Join in time"


def test_many_connections_reset_at_once(server: LiveServer) -> None:
    socks = [socket.create_connection(server.address) for _ in range(50)]
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(join_frame("r", TOKEN)[:5])
        sock.close()  # RST
    assert honest_round(server, TOKEN) == [[0, 1]] * 3


_lengths = st.one_of(
    st.integers(0, 16), st.integers(0, 2**16), st.sampled_from([2**31, 2**32 - 1, 65537])
)
_frames = st.builds(lambda n, b: struct.pack(">I", n) + b, _lengths, st.binary(max_size=64))
_streams = st.one_of(
    st.binary(max_size=256),
    st.lists(_frames, max_size=4).map(b"".join),
    st.tuples(st.sampled_from([join_frame("fz", TOKEN), join_frame("fz", "x")]), _frames).map(
        b"".join
    ),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=_streams)
def test_fuzz_the_server_survives_generated_streams(server: LiveServer, data: bytes) -> None:
    reply = attack(server.address, data)
    assert reply.ended in ("eof", "reset")
    assert server.thread.is_alive()


def test_after_the_fuzz_honest_clients_complete_a_round(server: LiveServer) -> None:
    assert honest_round(server, TOKEN, n=5) == [[0, 1]] * 5
    assert server.thread.is_alive()
