"""`evergreen backtest --compare` over built-in scenarios, through a real Prometheus.

The command serves each scenario from a throwaway Prometheus (``--scenario``), replays the
example scenario monitor (``examples/scenario-monitor.yaml``: the decision suite's monitor with
retraining guardrails and a cost) and prices the same history under several policies. The
numbers checked are the ones a scenario makes certain: a pipeline break is held by the monitor
and retrained on by a naive drift alarm; the worked example in docs/whatif.md (a gradual drift
the monitor retrains for) is exactly what the command prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evergreen.api.manifest import load_manifest
from evergreen.cli import main
from evergreen.simulation.suite import suite_spec

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

MONITOR = Path(__file__).parents[2] / "examples" / "scenario-monitor.yaml"
DOCS = Path(__file__).parents[2] / "docs" / "whatif.md"
POLICIES = "monitor,every=12h,every=7d,naive-psi=0.2"


def compared(capsys: pytest.CaptureFixture[str], scenario: str, end: str, *extra: str) -> dict[str, Any]:
    argv = [
        "backtest",
        "-f",
        str(MONITOR),
        "--scenario",
        scenario,
        "--start",
        "2026-01-07T22:00:00Z",
        "--end",
        end,
        "--compare",
        POLICIES,
        "--output",
        "json",
        *extra,
    ]
    assert main(argv) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def by_policy(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["policy"]: row for row in document["policies"]}


def test_the_example_monitor_is_the_suite_monitor_with_retraining() -> None:
    spec = load_manifest(MONITOR).spec()
    assert spec.retraining is not None and spec.retraining.cost is not None
    assert spec.model_copy(update={"retraining": None}) == suite_spec()


def test_a_pipeline_break_is_held_by_the_monitor_and_retrained_on_by_a_naive_alarm(
    capsys: pytest.CaptureFixture[str],
) -> None:
    document = compared(capsys, "unit_change", "2026-01-08T06:00:00Z")
    rows = by_policy(document)
    assert document["recorded"]["incidents"] == 1
    monitor = rows["monitor"]
    assert (monitor["retrainsStarted"], monitor["incidentsHeld"], monitor["incidentsRetrainedOn"]) == (
        0,
        1,
        0,
    )
    naive = rows["naive-psi=0.2"]
    assert naive["retrainsStarted"] >= 1 and naive["incidentsRetrainedOn"] == 1
    assert all(run["onIncident"] for run in naive["runs"])
    assert naive["cost"] == 40 * naive["retrainsStarted"]
    # A run on broken data restores nothing: the KPI time is the recorded one for every policy.
    recorded = document["recorded"]["kpiOutsideHours"]
    assert {row["kpiOutsideHours"] for row in rows.values()} == {recorded}
    assert rows["every=7d"]["retrainsStarted"] == 0
    assert document["assumptions"]["runDurationSource"] == "spec.retraining.timeout"


def test_the_worked_example_in_the_docs_is_what_the_command_prints(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """docs/whatif.md shows the command and its table: both must stay true."""
    doc = DOCS.read_text()
    command = doc[doc.index("evergreen backtest -f examples/scenario-monitor.yaml --scenario") :]
    argv = command[: command.index("```")].replace("\\\n", " ").split()[1:]
    argv[argv.index("examples/scenario-monitor.yaml")] = str(MONITOR)
    report = tmp_path / "whatif.html"
    assert main([*argv, "--report", str(report)]) == 0
    printed = capsys.readouterr().out.splitlines()
    shown = doc[doc.index("what-if over 2026-01-07") :]
    shown_lines = shown[: shown.index("\n\nAssumption")].splitlines()
    assert printed[: len(shown_lines)] == shown_lines
    # The gradual drift the monitor retrains for, scoped to the segment whose KPI moved first.
    monitor = next(line for line in printed if line.startswith("monitor")).split()
    assert monitor[1:4] == ["1", "1", "0"]
    page = report.read_text()
    assert '<table id="whatif">' in page and "naive-psi=0.2" in page
    assert "history cannot say what a retrain would have fixed" in page
