"""Progressive delivery end to end: the operator on a real control plane, a real Prometheus.

The live exporter serves two versions' outcomes (``version`` label), so canary checks compare
the candidate's precision with the stable's as they would in production. The real Deployment
and ReplicaSet controllers make every Deployment's pods, and the node stand-in runs them.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes.client import AppsV1Api, CoreV1Api, CustomObjectsApi

from evergreen.cli import main
from evergreen.simulation import LiveModelTraffic, PrometheusServer
from evergreen.simulation.catalog import BASELINE_KPI
from evergreen.simulation.scenario import Kpi
from tests.e2e.conftest import Cluster, OperatorProcess, operator_settings, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]

ROUTE_CRD = Path(__file__).parents[2].parent / "shared" / "crds" / "gateway-api-v1.4.1-httproutes.yaml"
OUTCOMES = 'model_label_outcomes_total{model="{{model}}",version="{{version}}",outcome=~"%s"}'
PRECISION = f"sum(increase({OUTCOMES % 'tp'}[10s])) / sum(increase({OUTCOMES % 'tp|fp'}[10s]))"
#: A short window: when the exporter stops, the checks see no data within seconds.
QUICK_PRECISION = PRECISION.replace("[10s]", "[3s]")
TEAM_REPLICAS = 4


@pytest.fixture
def serving(cluster: Cluster) -> Iterator[Cluster]:
    """The team's Deployment (serving v1) and Service; the real Deployment controller and the
    node stand-in make its pods ready."""
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fraud", "labels": {"app": "fraud"}},
        "spec": {
            "replicas": TEAM_REPLICAS,
            "selector": {"matchLabels": {"app": "fraud"}},
            "template": {
                "metadata": {"labels": {"app": "fraud"}},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "registry.example/fraud-server:2",
                            "env": [{"name": "MODEL_VERSION", "value": "v1"}],
                        }
                    ]
                },
            },
        },
    }
    AppsV1Api(cluster.api).create_namespaced_deployment(cluster.namespace, deployment)  # type: ignore[arg-type]
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "fraud"},
        "spec": {
            "selector": {"app": "fraud"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }
    CoreV1Api(cluster.api).create_namespaced_service(cluster.namespace, service)  # type: ignore[arg-type]
    yield cluster


@pytest.fixture
def two_versions(traffic: LiveModelTraffic, live_prometheus: PrometheusServer) -> Iterator[LiveModelTraffic]:
    """Both versions serve, with healthy outcomes over the whole 10 s KPI window."""
    traffic.set_versions({"v1": 0.5, "v2": 0.5})
    query = PRECISION.replace("{{model}}", "fraud-detector").replace("{{version}}", "v2")

    def healthy() -> bool:
        result = live_prometheus.query(query)
        return bool(result) and float(result[0]["value"][1]) >= 0.9

    wait_for("healthy v2 outcomes (no leftovers of an earlier test)", healthy, timeout=30)
    yield traffic
    traffic.set_versions({"v1": 1.0})


def spec(*, kpi_query: str = PRECISION, **rollout: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "router": "Replicas",
        "target": {
            "deployment": "fraud",
            "service": "fraud",
            "version": {"container": "server", "env": "MODEL_VERSION"},
        },
        "candidate": "v2",
        "steps": [25, 50, 100],
        "stepInterval": "3s",
        "maxFailedChecks": 2,
        "noDataDeadline": "5m",
    }
    settings.update(rollout)
    return {
        "model": "fraud-detector",
        "interval": "1s",
        "currentVersion": "v1",
        "kpis": [{"name": "precision", "query": kpi_query, "min": 0.85}],
        "rollout": settings,
    }


def rollout(cluster: Cluster, name: str = "fraud") -> dict[str, Any]:
    result = cluster.monitor(name).get("status", {}).get("rollout", {})
    assert isinstance(result, dict)
    return result


def listing(cluster: Cluster, plural: str) -> list[dict[str, Any]]:
    """Deployments or Services of the namespace, in their JSON form."""
    if plural == "deployments":
        items: list[Any] = AppsV1Api(cluster.api).list_namespaced_deployment(cluster.namespace).items
    else:
        items = CoreV1Api(cluster.api).list_namespaced_service(cluster.namespace).items
    result = cluster.api.sanitize_for_serialization(items)  # type: ignore[no-untyped-call]
    assert isinstance(result, list)
    return result


def deployments(cluster: Cluster) -> dict[str, int]:
    return {d["metadata"]["name"]: int(d["spec"]["replicas"]) for d in listing(cluster, "deployments")}


def without(cluster: Cluster, deployment: str) -> dict[str, int] | None:
    """The Deployments' replicas once ``deployment`` is gone (None while it exists)."""
    replicas = deployments(cluster)
    return None if deployment in replicas else replicas


def services(cluster: Cluster) -> set[str]:
    return {item["metadata"]["name"] for item in listing(cluster, "services")}


def last_outcome(cluster: Cluster) -> str | None:
    history = rollout(cluster).get("history") or []
    return str(history[-1]["outcome"]) if history else None


def test_a_good_candidate_walks_every_step_and_is_promoted(
    serving: Cluster, live_prometheus: PrometheusServer, two_versions: LiveModelTraffic
) -> None:
    cluster = serving
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("fraud", spec())
        seen: list[int] = []

        def promoted() -> bool:
            weight = rollout(cluster).get("weight", 0)
            if weight and (not seen or seen[-1] != weight):
                seen.append(weight)
            return last_outcome(cluster) == "Promoted"

        wait_for("the promotion", promoted, timeout=60)
        assert seen == [25, 50, 100]
        status = cluster.monitor("fraud")["status"]
        assert (status["currentVersion"], status["previousVersion"]) == ("v2", "v1")
        assert status["baselineAnchor"] is not None
        assert status["rollout"]["checksFailed"] == 0 and status["rollout"]["checksPassed"] >= 3
        checks = status["rollout"]["history"][-1]
        assert checks["candidate"] == "v2"
        cluster.wait_event("fraud", "Normal", "Promoted")  # Events trail the status write
        reasons = [e[1] for e in cluster.events("fraud")]
        assert reasons.count("RolloutStep") == 2 and "Promoted" in reasons
        # The new version serves everything; the old one is gone (no hold needs it).
        replicas = wait_for("v1 retired", lambda: without(cluster, "fraud-v1"))
        assert replicas == {"fraud": 0, "fraud-v2": TEAM_REPLICAS}
        condition = cluster.condition("fraud", "Rollout")
        assert condition is not None and condition["status"] == "False"
        # The drift baseline and {{version}} now follow v2.
        assert cluster.condition("fraud", "KPIBreached")["status"] == "False"  # type: ignore[index]


def test_a_degrading_candidate_is_rolled_back_within_max_failed_checks(
    serving: Cluster, live_prometheus: PrometheusServer, two_versions: LiveModelTraffic
) -> None:
    cluster = serving
    two_versions.set_kpi("v2", Kpi(precision=0.6, recall=0.5, positive_rate=BASELINE_KPI.positive_rate))
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("fraud", spec(stepInterval="30s"))
        wait_for("the rollback", lambda: last_outcome(cluster) == "RolledBack", timeout=40)
        status = cluster.monitor("fraud")["status"]
        record = status["rollout"]["history"][-1]
        assert "2 failed checks" in record["reason"] and "precision" in record["reason"]
        assert status["rollout"]["rejectedVersions"] == ["v2"]
        assert status["currentVersion"] == "v1"
        replicas = wait_for("v2 removed", lambda: without(cluster, "fraud-v2"))
        assert replicas["fraud-v1"] == TEAM_REPLICAS
        reasons = [e[1] for e in cluster.events("fraud")]
        assert reasons.count("RolloutCheckFailed") == 2 and "RolledBack" in reasons
        # Rolled back stays rolled back: the same candidate is not retried by itself.
        assert rollout(cluster)["phase"] == "Idle"


def test_missing_metrics_pause_and_resume_and_restarts_resume_in_place(
    serving: Cluster, live_prometheus: PrometheusServer, two_versions: LiveModelTraffic
) -> None:
    cluster = serving
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor(
            "fraud", spec(kpi_query=QUICK_PRECISION, stepInterval="6s", steps=[20, 40, 60, 100])
        )
        wait_for("step 2", lambda: rollout(cluster).get("weight") == 40, timeout=40)
        two_versions.pause()
        paused = wait_for("a pause", lambda: (r := rollout(cluster))["phase"] == "Paused" and r, timeout=30)
        assert paused["pausedReason"] == "NoData"
        # The vanished series linger in the 3 s window for a moment, so the pause may come a
        # step later; once paused, the weight holds and nothing counts as a failure.
        assert paused["weight"] in (40, 60) and paused["checksFailed"] == 0
        time.sleep(2)
        assert rollout(cluster)["weight"] == paused["weight"] and rollout(cluster)["phase"] == "Paused"
        cluster.wait_event("fraud", "Warning", "RolloutPaused")
        two_versions.resume()
        wait_for("the resume", lambda: rollout(cluster)["phase"] == "Progressing", timeout=30)
        step = rollout(cluster)["step"]
        objects = (deployments(cluster), services(cluster))

    # The operator is gone mid-rollout; a new one resumes at the same step with the same objects.
    assert rollout(cluster)["step"] == step
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        assert (deployments(cluster), services(cluster)) == objects
        wait_for("the promotion", lambda: last_outcome(cluster) == "Promoted", timeout=60)
    assert "RolloutResumed" in [e[1] for e in cluster.events("fraud")]


def test_manual_approval_blocks_until_given(
    serving: Cluster, live_prometheus: PrometheusServer, two_versions: LiveModelTraffic
) -> None:
    cluster = serving
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("fraud", spec(approval="Manual"))
        wait_for("the start gate", lambda: rollout(cluster).get("phase") == "AwaitingApproval")
        condition = cluster.condition("fraud", "Rollout")
        assert condition is not None and condition["reason"] == "AwaitingApproval"
        # Nothing moves while approval is awaited.
        assert rollout(cluster)["weight"] == 0
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert (
                main(
                    [
                        "approve",
                        "fraud",
                        "-n",
                        cluster.namespace,
                        "--gate",
                        "start",
                        "--kubeconfig",
                        str(cluster.kubeconfig),
                    ]
                )
                == 0
            )
        assert "approvedVersion" in out.getvalue()
        wait_for(
            "the promotion gate", lambda: rollout(cluster).get("phase") == "AwaitingPromotion", timeout=60
        )
        assert (
            rollout(cluster)["weight"] == 100 and cluster.monitor("fraud")["status"]["currentVersion"] == "v1"
        )
        # GitOps commits the promotion approval (the same field the CLI sets).
        cluster.patch_spec(
            "fraud",
            {
                "rollout": {
                    **spec()["rollout"],
                    "approval": "Manual",
                    "approvedVersion": "v2",
                    "promotionApprovedVersion": "v2",
                }
            },
        )
        wait_for("the promotion", lambda: last_outcome(cluster) == "Promoted")


def route_schema() -> dict[str, Any]:
    """The HTTPRoute v1 schema (the API server enforces it too; this also names the field)."""
    crd = yaml.safe_load(ROUTE_CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = version["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


def test_a_hold_keeps_the_old_version_through_a_promotion_and_is_released_at_expiry(
    serving: Cluster, live_prometheus: PrometheusServer, two_versions: LiveModelTraffic
) -> None:
    cluster = serving
    until = datetime.now(UTC) + timedelta(seconds=25)
    monitor = spec(
        router="GatewayAPI",
        gateway={
            "name": "fraud",
            "parentRefs": [{"name": "public", "namespace": "gateways"}],
            "hostnames": ["fraud.example.com"],
            "port": 80,
        },
    )
    monitor["holds"] = [
        {
            "name": "bank-a",
            "version": "v1",
            "until": until.isoformat(),
            "match": {"header": "x-customer-id", "values": ["bank-a", "bank-a-eu"]},
            "reason": "contract requires stable outputs",
            "replicas": 2,
        }
    ]
    routes = CustomObjectsApi(cluster.api)

    def route() -> dict[str, Any]:
        body = routes.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", cluster.namespace, "httproutes", "fraud"
        )
        assert isinstance(body, dict)
        return body

    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("fraud", monitor)
        wait_for("the promotion", lambda: last_outcome(cluster) == "Promoted", timeout=60)
        # v1 is still served, for bank-a only, through a promotion.
        assert deployments(cluster).get("fraud-v1") == 2
        assert "fraud-v1" in services(cluster)
        status = cluster.monitor("fraud")["status"]
        hold = status["holds"][0]
        assert (hold["active"], hold["version"], hold["servedBy"]) == (True, "v1", "fraud-v1")
        body = route()
        jsonschema.Draft4Validator(route_schema()).validate(body)
        rules = body["spec"]["rules"]
        assert rules[0]["backendRefs"][0]["name"] == "fraud-v1"
        headers = [m["headers"][0] for m in rules[0]["matches"]]
        assert {(h["name"], h["value"]) for h in headers} == {
            ("x-customer-id", "bank-a"),
            ("x-customer-id", "bank-a-eu"),
        }
        assert [(b["name"], b["weight"]) for b in rules[-1]["backendRefs"]] == [("fraud-v2", 100)]
        reasons = [e[1] for e in cluster.events("fraud")]
        assert "HoldActive" in reasons and "HoldExpiring" in reasons

        wait_for("the expiry", lambda: "HoldExpired" in [e[1] for e in cluster.events("fraud")], timeout=40)
        wait_for("v1 released", lambda: "fraud-v1" not in deployments(cluster), timeout=20)
        assert "fraud-v1" not in services(cluster)
        body = route()
        jsonschema.Draft4Validator(route_schema()).validate(body)
        assert len(body["spec"]["rules"]) == 1
        assert cluster.monitor("fraud")["status"]["holds"][0]["active"] is False


def test_observe_mode_touches_nothing_and_removing_rollout_gives_serving_back(
    serving: Cluster, live_prometheus: PrometheusServer, two_versions: LiveModelTraffic
) -> None:
    cluster = serving
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("fraud", {**spec(), "mode": "Observe"})
        condition = wait_for(
            "the Observe condition",
            lambda: (c := cluster.condition("fraud", "Rollout")) and c["reason"] == "ObserveMode" and c,
        )
        assert condition["status"] == "False"
        assert deployments(cluster) == {"fraud": TEAM_REPLICAS}  # nothing adopted, nothing created

        cluster.patch_spec("fraud", {"mode": "Enforce"})
        wait_for("a rollout", lambda: rollout(cluster).get("phase") == "Progressing")
        wait_for("the team's Deployment handed over", lambda: deployments(cluster).get("fraud") == 0)

        # Switching rollouts off gives serving back to the team's own Deployment.
        cluster.custom.patch_namespaced_custom_object(
            "evergreen.dev",
            "v1alpha1",
            cluster.namespace,
            "modelmonitors",
            "fraud",
            {"spec": {"rollout": None}},  # a merge patch: null removes the field
        )
        wait_for(
            "serving returned",
            lambda: "ServingReturned" in [e[1] for e in cluster.events("fraud")],
            timeout=30,
        )
        assert deployments(cluster) == {"fraud": TEAM_REPLICAS}
        assert cluster.monitor("fraud")["status"].get("servingRollout") is None


def test_deleting_the_monitor_after_a_promotion_keeps_the_promoted_version_serving(
    serving: Cluster, live_prometheus: PrometheusServer, two_versions: LiveModelTraffic
) -> None:
    cluster = serving
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("fraud", spec())
        wait_for("the promotion", lambda: last_outcome(cluster) == "Promoted", timeout=60)
        wait_for("v1 retired", lambda: without(cluster, "fraud-v1"))

        cluster.custom.delete_namespaced_custom_object(
            "evergreen.dev", "v1alpha1", cluster.namespace, "modelmonitors", "fraud"
        )

        # The team's Deployment serves again, and what it serves is v2, not the v1 it was.
        def alone() -> dict[str, Any] | None:
            items = listing(cluster, "deployments")
            annotations = items[0]["metadata"].get("annotations") or {} if len(items) == 1 else {}
            ours = any(key.startswith("evergreen.dev/") for key in annotations)
            return items[0] if len(items) == 1 and not ours else None

        # Given back: alone, and without Evergreen's annotations (the last step).
        team = wait_for("the team's Deployment back, alone", alone, timeout=60)
        assert team["metadata"]["name"] == "fraud" and team["spec"]["replicas"] == TEAM_REPLICAS
        env = {e["name"]: e["value"] for e in team["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["MODEL_VERSION"] == "v2"
        assert services(cluster) == {"fraud"}
        message = cluster.wait_event("fraud", "Normal", "ServingReturned")
        assert "Deployment fraud serves v2 again" in message


def test_another_field_manager_and_evergreen_leave_each_other_alone(
    serving: Cluster, live_prometheus: PrometheusServer, two_versions: LiveModelTraffic
) -> None:
    """What docs/delivery.md tells GitOps users to ignore is exactly what Evergreen manages."""
    cluster = serving
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("fraud", spec(stepInterval="1h"))  # stays at the first step
        wait_for(
            "the team's Deployment handed over", lambda: deployments(cluster).get("fraud") == 0, timeout=60
        )

        # A GitOps tool re-applies the team's manifest (server-side, without replicas, as the
        # docs say), adding a label of its own.
        team_template = next(d for d in listing(cluster, "deployments") if d["metadata"]["name"] == "fraud")[
            "spec"
        ]["template"]
        manifest = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "fraud", "labels": {"app": "fraud", "team": "fraud"}},
            "spec": {
                "selector": {"matchLabels": {"app": "fraud"}},
                "template": team_template,
            },
        }
        path = cluster.workdir / "team-deployment.yaml"
        path.write_text(yaml.safe_dump(manifest))
        cluster.kubectl(
            "apply", "--server-side", "--field-manager=gitops", "-n", cluster.namespace, "-f", str(path)
        )
        before = len(cluster.operator_requests())
        time.sleep(4)
        team = next(d for d in listing(cluster, "deployments") if d["metadata"]["name"] == "fraud")
        evergreen_writes = [
            r for r in cluster.operator_requests()[before:] if r[1] == "deployments" and r[2] == "fraud"
        ]
    assert team["spec"]["replicas"] == 0  # Evergreen's field survived the apply
    assert team["metadata"]["labels"]["team"] == "fraud"  # and the other manager's field stays
    assert not [r for r in evergreen_writes if r[0] != "get"], evergreen_writes  # no tug of war
    managers = {entry["manager"]: entry for entry in team["metadata"]["managedFields"]}
    ours = managers["evergreen"]["fieldsV1"]
    assert set(ours) == {"f:metadata", "f:spec"}
    assert set(ours["f:spec"]) == {"f:replicas"}
    assert set(ours["f:metadata"]["f:annotations"]) == {
        "f:evergreen.dev/original-replicas",
        "f:evergreen.dev/adopted-version",
    }
