"""``simkit compare``: summaries and scenario runs side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simkit.cli import main
from simkit.compare import CompareError, load_run, table_rows

SCENARIOS = Path(__file__).parents[1] / "scenarios"
STRAGGLERS = str(SCENARIOS / "stragglers.toml")


def _summary(path: Path, accuracy: list[float], *, json_line: bool = False) -> Path:
    metrics = [
        {"round": i + 1, "participants": 3, "loss": 1.0 / (i + 1), "accuracy": a}
        for i, a in enumerate(accuracy)
    ]
    summary = {"protocol": "fedavg", "seed": 0, "clients": 3, "rounds_completed": 2}
    summary |= {"dropped": ["c1"], "metrics": metrics, "virtual_time_s": 1.5}
    text = json.dumps(summary)
    path.write_text(("progress...\n" + text) if json_line else json.dumps(summary, indent=2))
    return path


def test_summaries_load_from_report_files_and_json_lines(tmp_path: Path) -> None:
    (tmp_path / "run_a").mkdir()
    a = load_run(str(_summary(tmp_path / "run_a" / "summary.json", [0.5, 0.6])))
    b = load_run(str(_summary(tmp_path / "b.json", [0.4, 0.7], json_line=True)))
    assert (a.label, b.label) == ("run_a", "b")
    assert b.curve("accuracy") == [0.4, 0.7]
    rows = dict(table_rows([a, b]))
    assert rows["best accuracy"] == ["0.6000", "0.7000"]
    assert rows["dropped"] == ["1", "1"]


def test_bad_runs_are_named(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(CompareError, match="not a simkit run summary"):
        load_run(str(tmp_path / "x.json"))
    with pytest.raises(CompareError, match="need a scenario file"):
        load_run(f"{tmp_path / 'x.json'}@rounds=2")


def test_cli_compares_the_three_stragglers_configurations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """stragglers.toml's comment: one command, three configurations, one report."""
    pytest.importorskip("protocols.fedavg")
    pytest.importorskip("matplotlib")
    runs = [
        STRAGGLERS,
        f"{STRAGGLERS}@optimizer.client.prox_mu=0",
        f"{STRAGGLERS}@optimizer.client.prox_mu=0@training.timeout=1000",
    ]
    status = main(["compare", *runs, "--set", "rounds=2", "-o", str(tmp_path)])
    assert status == 0
    labelled = json.loads((tmp_path / "compare.json").read_text())
    assert [r["label"] for r in labelled] == [
        "stragglers",
        "stragglers prox_mu=0",
        "stragglers prox_mu=0 timeout=1000",
    ]
    assert all(len(r["metrics"]) == 2 for r in labelled)
    page = (tmp_path / "compare.html").read_text()
    assert page.count("<th>stragglers") == 3
    assert "fedprox" in page
    assert (tmp_path / "compare.png").stat().st_size > 10_000
    assert "comparison written to" in capsys.readouterr().out


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simkit: error: ")
    assert "cannot read" in err
    assert main(["compare", f"{STRAGGLERS}@rounds=zero", "-o", str(tmp_path)]) == 2
