"""What Evergreen writes, judged by the real schemas of the kinds it writes.

Retraining workloads rendered by ``render_workload`` from the same templates the unit tests use
(a batch/v1 Job, an Argo Workflow, a Kubeflow PyTorchJob, a RayJob), and what the routers create
(the GatewayAPI router's HTTPRoute with weights and hold rules, the version Deployments and
Services both routers run), are created with server-side dry run and strict field validation
against the installed CRDs (Gateway API v1.4.1, Argo Workflows, Kubeflow training operator,
KubeRay) and the built-in kinds: a field the schema does not know is an error, not a silent drop.
Every value a ModelMonitor may give the HTTPRoute (parentRefs, hostnames, hold headers) at the
edge of the ModelMonitor schema is accepted by the HTTPRoute schema too.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any, cast

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

from evergreen.actuators.routing import Router, router_for
from evergreen.actuators.routing.base import HELD_REPLICAS_ANNOTATION, HeldVersion, MonitorRef, ServingPlan
from evergreen.actuators.routing.gateway import (
    MAX_HEADER_VALUE,
    MAX_MATCHES,
    MAX_RULES,
    check_route_capacity,
    render_http_route,
)
from evergreen.actuators.routing.serving import render_version_deployment, render_version_service
from evergreen.actuators.workload_template import render_workload
from evergreen.api.delivery import GatewayRoute, RolloutSpec, RouterKind, VersionInjection
from evergreen.api.resource import GROUP, KIND, PLURAL, VERSION
from evergreen.errors import SpecError
from evergreen.kube.client import Conflict, KubeApi
from tests.e2e.conftest import Plane
from tests.support.cluster import wait_for
from tests.unit.test_workloads import CONTEXT, JOB, PYTORCH_JOB, RAY_JOB, WORKFLOW

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAMESPACE = "third-party-kinds"
MONITOR = MonitorRef(NAMESPACE, "fraud-detector", "6f1c2d4e-0000-4000-8000-000000000001")
#: (group, version, plural) of each kind Evergreen writes.
KINDS = {
    "Job": ("batch", "v1", "jobs"),
    "Workflow": ("argoproj.io", "v1alpha1", "workflows"),
    "PyTorchJob": ("kubeflow.org", "v1", "pytorchjobs"),
    "RayJob": ("ray.io", "v1", "rayjobs"),
    "HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes"),
    "Deployment": ("apps", "v1", "deployments"),
    "Service": ("", "v1", "services"),
}


@dataclasses.dataclass(frozen=True)
class Schemas:
    """Server-side dry run with strict field validation, for any kind."""

    api: kubernetes.client.ApiClient

    def dry_run(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create ``body`` with server-side dry run and strict field validation; the stored form."""
        options: dict[str, Any] = {"dry_run": "All", "field_validation": "Strict"}
        if body["kind"] == "Service":  # the core group has no /apis/<group> path
            typed = kubernetes.client.CoreV1Api(self.api).create_namespaced_service(
                NAMESPACE, cast(Any, body), **options
            )
            served: dict[str, Any] = self.api.sanitize_for_serialization(typed)  # type: ignore[no-untyped-call]
            return served
        # Untyped for every other kind, so no client-side model stands between the body and the server.
        group, version, plural = KINDS[body["kind"]]
        custom = kubernetes.client.CustomObjectsApi(self.api)
        created = custom.create_namespaced_custom_object(group, version, NAMESPACE, plural, body, **options)
        assert isinstance(created, dict)
        return created

    def refusal(self, body: dict[str, Any]) -> tuple[int, str]:
        try:
            self.dry_run(body)
        except ApiException as error:
            return error.status, str(json.loads(error.body or "{}").get("message", ""))
        pytest.fail(f"the server accepted {body['kind']} {body['metadata']['name']}")


@pytest.fixture(scope="module")
def schemas(plane: Plane) -> Iterator[Schemas]:
    core = kubernetes.client.CoreV1Api(plane.api)
    core.create_namespace(
        kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=NAMESPACE))
    )
    yield Schemas(plane.api)
    core.delete_namespace(NAMESPACE)


Path = tuple[str | int, ...]


def leaves(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from leaves(child, (*path, key))
    elif isinstance(value, list) and value:
        for index, child in enumerate(value):
            yield from leaves(child, (*path, index))
    else:
        yield path, value


def at(value: Any, path: Path) -> Any:
    for step in path:
        value = value[step]
    return value


def assert_kept(sent: dict[str, Any], stored: dict[str, Any]) -> None:
    """Every field sent is in the server's answer, unchanged: nothing was pruned or rewritten."""
    for path, value in leaves({"spec": sent["spec"], "metadata": sent["metadata"]}):
        assert at(stored, path) == value, (
            f"{sent['kind']} {path}: sent {value!r}, stored {at(stored, path)!r}"
        )


# Retraining workloads --------------------------------------------------------------------------

TEMPLATES = {"Job": JOB, "Workflow": WORKFLOW, "PyTorchJob": PYTORCH_JOB, "RayJob": RAY_JOB}


@pytest.mark.parametrize("kind", list(TEMPLATES))
def test_each_workload_kind_as_rendered_is_accepted_by_its_real_schema(schemas: Schemas, kind: str) -> None:
    context = dataclasses.replace(
        CONTEXT, namespace=NAMESPACE, monitor=MONITOR.name, monitor_uid=MONITOR.uid, service_account="trainer"
    )
    workload = render_workload(TEMPLATES[kind], context)
    assert workload["kind"] == kind
    stored = schemas.dry_run(workload)
    assert_kept(workload, stored)
    assert "EVERGREEN_RUN" in json.dumps(stored["spec"]), "the run's environment reached the containers"


@pytest.mark.parametrize("kind", list(TEMPLATES))
def test_strict_validation_is_in_force_for_each_workload_kind(schemas: Schemas, kind: str) -> None:
    """The acceptance above means something: the same schema refuses a field it does not know."""
    context = dataclasses.replace(CONTEXT, namespace=NAMESPACE, monitor=MONITOR.name, monitor_uid=MONITOR.uid)
    workload = render_workload(TEMPLATES[kind], context)
    workload["spec"]["notAField"] = True
    status, message = schemas.refusal(workload)
    assert status in (400, 422)
    assert 'unknown field "spec.notAField"' in message


# What the routers write ------------------------------------------------------------------------

ROUTE = GatewayRoute.model_validate(
    {
        "name": "fraud-detector",
        "parentRefs": [
            {"name": "public", "namespace": "gateways", "sectionName": "https"},
            {"name": "internal"},
        ],
        "hostnames": ["fraud.example.com", "*.fraud.example.com"],
        "port": 8080,
    }
)
HOLDS = (
    HeldVersion("bank-a", "v11", "x-customer-id", ("bank-a", "bank-a-eu")),
    HeldVersion("audit", "v10", "X-Audit", ("2026-q4",), replicas=2),
)
PLANS = {
    "stable only": ServingPlan("v12"),
    "canary at 25%": ServingPlan("v12", "v13", 25),
    "candidate at 100%": ServingPlan("v12", "v13", 100),
    "canary with holds": ServingPlan("v12", "v13", 5, HOLDS),
    "holds without a rollout": ServingPlan("v12", holds=HOLDS),
}


@pytest.mark.parametrize("plan", PLANS.values(), ids=list(PLANS))
def test_the_gateway_routers_httproute_is_accepted_by_gateway_api_v1_4_1(
    schemas: Schemas, plan: ServingPlan
) -> None:
    route = render_http_route(ROUTE, monitor=MONITOR, service="fraud-detector", plan=plan)
    stored = schemas.dry_run(route)
    assert_kept(route, stored)
    main = stored["spec"]["rules"][-1]
    assert sum(ref.get("weight", 1) for ref in main["backendRefs"]) == 100
    assert len(stored["spec"]["rules"]) == len(plan.holds) + 1


def test_the_route_at_evergreens_capacity_is_accepted_and_one_more_is_not(schemas: Schemas) -> None:
    """check_route_capacity keeps within the HTTPRoute schema: the most it allows is accepted;
    a 17th rule and a 128th hold value are refused by both."""
    per_hold, last = divmod(MAX_MATCHES - 1, MAX_RULES - 1)
    holds = [
        HeldVersion(f"h{i}", f"v{i}", "x-customer-id", tuple(f"c{i}-{j}" for j in range(per_hold)))
        for i in range(MAX_RULES - 1)
    ]
    holds[-1] = dataclasses.replace(holds[-1], values=holds[-1].values + tuple(f"x{j}" for j in range(last)))
    holds[0] = dataclasses.replace(holds[0], values=("v" * MAX_HEADER_VALUE, *holds[0].values[1:]))
    full = ServingPlan("v100", "v101", 50, tuple(holds))
    route = render_http_route(ROUTE, monitor=MONITOR, service="fraud-detector", plan=full)
    assert sum(len(rule.get("matches", [{}])) for rule in route["spec"]["rules"]) == MAX_MATCHES
    assert_kept(route, schemas.dry_run(route))

    # The server does not count the main rule's defaulted match: 127 hold values pass its rule, so
    # Evergreen's limit is one match short of the schema's; 128 are refused by both.
    over_matches = (*holds[:-1], dataclasses.replace(holds[-1], values=(*holds[-1].values, "m1", "m2")))
    one_more_rule = (*holds, HeldVersion("extra", "v99", "x-customer-id", ("z",)))
    for too_many in (over_matches, one_more_rule):
        with pytest.raises(SpecError):
            check_route_capacity(too_many)
        body = copy.deepcopy(route)
        body["spec"]["rules"] = _rules(ServingPlan("v100", "v101", 50, too_many))
        status, _ = schemas.refusal(body)
        assert status == 422


def _rules(plan: ServingPlan) -> list[dict[str, Any]]:
    """The rules render_http_route would write, without its capacity check."""
    from evergreen.actuators.routing.gateway import hold_rule, main_rule

    return [
        *(hold_rule("fraud-detector", ROUTE.port, hold) for hold in plan.holds),
        main_rule("fraud-detector", ROUTE.port, plan.stable, plan.candidate, plan.weight),
    ]


#: Values at the edge of what the ModelMonitor schema accepts for the route's fields.
EDGE_ROUTES = {
    "parentRef group and kind spelled out": {
        "parentRefs": [{"name": "p", "group": "gateway.networking.k8s.io", "kind": "Gateway"}]
    },
    "parentRef to a Service (GAMMA mesh)": {
        "parentRefs": [{"name": "fraud-detector", "group": "", "kind": "Service"}]
    },
    "longest names": {
        "name": "r" * 253,
        "parentRefs": [{"name": "p" * 253, "namespace": "n" * 63, "sectionName": "s" * 63}],
    },
    "sixteen hostnames": {"hostnames": [f"h{i}.example.com" for i in range(16)]},
    "a wildcard hostname": {"hostnames": ["*.example.com"]},
    "the longest hostname": {"hostnames": [".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])]},
    "thirty-two parents": {"parentRefs": [{"name": f"gateway-{i}"} for i in range(32)]},
}


@pytest.mark.parametrize("changes", EDGE_ROUTES.values(), ids=list(EDGE_ROUTES))
def test_every_route_the_modelmonitor_schema_allows_is_one_the_httproute_schema_allows(
    schemas: Schemas, changes: dict[str, Any]
) -> None:
    wire = {**ROUTE.model_dump(mode="json", by_alias=True, exclude_none=True), **changes}
    route = GatewayRoute.model_validate(wire)
    body = render_http_route(
        route, monitor=MONITOR, service="fraud-detector", plan=PLANS["canary with holds"]
    )
    assert_kept(body, schemas.dry_run(body))


TEAM_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "fraud-detector", "namespace": NAMESPACE, "labels": {"app": "fraud-detector"}},
    "spec": {
        "replicas": 4,
        "revisionHistoryLimit": 3,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "selector": {"matchLabels": {"app": "fraud-detector"}},
        "template": {
            "metadata": {"labels": {"app": "fraud-detector", "tier": "model"}, "annotations": {"a": "b"}},
            "spec": {
                "containers": [
                    {
                        "name": "server",
                        "image": "registry.example/fraud-server:1.0",
                        "args": ["--model-uri=models:/fraud/v12", "--port=8080"],
                        "env": [{"name": "MODEL_VERSION", "value": "v12"}],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
                    },
                    {"name": "exporter", "image": "registry.example/exporter:0.3"},
                ]
            },
        },
    },
}
TEAM_SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "fraud-detector", "namespace": NAMESPACE},
    "spec": {
        "type": "NodePort",
        "selector": {"app": "fraud-detector"},
        "sessionAffinity": "ClientIP",
        "ports": [{"name": "http", "port": 8080, "targetPort": "http", "nodePort": 30080}],
    },
}
INJECTIONS = {
    "env": VersionInjection(container="server", env="MODEL_VERSION"),
    "image tag": VersionInjection(container="server", image_tag=True),
    "argument": VersionInjection(container="server", arg_prefix="--model-uri=models:/fraud/"),
}


@pytest.mark.parametrize("injection", INJECTIONS.values(), ids=list(INJECTIONS))
def test_the_version_deployments_and_services_are_accepted(
    schemas: Schemas, injection: VersionInjection
) -> None:
    deployment = render_version_deployment(
        TEAM_DEPLOYMENT, monitor=MONITOR, version="v13", injection=injection, replicas=2, held_replicas=1
    )
    stored = schemas.dry_run(deployment)
    assert_kept(deployment, stored)
    assert "v13" in json.dumps(stored["spec"]["template"]["spec"]["containers"][0])
    service = render_version_service(TEAM_SERVICE, monitor=MONITOR, version="v13")
    assert_kept(service, schemas.dry_run(service))


# The routers themselves, writing to the API --------------------------------------------------


@pytest.fixture
def team(schemas: Schemas, plane: Plane) -> Iterator[tuple[KubeApi, MonitorRef]]:
    """The team's Deployment and Service, and a ModelMonitor to own what a router creates (the
    garbage collector removes objects whose owner does not exist), all stored for real."""
    apps, core = kubernetes.client.AppsV1Api(plane.api), kubernetes.client.CoreV1Api(plane.api)
    apps.create_namespaced_deployment(NAMESPACE, cast(Any, TEAM_DEPLOYMENT))
    core.create_namespaced_service(NAMESPACE, cast(Any, TEAM_SERVICE))
    custom = kubernetes.client.CustomObjectsApi(plane.api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": MONITOR.name, "namespace": NAMESPACE},
        "spec": {"model": "fraud", "kpis": [{"name": "ctr", "query": "avg(ctr)", "min": 0.01}]},
    }
    monitor = custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
    assert isinstance(monitor, dict)
    kube = KubeApi(plane.control_plane.configuration())
    yield kube, MonitorRef(NAMESPACE, MONITOR.name, monitor["metadata"]["uid"])
    kube.close()
    # The team's objects go by hand, the router's with their owner (the garbage collector); the
    # next test starts once both are gone.
    custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, MONITOR.name)
    apps.delete_namespaced_deployment("fraud-detector", NAMESPACE)
    core.delete_namespaced_service("fraud-detector", NAMESPACE)
    wait_for(
        "the router's objects collected",
        lambda: (
            not (
                apps.list_namespaced_deployment(NAMESPACE).items
                or core.list_namespaced_service(NAMESPACE).items
            )
        ),
    )


def _stored(plane: Plane, kind: str, name: str) -> dict[str, Any]:
    group, version, plural = KINDS[kind]
    if kind == "Service":
        typed = kubernetes.client.CoreV1Api(plane.api).read_namespaced_service(name, NAMESPACE)
        served: dict[str, Any] = plane.api.sanitize_for_serialization(typed)  # type: ignore[no-untyped-call]
        return served
    stored = kubernetes.client.CustomObjectsApi(plane.api).get_namespaced_custom_object(
        group, version, NAMESPACE, plural, name
    )
    assert isinstance(stored, dict)
    return stored


def reconcile(router: Router, plan: ServingPlan) -> None:
    """One reconcile, again after a 409 as the operator's next tick would: the Deployment
    controller writes the team's Deployment status while the router reads and updates it."""
    for _ in range(10):
        try:
            asyncio.run(router.reconcile(plan))
            return
        except Conflict:
            time.sleep(0.2)
    pytest.fail("ten reconciles in a row met a conflict")


ROUTED = RolloutSpec.model_validate(
    {
        "router": "GatewayAPI",
        "target": {
            "deployment": "fraud-detector",
            "service": "fraud-detector",
            "version": {"container": "server", "env": "MODEL_VERSION"},
        },
        "gateway": ROUTE.to_wire(),
        "candidateReplicas": 1,
    }
)


def test_the_gateway_router_writes_routes_and_weights_the_server_keeps_whole(
    plane: Plane, team: tuple[KubeApi, MonitorRef]
) -> None:
    """The router's own create and patches: the stored route is the rendered one, field for field
    (nothing pruned), and set_weights' patch leaves the hold rules as they were."""
    kube, monitor = team
    router = router_for(RouterKind.GATEWAY_API, kube, monitor, ROUTED)
    plan = ServingPlan("v12", "v13", 25, HOLDS)
    reconcile(router, plan)
    route = _stored(plane, "HTTPRoute", ROUTE.name)
    assert_kept(render_http_route(ROUTE, monitor=monitor, service="fraud-detector", plan=plan), route)

    asyncio.run(router.set_weights("v12", "v13", 50))
    moved = _stored(plane, "HTTPRoute", ROUTE.name)
    assert_kept(
        render_http_route(
            ROUTE, monitor=monitor, service="fraud-detector", plan=ServingPlan("v12", "v13", 50, HOLDS)
        ),
        moved,
    )
    assert asyncio.run(router.get_weights()) == {"v12": 50, "v13": 50}
    for version in ("v12", "v13", "v11", "v10"):
        service = _stored(plane, "Service", f"fraud-detector-{version}")
        assert service["spec"]["selector"], version


def test_the_replicas_router_writes_deployments_the_server_keeps_whole(
    plane: Plane, team: tuple[KubeApi, MonitorRef]
) -> None:
    """The router's take-over patch of the team's Deployment and its version Deployments and
    Services are accepted; the stored candidate Deployment is the rendered one, field for field."""
    kube, monitor = team
    spec = RolloutSpec.model_validate({**ROUTED.to_wire(), "router": "Replicas", "gateway": None})
    router = router_for(RouterKind.REPLICAS, kube, monitor, spec)
    reconcile(router, ServingPlan("v12", "v13", 25))
    listed = kubernetes.client.CustomObjectsApi(plane.api).list_namespaced_custom_object(
        "apps", "v1", NAMESPACE, "deployments"
    )
    names = {item["metadata"]["name"]: item for item in cast(dict[str, Any], listed)["items"]}
    candidate = next(body for name, body in names.items() if name.endswith("v13"))
    assert candidate["metadata"]["ownerReferences"][0]["uid"] == monitor.uid
    server = candidate["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "MODEL_VERSION", "value": "v13"} in server["env"]
    sent = render_version_deployment(
        _stored(plane, "Deployment", "fraud-detector"),
        monitor=monitor,
        version="v13",
        injection=spec.target.version,
        replicas=candidate["spec"]["replicas"],
        held_replicas=int(candidate["metadata"]["annotations"][HELD_REPLICAS_ANNOTATION]),
    )
    assert_kept(sent, candidate)
