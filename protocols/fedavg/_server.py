"""The FedAvg server actor: a thin async loop around :class:`FedAvgCore`."""

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
from simkit.actors import Actor, Context
from simkit.messages import Message
from simkit.protocol import RoundRecord
from simkit.secagg import SecAggMaskedInput, SecAggServer
from simkit.training import EvalResult, TrainResult, save_state
from simkit.validation import Bad, Expect, check_reply

__all__ = ["SERVER_NAME", "FedAvgServer", "checkpoint_path"]

SERVER_NAME = "server"
_REPLIES = (TrainReply, TrainDone, EvaluationReply, Error)


def checkpoint_path(directory: Path) -> Path:
    """Where the server keeps its state inside a checkpoint directory."""
    return directory / "server.npz"


@dataclass(slots=True)
class _Collected:
    """The replies of one request round."""

    results: dict[str, TrainResult | EvalResult | TrainDone] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    late: int = 0


class FedAvgServer(Actor):
    """Runs the rounds: sample, send, collect with a deadline, aggregate, evaluate.

    Args:
        core: The round logic and state (restored from a checkpoint when resuming).
        token: Joins must present this token (empty: none).
        secagg: Secure aggregation settings (``None``: updates travel in clear).
        secagg_factory: Builds the SecAgg server core (a subclass changes its
            behaviour: the testing tutorial's buggy server).
    """

    def __init__(
        self,
        core: FedAvgCore,
        *,
        token: str = "",
        secagg: SecAggSettings | None = None,
        secagg_factory: ServerFactory = SecAggServer,
    ) -> None:
        self.name = SERVER_NAME
        self.core = core
        self.token = token
        self.secagg = secagg
        self.secagg_factory = secagg_factory
        self.secagg_outcomes: list[SecureSumOutcome] = []
        # round, client, its masked input and the sum of the first secure round
        self.seen_masked: dict[str, Any] | None = None
        # client -> (session, version) of the global weights it was last sent
        self._holds: dict[str, tuple[int, int]] = {}
        self._known = frozenset(core.setup.client_names)

    async def run(self, ctx: Context) -> None:
        core, setup, options = self.core, self.core.setup, self.core.options
        ctx.listen(token=self.token, admit=self._known)
        if core.round >= setup.rounds or core.stopped:
            ctx.log(f"nothing to do: resumed after round {core.round} of {setup.rounds}")
            return
        try:
            await ctx.wait_for_peers(len(self._known), timeout=options.join_timeout)
        except TimeoutError:
            ctx.log(f"{len(self._clients(ctx))} of {len(self._known)} clients joined in time")
        for r in range(core.round + 1, setup.rounds + 1):
            record = await self._round(ctx, r)
            stop = core.record(record)
            if setup.on_round is not None:
                setup.on_round(record)
            if setup.checkpoint_dir is not None:
                self._checkpoint(setup.checkpoint_dir)
            if stop:
                ctx.log(core.stopped)
                break
            if record.aborted and options.on_abort == "stop":
                core.stopped = f"round {r} aborted ({record.reason}) and on_abort = 'stop'"
                ctx.log(core.stopped)
                break

    def _clients(self, ctx: Context) -> list[str]:
        return [p for p in ctx.peers() if p in self._known]

    async def _round(self, ctx: Context, r: int) -> RoundRecord:
        core, options = self.core, self.core.options
        t_start = ctx.now()
        ctx.mark("round", f"round {r}")
        late = self._drain(ctx)
        available = self._clients(ctx)
        if len(available) < options.min_clients:
            try:
                await ctx.wait_for_peers(options.min_clients, timeout=options.join_timeout)
            except TimeoutError:
                pass
            available = self._clients(ctx)
        if len(available) < options.min_clients:
            reason = f"{len(available)} clients connected < min_clients {options.min_clients}"
            return RoundRecord(
                r, (), (), (), late, t_start=t_start, t_end=ctx.now(), aborted=True, reason=reason
            )
        core.begin_round(r)
        sampled = core.sample(r, available)
        secure = self.secagg is not None
        asked = await self._send(
            ctx,
            sampled,
            lambda with_weights: core.train_request(r, with_weights=with_weights, secagg=secure),
        )
        unreachable = sorted(set(sampled) - set(asked))
        if secure:
            outcome, failed, more_late = await self._secure_aggregate(ctx, r, asked)
        else:
            got = await self._collect(ctx, asked, r, TrainReply, options.round_timeout)
            train = {c: res for c, res in got.results.items() if isinstance(res, TrainResult)}
            outcome = core.aggregate(train)
            failed, more_late = got.failed, got.late
        late += more_late
        metrics: dict[str, float] = {}
        if outcome.updated and core.evaluates(r):
            metrics, eval_late = await self._evaluate(ctx, r, outcome)
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
            t_end=ctx.now(),
            aborted=not outcome.updated,
            reason=outcome.reason,
        )

    async def _secure_aggregate(
        self, ctx: Context, r: int, asked: Sequence[str]
    ) -> tuple[RoundOutcome, list[str], int]:
        """Collect ``TrainDone``, then securely sum the updates of those that trained in time.

        Returns:
            The outcome, the clients that failed, and the late messages.
        """
        core, options, settings = self.core, self.core.options, self.secagg
        assert settings is not None
        got = await self._collect(ctx, asked, r, TrainDone, options.round_timeout)
        done = {c: m for c, m in got.results.items() if isinstance(m, TrainDone)}
        cohort = sorted(done)
        left_out = [c for c in asked if c not in done and ctx.is_connected(c)]
        if left_out:  # late trainers must not wait for a secure sum without them
            await release(ctx, left_out, r, "not in this round's secure sum (no TrainDone in time)")
        needed = max(2, options.min_replies)
        if len(cohort) < needed:
            await release(ctx, cohort, r, "too few clients trained in time")
            reason = f"{len(cohort)} clients trained in time; secure aggregation needs {needed}"
            return RoundOutcome(False, (), None, reason), sorted(asked), got.late
        spec, template = update_layout(core.weights)
        seen: dict[str, Any] = {}

        def observe(name: str, msg: Message) -> None:
            # the teaching view: what the server receives from one client
            if isinstance(msg, SecAggMaskedInput) and "masked" not in seen:
                seen["client"], seen["masked"] = name, np.asarray(msg.masked)

        summed = await secure_sum(
            ctx,
            cohort,
            spec.length,
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
        self.secagg_outcomes.append(summed)
        late = got.late + summed.stale + summed.late
        failed = sorted(set(asked) - set(summed.survivors))
        if summed.total is None:
            reason = f"secure aggregation aborted in {summed.aborted_in}: {summed.reason}"
            # who did their part up to the stage that failed (not dropouts)
            reached = list(summed.stages.values())
            did = tuple(reached[-1]) if reached else ()
            return (
                RoundOutcome(False, did, None, reason),
                sorted(set(asked) - set(did)),
                late,
            )
        try:
            total = unflatten_fields(summed.total, spec, template)
        except ValueError as exc:  # a negative total weight: the sum is garbage
            reason = f"the unmasked sum is not a valid update: {exc}"
            ctx.log(f"round {r}: {reason}")
            return RoundOutcome(False, summed.survivors, None, reason), failed, late
        metrics = {c: done[c].metrics for c in summed.survivors}
        return core.aggregate_sum(total, summed.survivors, metrics), failed, late

    async def _send(
        self, ctx: Context, clients: Sequence[str], make: Callable[[bool], Message]
    ) -> list[str]:
        """Send a request to ``clients``, with the weights only to those lacking them.

        Returns:
            The clients reached (sorted).
        """
        version = self.core.version
        fresh: list[str] = []
        holding: list[str] = []
        for c in clients:
            (holding if self._holds.get(c) == (ctx.session(c), version) else fresh).append(c)
        failed: list[str] = []
        if fresh:
            failed += await ctx.broadcast(fresh, make(True))
        if holding:
            failed += await ctx.broadcast(holding, make(False))
        reached = sorted(set(clients) - set(failed))
        for c in reached:
            self._holds[c] = (ctx.session(c), version)
        return reached

    async def _collect(
        self,
        ctx: Context,
        clients: Sequence[str],
        r: int,
        kind: type[TrainReply] | type[TrainDone] | type[EvaluationReply],
        timeout: float,
    ) -> _Collected:
        """Wait for one ``kind`` reply of round ``r`` from each client, until ``timeout``.

        Every reply goes through :func:`~simkit.validation.check_reply`:
        replies to earlier rounds are counted late and discarded; an
        ``Error`` or a reply that fails validation fails its client.
        """
        out = _Collected()
        deadline = ctx.now() + timeout
        stage = "evaluate" if kind is EvaluationReply else "train"
        expect = self._expect(kind, r)
        waiting = list(clients)
        while waiting:
            left = deadline - ctx.now()
            if left <= 0:
                out.failed += waiting
                break
            replies, gone = await ctx.wait_for_replies(waiting, expect.types, timeout=left)
            out.failed += gone
            waiting = []
            for name, item in replies.items():
                got = check_reply(item, expect)
                if isinstance(got, Bad):
                    ctx.log(f"{name} failed round {r} ({stage}): bad {got.type}: {got.reason}")
                    out.failed.append(name)
                elif isinstance(got, Error) and got.stage in (stage, "weights"):
                    ctx.log(f"{name} failed round {r} ({got.stage}): {got.text}")
                    if got.stage == "weights":
                        self._holds.pop(name, None)
                    out.failed.append(name)
                elif isinstance(got, TrainReply | EvaluationReply):
                    out.results[name] = got.result
                elif isinstance(got, TrainDone):
                    out.results[name] = got
                else:  # Late, or an Error of another stage
                    out.late += 1
                    waiting.append(name)
        return out

    def _expect(
        self, kind: type[TrainReply] | type[TrainDone] | type[EvaluationReply], r: int
    ) -> Expect:
        if kind is TrainReply:
            return expect_train(r, self.core.weights, self.core.aux_types())
        if kind is TrainDone:
            return expect_train_done(r)
        return expect_evaluation(r)

    async def _evaluate(
        self, ctx: Context, r: int, outcome: RoundOutcome
    ) -> tuple[dict[str, float], int]:
        core = self.core
        if core.evaluation_mode() in ("server", "train"):
            return core.evaluate_on_server(r), 0
        evaluators = [c for c in outcome.used if ctx.is_connected(c)]
        asked = await self._send(ctx, evaluators, lambda w: core.eval_request(r, with_weights=w))
        got = await self._collect(ctx, asked, r, EvaluationReply, core.options.eval_timeout)
        evals = {c: res for c, res in got.results.items() if isinstance(res, EvalResult)}
        return core.merge_evaluations(evals), got.late

    def _drain(self, ctx: Context) -> int:
        """Discard replies left from earlier rounds; return how many."""
        count = 0
        while ctx.take(_REPLIES) is not None:
            count += 1
        return count

    def _checkpoint(self, directory: Path) -> None:
        setup = self.core.setup
        save_state(
            checkpoint_path(directory),
            {**checkpoint_header(setup), "core": self.core.state_dict()},
        )
