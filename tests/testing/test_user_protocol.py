"""A user's own protocol, tested only through the public kit.

``Poll`` is a small protocol a user might write: each round the server asks
its clients for a number, waits for the answers up to a deadline and keeps
the mean of the round's answers; a client takes ``1 / speed`` virtual
seconds to answer. Its options are a pydantic model, from which the kit
derives the option strategies. Three planted bugs, each a one-line change,
must be found within 100 examples and shrink to the smallest story:

- a server that forgets a dropped client (it asks it again): one crash;
- a server that accepts a stale-round answer: one slow client;
- a client that draws noise from numpy's global RNG: caught by the
  determinism re-check, which names the first divergent event.

The forgotten dropout and the global RNG are also hunted as a user would
(``@given``, ``run_scenario_example(check=..., replay_dir=...)``), and the
replay file each failure writes reproduces it with ``simkit replay``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import find, given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from simkit.actors import Actor, Context, PeerGone
from simkit.channels import ConnectError
from simkit.cli import main
from simkit.faults import FaultSchedule
from simkit.messages import Message
from simkit.protocol import ClientSetup, RoundRecord, ScenarioSetup
from simkit.runner import RunResult, run_scenario
from simkit.scenario import client_names
from simkit.simulation import Simulation
from simkit.testing import (
    InvariantViolation,
    NondeterministicRun,
    fault_schedules,
    kit_settings,
    replay_file,
    run_scenario_example,
    scenarios,
)
from simkit.training import Weights

# ----------------------------------------------------------------------------- the protocol


@dataclass(frozen=True, slots=True)
class Ask(Message):
    typename: ClassVar[str] = "userpoll.Ask"
    round: int


@dataclass(frozen=True, slots=True)
class Answer(Message):
    typename: ClassVar[str] = "userpoll.Answer"
    round: int
    value: float


class PollOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    round_timeout: float = Field(default=3.0, gt=0, le=10)


def value_of(client: str, round: int) -> float:
    """What a correct client answers in a round."""
    return float(int(client[1:]) + 10 * round)


class PollServer(Actor):
    name = "server"

    def __init__(self, setup: ScenarioSetup, options: PollOptions, bugs: frozenset[str]) -> None:
        self.setup, self.options, self.bugs = setup, options, bugs
        self.records: list[RoundRecord] = []
        self.means: list[float] = []

    async def run(self, ctx: Context) -> None:
        ctx.listen()
        members = await ctx.wait_for_peers(len(self.setup.clients), timeout=10.0)
        for r in range(1, self.setup.rounds + 1):
            if "forget" not in self.bugs:
                members = [m for m in members if ctx.is_connected(m)]
            t_start = ctx.now()
            ctx.mark("round", str(r))
            await ctx.broadcast(members, Ask(r))
            replies, failed = await ctx.wait_for_replies(
                members, Answer, timeout=self.options.round_timeout
            )
            used = {}
            for name, item in sorted(replies.items()):
                answer = item.decode()
                assert isinstance(answer, Answer)
                if answer.round == r or "stale" in self.bugs:
                    used[name] = answer.value
            self.means.append(float(np.mean(list(used.values()))) if used else 0.0)
            self.records.append(
                RoundRecord(
                    r, tuple(members), tuple(used), tuple(failed), t_start=t_start, t_end=ctx.now()
                )
            )


class PollClient(Actor):
    def __init__(self, client: ClientSetup, bugs: frozenset[str]) -> None:
        self.name, self.speed, self.bugs = client.name, client.speed, bugs

    async def run(self, ctx: Context) -> None:
        try:
            await ctx.connect("server", timeout=10.0)
        except (ConnectError, TimeoutError):
            return
        while True:
            try:
                ask = (await ctx.recv(Ask, src="server")).decode()
                assert isinstance(ask, Ask)
                await ctx.compute(1.0 / self.speed)
                value = value_of(self.name, ask.round)
                if "global-rng" in self.bugs:
                    value += float(np.random.normal(0.0, 1e-3))  # noqa: NPY002 (the planted bug)
                await ctx.send("server", Answer(ask.round, value))
            except PeerGone:
                return


class PollRun:
    def __init__(self, server: PollServer) -> None:
        self.server = server

    def rounds(self) -> list[RoundRecord]:
        return list(self.server.records)

    def weights(self) -> Weights:
        return Weights({"means": np.asarray(self.server.means, np.float64)})


class PollPlugin:
    """The plugin; ``bugs`` plants the bugs this file hunts."""

    options_model = PollOptions

    def __init__(self, name: str = "poll", bugs: Collection[str] = ()) -> None:
        self.name, self.bugs = name, frozenset(bugs)

    def validate(self, table: Mapping[str, Any], source: str) -> None:
        try:
            PollOptions.model_validate(dict(table))
        except ValueError as exc:
            raise ValueError(f"{source}: protocol: {exc}") from None

    def build(
        self, setup: ScenarioSetup, sim: Simulation, only: Collection[str] | None = None
    ) -> PollRun:
        server = PollServer(setup, PollOptions.model_validate(dict(setup.protocol)), self.bugs)
        sim.add(server)
        for client in setup.clients:
            sim.add(lambda c=client: PollClient(c, self.bugs), name=client.name, daemon=True)
        return PollRun(server)


PLUGIN = PollPlugin("tests.testing.test_user_protocol:PLUGIN")
FORGETFUL = PollPlugin("tests.testing.test_user_protocol:FORGETFUL", bugs={"forget"})
STALE = PollPlugin("tests.testing.test_user_protocol:STALE", bugs={"stale"})
NOISY = PollPlugin("tests.testing.test_user_protocol:NOISY", bugs={"global-rng"})

# ----------------------------------------------------------------------------- the property


@st.composite
def examples(draw: st.DrawFn, plugin: PollPlugin = PLUGIN) -> tuple[dict[str, Any], FaultSchedule]:
    scenario = draw(scenarios(protocol=plugin.name, max_clients=4, max_rounds=3))
    names = client_names(scenario["clients"]["count"])
    rounds = scenario["rounds"]
    faults = draw(fault_schedules(names, stages=["userpoll.Ask"], rounds=rounds, max_faults=2))
    return scenario, faults


def check_poll(result: RunResult) -> None:
    """Each round keeps the mean of that round's answers, and asks no client it saw go."""
    gone_at_start = _gone_at_round_starts(result)
    for record, mean in zip(result.rounds, result.weights.to_dict()["means"], strict=True):
        asked_gone = sorted(set(record.sampled) & gone_at_start[record.round])
        if asked_gone:
            raise InvariantViolation(f"round {record.round} asked {asked_gone}, already gone")
        expected = [value_of(c, record.round) for c in record.replied]
        if expected and not np.isclose(mean, np.mean(expected)):
            raise InvariantViolation(
                f"round {record.round} kept mean {mean:g}, but its answers "
                f"{list(record.replied)} average {np.mean(expected):g}"
            )


def _gone_at_round_starts(result: RunResult) -> dict[int, set[str]]:
    """Per round, the clients the server had seen go (and not come back) when it started."""
    gone: set[str] = set()
    out: dict[int, set[str]] = {}
    for e in result.trace.events:
        if e.src != "server":
            continue
        if e.kind == "peer_down":
            gone.add(e.dst)
        elif e.kind == "peer_up":
            gone.discard(e.dst)
        elif e.kind == "mark" and e.type == "round":
            out[int(e.info)] = set(gone)
    return out


def run_example(plugin: PollPlugin, example: tuple[dict[str, Any], FaultSchedule]) -> None:
    scenario, faults = example
    check_poll(run_scenario_example(scenario, faults=faults, plugin=plugin))


FAST = kit_settings(max_examples=30, database=None, derandomize=True)


@FAST
@given(examples())
def test_the_correct_protocol_keeps_its_invariants(
    example: tuple[dict[str, Any], FaultSchedule],
) -> None:
    run_example(PLUGIN, example)


def hunt(plugin: PollPlugin) -> tuple[dict[str, Any], FaultSchedule]:
    """The shrunk example on which ``plugin`` breaks the property (found within 100)."""

    def fails(example: tuple[dict[str, Any], FaultSchedule]) -> bool:
        try:
            check_poll(run_scenario_example(example[0], faults=example[1], plugin=plugin))
        except InvariantViolation:
            return True
        return False

    budget = kit_settings(max_examples=100, database=None, derandomize=True)
    return find(examples(plugin), fails, settings=budget)


def test_a_server_that_forgets_a_dropped_client_is_found_and_shrunk_to_one_crash(
    tmp_path: Path,
) -> None:
    scenario, faults = hunt(FORGETFUL)
    assert len(faults) == 1
    assert scenario["rounds"] == 2  # a crash in round 1, asked again in round 2
    assert scenario["clients"]["speeds"] == {"kind": "constant", "value": 1.0}
    # the replay file reproduces the failure with the buggy plugin named in it
    path = replay_file(tmp_path / "forgetful.toml", scenario, faults, protocol=FORGETFUL.name)
    with pytest.raises(InvariantViolation, match="round 2 asked"):
        check_poll(run_scenario(path))


def test_a_server_that_accepts_a_stale_answer_is_found_and_shrunk_to_one_slow_client() -> None:
    scenario, faults = hunt(STALE)
    assert len(faults) == 0
    speeds = scenario["clients"]["speeds"]["values"]
    assert sorted(speeds)[1:] == [1.0] * (len(speeds) - 1)  # one straggler, others at 1.0
    assert scenario["rounds"] == 2
    assert scenario["protocol"]["round_timeout"] == 3.0  # the default: nothing else matters


def test_a_client_using_the_global_rng_fails_the_determinism_recheck(global_random: None) -> None:
    scenario = {
        "name": "noisy",
        "rounds": 1,
        "clients": {"count": 2},
        "protocol": {"name": NOISY.name},
        "run": {"trace_heartbeats": False},
    }
    with pytest.raises(NondeterministicRun) as info:
        run_scenario_example(scenario, plugin=NOISY, check_determinism=True)
    text = str(info.value)
    assert "first divergent event" in text
    assert "userpoll.Answer" in text
    assert text.count("trace digests") == 1
    run_scenario_example(scenario, plugin=PLUGIN, check_determinism=True)  # the correct one passes


# ----------------------------------------------------------------------------- replay


def hunt_with_replay(
    plugin: PollPlugin, directory: Path, *, check_determinism: bool = False
) -> tuple[BaseException, Path]:
    """A ``@given`` test a user writes; the failure it raises and the replay file it wrote."""

    @kit_settings(max_examples=100, database=None, derandomize=True)
    @given(examples(plugin))
    def prop(example: tuple[dict[str, Any], FaultSchedule]) -> None:
        scenario, faults = example
        run_scenario_example(
            scenario,
            faults=faults,
            plugin=plugin,
            check=check_poll,
            check_determinism=check_determinism,
            replay_dir=directory,
        )

    with pytest.raises(InvariantViolation) as info:
        prop()
    (path,) = directory.iterdir()
    return info.value, path


def test_the_replay_file_of_a_forgotten_dropout_reproduces_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failure, path = hunt_with_replay(FORGETFUL, tmp_path)
    assert "round 2 asked ['c000'], already gone" in str(failure)
    text = path.read_text()
    assert f"#   simkit replay {path}" in text
    assert '#: check = "tests.testing.test_user_protocol:check_poll"' in text
    capsys.readouterr()
    assert main(["replay", str(path)]) == 1  # reproduced, as a failing test
    line = capsys.readouterr().out.strip()
    assert line.startswith("reproduced: InvariantViolation: round 2 asked ['c000'], already gone")
    assert "the failing run, same trace" in line
    # the same file with the correct server: the failure is gone
    path.write_text(text.replace(FORGETFUL.name, PLUGIN.name))
    assert main(["replay", str(path)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("did not reproduce: tests.testing.test_user_protocol:check_poll passed")


def test_the_replay_file_of_a_global_rng_reproduces_the_nondeterminism(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], global_random: None
) -> None:
    failure, path = hunt_with_replay(NOISY, tmp_path, check_determinism=True)
    assert isinstance(failure, NondeterministicRun)
    assert "#: check_determinism = true" in path.read_text()
    capsys.readouterr()
    assert main(["replay", str(path)]) == 1
    line = capsys.readouterr().out.strip()
    assert line.startswith("reproduced: NondeterministicRun: the same scenario run twice")
    assert "first divergent event" in line
    assert "userpoll.Answer" in line
