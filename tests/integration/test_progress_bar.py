"""``backtest`` and ``record`` draw a progress bar on a terminal and nothing when piped.

The commands run as their own process with stderr on a pseudo-terminal (what a person at a
shell has) or on a pipe (CI logs, ``2> file``), against a real Prometheus holding the
showcase's history.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from evergreen.simulation import PrometheusServer
from evergreen.simulation.catalog import SHOWCASE_TIMES

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

EXAMPLE = Path(__file__).parents[2] / "examples" / "fraud-detector.yaml"
RECORDING = Path(__file__).parents[2] / "operator" / "evergreen" / "data" / "showcase.recording.json.gz"
BAR = re.compile(r"\r(backtest|recording) \[[#-]{24}\] [\d,]+/[\d,]+ evaluations")


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _manifest(tmp_path: Path) -> str:
    document: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    document["spec"].pop("prometheus")
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "evergreen.cli", *args]


def on_terminal(command: list[str]) -> tuple[int, str, str]:
    """Run ``command`` with stderr on a pseudo-terminal: (exit code, stdout, what the terminal showed)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=terminal, stdin=subprocess.DEVNULL)
    os.close(terminal)
    shown = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 120)
        if not ready:
            process.kill()
            pytest.fail(f"{command} printed nothing for 120 s")
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    out = process.stdout.read().decode() if process.stdout else ""
    return process.wait(timeout=60), out, shown.decode()


def piped(command: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    return done.returncode, done.stdout, done.stderr


def test_a_backtest_on_a_terminal_shows_its_progress_and_piped_shows_none() -> None:
    command = _command("backtest", "--recording", str(RECORDING))
    code, out, shown = on_terminal(command)
    assert code == 0, shown
    assert BAR.search(shown), shown
    last = shown.rstrip().split("\r")[-1]
    assert "/s" in last and " in " in last  # the rate, and how long it took
    code, piped_out, err = piped(command)
    assert code == 0 and err == ""
    assert piped_out == out


def test_a_record_on_a_terminal_shows_its_progress_and_piped_shows_none(
    showcase_prometheus: PrometheusServer, tmp_path: Path
) -> None:
    start = SHOWCASE_TIMES["healthy"]
    span = ["--start", _at(start), "--end", _at(start + timedelta(hours=2)), "--step", "5m"]
    manifest = _manifest(tmp_path)
    url = showcase_prometheus.url

    def record(output: Path) -> list[str]:
        return _command("record", "-f", manifest, "--prometheus", url, *span, "-o", str(output))

    code, out, shown = on_terminal(record(tmp_path / "a.json"))
    assert code == 0, shown
    assert BAR.search(shown) and "25/25 evaluations" in shown, shown
    assert "recorded 25 evaluations" in out
    code, out, err = piped(record(tmp_path / "b.json"))
    assert code == 0 and err == "", err
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
