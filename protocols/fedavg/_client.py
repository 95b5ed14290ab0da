"""The FedAvg client actor: join, then answer training and evaluation requests."""

from __future__ import annotations

import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from protocols.fedavg._secure import masked_vector, weight_cap
from protocols.fedavg._strategy import apply_mods, load_mods
from protocols.messages import (
    Error,
    EvaluationReply,
    EvaluationRequest,
    TrainDone,
    TrainReply,
    TrainRequest,
)
from protocols.secagg import SecAggSettings, secure_contribute
from simkit.actors import Actor, Context, PeerGone, Rejected
from simkit.channels import ConnectError
from simkit.executor import deliver
from simkit.messages import Message
from simkit.protocol import ClientSetup, ScenarioSetup
from simkit.runtime import run_outside
from simkit.training import (
    EvalInstructions,
    EvalResult,
    TrainFailure,
    TrainingManager,
    TrainInstructions,
    TrainResult,
    Weights,
    load_state,
    outside_round,
    planned_evaluation,
    planned_training,
    save_state,
)

__all__ = ["FedAvgClient", "client_checkpoint_path"]

_REQUESTS = (TrainRequest, EvaluationRequest)


def client_checkpoint_path(directory: Path, name: str) -> Path:
    """Where client ``name`` keeps its state inside a checkpoint directory."""
    return directory / "clients" / f"{name}.npz"


_CAPS: dict[int, float] = {}


def _weight_cap(setup: ScenarioSetup) -> float:
    """:func:`weight_cap` once per setup (it reads every client's shard size)."""
    key = id(setup)
    if key not in _CAPS:
        _CAPS[key] = weight_cap(setup)
        weakref.finalize(setup, _CAPS.pop, key, None)
    return _CAPS[key]


class FedAvgClient(Actor):
    """Trains on its shard when asked; keeps the global weights it was sent.

    The server sends the weights only when the client lacks their version;
    the client keeps them (its model is overwritten by local training) and
    answers ``Error(stage="weights")`` if told to use a version it does not
    hold (after a restart, say). A request superseded by a newer one already
    waiting is skipped (a straggler catches up instead of replying late
    twice). After every training round the client saves its state (model,
    optimizer with module states, batch RNG, global weights) when the run
    keeps checkpoints, and a resumed run starts from it.

    Args:
        setup: The scenario.
        client: This client's name, data and speed.
        server: The server's actor name (or TCP address book name).
        token: The token to join with.
        connect_timeout: Keep trying to join for this many seconds.
    """

    def __init__(
        self,
        setup: ScenarioSetup,
        client: ClientSetup,
        *,
        server: str = "server",
        token: str = "",
        connect_timeout: float = 60.0,
    ) -> None:
        self.name = client.name
        self.setup = setup
        self.server = server
        self.token = token
        self.connect_timeout = connect_timeout
        self.manager = TrainingManager(
            setup.models,  # one model per worker, borrowed for each round
            setup.client_optimizer(),
            client.train,
            client.valid,
            seed_tree=setup.seeds.child("client", client.name),
            cost=setup.cost,
            speed=client.speed,
        )
        self.weights: Weights | None = None
        self.version = -1
        self.mods = load_mods(setup.protocol.get("mods", ()))  # checked by the plugin
        self.secagg = SecAggSettings.from_table(setup.secagg, setup.name)
        self._weight_cap = _weight_cap(setup) if self.secagg is not None else 1.0
        self._secure: npt.NDArray[np.float64] | None = None  # the next secure-sum input
        # round -> the input this client fed the secure sum (kept for the first
        # two rounds only: the report's teaching view shows one)
        self.secure_inputs: dict[int, npt.NDArray[np.float64]] = {}
        if setup.resume_dir is not None:
            self._restore(client_checkpoint_path(setup.resume_dir, self.name))

    async def run(self, ctx: Context) -> None:
        if not ctx.virtual:
            self.manager.clock = ctx.now  # real time: effort is measured, not modelled
        if not await self._join(ctx):
            return
        while True:
            try:
                got = await ctx.recv(_REQUESTS, src=self.server)
            except PeerGone:
                return
            request = self._latest(ctx, got.decode())
            if ctx.virtual and self.setup.outside() is not None:
                reply = await self._answer_outside(ctx, request)
            elif ctx.virtual:  # compute is modelled: the clock moves by its cost
                reply, spent = self._answer(request)
                if spent > 0:
                    await ctx.compute(spent)
            else:  # real time: train in a thread so heartbeats go on meanwhile
                reply, _ = await run_outside(self._answer, request)
            try:
                await ctx.send(self.server, reply)
            except PeerGone:
                return
            if isinstance(reply, TrainDone) and self._secure is not None:
                assert self.secagg is not None
                vector, self._secure = self._secure, None
                await secure_contribute(
                    ctx, self.server, vector, self.secagg, ctx.seeds, request.round
                )
            # hold nothing of this round while waiting for the next: a thousand
            # idle clients would keep a thousand requests' weights and replies
            del got, request, reply

    async def _join(self, ctx: Context) -> bool:
        """Join the server, retrying while it is not listening yet."""
        deadline = ctx.now() + self.connect_timeout
        delay = 0.1
        while True:
            try:
                await ctx.connect(self.server, token=self.token, timeout=self.connect_timeout)
                return True
            except Rejected as exc:
                ctx.log(f"join rejected: {exc}")
                return False
            except (ConnectError, TimeoutError) as exc:
                if ctx.now() + delay > deadline:
                    ctx.log(f"could not join {self.server}: {exc}")
                    return False
            await ctx.sleep(delay)
            delay = min(2 * delay, 2.0)

    def _latest(self, ctx: Context, msg: Message) -> TrainRequest | EvaluationRequest:
        """``msg``, or the newest request already waiting (older ones only bring weights)."""
        assert isinstance(msg, _REQUESTS)
        self._keep_weights(msg)
        while (newer := ctx.take(_REQUESTS, src=self.server)) is not None:
            decoded = newer.decode()
            assert isinstance(decoded, _REQUESTS)
            ctx.log(f"skipped {type(msg).__name__} of round {msg.round}: superseded")
            msg = decoded
            self._keep_weights(msg)
        return msg

    def _keep_weights(self, msg: TrainRequest | EvaluationRequest) -> None:
        if msg.weights is not None:  # one copy per version among this worker's clients
            self.weights = self.setup.models.shared.share(msg.version, msg.weights)
            self.version = msg.version

    async def _answer_outside(
        self, ctx: Context, request: TrainRequest | EvaluationRequest
    ) -> Message:
        """Virtual time with an executor: hand the round over, sleep its planned cost.

        The round's virtual cost is known before it runs (simkit.training.plan),
        so the clock moves exactly as with inline compute and the result is
        collected when the client wakes: the same trace, whatever executor.
        A round that fails is known to fail only then (its Error comes after
        the planned cost, not at once).
        """
        ins = self._to_compute(request)
        pool = self.setup.outside()
        if ins is None or pool is None:
            return self._answer(request)[0]  # an Error before any compute
        waiter = deliver(pool.submit(outside_round, self.manager, ins))
        if isinstance(ins, TrainInstructions):
            spent = planned_training(self.manager, ins)
        else:
            spent = planned_evaluation(self.manager, ins)
        if spent > 0:
            await ctx.compute(spent)
        try:
            outcome, state = await waiter
        except Exception as exc:  # the job never ran: not picklable, a worker died ...
            text = f"the {pool.kind} executor could not run the round: {type(exc).__name__}: {exc}"
            if isinstance(ins, TrainInstructions):
                return Error(request.round, "train", text)
            return Error(request.round, "evaluate", text)
        self.manager.load_state_dict(state)
        return self._answer(request, outcome)[0]

    def _to_compute(
        self, request: TrainRequest | EvaluationRequest
    ) -> TrainInstructions | EvalInstructions | None:
        """What :meth:`_answer` would compute for ``request`` (``None``: it errs first)."""
        if self.weights is None or request.version != self.version:
            return None
        if isinstance(request, TrainRequest) and request.secagg and self.secagg is None:
            return None
        return request.instructions(self.weights)

    def _answer(
        self,
        request: TrainRequest | EvaluationRequest,
        outcome: TrainResult | EvalResult | TrainFailure | None = None,
    ) -> tuple[Message, float]:
        """The reply to ``request`` and the compute time it cost.

        ``outcome``: the round already computed elsewhere (an executor).
        """
        self._secure = None
        if self.weights is None or request.version != self.version:
            text = f"holds weights version {self.version}, was asked to use {request.version}"
            return Error(request.round, "weights", text), 0.0
        if isinstance(request, EvaluationRequest):
            evaluated = outcome
            if evaluated is None:
                evaluated = self.manager.evaluation_round(request.instructions(self.weights))
            if isinstance(evaluated, TrainFailure):
                return Error(request.round, "evaluate", evaluated.error_text), 0.0
            assert isinstance(evaluated, EvalResult)
            return EvaluationReply(request.round, evaluated), evaluated.effort.t_spent
        if request.secagg and self.secagg is None:
            text = "asked for secure aggregation, but this client's scenario has secagg.mode = off"
            return Error(request.round, "secagg", text), 0.0
        result = outcome
        if result is None:
            result = self.manager.training_round(request.instructions(self.weights))
        if isinstance(result, TrainFailure):
            return Error(request.round, "train", result.error_text), 0.0
        assert isinstance(result, TrainResult)
        if self.mods:
            rng = self.setup.seeds.numpy("client", self.name, "mods", request.round)
            result = replace(result, updates=apply_mods(self.mods, result.updates, rng))
        if self.setup.checkpoint_dir is not None:
            self._save(client_checkpoint_path(self.setup.checkpoint_dir, self.name), result)
        if request.secagg:
            # the update goes through the secure sum; only loss and effort in clear
            self._secure = masked_vector(result.updates, self._weight_cap)
            if len(self.secure_inputs) < 2:
                self.secure_inputs.setdefault(request.round, self._secure)
            return TrainDone(request.round, result.metrics, result.effort), result.effort.t_spent
        return TrainReply(request.round, result), result.effort.t_spent

    def _save(self, path: Path, result: TrainResult) -> None:
        assert self.weights is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        save_state(
            path,
            {
                "round": result.round,
                "version": self.version,
                "weights": self.weights.to_dict(),
                "manager": self.manager.state_dict(),
            },
        )

    def _restore(self, path: Path) -> None:
        if not path.exists():
            return  # it never trained before the checkpoint: it starts fresh
        state = load_state(path)
        self.manager.load_state_dict(state["manager"])
        self.weights = Weights.from_dict(state["weights"])
        self.version = int(state["version"])
