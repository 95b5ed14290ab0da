"""The client and server cores one message at a time: stage rules, misuse, bad peers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simkit.codec import packb, unpackb
from simkit.messages import Message
from simkit.rng import SeedTree
from simkit.secagg import (
    SecAggAbort,
    SecAggAdvertiseKeys,
    SecAggCiphertexts,
    SecAggClient,
    SecAggConfig,
    SecAggKeyList,
    SecAggLocalError,
    SecAggMaskedInput,
    SecAggRemoteError,
    SecAggServer,
    SecAggSetup,
    SecAggShareKeys,
    SecAggStage,
    SecAggUnmaskRequest,
    SecAggUnmaskShares,
)

NAMES = ["a", "b", "c", "d"]
CONFIG = SecAggConfig(threshold=3, bits=16, length=4)


class Pair:
    """A server and its clients, advanced stage by stage with no dropouts."""

    def __init__(self, config: SecAggConfig = CONFIG) -> None:
        tree = SeedTree(5)
        self.server = SecAggServer(config, NAMES, tree)
        self.clients = {
            n: SecAggClient(n, tree, np.arange(config.length, dtype=np.uint64)) for n in NAMES
        }
        self.sends: dict[str, Message] = self.server.start()

    def replies(self) -> dict[str, Message]:
        out = {}
        for name, msg in self.sends.items():
            reply = self.clients[name].receive(msg)
            assert reply is not None
            out[name] = reply
        return out

    def advance(self, stages: int) -> None:
        for _ in range(stages):
            self.sends = self.server.step(self.replies(), NAMES)


def test_client_stages_follow_the_table() -> None:
    pair = Pair()
    seen = [pair.clients["a"].stage]
    for _ in range(4):
        pair.advance(1)
        seen.append(pair.clients["a"].stage)
    assert seen == [
        SecAggStage.SETUP,
        SecAggStage.ADVERTISE_KEYS,
        SecAggStage.SHARE_KEYS,
        SecAggStage.MASKED_INPUT,
        SecAggStage.DONE,
    ]
    assert pair.server.stage is SecAggStage.DONE
    assert pair.server.result is not None
    assert pair.server.result.total is not None
    np.testing.assert_array_equal(pair.server.result.total, 4 * np.arange(4))


def test_client_refuses_a_message_of_another_stage() -> None:
    pair = Pair()
    with pytest.raises(SecAggRemoteError, match="unexpected SecAggKeyList in stage setup"):
        pair.clients["a"].receive(SecAggKeyList(0, (), (), ()))


def test_client_refuses_a_message_of_another_round() -> None:
    pair = Pair()
    pair.advance(1)
    msg = pair.sends["a"]
    assert isinstance(msg, SecAggKeyList)
    with pytest.raises(SecAggRemoteError, match="another round"):
        pair.clients["a"].receive(dataclasses.replace(msg, round_id=7))


def test_client_never_reveals_both_shares_of_a_peer() -> None:
    pair = Pair()
    pair.advance(3)
    request = pair.sends["a"]
    assert isinstance(request, SecAggUnmaskRequest)
    both = dataclasses.replace(request, dropped=("b",))
    with pytest.raises(SecAggRemoteError, match=r"both shares of \['b'\]"):
        pair.clients["a"].receive(both)


def test_client_refuses_shares_it_does_not_hold() -> None:
    pair = Pair()
    pair.advance(3)
    request = pair.sends["a"]
    assert isinstance(request, SecAggUnmaskRequest)
    with pytest.raises(SecAggRemoteError, match="holds no shares"):
        pair.clients["a"].receive(dataclasses.replace(request, survivors=("a", "zed")))


def test_client_detects_a_tampered_bundle() -> None:
    pair = Pair()
    pair.advance(2)
    msg = pair.sends["a"]
    assert isinstance(msg, SecAggCiphertexts)
    box = bytearray(msg.ciphertexts[0])
    box[-1] ^= 1
    bad = dataclasses.replace(msg, ciphertexts=(bytes(box), *msg.ciphertexts[1:]))
    with pytest.raises(SecAggRemoteError, match="does not authenticate"):
        pair.clients["a"].receive(bad)


def test_client_detects_a_misrouted_bundle() -> None:
    pair = Pair()
    pair.advance(2)
    for_a, for_b = pair.sends["a"], pair.sends["b"]
    assert isinstance(for_a, SecAggCiphertexts)
    assert isinstance(for_b, SecAggCiphertexts)
    # c's bundle for b, handed to a as if c had sent it to a
    stolen = for_b.ciphertexts[for_b.senders.index("c")]
    i = for_a.senders.index("c")
    boxes = list(for_a.ciphertexts)
    boxes[i] = stolen
    with pytest.raises(SecAggRemoteError, match="does not authenticate"):
        pair.clients["a"].receive(dataclasses.replace(for_a, ciphertexts=tuple(boxes)))


def test_client_rejects_a_key_list_without_its_own_keys() -> None:
    pair = Pair()
    pair.advance(1)
    msg = pair.sends["a"]
    assert isinstance(msg, SecAggKeyList)
    swapped = dataclasses.replace(msg, c_pks=(msg.c_pks[1], msg.c_pks[0], *msg.c_pks[2:]))
    with pytest.raises(SecAggRemoteError, match="misstates its keys"):
        pair.clients["a"].receive(swapped)


def test_client_aborts_on_notice() -> None:
    pair = Pair()
    pair.advance(1)
    assert pair.clients["a"].receive(SecAggAbort(0, "too few")) is None
    assert pair.clients["a"].stage is SecAggStage.ABORTED
    assert pair.clients["a"].abort_reason == "server aborted: too few"


def test_client_input_must_fit_the_round() -> None:
    tree = SeedTree(1)
    server = SecAggServer(CONFIG, NAMES, tree)
    setup = server.start()["a"]
    with pytest.raises(SecAggLocalError, match="wants 4"):
        SecAggClient("a", tree, np.zeros(3, dtype=np.uint64)).receive(setup)
    with pytest.raises(SecAggLocalError, match="below 2\\*\\*16"):
        SecAggClient("a", tree, np.full(4, 1 << 16, dtype=np.uint64)).receive(setup)


def test_server_refuses_misuse() -> None:
    server = SecAggServer(CONFIG, NAMES, SeedTree(0))
    with pytest.raises(SecAggLocalError, match="step\\(\\) in stage setup"):
        server.step({}, NAMES)
    server.start()
    with pytest.raises(SecAggLocalError, match="twice"):
        server.start()


def test_a_reply_of_the_wrong_type_fails_its_sender_only() -> None:
    pair = Pair()
    replies = pair.replies()
    replies["b"] = SecAggShareKeys(0, "b", (), ())
    pair.sends = pair.server.step(replies, NAMES)
    assert pair.server.rejected == {
        "b": "b sent SecAggShareKeys in stage advertise-keys, expected SecAggAdvertiseKeys"
    }
    assert pair.server.survivors == (("a", "c", "d"),)
    assert pair.server.stage is SecAggStage.SHARE_KEYS
    assert sorted(pair.sends) == ["a", "c", "d"]


def test_a_reply_in_anothers_name_fails_its_sender_only() -> None:
    pair = Pair()
    replies = pair.replies()
    keys = replies["a"]
    assert isinstance(keys, SecAggAdvertiseKeys)
    replies["b"] = keys
    pair.server.step(replies, NAMES)
    assert "another round or sender" in pair.server.rejected["b"]
    assert "b" not in pair.server.survivors[0]


@pytest.mark.parametrize("stage", [2, 3, 4])
def test_a_lying_client_fails_alone_and_the_round_goes_on(stage: int) -> None:
    pair = Pair(SecAggConfig(threshold=3, bits=16, length=4))
    pair.advance(stage - 1)
    replies = pair.replies()
    msg = replies["a"]
    if isinstance(msg, SecAggShareKeys):
        bad: Message = dataclasses.replace(
            msg, recipients=msg.recipients[:-1], ciphertexts=msg.ciphertexts[:-1]
        )
        reason = "a sent bundles to"
    elif isinstance(msg, SecAggMaskedInput):
        bad = SecAggMaskedInput(msg.round_id, "a", msg.masked[:2])
        reason = "a sent a masked input of shape (2,)"
    else:
        assert isinstance(msg, SecAggUnmaskShares)
        bad = dataclasses.replace(msg, b_owners=msg.b_owners[::-1])
        reason = "a revealed shares of other clients than asked"
    replies["a"] = bad
    pair.sends = pair.server.step(replies, NAMES)
    assert pair.server.rejected["a"].startswith(reason)
    while pair.server.result is None:
        pair.sends = pair.server.step({n: r for n, r in pair.replies().items() if n != "a"}, NAMES)
    result = pair.server.result
    if stage == 4:  # a's input is in the sum, its shares are not needed
        assert result.ok, result.reason
        assert result.survivors == tuple(NAMES)
    else:
        assert result.ok, result.reason
        assert "a" not in result.survivors


def test_server_ignores_replies_of_dead_or_unknown_clients() -> None:
    pair = Pair()
    replies = pair.replies()
    pair.sends = pair.server.step({**replies, "zed": replies["a"]}, ["a", "b", "c"])
    assert sorted(pair.sends) == ["a", "b", "c"]
    assert pair.server.survivors == (("a", "b", "c"),)


def test_threshold_above_neighbourhood_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds the neighbourhood size"):
        SecAggServer(SecAggConfig(threshold=5, bits=16, length=1), NAMES, SeedTree(0))
    sparse = SecAggConfig(threshold=6, bits=16, length=1, mode="secagg+", degree=4)
    with pytest.raises(ValueError, match="degree 4"):
        SecAggServer(sparse, [f"n{i}" for i in range(10)], SeedTree(0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 1}, "threshold must be an int >= 2"),
        ({"bits": 63}, r"bits must be in \[2, 62\]"),
        ({"length": 0}, "length must be an int >= 1"),
        ({"mode": "secagg++"}, "mode must be"),
        ({"prg": "mt19937"}, "prg must be one of"),
        ({"degree": 0}, "degree must be an int >= 1"),
    ],
)
def test_config_names_the_bad_field(kwargs: dict, match: str) -> None:
    base = {"threshold": 3, "bits": 16, "length": 4}
    with pytest.raises(ValueError, match=match):
        SecAggConfig(**{**base, **kwargs})


def test_stage_messages_travel_through_the_codec() -> None:
    pair = Pair()
    for _ in range(4):
        replies = pair.replies()
        for msg in [*pair.sends.values(), *replies.values()]:
            back = unpackb(packb(msg))
            assert type(back) is type(msg)
            if isinstance(msg, SecAggMaskedInput):
                np.testing.assert_array_equal(back.masked, msg.masked)
            else:
                assert back == msg
        pair.sends = pair.server.step(replies, NAMES)
    assert isinstance(SecAggSetup(0, 3, 16, 4, "philox", 1, ("b",), (2,)), Message)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: SecAggSetup(0, 3, 16, 4, "philox", 1, ("b", "c"), (2,)), "differ in length"),
        (lambda: SecAggAdvertiseKeys(0, "a", b"x", b"y" * 32), "32 bytes"),
        (lambda: SecAggMaskedInput(0, "a", np.zeros(3)), "unsigned integer"),
        (lambda: SecAggSetup(0, 3, 16, 4, "xor", 1, (), ()), "prg must be"),
    ],
)
def test_messages_validate_on_construction(build: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()  # type: ignore[operator]


def test_masked_inputs_travel_in_the_narrowest_dtype() -> None:
    pair = Pair()  # bits=16
    pair.advance(2)
    replies = pair.replies()
    masked = replies["a"]
    assert isinstance(masked, SecAggMaskedInput)
    assert masked.masked.dtype == np.uint16
