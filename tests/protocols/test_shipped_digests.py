"""The digests of the shipped FedAvg and FedBuff scenarios, pinned.

The same scenario and seed give the same trace and weights, bit for bit,
on any machine (docs/design.md, determinism). A change that moves one of
these must say so and pin the new value, deliberately.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simkit.runner import run_scenario

SCENARIOS = Path(__file__).parents[2] / "scenarios"

PINNED = {
    "quickstart": (
        "2dc834ca8f82fa658efe33cb2760facd709b2f7d5f01c563b265a0c3c391081b",
        "88472e3c8711cf358cc0eefbf7682de38d0f158e11b8acf18150cf44ae693981",
    ),
    "dropouts": (
        "b2539a1c5f188a2d2aace29568d761bced461c4d2015d31871f827ceed9e163a",
        "3a4fc00735e3e0eb457a3206b537f8e76e40e1486d538a65f75c6f66bc9dbc0e",
    ),
    "stragglers": (
        "b7cfee5ae2f47a6a4590486ade53b32738116ecd3ee64c77c07a39980686c9fb",
        "194cd86e6358dcb3056f22fb4429eacc5c6b85792a70e364a472822499d1f02c",
    ),
    "fedbuff": (
        "f78daf89a2aeb7d51e54b41f21bed87a598d96cb8ae1536bd70427e47d9958e8",
        "479f2e0e40a85d5940c17202e63ae55d6ebbc64f561800ff2632a225ea333fcd",
    ),
}


SLOW = {"stragglers"}  # 16 s: in the slow suite


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(PINNED)]
)
def test_shipped_digests_are_pinned(name: str) -> None:
    summary = run_scenario(SCENARIOS / f"{name}.toml").summary()
    assert (summary["trace_digest"], summary["weights_digest"]) == PINNED[name]
