"""Kubernetes Events for condition transitions: one Event per change, never one per evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from evergreen.api.decisions import Action, Assessment, Decision
from evergreen.api.status import Condition, ConditionStatus, ConditionType


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class EventRecord:
    """An Event to post about the ModelMonitor."""

    type: EventType
    reason: str
    message: str


#: condition type -> (reason when it becomes True, reason when it returns to False)
_SIGNALS: dict[str, tuple[str, str]] = {
    ConditionType.DRIFTING: ("DriftDetected", "DriftResolved"),
    ConditionType.PREDICTION_DRIFTING: ("PredictionDriftDetected", "PredictionDriftResolved"),
    ConditionType.DATA_QUALITY_DEGRADED: ("DataQualityDegraded", "DataQualityRestored"),
    ConditionType.KPI_BREACHED: ("KPIBreached", "KPIRecovered"),
}


def transition_events(previous: Sequence[Condition], current: Sequence[Condition]) -> list[EventRecord]:
    """Events for every condition whose status (or, for failures, reason) changed."""
    before = {c.type: c for c in previous}
    events: list[EventRecord] = []
    for condition in current:
        old = before.get(condition.type)
        old_status = old.status if old is not None else None
        status = condition.status
        if condition.type in _SIGNALS:
            raised, cleared = _SIGNALS[condition.type]
            if status is ConditionStatus.TRUE and old_status is not ConditionStatus.TRUE:
                events.append(EventRecord(EventType.WARNING, raised, condition.message))
            elif status is ConditionStatus.FALSE and old_status is ConditionStatus.TRUE:
                events.append(EventRecord(EventType.NORMAL, cleared, condition.message))
        elif condition.type == ConditionType.ESTIMATE_TRUSTED:
            if status is ConditionStatus.FALSE and old_status is not ConditionStatus.FALSE:
                events.append(EventRecord(EventType.WARNING, condition.reason, condition.message))
            elif status is ConditionStatus.TRUE and old_status is ConditionStatus.FALSE:
                events.append(EventRecord(EventType.NORMAL, "CalibrationRestored", condition.message))
        elif condition.type == ConditionType.METRICS_AVAILABLE:
            if status is ConditionStatus.FALSE and (
                old is None or old.status is not ConditionStatus.FALSE or old.reason != condition.reason
            ):
                reason = (
                    "PrometheusUnavailable"
                    if condition.reason == "PrometheusUnavailable"
                    else "MetricsMissing"
                )
                events.append(EventRecord(EventType.WARNING, reason, condition.message))
            elif status is ConditionStatus.TRUE and old_status is ConditionStatus.FALSE:
                events.append(EventRecord(EventType.NORMAL, "MetricsRestored", condition.message))
        elif condition.type == ConditionType.READY:
            failing = condition.reason in (
                "InvalidSpec",
                "InvalidQuery",
                "UnusableMetrics",
                "MissingReference",
                "InternalError",
            )
            changed = old is None or old.status != status or old.message != condition.message
            if status is ConditionStatus.FALSE and failing and changed:
                events.append(EventRecord(EventType.WARNING, condition.reason, condition.message))
            elif status is ConditionStatus.TRUE and old_status is not ConditionStatus.TRUE:
                events.append(EventRecord(EventType.NORMAL, "MonitorReady", condition.message))
    return events


#: Decisions that ask someone to look (or would act) are Warnings; the rest are Normal. Unknown
#: is a Warning: a monitor that cannot see is not watching the model.
_URGENT = {Action.HOLD_FOR_DATA_QUALITY, Action.RETRAIN, Action.ESCALATE, Action.UNKNOWN}


def decision_events(previous: Decision | None, current: Decision | None) -> list[EventRecord]:
    """One Event when the decision's action or reason changes; its reason is the reason code."""
    if current is None or current.same_as(previous):
        return []
    if previous is None and current.action is Action.NO_ACTION:
        return []  # a healthy first decision is not news
    kind = EventType.WARNING if current.action in _URGENT else EventType.NORMAL
    suffix = "" if current.enforced else " (Observe mode: decided, not acted on)"
    return [EventRecord(kind, current.reason, f"{current.action.value}: {current.message}{suffix}")]


def layout_events(previous: Assessment | None, current: Assessment | None) -> list[EventRecord]:
    """One informational Event when features' bucket layouts change (never a drift alert)."""
    if current is None or not current.layout_changes:
        return []
    known = {e.feature for e in previous.layout_changes} if previous is not None else set()
    new = sorted({e.feature or "?" for e in current.layout_changes if e.feature not in known})
    if not new:
        return []
    detail = current.layout_changes[0].detail
    return [
        EventRecord(
            EventType.NORMAL,
            "BucketLayoutChanged",
            f"the exporter changed the histogram buckets of {', '.join(new)}: {detail}",
        )
    ]
