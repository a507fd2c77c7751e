"""The GatewayAPI router: traffic split by the backend weights of an HTTPRoute Evergreen owns.

The HTTPRoute ``spec.rollout.gateway.name`` (``gateway.networking.k8s.io/v1``) attaches to the
spec's ``parentRefs`` and ``hostnames``. Its rules, in order:

1. one rule per active hold, named ``hold-<hold>``: a match per header value (``Exact``) sends
   the hold's customers to the held version's Service;
2. the ``main`` rule: the stable version's Service with weight 100 - w and, during a rollout,
   the candidate's with weight w (a weight of 0 keeps the backend listed, receiving nothing).

Every backend is a version Service on ``gateway.port``. Each version Deployment runs R replicas
(the team Deployment's count), the candidate ``candidateReplicas`` if set, a held version at
least its hold's replicas. Only the stable version's pods keep the team Service's selector
labels: callers that bypass the gateway keep reaching the stable version, never an unchecked
candidate; a promotion therefore relabels the new stable's pod template (a rolling update that
its Deployment performs as for any change), and the old stable is deleted only once the new
one is ready. Weights are read back from the route.

The Gateway API allows 16 rules per route and fewer than 128 matches over all rules (the main
rule counts one): at most 15 holds, with at most 126 header values together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evergreen.actuators.routing.base import (
    HeldVersion,
    MonitorRef,
    ObjectNotOwned,
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
from evergreen.actuators.routing.naming import monitor_labels, owned_by, owner_reference, version_service_name
from evergreen.actuators.routing.patching import covers, merge_patch
from evergreen.api.delivery import GatewayRoute, RolloutSpec
from evergreen.errors import SpecError
from evergreen.kube.client import AlreadyExists, ObjectApi

GATEWAY_FIELD = "spec.rollout.gateway"
HOLDS_FIELD = "spec.holds"
MAIN_RULE = "main"
HOLD_RULE_PREFIX = "hold-"

#: Gateway API limits (HTTPRoute CRD): rules per route, and matches over all rules (< 128).
MAX_RULES = 16
MAX_MATCHES = 127
MAX_HEADER_VALUE = 4096


def check_route_capacity(holds: Sequence[HeldVersion]) -> None:
    """Raise :class:`SpecError` at ``spec.holds`` when the holds do not fit in one HTTPRoute."""
    if len(holds) > MAX_RULES - 1:
        raise SpecError(
            HOLDS_FIELD,
            f"{len(holds)} active holds, but an HTTPRoute has at most {MAX_RULES} rules (one is the main "
            f"rule): at most {MAX_RULES - 1} holds with router GatewayAPI",
        )
    values = sum(len(hold.values) for hold in holds)
    if values > MAX_MATCHES - 1:
        raise SpecError(
            HOLDS_FIELD,
            f"the active holds match {values} header values, but an HTTPRoute takes fewer than "
            f"{MAX_MATCHES + 1} matches in all (the main rule has one): at most {MAX_MATCHES - 1}",
        )
    for hold in holds:
        for value in hold.values:
            if not 0 < len(value) <= MAX_HEADER_VALUE:
                raise SpecError(
                    HOLDS_FIELD,
                    f"hold {hold.name}: header values must have 1 to {MAX_HEADER_VALUE} characters",
                )


def backend(service: str, port: int, weight: int | None = None) -> dict[str, Any]:
    """An HTTPRoute backendRef to a Service (group and kind spelled out, as the server stores them)."""
    reference: dict[str, Any] = {"group": "", "kind": "Service", "name": service, "port": port}
    if weight is not None:
        reference["weight"] = weight
    return reference


def hold_rule(service: str, port: int, hold: HeldVersion) -> dict[str, Any]:
    """The rule sending a hold's customers to its version's Service."""
    return {
        "name": HOLD_RULE_PREFIX + hold.name,
        "matches": [
            {"headers": [{"type": "Exact", "name": hold.header, "value": value}]} for value in hold.values
        ],
        "backendRefs": [backend(version_service_name(service, hold.version), port)],
    }


def main_rule(service: str, port: int, stable: str, candidate: str | None, weight: int) -> dict[str, Any]:
    """The rule splitting the main traffic: stable 100 - weight, candidate weight."""
    if candidate is None:
        return {"name": MAIN_RULE, "backendRefs": [backend(version_service_name(service, stable), port, 100)]}
    return {
        "name": MAIN_RULE,
        "backendRefs": [
            backend(version_service_name(service, stable), port, 100 - weight),
            backend(version_service_name(service, candidate), port, weight),
        ],
    }


def render_http_route(
    route: GatewayRoute, *, monitor: MonitorRef, service: str, plan: ServingPlan
) -> dict[str, Any]:
    """The HTTPRoute for ``plan``; ``service`` (the team's Service) prefixes the version Services' names."""
    check_route_capacity(plan.holds)
    spec: dict[str, Any] = {
        "parentRefs": [parent.to_wire() for parent in route.parent_refs],
        "rules": [
            *(hold_rule(service, route.port, hold) for hold in plan.holds),
            main_rule(service, route.port, plan.stable, plan.candidate, plan.weight),
        ],
    }
    if route.hostnames:
        spec["hostnames"] = list(route.hostnames)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": route.name,
            "namespace": monitor.namespace,
            "labels": monitor_labels(monitor),
            "ownerReferences": [owner_reference(monitor)],
        },
        "spec": spec,
    }


def _main_rule_index(rules: Sequence[Mapping[str, Any]]) -> int:
    for index, rule in enumerate(rules):
        if rule.get("name") == MAIN_RULE:
            return index
    return len(rules) - 1


def route_weights(route: Mapping[str, Any], versions_by_service: Mapping[str, str]) -> dict[str, int]:
    """Version -> percent of the main traffic, from the main rule's backend weights.

    Backends that are not version Services (``versions_by_service`` maps their names) are left out.
    """
    rules = (route.get("spec") or {}).get("rules") or []
    if not rules:
        return {}
    weights: dict[str, int] = {}
    for reference in rules[_main_rule_index(rules)].get("backendRefs") or []:
        if reference.get("kind", "Service") != "Service" or reference.get("group", "") != "":
            continue
        version = versions_by_service.get(str(reference.get("name")))
        if version is not None:
            weights[version] = weights.get(version, 0) + int(reference.get("weight", 1))
    return traffic_shares(weights)


def gateway_roles(plan: ServingPlan, total: int, candidate_replicas: int | None) -> list[VersionRole]:
    """Every version's replicas; only the stable version's pods take the team Service's traffic."""
    main = {plan.stable: total}
    if plan.candidate is not None:
        main[plan.candidate] = total if candidate_replicas is None else candidate_replicas
    roles = []
    for version in plan.versions:
        held = plan.held_replicas(version)
        replicas = max(main.get(version, 0), held)
        roles.append(
            VersionRole(version, replicas, takes_team_traffic=version == plan.stable, held_replicas=held)
        )
    return roles


class GatewayRouter:
    """Splits traffic with the backend weights of an HTTPRoute that Evergreen owns."""

    def __init__(self, objects: ObjectApi, monitor: MonitorRef, spec: RolloutSpec) -> None:
        if spec.gateway is None:
            raise SpecError(GATEWAY_FIELD, "router GatewayAPI needs gateway (the HTTPRoute to manage)")
        self.fleet = VersionFleet(objects, monitor, spec.target)
        self.route = spec.gateway
        self.candidate_replicas = spec.candidate_replicas

    @property
    def _objects(self) -> ObjectApi:
        return self.fleet.objects

    async def reconcile(self, plan: ServingPlan) -> ServingState:
        """Converge Deployments, Services and the HTTPRoute to ``plan``."""
        fleet = self.fleet
        check_route_capacity(plan.holds)
        team, service = await fleet.team_deployment(), await fleet.team_service()
        team = await fleet.take_over(team, plan.stable)
        roles = gateway_roles(plan, original_replicas(team), self.candidate_replicas)
        snapshot = await fleet.converge(team, service, roles)
        desired = render_http_route(
            self.route, monitor=fleet.monitor, service=fleet.target.service, plan=plan
        )
        route = await self._converge_route(desired)
        ready = snapshot.ready()
        serving = all(ready[version] for version in plan.traffic_versions)
        team = await fleet.hand_over(team, serving)
        if serving:
            await self._prune_routes()
            await fleet.prune(snapshot)
        services = snapshot.service_names()
        return ServingState(
            weights=route_weights(route, {name: version for version, name in services.items()}),
            ready=ready,
            replicas=snapshot.replicas(),
            services=services,
            adopted=handed_over(team),
        )

    async def set_weights(self, stable: str, candidate: str | None, weight: int) -> None:
        """Rewrite the main rule's backends (the hold rules stay as they are)."""
        ServingPlan(stable, candidate, weight)  # the same rules as a plan's
        route = await self._owned_route()
        if route is None:
            raise VersionNotServed(f"HTTPRoute {self.route.name} does not exist yet: reconcile a plan first")
        rules = [dict(rule) for rule in (route.get("spec") or {}).get("rules") or []]
        wanted = main_rule(self.fleet.target.service, self.route.port, stable, candidate, weight)
        index = _main_rule_index(rules)
        if rules and covers(rules[index], wanted):
            return
        if rules:
            rules[index] = wanted
        else:
            rules = [wanted]
        await self._objects.patch(
            self._objects.HTTP_ROUTES, self.fleet.namespace, self.route.name, {"spec": {"rules": rules}}
        )

    async def get_weights(self) -> dict[str, int]:
        """The main rule's split, from the route as stored."""
        route = await self._owned_route()
        if route is None:
            return {}
        services = await self.fleet.owned(self._objects.SERVICES)
        versions = {body["metadata"]["name"]: version_of(body) for body in services}
        return route_weights(route, {name: version for name, version in versions.items() if version})

    async def finalize(self, serving: str | None = None) -> None:
        """Give the team's Deployment its replicas back, then delete the route and Evergreen's objects.

        Evergreen's routes go with the monitor: traffic through the gateway then needs a route of
        the team's own. A route of that name Evergreen did not create is left alone.
        """
        team = await self.fleet.give_back(serving)
        for route in await self.fleet.owned(self._objects.HTTP_ROUTES):
            await self._objects.delete(
                self._objects.HTTP_ROUTES, self.fleet.namespace, route["metadata"]["name"]
            )
        await self.fleet.delete_owned()
        await self.fleet.forget(team)

    async def _prune_routes(self) -> None:
        """Delete the routes Evergreen created under an earlier ``gateway.name``."""
        for route in await self.fleet.owned(self._objects.HTTP_ROUTES):
            if route["metadata"]["name"] != self.route.name:
                await self._objects.delete(
                    self._objects.HTTP_ROUTES, self.fleet.namespace, route["metadata"]["name"]
                )

    async def _owned_route(self) -> dict[str, Any] | None:
        route = await self._objects.http_route(self.fleet.namespace, self.route.name)
        if route is not None and not owned_by(route, self.fleet.monitor):
            raise self._not_owned()
        return route

    async def _converge_route(self, desired: dict[str, Any]) -> dict[str, Any]:
        live = await self._owned_route()
        if live is None:
            try:
                return await self._objects.create(self._objects.HTTP_ROUTES, self.fleet.namespace, desired)
            except AlreadyExists:
                live = await self._owned_route()
                if live is None:
                    raise
        # Rules and parents are lists, replaced whole when any item differs; hostnames the spec
        # no longer lists are removed.
        desired["spec"].setdefault("hostnames", None)
        patch = merge_patch(live, desired)
        if not patch:
            return live
        return await self._objects.patch(
            self._objects.HTTP_ROUTES, self.fleet.namespace, self.route.name, patch
        )

    def _not_owned(self) -> ObjectNotOwned:
        return ObjectNotOwned(
            f"{GATEWAY_FIELD}.name",
            f"HTTPRoute {self.fleet.namespace}/{self.route.name} exists but was not created by Evergreen for "
            f"ModelMonitor {self.fleet.monitor.name}: name a route for Evergreen to create and own",
        )
