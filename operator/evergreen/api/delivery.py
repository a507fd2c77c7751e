"""Progressive delivery and version holds: ``spec.rollout``, ``spec.holds`` and their status.

A candidate (from retraining, a person or GitOps) is served next to the current version with
a growing share of traffic, checked at every step, and promoted or rolled back; named
customers can be pinned to a version until a date.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AwareDatetime, Field, field_validator, model_validator

from evergreen.api.base import (
    DNS_LABEL_PATTERN,
    ENV_NAME_PATTERN,
    HEADER_NAME_PATTERN,
    OBJECT_NAME_PATTERN,
    VERSION_PATTERN,
    ApiModel,
    Flag,
    Integer,
    Number,
    StatusModel,
)
from evergreen.api.durations import Duration

DNS_LABEL = DNS_LABEL_PATTERN
HEADER_NAME = HEADER_NAME_PATTERN
# Gateway API's own rules for what Evergreen copies into an HTTPRoute, so a monitor the API
# server accepts never makes a route the API server refuses.
GATEWAY_GROUP = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
GATEWAY_KIND = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
Hostname = Annotated[
    str,
    Field(
        pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        min_length=1,
        max_length=253,
    ),
]
#: A header value a hold matches (Gateway API allows up to 4096 characters; ids are short).
HeaderValue = Annotated[str, Field(min_length=1, max_length=256)]


class VersionInjection(ApiModel):
    """How a version becomes a running server: set in one container of the Deployment."""

    container: str = Field(
        pattern=DNS_LABEL, max_length=63, description="The container that serves the model."
    )
    env: str | None = Field(
        default=None,
        pattern=ENV_NAME_PATTERN,
        max_length=256,
        description="Set this environment variable to the version.",
    )
    image_tag: Flag = Field(default=False, description="Use the version as the image tag.")
    arg_prefix: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Replace the argument starting with this prefix by prefix + version "
        "(e.g. --model-uri=models:/fraud/), or append it.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        chosen = [self.env is not None, self.image_tag, self.arg_prefix is not None]
        if sum(chosen) != 1:
            raise ValueError("set exactly one of env, imageTag and argPrefix")
        return self


class ServingTarget(ApiModel):
    """The team's serving objects: a Deployment serving currentVersion and the Service in front."""

    deployment: str = Field(pattern=OBJECT_NAME_PATTERN, max_length=200)
    service: str = Field(pattern=DNS_LABEL, max_length=50)
    version: VersionInjection


class RouterKind(StrEnum):
    #: Traffic split by replica counts behind the team's Service (no mesh needed).
    REPLICAS = "Replicas"
    #: Traffic split by Gateway API HTTPRoute backend weights.
    GATEWAY_API = "GatewayAPI"


class ParentRef(ApiModel):
    """A Gateway API parentRef: the Gateway (listener) the route attaches to."""

    name: str = Field(pattern=OBJECT_NAME_PATTERN, max_length=253)
    namespace: str | None = Field(default=None, pattern=DNS_LABEL, max_length=63)
    group: str = Field(default="gateway.networking.k8s.io", pattern=GATEWAY_GROUP, max_length=253)
    kind: str = Field(default="Gateway", pattern=GATEWAY_KIND, min_length=1, max_length=63)
    section_name: str | None = Field(default=None, pattern=DNS_LABEL, max_length=253)


class GatewayRoute(ApiModel):
    """The HTTPRoute Evergreen creates and owns for this model."""

    name: str = Field(pattern=OBJECT_NAME_PATTERN, max_length=253)
    parent_refs: list[ParentRef] = Field(
        min_length=1, max_length=32, description="The Gateways to attach to (HTTPRoute parentRefs)."
    )
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16)
    port: Integer = Field(ge=1, le=65535, description="The Services' port the route sends traffic to.")


class Gate(StrEnum):
    START = "Start"
    PROMOTION = "Promotion"


class ApprovalMode(StrEnum):
    AUTO = "Auto"
    MANUAL = "Manual"


class RolloutSpec(ApiModel):
    """How a candidate version reaches traffic."""

    router: RouterKind = RouterKind.REPLICAS
    target: ServingTarget
    gateway: GatewayRoute | None = None
    candidate: str | None = Field(
        default=None,
        pattern=VERSION_PATTERN,
        max_length=63,
        description="A version to roll out (a person or GitOps); otherwise the last candidate "
        "retraining accepted.",
    )
    steps: list[Integer] = Field(default_factory=lambda: [5, 25, 50, 100], min_length=1, max_length=20)
    step_interval: Duration = Field(default="10m", description="How long each step lasts (and is checked).")
    max_failed_checks: Integer = Field(default=2, ge=1, le=100)
    max_kpi_degradation: Number = Field(
        default=0.0, ge=0, description="How much worse than the current version a candidate's KPI may be."
    )
    no_data_deadline: Duration = Field(
        default="1h", description="A rollout paused for missing data this long is rolled back."
    )
    approval: ApprovalMode = ApprovalMode.AUTO
    gates: list[Gate] = Field(
        default_factory=lambda: [Gate.START, Gate.PROMOTION],
        max_length=2,
        description="Where Manual approval waits.",
    )
    approved_version: str | None = Field(
        default=None,
        pattern=VERSION_PATTERN,
        max_length=63,
        description="Approves the Start gate for this version.",
    )
    promotion_approved_version: str | None = Field(
        default=None,
        pattern=VERSION_PATTERN,
        max_length=63,
        description="Approves promotion of this version.",
    )
    aborted_version: str | None = Field(
        default=None, pattern=VERSION_PATTERN, max_length=63, description="Roll this version back now."
    )
    candidate_replicas: Integer | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="GatewayAPI: replicas of the candidate (default: as many as the stable).",
    )

    @field_validator("steps")
    @classmethod
    def _increasing_to_100(cls, steps: list[int]) -> list[int]:
        if any(not 1 <= step <= 100 for step in steps):
            raise ValueError("steps are traffic percentages between 1 and 100")
        if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
            raise ValueError("steps must increase")
        if steps[-1] != 100:
            raise ValueError("the last step must be 100")
        return steps

    @model_validator(mode="after")
    def _router_settings(self) -> Self:
        if self.router is RouterKind.GATEWAY_API and self.gateway is None:
            raise ValueError("router GatewayAPI needs gateway (the HTTPRoute to manage)")
        if self.router is RouterKind.REPLICAS and self.gateway is not None:
            raise ValueError("gateway is only used with router GatewayAPI")
        return self


class HoldMatch(ApiModel):
    """Which requests a hold pins: a header and its values."""

    header: str = Field(pattern=HEADER_NAME, max_length=256)
    values: list[HeaderValue] = Field(min_length=1, max_length=64)


class VersionHold(ApiModel):
    """Pin named customers to a version until a date (consistency can beat accuracy)."""

    name: str = Field(pattern=DNS_LABEL, max_length=40)
    version: str = Field(pattern=VERSION_PATTERN, max_length=63)
    match: HoldMatch
    until: AwareDatetime = Field(description="RFC 3339 with a time zone, e.g. 2027-03-31T00:00:00Z.")
    reason: str = Field(default="", max_length=1024)
    replicas: Integer = Field(default=1, ge=1, le=1000, description="Replicas that serve the held version.")


# --- status ------------------------------------------------------------------------------


class RolloutPhase(StrEnum):
    IDLE = "Idle"
    AWAITING_APPROVAL = "AwaitingApproval"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    AWAITING_PROMOTION = "AwaitingPromotion"


class RolloutCheck(StrEnum):
    PASSED = "Passed"
    FAILED = "Failed"
    NO_DATA = "NoData"


class CheckRecord(StatusModel):
    """One canary check: a KPI or the output distribution, candidate against stable."""

    name: str
    result: RolloutCheck
    candidate: float | None = None
    stable: float | None = None
    message: str = ""


class RolloutRecord(StatusModel):
    """A finished rollout."""

    candidate: str
    stable: str
    outcome: str = Field(description="Promoted, RolledBack or Aborted")
    started: datetime
    finished: datetime
    reason: str = ""


class RolloutStatus(StatusModel):
    """Where the current rollout stands."""

    phase: RolloutPhase = RolloutPhase.IDLE
    candidate: str | None = None
    stable: str | None = None
    step: int = Field(default=0, description="Index into spec.rollout.steps.")
    weight: int = Field(default=0, description="Share of traffic on the candidate, in percent.")
    started: datetime | None = None
    step_started: datetime | None = None
    last_check_time: datetime | None = None
    checks_passed: int = 0
    checks_failed: int = 0
    last_checks: list[CheckRecord] = Field(default_factory=list)
    paused_reason: str | None = None
    paused_since: datetime | None = None
    message: str = ""
    rejected_versions: list[str] = Field(
        default_factory=list, description="Rolled back: not retried by themselves."
    )
    history: list[RolloutRecord] = Field(default_factory=list)


class HoldStatus(StatusModel):
    """A hold and who serves it."""

    name: str
    version: str
    active: bool
    expires_at: datetime
    served_by: str | None = Field(default=None, description="The Service that serves the held version.")
    customers: list[str] = Field(default_factory=list)
    expiring_notified: bool = False
