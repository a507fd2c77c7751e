"""The desired state a team declares: ``ModelMonitor.spec``.

Defined once here; the CRD's OpenAPI schema is generated from these models
(``evergreen crd``), so the API server and the operator validate the same rules.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import AwareDatetime, Field, model_validator

from evergreen.analysis.drift import DriftMethod
from evergreen.analysis.estimation import EstimatedMetric
from evergreen.api.base import (
    CHECK_NAME_PATTERN,
    LABEL_NAME_PATTERN,
    METRIC_NAME_PATTERN,
    NO_SPACE_PATTERN,
    OBJECT_NAME_PATTERN,
    URL_PATTERN,
    VERSION_PATTERN,
    ApiModel,
    ConfigMapKeyRef,
    Flag,
    HeaderMap,
    Integer,
    LabelMap,
    Number,
    SecretKeyRef,
)
from evergreen.api.delivery import RolloutSpec, VersionHold
from evergreen.api.durations import Duration, parse_duration
from evergreen.api.retraining import RetrainingSpec

__all__ = [
    "BasicAuth",
    "DataQualityCheck",
    "DecisionPolicy",
    "DriftBaseline",
    "DriftMethod",
    "EstimatedMetric",
    "FeatureDrift",
    "Kpi",
    "KpiEstimate",
    "Mode",
    "ModelMonitorSpec",
    "NoDataPolicy",
    "Persistence",
    "PredictionDrift",
    "PrometheusEndpoint",
    "TlsConfig",
]

LabelName = Annotated[str, Field(pattern=LABEL_NAME_PATTERN, max_length=128)]
CheckName = Annotated[str, Field(pattern=CHECK_NAME_PATTERN, max_length=63)]


class Mode(StrEnum):
    """Whether the operator acts on its decisions or only explains them."""

    ENFORCE = "Enforce"
    OBSERVE = "Observe"


class NoDataPolicy(StrEnum):
    """What a KPI without data means."""

    #: Unknown: nothing that depends on this KPI may proceed (the safe default).
    HOLD = "Hold"
    #: Count the missing KPI as breached.
    BREACH = "Breach"
    #: Leave the KPI out of every decision.
    IGNORE = "Ignore"


class BasicAuth(ApiModel):
    """HTTP basic authentication from a Secret."""

    username: SecretKeyRef
    password: SecretKeyRef


class TlsConfig(ApiModel):
    """How to trust the Prometheus server's certificate."""

    ca_config_map: ConfigMapKeyRef | None = Field(
        default=None, description="A ConfigMap key holding the PEM CA bundle."
    )
    ca_secret: SecretKeyRef | None = Field(
        default=None, description="A Secret key holding the PEM CA bundle."
    )
    insecure_skip_verify: Flag = Field(
        default=False, description="Do not verify the server certificate (testing only)."
    )

    @model_validator(mode="after")
    def _one_ca(self) -> Self:
        if self.ca_config_map is not None and self.ca_secret is not None:
            raise ValueError("set at most one of caConfigMap and caSecret")
        return self


class PrometheusEndpoint(ApiModel):
    """Where this monitor's metrics live; omit it to use the operator-wide default."""

    url: str = Field(
        pattern=URL_PATTERN,
        max_length=2048,
        description="Base URL of the Prometheus-compatible API (Prometheus, Thanos, Mimir, Cortex).",
    )
    headers: HeaderMap = Field(
        default_factory=dict,
        description="Extra HTTP headers, e.g. X-Scope-OrgID for multi-tenant Mimir/Cortex/Thanos.",
    )
    bearer_token_secret: SecretKeyRef | None = Field(
        default=None, description="A Secret key holding a bearer token."
    )
    basic_auth: BasicAuth | None = None
    tls: TlsConfig | None = None
    timeout: Duration = Field(default="30s", description="Timeout of one query.")

    @model_validator(mode="after")
    def _one_auth(self) -> Self:
        if self.bearer_token_secret is not None and self.basic_auth is not None:
            raise ValueError("set at most one of bearerTokenSecret and basicAuth")
        if "authorization" in {name.lower() for name in self.headers}:
            raise ValueError("put credentials in bearerTokenSecret or basicAuth, not in headers")
        return self


class DriftBaseline(ApiModel):
    """What the current window is compared with: a past window, or reference histograms."""

    offset: Duration | None = Field(
        default=None, description="How far back the baseline window ends (e.g. 7d)."
    )
    window: Duration | None = Field(default=None, description="Length of the baseline window (e.g. 7d).")
    config_map: ConfigMapKeyRef | None = Field(
        default=None,
        description="Reference histograms (e.g. from training) as JSON in a ConfigMap key; "
        "see the documentation for the format.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        window = self.offset is not None and self.window is not None
        if self.config_map is not None and (self.offset is not None or self.window is not None):
            raise ValueError("use either offset and window, or configMap (not both)")
        if self.config_map is None and not window:
            raise ValueError("use either offset and window, or configMap (a window baseline needs both)")
        return self


def _default_baseline() -> DriftBaseline:
    return DriftBaseline(offset="7d", window="7d")


class HistogramDrift(ApiModel):
    """Drift of one Prometheus histogram family between a baseline and the current window."""

    histogram: str = Field(
        pattern=METRIC_NAME_PATTERN,
        max_length=200,
        description="Histogram family name without the _bucket suffix.",
    )
    model_label: LabelName = Field(default="model", description="Label that carries the model name.")
    match_labels: LabelMap = Field(
        default_factory=dict, description="Extra label equality matchers (e.g. env: prod)."
    )
    segment_by: list[LabelName] = Field(
        default_factory=list,
        max_length=4,
        description="Labels that split traffic into segments; drift is computed per segment "
        "and for the whole population.",
    )
    baseline: DriftBaseline = Field(default_factory=_default_baseline)
    window: Duration = Field(default="1h", description="Length of the current window.")
    method: DriftMethod = Field(default=DriftMethod.PSI, description="Drift statistic.")
    warning: Number = Field(default=0.1, gt=0, description="Score at or above which drift warns.")
    critical: Number = Field(default=0.25, gt=0, description="Score at or above which drift is critical.")
    min_samples: Integer = Field(
        default=500,
        ge=1,
        description="Minimum effective sample size for a series to be judged confidently.",
    )

    @model_validator(mode="after")
    def _ordered_thresholds(self) -> Self:
        if self.critical < self.warning:
            raise ValueError("critical must be greater than or equal to warning")
        return self


class FeatureDrift(HistogramDrift):
    """Input drift: one histogram family holding every feature, told apart by a label."""

    feature_label: LabelName = Field(default="feature", description="Label that names the feature.")

    @model_validator(mode="after")
    def _feature_not_a_segment(self) -> Self:
        if self.feature_label in self.segment_by:
            raise ValueError("featureLabel cannot also be a segmentBy label")
        return self


class PredictionDrift(HistogramDrift):
    """Output drift: the distribution of the model's scores."""

    version_label: LabelName = Field(
        default="version",
        description="Label that carries the model version (canary checks compare versions by it).",
    )


class BoundedQuery(ApiModel):
    """A PromQL query whose every returned series must lie within bounds."""

    name: CheckName
    query: str = Field(
        min_length=1,
        max_length=8192,
        description="PromQL; may use {{model}}, {{namespace}}, {{interval}}, {{window}} and {{version}}.",
    )
    min: Number | None = Field(default=None, description="Lowest acceptable value.")
    max: Number | None = Field(default=None, description="Highest acceptable value.")
    samples_query: str | None = Field(
        default=None,
        min_length=1,
        max_length=8192,
        description="PromQL for how many observations each series of the query rests on, with the "
        "same labels (e.g. the denominator of a rate). A series with fewer than minSamples is "
        "judged with its bounds widened by sqrt(minSamples / n), as drift is.",
    )
    min_samples: Integer = Field(
        default=100,
        ge=1,
        le=1_000_000_000,
        description="Observations a series needs to be judged at its bounds (with samplesQuery).",
    )

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("set min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class DataQualityCheck(BoundedQuery):
    """A data-quality signal such as a null rate or an out-of-range rate."""


class KpiEstimate(ApiModel):
    """The KPI estimated from the model's own scores while its labels are incomplete.

    Assumes a binary classifier whose scores are calibrated probabilities: a bucket of the
    score histogram holds (its count x its midpoint) expected positives. Once a window's
    labels are complete, the estimate for it is compared with the measured KPI; a gap beyond
    ``tolerance`` that persists is calibration drift, and the estimate is no longer trusted.
    """

    histogram: str = Field(
        pattern=METRIC_NAME_PATTERN,
        max_length=200,
        description="Prediction-score histogram family (scores in [0, 1]) without the _bucket suffix.",
    )
    metric: EstimatedMetric = Field(
        description="What is estimated at the threshold: precision, recall, accuracy, f1, "
        "positiveRate (share predicted positive) or prevalence (expected share of positives)."
    )
    threshold: Number = Field(
        gt=0,
        lt=1,
        description="Decision threshold: a score above it is a positive prediction. Must be one "
        "of the histogram's bucket bounds.",
    )
    model_label: LabelName = Field(default="model", description="Label that carries the model name.")
    match_labels: LabelMap = Field(
        default_factory=dict, description="Extra label equality matchers (e.g. env: prod)."
    )
    segment_by: list[LabelName] = Field(
        default_factory=list,
        max_length=4,
        description="Labels that split the estimate into segments; they must be the labels of the "
        "KPI query's series for the estimate to be checked against it.",
    )
    window: Duration = Field(
        default="1h", description="Scores counted over this window (use the KPI query's window)."
    )
    tolerance: Number = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Largest gap between the estimate and the measured KPI, once labels are "
        "complete, that keeps the estimate trusted.",
    )


class Kpi(BoundedQuery):
    """A business or model-quality KPI such as precision or conversion rate."""

    on_no_data: NoDataPolicy = Field(default=NoDataPolicy.HOLD, description="What a KPI without data means.")
    label_delay: Duration | None = Field(
        default=None,
        description="How late this KPI's labels arrive (e.g. 6h): the KPI is judged on the window "
        "that ended this long ago, the latest one that can be complete.",
    )
    labels_query: str | None = Field(
        default=None,
        min_length=1,
        max_length=8192,
        description="PromQL for the rate at which this KPI's labels arrive now, e.g. "
        'sum(rate(model_label_outcomes_total{model="{{model}}"}[15m])). When it drops to zero while '
        "predictions keep flowing, the labels are late or lost: a label-pipeline incident (hold "
        "and alert), and the KPI is not judged.",
    )
    estimate: KpiEstimate | None = Field(
        default=None,
        description="Estimate this KPI from prediction scores for the windows whose labels are "
        "not complete yet (needs labelDelay).",
    )

    @model_validator(mode="after")
    def _estimate_needs_delay(self) -> Self:
        if self.estimate is not None and self.label_delay is None:
            raise ValueError(
                "estimate needs labelDelay: the estimate covers the windows whose labels are not "
                "complete, and is checked against the KPI once they are"
            )
        return self


class Persistence(ApiModel):
    """Act only on what held in ``needed`` of the last ``of`` evaluations."""

    of: Integer = Field(default=3, ge=1, le=20, description="Evaluations looked back on (M).")
    needed: Integer = Field(default=2, ge=1, le=20, description="How many of them must agree (N).")

    @model_validator(mode="after")
    def _needed_within_window(self) -> Self:
        if self.needed > self.of:
            raise ValueError("needed must not exceed of")
        return self


class DecisionPolicy(ApiModel):
    """How evaluations become decisions: noise control and when people are called."""

    persistence: Persistence = Field(default_factory=Persistence)
    false_discovery_rate: Number = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="Benjamini-Hochberg level across all feature x segment series of an "
        "evaluation: a series counts as drifted only if its homogeneity test survives it.",
    )
    hysteresis: Number = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="A flagged series clears only below (1 - hysteresis) x its threshold, so a "
        "score hovering at a threshold does not flap.",
    )
    bound_hysteresis: Number = Field(
        default=0.01,
        ge=0,
        lt=1,
        description="A breached KPI or data-quality series clears only once it is back inside its "
        "bound by this fraction of the bound (0.01: min 0.88 clears at 0.8888), so a KPI sitting "
        "at its threshold does not flap.",
    )
    upstream_features: Integer = Field(
        default=3,
        ge=2,
        le=1000,
        description="Features breaking in the same evaluation that mean an upstream change.",
    )
    escalate_hold_after: Duration | None = Field(
        default="24h",
        description="A data-quality hold unresolved this long escalates to a person (0s: never).",
    )
    acknowledged_at: AwareDatetime | None = Field(
        default=None,
        description="Accept a data-quality change as the new normal (set by `evergreen "
        "acknowledge`): a hold on an incident that began at or before this time ends, and "
        "baselines restart from it.",
    )


class ModelMonitorSpec(ApiModel):
    """What to watch for one model, and how."""

    model: str = Field(
        min_length=1,
        max_length=253,
        pattern=NO_SPACE_PATTERN,
        description="The model's name as it appears in metric labels ({{model}}).",
    )
    mode: Mode = Field(
        default=Mode.ENFORCE,
        description="Enforce acts on decisions; Observe only decides and explains.",
    )
    interval: Duration = Field(default="5m", description="How often the model is evaluated.")
    current_version: str | None = Field(
        default=None,
        pattern=VERSION_PATTERN,
        max_length=63,
        description="The model version serving now ({{version}}); promotions update status.currentVersion.",
    )
    service_account_name: str | None = Field(
        default=None,
        pattern=OBJECT_NAME_PATTERN,
        max_length=253,
        description="Identity of the workloads Evergreen creates for this model (never the operator's own).",
    )
    prometheus: PrometheusEndpoint | None = None
    drift: FeatureDrift | None = None
    prediction_drift: PredictionDrift | None = None
    data_quality: list[DataQualityCheck] = Field(default_factory=list, max_length=32)
    kpis: list[Kpi] = Field(default_factory=list, max_length=32)
    policy: DecisionPolicy = Field(default_factory=DecisionPolicy)
    retraining: RetrainingSpec | None = None
    rollout: RolloutSpec | None = None
    holds: list[VersionHold] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _sane(self) -> Self:
        if parse_duration(self.interval).total_seconds() < 1:
            raise ValueError("interval must be at least 1s")
        for field, what in (("data_quality", "dataQuality check"), ("kpis", "KPI"), ("holds", "hold")):
            names = [item.name for item in getattr(self, field)]
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise ValueError(f"{what} names must be unique (repeated: {', '.join(duplicates)})")
        if self.holds and self.rollout is None:
            raise ValueError("holds need spec.rollout (its target says how versions are served)")
        if not (self.drift or self.prediction_drift or self.data_quality or self.kpis):
            raise ValueError("nothing to monitor: set drift, predictionDrift, dataQuality or kpis")
        return self
