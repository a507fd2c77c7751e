"""Status conditions from an evaluation, following the Kubernetes API conventions.

The full list is written each time (a merge patch replaces lists); ``lastTransitionTime``
moves only when a condition's status flips, so it tells how long a state has held.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from evergreen.api.decisions import Assessment
from evergreen.api.spec import ModelMonitorSpec
from evergreen.api.status import (
    CheckOutcome,
    CheckState,
    Condition,
    ConditionStatus,
    ConditionType,
    Severity,
)
from evergreen.observation.checks import counts_for_conditions
from evergreen.observation.evaluate import DriftResult, Evaluation, ProblemKind, SignalProblem

T, F, U = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN

#: The order conditions appear in status: the summary first.
ORDER = [
    ConditionType.READY,
    ConditionType.METRICS_AVAILABLE,
    ConditionType.DRIFTING,
    ConditionType.PREDICTION_DRIFTING,
    ConditionType.DATA_QUALITY_DEGRADED,
    ConditionType.KPI_BREACHED,
    ConditionType.ESTIMATE_TRUSTED,
    ConditionType.RETRAINING,
    ConditionType.ROLLOUT,
]


@dataclass(frozen=True)
class ConditionDraft:
    """A condition before timestamps: what it says now."""

    type: ConditionType
    status: ConditionStatus
    reason: str
    message: str
    #: The condition no longer applies (its feature was removed from the spec): drop it.
    retire: bool = False


def merge_conditions(
    previous: Sequence[Condition],
    drafts: Sequence[ConditionDraft],
    *,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Apply drafts over the previous list, keeping transition times of unchanged statuses.

    Conditions without a draft are kept as they were (e.g. Drifting during an outage still
    describes the last evaluation that had data).
    """
    by_type = {c.type: c for c in previous}
    for draft in drafts:
        if draft.retire:
            by_type.pop(draft.type, None)
            continue
        old = by_type.get(draft.type)
        transition = old.last_transition_time if old is not None and old.status == draft.status else now
        by_type[draft.type] = Condition(
            type=draft.type,
            status=draft.status,
            reason=draft.reason,
            message=draft.message,
            last_transition_time=transition,
            observed_generation=generation,
        )
    rank = {kind.value: i for i, kind in enumerate(ORDER)}
    return sorted(by_type.values(), key=lambda c: (rank.get(c.type, len(rank)), c.type))


def _problem_text(problems: Sequence[SignalProblem], limit: int = 3) -> str:
    text = "; ".join(f"{p.field}: {p.message}" for p in problems[:limit])
    if len(problems) > limit:
        text += f"; and {len(problems) - limit} more"
    return text


def spec_error_drafts(reason: str, message: str) -> list[ConditionDraft]:
    """The monitor cannot be evaluated (invalid spec, missing Secret, internal error): only Ready
    changes; the others keep describing the last good evaluation."""
    return [ConditionDraft(ConditionType.READY, F, reason, message)]


def unavailable_drafts(evaluation: Evaluation) -> list[ConditionDraft]:
    """Prometheus could not be read: say so, and leave every signal condition as it was."""
    problems = [p for p in evaluation.problems if p.kind is ProblemKind.UNAVAILABLE]
    message = _problem_text(problems) + " (last good evaluation kept)"
    return [
        ConditionDraft(ConditionType.READY, F, "PrometheusUnavailable", message),
        ConditionDraft(ConditionType.METRICS_AVAILABLE, F, "PrometheusUnavailable", message),
    ]


def _drift_draft(
    kind: ConditionType,
    configured: bool,
    result: DriftResult | None,
    problems: Sequence[SignalProblem],
    label: str,
) -> ConditionDraft:
    if not configured:
        return ConditionDraft(kind, F, "NotConfigured", f"no {label} drift is configured")
    if result is None:
        kinds = {p.kind for p in problems}
        reason = (
            "InvalidQuery"
            if ProblemKind.REJECTED in kinds
            else "BaselineNotReady"
            if kinds == {ProblemKind.BASELINE_NOT_READY}
            else "NoData"
        )
        return ConditionDraft(kind, U, reason, _problem_text(problems) or "not evaluated")
    judged = result.judged()
    critical = [row for row in judged if row.severity is Severity.CRITICAL]
    warning = [row for row in judged if row.severity is Severity.WARNING]
    method = result.config.method.value
    if critical:
        worst = critical[0]
        more = f"; {len(critical) - 1} more series critical" if len(critical) > 1 else ""
        return ConditionDraft(
            kind,
            T,
            "DriftCritical",
            f"{worst.feature} [{worst.segment}]: {method} {worst.score:.3g} >= critical "
            f"{result.config.critical:g} (n_eff {worst.samples:.0f}){more}",
        )
    if warning:
        worst = warning[0]
        more = f"; {len(warning) - 1} more series warning" if len(warning) > 1 else ""
        return ConditionDraft(
            kind,
            F,
            "DriftWarning",
            f"{worst.feature} [{worst.segment}]: {method} {worst.score:.3g} >= warning "
            f"{result.config.warning:g} (n_eff {worst.samples:.0f}){more}",
        )
    series = len(result.series())
    return ConditionDraft(
        kind,
        F,
        "WithinThresholds",
        f"{series} series below warning {result.config.warning:g} ({method})",
    )


def _checks_draft(
    kind: ConditionType,
    outcomes: Sequence[CheckOutcome],
    counted: Sequence[bool],
    breached_reason: str,
    label: str,
) -> ConditionDraft:
    relevant = [o for o, use in zip(outcomes, counted, strict=True) if use]
    if not outcomes:
        return ConditionDraft(kind, F, "NotConfigured", f"no {label} are configured")
    breached = [o for o in relevant if o.state is CheckState.BREACHED]
    if breached:
        text = "; ".join(f"{o.name}: {o.message}" for o in breached[:3])
        return ConditionDraft(kind, T, breached_reason, text)
    errors = [o for o in relevant if o.state is CheckState.ERROR]
    missing = [o for o in relevant if o.state is CheckState.NO_DATA]
    if errors:
        return ConditionDraft(
            kind, U, "InvalidQuery", "; ".join(f"{o.name}: {o.message}" for o in errors[:3])
        )
    if missing:
        return ConditionDraft(kind, U, "NoData", "; ".join(f"{o.name}: no data" for o in missing[:3]))
    return ConditionDraft(kind, F, "WithinBounds", f"{len(relevant)} {label} within bounds")


def _missing_reason(missing: Sequence[SignalProblem]) -> str:
    """``BaselineNotReady`` when only baselines are missing (a warm-up), else ``NoData``."""
    if all(p.kind is ProblemKind.BASELINE_NOT_READY for p in missing):
        return "BaselineNotReady"
    return "NoData"


def _estimates_draft(
    spec: ModelMonitorSpec, evaluation: Evaluation, assessment: Assessment | None
) -> ConditionDraft:
    """Whether KPI estimates still agree with the labels once they arrive (see policy.calibration)."""
    kind = ConditionType.ESTIMATE_TRUSTED
    declared = [kpi.name for kpi in spec.kpis if kpi.estimate is not None]
    if not declared:
        return ConditionDraft(kind, F, "NotConfigured", "", retire=True)
    checks = {o.name: o.calibration for o in evaluation.estimates if o.calibration is not None}
    untrusted = list(assessment.estimates_untrusted) if assessment is not None else []
    if untrusted:
        parts = []
        for name in untrusted[:3]:
            check = checks.get(name)
            seen = check.message if check is not None and check.message else "no labelled window compared now"
            parts.append(f"{name}: {seen}")
        return ConditionDraft(
            kind,
            F,
            "CalibrationDrift",
            "; ".join(parts) + " — the estimate differs from the labels persistently, so it is not used "
            "for decisions until the gap is seen within tolerance again",
        )
    compared = {name: check for name, check in checks.items() if check.gap is not None}
    if not compared:
        return ConditionDraft(
            kind,
            T,
            "NotComparedYet",
            f"no labelled window to compare yet for {', '.join(declared)}: the estimates are used as "
            "declared (scores taken as calibrated)",
        )
    text = "; ".join(f"{name}: {check.message}" for name, check in list(compared.items())[:3])
    return ConditionDraft(kind, T, "CalibrationHeld", text)


def evaluation_drafts(
    spec: ModelMonitorSpec, evaluation: Evaluation, assessment: Assessment | None = None
) -> list[ConditionDraft]:
    """Every condition after an evaluation that reached Prometheus.

    ``assessment`` (the policy's, for this evaluation) says which KPI estimates are trusted.
    """
    problems = evaluation.problems
    rejected = [p for p in problems if p.kind is ProblemKind.REJECTED]
    invalid = [p for p in problems if p.kind is ProblemKind.INVALID]
    missing = [p for p in problems if p.kind in (ProblemKind.NO_DATA, ProblemKind.BASELINE_NOT_READY)]

    def problems_of(prefix: str) -> list[SignalProblem]:
        return [p for p in problems if p.field.startswith(prefix)]

    signals = (
        int(spec.drift is not None)
        + int(spec.prediction_drift is not None)
        + len(spec.data_quality)
        + len(spec.kpis)
        + len(evaluation.estimates)
    )
    if rejected:
        ready = ConditionDraft(ConditionType.READY, F, "InvalidQuery", _problem_text(rejected))
    elif invalid:
        ready = ConditionDraft(ConditionType.READY, F, "UnusableMetrics", _problem_text(invalid))
    elif len(missing) >= signals:
        ready = ConditionDraft(ConditionType.READY, F, _missing_reason(missing), _problem_text(missing))
    else:
        ready = ConditionDraft(
            ConditionType.READY,
            T,
            "Evaluated",
            # No time here: the message must not change while nothing else does (when the
            # last evaluation ran is status.lastEvaluation.time).
            f"{evaluation.queries} queries answered",
        )
    if rejected or invalid:
        # A query Prometheus refused (or answered unusably) returned no data either.
        unanswered = [*rejected, *invalid, *missing]
        reason = "InvalidQuery" if rejected else "UnusableMetrics"
        metrics = ConditionDraft(ConditionType.METRICS_AVAILABLE, F, reason, _problem_text(unanswered))
    elif missing:
        metrics = ConditionDraft(
            ConditionType.METRICS_AVAILABLE, F, _missing_reason(missing), _problem_text(missing)
        )
    else:
        metrics = ConditionDraft(
            ConditionType.METRICS_AVAILABLE, T, "AllSignalsReported", "every query returned data"
        )

    quality_use = [True] * len(spec.data_quality)
    kpi_use = [counts_for_conditions(k, o) for k, o in zip(spec.kpis, evaluation.kpis, strict=True)]
    return [
        ready,
        metrics,
        _drift_draft(
            ConditionType.DRIFTING,
            spec.drift is not None,
            evaluation.drift,
            problems_of("spec.drift"),
            "feature",
        ),
        _drift_draft(
            ConditionType.PREDICTION_DRIFTING,
            spec.prediction_drift is not None,
            evaluation.prediction_drift,
            problems_of("spec.predictionDrift"),
            "prediction",
        ),
        _checks_draft(
            ConditionType.DATA_QUALITY_DEGRADED,
            evaluation.data_quality,
            quality_use,
            "ChecksBreached",
            "data-quality checks",
        ),
        _kpis_draft(spec, evaluation, kpi_use, assessment),
        _estimates_draft(spec, evaluation, assessment),
    ]


def _kpis_draft(
    spec: ModelMonitorSpec, evaluation: Evaluation, kpi_use: Sequence[bool], assessment: Assessment | None
) -> ConditionDraft:
    """KPIBreached: measured KPIs, and trusted estimates named as such."""
    untrusted = set(assessment.estimates_untrusted) if assessment is not None else set()
    estimates = [
        o.model_copy(update={"name": o.display_name})
        for o in evaluation.estimates
        if o.name not in untrusted and o.state is CheckState.BREACHED
    ]
    # An estimate adds a breach; it never makes measured KPIs look unknown or healthy.
    return _checks_draft(
        ConditionType.KPI_BREACHED,
        [*evaluation.kpis, *estimates],
        [*kpi_use, *([True] * len(estimates))],
        "KPIOutOfBounds",
        "KPIs",
    )
