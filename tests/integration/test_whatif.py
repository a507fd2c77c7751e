"""`evergreen backtest --compare` over built-in scenarios, through a real Prometheus.

The command serves each scenario from a throwaway Prometheus (``--scenario``), replays the
example scenario monitor (``examples/scenario-monitor.yaml``: the decision suite's monitor with
retraining guardrails and a cost) and prices the same history under several policies. The
numbers checked are the ones a scenario makes certain: a pipeline break is held by the monitor
and retrained on by a naive drift alarm; a gradual drift the monitor retrains for, after which
the assumed restoration shortens the time a KPI spends outside its bounds.
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


def test_a_gradual_drift_retrained_for_spends_less_time_outside_its_bounds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = tmp_path / "whatif.html"
    document = compared(
        capsys,
        "gradual_drift_kpi_decline",
        "2026-01-08T16:00:00Z",
        "--run-duration",
        "1h",
        "--report",
        str(report),
    )
    rows = by_policy(document)
    recorded = document["recorded"]
    assert recorded["kpiOutsideHours"] > 0 and recorded["incidents"] == 0
    monitor = rows["monitor"]
    assert monitor["retrainsStarted"] >= 1 and monitor["incidentsRetrainedOn"] == 0
    # The monitor scopes its run to the segments whose KPIs moved.
    assert monitor["runs"][0]["trigger"] == "DriftHurtsKPIs"
    assert monitor["scoped"] == 1 and monitor["runs"][0]["scope"]["segments"]
    assert monitor["kpiSeriesOutsideHours"] < rows["every=7d"]["kpiSeriesOutsideHours"]
    assert document["assumptions"]["timeToEffectHours"] == 1.0
    page = report.read_text()
    assert '<table id="whatif">' in page and "naive-psi=0.2" in page
    assert "history cannot say what a retrain would have fixed" in page
