"""The decision suite: each single-incident catalog scenario and the decision it must lead to.

One ModelMonitor (:data:`SUITE_MANIFEST`, written the way a user would write it) watches every
scenario; :data:`EXPECTATIONS` says, per scenario, which decision is right once the incident
is visible and what must never happen. :func:`judge` compares a replay
(:func:`evergreen.backtest.replay`) with an expectation. The benchmark
(``bench/bench_decisions.py``) and the integration test share these definitions, so they
cannot disagree about what "right" means.

An incident is *visible* from the first evaluation whose window holds affected data: the
counts of a scenario step appear in Prometheus at the step's end, so that is the first
evaluation at or after ``visible_at + scenario.step``. Detection delay is counted in
evaluations from there.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from evergreen.api.decisions import Action, Decision
from evergreen.api.durations import parse_duration
from evergreen.api.resource import parse_spec
from evergreen.api.spec import ModelMonitorSpec
from evergreen.backtest import Step, evaluation_times, replay, summarize
from evergreen.errors import EvergreenError
from evergreen.signals.prometheus import Endpoint, PrometheusSource
from evergreen.simulation import catalog
from evergreen.simulation.prometheus import PrometheusServer
from evergreen.simulation.scenario import Scenario

#: The monitor every suite scenario is judged with. The four-day scenarios have three healthy
#: days: a baseline of the whole day that ended 24 hours earlier spans a full daily cycle and
#: stays healthy until a day after the incident starts.
SUITE_MANIFEST = """\
apiVersion: evergreen.dev/v1alpha1
kind: ModelMonitor
metadata:
  name: fraud-detector
  namespace: ml
spec:
  model: fraud-detector
  interval: 5m
  drift:
    histogram: model_feature_value
    featureLabel: feature
    segmentBy: [segment]
    baseline: {offset: 1d, window: 1d}
    window: 1h
    method: psi
    warning: 0.1
    critical: 0.25
    minSamples: 500
  predictionDrift:
    histogram: model_prediction_score
    segmentBy: [segment]
    baseline: {offset: 1d, window: 1d}
    window: 1h
    method: psi
    warning: 0.1
    critical: 0.25
    minSamples: 500
  dataQuality:
    - name: null-rate
      query: |
        sum by (feature, segment) (increase(model_feature_missing_total{model="{{model}}"}[1h]))
        /
        (
          sum by (feature, segment) (increase(model_feature_missing_total{model="{{model}}"}[1h]))
          + sum by (feature, segment) (increase(model_feature_value_count{model="{{model}}"}[1h]))
        )
      max: 0.05
      # A segment with a few dozen requests an hour needs a larger null rate to count.
      samplesQuery: |
        sum by (feature, segment) (increase(model_feature_missing_total{model="{{model}}"}[1h]))
        + sum by (feature, segment) (increase(model_feature_value_count{model="{{model}}"}[1h]))
      minSamples: 500
  kpis:
    - name: precision
      query: |
        sum(increase(model_label_outcomes_total{model="{{model}}", outcome="tp"}[1h]))
        /
        sum(increase(model_label_outcomes_total{model="{{model}}", outcome=~"tp|fp"}[1h]))
      min: 0.88
      labelsQuery: sum(increase(model_label_outcomes_total{model="{{model}}", outcome=~"tp|fn"}[15m]))
    - name: recall
      query: |
        sum(increase(model_label_outcomes_total{model="{{model}}", outcome="tp"}[1h]))
        /
        sum(increase(model_label_outcomes_total{model="{{model}}", outcome=~"tp|fn"}[1h]))
      min: 0.8
      labelsQuery: sum(increase(model_label_outcomes_total{model="{{model}}", outcome=~"tp|fn"}[15m]))
    - name: segment-precision
      query: |
        sum by (segment) (increase(model_label_outcomes_total{model="{{model}}", outcome="tp"}[1h]))
        /
        sum by (segment) (increase(model_label_outcomes_total{model="{{model}}", outcome=~"tp|fp"}[1h]))
      min: 0.88
      samplesQuery: |
        sum by (segment) (increase(model_label_outcomes_total{model="{{model}}", outcome=~"tp|fp"}[1h]))
      minSamples: 500
      labelsQuery: sum(increase(model_label_outcomes_total{model="{{model}}", outcome=~"tp|fn"}[15m]))
"""


#: The KPIs of the calibrated scenarios' monitor: precision measured from labels that come six
#: hours late, and estimated from the scores for the hours in between.
ESTIMATED_KPIS: tuple[dict[str, Any], ...] = (
    {
        "name": "precision",
        "query": 'sum(increase(model_label_outcomes_total{model="{{model}}", outcome="tp"}[1h]))\n/\n'
        'sum(increase(model_label_outcomes_total{model="{{model}}", outcome=~"tp|fp"}[1h]))',
        "min": 0.6,
        "labelDelay": "6h",
        "estimate": {
            "histogram": "model_prediction_score",
            "metric": "precision",
            "threshold": 0.5,
            "window": "1h",
            "tolerance": 0.05,
        },
    },
)


class SuiteError(EvergreenError):
    """A replay cannot be judged against an expectation (e.g. it never reaches the incident)."""


def suite_manifest() -> dict[str, Any]:
    """The suite's ModelMonitor as a parsed manifest."""
    manifest: dict[str, Any] = yaml.safe_load(SUITE_MANIFEST)
    return manifest


def suite_spec() -> ModelMonitorSpec:
    """The suite's ModelMonitor spec, validated."""
    return parse_spec(suite_manifest()["spec"])


def suite_namespace() -> str:
    """The namespace of the suite's ModelMonitor (``{{namespace}}`` in queries)."""
    namespace: str = suite_manifest()["metadata"]["namespace"]
    return namespace


class Category(enum.StrEnum):
    """What a scenario is, as far as retraining goes."""

    #: Nothing can be judged (no data, a baseline still filling): say so, never "healthy".
    UNKNOWN = "unknown"
    #: Nothing happens.
    HEALTHY = "healthy"
    #: A short excursion that recovers by itself.
    NOISE = "noise"
    #: A data or pipeline break: hold, never retrain on the broken data.
    BREAKAGE = "breakage"
    #: The world changed: retrain when it hurts, watch when it does not.
    DRIFT = "drift"
    #: The relationship between inputs and outcomes changed: retrain on fresh labels.
    CONCEPT = "concept"

    @property
    def must_not_retrain(self) -> bool:
        """Retraining here would waste money (healthy, noise) or poison the model (breakage)."""
        return self in (Category.HEALTHY, Category.NOISE, Category.BREAKAGE, Category.UNKNOWN)


@dataclass(frozen=True)
class Expectation:
    """The decision a scenario must lead to, and what must never happen on the way."""

    scenario: str
    category: Category
    action: Action
    reason: str
    #: Features the decision's scope must include.
    scope: tuple[str, ...] = ()
    #: Segments the decision's scope must name.
    segments: tuple[str, ...] = ()
    #: The case's name when it is not the scenario's (one scenario, another monitor).
    case: str = ""
    #: Changes to the suite monitor's spec for this case (top-level fields).
    monitor: tuple[tuple[str, Any], ...] = ()
    #: Other decisions that may follow the expected one while it is kept (an escalation).
    also: frozenset[str] = frozenset()
    #: False: the expected decision must be reached, not kept (a warm-up that ends).
    kept: bool = True
    #: Actions that must not be decided at any evaluation.
    never: frozenset[Action] = frozenset()
    #: The expected decision must hold at every evaluation (a healthy scenario).
    throughout: bool = False
    #: The expected decision is due only once the incident has resolved and left the window,
    #: and must then hold at every evaluation (a transient incident).
    after_resolution: bool = False
    #: At most this many evaluations from visible to the expected decision.
    within: int | None = None
    #: Time after the incident starts by which a replay has seen everything this expectation
    #: judges: the detection (with margin), or the settling after a transient incident.
    horizon: timedelta = timedelta(hours=2)

    @property
    def name(self) -> str:
        """The case's name: the scenario's unless the case has its own."""
        return self.case or self.scenario

    @property
    def label(self) -> str:
        """``Retrain/DriftHurtsKPIs``, the way tables print a decision."""
        return f"{self.action.value}/{self.reason}"

    def matches(self, decision: Decision | None) -> bool:
        """Whether ``decision`` is the expected one (action, reason and scope)."""
        if decision is None or (decision.action, decision.reason) != (self.action, self.reason):
            return False
        features = set(decision.scope.features) if decision.scope else set()
        segments = set(decision.scope.segments) if decision.scope else set()
        return set(self.scope) <= features and set(self.segments) <= segments

    def keeps(self, decision: Decision | None) -> bool:
        """Whether ``decision`` keeps the expectation once reached (it, or an allowed follower)."""
        return self.matches(decision) or (
            decision is not None and f"{decision.action.value}/{decision.reason}" in self.also
        )


_NO_RETRAIN = frozenset({Action.RETRAIN})
_QUIET = frozenset({Action.RETRAIN, Action.HOLD_FOR_DATA_QUALITY, Action.ESCALATE})

#: Every single-incident catalog scenario (the 14-day ``showcase`` is not part of the suite).
EXPECTATIONS: tuple[Expectation, ...] = (
    Expectation("stable", Category.HEALTHY, Action.NO_ACTION, "Healthy", never=_QUIET, throughout=True),
    Expectation(
        "gradual_drift_kpi_decline",
        Category.DRIFT,
        Action.RETRAIN,
        "DriftHurtsKPIs",
        scope=("amount",),
        # Precision falls below 0.88 about a third of the way through the day-long decline.
        horizon=timedelta(hours=12),
    ),
    Expectation(
        "gradual_drift_healthy_kpis",
        Category.DRIFT,
        Action.WATCH,
        "DriftWithoutImpact",
        never=_NO_RETRAIN,
        # age reaches critical drift in the whole population late in its day-long drift.
        horizon=timedelta(hours=21),
    ),
    Expectation(
        "unit_change", Category.BREAKAGE, Action.HOLD_FOR_DATA_QUALITY, "UnitChange", never=_NO_RETRAIN
    ),
    Expectation(
        "segment_break",
        Category.BREAKAGE,
        Action.HOLD_FOR_DATA_QUALITY,
        "SegmentBreak",
        never=_NO_RETRAIN,
        within=2,
    ),
    Expectation(
        "null_spike",
        Category.BREAKAGE,
        Action.HOLD_FOR_DATA_QUALITY,
        "DataQualityCheckFailed",
        never=_NO_RETRAIN,
    ),
    Expectation(
        "upstream_jump",
        Category.BREAKAGE,
        Action.HOLD_FOR_DATA_QUALITY,
        "UpstreamChange",
        never=_NO_RETRAIN,
    ),
    Expectation("kpi_drop_no_drift", Category.CONCEPT, Action.RETRAIN, "ConceptDrift"),
    Expectation(
        "stable",
        Category.UNKNOWN,
        Action.UNKNOWN,
        "NoData",
        case="no_data",
        # A model name that matches nothing: every query answers with no series.
        monitor=(("model", "no-such-model"),),
        never=_QUIET | {Action.NO_ACTION, Action.WATCH},
        throughout=True,
    ),
    Expectation(
        "stable",
        Category.UNKNOWN,
        Action.UNKNOWN,
        "BaselineNotReady",
        case="baseline_warmup",
        # Three days back: the baseline window begins to fill as the replay starts.
        monitor=(("baselineOffset", "3d"),),
        never=_QUIET | {Action.WATCH},
        kept=False,
    ),
    Expectation(
        "kpi_at_threshold",
        Category.CONCEPT,
        Action.RETRAIN,
        "ConceptDrift",
        # Precision sits at its minimum: once decided, the retrain must not flap.
        horizon=timedelta(hours=4),
    ),
    Expectation(
        "segment_kpi_drop",
        Category.CONCEPT,
        Action.RETRAIN,
        "ConceptDrift",
        # Scoped from the first Retrain, and at every evaluation after it.
        segments=("segment=android",),
        horizon=timedelta(hours=4),
    ),
    Expectation(
        "segment_null_spike",
        Category.BREAKAGE,
        Action.HOLD_FOR_DATA_QUALITY,
        "DataQualityCheckFailed",
        scope=("distance_km",),
        segments=("segment=ios",),
        never=_NO_RETRAIN,
    ),
    Expectation(
        "late_labels",
        Category.BREAKAGE,
        Action.HOLD_FOR_DATA_QUALITY,
        "LabelPipelineStopped",
        never=_NO_RETRAIN,
        horizon=timedelta(hours=8),
    ),
    Expectation(
        "shift_beside_tiny_segment",
        Category.DRIFT,
        Action.WATCH,
        "SuddenShift",
        never=frozenset({Action.RETRAIN, Action.HOLD_FOR_DATA_QUALITY, Action.ESCALATE}),
        kept=False,
        # Long enough for the thin segment's noise to have tempted a break signature.
        horizon=timedelta(hours=6),
    ),
    Expectation(
        "long_unit_change",
        Category.BREAKAGE,
        Action.HOLD_FOR_DATA_QUALITY,
        "UnitChange",
        never=_NO_RETRAIN,
        # A day on, the hold escalates; it must never end while the data stay broken, even
        # once the rolling baseline (offset 1d) reaches the broken days.
        also=frozenset({"Escalate/HoldUnresolved"}),
        horizon=timedelta(hours=60),
    ),
    Expectation(
        "clipped_unit_change",
        Category.BREAKAGE,
        Action.HOLD_FOR_DATA_QUALITY,
        "UnitChange",
        scope=("price",),
        never=_NO_RETRAIN,
    ),
    Expectation(
        # The estimate sees the drop at once; the labels would confirm it six hours later.
        "calibrated_late_labels",
        Category.CONCEPT,
        Action.RETRAIN,
        "ConceptDrift",
        monitor=(("kpis", list(ESTIMATED_KPIS)),),
        # The 1h window must fill with the drop, then persist: ~70 minutes, not the 6 hours
        # (72 evaluations) the labels take.
        within=14,
        horizon=timedelta(hours=6),
    ),
    Expectation(
        # The scores do not move: only the labels, six hours late, show the drop; the estimate
        # stays healthy and stops being trusted (calibration drift).
        "miscalibrated_model",
        Category.CONCEPT,
        Action.RETRAIN,
        "ConceptDrift",
        monitor=(("kpis", list(ESTIMATED_KPIS)),),
        horizon=timedelta(hours=9),
    ),
    Expectation(
        "short_spike",
        Category.NOISE,
        Action.NO_ACTION,
        "Healthy",
        never=_QUIET,
        after_resolution=True,
        # Settled 1h45 after it starts (30 minutes, the 1h window, persistence): an hour more.
        horizon=timedelta(hours=3),
    ),
)

#: The expectations by case name.
BY_SCENARIO = MappingProxyType({e.name: e for e in EXPECTATIONS})


def expectation_spec(expectation: Expectation) -> ModelMonitorSpec:
    """The suite monitor as this case runs it (with the case's changes)."""
    spec = dict(suite_manifest()["spec"])
    for key, value in expectation.monitor:
        if key == "baselineOffset":  # every drift signal's baseline, moved back
            for signal in ("drift", "predictionDrift"):
                spec[signal] = {**spec[signal], "baseline": {**spec[signal]["baseline"], "offset": value}}
        else:
            spec[key] = value
    return parse_spec(spec)


def scenario_of(expectation: Expectation) -> Scenario:
    """The catalog scenario an expectation is about."""
    return catalog.scenario(expectation.scenario)


def visible_from(scenario: Scenario) -> datetime | None:
    """The first moment an evaluation's window can hold affected data (None: no incident)."""
    if not scenario.incidents:
        return None
    return min(incident.visible_at for incident in scenario.incidents) + scenario.step


def resolved_from(scenario: Scenario) -> datetime | None:
    """When the last incident's data is healthy again (None: an incident lasts to the end)."""
    ends = [incident.resolved_at for incident in scenario.incidents]
    if not ends or any(end is None for end in ends):
        return None
    return max(end for end in ends if end is not None)


def settled_from(scenario: Scenario, spec: ModelMonitorSpec) -> datetime | None:
    """When every incident has resolved, left the current windows and persistence released it.

    None when an incident persists to the end of the scenario.
    """
    resolved = resolved_from(scenario)
    if resolved is None:
        return None
    windows = [parse_duration(c.window) for c in (spec.drift, spec.prediction_drift) if c is not None]
    release = parse_duration(spec.interval) * spec.policy.persistence.of
    return resolved + max(windows, default=timedelta(0)) + release


@dataclass(frozen=True)
class Verdict:
    """How one replay measured up to its expectation."""

    expectation: Expectation
    evaluations: int
    #: Index of the first evaluation whose window holds affected data (None: no incident).
    visible_index: int | None
    #: Index of the first evaluation with the expected decision, counted from when it is due
    #: (None: never reached).
    reached_index: int | None
    reached_at: datetime | None
    retrains: int
    holds: int
    #: Everything that went against the expectation, in words; empty when it was met.
    violations: tuple[str, ...]

    @property
    def reached(self) -> bool:
        return self.reached_index is not None

    @property
    def right(self) -> bool:
        """The expected decision was reached and kept, and nothing that must not happen did."""
        return self.reached and not self.violations

    @property
    def delay(self) -> int | None:
        """Evaluations from visible to the expected decision (None unless it is a detection)."""
        e = self.expectation
        if e.throughout or e.after_resolution or self.visible_index is None or self.reached_index is None:
            return None
        return self.reached_index - self.visible_index


def _label(decision: Decision | None) -> str:
    return "unavailable" if decision is None else f"{decision.action.value}/{decision.reason}"


def _mismatches(expectation: Expectation, steps: Sequence[Step], what: str) -> list[str]:
    wrong = [step for step in steps if not expectation.keeps(step.decision)]
    if not wrong:
        return []
    first = wrong[0]
    return [
        f"{expectation.label} not kept: {len(wrong)} of {len(steps)} evaluations {what} decided "
        f"otherwise (first {first.time:%Y-%m-%d %H:%M}: {_label(first.decision)})"
    ]


def _never(expectation: Expectation, steps: Sequence[Step]) -> list[str]:
    violations = []
    for action in sorted(expectation.never):
        hits = [step for step in steps if step.decision is not None and step.decision.action is action]
        if hits:
            violations.append(
                f"{action.value} must never happen: decided at {len(hits)} evaluations "
                f"(first {hits[0].time:%Y-%m-%d %H:%M}: {_label(hits[0].decision)})"
            )
    return violations


def _visible_index(expectation: Expectation, scenario: Scenario, steps: Sequence[Step]) -> int | None:
    visible_at = visible_from(scenario)
    if visible_at is None:
        return None
    index = next((i for i, step in enumerate(steps) if step.time >= visible_at), None)
    if index is None:
        raise SuiteError(f"{expectation.name}: the replay ends before the incident is visible")
    return index


def judge(
    expectation: Expectation, scenario: Scenario, spec: ModelMonitorSpec, steps: Sequence[Step]
) -> Verdict:
    """Compare a replay of ``scenario`` under ``spec`` with ``expectation``.

    A detection is right when the expected decision is reached once the incident is visible
    and kept (every evaluation) until the incident resolves or the replay ends. A healthy
    scenario must show it at every evaluation, a transient one at every evaluation once it
    has settled. Nothing in ``never`` may be decided at any evaluation.
    """
    if not steps:
        raise SuiteError(f"{expectation.scenario}: nothing was replayed")
    visible_index = _visible_index(expectation, scenario, steps)
    violations = _never(expectation, steps)
    unavailable = [step.time for step in steps if step.decision is None or step.evaluation.unavailable]
    if unavailable:
        violations.append(
            f"{len(unavailable)} evaluations without Prometheus (first {unavailable[0]:%Y-%m-%d %H:%M})"
        )

    if expectation.throughout:
        due_from = 0
    elif expectation.after_resolution:
        settled_at = settled_from(scenario, spec)
        if settled_at is None:
            raise SuiteError(f"{expectation.scenario}: the incident never resolves")
        due_from = next((i for i, step in enumerate(steps) if step.time >= settled_at), len(steps))
        if due_from == len(steps):
            raise SuiteError(f"{expectation.scenario}: the replay ends before {settled_at:%Y-%m-%d %H:%M}")
    else:
        due_from = visible_index or 0
    reached_index = next(
        (i for i in range(due_from, len(steps)) if expectation.matches(steps[i].decision)), None
    )

    if reached_index is None:
        seen = sorted({_label(step.decision) for step in steps[due_from:]})
        violations.append(f"never decided {expectation.label} (decided: {', '.join(seen)})")
    elif expectation.throughout or expectation.after_resolution:
        violations += _mismatches(expectation, steps[due_from:], f"from {steps[due_from].time:%H:%M} on")
    elif not expectation.kept:
        pass  # reaching it is the point (a warm-up ends; a sudden shift becomes drift)
    else:
        resolved_at = resolved_from(scenario)
        kept = [s for s in steps[reached_index:] if resolved_at is None or s.time < resolved_at]
        until = "the end" if resolved_at is None else "the incident resolved"
        violations += _mismatches(expectation, kept, f"from {kept[0].time:%H:%M} until {until}")
        delay = reached_index - (visible_index or 0)
        if expectation.within is not None and delay > expectation.within:
            violations.append(
                f"decided {delay} evaluations after the incident became visible; "
                f"target <= {expectation.within}"
            )

    summary = summarize(steps)
    return Verdict(
        expectation=expectation,
        evaluations=len(steps),
        visible_index=visible_index,
        reached_index=reached_index,
        reached_at=None if reached_index is None else steps[reached_index].time,
        retrains=summary.retrains,
        holds=summary.holds,
        violations=tuple(violations),
    )


# --- running the suite ---------------------------------------------------------------------


def suite_times(
    expectation: Expectation, step: timedelta, before: timedelta = timedelta(minutes=30)
) -> list[datetime]:
    """Evaluation times from ``before`` the incident to the expectation's horizon."""
    return evaluation_times(catalog.INCIDENT_AT - before, catalog.INCIDENT_AT + expectation.horizon, step)


def replay_scenario(
    scenario: Scenario,
    spec: ModelMonitorSpec,
    times: Sequence[datetime],
    workdir: Path,
    *,
    cache_dir: Path | None = None,
    concurrency: int = 8,
) -> list[Step]:
    """Serve ``scenario``'s backfilled history (cached) from a fresh Prometheus and replay it.

    ``workdir`` must be empty or missing; the server is stopped before this returns.
    """
    with PrometheusServer.from_scenario(scenario, workdir, cache_dir=cache_dir) as server:
        source = PrometheusSource(Endpoint(url=server.url, timeout_seconds=30))
        try:
            return asyncio.run(
                replay(spec, source, times, namespace=suite_namespace(), concurrency=concurrency)
            )
        finally:
            source.close()
