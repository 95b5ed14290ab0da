"""simkit inside a running event loop (a notebook cell) and as awaitables.

A notebook cell runs inside ipykernel's asyncio loop; ``run_scenario`` and
``Simulation.run`` then compute in a worker thread and must give the digests
a plain script (or the CLI) gives.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import simkit
from simkit import Actor, Context, Message, Simulation

ROOT = Path(__file__).parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.toml"


@dataclass(frozen=True, slots=True)
class JupyterHello(Message):
    text: str


class _Server(Actor):
    name = "server"

    async def run(self, ctx: Context) -> None:
        ctx.listen()
        await ctx.recv(JupyterHello, timeout=10)


class _Client(Actor):
    name = "client"

    async def run(self, ctx: Context) -> None:
        await ctx.connect("server")
        await ctx.send("server", JupyterHello("hi"))


def _sim() -> Simulation:
    sim = Simulation(seed=4)
    sim.add(_Server())
    sim.add(_Client(), daemon=True)
    return sim


def test_simulation_runs_inside_a_running_loop_with_the_same_digest() -> None:
    plain = _sim().run().digest

    async def cell() -> tuple[str, str]:
        blocking = _sim().run().digest  # would raise "Already running asyncio" before
        awaited = (await _sim().arun()).digest
        return blocking, awaited

    assert asyncio.run(cell()) == (plain, plain)


def test_run_scenario_inside_a_running_loop_and_awaited() -> None:
    pytest.importorskip("protocols.fedavg")
    over = ["rounds=2", "clients.count=4"]
    plain = simkit.run_scenario(QUICKSTART, overrides=over).summary()

    async def cell() -> list[str]:
        a = simkit.run_scenario(QUICKSTART, overrides=over)
        b = await simkit.arun_scenario(QUICKSTART, overrides=over)
        return [r.summary()["weights_digest"] + r.summary()["trace_digest"] for r in (a, b)]

    want = plain["weights_digest"] + plain["trace_digest"]
    assert asyncio.run(cell()) == [want, want]


def test_errors_cross_the_worker_thread() -> None:
    sim = Simulation(seed=1)
    sim.add(_Client(), daemon=True)

    async def cell() -> None:
        sim.run()  # every actor a daemon, no `until`

    with pytest.raises(ValueError, match="every actor is a daemon"):
        asyncio.run(cell())


def test_run_result_displays_itself_as_html() -> None:
    pytest.importorskip("protocols.fedavg")
    result = simkit.run_scenario(QUICKSTART, overrides=["rounds=2", "clients.count=3"])
    page = result._repr_html_()
    assert page.count("<tr>") == 1 + 2  # header + one row per round
    assert "quickstart" in page
    assert 'src="data:image/png;base64,' in page


def test_a_notebook_cell_gives_the_cli_digests() -> None:
    """The issue's acceptance: quickstart in a Jupyter kernel, digests as the CLI's."""
    pytest.importorskip("protocols.fedavg")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    cli = subprocess.run(
        [sys.executable, "-m", "simkit", "run", str(QUICKSTART), "--json", "--quiet"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    want = json.loads(cli.stdout.splitlines()[-1])
    code = (
        "import simkit\n"
        'result = simkit.run_scenario("scenarios/quickstart.toml")\n'
        "s = result.summary()\n"
        'print(s["trace_digest"], s["weights_digest"])\n'
        "result"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    outputs = nb.cells[0].outputs
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream").split()
    assert printed == [want["trace_digest"], want["weights_digest"]]
    shown = [o for o in outputs if o.output_type == "execute_result"]
    assert "<table" in shown[0]["data"]["text/html"]
    # the progress bar, updated in place after every round
    bars = [o["data"]["text/html"] for o in outputs if o.output_type == "display_data"]
    assert len(bars) == 1
    assert "simkit-progress" in bars[0]
    assert "round 5/5" in bars[0]
