"""What-if over history: each policy's runs, guardrails, cost and KPI time on small histories.

Every history here is hourly and short enough to reason about by hand: each expected number is
worked out in the test's comment. The monitor policy runs the real decision engine over the
hand-built evaluations (KPIs and a data-quality check only, so the engine's rules are easy to
follow); its decisions are produced the way :func:`evergreen.backtest.replay` produces them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from evergreen import whatif
from evergreen.analysis import AlignedHistograms, DriftScores, SeriesKey
from evergreen.analysis.drift import DriftMethod
from evergreen.api.decisions import Action, Decision
from evergreen.api.resource import parse_spec
from evergreen.api.spec import ModelMonitorSpec
from evergreen.api.status import CheckOutcome, CheckSeries, CheckState
from evergreen.backtest import Step
from evergreen.cli import main
from evergreen.observation.evaluate import DriftResult, Evaluation
from evergreen.policy.engine import PolicyState, advance
from evergreen.whatif.history import Span, merged, minus, read_history, total
from evergreen.whatif.policies import PolicyKind

T0 = datetime(2026, 3, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)


def h(hours: float) -> datetime:
    return T0 + hours * HOUR


RETRAINING: dict[str, Any] = {
    "template": {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {"template": {"spec": {"containers": [{"name": "t", "image": "trainer:1"}]}}},
    },
    "validation": {"metric": "auc"},
    "timeout": "2h",
    "cooldown": "24h",
    "budget": {"runs": 3, "per": "168h"},
    "cost": {"perRun": 10, "budget": 100, "per": "720h"},
    "giveUpAfter": 2,
}


def monitor(
    *, drift: bool = False, retraining: dict[str, Any] | None = None, **extra: Any
) -> ModelMonitorSpec:
    raw: dict[str, Any] = {
        "model": "m",
        "interval": "1h",
        "policy": {"persistence": {"of": 2, "needed": 2}},
        "dataQuality": [{"name": "null-rate", "query": "q", "max": 0.05}],
        "kpis": [{"name": "precision", "query": "q", "min": 0.9}],
        "retraining": {**RETRAINING, **(retraining or {})},
        **extra,
    }
    if drift:
        raw["drift"] = {"histogram": "h", "method": "psi", "critical": 0.25, "minSamples": 100}
    return parse_spec(raw)


def psi(spec: ModelMonitorSpec, score: float) -> DriftResult:
    """A one-feature whole-population drift result with this PSI."""
    assert spec.drift is not None
    keys = (SeriesKey("amount", ()),)
    many = np.array([1000.0])
    return DriftResult(
        "spec.drift",
        spec.drift,
        DriftScores(
            keys=keys,
            method=DriftMethod.PSI,
            score=np.array([score]),
            p_value=np.array([0.5]),
            effective_samples=many,
            baseline_total=many,
            current_total=many,
            bins=np.array([10]),
        ),
        AlignedHistograms(
            keys=keys,
            upper_bounds=np.array([1.0, np.inf]),
            baseline=np.ones((1, 2)),
            current=np.ones((1, 2)),
            baseline_total=np.array([2.0]),
            current_total=np.array([2.0]),
            known_bounds=np.ones((1, 2), dtype=bool),
        ),
        np.zeros(1),
    )


def kpi(breached: Sequence[str] = (), segments: Sequence[str] = ()) -> CheckOutcome:
    """Precision: the whole population, or one series per segment, ``breached`` ones at 0.8."""
    if not segments:
        bad = "*" in breached
        return CheckOutcome(
            name="precision",
            state=CheckState.BREACHED if bad else CheckState.OK,
            value=0.8 if bad else 0.95,
            min=0.9,
            series=[CheckSeries(value=0.8 if bad else 0.95, breached=bad)],
        )
    series = [
        CheckSeries(labels={"segment": s}, value=0.8 if s in breached else 0.95, breached=s in breached)
        for s in segments
    ]
    state = CheckState.BREACHED if breached else CheckState.OK
    return CheckOutcome(name="precision", state=state, value=0.8, min=0.9, series=series)


def null_rate(broken: bool) -> CheckOutcome:
    value = 0.3 if broken else 0.01
    return CheckOutcome(
        name="null-rate",
        state=CheckState.BREACHED if broken else CheckState.OK,
        value=value,
        max=0.05,
        series=[CheckSeries(labels={"feature": "amount"}, value=value, breached=broken)],
    )


def replayed(spec: ModelMonitorSpec, evaluations: Sequence[Evaluation]) -> list[Step]:
    """Decide in order, as a replay does."""
    state = PolicyState()
    steps = []
    for evaluation in evaluations:
        state = advance(spec, evaluation, state)
        steps.append(Step(evaluation.time, evaluation, state.decision))
    return steps


def hourly(
    spec: ModelMonitorSpec,
    hours: int,
    *,
    kpi_at: Any = lambda hour: kpi(),
    broken: Any = lambda hour: False,
    score: Any = None,
) -> list[Step]:
    evaluations = [
        Evaluation(
            time=h(hour),
            duration_seconds=0,
            queries=2,
            drift=psi(spec, score(hour)) if score is not None else None,
            data_quality=(null_rate(broken(hour)),),
            kpis=(kpi_at(hour),),
        )
        for hour in range(hours)
    ]
    return replayed(spec, evaluations)


def compare(spec: ModelMonitorSpec, steps: list[Step], policies: str, **assumed: Any) -> dict[str, Any]:
    result = whatif.compare(
        spec,
        steps,
        whatif.parse_policies(policies),
        whatif.assumptions_for(spec, **{"run_duration": None, **assumed}),
    )
    return {o.name: o for o in result.outcomes}


# --- concept drift: precision out of bounds from h4 to h11 ---------------------------------


def concept_drift(spec: ModelMonitorSpec) -> list[Step]:
    return hourly(spec, 24, kpi_at=lambda hour: kpi(["*"] if 4 <= hour <= 11 else []))


def test_the_monitor_retrains_once_persistent_and_restores_after_the_run() -> None:
    spec = monitor()
    steps = concept_drift(spec)
    assert steps[5].decision is not None and steps[5].decision.action is Action.RETRAIN
    row = compare(spec, steps, "monitor")["monitor"]
    # Breached at h4 and h5 (2 of 2): Retrain at h5, a 2h run serves from h7; the episode
    # [h4, h12) began before the run, so h7..h12 is restored: outside h4..h7 = 3 h of 8.
    assert [run.start for run in row.runs.runs] == [h(5)]
    assert row.runs.runs[0].effective == h(7)
    assert row.kpi_outside == 3 * HOUR
    assert (row.started, row.scoped, row.unscoped, row.cost) == (1, 0, 1, 10)
    assert (row.incidents_held, row.incidents_retrained_on) == (0, 0)
    # At h6 the Retrain still stands on a KPI not yet restored: its own run is under way.
    assert row.runs.blocked == {"Concurrency": 1}


def test_a_schedule_runs_one_period_after_the_start_and_guardrails_skip_runs() -> None:
    spec = monitor()
    row = compare(spec, concept_drift(spec), "every=6h")["every=6h"]
    # Due at h6, h12, h18: h6 runs (serves from h8: outside h4..h8 = 4 h); the run ended at
    # h8, so the 24h cooldown skips h12 and h18.
    assert [run.start for run in row.runs.runs] == [h(6)]
    assert row.kpi_outside == 4 * HOUR
    assert row.runs.blocked == {"Cooldown": 2}
    assert row.cost == 10


def test_a_schedule_can_start_elsewhere_and_the_budget_stops_it() -> None:
    spec = monitor(retraining={"cooldown": "1h", "budget": {"runs": 2, "per": "168h"}})
    rows = compare(spec, concept_drift(spec), "every=4h@1h,every=30d")
    # Due at h1, h5, h9, ...: h1 is before the episode (restores nothing, the drift is new at
    # h4), h5 restores from h7; the budget of 2 runs stops h9 and everything after.
    row = rows["every=4h@1h"]
    assert [run.start for run in row.runs.runs] == [h(1), h(5)]
    assert row.kpi_outside == 3 * HOUR
    assert row.runs.blocked == {"Budget": 4}  # h9, h13, h17, h21
    assert row.cost == 20
    # A month-long schedule never comes due in a day: the history as recorded.
    assert rows["every=30d"].started == 0
    assert rows["every=30d"].kpi_outside == 8 * HOUR


def test_the_cost_budget_is_a_guardrail_too() -> None:
    spec = monitor(retraining={"cooldown": "1h", "cost": {"perRun": 30, "budget": 50, "per": "720h"}})
    row = compare(spec, concept_drift(spec), "every=4h")["every=4h"]
    # h4 runs (cost 30); a second run would make 60 > 50: h8, h12, ... are blocked.
    assert row.started == 1 and row.cost == 30
    assert set(row.runs.blocked) == {"CostBudget"}


def test_a_longer_run_and_an_approval_wait_delay_the_restoration() -> None:
    rollout = {
        "target": {"deployment": "m", "service": "m", "version": {"container": "server", "env": "V"}},
        "steps": [50, 100],
        "stepInterval": "30m",
        "approval": "Manual",
        "gates": ["Promotion"],
    }
    spec = monitor(rollout=rollout)
    assumed = whatif.assumptions_for(spec, 3 * HOUR, approval_wait=HOUR)
    # 3h run + 2 x 30m rollout + 1h approval = 5h: the run at h5 serves from h10.
    assert assumed.time_to_effect == 5 * HOUR
    result = whatif.compare(spec, concept_drift(spec), whatif.parse_policies("monitor"), assumed)
    assert result.outcomes[0].kpi_outside == 6 * HOUR
    text = whatif.render(result)
    assert "after the run (3h, --run-duration) + the canary rollout (1h, spec.rollout)" in text
    assert "a Manual approval wait of 1h (--approval-wait) = 5h" in text


# --- a pipeline break: nulls from h4 to h9, precision breached by it from h5 to h9 ----------


def pipeline_break(spec: ModelMonitorSpec) -> list[Step]:
    return hourly(
        spec,
        24,
        kpi_at=lambda hour: kpi(["*"] if 5 <= hour <= 9 else []),
        broken=lambda hour: 4 <= hour <= 9,
    )


def test_the_monitor_holds_a_break_and_a_schedule_retrains_on_it() -> None:
    spec = monitor()
    steps = pipeline_break(spec)
    assert steps[5].decision is not None and steps[5].decision.action is Action.HOLD_FOR_DATA_QUALITY
    rows = compare(spec, steps, "monitor,every=6h")
    held = rows["monitor"]
    # The hold is the incident; the monitor never retrains on it, and the KPI it broke stays
    # outside for h5..h10 = 5 h whatever any policy does.
    assert (held.started, held.incidents_held, held.incidents_retrained_on) == (0, 1, 0)
    assert held.kpi_outside == 5 * HOUR
    scheduled = rows["every=6h"]
    # The h6 run is trained on broken data: it restores nothing and counts as retrained on.
    assert [run.on_incident for run in scheduled.runs.runs] == [True]
    assert (scheduled.incidents_held, scheduled.incidents_retrained_on) == (0, 1)
    assert scheduled.kpi_outside == 5 * HOUR and scheduled.cost == 10


def test_runs_on_broken_data_count_as_failed_until_retraining_gives_up() -> None:
    spec = monitor(retraining={"cooldown": "1h"})
    steps = hourly(spec, 24, broken=lambda hour: hour >= 2)
    row = compare(spec, steps, "every=3h")["every=3h"]
    # h3 and h6 run on the open incident and fail (ending h5, h8): giveUpAfter 2 stops h9 on.
    assert [run.start for run in row.runs.runs] == [h(3), h(6)]
    assert row.runs.gave_up == h(9)
    assert row.runs.blocked == {"GaveUp": 5}  # h9, h12, h15, h18, h21
    result = whatif.compare(
        spec, steps, whatif.parse_policies("every=3h"), whatif.assumptions_for(spec, None)
    )
    assert "every=3h: gave up retraining at 2026-03-02T09:00:00Z (giveUpAfter)" in whatif.render(result)


def test_the_monitor_escalates_once_its_runs_keep_landing_on_broken_data() -> None:
    spec = monitor(retraining={"cooldown": "2h"})
    steps = hourly(spec, 24, kpi_at=lambda hour: kpi(["*"]), broken=lambda hour: hour in (2, 3, 6, 7))
    rows = compare(spec, steps, "monitor")
    row = rows["monitor"]
    # Precision is out all day: Retrain from h1. Breaks at h2-h3 and h6-h7 are held at h3 and
    # h7; each incident starts one window before its first break (h1, h5). The run at h1 lands
    # on the first (ends h3, failed); the cooldown (2h from h3) stops h4, the run at h5 lands on
    # the second (ends h7, failed): giveUpAfter 2, so from h8 Retrain is Escalate.
    assert [(run.start, run.on_incident) for run in row.runs.runs] == [(h(1), True), (h(5), True)]
    assert row.runs.gave_up == h(7)
    assert row.runs.escalations == 1
    assert (row.incidents_held, row.incidents_retrained_on) == (0, 2)
    assert row.kpi_outside == 24 * HOUR  # nothing was restored
    assert steps[8].decision is not None and steps[8].decision.action is Action.RETRAIN  # as replayed


def decided(spec: ModelMonitorSpec, hours: int, decisions: dict[int, tuple[Action, str, int]]) -> list[Step]:
    """Precision out of bounds from h2 to h12, with the replay's decisions given by hand
    (hour -> action, reason, since hour; NoAction elsewhere)."""
    steps = []
    for hour in range(hours):
        evaluation = Evaluation(
            time=h(hour),
            duration_seconds=0,
            queries=2,
            data_quality=(null_rate(False),),
            kpis=(kpi(["*"] if 2 <= hour <= 12 else []),),
        )
        action, reason, since = decisions.get(hour, (Action.NO_ACTION, "Healthy", hour))
        decision = Decision(
            action=action, reason=reason, message="m", time=h(hour), since=h(since), enforced=True
        )
        steps.append(Step(h(hour), evaluation, decision))
    return steps


@pytest.mark.parametrize(
    ("reason", "blocked"),
    [
        # Resting on KPIs the h2 run restored (from h4 to the episode's end, h13): no new run.
        # (At h3 the first Retrain still stands: its run is under way.)
        ("ConceptDrift", {"Concurrency": 1}),
        # Resting on the model's outputs: a new trigger, which the cooldown stops (h7..h11).
        ("PredictionDrift", {"Concurrency": 1, "Cooldown": 5}),
    ],
)
def test_a_new_retrain_on_kpis_a_run_restored_would_not_have_been_decided(
    reason: str, blocked: dict[str, int]
) -> None:
    spec = monitor()
    decisions = {hour: (Action.RETRAIN, "DriftHurtsKPIs", 2) for hour in range(2, 6)}
    decisions[6] = (Action.WATCH, "DriftWithoutImpact", 6)
    decisions |= {hour: (Action.RETRAIN, reason, 7) for hour in range(7, 12)}
    row = compare(spec, decided(spec, 24, decisions), "monitor")["monitor"]
    assert [run.start for run in row.runs.runs] == [h(2)]
    assert row.runs.blocked == blocked
    assert row.kpi_outside == 2 * HOUR  # h2..h4


# --- scope: precision per segment, ios out from h2, web out from h10 ------------------------


def test_a_scoped_run_restores_its_segments_only_and_a_later_drift_needs_a_new_run() -> None:
    spec = monitor()

    def precision(hour: int) -> CheckOutcome:
        out = ["ios"] if hour >= 2 else []
        return kpi(out + (["web"] if hour >= 10 else []), segments=["ios", "web"])

    steps = hourly(spec, 24, kpi_at=precision)
    rows = compare(spec, steps, "monitor,every=12h")
    row = rows["monitor"]
    # Retrain at h3 scoped to segment=ios; serves from h5. web leaves its bounds at h10: the
    # decision still stands on it, but the cooldown (24h from h5) blocks h10..h23 (14 tries).
    assert row.runs.runs[0].scope is not None and row.runs.runs[0].scope.segments == ["segment=ios"]
    assert (row.started, row.scoped, row.unscoped) == (1, 1, 0)
    assert row.runs.blocked == {"Concurrency": 1, "Cooldown": 14}  # h4: its run is under way
    # Outside: ios h2..h5 and web h10..h24: 17 h; per series 3 + 14 = 17 h.
    assert row.kpi_outside == 17 * HOUR
    assert row.kpi_series_outside == 17 * HOUR
    # Unscoped at h12: restores ios (out since h2) and web (out since h10) from h14.
    every = rows["every=12h"]
    assert every.kpi_outside == 14 * HOUR - 2 * HOUR  # h2..h14
    assert every.kpi_series_outside == 12 * HOUR + 4 * HOUR  # ios h2..h14, web h10..h14


# --- the naive PSI alarm ---------------------------------------------------------------------


def test_naive_psi_retrains_once_per_alarm_above_its_threshold() -> None:
    spec = monitor(drift=True, retraining={"cooldown": "1h"})
    steps = hourly(
        spec,
        24,
        kpi_at=lambda hour: kpi(["*"] if 4 <= hour <= 11 else []),
        score=lambda hour: 0.3 if 3 <= hour <= 6 or 15 <= hour <= 16 else 0.05,
    )
    rows = compare(spec, steps, "naive-psi,naive-psi=0.5")
    row = rows["naive-psi"]
    # Above spec.drift.critical (0.25) h3..h6 and h15..h16: one run per alarm, at h3 and h15.
    # h3 is before the KPI episode (h4): it restores nothing; the KPI is outside 8 h.
    assert [run.start for run in row.runs.runs] == [h(3), h(15)]
    assert row.kpi_outside == 8 * HOUR and row.cost == 20
    assert rows["naive-psi=0.5"].started == 0


def test_naive_psi_needs_psi_scores() -> None:
    with pytest.raises(ValueError, match=r"no spec\.drift"):
        whatif.simulate(
            monitor(),
            read_history(monitor(), concept_drift(monitor())),
            whatif.parse_policies("naive-psi")[0],
            whatif.assumptions_for(monitor(), None),
        )


# --- history facts -----------------------------------------------------------------------------


def test_label_delay_places_a_kpi_at_the_time_it_describes() -> None:
    spec = monitor(kpis=[{"name": "precision", "query": "q", "min": 0.9, "labelDelay": "3h"}])
    steps = hourly(spec, 12, kpi_at=lambda hour: kpi(["*"] if 6 <= hour <= 7 else []))
    history = read_history(spec, steps)
    assert history.outside() == {("precision", ()): [Span(h(3), h(5))]}


def test_estimated_kpis_count_beside_measured_ones_at_the_time_they_describe() -> None:
    spec = monitor(kpis=[{"name": "precision", "query": "q", "min": 0.9, "labelDelay": "3h"}])
    steps = hourly(spec, 12, kpi_at=lambda hour: kpi(["*"] if 6 <= hour <= 7 else []))
    # What an evaluation with an estimated KPI carries: the estimate of the current window,
    # marked as one, beside the measured KPIs (here out of bounds at h3..h4 already).
    steps = [
        dataclasses.replace(
            step,
            evaluation=dataclasses.replace(
                step.evaluation,
                estimates=(
                    kpi(["*"] if 3 <= step.time.hour <= 4 else []).model_copy(update={"estimated": True}),
                ),
            ),
        )
        for step in steps
    ]
    history = read_history(spec, steps)
    assert history.outside() == {
        ("precision", ()): [Span(h(3), h(5))],
        ("precision (estimated)", ()): [Span(h(3), h(5))],
    }
    # Both describe h3..h5: the union counts those hours once.
    assert total(span for spans in history.outside().values() for span in spans) == 2 * HOUR


def test_noise_shorter_than_the_persistence_window_does_not_end_an_episode() -> None:
    spec = monitor()
    # Out h2..h4, back at h5 only, out h6..h7: one episode (a 1 h return < 2 x 1h).
    out = {2, 3, 4, 6, 7}
    history = read_history(spec, hourly(spec, 12, kpi_at=lambda hour: kpi(["*"] if hour in out else [])))
    assert history.episodes() == {("precision", ()): [Span(h(2), h(8))]}
    assert history.outside() == {("precision", ()): [Span(h(2), h(5)), Span(h(6), h(8))]}


def test_kpis_without_data_or_labels_count_neither_way() -> None:
    spec = monitor()

    def precision(hour: int) -> CheckOutcome:
        if hour < 3:
            return CheckOutcome(name="precision", state=CheckState.NO_DATA)
        return kpi(["*"]).model_copy(update={"label_rate": 0.0})

    result = whatif.compare(
        spec,
        hourly(spec, 6, kpi_at=precision),
        whatif.parse_policies("monitor"),
        whatif.assumptions_for(spec, None),
    )
    assert result.recorded_outside == timedelta(0)
    assert result.kpi_unknown == 6 * HOUR


def test_an_evaluation_stands_for_the_time_until_the_next_at_most_the_usual_gap() -> None:
    spec = monitor()
    # Hourly, then nothing for 10 hours (a gap between recorded spans): the evaluation before
    # the gap stands for one hour, not eleven.
    hours = [0, 1, 2, 3, 14, 15]
    evaluations = [
        Evaluation(
            time=h(x), duration_seconds=0, queries=1, kpis=(kpi(["*"]),), data_quality=(null_rate(False),)
        )
        for x in hours
    ]
    result = whatif.compare(
        spec,
        replayed(spec, evaluations),
        whatif.parse_policies("monitor"),
        whatif.assumptions_for(spec, None),
    )
    assert result.recorded_outside == 6 * HOUR
    assert result.longest_gap == HOUR
    assert "(6 evaluations, each standing for up to 1h)" in whatif.render(result)


def test_spans_merge_and_cut() -> None:
    spans = [Span(h(0), h(2)), Span(h(1), h(3)), Span(h(5), h(6))]
    assert merged(spans) == [Span(h(0), h(3)), Span(h(5), h(6))]
    assert total(spans) == 4 * HOUR
    assert minus(spans, [Span(h(1), h(2)), Span(h(5), h(7))]) == [Span(h(0), h(1)), Span(h(2), h(3))]


# --- policies, output and the command line ---------------------------------------------------


def test_policies_are_parsed_with_clear_errors() -> None:
    parsed = whatif.parse_policies("monitor, every=7d, every=30d@2d, naive-psi=0.2")
    assert [p.kind for p in parsed] == [
        PolicyKind.MONITOR,
        PolicyKind.SCHEDULE,
        PolicyKind.SCHEDULE,
        PolicyKind.NAIVE_PSI,
    ]
    assert parsed[1].first == timedelta(days=7) and parsed[2].first == timedelta(days=2)
    assert parsed[3].threshold == 0.2
    for text, message in (
        ("weekly", "unknown policy 'weekly'"),
        ("every=7 days", "is not a duration"),
        ("naive-psi=high", "must be a number"),
        ("monitor,,every=1d", "empty policy"),
        ("monitor,monitor", "named twice"),
    ):
        with pytest.raises(ValueError, match=message):
            whatif.parse_policies(text)


def test_the_table_states_its_assumption_and_json_carries_every_number() -> None:
    spec = monitor()
    result = whatif.compare(
        spec,
        concept_drift(spec),
        whatif.parse_policies("monitor,every=6h"),
        whatif.assumptions_for(spec, None),
    )
    text = whatif.render(result)
    header = next(line for line in text.splitlines() if line.startswith("policy"))
    assert header.split() == [
        "policy", "retrains", "scoped", "unscoped", "cost", "KPI", "outside", "(h)",
        "incidents", "held", "retrained", "on", "blocked",
    ]  # fmt: skip
    assert next(line for line in text.splitlines() if line.startswith("monitor")).split() == [
        "monitor", "1", "0", "1", "10", "3.0", "0", "0", "1",
    ]  # fmt: skip
    assert "a KPI outside its bounds for 8.0 h" in text
    assert "Assumption (history cannot say what a retrain would have fixed)" in text
    assert "after the run (2h, spec.retraining.timeout) = 2h" in text
    lines = [json.loads(line) for line in whatif.jsonl(result)]
    assert [line["policy"] for line in lines] == ["monitor", "every=6h"]
    assert lines[0]["kpiOutsideHours"] == 3.0 and lines[1]["kpiOutsideHours"] == 4.0
    assert lines[0]["runs"][0]["effective"] == "2026-03-02T07:00:00Z"
    assert lines[0]["assumptions"]["timeToEffectHours"] == 2.0
    assert whatif.document(result)["recorded"] == {
        "kpiOutsideHours": 8.0,
        "kpiUnknownHours": 0.0,
        "incidents": 0,
    }


MANIFEST = """\
apiVersion: evergreen.dev/v1alpha1
kind: ModelMonitor
metadata: {name: m, namespace: ml}
spec:
  model: m
  drift: {histogram: h, method: wasserstein}
"""


@pytest.mark.parametrize(
    ("extra", "flags", "message"),
    [
        ("", ["--compare"], "--compare: spec.retraining: a what-if comparison prices every policy"),
        ("retraining", ["--compare", "monitor,naive-psi"], "naive-psi needs PSI scores"),
        ("retraining", ["--output", "json"], "--output: json is the what-if comparison's format"),
        ("retraining", ["--run-duration", "2h"], "--run-duration: prices policies"),
        ("retraining", ["--compare", "every=soon"], "'every=soon': 'soon' is not a duration"),
    ],
)
def test_the_command_refuses_what_it_cannot_price_before_replaying(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, flags: list[str], message: str
) -> None:
    manifest = MANIFEST
    if extra:
        template = "{apiVersion: batch/v1, kind: Job, spec: {}}"
        manifest += f"  retraining: {{template: {template}, validation: {{metric: auc}}}}\n"
    path = tmp_path / "m.yaml"
    path.write_text(manifest)
    # Nothing listens on port 9: a replay would fail differently (exit 1), not with exit 2.
    argv = [
        "backtest",
        "-f",
        str(path),
        "--prometheus",
        "http://127.0.0.1:9",
        "--start",
        "2026-01-05T00:00:00Z",
    ]
    assert main([*argv, "--end", "2026-01-05T01:00:00Z", *flags]) == 2
    assert message in capsys.readouterr().err


def test_the_bundled_recording_is_compared_with_its_own_monitor(capsys: pytest.CaptureFixture[str]) -> None:
    recording = Path(__file__).parents[2] / "operator" / "evergreen" / "data" / "showcase.recording.json.gz"
    assert main(["backtest", "--recording", str(recording), "--compare", "--output", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # The example monitor uses PSI: --compare alone compares all four default policies.
    assert [row["policy"] for row in rows] == ["monitor", "every=7d", "every=30d", "naive-psi"]
    monitor_row = rows[0]
    # The recording holds the showcase's pipeline breaks: the monitor holds them, never retrains.
    assert monitor_row["retrainsStarted"] == 0 and monitor_row["incidentsRetrainedOn"] == 0
    assert monitor_row["incidentsHeld"] == monitor_row["recorded"]["incidents"] > 0
    # The example's rollout (4 steps of 10m) and its 6h timeout make the time to effect.
    assert monitor_row["assumptions"]["timeToEffectHours"] == round(6 + 40 / 60, 2)
    assert any("spec.mode is Observe" in note for note in monitor_row["assumptions"]["notes"])


def test_the_scenario_monitor_passes_the_crds_rules() -> None:
    from tests.unit.test_crd_rules import failed_rules, spec_schema

    document = yaml.safe_load((Path(__file__).parents[2] / "examples" / "scenario-monitor.yaml").read_text())
    failures: list[str] = []
    failed_rules(spec_schema(), document["spec"], failures)
    assert failures == []
    assert parse_spec(document["spec"]).retraining is not None
