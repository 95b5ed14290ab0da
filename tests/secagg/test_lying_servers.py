"""Generated lying servers against active-mode clients: no individual input ever leaks.

Hypothesis drives a server core that lies wherever a server can: it
forwards each client any subset of its peers' bundles, shows each client
any survivor set (from a few candidate sets, so that some clients agree),
forwards any subset of the signatures it got, and asks each client for any
split of the peers it holds shares of. Whatever it does, the shares it
collects never isolate one client's input (``recover_inputs``), and
honest rounds still sum exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.secagg._attack import SplitViewServer, recover_inputs
from simkit.messages import Message
from simkit.rng import SeedTree
from simkit.secagg import (
    Identity,
    SecAggCiphertexts,
    SecAggClient,
    SecAggConfig,
    SecAggConsistencyCheck,
    SecAggConsistencySignature,
    SecAggError,
    SecAggServer,
    SecAggSignedUnmaskRequest,
    SecAggStage,
)
from simkit.secagg._server import _Abort

Draw = Callable[[st.SearchStrategy[Any]], Any]


def subset(draw: Draw, items: list[str], least: int = 0) -> list[str]:
    """All of ``items`` (the honest choice, 3 times in 4) or a drawn subset of ``least`` or more."""
    if draw(st.integers(0, 3)) > 0:
        return list(items)
    keep = draw(st.lists(st.booleans(), min_size=len(items), max_size=len(items)))
    chosen = [x for x, k in zip(items, keep, strict=True) if k]
    return chosen if len(chosen) >= least else items[: max(least, len(chosen))]


class GeneratedLiar(SecAggServer):
    """A server core whose every choice after ShareKeys is drawn by hypothesis."""

    draw: Draw

    def _after_share_keys(self, u2: frozenset[str]) -> dict[str, Message]:
        sends = super()._after_share_keys(u2)
        self.forwarded: dict[str, tuple[str, ...]] = {}
        for v, msg in sends.items():
            assert isinstance(msg, SecAggCiphertexts)
            keep = set(subset(self.draw, list(msg.senders)))
            pairs = [(s, c) for s, c in zip(msg.senders, msg.ciphertexts, strict=True) if s in keep]
            sends[v] = SecAggCiphertexts(
                msg.round_id, tuple(s for s, _ in pairs), tuple(c for _, c in pairs)
            )
            self.forwarded[v] = sends[v].senders  # type: ignore[attr-defined]
        # the split-view attack's first step, sometimes: one target gets t - 1 peers
        self.target = self.draw(st.sampled_from(sorted(sends)))
        self.split = self.draw(st.booleans())
        box = sends[self.target]
        t = self.config.threshold
        if self.split and isinstance(box, SecAggCiphertexts) and len(box.senders) >= t - 1:
            sends[self.target] = SecAggCiphertexts(
                box.round_id, box.senders[: t - 1], box.ciphertexts[: t - 1]
            )
            self.forwarded[self.target] = box.senders[: t - 1]
        return sends

    def _check_survivors(self, u3: frozenset[str]) -> None:
        pass

    def _after_masked_input(self, u3: frozenset[str]) -> dict[str, Message]:
        super()._after_masked_input(u3)
        names = sorted(u3)
        pool = [tuple(names)]  # the truth, then made-up sets
        pool += [tuple(subset(self.draw, names, 1)) for _ in range(self.draw(st.integers(0, 2)))]
        self.shown: dict[str, tuple[str, ...]] = {}
        self.views = SplitViewServer._split(self, u3) if self.split else {}  # type: ignore[arg-type]
        for c in sorted(u3):
            view = set(pool[self.draw(st.integers(0, len(pool) - 1))]) | {c}
            self.shown[c] = self.views[c][0] if c in self.views else tuple(sorted(view))
        return {c: SecAggConsistencyCheck(self.config.round_id, s) for c, s in self.shown.items()}

    def _after_consistency(self, signed: frozenset[str]) -> dict[str, Message]:
        sigs = {v: self._reply(v, SecAggConsistencySignature).signature for v in signed}
        out: dict[str, Message] = {}
        for c in sorted(signed):
            held = sorted({c, *self.forwarded.get(c, ())})
            honest = [h for h in held if h in self.shown[c]]
            survivors = subset(self.draw, honest if self.draw(st.integers(0, 3)) else held, 1)
            rest = [h for h in held if h not in survivors]
            dropped = subset(self.draw, rest)
            if c in self.views:  # the split view's request
                survivors, dropped = list(self.views[c][0]), list(self.views[c][1])
            signers = subset(self.draw, sorted(signed))
            out[c] = self._requests[c] = SecAggSignedUnmaskRequest(
                self.config.round_id,
                tuple(survivors),
                tuple(dropped),
                len(names := self.graph.names),
                tuple(signers),
                tuple(sigs[s] for s in signers),
            )
            del names
        return out

    def _after_unmask(self, u4: frozenset[str]) -> dict[str, Message]:
        raise _Abort("a liar does not unmask")


def run_liar(config: SecAggConfig, n: int, draw: Draw, seed: int) -> GeneratedLiar:
    tree = SeedTree(seed)
    names = [f"c{i:02d}" for i in range(n)]
    identities = {c: Identity.from_seed(tree.bytes("identity", c)) for c in names}

    def registry(name: str) -> bytes | None:
        return identities[name].public if name in identities else None

    class Liar(GeneratedLiar):
        pass

    Liar.draw = staticmethod(draw)  # type: ignore[assignment]
    server = Liar(config, names, tree)
    rng = tree.numpy("inputs")
    clients = {
        c: SecAggClient(
            c,
            tree.child("client", c),
            rng.integers(0, 1 << config.bits, config.length, dtype=np.uint64),
            identity=identities[c],
            registry=registry,
        )
        for c in names
    }
    sends: dict[str, Message] = server.start()
    while server.result is None:
        replies = {}
        for name, msg in sorted(sends.items()):
            try:
                reply = clients[name].receive(msg)
            except SecAggError:
                continue  # the client refuses: it says nothing more
            if reply is not None and clients[name].stage is not SecAggStage.ABORTED:
                replies[name] = reply
        sends = server.step(replies, names)
    return server


@st.composite
def active_rounds(draw: st.DrawFn) -> tuple[SecAggConfig, int]:
    if draw(st.booleans()):
        n = draw(st.integers(4, 10))
        t = draw(st.integers(2 * n // 3 + 1, n))
        return SecAggConfig(threshold=t, bits=16, length=3, adversary="active"), n
    n, k = draw(st.integers(8, 14)), draw(st.sampled_from([4, 6]))
    t = draw(st.integers(2 * (k + 1) // 3 + 1, k + 1))
    return SecAggConfig(t, 16, 3, mode="secagg+", degree=k, adversary="active"), n


def check_no_input_leaks(data: st.DataObject) -> None:
    config, n = data.draw(active_rounds())
    server = run_liar(config, n, data.draw, data.draw(st.integers(0, 2**16)))
    assert recover_inputs(server, getattr(server, "forwarded", {})) == {}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_lying_server_never_obtains_an_individual_input(data: st.DataObject) -> None:
    check_no_input_leaks(data)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_lying_server_never_obtains_an_individual_input_1000_examples(
    data: st.DataObject,
) -> None:
    check_no_input_leaks(data)
