"""Conditions and Events from evaluations: honest states, stable transition times, one Event per change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from evergreen.analysis import AlignedHistograms, DriftScores, SeriesKey
from evergreen.analysis.drift import DriftMethod
from evergreen.api.resource import parse_spec
from evergreen.api.status import CheckOutcome, CheckState, ConditionStatus, ConditionType
from evergreen.conditions import evaluation_drafts, merge_conditions, spec_error_drafts, unavailable_drafts
from evergreen.observation.evaluate import DriftResult, Evaluation, ProblemKind, SignalProblem
from evergreen.transitions import EventType, transition_events

T0 = datetime(2026, 1, 12, tzinfo=UTC)
SPEC = parse_spec(
    {
        "model": "m",
        "drift": {"histogram": "h", "segmentBy": ["segment"], "minSamples": 100},
        "kpis": [{"name": "precision", "query": "q", "min": 0.9}],
    }
)


def drift(scores: list[float], samples: list[float]) -> DriftResult:
    keys = tuple(SeriesKey(f"f{i}", (("segment", "web"),)) for i in range(len(scores)))
    n = len(scores)
    assert SPEC.drift is not None
    return DriftResult(
        "spec.drift",
        SPEC.drift,
        DriftScores(
            keys=keys,
            method=DriftMethod.PSI,
            score=np.array(scores, dtype=float),
            p_value=np.full(n, 0.5),
            effective_samples=np.array(samples, dtype=float),
            baseline_total=np.array(samples, dtype=float) * 2,
            current_total=np.array(samples, dtype=float) * 2,
            bins=np.full(n, 10),
        ),
        AlignedHistograms(
            keys=keys,
            upper_bounds=np.array([1.0, np.inf]),
            baseline=np.ones((n, 2)),
            current=np.ones((n, 2)),
            baseline_total=np.full(n, 2.0),
            current_total=np.full(n, 2.0),
            known_bounds=np.ones((n, 2), dtype=bool),
        ),
        np.zeros(n),
    )


def evaluation(
    result: DriftResult | None, precision: float | None = 0.95, problems: tuple[SignalProblem, ...] = ()
) -> Evaluation:
    state = (
        CheckState.NO_DATA
        if precision is None
        else (CheckState.OK if precision >= 0.9 else CheckState.BREACHED)
    )
    kpi = CheckOutcome(name="precision", state=state, value=precision, min=0.9)
    return Evaluation(time=T0, duration_seconds=0.01, queries=3, drift=result, kpis=(kpi,), problems=problems)


def by_type(drafts: list) -> dict[str, tuple[str, str, str]]:  # type: ignore[type-arg]
    return {d.type: (d.status.value, d.reason, d.message) for d in drafts}


def test_critical_drift_with_enough_samples_sets_drifting() -> None:
    drafts = by_type(evaluation_drafts(SPEC, evaluation(drift([0.05, 0.4, 0.12], [500, 500, 500]))))
    status, reason, message = drafts[ConditionType.DRIFTING]
    assert (status, reason) == ("True", "DriftCritical")
    assert message.startswith("f1 [segment=web]: psi 0.4 >= critical 0.25")
    assert drafts[ConditionType.READY][:2] == ("True", "Evaluated")
    assert drafts[ConditionType.KPI_BREACHED][:2] == ("False", "WithinBounds")


def test_low_sample_series_are_reported_but_not_judged() -> None:
    result = drift([0.9, 0.05], [20, 800])
    drafts = by_type(evaluation_drafts(SPEC, evaluation(result)))
    assert drafts[ConditionType.DRIFTING][:2] == ("False", "WithinThresholds")
    rows = result.series()
    assert rows[0].low_samples and rows[0].score == 0.9


def test_warning_is_not_drifting_but_says_why() -> None:
    drafts = by_type(evaluation_drafts(SPEC, evaluation(drift([0.15], [500]))))
    assert drafts[ConditionType.DRIFTING][:2] == ("False", "DriftWarning")


def test_no_data_is_unknown_never_false() -> None:
    problems = (
        SignalProblem("spec.drift", ProblemKind.NO_DATA, "no series"),
        SignalProblem("spec.kpis[0].query", ProblemKind.NO_DATA, "precision: no data"),
    )
    drafts = by_type(evaluation_drafts(SPEC, evaluation(None, precision=None, problems=problems)))
    assert drafts[ConditionType.DRIFTING][:2] == ("Unknown", "NoData")
    assert drafts[ConditionType.KPI_BREACHED][:2] == ("Unknown", "NoData")
    assert drafts[ConditionType.METRICS_AVAILABLE][:2] == ("False", "NoData")
    assert drafts[ConditionType.READY][:2] == ("False", "NoData")


def test_rejected_query_names_the_field() -> None:
    problems = (SignalProblem("spec.kpis[0].query", ProblemKind.REJECTED, "parse error at char 5"),)
    drafts = by_type(evaluation_drafts(SPEC, evaluation(drift([0.01], [500]), problems=problems)))
    status, reason, message = drafts[ConditionType.READY]
    assert (status, reason) == ("False", "InvalidQuery")
    assert "spec.kpis[0].query" in message


def test_transition_time_moves_only_when_status_flips() -> None:
    first = merge_conditions(
        [], evaluation_drafts(SPEC, evaluation(drift([0.4], [500]))), now=T0, generation=1
    )
    later = T0 + timedelta(minutes=5)
    second = merge_conditions(
        first, evaluation_drafts(SPEC, evaluation(drift([0.5], [500]))), now=later, generation=1
    )
    drifting = {c.type: c for c in second}[ConditionType.DRIFTING]
    assert drifting.last_transition_time == T0
    assert "0.5" in drifting.message
    third = merge_conditions(
        second,
        evaluation_drafts(SPEC, evaluation(drift([0.01], [500]))),
        now=later + timedelta(minutes=5),
        generation=2,
    )
    drifting = {c.type: c for c in third}[ConditionType.DRIFTING]
    assert drifting.status is ConditionStatus.FALSE
    assert drifting.last_transition_time == later + timedelta(minutes=5)
    assert drifting.observed_generation == 2
    assert third[0].type == ConditionType.READY


def test_outage_keeps_signal_conditions() -> None:
    healthy = merge_conditions(
        [], evaluation_drafts(SPEC, evaluation(drift([0.4], [500]))), now=T0, generation=1
    )
    outage = Evaluation(
        time=T0,
        duration_seconds=0.1,
        queries=1,
        problems=(SignalProblem("spec.drift", ProblemKind.UNAVAILABLE, "cannot reach"),),
    )
    after = {c.type: c for c in merge_conditions(healthy, unavailable_drafts(outage), now=T0, generation=1)}
    assert after[ConditionType.METRICS_AVAILABLE].status is ConditionStatus.FALSE
    assert after[ConditionType.READY].reason == "PrometheusUnavailable"
    assert after[ConditionType.DRIFTING].status is ConditionStatus.TRUE


def test_events_fire_once_per_transition() -> None:
    drifting = merge_conditions(
        [], evaluation_drafts(SPEC, evaluation(drift([0.4], [500]))), now=T0, generation=1
    )
    events = transition_events([], drifting)
    assert [(e.type, e.reason) for e in events] == [
        (EventType.NORMAL, "MonitorReady"),
        (EventType.WARNING, "DriftDetected"),
    ]
    again = merge_conditions(
        drifting, evaluation_drafts(SPEC, evaluation(drift([0.6], [500]))), now=T0, generation=1
    )
    assert transition_events(drifting, again) == []
    resolved = merge_conditions(
        again, evaluation_drafts(SPEC, evaluation(drift([0.01], [500]), precision=0.5)), now=T0, generation=1
    )
    reasons = [e.reason for e in transition_events(again, resolved)]
    assert reasons == ["DriftResolved", "KPIBreached"]


def test_invalid_spec_event_repeats_only_when_the_message_changes() -> None:
    first = merge_conditions([], spec_error_drafts("InvalidSpec", "spec.interval: bad"), now=T0, generation=1)
    assert [e.reason for e in transition_events([], first)] == ["InvalidSpec"]
    same = merge_conditions(
        first, spec_error_drafts("InvalidSpec", "spec.interval: bad"), now=T0, generation=1
    )
    assert transition_events(first, same) == []
    other = merge_conditions(same, spec_error_drafts("InvalidSpec", "spec.mode: bad"), now=T0, generation=2)
    assert [e.reason for e in transition_events(same, other)] == ["InvalidSpec"]
