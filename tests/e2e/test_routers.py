"""The traffic routers on a real control plane, with the chart's identity (the operator itself
does not run).

The real Deployment and ReplicaSet controllers run every Deployment; the node stand-in holds
the namespace's pods Pending until a test calls ``roll_out``, which releases a Deployment's
current ReplicaSet and waits until all its pods are available, so a test decides when a
version is ready. A ModelMonitor object exists only to own what the routers create. "No write"
is checked twice: no write request left the routers' API client (:class:`WriteCountingObjects`)
and no object the routers manage changed its spec or metadata (:meth:`World.revision`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import kubernetes.client
import pytest

from evergreen.actuators.routing import (
    HeldVersion,
    MonitorRef,
    ObjectNotOwned,
    Router,
    ServingNotReady,
    ServingPlan,
    ServingState,
    VersionNotServed,
    router_for,
)
from evergreen.actuators.routing.base import ADOPTED_VERSION_ANNOTATION, ORIGINAL_REPLICAS_ANNOTATION
from evergreen.api.delivery import RolloutSpec, RouterKind
from evergreen.errors import MissingReference
from evergreen.kube.client import KubeApi, ObjectApi, Resource
from tests.e2e.conftest import Cluster, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

T = TypeVar("T")
ROUTES_API_VERSION = "gateway.networking.k8s.io/v1"
TEAM_REPLICAS = 4
MONITOR_SPEC = {"model": "fraud-detector", "kpis": [{"name": "precision", "query": "vector(1)", "min": 0.5}]}


class WriteCountingObjects(ObjectApi):
    """The routers' API client, recording every write request they send."""

    def __init__(self, kube: KubeApi) -> None:
        super().__init__(kube)
        self.writes: list[str] = []

    async def create(self, resource: Resource, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.writes.append(f"create {resource.kind} {body['metadata']['name']}")
        return await super().create(resource, namespace, body)

    async def patch(
        self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.writes.append(f"patch {resource.kind} {name}: {patch}")
        return await super().patch(resource, namespace, name, patch)

    async def delete(self, resource: Resource, namespace: str, name: str) -> bool:
        self.writes.append(f"delete {resource.kind} {name}")
        return await super().delete(resource, namespace, name)


@dataclass
class World:
    """The team's serving objects, a monitor owning Evergreen's, and a way to build routers."""

    cluster: Cluster
    monitor: MonitorRef
    spec: RolloutSpec
    kube: KubeApi
    objects: WriteCountingObjects

    def router(self) -> Router:
        """A fresh router (as after an operator restart: it knows only what the cluster says)."""
        return router_for(self.spec.router, self.objects, self.monitor, self.spec)

    def revision(self) -> str:
        """What the routers write, across the namespace: every managed object's generation,
        labels, annotations and spec (controllers' status updates do not count)."""
        state = []
        for api_version, plural in (
            ("apps/v1", "deployments"),
            ("v1", "services"),
            (ROUTES_API_VERSION, "httproutes"),
        ):
            listing = request_json(
                self.cluster, "GET", object_path(api_version, plural, self.cluster.namespace)
            )
            for item in listing.get("items") or []:
                meta = item["metadata"]
                labels, annotations = meta.get("labels"), written_annotations(meta)
                state.append(
                    (plural, meta["name"], meta.get("generation"), labels, annotations, item.get("spec"))
                )
        return json.dumps(sorted(state, key=lambda entry: (entry[0], entry[1])), sort_keys=True)

    def create(self, api_version: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object as its owner (not Evergreen) would, through the API."""
        return request_json(
            self.cluster, "POST", object_path(api_version, plural, self.cluster.namespace), body
        )

    def get(self, api_version: str, plural: str, name: str) -> dict[str, Any] | None:
        path = object_path(api_version, plural, self.cluster.namespace, name)
        try:
            return request_json(self.cluster, "GET", path)
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.get("apps/v1", "deployments", name)

    def service(self, name: str) -> dict[str, Any] | None:
        return self.get("v1", "services", name)

    def route(self, name: str = "fraud-route") -> dict[str, Any] | None:
        return self.get(ROUTES_API_VERSION, "httproutes", name)

    def existing(self, name: str) -> dict[str, Any]:
        """A Deployment that must exist."""
        body = self.deployment(name)
        assert body is not None, f"no Deployment {name}"
        return body

    def existing_route(self) -> dict[str, Any]:
        route = self.route()
        assert route is not None, "no HTTPRoute"
        return route

    def replicas(self, name: str) -> int | None:
        body = self.deployment(name)
        return None if body is None else int(body["spec"]["replicas"])

    def pod_labels(self, name: str) -> dict[str, str]:
        return dict(self.existing(name)["spec"]["template"]["metadata"]["labels"])

    def roll_out(self, *names: str) -> None:
        """Let each Deployment's current pods run, and wait until all of them are available."""
        for name in names:
            body = wait_for(f"Deployment {name} observed", functools.partial(self._observed, name))
            revision = (body["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
            sets = request_json(
                self.cluster, "GET", object_path("apps/v1", "replicasets", self.cluster.namespace)
            )
            current = [
                rs["metadata"]["name"]
                for rs in sets.get("items") or []
                if any(
                    o.get("uid") == body["metadata"]["uid"]
                    for o in rs["metadata"].get("ownerReferences") or []
                )
                and (rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
                == revision
            ]
            for replica_set in current:
                self.cluster.node.release(self.cluster.namespace, replica_set)
            wait_for(f"Deployment {name} rolled out", functools.partial(self._rolled_out, name))

    def written(self, name: str) -> str:
        """A Deployment as anyone but its controller writes it (spec and metadata, not status)."""
        body = self.existing(name)
        meta = body["metadata"]
        fields = ("generation", "labels", "ownerReferences", "finalizers")
        return json.dumps(
            [*(meta.get(f) for f in fields), written_annotations(meta), body["spec"]], sort_keys=True
        )

    def _observed(self, name: str) -> dict[str, Any] | None:
        body = self.existing(name)
        status = body.get("status") or {}
        annotations = body["metadata"].get("annotations") or {}
        observed = status.get("observedGeneration") == body["metadata"]["generation"]
        return body if observed and "deployment.kubernetes.io/revision" in annotations else None

    def _rolled_out(self, name: str) -> bool:
        body = self.existing(name)
        status = body.get("status") or {}
        replicas = int(body["spec"].get("replicas", 1))
        return bool(
            status.get("observedGeneration") == body["metadata"]["generation"]
            and status.get("updatedReplicas", 0) == replicas
            and status.get("availableReplicas", 0) == replicas
            and status.get("replicas", 0) == replicas
        )

    def reconcile(self, plan: ServingPlan, router: Router | None = None) -> ServingState:
        return run((router or self.router()).reconcile(plan))


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def request_json(
    cluster: Cluster, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One API request with a JSON body and answer (errors raise ApiException)."""
    api = cluster.api
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    serialized = api.param_serialize(
        method=method, resource_path=path, body=body, header_params=headers, auth_settings=["BearerToken"]
    )
    response = api.call_api(*serialized)
    response.data = response.response.data  # what the untyped RESTResponse.read() does
    data: Any = api.response_deserialize(response, {"2XX": "object"}).data
    assert isinstance(data, dict)
    return data


def team_deployment(replicas: int = TEAM_REPLICAS) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fraud", "labels": {"app": "fraud"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "fraud"}},
            "template": {
                "metadata": {"labels": {"app": "fraud", "tier": "model"}},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "registry.example:5000/fraud:v1",
                            "env": [{"name": "MODEL_VERSION", "value": "v1"}],
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ]
                },
            },
        },
    }


def team_service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "fraud-svc", "labels": {"app": "fraud"}},
        "spec": {"selector": {"app": "fraud"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def rollout_spec(kind: RouterKind, **changes: Any) -> RolloutSpec:
    spec: dict[str, Any] = {
        "router": kind.value,
        "target": {
            "deployment": "fraud",
            "service": "fraud-svc",
            "version": {"container": "server", "env": "MODEL_VERSION"},
        },
    }
    if kind is RouterKind.GATEWAY_API:
        spec["gateway"] = {
            "name": "fraud-route",
            "parentRefs": [{"name": "public", "namespace": "gateways"}],
            "hostnames": ["fraud.example.com"],
            "port": 80,
        }
    spec.update(changes)
    return RolloutSpec.model_validate(spec)


def written_annotations(meta: Mapping[str, Any]) -> dict[str, str]:
    """Annotations but the Deployment controller's own (its revision number)."""
    annotations = meta.get("annotations") or {}
    return {k: v for k, v in annotations.items() if not k.startswith("deployment.kubernetes.io/")}


def object_path(api_version: str, plural: str, namespace: str, name: str | None = None) -> str:
    root = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    path = f"{root}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def make_world(cluster: Cluster, spec: RolloutSpec) -> Iterator[World]:
    cluster.node.hold(cluster.namespace)
    request_json(cluster, "POST", object_path("apps/v1", "deployments", cluster.namespace), team_deployment())
    request_json(cluster, "POST", object_path("v1", "services", cluster.namespace), team_service())
    monitor = cluster.create_monitor("fraud-detector", {**MONITOR_SPEC, "rollout": spec.to_wire()})
    ref = MonitorRef(cluster.namespace, monitor["metadata"]["name"], monitor["metadata"]["uid"])
    kube = KubeApi(cluster.operator_configuration)  # the chart's identity: its RBAC applies
    try:
        yield World(cluster, ref, spec, kube, WriteCountingObjects(kube))
    finally:
        kube.close()


@pytest.fixture
def replicas_world(cluster: Cluster) -> Iterator[World]:
    yield from make_world(cluster, rollout_spec(RouterKind.REPLICAS))


@pytest.fixture
def gateway_world(cluster: Cluster) -> Iterator[World]:
    yield from make_world(cluster, rollout_spec(RouterKind.GATEWAY_API, candidateReplicas=2))


def adopt(world: World, plan: ServingPlan) -> ServingState:
    """Reconcile, let the stable version's pods come up, reconcile again: the hand-over is done."""
    world.reconcile(plan)
    world.roll_out(f"fraud-{plan.stable}")
    state = world.reconcile(plan)
    assert state.adopted
    return state


@contextlib.contextmanager
def no_writes(world: World) -> Iterator[None]:
    """Fail unless the block sends no write request and changes nothing in the cluster."""
    before, writes = world.revision(), len(world.objects.writes)
    yield
    assert world.objects.writes[writes:] == [], "writes sent although nothing had to change"
    assert world.revision() == before, "the cluster changed although nothing had to"


def assert_no_write(world: World, plan: ServingPlan) -> ServingState:
    """A second reconcile with the same plan (by a fresh router) changes nothing."""
    with no_writes(world):
        return world.reconcile(plan)


HOLD = HeldVersion("bank-a", "v0", "x-customer-id", ("bank-a", "bank-a-eu"), replicas=2)


# --- Replicas ------------------------------------------------------------------------------------------


def test_adoption_scales_the_team_deployment_down_only_once_the_stable_version_is_ready(
    replicas_world: World,
) -> None:
    world, plan = replicas_world, ServingPlan("v1")
    team_service = world.service("fraud-svc")

    state = world.reconcile(plan)
    team = world.deployment("fraud")
    assert team is not None and team["spec"]["replicas"] == TEAM_REPLICAS
    assert team["metadata"]["annotations"][ORIGINAL_REPLICAS_ANNOTATION] == "4"
    assert team["metadata"]["annotations"][ADOPTED_VERSION_ANNOTATION] == "v1"
    assert world.replicas("fraud-v1") == TEAM_REPLICAS
    assert state.ready == {"v1": False} and not state.adopted
    assert state.weights == {"v1": 100}  # the team's pods and fraud-v1's both serve v1
    assert state.services == {"v1": "fraud-svc-v1"}
    assert_no_write(world, plan)  # still waiting: nothing to do

    world.roll_out("fraud-v1")
    state = world.reconcile(plan)
    assert world.replicas("fraud") == 0
    assert state.adopted and state.ready == {"v1": True} and state.replicas == {"v1": 4}
    pods = world.pod_labels("fraud-v1")
    assert pods["app"] == "fraud" and pods["evergreen.dev/version"] == "v1"
    version_service = world.service("fraud-svc-v1")
    assert version_service is not None
    assert version_service["spec"]["selector"] == {
        "evergreen.dev/monitor": "fraud-detector",
        "evergreen.dev/version": "v1",
    }
    assert world.service("fraud-svc") == team_service  # never modified
    assert_no_write(world, plan)


def test_a_rollout_moves_replicas_step_by_step_and_a_promotion_prunes_the_old_version(
    replicas_world: World,
) -> None:
    world = replicas_world
    adopt(world, ServingPlan("v1"))
    # R = 4: steps of 25%; 5% still needs one candidate pod.
    expected = {5: (3, 1, 25), 25: (3, 1, 25), 50: (2, 2, 50), 100: (0, 4, 100)}
    previous = 0
    for weight, (stable, candidate, effective) in expected.items():
        plan = ServingPlan("v1", "v2", weight)
        state = world.reconcile(plan)
        assert (world.replicas("fraud-v1"), world.replicas("fraud-v2")) == (stable, candidate)
        assert state.weights == {"v1": 100 - effective, "v2": effective}
        assert run(world.router().get_weights()) == state.weights
        # The candidate's pods take the team Service's traffic.
        assert world.pod_labels("fraud-v2")["app"] == "fraud"
        env = world.existing("fraud-v2")["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env == [{"name": "MODEL_VERSION", "value": "v2"}]
        # New candidate pods are not up yet: the rollout must wait for them.
        assert state.ready["v2"] is (candidate == previous)
        previous = candidate
        world.roll_out("fraud-v1", "fraud-v2")
        assert_no_write(world, plan)

    run(world.router().set_weights("v1", "v2", 50))
    assert (world.replicas("fraud-v1"), world.replicas("fraud-v2")) == (2, 2)
    with no_writes(world):
        run(world.router().set_weights("v1", "v2", 50))

    promoted = ServingPlan("v2")
    state = world.reconcile(promoted)
    assert world.replicas("fraud-v2") == 4
    assert world.deployment("fraud-v1") is not None, "the old version went before the new one was ready"
    world.roll_out("fraud-v2")
    state = world.reconcile(promoted)
    assert world.deployment("fraud-v1") is None and world.service("fraud-svc-v1") is None
    assert state.weights == {"v2": 100} and set(state.services) == {"v2"}
    assert world.deployment("fraud") is not None and world.service("fraud-svc") is not None
    assert_no_write(world, promoted)


def test_a_new_router_converges_from_the_cluster_after_a_restart(replicas_world: World) -> None:
    world = replicas_world
    world.reconcile(ServingPlan("v1"))  # the operator stops halfway through the adoption
    world.roll_out("fraud-v1")
    restarted = KubeApi(world.cluster.operator_configuration)
    try:
        router = router_for(world.spec.router, restarted, world.monitor, world.spec)
        state = world.reconcile(ServingPlan("v1"), router)
    finally:
        restarted.close()
    assert state.adopted and world.replicas("fraud") == 0

    plan = ServingPlan("v1", "v2", 50, holds=(HOLD,))
    state = world.reconcile(plan)
    world.roll_out("fraud-v1", "fraud-v2", "fraud-v0")
    again = assert_no_write(world, plan)
    assert again.weights == state.weights == {"v1": 50, "v2": 50}
    assert again.ready == {"v1": True, "v2": True, "v0": True}
    assert again.replicas == {"v1": 2, "v2": 2, "v0": 2}
    assert run(world.router().get_weights()) == {"v1": 50, "v2": 50}


def test_holds_keep_their_version_through_a_promotion_and_go_when_released(replicas_world: World) -> None:
    world = replicas_world
    adopt(world, ServingPlan("v1", holds=(HOLD,)))
    world.roll_out("fraud-v0")
    pods = world.pod_labels("fraud-v0")
    assert "app" not in pods and pods["tier"] == "model"  # not selected by the team's Service
    assert world.replicas("fraud-v0") == 2
    held_service = world.service("fraud-svc-v0")
    assert held_service is not None and held_service["spec"]["selector"]["evergreen.dev/version"] == "v0"
    assert run(world.router().get_weights()) == {"v1": 100}  # no main traffic to v0

    for plan in (ServingPlan("v1", "v2", 50, holds=(HOLD,)), ServingPlan("v1", "v2", 100, holds=(HOLD,))):
        world.reconcile(plan)
        world.roll_out("fraud-v1", "fraud-v2")
    promoted = ServingPlan("v2", holds=(HOLD,))
    world.reconcile(promoted)
    world.roll_out("fraud-v2")
    state = world.reconcile(promoted)
    assert world.deployment("fraud-v1") is None
    assert world.replicas("fraud-v0") == 2 and world.service("fraud-svc-v0") is not None
    assert state.services == {"v2": "fraud-svc-v2", "v0": "fraud-svc-v0"}

    # The stable version held for more replicas than its share: never below the hold.
    big_hold = HeldVersion("bank-b", "v2", "x-customer-id", ("bank-b",), replicas=6)
    state = world.reconcile(ServingPlan("v2", holds=(HOLD, big_hold)))
    assert world.replicas("fraud-v2") == 6
    run(world.router().set_weights("v2", None, 0))
    assert world.replicas("fraud-v2") == 6

    released = ServingPlan("v2")
    world.reconcile(released)
    assert world.replicas("fraud-v2") == 4
    assert world.deployment("fraud-v0") is not None, "pruned while the stable version was rolling"
    world.roll_out("fraud-v2")
    world.reconcile(released)
    assert world.deployment("fraud-v0") is None and world.service("fraud-svc-v0") is None


def test_objects_evergreen_did_not_create_are_never_touched(replicas_world: World) -> None:
    world = replicas_world
    lookalike = team_deployment(replicas=1)
    lookalike["metadata"] = {
        "name": "fraud-v3",
        "labels": {"app.kubernetes.io/managed-by": "evergreen", "evergreen.dev/monitor": "fraud-detector"},
    }
    world.create("apps/v1", "deployments", lookalike)
    bystander = team_deployment(replicas=1)
    bystander["metadata"] = {"name": "fraud-old", "labels": dict(lookalike["metadata"]["labels"])}
    world.create("apps/v1", "deployments", bystander)
    untouched = {name: world.written(name) for name in ("fraud-v3", "fraud-old")}

    adopt(world, ServingPlan("v1"))
    with pytest.raises(ObjectNotOwned) as raised:
        world.reconcile(ServingPlan("v1", "v3", 5))
    assert raised.value.field == "spec.rollout.target.deployment"
    assert "fraud-v3" in str(raised.value)
    world.roll_out("fraud-v1")
    world.reconcile(ServingPlan("v1"))  # prunes what is Evergreen's, and only that
    with pytest.raises(ServingNotReady):
        run(world.router().finalize())
    world.roll_out("fraud")
    run(world.router().finalize())
    assert world.deployment("fraud-v1") is None
    for name, written in untouched.items():
        assert world.written(name) == written, f"{name} was changed"


def test_finalize_gives_the_team_deployment_its_replicas_back(replicas_world: World) -> None:
    world = replicas_world
    adopt(world, ServingPlan("v1"))
    world.reconcile(ServingPlan("v1", "v2", 25, holds=(HOLD,)))
    router = world.router()

    with pytest.raises(ServingNotReady):
        run(router.finalize())
    team = world.deployment("fraud")
    assert team is not None and team["spec"]["replicas"] == TEAM_REPLICAS
    assert world.deployment("fraud-v1") is not None, "version pods went before the team's were ready"

    world.roll_out("fraud")
    run(router.finalize())
    team = world.deployment("fraud")
    assert team is not None and team["spec"]["replicas"] == TEAM_REPLICAS
    annotations = team["metadata"].get("annotations") or {}
    assert ORIGINAL_REPLICAS_ANNOTATION not in annotations and ADOPTED_VERSION_ANNOTATION not in annotations
    for version in ("v0", "v1", "v2"):
        assert world.deployment(f"fraud-{version}") is None and world.service(f"fraud-svc-{version}") is None
    assert world.service("fraud-svc") is not None
    with no_writes(world):
        run(world.router().finalize())  # idempotent


def test_a_missing_team_deployment_is_a_missing_reference(cluster: Cluster) -> None:
    spec = rollout_spec(RouterKind.REPLICAS)
    monitor = cluster.create_monitor("fraud-detector", {**MONITOR_SPEC, "rollout": spec.to_wire()})
    kube = KubeApi(cluster.operator_configuration)  # the chart's identity: its RBAC applies
    try:
        ref = MonitorRef(cluster.namespace, "fraud-detector", monitor["metadata"]["uid"])
        with pytest.raises(MissingReference) as raised:
            run(router_for(spec.router, kube, ref, spec).reconcile(ServingPlan("v1")))
        assert raised.value.field == "spec.rollout.target.deployment"
    finally:
        kube.close()


def test_weights_move_only_between_versions_a_reconcile_serves(replicas_world: World) -> None:
    world = replicas_world
    with pytest.raises(VersionNotServed):
        run(world.router().set_weights("v1", "v2", 5))
    adopt(world, ServingPlan("v1"))
    with pytest.raises(VersionNotServed):
        run(world.router().set_weights("v1", "v2", 5))


# --- GatewayAPI -------------------------------------------------------------------------------------


def main_weights(route: dict[str, Any]) -> list[tuple[str, int]]:
    main = next(rule for rule in route["spec"]["rules"] if rule.get("name") == "main")
    return [(ref["name"], ref["weight"]) for ref in main["backendRefs"]]


def test_the_gateway_router_splits_by_route_weights_and_routes_holds_by_header(gateway_world: World) -> None:
    world = gateway_world
    start = ServingPlan("v1", holds=(HOLD,))
    state = world.reconcile(start)
    route = world.route()
    assert route is not None
    assert route["metadata"]["ownerReferences"][0]["uid"] == world.monitor.uid
    assert route["spec"]["parentRefs"][0]["name"] == "public"
    assert route["spec"]["hostnames"] == ["fraud.example.com"]
    hold_rule, _ = route["spec"]["rules"]
    assert hold_rule["name"] == "hold-bank-a"
    assert [match["headers"][0]["value"] for match in hold_rule["matches"]] == ["bank-a", "bank-a-eu"]
    assert hold_rule["backendRefs"][0]["name"] == "fraud-svc-v0"
    assert main_weights(route) == [("fraud-svc-v1", 100)]
    assert state.weights == {"v1": 100} and not state.adopted
    world.roll_out("fraud-v1", "fraud-v0")
    state = adopt(world, start)
    assert world.replicas("fraud") == 0 and world.replicas("fraud-v0") == 2
    assert_no_write(world, start)

    for weight in (5, 25, 50, 100):
        plan = ServingPlan("v1", "v2", weight, holds=(HOLD,))
        state = world.reconcile(plan)
        assert main_weights(world.existing_route()) == [
            ("fraud-svc-v1", 100 - weight),
            ("fraud-svc-v2", weight),
        ]
        assert state.weights == {"v1": 100 - weight, "v2": weight}
        assert run(world.router().get_weights()) == state.weights
        assert (world.replicas("fraud-v1"), world.replicas("fraud-v2")) == (4, 2)  # candidateReplicas: 2
        assert "app" not in world.pod_labels("fraud-v2")  # callers bypassing the gateway get the stable
        world.roll_out("fraud-v2")
        assert_no_write(world, plan)

    run(world.router().set_weights("v1", "v2", 50))
    assert main_weights(world.existing_route()) == [("fraud-svc-v1", 50), ("fraud-svc-v2", 50)]
    assert world.existing_route()["spec"]["rules"][0]["name"] == "hold-bank-a"

    promoted = ServingPlan("v2", holds=(HOLD,))
    world.reconcile(promoted)
    assert world.pod_labels("fraud-v2")["app"] == "fraud"  # the new stable takes the team Service
    assert world.replicas("fraud-v2") == 4
    assert world.deployment("fraud-v1") is not None
    world.roll_out("fraud-v2")
    state = world.reconcile(promoted)
    assert world.deployment("fraud-v1") is None and world.service("fraud-svc-v1") is None
    assert world.deployment("fraud-v0") is not None and world.service("fraud-svc-v0") is not None
    assert main_weights(world.existing_route()) == [("fraud-svc-v2", 100)]
    assert state.services == {"v2": "fraud-svc-v2", "v0": "fraud-svc-v0"}
    assert_no_write(world, promoted)

    world.reconcile(ServingPlan("v2"))
    assert [rule["name"] for rule in world.existing_route()["spec"]["rules"]] == ["main"]
    assert world.deployment("fraud-v0") is None

    with pytest.raises(ServingNotReady):
        run(world.router().finalize())
    world.roll_out("fraud")
    run(world.router().finalize())
    assert world.route() is None and world.deployment("fraud-v2") is None
    assert world.replicas("fraud") == TEAM_REPLICAS


def test_the_gateway_router_leaves_a_route_it_did_not_create_alone(gateway_world: World) -> None:
    world = gateway_world
    theirs = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "fraud-route"},
        "spec": {"rules": [{"backendRefs": [{"name": "fraud-svc", "port": 80}]}]},
    }
    created = world.create(ROUTES_API_VERSION, "httproutes", theirs)
    with pytest.raises(ObjectNotOwned) as raised:
        world.reconcile(ServingPlan("v1"))
    assert raised.value.field == "spec.rollout.gateway.name"
    assert world.existing_route()["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert world.replicas("fraud") == TEAM_REPLICAS


def test_a_renamed_route_replaces_the_old_one(gateway_world: World) -> None:
    world = gateway_world
    adopt(world, ServingPlan("v1"))
    assert world.spec.gateway is not None
    gateway = world.spec.gateway.model_copy(update={"name": "fraud-route-2"})
    renamed = world.spec.model_copy(update={"gateway": gateway})
    router = router_for(renamed.router, world.kube, world.monitor, renamed)
    state = world.reconcile(ServingPlan("v1"), router)
    assert world.route("fraud-route") is None and world.route("fraud-route-2") is not None
    assert state.weights == {"v1": 100}


def test_a_change_of_the_team_service_reaches_the_version_services(replicas_world: World) -> None:
    world = replicas_world
    adopt(world, ServingPlan("v1"))
    assert world.service("fraud-svc-v1")["spec"]["ports"][0]["port"] == 80  # type: ignore[index]
    world.cluster.core.patch_namespaced_service(
        "fraud-svc",
        world.cluster.namespace,
        [{"op": "replace", "path": "/spec/ports/0/port", "value": 8081}],
    )
    world.reconcile(ServingPlan("v1"))
    ports = world.service("fraud-svc-v1")["spec"]["ports"]  # type: ignore[index]
    assert [(p["name"], p["port"]) for p in ports] == [("http", 8081)]
    assert any(write.startswith("patch Service fraud-svc-v1") for write in world.objects.writes)
