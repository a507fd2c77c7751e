"""Review reports: what a backtest and a status put on the page, and that the page needs nothing else."""

from __future__ import annotations

import asyncio
import functools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evergreen import backtest, review
from evergreen.api.decisions import Action
from evergreen.api.resource import parse_spec
from evergreen.api.spec import ModelMonitorSpec
from evergreen.api.status import CheckState, ModelMonitorStatus
from evergreen.cli import bundled_recording, main
from evergreen.errors import ReportError
from evergreen.policy.engine import PolicyState, advance
from evergreen.review.charts import gaps
from evergreen.review.history import FEATURE_DRIFT, MonitorHistory
from evergreen.signals.recording import RecordedSource

pytest.importorskip("matplotlib")

RECORDING = Path(__file__).parents[2] / "operator" / "evergreen" / "data" / "showcase.recording.json.gz"
FIGURES = ("decision-timeline", "drift-heatmap", "kpi-lines", "data-quality")


@functools.cache
def showcase() -> tuple[ModelMonitorSpec, tuple[backtest.Step, ...]]:
    recording = bundled_recording()
    spec = parse_spec(recording.monitor["spec"])
    steps = asyncio.run(backtest.replay(spec, RecordedSource(recording), recording.times, namespace="ml"))
    return spec, tuple(steps)


@functools.cache
def replayed() -> MonitorHistory:
    spec, steps = showcase()
    return review.from_backtest(steps, spec, name="fraud-detector", namespace="ml", source="the recording")


def series(history: MonitorHistory, feature: str, segment: str) -> tuple[float | None, ...]:
    return next(
        s.scores
        for s in history.drift
        if (s.signal, s.feature, s.segment) == (FEATURE_DRIFT, feature, segment)
    )


def test_the_timeline_holds_each_decision_the_replay_changed_to() -> None:
    _, steps = showcase()
    history = replayed()
    changes = backtest.changes(steps)
    assert [(p.action, p.reason) for p in history.periods] == [
        (s.decision.action.value, s.decision.reason) for s in changes if s.decision
    ]
    # Each period ends where the next begins; the last is still in force.
    assert [p.end for p in history.periods[:-1]] == [p.start for p in history.periods[1:]]
    assert history.periods[-1].end is None
    assert history.periods[-1].action == Action.ESCALATE.value


def test_drift_is_every_series_at_every_evaluation_with_the_specs_thresholds() -> None:
    spec, steps = showcase()
    history = replayed()
    assert spec.drift is not None
    assert history.thresholds[FEATURE_DRIFT].critical == spec.drift.critical
    assert history.thresholds[FEATURE_DRIFT].warning == spec.drift.warning
    assert all(len(s.scores) == len(steps) for s in history.drift)
    broken = series(history, "session_length", "segment=firefox-beta")
    last = steps[-1].evaluation.drift
    assert last is not None
    expected = {(r.feature, r.segment): r.score for r in last.series()}
    assert broken[-1] == expected[("session_length", "segment=firefox-beta")] >= spec.drift.critical
    # The broken segment was healthy on the first morning.
    first = broken[0]
    assert first is not None
    assert first < spec.drift.warning


def test_kpis_carry_value_bounds_and_state_per_evaluation() -> None:
    _, steps = showcase()
    precision = next(k for k in replayed().kpis if k.name == "precision")
    outcomes = [next(o for o in s.evaluation.kpis if o.name == "precision") for s in steps]
    assert precision.values == tuple(o.value for o in outcomes)
    assert precision.minimum == tuple(o.min for o in outcomes)
    assert precision.states[0] is CheckState.OK
    assert precision.states[-1] is CheckState.BREACHED
    assert [c.name for c in replayed().data_quality] == ["null-rate"]


def test_the_summary_is_the_backtests() -> None:
    _, steps = showcase()
    rows = dict(replayed().summary)
    summary = backtest.summarize(steps)
    assert rows["Evaluations"] == f"{summary.evaluations} ({summary.unavailable} without Prometheus)"
    assert rows["Escalations"] == "1"
    assert rows["Data-quality holds"] == str(summary.holds)


def test_the_page_is_self_contained() -> None:
    page = review.render(replayed(), generated=datetime(2026, 12, 1, tzinfo=UTC))
    for figure in FIGURES:
        match = re.search(rf'<figure id="{figure}"><svg .*?</svg>', page, re.DOTALL)
        assert match, figure
    for table in ("summary", "decisions", "kpis", "data-quality-checks"):
        assert f'<table id="{table}">' in page
    # Nothing to fetch: no scripts, stylesheets, fonts or images by reference.
    assert "<script" not in page
    assert "<link" not in page
    assert "@import" not in page
    assert set(re.findall(r"url\((.)", page)) <= {"#"}  # clip paths within the page
    references = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert all(ref.startswith(("data:", "#")) for ref in references), references
    assert "HoldUnresolved" in page and "celsius_to_fahrenheit" in page


def test_text_from_the_cluster_is_escaped() -> None:
    history = replayed()
    period = history.periods[0]
    hostile = type(period)(
        period.start, period.end, period.action, period.reason, "<script>alert(1)</script>"
    )
    page = review.render(
        MonitorHistory(**{**history.__dict__, "periods": (hostile, *history.periods[1:])}),
        generated=datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def operator_status(until: int) -> tuple[ModelMonitorSpec, ModelMonitorStatus]:
    """The status the operator writes after the first ``until`` evaluations of the scenario."""
    spec, steps = showcase()
    state = PolicyState()
    for step in steps[:until]:
        state = advance(spec, step.evaluation, state)
    last = steps[until - 1].evaluation
    return spec, ModelMonitorStatus(
        observed_generation=1,
        decision=state.decision,
        history=list(state.history),
        assessments=list(state.assessments),
        last_evaluation=last.summary(),
    )


def test_a_status_report_draws_what_status_remembers() -> None:
    spec, status = operator_status(len(showcase()[1]))
    history = review.from_status(status, spec, name="fraud-detector", namespace="ml")
    assert [(p.action, p.reason, p.end) for p in history.periods] == [
        (r.action.value, r.reason, r.until) for r in status.history
    ]
    # A new reason for the same action starts where the previous decision ended.
    for earlier, later in zip(history.periods, history.periods[1:], strict=False):
        assert earlier.end is not None and later.start >= earlier.end
    assert status.last_evaluation is not None
    last = history.times.index(status.last_evaluation.time)
    broken = series(history, "session_length", "segment=firefox-beta")
    top = {(r.feature, r.segment): r.score for r in status.last_evaluation.drift.top}  # type: ignore[union-attr]
    assert broken[last] == top[("session_length", "segment=firefox-beta")]
    # Where status recorded nothing, the cell is unknown, never zero.
    decided_only = [i for i, t in enumerate(history.times) if t not in {a.time for a in status.assessments}]
    assert decided_only
    assert all(broken[i] is None for i in decided_only if i != last)
    precision = next(k for k in history.kpis if k.name == "precision")
    assert precision.states[last] is CheckState.BREACHED
    assert precision.values[last] is not None
    assert any("Status keeps the last" in note for note in history.notes)
    page = review.render(history, generated=datetime(2026, 12, 1, tzinfo=UTC))
    assert all(f'<figure id="{figure}">' in page for figure in FIGURES)


def test_a_monitor_never_evaluated_has_nothing_to_report() -> None:
    with pytest.raises(ReportError, match="no history in status yet"):
        review.from_status(ModelMonitorStatus(), None, name="new", namespace="ml")


def test_long_gaps_between_evaluations_are_found() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = [start + timedelta(minutes=5 * i) for i in range(4)]
    times += [times[-1] + timedelta(days=1) + timedelta(minutes=5 * i) for i in range(4)]
    assert gaps(times) == [4]
    assert gaps(times[:4]) == []


def test_backtest_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "reports" / "showcase.html"
    assert main(["backtest", "--recording", str(RECORDING), "--report", str(target)]) == 0
    assert f"report -> {target}" in capsys.readouterr().out
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "Backtest of ModelMonitor" in page


def test_one_bad_evaluation_in_a_long_history_survives_binning() -> None:
    import numpy as np

    from evergreen.review.charts import MAX_COLUMNS, _worst_per_column

    values = np.zeros((2, 8640))
    values[0, 4321] = 0.9
    values[1, :] = np.nan
    columns, extent = _worst_per_column(values)
    assert columns.shape == (2, MAX_COLUMNS)
    assert extent == (-0.5, 8639.5)
    assert np.nanmax(columns[0]) == 0.9
    assert np.isnan(columns[1]).all()  # never compared stays unknown, not zero
