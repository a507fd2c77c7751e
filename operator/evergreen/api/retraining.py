"""Retraining: the workload to run, the guardrails around it, and the gate a candidate must pass.

Spec parts (``spec.retraining``) and status parts (``status.retraining``) live together
because they are read together: guardrails are a function of both.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator

from evergreen.api.base import (
    DOTTED_PATH_PATTERN,
    VERSION_PATTERN,
    ApiModel,
    Flag,
    Integer,
    Number,
    StatusModel,
    map_keys,
)
from evergreen.api.durations import Duration

METRIC_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
_METRIC_KEYS = map_keys(
    key_pattern=METRIC_KEY_PATTERN,
    key_max_length=128,
    described="metric names (letters, digits, _, . and -, not starting with a digit)",
    max_entries=32,
)
#: Metric name -> a finite number, as a workload reports them.
MetricMap = Annotated[dict[str, Number], _METRIC_KEYS[0], _METRIC_KEYS[1]]


class CompletionRule(ApiModel):
    """How to tell that a workload finished: a condition type, or a status field's values."""

    condition_type: str | None = Field(
        default=None,
        max_length=128,
        description="A status.conditions[] type that is True when this state is reached "
        "(Jobs: Complete / Failed).",
    )
    field_path: str | None = Field(
        default=None,
        pattern=DOTTED_PATH_PATTERN,
        max_length=256,
        description="A dotted path into the workload (e.g. status.phase) ...",
    )
    values: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list, max_length=16, description="... and the values that mean this state."
    )

    @model_validator(mode="after")
    def _one_rule(self) -> Self:
        if (self.condition_type is None) == (self.field_path is None):
            raise ValueError("set exactly one of conditionType and fieldPath")
        if self.field_path is not None and not self.values:
            raise ValueError("fieldPath needs the values that mean this state")
        return self


class ResultSource(ApiModel):
    """Where the workload reports its candidate: ``{"version": "v13", "metrics": {"auc": 0.91}}``."""

    termination_message: Flag = Field(
        default=True,
        description="Read the JSON from a terminated container's termination message (Jobs: the "
        "pods of the Job; the last container that wrote one).",
    )
    field_path: str | None = Field(
        default=None,
        pattern=DOTTED_PATH_PATTERN,
        max_length=256,
        description="Read it from this dotted path of the workload instead (a JSON string or an object).",
    )


class Budget(ApiModel):
    """At most ``runs`` started runs in any window of length ``per``."""

    runs: Integer = Field(ge=1, le=1000)
    per: Duration


class CostBudget(ApiModel):
    """Each run costs ``perRun`` (any unit); at most ``budget`` in any window of length ``per``."""

    per_run: Number = Field(gt=0)
    budget: Number = Field(gt=0)
    per: Duration


class Validation(ApiModel):
    """The gate a candidate must pass before any traffic reaches it."""

    metric: str = Field(
        pattern=METRIC_KEY_PATTERN, max_length=128, description="Metric compared with the current model."
    )
    min_improvement: Number = Field(
        default=0.0, ge=0, description="How much better than the current model the candidate must be."
    )
    higher_is_better: Flag = Field(default=True)
    floors: MetricMap = Field(
        default_factory=dict, description="Absolute minimums of other metrics (e.g. precision: 0.85)."
    )
    ceilings: MetricMap = Field(
        default_factory=dict, description="Absolute maximums (e.g. latency_p99_ms: 40)."
    )
    current_metrics: MetricMap = Field(
        default_factory=dict,
        description="The serving model's metrics, used when a run reports no baseline of its own "
        "and no candidate has been promoted yet.",
    )


class RetrainRequest(ApiModel):
    """A manual retraining request (a person or a GitOps commit); handled once per id."""

    id: str = Field(pattern=VERSION_PATTERN, max_length=63)
    reason: str = Field(default="", max_length=1024)


def _job_completion() -> CompletionRule:
    return CompletionRule(condition_type="Complete")


def _job_failure() -> CompletionRule:
    return CompletionRule(condition_type="Failed")


class RetrainingSpec(ApiModel):
    """How to retrain, how often at most, and what a candidate must prove."""

    template: dict[str, Any] = Field(
        description="The workload to create: a batch/v1 Job (apiVersion, kind, metadata, spec) or any "
        "workload custom resource (Argo Workflow, Kubeflow PyTorchJob, RayJob, ...).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    success: CompletionRule = Field(default_factory=_job_completion)
    failure: CompletionRule = Field(default_factory=_job_failure)
    result: ResultSource = Field(default_factory=ResultSource)
    timeout: Duration = Field(default="6h", description="A run still going after this long has failed.")
    cooldown: Duration = Field(
        default="24h", description="Minimum time between a run's end and the next start."
    )
    budget: Budget = Field(default_factory=lambda: Budget(runs=3, per="168h"))
    max_concurrent: Integer = Field(default=1, ge=1, le=20)
    cost: CostBudget | None = None
    validation: Validation
    give_up_after: Integer = Field(
        default=3,
        ge=1,
        le=100,
        description="Consecutive rejected or failed runs after which retraining stops and escalates.",
    )
    request: RetrainRequest | None = Field(
        default=None, description="Ask for a run now (handled once per id; cooldown does not apply)."
    )

    @field_validator("template")
    @classmethod
    def _template_shape(cls, template: dict[str, Any]) -> dict[str, Any]:
        for key in ("apiVersion", "kind", "spec"):
            if key not in template:
                raise ValueError(f"the template needs {key}")
        if "/" not in str(template["apiVersion"]):
            raise ValueError("the workload must come from an API group (e.g. batch/v1), not the core group")
        return template


class RunOutcome(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    #: Finished and its candidate passed the validation gate.
    ACCEPTED = "Accepted"
    #: Finished, but its candidate did not beat the current model.
    REJECTED = "Rejected"
    #: The workload failed, timed out, vanished or reported no usable result.
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (RunOutcome.ACCEPTED, RunOutcome.REJECTED, RunOutcome.FAILED)


class Candidate(StatusModel):
    """A model version a run produced, with its evaluation metrics."""

    version: str
    metrics: dict[str, float] = Field(default_factory=dict)
    run: int | None = None


class RetrainRun(StatusModel):
    """One retraining run, from claim to verdict."""

    run: int
    name: str
    trigger: str = Field(description="The decision reason, or Manual:<request id>.")
    scope_features: list[str] = Field(default_factory=list)
    scope_segments: list[str] = Field(default_factory=list)
    outcome: RunOutcome = RunOutcome.PENDING
    created: datetime
    started: datetime | None = None
    finished: datetime | None = None
    candidate: Candidate | None = None
    reference: Candidate | None = Field(default=None, description="What the candidate was compared with.")
    reason: str = Field(default="", description="Why it ended as it did (comparison, failure).")


class BlockedRetrain(StatusModel):
    """A Retrain decision a guardrail stopped: recorded, never dropped."""

    reason: str = Field(
        description="Cooldown, Budget, CostBudget, Concurrency, GaveUp, Observe, NotConfigured; or a "
        "refusal by the cluster: WorkloadRefused, ServiceAccountNotFound (never spends budget)"
    )
    message: str
    since: datetime
    until: datetime | None = Field(default=None, description="When it may run, when known.")


class RetrainingStatus(StatusModel):
    """Where retraining stands."""

    next_run: int = Field(default=1, description="The number the next run gets (names are derived from it).")
    runs: list[RetrainRun] = Field(default_factory=list, description="Recent runs, newest last (bounded).")
    runs_in_window: int = 0
    cost_in_window: float = 0.0
    next_allowed_time: datetime | None = None
    consecutive_failures: int = 0
    gave_up: bool = Field(default=False, description="Retraining stopped until a person acts.")
    handled_request: str | None = Field(default=None, description="The last manual request id handled.")
    handled_requests: list[str] = Field(
        default_factory=list, description="Recent request ids handled (a reverted id does not run again)."
    )
    recent_starts: list[datetime] = Field(
        default_factory=list, description="Start times of the runs inside the budget windows."
    )
    blocked: BlockedRetrain | None = None
    candidate: Candidate | None = Field(
        default=None, description="The last accepted candidate, eligible for rollout."
    )
