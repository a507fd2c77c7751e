"""The decision engine on constructed evaluations: each rule, and the near-misses that must not fire."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from scipy import stats

from evergreen.analysis import HistogramSet, align, drift_scores
from evergreen.api.decisions import BreakKind
from evergreen.api.resource import parse_spec
from evergreen.api.spec import ModelMonitorSpec
from evergreen.api.status import CheckOutcome, CheckState
from evergreen.observation.evaluate import DriftResult, Evaluation
from evergreen.policy.assess import assess
from evergreen.policy.engine import PolicyState, advance

T0 = datetime(2026, 1, 12, tzinfo=UTC)
STEP = timedelta(minutes=5)
BOUNDS = tuple(float(b) for b in range(-10, 125, 5))
SEGMENTS = ("web", "ios", "android")


@dataclass(frozen=True)
class Dist:
    """A normal distribution of a feature's values, or a constant (std 0)."""

    mean: float
    std: float

    def counts(self, n: float) -> list[float]:
        """Cumulative bucket counts of n values at BOUNDS + Inf."""
        if self.std == 0:
            cumulative = [n if self.mean <= b else 0.0 for b in BOUNDS]
        else:
            cumulative = (n * stats.norm(self.mean, self.std).cdf(BOUNDS)).tolist()
        return [*cumulative, n]


HEALTHY = Dist(40, 12)


def spec(**changes: Any) -> ModelMonitorSpec:
    raw: dict[str, Any] = {
        "model": "m",
        "drift": {"histogram": "h", "segmentBy": ["segment"], "minSamples": 500},
        "kpis": [{"name": "precision", "query": "q", "min": 0.9}],
        "dataQuality": [{"name": "null-rate", "query": "q", "max": 0.05}],
    }
    raw.update(changes)
    return parse_spec(raw)


SPEC = spec()


def histograms(window: Mapping[tuple[str, str], Dist], n: float) -> HistogramSet:
    samples = []
    for (feature, segment), dist in window.items():
        for bound, value in zip([*BOUNDS, float("inf")], dist.counts(n), strict=True):
            le = "+Inf" if bound == float("inf") else repr(bound)
            samples.append(({"feature": feature, "segment": segment, "le": le}, value))
    return HistogramSet.from_samples(
        samples, feature_label="feature", segment_labels=["segment"]
    ).with_totals()


def world(
    features: Mapping[str, Dist] | None = None,
    overrides: Mapping[tuple[str, str], Dist] | None = None,
    feature_names: tuple[str, ...] = ("age", "amount", "temperature", "distance"),
) -> dict[tuple[str, str], Dist]:
    """Every feature in every segment, healthy unless said otherwise."""
    features = features or {}
    result = {(f, s): features.get(f, HEALTHY) for f in feature_names for s in SEGMENTS}
    result.update(overrides or {})
    return result


def evaluation(
    at: datetime,
    current: Mapping[tuple[str, str], Dist],
    previous: Mapping[tuple[str, str], Dist] | None = None,
    *,
    n: float = 20_000,
    precision: float = 0.95,
    null_rate: float = 0.01,
    spec_: ModelMonitorSpec = SPEC,
) -> Evaluation:
    assert spec_.drift is not None
    baseline = histograms(world(), n * 24)
    now = histograms(current, n)
    aligned = align(baseline, now)
    scores = drift_scores(spec_.drift.method, aligned)
    step_scores = drift_scores(spec_.drift.method, align(histograms(previous or current, n), now))
    by_key = dict(zip(step_scores.keys, step_scores.score.tolist(), strict=True))
    step = np.array([by_key.get(key, np.nan) for key in scores.keys])
    kpi = CheckOutcome(
        name="precision",
        state=CheckState.OK if precision >= 0.9 else CheckState.BREACHED,
        value=precision,
        min=0.9,
    )
    quality = CheckOutcome(
        name="null-rate",
        state=CheckState.OK if null_rate <= 0.05 else CheckState.BREACHED,
        value=null_rate,
        labels={"feature": "distance"},
        max=0.05,
        message=f"{null_rate} is outside max 0.05" if null_rate > 0.05 else None,
    )
    return Evaluation(
        time=at,
        duration_seconds=0.0,
        queries=5,
        drift=DriftResult("spec.drift", spec_.drift, scores, aligned, step),
        data_quality=(quality,),
        kpis=(kpi,),
    )


def run(evaluations: list[Evaluation], spec_: ModelMonitorSpec = SPEC) -> list[PolicyState]:
    state = PolicyState()
    states = []
    for item in evaluations:
        state = advance(spec_, item, state)
        states.append(state)
    return states


def decisions(states: list[PolicyState]) -> list[tuple[str, str]]:
    result = []
    for state in states:
        assert state.decision is not None
        result.append((state.decision.action.value, state.decision.reason))
    return result


def times(count: int) -> list[datetime]:
    return [T0 + i * STEP for i in range(count)]


def test_healthy_traffic_is_no_action() -> None:
    states = run([evaluation(at, world()) for at in times(3)])
    assert decisions(states)[-1] == ("NoAction", "Healthy")
    assert states[-1].assessment is not None and states[-1].assessment.drift == []


def gradual(step_index: int) -> dict[tuple[str, str], Dist]:
    """amount drifts slowly: +1.5 per evaluation, every segment."""
    return world({"amount": Dist(40 + 15 + 1.5 * step_index, 12)})


def test_gradual_drift_that_hurts_kpis_is_retrained_on_what_drifted() -> None:
    evals = [evaluation(at, gradual(i), gradual(i - 1), precision=0.85) for i, at in enumerate(times(3))]
    states = run(evals)
    assert decisions(states) == [
        ("Watch", "DriftNotPersistent"),
        ("Retrain", "DriftHurtsKPIs"),
        ("Retrain", "DriftHurtsKPIs"),
    ]
    decision = states[-1].decision
    assert decision is not None and decision.scope is not None
    assert decision.scope.features == ["amount"] and decision.scope.segments == []
    assert any(e.signal == "kpi" for e in decision.evidence)
    assert decision.since == T0 + STEP


def test_gradual_drift_with_healthy_kpis_is_watched() -> None:
    states = run([evaluation(at, gradual(i), gradual(i - 1)) for i, at in enumerate(times(3))])
    assert decisions(states)[-1] == ("Watch", "DriftWithoutImpact")


def test_drift_with_kpis_without_data_is_watched_as_unknown_impact() -> None:
    evals = [evaluation(at, gradual(i), gradual(i - 1)) for i, at in enumerate(times(3))]
    evals = [
        Evaluation(
            time=e.time,
            duration_seconds=0,
            queries=5,
            drift=e.drift,
            data_quality=e.data_quality,
            kpis=(CheckOutcome(name="precision", state=CheckState.NO_DATA, min=0.9),),
        )
        for e in evals
    ]
    assert decisions(run(evals))[-1] == ("Watch", "DriftImpactUnknown")


def celsius_to_fahrenheit() -> dict[tuple[str, str], Dist]:
    return world({"temperature": Dist(40 * 1.8 + 32, 12 * 1.8)})


def test_unit_change_is_held_not_retrained_even_when_kpis_fall() -> None:
    evals = [
        evaluation(times(1)[0], world()),
        evaluation(T0 + STEP, celsius_to_fahrenheit(), world(), precision=0.8),
        evaluation(T0 + 2 * STEP, celsius_to_fahrenheit(), world(), precision=0.8),
    ]
    states = run(evals)
    assert decisions(states) == [
        ("NoAction", "Healthy"),
        ("Watch", "PossiblePipelineBreak"),
        ("HoldForDataQuality", "UnitChange"),
    ]
    decision = states[-1].decision
    assert decision is not None
    assert "celsius_to_fahrenheit" in decision.message
    assert {e.feature for e in decision.evidence} == {"temperature"}


def test_a_break_stays_a_break_after_the_step_leaves_both_windows() -> None:
    broken = celsius_to_fahrenheit()
    evals = [evaluation(T0, broken, world())] + [
        evaluation(at, broken, broken)
        for at in times(6)[1:]  # no step any more
    ]
    assert decisions(run(evals))[-1] == ("HoldForDataQuality", "UnitChange")


def test_gradual_warming_is_not_a_unit_change() -> None:
    """+2 degrees per evaluation: drift, maybe, but never a pipeline break."""

    def warm(i: int) -> dict[tuple[str, str], Dist]:
        return world({"temperature": Dist(40 + 12 + 2 * i, 12.5)})

    states = run([evaluation(at, warm(i), warm(i - 1)) for i, at in enumerate(times(4))])
    assessment = states[-1].assessment
    assert assessment is not None
    assert assessment.breaks == []
    assert {f.feature for f in assessment.drift} == {"temperature"}
    assert decisions(states)[-1] == ("Watch", "DriftWithoutImpact")


def test_break_confined_to_one_segment_is_a_segment_break() -> None:
    broken = world(overrides={("amount", "ios"): Dist(0, 0)})
    evals = [evaluation(T0, broken, world()), evaluation(T0 + STEP, broken, world())]
    states = run(evals)
    assert decisions(states)[-1] == ("HoldForDataQuality", "SegmentBreak")
    assessment = states[-1].assessment
    assert assessment is not None
    assert {(f.feature, f.segment, f.kind) for f in assessment.breaks} == {
        ("amount", "segment=ios", BreakKind.SEGMENT_BREAK),
        ("amount", "*", BreakKind.SEGMENT_BREAK),  # the population moved only through ios
    }
    decision = states[-1].decision
    assert decision is not None and decision.scope is not None
    assert decision.scope.features == ["amount"]
    assert "only segment=ios of amount changed" in decision.message


def test_many_features_jumping_together_is_an_upstream_change() -> None:
    jumped = world({"age": Dist(55, 12), "amount": Dist(55, 12), "distance": Dist(55, 12)})
    states = run([evaluation(T0, jumped, world()), evaluation(T0 + STEP, jumped, world())])
    assert decisions(states)[-1] == ("HoldForDataQuality", "UpstreamChange")


def test_one_sudden_shift_without_a_signature_is_watched() -> None:
    spiked = world({"amount": Dist(55, 12)})
    states = run([evaluation(T0, spiked, world())])
    assert decisions(states) == [("Watch", "SuddenShift")]


def test_failed_data_quality_check_holds() -> None:
    states = run([evaluation(at, world(), null_rate=0.3) for at in times(2)])
    assert decisions(states) == [
        ("Watch", "PossiblePipelineBreak"),
        ("HoldForDataQuality", "DataQualityCheckFailed"),
    ]
    decision = states[-1].decision
    assert decision is not None and decision.evidence[0].feature == "distance"


def test_kpi_drop_with_stable_inputs_is_a_concept_change() -> None:
    states = run([evaluation(at, world(), precision=0.8) for at in times(3)])
    assert decisions(states) == [
        ("Watch", "KPIBreachNotPersistent"),
        ("Retrain", "ConceptDrift"),
        ("Retrain", "ConceptDrift"),
    ]


def test_persistence_two_of_three() -> None:
    healthy, spiked = world(), world({"amount": Dist(55, 12)})
    sequence = [
        evaluation(T0, spiked, healthy, precision=0.8),
        evaluation(T0 + STEP, healthy, spiked),
        evaluation(T0 + 2 * STEP, healthy, healthy),
    ]
    assert all(action != "Retrain" for action, _ in decisions(run(sequence)))


def test_hysteresis_keeps_a_hovering_series_flagged() -> None:
    assert SPEC.drift is not None
    shifted = world({"amount": Dist(46.5, 12)})  # PSI ~0.29, critical 0.25
    first = assess(SPEC, evaluation(T0, shifted, shifted), None)
    assert [f.feature for f in first.drift] == ["amount"] * 4
    score = first.drift[0].score
    # Slightly less drift, now just under the critical threshold: stays flagged thanks to
    # the previous flag, but would not be flagged from scratch.
    lower = world({"amount": Dist(45.7, 12)})  # PSI ~0.22 > 0.8 x 0.25
    after = assess(SPEC, evaluation(T0 + STEP, lower, lower), first)
    fresh = assess(SPEC, evaluation(T0 + STEP, lower, lower), None)
    lower_score = after.drift[0].score if after.drift else None
    assert lower_score is not None and lower_score < SPEC.drift.critical < score
    assert fresh.drift == []


def test_small_samples_are_judged_with_wider_tolerance_not_ignored() -> None:
    shifted = world({"amount": Dist(46.5, 12)})
    big = assess(SPEC, evaluation(T0, shifted, shifted, n=20_000), None)
    small = assess(SPEC, evaluation(T0, shifted, shifted, n=100), None)
    huge = world({"amount": Dist(80, 12)})
    small_but_large_effect = assess(SPEC, evaluation(T0, huge, huge, n=100), None)
    assert big.drift and not small.drift
    assert small_but_large_effect.drift or small_but_large_effect.sudden or small_but_large_effect.breaks
    assert all(f.threshold > SPEC.drift.critical for f in small_but_large_effect.drift)  # type: ignore[union-attr]


def test_false_discoveries_are_controlled_across_series() -> None:
    """Pure sampling noise over many series flags nothing."""
    rng = np.random.default_rng(7)
    noisy = {key: Dist(40 + rng.normal(0, 0.3), 12) for key in world()}
    assessment = assess(SPEC, evaluation(T0, noisy, noisy, n=2_000), None)
    assert assessment.drift == [] and assessment.warnings == []


def test_an_unresolved_hold_escalates() -> None:
    escalating = spec(policy={"escalateHoldAfter": "15m"})
    broken = celsius_to_fahrenheit()
    evals = [evaluation(at, broken, world(), spec_=escalating) for at in times(6)]
    result = decisions(run(evals, escalating))
    assert result[1] == ("HoldForDataQuality", "UnitChange")
    assert result[-1] == ("Escalate", "HoldUnresolved")


def test_observe_mode_decides_but_does_not_enforce() -> None:
    observing = spec(mode="Observe")
    state = run([evaluation(T0, world(), precision=0.8, spec_=observing)], observing)[-1]
    assert state.decision is not None and not state.decision.enforced
    enforcing = run([evaluation(T0, world(), precision=0.8)])[-1]
    assert enforcing.decision is not None and enforcing.decision.enforced


def test_history_records_changes_only() -> None:
    evals = [evaluation(at, world(), precision=0.8) for at in times(4)]
    history = run(evals)[-1].history
    assert [(h.action.value, h.reason) for h in history] == [
        ("Watch", "KPIBreachNotPersistent"),
        ("Retrain", "ConceptDrift"),
    ]
    assert history[0].until == T0 + STEP and history[1].until is None


@pytest.mark.parametrize("hour", [6, 12, 18])
def test_a_seasonal_peak_is_not_a_step(hour: int) -> None:
    """A daily cycle moves the mean a little between adjacent windows: never a step."""

    def seasonal(h: float) -> dict[tuple[str, str], Dist]:
        return world({"amount": Dist(40 + 8 * np.sin(2 * np.pi * h / 24), 12)})

    at = T0 + timedelta(hours=hour)
    assessment = assess(SPEC, evaluation(at, seasonal(hour), seasonal(hour - 1)), None)
    assert assessment.sudden == [] and assessment.breaks == []


def test_assessments_from_before_a_gap_do_not_count_towards_persistence() -> None:
    later = T0 + timedelta(hours=6)
    states = run(
        [
            evaluation(T0, world(), precision=0.8),
            evaluation(later, world(), precision=0.8),  # the operator was down in between
        ]
    )
    assert decisions(states) == [("Watch", "KPIBreachNotPersistent"), ("Watch", "KPIBreachNotPersistent")]


def test_a_hold_continues_across_a_gap_while_the_same_break_is_seen() -> None:
    broken = celsius_to_fahrenheit()
    later = T0 + timedelta(hours=6)
    states = run(
        [
            evaluation(T0, broken, world()),
            evaluation(T0 + STEP, broken, broken),
            evaluation(later, broken, broken),  # gap: no evidence that it was fixed
        ]
    )
    assert decisions(states)[-1] == ("HoldForDataQuality", "UnitChange")
    decision = states[-1].decision
    assert decision is not None and decision.since == T0 + STEP


def test_a_different_break_after_a_gap_is_a_new_incident() -> None:
    later = T0 + timedelta(hours=6)
    other = world(overrides={("amount", "ios"): Dist(0, 0)})
    states = run(
        [
            evaluation(T0, celsius_to_fahrenheit(), world()),
            evaluation(T0 + STEP, celsius_to_fahrenheit(), celsius_to_fahrenheit()),
            evaluation(later, other, world()),
        ]
    )
    assert decisions(states)[-1] == ("Watch", "PossiblePipelineBreak")


def without_drift(item: Evaluation) -> Evaluation:
    """The same evaluation with the feature histograms missing (an exporter stopped)."""
    return Evaluation(
        time=item.time,
        duration_seconds=0,
        queries=5,
        drift=None,
        data_quality=item.data_quality,
        kpis=item.kpis,
    )


def test_missing_drift_data_is_no_evidence_of_stable_inputs() -> None:
    states = run([without_drift(evaluation(at, world(), precision=0.8)) for at in times(3)])
    assert all(action != "Retrain" for action, _ in decisions(states))


def test_a_hold_is_not_released_by_missing_data() -> None:
    broken = celsius_to_fahrenheit()
    evals = [evaluation(T0, broken, world()), evaluation(T0 + STEP, broken, broken)]
    evals += [without_drift(evaluation(at, broken, broken)) for at in times(6)[2:]]
    assert decisions(run(evals))[-1] == ("HoldForDataQuality", "UnitChange")


def test_an_extra_evaluation_right_after_another_does_not_count_twice() -> None:
    spiked = world({"amount": Dist(55, 12)})
    # Drift seen at 0:00, and again 20 s later because someone edited the spec: still one.
    states = run(
        [
            evaluation(T0, spiked, spiked, precision=0.8),
            evaluation(T0 + timedelta(seconds=20), spiked, spiked, precision=0.8),
        ]
    )
    assert len(states[-1].assessments) == 1
    assert decisions(states)[-1][0] != "Retrain"


def test_a_thin_segment_that_did_not_move_neither_confirms_nor_vetoes_a_segment_break() -> None:
    from evergreen.analysis.series import SeriesKey
    from evergreen.api.decisions import Finding
    from evergreen.policy.assess import _segment_breaks, _Series

    def row(segment: str, score: float, samples: float) -> _Series:
        key = SeriesKey("amount", (("segment", segment),) if segment else ())
        return _Series(key, score, samples, 5.0 if score > 1 else 0.0, 0.25, 0.1, score > 1)

    population, ios = row("", 1.3, 6000), row("ios", 13.0, 1500)
    android, thin = row("android", 0.0, 900), row("firefox-beta", 0.0, 6)
    breaks: dict[SeriesKey, Finding] = {}
    rows = [population, ios, android, thin]
    _segment_breaks([population, ios], [], rows, {ios.key}, breaks, 50)
    assert {key.segment for key in breaks} == {(), (("segment", "ios"),)}
    assert all(f.kind is BreakKind.SEGMENT_BREAK for f in breaks.values())
    # The thin segment alone proves nothing: no well-sampled segment stayed put.
    breaks = {}
    _segment_breaks([population, ios], [], [population, ios, thin], {ios.key}, breaks, 50)
    assert breaks == {}
    # Another segment drifting too: not confined.
    breaks = {}
    _segment_breaks([population, ios], [android], rows, {ios.key}, breaks, 50)
    assert breaks == {}
