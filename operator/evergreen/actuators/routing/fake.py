"""An in-memory router for tests of the code that drives routers (the rollout controller).

It keeps what a real router keeps in the cluster: the versions served, their replicas and
weights. Versions become ready when a test says so (``ready``), as pods would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evergreen.actuators.routing.base import ServingPlan, ServingState, VersionNotServed


@dataclass
class FakeRouter:
    """A :class:`~evergreen.actuators.routing.base.Router` without a cluster."""

    replicas: int = 2
    service: str = "model"
    #: Versions whose Deployments are ready; None: every version is.
    ready: set[str] | None = None
    weights: dict[str, int] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)
    plans: list[ServingPlan] = field(default_factory=list)
    finalized: bool = False

    async def reconcile(self, plan: ServingPlan) -> ServingState:
        self.plans.append(plan)
        main = plan.main_versions
        self.served = {
            version: max(self.replicas if version in main else 0, plan.held_replicas(version))
            for version in plan.versions
        }
        await self.set_weights(plan.stable, plan.candidate, plan.weight)
        ready = {version: self.ready is None or version in self.ready for version in self.served}
        return ServingState(
            weights=dict(self.weights),
            ready=ready,
            replicas=dict(self.served),
            services={version: f"{self.service}-{version}" for version in self.served},
            adopted=ready[plan.stable],
        )

    async def set_weights(self, stable: str, candidate: str | None, weight: int) -> None:
        ServingPlan(stable, candidate, weight)
        for version in (stable, candidate):
            if version is not None and version not in self.served:
                raise VersionNotServed(f"version {version} is not served")
        self.weights = (
            {stable: 100 - weight} if candidate is None else {stable: 100 - weight, candidate: weight}
        )

    async def get_weights(self) -> dict[str, int]:
        return dict(self.weights)

    async def finalize(self, serving: str | None = None) -> None:
        self.finalized = True
        self.served, self.weights = {}, {}
