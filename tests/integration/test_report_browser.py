"""A backtest report opened in a real browser (Debian's headless chromium), offline.

The report is loaded into a frame of a probe page; the probe measures what the browser laid
out (each figure's drawn size, the tables' rows) and lists every resource the report made the
browser fetch, then writes its findings into its own DOM for ``--dump-dom`` to print. A
screenshot of the report must show the charts' colours, not a blank page.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from evergreen.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.chromium]

RECORDING = Path(__file__).parents[2] / "operator" / "evergreen" / "data" / "showcase.recording.json.gz"
FIGURES = ["decision-timeline", "drift-heatmap", "kpi-lines", "data-quality"]

PROBE = """<!DOCTYPE html>
<html><body>
<iframe id="report" src="report.html" style="width: 1280px; height: 3000px"></iframe>
<script>
document.getElementById("report").addEventListener("load", () => {
  const frame = document.getElementById("report");
  const doc = frame.contentDocument;
  const box = (element) => {
    if (!element) return null;
    const rect = element.getBoundingClientRect();
    return [Math.round(rect.width), Math.round(rect.height)];
  };
  const findings = {
    title: doc.title,
    headings: [...doc.querySelectorAll("h2")].map((h) => h.textContent),
    figures: Object.fromEntries(FIGURES.map((id) => [id, box(doc.querySelector(`#${id} svg`))])),
    decisions: [...doc.querySelectorAll("#decisions tbody tr")].map((row) => row.cells[3].textContent),
    fetched: frame.contentWindow.performance.getEntriesByType("resource").map((entry) => entry.name),
  };
  const out = document.createElement("pre");
  out.id = "findings";
  out.textContent = JSON.stringify(findings);
  document.body.appendChild(out);
});
</script>
</body></html>
"""


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed (make chromium)")
    return path


def browse(*args: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        # Offline: any request the page makes fails instead of reaching a network.
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    path = folder / "report.html"
    assert main(["backtest", "--recording", str(RECORDING), "--report", str(path)]) == 0
    (folder / "probe.html").write_text(PROBE.replace("FIGURES", json.dumps(FIGURES), 1))
    return path


def test_the_browser_lays_out_every_figure_and_table_without_fetching(report: Path) -> None:
    result = browse(
        "--allow-file-access-from-files",
        "--virtual-time-budget=15000",
        "--dump-dom",
        (report.parent / "probe.html").as_uri(),
    )
    match = re.search(r'<pre id="findings">(.*?)</pre>', result.stdout, re.DOTALL)
    assert match, result.stdout[-2000:]
    findings = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert findings["title"] == "Backtest of ModelMonitor ml/fraud-detector"
    assert findings["headings"] == ["Summary", "Decisions", "Drift", "KPIs", "Data quality"]
    for figure, size in findings["figures"].items():
        assert size is not None, figure
        width, height = size
        assert width > 1000 and height > 80, (figure, size)
    assert findings["decisions"][0] == "Healthy"
    assert "HoldUnresolved" in findings["decisions"]
    assert findings["fetched"] == []


def test_a_screenshot_shows_the_charts(report: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    browse("--window-size=1280,2200", f"--screenshot={shot}", report.as_uri())
    with Image.open(shot) as image:
        pixels = image.convert("RGB")
        assert pixels.size == (1280, 2200)
        counted = pixels.getcolors(maxcolors=1 << 20)
    assert counted is not None
    colours = [(count, rgb) for count, rgb in counted if isinstance(rgb, tuple)]
    total = sum(count for count, _ in colours)
    white = sum(count for count, rgb in colours if min(rgb) >= 250)
    assert white / total < 0.9, "the page is (nearly) blank"
    present = {rgb for _, rgb in colours}
    # The decision bands' colours: NoAction, HoldForDataQuality and Escalate were all decided.
    for hex_colour in ("#2e7d32", "#ef6c00", "#c62828"):
        rgb = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        assert rgb in present, hex_colour
