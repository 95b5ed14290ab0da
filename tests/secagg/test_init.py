"""The public surface of simkit.secagg."""

from __future__ import annotations

import simkit.secagg
from simkit.messages import registered_types


def test_all_names_exist() -> None:
    for name in simkit.secagg.__all__:
        assert hasattr(simkit.secagg, name), name
    assert len(set(simkit.secagg.__all__)) == len(simkit.secagg.__all__)


def test_stage_messages_are_registered_under_their_names() -> None:
    names = {n for n in simkit.secagg.__all__ if n.startswith("SecAgg")}
    messages = names - {
        "SecAggClient",
        "SecAggConfig",
        "SecAggCryptoError",
        "SecAggError",
        "SecAggLocalError",
        "SecAggRemoteError",
        "SecAggResult",
        "SecAggServer",
        "SecAggStage",
    }
    assert messages <= set(registered_types())
    assert len(messages) == 14  # 9 passive, 5 more in active mode
