"""Missing data is never called healthy: the Unknown decision, warm-up, and what backs NoAction."""

from __future__ import annotations

import asyncio
from datetime import datetime

from evergreen.api.decisions import Action
from evergreen.api.status import CheckOutcome, CheckState
from evergreen.errors import MetricsUnavailable, QueryRejected
from evergreen.observation.evaluate import Evaluation, ProblemKind, SignalProblem, evaluate
from evergreen.policy.engine import PolicyState, advance
from evergreen.signals.samples import QueryResult, Sample
from evergreen.transitions import decision_events
from tests.unit.test_policy import (
    BOUNDS,
    HEALTHY,
    SPEC,
    STEP,
    T0,
    celsius_to_fahrenheit,
    evaluation,
    run,
    spec,
    times,
    world,
)


def blind(at: datetime, kind: ProblemKind = ProblemKind.NO_DATA) -> Evaluation:
    """An evaluation in which no query returned anything."""
    problems = (
        SignalProblem("spec.drift", kind, "no h_bucket series for the current window"),
        SignalProblem("spec.dataQuality[0].query", kind, "null-rate: the query returned no data"),
        SignalProblem("spec.kpis[0].query", kind, "precision: the query returned no data"),
    )
    return Evaluation(
        time=at,
        duration_seconds=0.0,
        queries=5,
        drift=None,
        data_quality=(CheckOutcome(name="null-rate", state=CheckState.NO_DATA, max=0.05),),
        kpis=(CheckOutcome(name="precision", state=CheckState.NO_DATA, min=0.9),),
        problems=problems,
    )


def test_no_data_anywhere_is_unknown_and_names_every_missing_signal() -> None:
    state = run([blind(at) for at in times(3)])[-1]
    decision = state.decision
    assert decision is not None
    assert (decision.action, decision.reason) == (Action.UNKNOWN, "NoData")
    rendered = [item.render() for item in decision.evidence]
    assert any("drift (spec.drift): empty answer" in text for text in rendered)
    assert any("kpi (spec.kpis[0].query): empty answer" in text for text in rendered)
    assert "nothing is decided on missing data" in decision.message


def test_the_unknown_reason_says_which_cause() -> None:
    for kind, reason in (
        (ProblemKind.REJECTED, "QueryRejected"),
        (ProblemKind.UNAVAILABLE, "PrometheusUnavailable"),
        (ProblemKind.BASELINE_NOT_READY, "BaselineNotReady"),
    ):
        decision = advance(SPEC, blind(T0, kind), PolicyState()).decision
        assert decision is not None
        assert (decision.action, decision.reason) == (Action.UNKNOWN, reason)


def test_unknown_after_healthy_is_a_warning_event() -> None:
    healthy = run([evaluation(at, world()) for at in times(2)])[-1]
    unknown = advance(SPEC, blind(T0 + 2 * STEP), healthy)
    events = decision_events(healthy.decision, unknown.decision)
    assert [(e.type.value, e.reason) for e in events] == [("Warning", "NoData")]


def test_healthy_rests_on_the_signals_it_judged() -> None:
    decision = run([evaluation(at, world()) for at in times(3)])[-1].decision
    assert decision is not None and decision.action is Action.NO_ACTION
    signals = {item.signal for item in decision.evidence}
    assert {"drift", "kpi", "dataQuality"} <= signals
    kpi = next(item for item in decision.evidence if item.signal == "kpi")
    assert (kpi.value, kpi.threshold, kpi.detail) == (0.95, 0.9, "precision")


def test_healthy_with_some_signals_missing_says_which() -> None:
    item = evaluation(T0, world())
    partial = Evaluation(
        time=T0,
        duration_seconds=0.0,
        queries=5,
        drift=item.drift,
        data_quality=item.data_quality,
        kpis=(CheckOutcome(name="precision", state=CheckState.NO_DATA, min=0.9),),
        problems=(SignalProblem("spec.kpis[0].query", ProblemKind.NO_DATA, "precision: no data"),),
    )
    decision = advance(SPEC, partial, PolicyState()).decision
    assert decision is not None and decision.action is Action.NO_ACTION
    assert "without data: kpi (spec.kpis[0].query)" in decision.message


def test_a_hold_in_force_outlives_an_unknown_evaluation() -> None:
    broken = celsius_to_fahrenheit()
    states = run([evaluation(T0, broken, world()), evaluation(T0 + STEP, broken, broken)])
    held = advance(SPEC, blind(T0 + 2 * STEP), states[-1])
    assert held.decision is not None and held.decision.action is Action.HOLD_FOR_DATA_QUALITY


# --- warm-up, through evaluate() with an in-memory source ---------------------------------


class Answers:
    """A metric source answering by window: the baseline query has an offset, others not."""

    def __init__(self, current: list[Sample], baseline: list[Sample], *, fail: Exception | None = None):
        self.current = current
        self.baseline = baseline
        self.fail = fail

    async def instant(self, query: str, at: datetime, *, field: str) -> QueryResult:
        if self.fail is not None:
            raise self.fail
        if "_bucket" not in query:
            return QueryResult(query, (Sample({}, 0.95),))
        return QueryResult(query, tuple(self.baseline if "offset" in query else self.current))


def buckets(n: float) -> list[Sample]:
    samples = []
    for feature in ("age", "amount"):
        for segment in ("web", "ios"):
            counts = HEALTHY.counts(n)
            for bound, value in zip([*BOUNDS, float("inf")], counts, strict=True):
                le = "+Inf" if bound == float("inf") else repr(bound)
                samples.append(Sample({"feature": feature, "segment": segment, "le": le}, value))
    return samples


WARM_SPEC = spec(kpis=[], dataQuality=[])


def evaluate_with(source: Answers) -> Evaluation:
    return asyncio.run(evaluate(WARM_SPEC, source, T0, namespace="ml"))


def test_an_empty_baseline_is_not_ready_not_missing_traffic() -> None:
    evaluated = evaluate_with(Answers(buckets(5000), []))
    assert [p.kind for p in evaluated.problems] == [ProblemKind.BASELINE_NOT_READY]
    decision = advance(WARM_SPEC, evaluated, PolicyState()).decision
    assert decision is not None
    assert (decision.action, decision.reason) == (Action.UNKNOWN, "BaselineNotReady")
    assert "baseline not ready" in decision.message


def test_a_baseline_below_min_samples_is_not_judged() -> None:
    # Minutes of baseline: 40 observations per series against minSamples 500.
    evaluated = evaluate_with(Answers(buckets(5000), buckets(40)))
    assert evaluated.drift is None
    assert evaluated.problems[0].kind is ProblemKind.BASELINE_NOT_READY
    assert "minSamples (500)" in evaluated.problems[0].message


def test_a_filled_baseline_is_judged() -> None:
    evaluated = evaluate_with(Answers(buckets(5000), buckets(50_000)))
    assert evaluated.drift is not None and not evaluated.problems
    decision = advance(WARM_SPEC, evaluated, PolicyState()).decision
    assert decision is not None and decision.action is Action.NO_ACTION


def test_prometheus_down_is_unknown() -> None:
    evaluated = evaluate_with(Answers([], [], fail=MetricsUnavailable("connection refused")))
    decision = advance(WARM_SPEC, evaluated, PolicyState()).decision
    assert decision is not None
    assert (decision.action, decision.reason) == (Action.UNKNOWN, "PrometheusUnavailable")


def test_a_rejected_query_is_unknown_and_names_the_field() -> None:
    rejected = QueryRejected("spec.drift", "bad_data: offset must not be zero")
    evaluated = evaluate_with(Answers([], [], fail=rejected))
    decision = advance(WARM_SPEC, evaluated, PolicyState()).decision
    assert decision is not None
    assert (decision.action, decision.reason) == (Action.UNKNOWN, "QueryRejected")
    assert "spec.drift" in decision.message and "offset must not be zero" in decision.message


def test_conditions_say_the_baseline_is_not_ready() -> None:
    from evergreen.conditions import evaluation_drafts

    drafts = {
        d.type.value: d for d in evaluation_drafts(WARM_SPEC, evaluate_with(Answers(buckets(5000), [])))
    }
    assert (drafts["MetricsAvailable"].status.value, drafts["MetricsAvailable"].reason) == (
        "False",
        "BaselineNotReady",
    )
    assert drafts["Drifting"].reason == "BaselineNotReady"
    assert drafts["Ready"].reason == "BaselineNotReady"
