"""Lying SecAgg servers for tests, and what a server can rebuild from the shares it got.

A :class:`LyingServer` runs the honest core up to the masked inputs, then
sends each client the unmask request its :meth:`~LyingServer.lie` makes up.
It never unmasks: after the last stage it aborts, and
:func:`stolen_inputs` tells which individual inputs the shares it received
(its :attr:`~simkit.secagg.SecAggServer.received`) let it isolate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from protocols.secagg._attack import recover_inputs
from simkit.rng import SeedTree
from simkit.secagg import (
    SecAggCiphertexts,
    SecAggConfig,
    SecAggServer,
    SecAggUnmaskRequest,
)
from simkit.secagg._server import _Abort  # the core's own way to end a round

Lie = Callable[["LyingServer", str, frozenset[str]], tuple[tuple[str, ...], tuple[str, ...]]]
"""(server, client, U3) -> (survivors, dropped) told to that client."""


class LyingServer(SecAggServer):
    """A core that lies in the unmask request (see the module doc)."""

    lie: Lie

    def _after_share_keys(self, u2: frozenset[str]) -> dict:
        sends = super()._after_share_keys(u2)
        self.forwarded = {
            v: m.senders for v, m in sends.items() if isinstance(m, SecAggCiphertexts)
        }
        return sends

    def _check_survivors(self, u3: frozenset[str]) -> None:
        pass  # a liar does not care whether unmasking would work

    def _after_masked_input(self, u3: frozenset[str]) -> dict:
        super()._after_masked_input(u3)
        for v in sorted(u3):
            survivors, dropped = type(self).lie(self, v, u3)
            self._requests[v] = SecAggUnmaskRequest(
                self.config.round_id, survivors, dropped, len(self.graph.names)
            )
        return dict(self._requests)

    def _after_unmask(self, u4: frozenset[str]) -> dict:
        raise _Abort("a lying server does not unmask")


def liar(lie: Lie) -> Callable[[SecAggConfig, Sequence[str], SeedTree], SecAggServer]:
    """A ``server_factory`` building a :class:`LyingServer` that tells ``lie``; keeps the cores."""

    class Liar(LyingServer):
        pass

    Liar.lie = lie  # type: ignore[assignment]
    built: list[SecAggServer] = []

    def factory(config: SecAggConfig, names: Sequence[str], seeds: SeedTree) -> SecAggServer:
        built.append(Liar(config, names, seeds))
        return built[-1]

    factory.built = built  # type: ignore[attr-defined]
    return factory


def pair_lie(target: str) -> Lie:
    """The issue's lie: tell each client ``c`` that only ``{c, target}`` survived."""

    def lie(server: LyingServer, c: str, u3: frozenset[str]) -> tuple[tuple[str, ...], ...]:
        held = {c, *server.forwarded.get(c, ())}
        survivors = tuple(sorted({c, target} & held))
        return survivors, tuple(sorted(held - set(survivors)))

    return lie  # type: ignore[return-value]


def split_lie(target: str) -> Lie:
    """Tell half the clients ``target`` survived and the other half it dropped."""

    def lie(server: LyingServer, c: str, u3: frozenset[str]) -> tuple[tuple[str, ...], ...]:
        held = {c, *server.forwarded.get(c, ())}
        survivors = held & u3
        if c != target and server.graph.index(c) % 2 == 0:
            survivors -= {target}
        return tuple(sorted(survivors)), tuple(sorted(held - survivors))

    return lie  # type: ignore[return-value]


def stolen_inputs(core: SecAggServer) -> dict[str, np.ndarray]:
    """Client -> its quantized input, for every input the core's shares isolate.

    The attacker's own reconstruction (:func:`protocols.secagg._attack.recover_inputs`)
    over the bundles the core forwarded (none for a core that forwarded honestly).
    """
    return dict(recover_inputs(core, getattr(core, "forwarded", {})))
