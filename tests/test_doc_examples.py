"""The examples of docs/ run as printed (docs/testing.md has its own test: tests/testing/).

Python blocks of a page run in order in one namespace, from a temporary
directory beside a link to scenarios/ (they may write files); TOML fault
blocks must parse to the schedule the Python block builds. Links between
pages must point inside the repository.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from simkit.faults import FaultSchedule

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
PYTHON = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
TOML = re.compile(r"^```toml\n(.*?)^```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _run_blocks(page: Path, blocks: list[str]) -> dict[str, object]:
    module = types.ModuleType(f"doc_{page.stem}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    try:
        for i, code in enumerate(blocks):
            exec(compile(code, f"{page}:block{i}", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module.__dict__


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "scenarios").symlink_to(ROOT / "scenarios")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_runtime_fault_examples(in_tmp: Path) -> None:
    page = DOCS / "runtime.md"
    text = page.read_text()
    names = _run_blocks(page, PYTHON.findall(text))
    schedule = names["schedule"]
    assert isinstance(schedule, FaultSchedule)
    assert FaultSchedule.from_toml(TOML.findall(text)[0]) == schedule


def test_scenarios_python_example(in_tmp: Path) -> None:
    pytest.importorskip("protocols.fedavg")
    pytest.importorskip("matplotlib")
    page = DOCS / "scenarios.md"
    names = _run_blocks(page, PYTHON.findall(page.read_text()))
    assert names["result"].summary()["rounds_completed"] == 8
    assert (in_tmp / "w.npz").is_file()
    assert (in_tmp / "out" / "quickstart" / "index.html").is_file()


def test_secagg_core_example(in_tmp: Path) -> None:
    page = DOCS / "secagg.md"
    first = PYTHON.findall(page.read_text())[0]
    names = _run_blocks(page, [first])
    result = names["server"].result
    assert "c03" not in result.survivors
    assert len(names["mean"]) == 100


@pytest.mark.parametrize("page", [*sorted(DOCS.glob("*.md")), ROOT / "README.md"], ids=str)
def test_links_stay_inside_the_repository(page: Path) -> None:
    assert "shared/DESIGN" not in page.read_text()
    for target in LINK.findall(page.read_text()):
        if "://" in target:
            continue
        resolved = (page.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{page.name} links outside the repo: {target}"
        assert resolved.exists(), f"{page.name} links to a missing file: {target}"


def test_dropouts_comment_tells_what_happens() -> None:
    """scenarios/dropouts.toml: six silent crashes on a training request, c019 loud at 3 s."""
    pytest.importorskip("protocols.fedavg")
    from simkit.runner import run_scenario

    result = run_scenario(ROOT / "scenarios" / "dropouts.toml")
    events = result.trace.events
    crashes = [e for e in events if e.kind == "crash"]
    silent = [e for e in crashes if e.info == "silent"]
    assert [(e.src, e.t, e.info) for e in crashes if e.info == "loud"] == [("c019", 3.0, "loud")]
    assert len(silent) == 6  # 30 % of 20
    assert len({round(e.t) for e in silent}) >= 4  # at various points of the run
    for crash in silent:
        seen = [e.t for e in events if e.kind == "peer_down" and e.dst == crash.src]
        assert seen, f"{crash.src} never declared gone"
        assert seen[0] - crash.t <= 3.0 + 0.5  # interval * misses, plus latency
    assert result.summary()["dropped"] == sorted(e.src for e in crashes)
