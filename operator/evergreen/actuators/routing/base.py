"""What every traffic router offers, and the plans and states they exchange with the rollout.

A router serves each model version from a Deployment of its own (rendered from the team's
Deployment, see :mod:`~evergreen.actuators.routing.serving`) and splits the main traffic between
the stable version and the candidate; held versions serve only their pinned customers. It keeps
no memory: everything it needs is read back from the cluster, so a restarted operator (or a
second router instance) converges from where the last one stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from evergreen.api.delivery import VersionHold
from evergreen.errors import EvergreenError, SpecError

#: Evergreen's labels and annotations on the objects it serves versions with.
VERSION_LABEL = "evergreen.dev/version"
#: On the team's Deployment: its replica count before Evergreen scaled it to 0 (restored by finalize).
ORIGINAL_REPLICAS_ANNOTATION = "evergreen.dev/original-replicas"
#: On the team's Deployment: the version it served when Evergreen adopted it.
ADOPTED_VERSION_ANNOTATION = "evergreen.dev/adopted-version"
#: On a version Deployment: the replicas its holds need (it is never scaled below).
HELD_REPLICAS_ANNOTATION = "evergreen.dev/held-replicas"


@dataclass(frozen=True)
class MonitorRef:
    """The ModelMonitor that owns what a router creates."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class HeldVersion:
    """An active hold: requests whose ``header`` has one of ``values`` go to ``version``."""

    name: str
    version: str
    header: str
    values: tuple[str, ...]
    replicas: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        if self.replicas < 1:
            raise ValueError(f"hold {self.name}: replicas must be at least 1")

    @classmethod
    def from_hold(cls, hold: VersionHold) -> HeldVersion:
        """The routing view of ``spec.holds[]``."""
        return cls(hold.name, hold.version, hold.match.header, tuple(hold.match.values), hold.replicas)


def held_versions(holds: Iterable[VersionHold], now: datetime) -> tuple[HeldVersion, ...]:
    """The holds in force at ``now`` (a hold ends at its ``until``), in spec order."""
    return tuple(HeldVersion.from_hold(hold) for hold in holds if now < hold.until)


@dataclass(frozen=True)
class ServingPlan:
    """What should be served: the stable version, maybe a candidate and its share, and holds."""

    #: The version taking the main traffic.
    stable: str
    #: The version being rolled out; None outside a rollout.
    candidate: str | None = None
    #: Percent of the main traffic sent to the candidate (0..100).
    weight: int = 0
    holds: tuple[HeldVersion, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "holds", tuple(self.holds))
        if not 0 <= self.weight <= 100:
            raise ValueError(f"weight must be a percentage, not {self.weight}")
        if self.candidate is None and self.weight != 0:
            raise ValueError("a weight needs a candidate")
        if self.candidate == self.stable:
            raise ValueError(f"version {self.stable} cannot be both stable and candidate")

    @property
    def main_versions(self) -> tuple[str, ...]:
        """The versions sharing the main traffic: the stable one, then the candidate."""
        return (self.stable,) if self.candidate is None else (self.stable, self.candidate)

    @property
    def traffic_versions(self) -> tuple[str, ...]:
        """The versions with a positive share of the main traffic: they must be ready to serve."""
        stable = [] if self.weight == 100 else [self.stable]
        candidate = [self.candidate] if self.candidate is not None and self.weight > 0 else []
        return (*stable, *candidate)

    @property
    def versions(self) -> tuple[str, ...]:
        """Every version served, each once: the main ones, then held ones in hold order."""
        ordered = dict.fromkeys([*self.main_versions, *(hold.version for hold in self.holds)])
        return tuple(ordered)

    def held_replicas(self, version: str) -> int:
        """The replicas the holds on ``version`` need (the largest); 0 when it is not held."""
        return max((hold.replicas for hold in self.holds if hold.version == version), default=0)


def traffic_shares(amounts: Mapping[str, int]) -> dict[str, int]:
    """Whole percentages proportional to ``amounts`` that add up to 100 (largest remainders first).

    All zero (or nothing) gives every key 0.
    """
    total = sum(max(amount, 0) for amount in amounts.values())
    if total == 0:
        return dict.fromkeys(amounts, 0)
    shares = {key: 100 * max(amount, 0) // total for key, amount in amounts.items()}
    by_remainder = sorted(amounts, key=lambda key: -(100 * max(amounts[key], 0) % total))
    for key in by_remainder[: 100 - sum(shares.values())]:
        shares[key] += 1
    return shares


@dataclass(frozen=True)
class ServingState:
    """What the cluster serves, as read back after a reconcile."""

    #: Version -> percent of the main traffic actually configured (effective, after rounding).
    weights: dict[str, int] = field(default_factory=dict)
    #: Version -> its Deployment runs its current template with all replicas available.
    ready: dict[str, bool] = field(default_factory=dict)
    #: Version -> the replicas Evergreen asked its Deployment for.
    replicas: dict[str, int] = field(default_factory=dict)
    #: Version -> the Service that serves only that version.
    services: dict[str, str] = field(default_factory=dict)
    #: True once the team's Deployment is scaled down and the version Deployments serve alone.
    adopted: bool = False


class Router(Protocol):
    """A traffic router: one per backend (replica ratio, Gateway API), built by ``router_for``."""

    async def reconcile(self, plan: ServingPlan) -> ServingState:
        """Converge Deployments, Services and routes to ``plan``; write nothing that already matches.

        The team's Deployment is handed over, and versions no longer planned are deleted, only
        once the versions with a share of the main traffic are ready. Readiness is reported, not
        awaited: advance a rollout (or count a step's checks) only when ``ready`` says so.
        """
        ...

    async def set_weights(self, stable: str, candidate: str | None, weight: int) -> None:
        """Move ``weight`` percent of the main traffic to ``candidate`` (already reconciled)."""
        ...

    async def get_weights(self) -> dict[str, int]:
        """Version -> percent of the main traffic, as configured in the cluster now."""
        ...

    async def finalize(self, serving: str | None = None) -> None:
        """The monitor is going: give the team's Deployment its replicas back, serving
        ``serving`` (the version that serves now, never an older one), and delete the rest.

        Raises :class:`ServingNotReady` while the team's Deployment is not serving again yet;
        call again later (the version Deployments keep serving meanwhile).
        """
        ...


# --- errors ----------------------------------------------------------------------------------------


class ServingNotReady(EvergreenError):
    """A step waits for pods to become available; retry later (temporary)."""


class VersionNotServed(EvergreenError):
    """``set_weights`` named a version that has no Deployment yet: reconcile a plan with it first."""


class ObjectNotOwned(SpecError):
    """An object Evergreen needs exists but was not created by Evergreen for this monitor.

    Evergreen never rewrites or deletes such an object; it goes away (or the spec names another
    one) and the next reconcile proceeds, hence temporary.
    """

    permanent = False


class InvalidAnnotation(SpecError):
    """An annotation Evergreen keeps on the team's Deployment was edited into something unusable.

    Temporary: fixing the annotation (not the spec) lets the next reconcile proceed.
    """

    permanent = False
