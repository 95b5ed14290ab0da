"""Under any crash schedule, the drivers reach the outcome the protocol predicts."""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from protocols.secagg import STAGES, SecAggSettings
from simkit.rng import SeedTree
from simkit.secagg import SecAggServer

from ...secagg.harness import predict
from .kit import crash_in, expect_exact_sum, names_for, run_sum

STAGE_NAMES = [stage.value for stage in STAGES]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(3, 9),
    plus=st.booleans(),
    loud=st.booleans(),
    seed=st.integers(0, 3),
    data=st.data(),
)
def test_the_outcome_is_the_predicted_one(
    n: int, plus: bool, loud: bool, seed: int, data: st.DataObject
) -> None:
    names = names_for(n)
    drops = data.draw(
        st.dictionaries(st.sampled_from(names), st.integers(1, 4), max_size=n), label="drops"
    )
    config = SecAggSettings(mode="secagg+", neighbours=4) if plus else SecAggSettings()
    mode = "loud" if loud else "silent"
    faults = [crash_in(STAGE_NAMES[s - 1], c, mode) for c, s in sorted(drops.items())]
    run = run_sum(n, config, faults=faults, seed=seed, length=8)
    core = SecAggServer(config.config(n, 8, 1), names, SeedTree(seed).child("actor", "server"))
    expected = predict(core, drops)
    out = run.outcome()
    event(f"aborted in {out.aborted_in}" if out.aborted else "summed")
    assert out.aborted == (not expected.ok), out.reason
    if expected.ok:
        assert set(out.survivors) == expected.survivors
        expect_exact_sum(run)
    else:
        assert expected.aborted_in is not None
        assert out.aborted_in == STAGE_NAMES[expected.aborted_in - 1]
        assert out.reason
