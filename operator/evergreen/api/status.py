"""What the operator reports: ``ModelMonitor.status``.

Conditions follow the Kubernetes API conventions (``metav1.Condition``). The evaluation
summary is bounded (top N series) so a model with thousands of feature × segment series
never produces an oversized object.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from evergreen.api.base import StatusModel
from evergreen.api.decisions import Assessment, Decision, DecisionRecord, estimated_name
from evergreen.api.delivery import HoldStatus, RolloutStatus
from evergreen.api.retraining import RetrainingStatus


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    """The conditions every ModelMonitor carries."""

    #: Summary: the last evaluation ran on a valid spec with every query answered.
    READY = "Ready"
    #: Prometheus answered and returned data for every signal.
    METRICS_AVAILABLE = "MetricsAvailable"
    #: A feature (or segment) drifted beyond the critical threshold.
    DRIFTING = "Drifting"
    #: The model's output distribution drifted beyond the critical threshold.
    PREDICTION_DRIFTING = "PredictionDrifting"
    #: A data-quality check is out of bounds.
    DATA_QUALITY_DEGRADED = "DataQualityDegraded"
    #: A KPI is out of bounds.
    KPI_BREACHED = "KPIBreached"
    #: A retraining run is in progress (False says why not: idle, blocked, given up).
    RETRAINING = "Retraining"
    #: A candidate version is being rolled out (False: idle, or how the last one ended).
    ROLLOUT = "Rollout"
    #: KPI estimates from prediction scores agree with the labels once they arrive (False:
    #: calibration drift; the estimates are not used for decisions).
    ESTIMATE_TRUSTED = "EstimateTrusted"


class Condition(StatusModel):
    """One ``metav1.Condition``."""

    type: str
    status: ConditionStatus
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: datetime
    observed_generation: int | None = None


class Severity(StrEnum):
    OK = "OK"
    WARNING = "Warning"
    CRITICAL = "Critical"
    NO_DATA = "NoData"


class SeriesDrift(StatusModel):
    """The drift of one feature within one segment (``*`` for the whole population)."""

    feature: str
    segment: str
    score: float
    severity: Severity
    samples: float = Field(description="Effective sample size of the comparison.")
    low_samples: bool = Field(default=False, description="Fewer effective samples than minSamples.")


class DriftSummary(StatusModel):
    """Drift of one histogram family at one evaluation."""

    method: str
    series: int = Field(description="Series compared (features × segments, plus totals).")
    no_data: int = Field(description="Series with no traffic in one of the windows.")
    baseline_not_ready: int = Field(
        default=0, description="Series whose baseline does not hold minSamples yet (not judged)."
    )
    warning: int
    critical: int
    max_score: float | None = None
    top: list[SeriesDrift] = Field(default_factory=list, description="Highest scores first.")


class CheckState(StrEnum):
    OK = "OK"
    BREACHED = "Breached"
    NO_DATA = "NoData"
    ERROR = "Error"


class CheckSeries(StatusModel):
    """One series a check or KPI query returned."""

    labels: dict[str, str] = Field(default_factory=dict)
    value: float | None = Field(default=None, description="None for an infinite value.")
    breached: bool = False
    samples: float | None = Field(default=None, description="Observations it rests on (samplesQuery).")


class CalibrationCheck(StatusModel):
    """An estimate of a window whose labels are complete now, against the KPI measured on it."""

    window_end: datetime = Field(description="End of the labelled window compared.")
    gap: float | None = Field(
        default=None, description="Largest |estimate - measured| over the compared series."
    )
    tolerance: float
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of that series.")
    estimate: float | None = None
    measured: float | None = None
    series: int = Field(default=0, description="Series compared.")
    message: str | None = None

    @property
    def drifted(self) -> bool:
        return self.gap is not None and self.gap > self.tolerance


class CheckOutcome(StatusModel):
    """A data-quality check or KPI: its value and whether it is within bounds."""

    name: str
    state: CheckState
    value: float | None = Field(default=None, description="The worst value among the series.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of that series.")
    min: float | None = None
    max: float | None = None
    breached_series: int = 0
    message: str | None = None
    series: list[CheckSeries] = Field(
        default_factory=list, description="Every series, the worst first (at most 20)."
    )
    label_rate: float | None = Field(
        default=None, description="KPIs with labelsQuery: the rate at which labels arrive now."
    )
    estimated: bool = Field(
        default=False, description="An estimate from prediction scores, not a measurement from labels."
    )
    calibration: CalibrationCheck | None = Field(
        default=None, description="Estimates: the last labelled window, estimated and measured."
    )

    @property
    def display_name(self) -> str:
        """The name as people read it: an estimate says so."""
        return estimated_name(self.name) if self.estimated else self.name


class EvaluationSummary(StatusModel):
    """The bounded record of one evaluation."""

    time: datetime
    duration_seconds: float
    queries: int
    drift: DriftSummary | None = None
    prediction_drift: DriftSummary | None = None
    data_quality: list[CheckOutcome] = Field(default_factory=list)
    kpis: list[CheckOutcome] = Field(default_factory=list)
    estimates: list[CheckOutcome] = Field(
        default_factory=list, description="KPIs estimated from prediction scores (estimated: true)."
    )


class ModelMonitorStatus(StatusModel):
    """The status subresource, written whole on every evaluation attempt."""

    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    last_evaluation: EvaluationSummary | None = Field(
        default=None, description="The last evaluation that produced data (kept during outages)."
    )
    last_attempt_time: datetime | None = None
    next_evaluation_time: datetime | None = None
    decision: Decision | None = None
    history: list[DecisionRecord] = Field(
        default_factory=list, description="Earlier decisions, newest last (bounded)."
    )
    current_version: str | None = Field(default=None, description="The version serving now.")
    declared_version: str | None = Field(
        default=None, description="The spec.currentVersion last seen (a change of it wins)."
    )
    previous_version: str | None = Field(
        default=None, description="The version served before the last promotion."
    )
    baseline_anchor: datetime | None = Field(
        default=None, description="Drift baselines start here (the last promotion)."
    )
    rollout: RolloutStatus = Field(default_factory=RolloutStatus)
    holds: list[HoldStatus] = Field(default_factory=list)
    serving_rollout: dict[str, Any] | None = Field(
        default=None,
        description="The spec.rollout Evergreen serves versions by (kept so it can give the team's "
        "objects back even when spec.rollout is removed or broken).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    serving: dict[str, int] = Field(
        default_factory=dict, description="Replicas per version Evergreen runs (for exact rollback)."
    )
    retraining: RetrainingStatus = Field(default_factory=RetrainingStatus)
    assessments: list[Assessment] = Field(
        default_factory=list, description="The last evaluations' assessments, for persistence (bounded)."
    )
