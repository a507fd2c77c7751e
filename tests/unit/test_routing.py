"""The routers' pure parts: names, rendered Deployments/Services/HTTPRoutes, replica arithmetic."""

from __future__ import annotations

import asyncio
import copy
import re
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes.client
import kubernetes_validate
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from evergreen.actuators.routing import (
    HeldVersion,
    MonitorRef,
    ServingPlan,
    VersionNotServed,
    held_versions,
    router_for,
)
from evergreen.actuators.routing.base import (
    HELD_REPLICAS_ANNOTATION,
    ORIGINAL_REPLICAS_ANNOTATION,
    VERSION_LABEL,
    InvalidAnnotation,
    traffic_shares,
)
from evergreen.actuators.routing.fake import FakeRouter
from evergreen.actuators.routing.fleet import original_replicas
from evergreen.actuators.routing.gateway import (
    GatewayRouter,
    check_route_capacity,
    gateway_roles,
    render_http_route,
    route_weights,
)
from evergreen.actuators.routing.injection import retag_image
from evergreen.actuators.routing.naming import (
    version_deployment_name,
    version_service_name,
    version_suffix,
)
from evergreen.actuators.routing.patching import covers, merge_patch
from evergreen.actuators.routing.replicas import ReplicaRouter, replica_roles, split_replicas
from evergreen.actuators.routing.serving import (
    DEPLOYMENT_EXACT_PATHS,
    check_team_service_selects_team_pods,
    deployment_ready,
    deployment_stalled,
    render_version_deployment,
    render_version_service,
)
from evergreen.actuators.workload_template import MANAGED_BY_LABEL, MONITOR_LABEL
from evergreen.api.delivery import GatewayRoute, RolloutSpec, RouterKind, VersionHold, VersionInjection
from evergreen.errors import SpecError
from evergreen.kube.client import KubeApi, ObjectApi

MONITOR = MonitorRef("ml", "fraud-detector", "7f1c0a52-0000-4000-8000-000000000001")
KUBERNETES_VERSION = "1.35.0"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
CRD_FILE = Path(__file__).parents[2].parent / "shared" / "crds" / "gateway-api-v1.4.1-httproutes.yaml"


def team_deployment() -> dict[str, Any]:
    """A team Deployment as the API server returns it: server fields and defaults included."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "fraud",
            "namespace": "ml",
            "uid": "team-uid",
            "resourceVersion": "4711",
            "generation": 7,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl", "operation": "Update"}],
            "finalizers": ["team.example/keep"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "Thing", "name": "x", "uid": "u"}],
            "labels": {
                "app": "fraud",
                "team": "risk",
                "app.kubernetes.io/instance": "fraud-prod",
                "app.kubernetes.io/managed-by": "Helm",
                "kustomize.toolkit.fluxcd.io/name": "apps",
            },
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                "deployment.kubernetes.io/revision": "3",
            },
        },
        "spec": {
            "replicas": 4,
            "paused": True,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "fraud"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {
                    "creationTimestamp": None,
                    "labels": {"app": "fraud", "tier": "model"},
                    "annotations": {"prometheus.io/scrape": "true"},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "registry.example:5000/risk/fraud:v1@sha256:" + "a" * 64,
                            "args": ["--port=8080", "--model-uri=models:/fraud/v1"],
                            "env": [
                                {"name": "LOG_LEVEL", "value": "info"},
                                {
                                    "name": "MODEL_VERSION",
                                    "valueFrom": {"configMapKeyRef": {"name": "m", "key": "v"}},
                                },
                            ],
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "terminationMessagePath": "/dev/termination-log",
                            "imagePullPolicy": "IfNotPresent",
                        },
                        {"name": "sidecar", "image": "envoy:1.30"},
                    ],
                    "restartPolicy": "Always",
                },
            },
        },
        "status": {"replicas": 4, "availableReplicas": 4, "observedGeneration": 7},
    }


def team_service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "fraud-svc", "namespace": "ml", "uid": "svc-uid", "labels": {"app": "fraud"}},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.0.0.12",
            "clusterIPs": ["10.0.0.12"],
            "externalTrafficPolicy": "Local",
            "healthCheckNodePort": 31000,
            "sessionAffinity": "None",
            "selector": {"app": "fraud"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 30080}
            ],
        },
    }


def injection(**how: Any) -> VersionInjection:
    return VersionInjection.model_validate({"container": "server", **(how or {"env": "MODEL_VERSION"})})


def render(version: str = "v2", **options: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "monitor": MONITOR,
        "version": version,
        "injection": injection(),
        "replicas": 3,
    }
    settings.update(options)
    return render_version_deployment(team_deployment(), **settings)


def container(deployment: dict[str, Any], name: str = "server") -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = next(c for c in containers if c["name"] == name)
    return found


# --- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "suffix"),
    [("v2", "v2"), ("2026-03-01", "2026-03-01"), ("model-7", "model-7")],
)
def test_a_version_that_is_a_valid_name_is_used_as_is(version: str, suffix: str) -> None:
    assert version_suffix(version) == suffix
    assert version_deployment_name("fraud", version) == f"fraud-{suffix}"
    assert version_service_name("fraud-svc", version) == f"fraud-svc-{suffix}"


def test_other_versions_are_sanitized_and_hashed_so_they_never_collide() -> None:
    versions = ["v2.1", "v2-1", "V2-1", "v2_1", "v2..1", "2.1", "-2.1"]
    suffixes = [version_suffix(version) for version in versions]
    assert len(set(suffixes)) == len(versions)
    assert suffixes[1] == "v2-1"
    assert re.fullmatch(r"v2-1-[0-9a-f]{8}", suffixes[0])
    assert all(DNS_LABEL.match(suffix) for suffix in suffixes)


@given(st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?\Z"))
def test_every_valid_version_gives_valid_names(version: str) -> None:
    service = version_service_name("s" * 50, version)  # the longest Service name the spec allows
    deployment = version_deployment_name("d" * 200, version)
    assert len(service) <= 63 and DNS_LABEL.match(service)
    assert len(deployment) <= 253 and DNS_SUBDOMAIN.match(deployment)


def test_long_versions_are_cut_to_fit_and_keep_their_hash() -> None:
    first, second = "a" * 60 + "xyz", "a" * 60 + "xyw"
    one, other = version_service_name("fraud-svc", first), version_service_name("fraud-svc", second)
    assert len(one) == 63 and len(other) == 63 and one != other


# --- the version Deployment --------------------------------------------------------------------------


def test_the_version_deployment_is_named_labelled_and_owned_by_the_monitor() -> None:
    deployment = render("v2", replicas=3)
    metadata = deployment["metadata"]
    assert metadata["name"] == "fraud-v2"
    assert metadata["namespace"] == "ml"
    assert metadata["labels"] == {
        "app": "fraud",
        "team": "risk",
        MANAGED_BY_LABEL: "evergreen",
        MONITOR_LABEL: "fraud-detector",
        VERSION_LABEL: "v2",
    }
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": "evergreen.dev/v1alpha1",
            "kind": "ModelMonitor",
            "name": "fraud-detector",
            "uid": MONITOR.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert deployment["spec"]["replicas"] == 3
    ours = {MONITOR_LABEL: "fraud-detector", VERSION_LABEL: "v2"}
    assert deployment["spec"]["selector"] == {"matchLabels": ours}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "fraud", "tier": "model", **ours}
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_server_set_fields_are_not_copied_and_the_team_object_is_untouched() -> None:
    team = team_deployment()
    before = copy.deepcopy(team)
    deployment = render_version_deployment(
        team, monitor=MONITOR, version="v2", injection=injection(), replicas=1
    )
    assert team == before
    assert set(deployment) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(deployment["metadata"]) == {"name", "namespace", "labels", "annotations", "ownerReferences"}
    assert deployment["metadata"]["annotations"] == {HELD_REPLICAS_ANNOTATION: "0"}
    assert "paused" not in deployment["spec"]
    assert "creationTimestamp" not in deployment["spec"]["template"]["metadata"]
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    assert deployment["spec"]["strategy"] == team["spec"]["strategy"]


def test_held_only_pods_lose_the_labels_the_team_service_selects_on() -> None:
    deployment = render("v1", exclude_labels={"app"}, held_replicas=2, replicas=2)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert "app" not in labels and labels["tier"] == "model"
    assert deployment["metadata"]["annotations"][HELD_REPLICAS_ANNOTATION] == "2"


def test_env_injection_replaces_the_variable_wherever_it_came_from() -> None:
    env = container(render("v2", injection=injection(env="MODEL_VERSION")))["env"]
    assert env == [{"name": "LOG_LEVEL", "value": "info"}, {"name": "MODEL_VERSION", "value": "v2"}]
    env = container(render("v2", injection=injection(env="NEW_VAR")))["env"]
    assert env[0] == {"name": "NEW_VAR", "value": "v2"}  # first: later variables may refer to it
    assert len(env) == 3


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("fraud", "fraud:v2"),
        ("fraud:v1", "fraud:v2"),
        ("risk/fraud:v1", "risk/fraud:v2"),
        ("registry.example:5000/risk/fraud", "registry.example:5000/risk/fraud:v2"),
        ("registry.example:5000/risk/fraud:v1", "registry.example:5000/risk/fraud:v2"),
        ("registry.example:5000/fraud@sha256:" + "b" * 64, "registry.example:5000/fraud:v2"),
        ("localhost:5000/fraud:v1@sha256:" + "c" * 64, "localhost:5000/fraud:v2"),
    ],
)
def test_image_tags_are_replaced_keeping_registry_ports_and_dropping_digests(
    image: str, expected: str
) -> None:
    assert retag_image(image, "v2") == expected


def test_image_tag_injection() -> None:
    deployment = render("v2", injection=injection(imageTag=True))
    assert container(deployment)["image"] == "registry.example:5000/risk/fraud:v2"
    assert container(deployment, "sidecar")["image"] == "envoy:1.30"


def test_arg_prefix_injection_replaces_or_appends() -> None:
    args = container(render("v2", injection=injection(argPrefix="--model-uri=models:/fraud/")))["args"]
    assert args == ["--port=8080", "--model-uri=models:/fraud/v2"]
    args = container(render("v2", injection=injection(argPrefix="--version=")))["args"]
    assert args == ["--port=8080", "--model-uri=models:/fraud/v1", "--version=v2"]


def test_a_missing_container_is_a_spec_error_naming_the_field() -> None:
    missing = VersionInjection(container="model", env="MODEL_VERSION")
    with pytest.raises(SpecError) as raised:
        render("v2", injection=missing)
    assert raised.value.field == "spec.rollout.target.version.container"
    assert "server, sidecar" in raised.value.message


# --- the version Service -----------------------------------------------------------------------------


def test_the_version_service_is_a_cluster_ip_copy_selecting_only_that_version() -> None:
    service = render_version_service(team_service(), monitor=MONITOR, version="v2")
    assert service["metadata"]["name"] == "fraud-svc-v2"
    assert service["metadata"]["ownerReferences"][0]["uid"] == MONITOR.uid
    assert service["metadata"]["labels"][VERSION_LABEL] == "v2"
    assert service["spec"] == {
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        "selector": {MONITOR_LABEL: "fraud-detector", VERSION_LABEL: "v2"},
    }
    kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)


def test_the_replicas_router_needs_a_team_service_selecting_the_team_pods() -> None:
    assert check_team_service_selects_team_pods(team_deployment(), team_service()) == {"app": "fraud"}
    elsewhere = team_service()
    elsewhere["spec"]["selector"] = {"app": "other"}
    with pytest.raises(SpecError, match="do not carry") as raised:
        check_team_service_selects_team_pods(team_deployment(), elsewhere)
    assert raised.value.field == "spec.rollout.target.service"
    del elsewhere["spec"]["selector"]
    with pytest.raises(SpecError, match="no pod selector"):
        check_team_service_selects_team_pods(team_deployment(), elsewhere)


# --- readiness ---------------------------------------------------------------------------------------


def deployment_with(replicas: int, generation: int = 2, **status: int) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas}, "status": status}


@pytest.mark.parametrize(
    ("deployment", "ready"),
    [
        (deployment_with(3, observedGeneration=2, updatedReplicas=3, availableReplicas=3), True),
        (deployment_with(3, observedGeneration=2, updatedReplicas=3, availableReplicas=2), False),
        (deployment_with(3, observedGeneration=2, updatedReplicas=2, availableReplicas=3), False),
        (deployment_with(3, observedGeneration=1, updatedReplicas=3, availableReplicas=3), False),
        (deployment_with(3, availableReplicas=3, updatedReplicas=3), False),
        (deployment_with(0), True),
    ],
)
def test_ready_means_the_current_template_runs_with_all_replicas_available(
    deployment: dict[str, Any], ready: bool
) -> None:
    assert deployment_ready(deployment) is ready


def test_a_deployment_past_its_progress_deadline_is_stalled() -> None:
    deployment = deployment_with(3)
    assert not deployment_stalled(deployment)
    deployment["status"]["conditions"] = [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    ]
    assert deployment_stalled(deployment)


def test_replicas_come_from_the_team_deployment_or_its_annotation() -> None:
    team = team_deployment()
    assert original_replicas(team) == 4
    team["spec"]["replicas"] = 0
    assert original_replicas(team) == 0
    team["metadata"]["annotations"][ORIGINAL_REPLICAS_ANNOTATION] = "6"
    assert original_replicas(team) == 6
    team["metadata"]["annotations"][ORIGINAL_REPLICAS_ANNOTATION] = "six"
    with pytest.raises(InvalidAnnotation, match="not a replica count") as raised:
        original_replicas(team)
    assert raised.value.field == "spec.rollout.target.deployment" and not raised.value.permanent


# --- merge patches -----------------------------------------------------------------------------------


def test_server_defaults_do_not_count_as_differences() -> None:
    desired = render("v2")
    live = copy.deepcopy(desired)
    live["metadata"].update(uid="u", resourceVersion="9", generation=2)
    live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "1"
    live["spec"]["progressDeadlineSeconds"] = 600
    container(live)["terminationMessagePolicy"] = "File"
    live["status"] = {"replicas": 3}
    assert covers(live, desired)
    assert merge_patch(live, desired, exact=DEPLOYMENT_EXACT_PATHS) == {}


def test_a_patch_holds_only_what_differs_and_replaces_lists_whole() -> None:
    desired = render("v2", replicas=5)
    live = render("v2", replicas=3)
    container(live)["image"] = "old:1"
    patch = merge_patch(live, desired, exact=DEPLOYMENT_EXACT_PATHS)
    assert patch == {
        "spec": {
            "replicas": 5,
            "template": {"spec": {"containers": desired["spec"]["template"]["spec"]["containers"]}},
        }
    }


def test_labels_at_exact_paths_are_removed_when_not_desired() -> None:
    desired = render("v1", exclude_labels={"app"})
    live = render("v1")
    live["metadata"]["labels"]["added-by-someone"] = "x"  # not an exact path: left alone
    patch = merge_patch(live, desired, exact=DEPLOYMENT_EXACT_PATHS)
    assert patch == {"spec": {"template": {"metadata": {"labels": {"app": None}}}}}


def test_none_means_absent() -> None:
    assert merge_patch({"spec": {"hostnames": ["a"]}}, {"spec": {"hostnames": None}}) == {
        "spec": {"hostnames": None}
    }
    assert merge_patch({"spec": {}}, {"spec": {"hostnames": None}}) == {}
    assert not covers({"a": 1}, {"a": True})


# --- replica arithmetic ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weight", "split"),
    [
        (10, 0, (10, 0)),
        (10, 5, (9, 1)),  # 0.5 rounds half up
        (10, 25, (7, 3)),  # 2.5 rounds half up
        (10, 50, (5, 5)),
        (10, 100, (0, 10)),
        (4, 5, (3, 1)),  # at least 1 candidate: 25% in effect (steps of 100/R)
        (4, 99, (1, 4)),  # at least 1 stable while w < 100
        (1, 0, (1, 0)),
        (1, 50, (1, 1)),  # one replica: any 0 < w < 100 runs one of each
        (1, 100, (0, 1)),
        (0, 50, (0, 0)),
        (20, 5, (19, 1)),
    ],
)
def test_split_replicas(total: int, weight: int, split: tuple[int, int]) -> None:
    assert split_replicas(total, weight) == split


@given(st.integers(1, 200), st.integers(0, 100))
def test_the_split_is_within_half_a_step_unless_a_side_needs_its_one_replica(total: int, weight: int) -> None:
    stable, candidate = split_replicas(total, weight)
    assert (candidate >= 1) == (weight > 0) and (stable >= 1) == (weight < 100)
    exact = total * weight / 100
    if 0.5 <= exact <= total - 0.5:  # neither at-least-1 rule applies
        assert stable + candidate == total
        assert abs(candidate - exact) <= 0.5
        effective = traffic_shares({"stable": stable, "candidate": candidate})["candidate"]
        assert abs(effective - weight) <= 50 / total + 1  # half a step, plus percent rounding


def test_split_rejects_a_weight_outside_0_to_100() -> None:
    with pytest.raises(ValueError, match="percentage"):
        split_replicas(4, 101)


@pytest.mark.parametrize(
    ("amounts", "shares"),
    [
        ({"a": 1, "b": 1, "c": 1}, {"a": 34, "b": 33, "c": 33}),
        ({"a": 9, "b": 1}, {"a": 90, "b": 10}),
        ({"a": 2, "b": 0}, {"a": 100, "b": 0}),
        ({"a": 0, "b": 0}, {"a": 0, "b": 0}),
        ({}, {}),
    ],
)
def test_traffic_shares_add_up_to_100(amounts: dict[str, int], shares: dict[str, int]) -> None:
    assert traffic_shares(amounts) == shares


def hold(name: str, version: str, *values: str, replicas: int = 1) -> HeldVersion:
    return HeldVersion(name, version, "x-customer-id", values or (name,), replicas)


def test_replica_roles_keep_held_versions_out_of_the_main_traffic() -> None:
    plan = ServingPlan(
        "v2", "v3", 25, holds=(hold("bank-a", "v1", replicas=2), hold("bank-b", "v2", replicas=9))
    )
    roles = {role.version: role for role in replica_roles(plan, 8)}
    assert list(roles) == ["v2", "v3", "v1"]
    assert (roles["v2"].replicas, roles["v2"].takes_team_traffic, roles["v2"].held_replicas) == (9, True, 9)
    assert (roles["v3"].replicas, roles["v3"].takes_team_traffic) == (2, True)
    assert (roles["v1"].replicas, roles["v1"].takes_team_traffic, roles["v1"].held_replicas) == (2, False, 2)


def test_gateway_roles_run_full_stable_and_candidate_and_only_the_stable_takes_the_service() -> None:
    plan = ServingPlan("v2", "v3", 5, holds=(hold("bank-a", "v1", replicas=2),))
    roles = {role.version: role for role in gateway_roles(plan, 4, None)}
    assert {version: role.replicas for version, role in roles.items()} == {"v2": 4, "v3": 4, "v1": 2}
    assert [version for version, role in roles.items() if role.takes_team_traffic] == ["v2"]
    assert {role.version: role.replicas for role in gateway_roles(plan, 4, 1)}["v3"] == 1


# --- plans and holds ---------------------------------------------------------------------------------


def test_plans_reject_inconsistent_weights() -> None:
    with pytest.raises(ValueError, match="needs a candidate"):
        ServingPlan("v1", None, 5)
    with pytest.raises(ValueError, match="both stable and candidate"):
        ServingPlan("v1", "v1", 5)
    with pytest.raises(ValueError, match="percentage"):
        ServingPlan("v1", "v2", 101)


def test_the_versions_that_must_be_ready_are_those_with_a_share_of_the_main_traffic() -> None:
    held = (hold("bank-a", "v0"), hold("bank-b", "v1"))
    assert ServingPlan("v1", holds=held).traffic_versions == ("v1",)
    assert ServingPlan("v1", "v2", 0).traffic_versions == ("v1",)
    assert ServingPlan("v1", "v2", 5).traffic_versions == ("v1", "v2")
    assert ServingPlan("v1", "v2", 100).traffic_versions == ("v2",)
    assert ServingPlan("v1", "v2", 5, holds=held).versions == ("v1", "v2", "v0")


def test_held_versions_are_the_holds_in_force() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    holds = [
        VersionHold.model_validate(
            {
                "name": name,
                "version": "v1",
                "match": {"header": "x-customer-id", "values": [name]},
                "until": until,
            }
        )
        for name, until in (("bank-a", now + timedelta(days=1)), ("bank-b", now))
    ]
    assert held_versions(holds, now) == (HeldVersion("bank-a", "v1", "x-customer-id", ("bank-a",), 1),)


# --- the HTTPRoute -----------------------------------------------------------------------------------


@cache
def _route_validator() -> jsonschema.protocols.Validator:
    if not CRD_FILE.exists():
        pytest.skip(f"the Gateway API CRD is not at {CRD_FILE}: HTTPRoutes cannot be checked against it")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the file is 350 kB
    crd = yaml.load(CRD_FILE.read_text(encoding="utf-8"), Loader=loader)
    schema = next(version for version in crd["spec"]["versions"] if version["name"] == "v1")["schema"]
    # An OpenAPI v3 structural schema is Draft 4 JSON Schema plus x-kubernetes-* keywords, which
    # jsonschema ignores: the CEL rules (x-kubernetes-validations) are not checked here.
    return jsonschema.Draft4Validator(schema["openAPIV3Schema"])


def valid_route(route: dict[str, Any]) -> dict[str, Any]:
    errors = sorted(_route_validator().iter_errors(route), key=lambda error: list(error.path))
    assert not errors, "\n".join(f"{list(error.path)}: {error.message}" for error in errors)
    return route


def gateway(**changes: Any) -> GatewayRoute:
    settings: dict[str, Any] = {
        "name": "fraud-route",
        "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
        "hostnames": ["fraud.example.com"],
        "port": 80,
    }
    settings.update(changes)
    return GatewayRoute.model_validate(settings)


def test_the_schema_check_catches_an_invalid_route() -> None:
    route = render_http_route(gateway(), monitor=MONITOR, service="fraud-svc", plan=ServingPlan("v1"))
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    with pytest.raises(AssertionError, match="weight"):
        valid_route(route)


def test_outside_a_rollout_the_route_sends_everything_to_the_stable_service() -> None:
    route = valid_route(
        render_http_route(gateway(), monitor=MONITOR, service="fraud-svc", plan=ServingPlan("v1"))
    )
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["metadata"]["name"] == "fraud-route"
    assert route["metadata"]["ownerReferences"][0]["uid"] == MONITOR.uid
    assert route["metadata"]["labels"] == {MANAGED_BY_LABEL: "evergreen", MONITOR_LABEL: "fraud-detector"}
    assert route["spec"]["parentRefs"] == [
        {
            "name": "public",
            "namespace": "gateways",
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "sectionName": "https",
        }
    ]
    assert route["spec"]["hostnames"] == ["fraud.example.com"]
    assert route["spec"]["rules"] == [
        {
            "name": "main",
            "backendRefs": [
                {"group": "", "kind": "Service", "name": "fraud-svc-v1", "port": 80, "weight": 100}
            ],
        }
    ]


@pytest.mark.parametrize("weight", [0, 5, 50, 100])
def test_during_a_rollout_the_main_rule_splits_by_weight(weight: int) -> None:
    plan = ServingPlan("v1", "v2", weight)
    route = valid_route(
        render_http_route(gateway(hostnames=[]), monitor=MONITOR, service="fraud-svc", plan=plan)
    )
    assert "hostnames" not in route["spec"]
    (rule,) = route["spec"]["rules"]
    assert [(ref["name"], ref["weight"]) for ref in rule["backendRefs"]] == [
        ("fraud-svc-v1", 100 - weight),
        ("fraud-svc-v2", weight),
    ]
    versions = {"fraud-svc-v1": "v1", "fraud-svc-v2": "v2"}
    assert route_weights(route, versions) == {"v1": 100 - weight, "v2": weight}


def test_holds_come_first_one_rule_each_with_an_exact_match_per_value() -> None:
    plan = ServingPlan(
        "v2", "v3", 25, holds=(hold("bank-a", "v1", "bank-a", "bank-a-eu"), hold("bank-b", "v2.1-rc", "b"))
    )
    route = valid_route(
        render_http_route(gateway(port=8080), monitor=MONITOR, service="fraud-svc", plan=plan)
    )
    first, second, main = route["spec"]["rules"]
    assert first == {
        "name": "hold-bank-a",
        "matches": [
            {"headers": [{"type": "Exact", "name": "x-customer-id", "value": "bank-a"}]},
            {"headers": [{"type": "Exact", "name": "x-customer-id", "value": "bank-a-eu"}]},
        ],
        "backendRefs": [{"group": "", "kind": "Service", "name": "fraud-svc-v1", "port": 8080}],
    }
    assert second["backendRefs"][0]["name"] == version_service_name("fraud-svc", "v2.1-rc")
    assert main["name"] == "main"


def test_weights_read_back_ignore_server_defaults_and_foreign_backends() -> None:
    route = render_http_route(
        gateway(), monitor=MONITOR, service="fraud-svc", plan=ServingPlan("v1", "v2", 30)
    )
    route["spec"]["rules"][0]["matches"] = [{"path": {"type": "PathPrefix", "value": "/"}}]
    route["spec"]["rules"][0]["backendRefs"].append({"name": "someone-else", "port": 80, "weight": 500})
    assert route_weights(route, {"fraud-svc-v1": "v1", "fraud-svc-v2": "v2"}) == {"v1": 70, "v2": 30}


def test_the_most_holds_a_route_takes_render_valid_and_one_more_is_a_spec_error() -> None:
    # 15 hold rules + the main rule = 16 rules; 126 header values + the main rule's match = 127.
    holds = tuple(hold(f"h{index}", "v1", *(f"c{index}-{n}" for n in range(8))) for index in range(14))
    holds += (hold("h14", "v1", *(f"last-{n}" for n in range(14))),)
    plan = ServingPlan("v2", holds=holds)
    route = valid_route(render_http_route(gateway(), monitor=MONITOR, service="fraud-svc", plan=plan))
    assert len(route["spec"]["rules"]) == 16
    one_value_more = (*holds[:-1], hold("h14", "v1", *(f"last-{n}" for n in range(15))))
    with pytest.raises(SpecError, match="fewer than 128 matches") as raised:
        check_route_capacity(one_value_more)
    assert raised.value.field == "spec.holds"
    with pytest.raises(SpecError, match="at most 16 rules"):
        check_route_capacity((*holds, hold("h15", "v1")))


def test_empty_header_values_are_a_spec_error() -> None:
    with pytest.raises(SpecError, match="1 to 4096"):
        check_route_capacity((hold("a", "v1", ""),))


# --- the factory and the fake --------------------------------------------------------------------------


def rollout(**changes: Any) -> RolloutSpec:
    settings: dict[str, Any] = {
        "target": {
            "deployment": "fraud",
            "service": "fraud-svc",
            "version": {"container": "server", "env": "V"},
        }
    }
    settings.update(changes)
    return RolloutSpec.model_validate(settings)


def test_router_for_builds_the_router_of_each_kind() -> None:
    kube = KubeApi(kubernetes.client.Configuration())  # building a router talks to no cluster
    objects = ObjectApi(kube)
    assert isinstance(router_for(RouterKind.REPLICAS, objects, MONITOR, rollout()), ReplicaRouter)
    spec = rollout(router="GatewayAPI", gateway=gateway().to_wire())
    assert isinstance(router_for(RouterKind.GATEWAY_API, objects, MONITOR, spec), GatewayRouter)
    with pytest.raises(SpecError, match="needs gateway"):
        router_for(RouterKind.GATEWAY_API, kube, MONITOR, rollout())
    kube.close()


def test_the_fake_router_serves_plans_in_memory() -> None:
    async def scenario() -> None:
        router = FakeRouter(replicas=3, ready={"v1"})
        state = await router.reconcile(ServingPlan("v1", "v2", 5, holds=(hold("bank-a", "v0", replicas=2),)))
        assert state.weights == {"v1": 95, "v2": 5}
        assert state.ready == {"v1": True, "v2": False, "v0": False}
        assert state.replicas == {"v1": 3, "v2": 3, "v0": 2}
        await router.set_weights("v1", "v2", 50)
        assert await router.get_weights() == {"v1": 50, "v2": 50}
        with pytest.raises(VersionNotServed):
            await router.set_weights("v1", "v9", 50)
        await router.finalize()
        assert router.finalized and await router.get_weights() == {}

    asyncio.run(scenario())
