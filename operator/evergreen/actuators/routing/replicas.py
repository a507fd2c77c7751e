"""The Replicas router: traffic split by replica counts behind the team's Service (no mesh).

The team's Service selects pods by labels, whatever their version; the stable and candidate
Deployments keep those labels on their pods, so the Service spreads requests over them in
proportion to their ready pods. With R the team Deployment's replica count (recorded at
take-over), a weight w (percent to the candidate) becomes::

    candidate = round(R * w / 100)   (half up), but at least 1 when w > 0
    stable    = R - candidate,        but at least 1 when w < 100

so the split moves in steps of 100/R percent (R=10: 10%; R=4: 25%; R=1: any 0 < w < 100 runs
one pod of each, 50%). The weights reported (``get_weights``, ``ServingState.weights``) are the
effective ones, computed from the replicas actually configured. R = 0 (the team scaled its
model to zero) runs nothing.

**Holds.** A held version's customers reach it through its version Service; its pods must not
take main traffic, so a held-only version's pods are rendered *without* the labels the team's
Service selects on (the version Service selects Evergreen's monitor and version labels, which
every version pod has). NetworkPolicies that admit traffic by those labels must also admit
``evergreen.dev/monitor=<monitor>``. A version both held and in the main split runs one
Deployment of max(its share, the hold's replicas): it serves both, and its effective weight can
then exceed the planned one (reported as such). Readiness here is about pods: the rollout
should move to the next weight only once ``ServingState.ready`` says the candidate is ready.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from evergreen.actuators.routing.base import (
    ADOPTED_VERSION_ANNOTATION,
    HELD_REPLICAS_ANNOTATION,
    MonitorRef,
    ServingPlan,
    ServingState,
    VersionNotServed,
    traffic_shares,
)
from evergreen.actuators.routing.fleet import (
    VersionFleet,
    VersionRole,
    handed_over,
    original_replicas,
    version_of,
)
from evergreen.actuators.routing.serving import (
    check_team_service_selects_team_pods,
    desired_replicas,
    pod_labels,
    selects,
)
from evergreen.api.delivery import RolloutSpec
from evergreen.kube.client import ObjectApi


def split_replicas(total: int, weight: int) -> tuple[int, int]:
    """(stable, candidate) replicas that send ``weight`` percent of ``total``'s traffic to the candidate."""
    if not 0 <= weight <= 100:
        raise ValueError(f"weight must be a percentage, not {weight}")
    if total <= 0:
        return 0, 0
    candidate = (2 * total * weight + 100) // 200  # round half up, in integers
    if weight > 0:
        candidate = max(candidate, 1)
    stable = total - candidate
    if weight < 100:
        stable = max(stable, 1)
    return stable, candidate


def replica_roles(plan: ServingPlan, total: int) -> list[VersionRole]:
    """Every version's replicas and whether its pods take the team Service's traffic."""
    stable, candidate = split_replicas(total, plan.weight)
    main = {plan.stable: stable}
    if plan.candidate is not None:
        main[plan.candidate] = candidate
    roles = []
    for version in plan.versions:
        held = plan.held_replicas(version)
        share = main.get(version)
        replicas = held if share is None else max(share, held)
        roles.append(VersionRole(version, replicas, takes_team_traffic=share is not None, held_replicas=held))
    return roles


def replica_weights(
    deployments: Iterable[Mapping[str, Any]], team: Mapping[str, Any], selector: Mapping[str, str]
) -> dict[str, int]:
    """Version -> percent of the team Service's traffic, from the replicas whose pods it selects.

    The team's own Deployment counts for the version it served when adopted, while it still
    has replicas (during the hand-over).
    """
    counts: dict[str, int] = {}
    for body in deployments:
        version = version_of(body)
        if version is not None and selects(selector, pod_labels(body)):
            counts[version] = counts.get(version, 0) + desired_replicas(body)
    adopted = (team.get("metadata", {}).get("annotations") or {}).get(ADOPTED_VERSION_ANNOTATION)
    if adopted and desired_replicas(team) > 0 and selects(selector, pod_labels(team)):
        counts[adopted] = counts.get(adopted, 0) + desired_replicas(team)
    return traffic_shares(counts)


class ReplicaRouter:
    """Splits the team Service's traffic by the replica counts of the version Deployments."""

    def __init__(self, objects: ObjectApi, monitor: MonitorRef, spec: RolloutSpec) -> None:
        self.fleet = VersionFleet(objects, monitor, spec.target)

    async def reconcile(self, plan: ServingPlan) -> ServingState:
        """Converge to ``plan``; see the module docstring for the rules."""
        fleet = self.fleet
        team, service = await fleet.team_deployment(), await fleet.team_service()
        selector = check_team_service_selects_team_pods(team, service, field=fleet.field)
        team = await fleet.take_over(team, plan.stable)
        snapshot = await fleet.converge(team, service, replica_roles(plan, original_replicas(team)))
        ready = snapshot.ready()
        serving = all(ready[version] for version in plan.traffic_versions)
        team = await fleet.hand_over(team, serving)
        if serving:
            await fleet.prune(snapshot)
        return ServingState(
            weights=replica_weights(snapshot.deployments.values(), team, selector),
            ready=ready,
            replicas=snapshot.replicas(),
            services=snapshot.service_names(),
            adopted=handed_over(team),
        )

    async def set_weights(self, stable: str, candidate: str | None, weight: int) -> None:
        """Scale the stable and candidate Deployments to the split (never below their holds)."""
        ServingPlan(stable, candidate, weight)  # the same rules as a plan's
        team = await self.fleet.team_deployment()
        deployments = await self.fleet.deployments_by_version()
        stable_replicas, candidate_replicas = split_replicas(original_replicas(team), weight)
        counts = {stable: stable_replicas}
        if candidate is not None:
            counts[candidate] = candidate_replicas
        for version, replicas in counts.items():
            body = deployments.get(version)
            if body is None:
                raise VersionNotServed(
                    f"version {version} has no Deployment yet: reconcile a plan serving it"
                )
            held = _held_replicas(body)
            wanted = max(replicas, held)
            if desired_replicas(body) != wanted:
                await self.fleet.objects.patch(
                    self.fleet.objects.DEPLOYMENTS,
                    self.fleet.namespace,
                    body["metadata"]["name"],
                    {"spec": {"replicas": wanted}},
                )

    async def get_weights(self) -> dict[str, int]:
        """The effective split, from the replicas configured now."""
        team, service = await self.fleet.team_deployment(), await self.fleet.team_service()
        deployments = await self.fleet.deployments_by_version()
        return replica_weights(
            deployments.values(), team, check_team_service_selects_team_pods(team, service)
        )

    async def finalize(self, serving: str | None = None) -> None:
        """Give the team's Deployment its replicas back, then delete Evergreen's objects."""
        team = await self.fleet.give_back(serving)
        await self.fleet.delete_owned()
        await self.fleet.forget(team)


def _held_replicas(deployment: Mapping[str, Any]) -> int:
    value = (deployment.get("metadata", {}).get("annotations") or {}).get(HELD_REPLICAS_ANNOTATION)
    try:
        return max(int(value), 0) if value is not None else 0
    except ValueError:
        return 0
