"""One noise-control model for every signal, one identity per incident, attribution to segments."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime

import numpy as np

from evergreen.analysis import HistogramSet, align, drift_scores
from evergreen.api.decisions import Action
from evergreen.api.status import CheckOutcome, CheckSeries, CheckState
from evergreen.observation.evaluate import DriftResult, Evaluation
from evergreen.policy.assess import assess
from tests.unit.test_policy import (
    BOUNDS,
    SPEC,
    STEP,
    T0,
    Dist,
    decisions,
    evaluation,
    gradual,
    run,
    times,
    world,
)


def kpi(values: Mapping[str, float], minimum: float = 0.9) -> CheckOutcome:
    """A precision KPI whose query returns one series per segment."""
    series = [
        CheckSeries(labels={"segment": segment}, value=value, breached=value < minimum)
        for segment, value in sorted(values.items(), key=lambda item: item[1])
    ]
    breached = [s for s in series if s.breached]
    worst = series[0]
    return CheckOutcome(
        name="precision",
        state=CheckState.BREACHED if breached else CheckState.OK,
        value=worst.value,
        labels=worst.labels,
        min=minimum,
        breached_series=len(breached),
        message=f"{worst.value} is outside min {minimum}" if breached else None,
        series=series,
    )


def test_a_kpi_sitting_at_its_threshold_does_not_flap() -> None:
    # Precision alternates just below and just above its minimum (0.9).
    values = [0.899, 0.901] * 6
    states = run([evaluation(at, world(), precision=v) for at, v in zip(times(12), values, strict=True)])
    actions = [action for action, _ in decisions(states)]
    first = actions.index("Retrain")
    assert first <= 2
    assert set(actions[first:]) == {"Retrain"}, actions


def test_a_kpi_breach_ends_once_clearly_recovered() -> None:
    values = [0.85, 0.85, 0.85, 0.95, 0.95, 0.95]
    states = run([evaluation(at, world(), precision=v) for at, v in zip(times(6), values, strict=True)])
    assert decisions(states)[-1] == ("NoAction", "Healthy")


def test_a_kpi_breach_in_one_segment_scopes_the_first_retrain() -> None:
    values = {"web": 0.95, "ios": 0.7, "android": 0.95}
    evals = [dataclasses.replace(evaluation(at, world()), kpis=(kpi(values),)) for at in times(3)]
    states = run(evals)
    decision = states[-1].decision
    assert decision is not None
    assert (decision.action, decision.reason) == (Action.RETRAIN, "ConceptDrift")
    assert decision.scope is not None and decision.scope.segments == ["segment=ios"]
    kpi_evidence = [e for e in decision.evidence if e.signal == "kpi"]
    assert [(e.check, e.segment, e.value, e.threshold) for e in kpi_evidence] == [
        ("precision", "segment=ios", 0.7, 0.9)
    ]
    # No Retrain of everything came first.
    assert all(s.decision is None or s.decision.scope != _everything() for s in states)


def _everything() -> object:
    from evergreen.api.decisions import Scope

    return Scope()


def test_co_occurring_drift_in_the_breached_segment_joins_the_scope() -> None:
    moved = world(overrides={("amount", "ios"): Dist(47, 12)})
    values = {"web": 0.95, "ios": 0.7, "android": 0.95}
    evals = [dataclasses.replace(evaluation(at, moved, moved), kpis=(kpi(values),)) for at in times(3)]
    decision = run(evals)[-1].decision
    assert decision is not None
    # The inputs moved where the KPI breached: that drift is what hurts.
    assert (decision.action, decision.reason) == (Action.RETRAIN, "DriftHurtsKPIs")
    assert decision.scope is not None
    assert decision.scope.segments == ["segment=ios"]
    assert decision.scope.features == ["amount"]
    assert any(e.signal == "drift" and e.segment == "segment=ios" for e in decision.evidence)


def test_one_incident_keeps_its_reason_and_scope() -> None:
    # Drift that hurts KPIs, then the drift dips below its threshold while KPIs stay breached.
    evals = [evaluation(at, gradual(i), gradual(i - 1), precision=0.85) for i, at in enumerate(times(3))]
    evals += [evaluation(at, world(), world(), precision=0.85) for at in times(8)[3:]]
    states = run(evals)
    retrains = [s.decision for s in states if s.decision is not None and s.decision.action is Action.RETRAIN]
    assert retrains and {d.reason for d in retrains} == {"DriftHurtsKPIs"}
    assert all(d.scope is not None and d.scope.features == ["amount"] for d in retrains)


def test_a_segment_data_quality_breach_keeps_its_segment() -> None:
    null_rate = CheckOutcome(
        name="null-rate",
        state=CheckState.BREACHED,
        value=0.3,
        labels={"feature": "distance", "segment": "ios"},
        max=0.05,
        breached_series=1,
        message="0.3 is outside max 0.05 (1 of 4 series breached)",
        series=[
            CheckSeries(labels={"feature": "distance", "segment": "ios"}, value=0.3, breached=True),
            CheckSeries(labels={"feature": "distance", "segment": "web"}, value=0.01),
        ],
    )
    evals = [dataclasses.replace(evaluation(at, world()), data_quality=(null_rate,)) for at in times(2)]
    decision = run(evals)[-1].decision
    assert decision is not None
    assert (decision.action, decision.reason) == (Action.HOLD_FOR_DATA_QUALITY, "DataQualityCheckFailed")
    assert decision.scope is not None
    assert (decision.scope.features, decision.scope.segments) == (["distance"], ["segment=ios"])
    assert "null-rate [segment=ios]: 0.3" in decision.message
    assert [(e.feature, e.segment, e.value, e.threshold) for e in decision.evidence] == [
        ("distance", "segment=ios", 0.3, 0.05)
    ]


def test_a_data_quality_check_at_its_bound_does_not_flap() -> None:
    rates = [0.051, 0.0499] * 5
    states = run([evaluation(at, world(), null_rate=r) for at, r in zip(times(10), rates, strict=True)])
    actions = [action for action, _ in decisions(states)]
    first = actions.index("HoldForDataQuality")
    assert set(actions[first:]) == {"HoldForDataQuality"}, actions


# --- uniform drift beside an under-sampled segment ----------------------------------------


def _histograms(window: Mapping[tuple[str, str], Dist], sizes: Mapping[str, float]) -> HistogramSet:
    samples = []
    for (feature, segment), dist in window.items():
        counts = dist.counts(sizes[segment])
        for bound, value in zip([*BOUNDS, float("inf")], counts, strict=True):
            le = "+Inf" if bound == float("inf") else repr(bound)
            samples.append(({"feature": feature, "segment": segment, "le": le}, value))
    return HistogramSet.from_samples(
        samples, feature_label="feature", segment_labels=["segment"]
    ).with_totals()


def test_uniform_drift_beside_an_under_sampled_segment_is_not_a_segment_break() -> None:
    assert SPEC.drift is not None
    # android carries a handful of observations an hour: too few to show the same shift.
    sizes = {"web": 20_000.0, "ios": 20_000.0, "android": 12.0}
    baseline = _histograms(world(), {k: v * 24 for k, v in sizes.items()})
    shifted = world(
        overrides={("amount", s): Dist(60, 12) for s in ("web", "ios")}
        | {("amount", "android"): Dist(40, 12)}
    )
    current = _histograms(shifted, sizes)
    previous = _histograms(world(), sizes)

    def at(time: datetime) -> Evaluation:
        assert SPEC.drift is not None
        aligned = align(baseline, current)
        scores = drift_scores(SPEC.drift.method, aligned)
        steps = drift_scores(SPEC.drift.method, align(previous, current))
        by_key = dict(zip(steps.keys, steps.score.tolist(), strict=True))
        step = np.array([by_key.get(key, np.nan) for key in scores.keys])
        base = evaluation(T0, world())
        return dataclasses.replace(
            base, time=time, drift=DriftResult("spec.drift", SPEC.drift, scores, aligned, step)
        )

    first = assess(SPEC, at(T0), None)
    assert not any(f.kind is not None and f.kind.value == "SegmentBreak" for f in first.breaks)
    states = run([at(T0), at(T0 + STEP)])
    assert all(reason != "SegmentBreak" for _, reason in decisions(states))
