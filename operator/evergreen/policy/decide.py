"""From assessments to one decision, with its reason code and evidence.

Persistence: an action is taken only when its condition held in ``needed`` of the last
``of`` assessments (``policy.persistence``); the same rule releases it, so a decision does not
flap on one noisy evaluation. Assessments older than ``(of + 1) x interval`` (an operator
outage, a gap in a replay) do not count. In order of precedence:

1. **HoldForDataQuality** while pipeline breaks persist: never retrain on broken data, even
   if KPIs fall (the break may be why). A hold unresolved for ``policy.escalateHoldAfter``
   becomes **Escalate** (``HoldUnresolved``).
2. **Retrain** when real drift persists *and* it matters: KPIs breached (``DriftHurtsKPIs``)
   or the model's outputs drifted (``PredictionDrift``). Scoped to the drifted features, and
   to the drifted segments when the whole population did not move. KPIs breached
   persistently while the inputs are stable is a changed concept (``ConceptDrift``): retrain
   on fresh labels.
3. **Watch** when something moved but does not justify acting: drift with healthy KPIs
   (``DriftWithoutImpact``), drift whose impact is unknown because KPIs have no data
   (``DriftImpactUnknown``), anything not yet persistent, sudden shifts without a break
   signature, warnings.
4. **Unknown** when the newest evaluation could not judge any signal (every query empty or
   rejected, Prometheus unreachable, every baseline still filling): the reason code says
   which (``NoData``, ``QueryRejected``, ``PrometheusUnavailable``, ``BaselineNotReady``,
   ``UnusableMetrics``) and the evidence names each missing signal and its query. A hold in
   force is not released by missing data; nothing else is decided on it.
5. **NoAction** otherwise, with the signals it rests on as evidence (and those that were
   missing, named in the message).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from evergreen.api.decisions import (
    Action,
    Assessment,
    BreakKind,
    Decision,
    Evidence,
    Finding,
    Scope,
    estimated_name,
)
from evergreen.api.durations import parse_duration
from evergreen.api.spec import Mode, ModelMonitorSpec
from evergreen.policy.calibration import calibration_evidence

MAX_EVIDENCE = 8

#: Precedence among break kinds when several are present: the most specific explanation first.
_BREAK_ORDER = [
    BreakKind.UPSTREAM_CHANGE,
    BreakKind.SEGMENT_BREAK,
    BreakKind.UNIT_CHANGE,
    BreakKind.COLLAPSED,
    BreakKind.OUT_OF_RANGE,
    BreakKind.DATA_QUALITY,
    BreakKind.LABELS_STOPPED,
]


def _evidence(findings: Sequence[Finding], signal: str, window: str | None) -> list[Evidence]:
    return [
        Evidence(
            signal=signal,
            feature=f.feature,
            segment=f.segment,
            value=f.score,
            threshold=f.threshold,
            window=window,
            detail=f.detail or (f"step {f.step:.3g}" if f.step is not None else ""),
        )
        for f in findings
    ]


def _where(findings: Sequence[Finding]) -> str:
    """``amount, session_length [segment=ios]``: a feature alone when its whole population moved."""
    segments: dict[str, list[str]] = {}
    for finding in findings:
        segments.setdefault(finding.feature, []).append(finding.segment)
    parts = [
        feature if "*" in moved else f"{feature} [{', '.join(moved)}]" for feature, moved in segments.items()
    ]
    text = ", ".join(parts[:3])
    return text + (f" and {len(parts) - 3} more features" if len(parts) > 3 else "")


def _scope(findings: Sequence[Finding]) -> Scope:
    features = sorted({f.feature for f in findings})
    population = {f.feature for f in findings if f.segment == "*"}
    segments = sorted({f.segment for f in findings if f.segment != "*" and f.feature not in population})
    return Scope(features=features, segments=segments)


def _is_hold(decision: Decision) -> bool:
    return decision.action is Action.HOLD_FOR_DATA_QUALITY or (
        (decision.action, decision.reason) == (Action.ESCALATE, "HoldUnresolved")
    )


def frozen_baseline_end(decision: Decision | None) -> datetime | None:
    """Where baselines must end while ``decision`` holds an incident open (None: nowhere)."""
    if decision is None or not _is_hold(decision):
        return None
    return decision.incident_start


def _same_segment(finding_segment: str, check_segment: str) -> bool:
    """Whether a drift series' segment (``segment=ios``) is a KPI series' (its labels)."""
    if finding_segment == "*":
        return False
    wanted = set(check_segment.split(","))
    return set(finding_segment.split(",")) <= wanted


def _check_text(evidence: Evidence) -> str:
    where = f" [{evidence.segment}]" if evidence.segment else ""
    value = f" {evidence.value:.4g}" if evidence.value is not None else ""
    return f"{evidence.check}{where}:{value} {evidence.detail}".strip()


def _hold_scope(assessment: Assessment) -> Scope | None:
    """What a hold is about: the broken series, and the segments of breached checks."""
    if assessment.breaks:
        return _scope(assessment.breaks)
    checks = assessment.data_quality_breached
    features = sorted({e.feature for e in checks if e.feature})
    segments = sorted({e.segment for e in checks if e.segment})
    if not features and not segments:
        return None
    return Scope(features=features, segments=segments)


class _Decider:
    def __init__(
        self,
        spec: ModelMonitorSpec,
        assessments: Sequence[Assessment],
        previous: Decision | None,
        now: datetime,
    ) -> None:
        self.spec = spec
        persistence = spec.policy.persistence
        # Assessments older than the persistence window (e.g. from before an operator outage)
        # say nothing about now: persistence must be shown again.
        horizon = parse_duration(spec.interval) * (persistence.of + 1)
        self.recent = [a for a in list(assessments)[-persistence.of :] if now - a.time <= horizon]
        self.needed = persistence.needed
        self.current = self.recent[-1]
        self.previous = previous
        self.now = now
        self.window = spec.drift.window if spec.drift else None

    def held(self, predicate: Callable[[Assessment], object]) -> bool:
        return sum(1 for a in self.recent if predicate(a)) >= self.needed

    def make(
        self,
        action: Action,
        reason: str,
        message: str,
        evidence: list[Evidence],
        scope: Scope | None = None,
        *,
        incident_start: datetime | None = None,
    ) -> Decision:
        since = self.now
        previous = self.previous
        if previous is not None and (
            (previous.action, previous.reason) == (action, reason)
            # A hold whose explanation sharpens (OutOfRange -> UnitChange) is the same hold: its
            # age, which escalation is measured by, goes on.
            or action is previous.action is Action.HOLD_FOR_DATA_QUALITY
        ):
            since = previous.since
        return Decision(
            action=action,
            reason=reason,
            message=message,
            evidence=evidence[:MAX_EVIDENCE],
            scope=scope,
            time=self.now,
            since=since,
            enforced=self.spec.mode is Mode.ENFORCE,
            incident_start=incident_start,
        )

    def decide(self) -> Decision:
        decision = self.hold() or self.unknown() or self.retrain() or self.watch() or self.healthy()
        if self._in_hold() and not _is_hold(decision):
            # Say how the hold ended: a person accepted the change, or the data recovered.
            previous = self.previous
            assert previous is not None
            acknowledged = self.spec.policy.acknowledged_at
            start = previous.incident_start
            if acknowledged is not None and start is not None and start <= acknowledged:
                ending = (
                    f"the data-quality hold ended: the change was acknowledged at {acknowledged.isoformat()}"
                )
            else:
                ending = "the data-quality hold ended: the data recovered against the pre-incident baseline"
            decision = decision.model_copy(update={"message": f"{decision.message} ({ending})"})
        return decision

    def _incident_start(self) -> datetime:
        """When the incident behind a hold began: kept while the hold lasts.

        A new hold dates it from the first assessment that saw the break, less one window: the
        broken data entered the current window up to that long before.
        """
        previous = self.previous
        if self._in_hold() and previous is not None and previous.incident_start is not None:
            return previous.incident_start
        first = next((a.time for a in self.recent if a.has_breaks()), self.now)
        lookback = parse_duration(self.window) if self.window else parse_duration(self.spec.interval)
        return first - lookback

    def _acknowledged(self, start: datetime) -> bool:
        acknowledged = self.spec.policy.acknowledged_at
        return acknowledged is not None and start <= acknowledged

    def unknown(self) -> Decision | None:
        """Nothing could be judged: say what is missing instead of calling it healthy."""
        current = self.current
        if current.informative:
            return None
        reason = current.missing_reason or "NoData"
        missing = current.missing or [Evidence(signal="missing", detail="no signal returned data")]
        shown = "; ".join(e.detail for e in missing[:3])
        more = f"; and {len(missing) - 3} more" if len(missing) > 3 else ""
        return self.make(
            Action.UNKNOWN,
            reason,
            f"no signal could be judged ({shown}{more}); nothing is decided on missing data",
            missing,
        )

    def healthy(self) -> Decision:
        current = self.current
        seen = list(current.judged)
        if not current.drift_evaluated:
            # The inputs could not be judged (a baseline still filling, no feature data):
            # healthy KPIs alone do not make the model's inputs healthy.
            drift = [e for e in current.missing if e.detail.startswith("drift ")]
            shown = "; ".join(e.detail for e in drift[:2]) or "no feature drift data"
            return self.make(
                Action.UNKNOWN,
                current.missing_reason or "NoData",
                f"feature drift could not be judged ({shown}); the signals with data are within "
                "their thresholds",
                drift + seen,
            )
        message = "every signal is within its thresholds"
        if current.missing:
            names = ", ".join(sorted({e.detail.split(":", 1)[0] for e in current.missing}))
            message = f"every signal with data is within its thresholds; without data: {names}"
        if current.layout_changes:
            features = ", ".join(sorted({e.feature or "?" for e in current.layout_changes}))
            message += f"; bucket layout changed for {features} (not drift)"
        return self.make(
            Action.NO_ACTION, "Healthy", message, seen + current.layout_changes[:2] + current.missing
        )

    def _last_breaks(self) -> Assessment:
        for assessment in reversed(self.recent):
            if assessment.has_breaks():
                return assessment
        return self.current

    def _in_hold(self) -> bool:
        previous = self.previous
        return previous is not None and (
            previous.action is Action.HOLD_FOR_DATA_QUALITY
            or (previous.action, previous.reason) == (Action.ESCALATE, "HoldUnresolved")
        )

    def _holding(self) -> bool:
        """Whether a hold in place continues: the same breaks are still seen.

        Even across a gap in the data (an operator outage): missing evaluations are no
        evidence that a pipeline was fixed. Different breaks start a new incident.
        """
        previous = self.previous
        if previous is None or not self._in_hold():
            return False
        held = {(e.feature, e.segment) for e in previous.evidence}
        seen: set[tuple[str | None, str | None]] = {(f.feature, f.segment) for f in self.current.breaks}
        seen |= {(e.feature, e.segment) for e in self.current.incident_evidence()}
        return bool(held & seen)

    def hold(self) -> Decision | None:
        current = self.current
        start = self._incident_start()
        if self._acknowledged(start):
            return None  # a person accepted the change as the new normal
        blind = not (current.drift_evaluated and current.data_quality_evaluated)
        if blind and self._in_hold() and not current.has_breaks():
            # The signals that showed the break are missing: that is no evidence of a fix.
            previous = self.previous
            assert previous is not None
            return self.make(
                previous.action,
                previous.reason,
                previous.message,
                list(previous.evidence),
                previous.scope,
                incident_start=start,
            )
        if not (self.held(Assessment.has_breaks) or (self._holding() and current.has_breaks())):
            if current.has_breaks():
                evidence = _evidence(current.breaks, "signature", self.window) + current.incident_evidence()
                persistence = self.spec.policy.persistence
                return self.make(
                    Action.WATCH,
                    "PossiblePipelineBreak",
                    f"{self._break_text(current)}; holding if it persists in {persistence.needed} of "
                    f"{persistence.of} evaluations",
                    evidence,
                )
            return None
        source = self._last_breaks()
        evidence = _evidence(source.breaks, "signature", self.window) + source.incident_evidence()
        reason = self._break_kind(source).value
        previous = self.previous
        escalated = previous is not None and (previous.action, previous.reason) == (
            Action.ESCALATE,
            "HoldUnresolved",
        )
        held_since = (
            previous.since
            if previous is not None and previous.action is Action.HOLD_FOR_DATA_QUALITY
            else self.now
        )
        limit = self.spec.policy.escalate_hold_after
        limit_reached = limit is not None and parse_duration(limit) > timedelta(0)
        if escalated or (limit_reached and self.now - held_since >= parse_duration(limit or "0s")):
            return self.make(
                Action.ESCALATE,
                "HoldUnresolved",
                f"data-quality hold unresolved for {limit}: {self._break_text(source)}; "
                "a person must fix the pipeline or acknowledge the change (evergreen acknowledge)",
                evidence,
                incident_start=start,
            )
        return self.make(
            Action.HOLD_FOR_DATA_QUALITY,
            reason,
            f"{self._break_text(source)}: a data or pipeline break, not drift (or concept drift); "
            "retraining and rollouts are frozen until it is fixed",
            evidence,
            _hold_scope(source),
            incident_start=start,
        )

    @staticmethod
    def _break_kind(assessment: Assessment) -> BreakKind:
        kinds = {f.kind for f in assessment.breaks if f.kind is not None}
        if assessment.data_quality_breached:
            kinds.add(BreakKind.DATA_QUALITY)
        if assessment.labels_stopped:
            kinds.add(BreakKind.LABELS_STOPPED)
        return next(kind for kind in _BREAK_ORDER if kind in kinds)

    def _break_text(self, assessment: Assessment) -> str:
        kind = self._break_kind(assessment)
        if kind is BreakKind.DATA_QUALITY and not assessment.breaks:
            checks = "; ".join(_check_text(e) for e in assessment.data_quality_breached[:3])
            return f"data-quality check failed ({checks})"
        if kind is BreakKind.LABELS_STOPPED:
            names = ", ".join(e.check or "?" for e in assessment.labels_stopped)
            return (
                f"labels of {names} stopped arriving while predictions continue: the label pipeline "
                "is late or broken, so the KPI says nothing about the model"
            )
        findings = [f for f in assessment.breaks if f.kind is kind] or assessment.breaks
        first = findings[0]
        return f"{kind.value} in {_where(findings)}: {first.detail}"

    def retrain(self) -> Decision | None:
        drift_persists = self.held(lambda a: a.drift)
        kpis_persist = self.held(Assessment.kpis_for_decisions)
        outputs_persist = self.held(lambda a: a.prediction_drift)
        current = self.current
        findings = current.drift or self._last(lambda a: a.drift)
        kpi_evidence = self._kpi_evidence()
        continuing = self._retrain_in_force() and (kpis_persist or (drift_persists and outputs_persist))
        if continuing:
            # One incident keeps one identity and one scope while it lasts: drift dipping below
            # its threshold for an evaluation does not turn a scoped retrain into an unscoped one.
            return self._continue_retrain(findings, kpi_evidence)
        if drift_persists and findings and (kpis_persist or outputs_persist):
            if kpis_persist:
                reason = "DriftHurtsKPIs"
                why = f"KPIs breached ({', '.join(current.kpis_for_decisions() or self._last_kpis())})"
            else:
                reason = "PredictionDrift"
                why = "the model's outputs drifted too"
            evidence = (
                _evidence(findings, "drift", self.window)
                + kpi_evidence
                + _evidence(current.prediction_drift, "predictionDrift", None)
            )
            return self.make(
                Action.RETRAIN,
                reason,
                f"real drift in {_where(findings)} persists and {why}: retrain on recent data",
                evidence,
                _scope(findings),
            )
        # "Inputs stable" must be seen, not assumed: missing drift data is no evidence of it.
        inputs_seen = all(a.drift_evaluated for a in self.recent)
        if kpis_persist and inputs_seen and not current.drift and not drift_persists:
            scope, moved = self._kpi_scope()
            where = f" in {', '.join(scope.segments)}" if scope.segments else ""
            kpis = ", ".join(current.kpis_for_decisions() or self._last_kpis())
            if scope.features:
                # The breach is confined to segments whose inputs moved there: that drift is
                # what hurts, even below critical; retrain those segments on recent data.
                return self.make(
                    Action.RETRAIN,
                    "DriftHurtsKPIs",
                    f"KPIs breached ({kpis}){where}, where {_where(moved)} moved: retrain on recent data",
                    kpi_evidence + _evidence(moved, "drift", self.window),
                    scope,
                )
            also = f" (the outputs moved there: {_where(moved)})" if moved else ""
            return self.make(
                Action.RETRAIN,
                "ConceptDrift",
                f"KPIs breached ({kpis}){where} while the inputs are stable{also}: the relationship "
                "changed; retrain on fresh labels",
                kpi_evidence + _evidence(moved, "predictionDrift", self.window),
                scope,
            )
        return None

    def _last(self, predicate: Callable[[Assessment], list[Finding]]) -> list[Finding]:
        for assessment in reversed(self.recent):
            if predicate(assessment):
                return predicate(assessment)
        return []

    def _last_kpis(self) -> list[str]:
        for assessment in reversed(self.recent):
            if assessment.kpis_for_decisions():
                return assessment.kpis_for_decisions()
        return []

    def _retrain_in_force(self) -> bool:
        previous = self.previous
        return previous is not None and (
            previous.action is Action.RETRAIN
            or (previous.action, previous.reason) == (Action.ESCALATE, "RetrainingNotHelping")
        )

    def _continue_retrain(self, findings: Sequence[Finding], kpi_evidence: list[Evidence]) -> Decision:
        previous = self.previous
        assert previous is not None
        reason = previous.reason if previous.action is Action.RETRAIN else "DriftHurtsKPIs"
        scope = previous.scope or Scope()
        if (scope.features or scope.segments) and findings:
            # A scoped incident may spread; it is never narrowed while it lasts. Drift of a
            # whole population (no segments) widens the scope to every segment.
            grown = _scope(findings)
            everywhere = not scope.segments or not grown.segments
            scope = Scope(
                features=sorted({*scope.features, *grown.features}) if scope.features else [],
                segments=[] if everywhere else sorted({*scope.segments, *grown.segments}),
            )
        evidence = _evidence(findings, "drift", self.window) + kpi_evidence
        kpis = ", ".join(self.current.kpis_for_decisions() or self._last_kpis()) or "none now"
        features = ", ".join(scope.features) or "all features"
        segments = ", ".join(scope.segments) or "all segments"
        drift = f"; drift in {_where(findings)}" if findings else ""
        return self.make(
            Action.RETRAIN,
            reason,
            f"the {reason} incident goes on (KPIs breached: {kpis}{drift}): retrain {features} in {segments}",
            evidence or list(previous.evidence),
            scope,
        )

    def _kpi_evidence(self) -> list[Evidence]:
        for assessment in reversed(self.recent):
            if assessment.kpi_evidence():
                return assessment.kpi_evidence()
        return []

    def _kpi_scope(self) -> tuple[Scope, list[Finding]]:
        """Where a KPI breach is: its segments, and the features that moved in them.

        When the KPI query returns segments and only some breach, the retrain is scoped to
        them, and to the features whose drift (at any level) co-occurs there.
        """
        breaches = self._kpi_evidence()
        segments = sorted({e.segment for e in breaches if e.segment})
        if not segments or any(e.segment is None for e in breaches):
            return Scope(), []
        current = self.current
        moved = [
            f
            for f in (*current.drift, *current.warnings, *current.sudden, *current.prediction_drift)
            if any(_same_segment(f.segment, segment) for segment in segments)
        ]
        features = sorted({f.feature for f in moved if f.feature != "prediction"})
        return Scope(features=features, segments=segments), moved

    def watch(self) -> Decision | None:
        current = self.current
        if self.held(lambda a: a.drift) and current.drift:
            evidence = _evidence(current.drift, "drift", self.window)
            if current.kpis_without_data():
                return self.make(
                    Action.WATCH,
                    "DriftImpactUnknown",
                    f"real drift in {_where(current.drift)} persists, but KPIs "
                    f"({', '.join(current.kpis_without_data())}) have no data to say whether it matters",
                    evidence,
                    _scope(current.drift),
                )
            return self.make(
                Action.WATCH,
                "DriftWithoutImpact",
                f"real drift in {_where(current.drift)} persists, but KPIs and outputs are healthy: "
                "retraining would not help yet",
                evidence,
                _scope(current.drift),
            )
        if current.drift:
            return self.make(
                Action.WATCH,
                "DriftNotPersistent",
                f"drift in {_where(current.drift)}; acting only if it persists in {self.needed} of "
                f"{self.spec.policy.persistence.of} evaluations",
                _evidence(current.drift, "drift", self.window),
            )
        if current.sudden:
            return self.make(
                Action.WATCH,
                "SuddenShift",
                f"{_where(current.sudden)} changed suddenly without a pipeline-break signature",
                _evidence(current.sudden, "step", self.window),
            )
        if current.kpis_for_decisions():
            return self.make(
                Action.WATCH,
                "KPIBreachNotPersistent",
                f"KPIs breached ({', '.join(current.kpis_for_decisions())}); acting only if it persists",
                current.kpi_evidence(),
            )
        if current.prediction_drift:
            return self.make(
                Action.WATCH,
                "PredictionDrift",
                f"the model's outputs drifted in {_where(current.prediction_drift)}",
                _evidence(current.prediction_drift, "predictionDrift", None),
            )
        if current.warnings:
            return self.make(
                Action.WATCH,
                "DriftWarning",
                f"drift at warning level in {_where(current.warnings)}",
                _evidence(current.warnings, "drift", self.window),
            )
        return None


def _with_untrusted_estimates(decision: Decision, assessments: Sequence[Assessment]) -> Decision:
    """Say which KPI estimates were left out of the decision, and the gap that made them untrusted."""
    untrusted = assessments[-1].estimates_untrusted
    if not untrusted:
        return decision
    names = ", ".join(estimated_name(name) for name in untrusted)
    found = (calibration_evidence(assessments, name) for name in untrusted)
    evidence = [e for e in found if e is not None]
    room = max(MAX_EVIDENCE - len(evidence), 0)
    return decision.model_copy(
        update={
            "message": f"{decision.message}; not used (calibration drift: the estimate disagrees "
            f"with the labels): {names}",
            "evidence": [*decision.evidence[:room], *evidence][:MAX_EVIDENCE],
        }
    )


def decide(
    spec: ModelMonitorSpec,
    assessments: Sequence[Assessment],
    previous: Decision | None,
    now: datetime,
    *,
    retraining_gave_up: bool = False,
) -> Decision:
    """The decision for the newest assessment (``assessments`` oldest first, newest last).

    When retraining has given up (``giveUpAfter`` runs in a row rejected or failed), what would
    be a Retrain is an **Escalate** (``RetrainingNotHelping``): the concept may have moved
    beyond what retraining can fix; feature work or a person is needed.
    """
    if not assessments:
        raise ValueError("deciding needs at least one assessment")
    decider = _Decider(spec, assessments, previous, now)
    decision = _with_untrusted_estimates(decider.decide(), assessments)
    if retraining_gave_up and decision.action is Action.RETRAIN:
        return decider.make(
            Action.ESCALATE,
            "RetrainingNotHelping",
            f"{decision.message}; but recent retraining runs were rejected or failed, so retraining "
            "is not helping: the concept may have moved beyond it (feature work needed)",
            list(decision.evidence),
            decision.scope,
        )
    return decision
