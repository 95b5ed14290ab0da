"""The tutorials in notebooks/: outputs stripped in the repository, and each runs.

Each notebook is executed in a Jupyter kernel (nbclient), from a copy of
notebooks/ in a temporary directory beside a link to scenarios/, so that the
files it writes (out/, replays/) stay out of the checkout.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
nbformat = pytest.importorskip("nbformat")

# What each tutorial must show: a line of its printed output.
EXPECTED = {
    "01_fedavg_dropouts_stragglers": ["by cause: {'crashed': ["],
    "02_secure_aggregation": [
        "rebuild carol's seed: True",
        "exact: True",
        "aborted in",
        "attack on c003: recovered c003",  # the lying server, passive clients
        "refusing to unmask",  # and caught by the active-adversary mode
    ],
    "03_property_based_testing": [
        "found after",
        "test_forgetful(",  # the shrunk example
        "replayed: round 2 asked",
        "30 examples passed",
    ],
}


def test_three_tutorials_ship_without_outputs() -> None:
    assert [p.stem for p in NOTEBOOKS] == sorted(EXPECTED)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{path.name}: outputs not stripped"
                assert cell.execution_count is None, f"{path.name}: execution count kept"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("tutorials")
    shutil.copytree(ROOT / "notebooks", base / "notebooks")
    (base / "scenarios").symlink_to(ROOT / "scenarios")
    return base / "notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_runs(path: Path, workdir: Path) -> None:
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("protocols.fedavg")
    nb = nbformat.read(workdir / path.name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    start = time.perf_counter()  # reporting only: the budget is 60 s each
    client.execute()
    took = time.perf_counter() - start
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    for text in EXPECTED[path.stem]:
        assert text in printed, f"{path.name} did not print {text!r}"
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images or path.stem.startswith("03"), f"{path.name} shows no figure"
    assert took < 120, f"{path.name} took {took:.0f} s (budget: 60 s)"
