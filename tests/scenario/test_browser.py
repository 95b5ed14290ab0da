"""Reports opened in a real browser: headless Chromium, no network.

The page must draw its sequence diagrams as SVG (no raw diagram source
left for a script to render), ask nothing of the outside world, and
render to a non-empty screenshot. Chromium's network log tells page
requests (initiated by the ``file://`` page: initiator ``null``) from the
browser's own background traffic (initiator "not an origin"); every host
name is mapped to nothing, so even a bad page could not reach out.

Skipped when Chromium is missing (``.ci/run`` installs Debian's package).
One small report in the default suite; every shipped scenario in the slow one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).parents[2] / "scenarios"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")


def _chromium(tmp: Path, page: Path, *args: str) -> str:
    assert CHROMIUM is not None
    profile = tmp / "profile"
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    shutil.rmtree(profile, ignore_errors=True)
    return done.stdout


def page_requests(netlog: Path) -> list[str]:
    """URLs the page itself asked for (not the browser's background traffic)."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if (
            event["type"] == start
            and "url" in params
            and params.get("initiator") != "not an origin"
        ):
            urls.append(params["url"])
    return [u for u in urls if not u.startswith(("file:", "data:", "about:"))]


def check_in_browser(page: Path, tmp: Path) -> None:
    """The page's DOM after scripts ran, its requests and its screenshot (one browser run)."""
    netlog, shot = tmp / "net.json", tmp / "shot.png"
    dom = _chromium(
        tmp,
        page,
        "--virtual-time-budget=3000",
        f"--log-net-log={netlog}",
        "--window-size=1200,1600",
        f"--screenshot={shot}",
        "--dump-dom",
    )
    assert "<figure" in dom
    assert dom.count('<svg class="sequence"') >= 1
    assert "sequenceDiagram" not in dom  # no diagram source waiting for a renderer
    assert page_requests(netlog) == []
    _assert_not_blank(shot)


def _assert_not_blank(png: Path) -> None:
    from matplotlib.image import imread

    pixels = imread(png)
    assert pixels.shape[0] >= 1000
    assert pixels.std() > 0.05  # text, plots and diagrams, not a blank page


def _report(name: str, tmp: Path, overrides: list[str]) -> Path:
    pytest.importorskip("protocols.fedavg")
    from simkit.report import write_report
    from simkit.runner import run_scenario

    result = run_scenario(SCENARIOS / f"{name}.toml", overrides=overrides)
    return write_report(result, tmp / name)


def test_netlog_catches_a_page_that_reaches_out(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text('<html><body><img src="https://example.invalid/x.png"></body></html>')
    netlog = tmp_path / "net.json"
    _chromium(tmp_path, page, "--virtual-time-budget=1000", f"--log-net-log={netlog}", "--dump-dom")
    assert page_requests(netlog) == ["https://example.invalid/x.png"]


def test_dropouts_report_in_chromium(tmp_path: Path) -> None:
    overrides = ["rounds=3"]
    check_in_browser(_report("dropouts", tmp_path, overrides), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in SCENARIOS.glob("*.toml")))
def test_every_shipped_report_in_chromium(name: str, tmp_path: Path) -> None:
    check_in_browser(_report(name, tmp_path, []), tmp_path)
