"""Decisions and the assessments they rest on, as they appear in status.

One structure carries a decision's reason code and evidence; status, Events, logs, metrics
and the CLI all render it, so every surface tells the same story.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from evergreen.api.base import StatusModel


def estimated_name(name: str) -> str:
    """How an estimated KPI is named wherever it is shown beside measured ones."""
    return f"{name} (estimated)"


class Action(StrEnum):
    """What the engine decided."""

    #: Everything is within bounds.
    NO_ACTION = "NoAction"
    #: Something moved, but it is not (yet) persistent or not (yet) harmful.
    WATCH = "Watch"
    #: A data or pipeline break: alert, and freeze retraining and rollouts for this model.
    HOLD_FOR_DATA_QUALITY = "HoldForDataQuality"
    #: Real drift that matters (or a concept change): retrain, scoped to what drifted.
    RETRAIN = "Retrain"
    #: A person is needed.
    ESCALATE = "Escalate"
    #: Nothing could be judged (no data, a rejected query, a baseline still filling): the
    #: engine does not know, and says what is missing. Never acted on.
    UNKNOWN = "Unknown"


class BreakKind(StrEnum):
    """Signatures of a broken data pipeline (as opposed to a changed world)."""

    UNIT_CHANGE = "UnitChange"
    COLLAPSED = "FeatureCollapsed"
    OUT_OF_RANGE = "OutOfRange"
    SEGMENT_BREAK = "SegmentBreak"
    UPSTREAM_CHANGE = "UpstreamChange"
    DATA_QUALITY = "DataQualityCheckFailed"
    #: A KPI's labels stopped arriving while predictions flow: the labels are late or lost.
    LABELS_STOPPED = "LabelPipelineStopped"


class Evidence(StatusModel):
    """One fact a decision rests on."""

    signal: str = Field(
        description="drift, predictionDrift, step, signature, kpi, kpiEstimate (a KPI estimated "
        "from prediction scores), calibration, dataQuality, labels or missing"
    )
    check: str | None = Field(default=None, description="The KPI or data-quality check's name.")
    feature: str | None = None
    segment: str | None = None
    value: float | None = None
    threshold: float | None = None
    window: str | None = None
    detail: str = ""

    def render(self) -> str:
        where = " ".join(
            part
            for part in (
                self.feature or "",
                f"[{self.segment}]" if self.segment else "",
            )
            if part
        )
        numbers = ""
        if self.value is not None:
            numbers = f"{self.value:.4g}"
            if self.threshold is not None:
                numbers += f" vs {self.threshold:.4g}"
        parts = [p for p in (self.signal + ":", self.check or "", where, numbers, self.detail) if p]
        return " ".join(parts)


class Finding(StatusModel):
    """One series that moved, and how it was classified."""

    feature: str
    segment: str
    score: float
    threshold: float
    samples: float
    step: float | None = Field(default=None, description="Drift between consecutive windows.")
    kind: BreakKind | None = Field(default=None, description="Set when it is a pipeline break.")
    detail: str = ""

    @property
    def key(self) -> str:
        return f"{self.feature}|{self.segment}"


class Assessment(StatusModel):
    """What one evaluation showed once noise control and signatures were applied."""

    time: datetime
    breaks: list[Finding] = Field(default_factory=list, description="Pipeline breaks.")
    drift: list[Finding] = Field(default_factory=list, description="Real drift at critical.")
    warnings: list[Finding] = Field(default_factory=list, description="Drift at warning.")
    sudden: list[Finding] = Field(default_factory=list, description="Step changes without a break signature.")
    prediction_drift: list[Finding] = Field(default_factory=list)
    kpis_breached: list[str] = Field(default_factory=list)
    kpi_breaches: list[Evidence] = Field(
        default_factory=list, description="Every breached KPI series (with hysteresis)."
    )
    kpis_unknown: list[str] = Field(default_factory=list)
    data_quality_breached: list[Evidence] = Field(default_factory=list)
    drift_evaluated: bool = True
    data_quality_evaluated: bool = True
    informative: bool = Field(default=True, description="At least one signal could be judged.")
    judged: list[Evidence] = Field(
        default_factory=list, description="The signals that could be judged, with their values."
    )
    missing: list[Evidence] = Field(
        default_factory=list, description="Signals without a value, and why (signal 'missing')."
    )
    missing_reason: str | None = Field(
        default=None, description="The reason code when nothing could be judged, e.g. NoData."
    )

    layout_changes: list[Evidence] = Field(
        default_factory=list, description="Series whose bucket layout changed (informational)."
    )
    labels_flowing: list[str] = Field(
        default_factory=list, description="KPIs (with labelsQuery) whose labels arrive."
    )
    labels_stopped: list[Evidence] = Field(
        default_factory=list, description="KPIs whose labels stopped while predictions flow."
    )
    estimates_breached: list[str] = Field(
        default_factory=list, description="KPIs whose estimate from prediction scores is breached."
    )
    estimate_breaches: list[Evidence] = Field(
        default_factory=list,
        description="Every breached series of an estimated KPI (signal kpiEstimate, with hysteresis).",
    )
    estimates_judged: list[str] = Field(
        default_factory=list, description="KPIs whose estimate could be judged (breached or not)."
    )
    calibration_drift: list[Evidence] = Field(
        default_factory=list,
        description="Estimates whose labelled window, measured, differs beyond tolerance "
        "(signal calibration).",
    )
    calibration_held: list[str] = Field(
        default_factory=list, description="Estimates whose labelled window, measured, is within tolerance."
    )
    estimates_untrusted: list[str] = Field(
        default_factory=list,
        description="Estimates not used for decisions: their calibration drift persists (or has not "
        "been seen to close since).",
    )

    def kpis_for_decisions(self) -> list[str]:
        """Breached KPIs, measured or estimated (by a trusted estimate), by display name."""
        estimated = [
            estimated_name(name) for name in self.estimates_breached if name not in self.estimates_untrusted
        ]
        return [*self.kpis_breached, *estimated]

    def kpi_evidence(self) -> list[Evidence]:
        """Every breached KPI series a decision may rest on, trusted estimates included."""
        trusted = [e for e in self.estimate_breaches if e.check not in self.estimates_untrusted]
        return [*self.kpi_breaches, *trusted]

    def kpis_without_data(self) -> list[str]:
        """KPIs without data whose impact no trusted estimate tells either."""
        known = set(self.estimates_judged) - set(self.estimates_untrusted)
        return [name for name in self.kpis_unknown if name not in known]

    def has_breaks(self) -> bool:
        return bool(self.breaks or self.data_quality_breached or self.labels_stopped)

    def incident_evidence(self) -> list[Evidence]:
        """The data-quality and label-pipeline facts of a break (drift findings aside)."""
        return [*self.data_quality_breached, *self.labels_stopped]


class Scope(StatusModel):
    """What a retraining should target; empty lists mean everything."""

    features: list[str] = Field(default_factory=list)
    segments: list[str] = Field(default_factory=list)


class Decision(StatusModel):
    """The current decision, with its reason code and evidence."""

    action: Action
    reason: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    message: str
    evidence: list[Evidence] = Field(default_factory=list)
    scope: Scope | None = None
    time: datetime = Field(description="When this decision was last confirmed.")
    since: datetime = Field(description="When this action and reason were first decided.")
    enforced: bool = Field(description="False in Observe mode: decided and explained, not acted on.")
    incident_start: datetime | None = Field(
        default=None,
        description="Holds: when the incident began; baselines stay before it while it is open.",
    )

    def same_as(self, other: Decision | None) -> bool:
        return other is not None and (self.action, self.reason) == (other.action, other.reason)


class DecisionRecord(StatusModel):
    """A past decision in the bounded history."""

    action: Action
    reason: str
    message: str
    since: datetime
    until: datetime | None = None
