"""FedAvg's server as a sans-I/O machine: events in, commands out, time passed in.

:class:`FedAvgMachine` makes every decision the server makes: when a round
starts, whom it samples, which client is sent the weights and which holds
them already (per session and version), which replies count, which are late
and which fail their client (:mod:`simkit.validation`), the
``min_clients``/``min_replies``/``on_abort`` policy, the secure-sum cohort
and who is released from it, evaluation, records and early stopping. It
never awaits and never reads a clock: :func:`simkit.driver.drive` asks it
for the next command and feeds back what happened (a round of replies, the
connected peers, a broadcast that missed someone, a deadline reached).

The round logic reads top to bottom as a generator (``yield`` a command,
receive its event), so its flow is the protocol's flow; tests drive it
synchronously, with no event loop (tests/protocols/test_fedavg_machine.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protocols._tables import checkpoint_header
from protocols.fedavg._core import FedAvgCore, RoundOutcome
from protocols.fedavg._secure import update_layout
from protocols.messages import (
    Error,
    EvaluationReply,
    TrainDone,
    TrainReply,
    TrainRequest,
    expect_evaluation,
    expect_train,
    expect_train_done,
)
from protocols.secagg import (
    SecAggSettings,
    SecureSumOutcome,
    ServerFactory,
    release,
    secure_sum,
    unflatten_fields,
)
from simkit.actors import Context
from simkit.driver import (
    Broadcast,
    Call,
    Collected,
    Command,
    Drain,
    Drained,
    Flow,
    FlowMachine,
    Listen,
    Log,
    Look,
    Mark,
    Peers,
    Sent,
    WaitPeers,
    WaitReplies,
)
from simkit.messages import Message
from simkit.protocol import RoundRecord
from simkit.secagg import SecAggMaskedInput, SecAggServer
from simkit.training import EvalResult, TrainResult, save_state
from simkit.validation import Bad, Expect, check_reply

__all__ = ["REPLIES", "FedAvgMachine", "checkpoint_path"]

REPLIES = (TrainReply, TrainDone, EvaluationReply, Error)
"""The replies a FedAvg server takes (and drains at each round start)."""

Reply = type[TrainReply] | type[TrainDone] | type[EvaluationReply]


def checkpoint_path(directory: Path) -> Path:
    """Where the server keeps its state inside a checkpoint directory."""
    return directory / "server.npz"


@dataclass(slots=True)
class _Collected:
    """The replies of one request round."""

    results: dict[str, TrainResult | EvalResult | TrainDone] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    late: int = 0


class FedAvgMachine(FlowMachine):
    """The FedAvg server's decisions as a :class:`~simkit.driver.Machine`.

    Args:
        core: Round state and arithmetic (restored from a checkpoint when resuming).
        token: Joins must present this token (empty: none).
        secagg: Secure aggregation settings (``None``: updates travel in clear).
        secagg_factory: Builds the SecAgg server core of secure rounds.

    Attributes:
        holds: Client -> (session, version) of the global weights it was last sent.
        secagg_outcomes: Every secure sum's outcome, in order.
        seen_masked: The first secure round's teaching view (a client's masked
            input and the unmasked sum), for the report.
    """

    def __init__(
        self,
        core: FedAvgCore,
        *,
        token: str = "",
        secagg: SecAggSettings | None = None,
        secagg_factory: ServerFactory = SecAggServer,
    ) -> None:
        self.core = core
        self.token = token
        self.secagg = secagg
        self.secagg_factory = secagg_factory
        self.known = frozenset(core.setup.client_names)
        self.holds: dict[str, tuple[int, int]] = {}
        self.secagg_outcomes: list[SecureSumOutcome] = []
        self.seen_masked: dict[str, Any] | None = None
        super().__init__()

    def _clients(self, peers: Peers) -> list[str]:
        return [p for p in peers.connected if p in self.known]

    # ------------------------------------------------------------------- rounds

    def flow(self) -> Flow[None]:
        core, setup, options = self.core, self.core.setup, self.core.options
        yield Listen(self.token, self.known)
        if core.round >= setup.rounds or core.stopped:
            yield Log(f"nothing to do: resumed after round {core.round} of {setup.rounds}")
            return
        peers = yield from self.ask(WaitPeers(len(self.known), options.join_timeout), Peers)
        if peers.timed_out:
            yield Log(f"{len(self._clients(peers))} of {len(self.known)} clients joined in time")
        for r in range(core.round + 1, setup.rounds + 1):
            record = yield from self._round(r)
            stop = core.record(record)
            yield Call(self._after_round(record), "after round")
            if stop:
                yield Log(core.stopped)
                return
            if record.aborted and options.on_abort == "stop":
                core.stopped = f"round {r} aborted ({record.reason}) and on_abort = 'stop'"
                yield Log(core.stopped)
                return

    def _after_round(self, record: RoundRecord) -> Callable[[Context], Any]:
        core, setup = self.core, self.core.setup

        async def effects(ctx: Context) -> None:
            if setup.on_round is not None:
                setup.on_round(record)
            if setup.checkpoint_dir is not None:
                path = checkpoint_path(setup.checkpoint_dir)
                save_state(path, {**checkpoint_header(setup), "core": core.state_dict()})

        return effects

    def _round(self, r: int) -> Flow[RoundRecord]:
        core, options = self.core, self.core.options
        t_start = self.now
        yield Mark("round", f"round {r}")
        late = (yield from self.ask(Drain(REPLIES), Drained)).count
        available = self._clients((yield from self.ask(Look(), Peers)))
        if len(available) < options.min_clients:
            wait = WaitPeers(options.min_clients, options.join_timeout)
            available = self._clients((yield from self.ask(wait, Peers)))
        if len(available) < options.min_clients:
            reason = f"{len(available)} clients connected < min_clients {options.min_clients}"
            return RoundRecord(
                r, (), (), (), late, t_start=t_start, t_end=self.now, aborted=True, reason=reason
            )
        core.begin_round(r)
        sampled = core.sample(r, available)
        secure = self.secagg is not None
        asked = yield from self._send(
            sampled, lambda w: core.train_request(r, with_weights=w, secagg=secure)
        )
        unreachable = sorted(set(sampled) - set(asked))
        if secure:
            outcome, failed, more_late = yield from self._secure_aggregate(r, asked)
        else:
            got = yield from self._collect(asked, r, TrainReply, options.round_timeout)
            train = {c: res for c, res in got.results.items() if isinstance(res, TrainResult)}
            outcome = core.aggregate(train)
            failed, more_late = got.failed, got.late
        late += more_late
        metrics: dict[str, float] = {}
        if outcome.updated and core.evaluates(r):
            metrics, eval_late = yield from self._evaluate(r, outcome)
            late += eval_late
        return RoundRecord(
            round=r,
            sampled=tuple(sampled),
            replied=outcome.used,
            failed=tuple(sorted((set(failed) | set(unreachable)) - set(outcome.used))),
            late=late,
            loss=outcome.loss,
            accuracy=metrics.get("accuracy"),
            eval_loss=metrics.get("loss"),
            t_start=t_start,
            t_end=self.now,
            aborted=not outcome.updated,
            reason=outcome.reason,
        )

    # --------------------------------------------------------- requests, replies

    def _send(self, clients: Sequence[str], make: Callable[[bool], Message]) -> Flow[list[str]]:
        """Send a request to ``clients``, with the weights only to those lacking them.

        Returns:
            The clients reached (sorted).
        """
        version = self.core.version
        sessions = (yield from self.ask(Look(), Peers)).connected
        fresh: list[str] = []
        holding: list[str] = []
        for c in clients:
            (holding if self.holds.get(c) == (sessions.get(c, 0), version) else fresh).append(c)
        failed: list[str] = []
        for group, with_weights in ((fresh, True), (holding, False)):
            for message, peers in self._configured(group, make(with_weights) if group else None):
                failed += (yield from self.ask(Broadcast(tuple(peers), message), Sent)).failed
        reached = sorted(set(clients) - set(failed))
        sessions = (yield from self.ask(Look(), Peers)).connected
        for c in reached:
            self.holds[c] = (sessions.get(c, 0), version)
        return reached

    def _configured(
        self, clients: list[str], message: Message | None
    ) -> list[tuple[Message, list[str]]]:
        """``message`` per client as the strategy configures it, grouped by request."""
        if message is None:
            return []
        if not isinstance(message, TrainRequest):
            return [(message, clients)]
        groups: dict[int, tuple[Message, list[str]]] = {}
        for c in clients:
            request = self.core.strategy.configure(message.round, c, message)
            groups.setdefault(id(request), (request, []))[1].append(c)
        return list(groups.values())

    def _expect(self, kind: Reply, r: int) -> Expect:
        if kind is TrainReply:
            return expect_train(r, self.core.weights, self.core.aux_types())
        if kind is TrainDone:
            return expect_train_done(r)
        return expect_evaluation(r)

    def _collect(
        self, clients: Sequence[str], r: int, kind: Reply, timeout: float
    ) -> Flow[_Collected]:
        """Wait for one ``kind`` reply of round ``r`` from each client, until ``timeout``.

        Every reply goes through :func:`~simkit.validation.check_reply`:
        replies to earlier rounds are counted late and discarded; an
        ``Error`` or a reply that fails validation fails its client.
        """
        out = _Collected()
        deadline = self.now + timeout
        expect = self._expect(kind, r)
        waiting = list(clients)
        while waiting:
            left = deadline - self.now
            if left <= 0:
                out.failed += waiting
                break
            got = yield from self.ask(WaitReplies(tuple(waiting), expect.types, left), Collected)
            out.failed += got.gone
            answered = {item.src for item in got.replies} | set(got.gone)
            waiting = [c for c in waiting if c not in answered]  # still silent, before the deadline
            for item in got.replies:
                note = self._take_reply(item.src, check_reply(item, expect), r, kind, out)
                if note is True:
                    waiting.append(item.src)
                elif note:
                    yield Log(note)
        return out

    def _take_reply(
        self, name: str, got: object, r: int, kind: Reply, out: _Collected
    ) -> str | bool:
        """File one checked reply; returns a line to log, ``True`` to wait on, or ``""``."""
        stage = "evaluate" if kind is EvaluationReply else "train"
        if isinstance(got, Bad):
            out.failed.append(name)
            return f"{name} failed round {r} ({stage}): bad {got.type}: {got.reason}"
        if isinstance(got, Error) and got.stage in (stage, "weights"):
            if got.stage == "weights":
                self.holds.pop(name, None)
            out.failed.append(name)
            return f"{name} failed round {r} ({got.stage}): {got.text}"
        if isinstance(got, TrainReply | EvaluationReply):
            out.results[name] = got.result
        elif isinstance(got, TrainDone):
            out.results[name] = got
        else:  # Late, or an Error of another stage
            out.late += 1
            return True
        return ""

    def _evaluate(self, r: int, outcome: RoundOutcome) -> Flow[tuple[dict[str, float], int]]:
        core = self.core
        if core.evaluation_mode() in ("server", "train"):
            return core.evaluate_on_server(r), 0
        connected = (yield from self.ask(Look(), Peers)).connected
        evaluators = [c for c in outcome.used if c in connected]
        asked = yield from self._send(evaluators, lambda w: core.eval_request(r, with_weights=w))
        got = yield from self._collect(asked, r, EvaluationReply, core.options.eval_timeout)
        evals = {c: res for c, res in got.results.items() if isinstance(res, EvalResult)}
        return core.merge_evaluations(evals), got.late

    # ------------------------------------------------------------ secure rounds

    def _release(self, clients: Sequence[str], r: int, reason: str) -> Command:
        async def run(ctx: Context) -> None:
            await release(ctx, clients, r, reason)

        return Call(run, "release")

    def _secure_aggregate(
        self, r: int, asked: Sequence[str]
    ) -> Flow[tuple[RoundOutcome, list[str], int]]:
        """Collect ``TrainDone``, then securely sum the updates of those that trained in time.

        Returns:
            The outcome, the clients that failed, and the late messages.
        """
        core, options, settings = self.core, self.core.options, self.secagg
        assert settings is not None
        got = yield from self._collect(asked, r, TrainDone, options.round_timeout)
        done = {c: m for c, m in got.results.items() if isinstance(m, TrainDone)}
        cohort = sorted(done)
        connected = (yield from self.ask(Look(), Peers)).connected
        left_out = [c for c in asked if c not in done and c in connected]
        if left_out:  # late trainers must not wait for a secure sum without them
            yield self._release(
                left_out, r, "not in this round's secure sum (no TrainDone in time)"
            )
        needed = max(2, options.min_replies)
        if len(cohort) < needed:
            yield self._release(cohort, r, "too few clients trained in time")
            reason = f"{len(cohort)} clients trained in time; secure aggregation needs {needed}"
            return RoundOutcome(False, (), None, reason), sorted(asked), got.late
        spec, template = update_layout(core.weights)
        summed = yield from self.ask(self._secure_sum(r, cohort, spec.length), SecureSumOutcome)
        self.secagg_outcomes.append(summed)
        late = got.late + summed.stale + summed.late
        failed = sorted(set(asked) - set(summed.survivors))
        if summed.total is None:
            reason = f"secure aggregation aborted in {summed.aborted_in}: {summed.reason}"
            # who did their part up to the stage that failed (not dropouts)
            reached = list(summed.stages.values())
            did = tuple(reached[-1]) if reached else ()
            return RoundOutcome(False, did, None, reason), sorted(set(asked) - set(did)), late
        try:
            total = unflatten_fields(summed.total, spec, template)
        except ValueError as exc:  # a negative total weight: the sum is garbage
            reason = f"the unmasked sum is not a valid update: {exc}"
            yield Log(f"round {r}: {reason}")
            return RoundOutcome(False, summed.survivors, None, reason), failed, late
        metrics = {c: done[c].metrics for c in summed.survivors}
        return core.aggregate_sum(total, summed.survivors, metrics), failed, late

    def _secure_sum(self, r: int, cohort: list[str], length: int) -> Command:
        """The secure sum among ``cohort`` (its own driver: a :class:`~simkit.driver.Call`)."""
        settings = self.secagg
        assert settings is not None
        seen: dict[str, Any] = {}

        def observe(name: str, msg: Message) -> None:
            # the teaching view: what the server receives from one client
            if isinstance(msg, SecAggMaskedInput) and "masked" not in seen:
                seen["client"], seen["masked"] = name, np.asarray(msg.masked)

        async def run(ctx: Context) -> SecureSumOutcome:
            summed = await secure_sum(
                ctx,
                cohort,
                length,
                settings,
                ctx.seeds,
                r,
                server_factory=self.secagg_factory,
                observe=observe if self.seen_masked is None else None,
            )
            if self.seen_masked is None and summed.total is not None and "masked" in seen:
                self.seen_masked = {
                    "round": r,
                    "client": seen["client"],
                    "masked": seen["masked"],
                    "total": summed.total,
                    "bits": settings.bits,
                }
            return summed

        return Call(run, "secure sum")
