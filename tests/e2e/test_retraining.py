"""Retraining end to end on a real control plane: the operator creates workloads under the
chart's RBAC, the real Job controller runs them, the node stand-in ends their pods with the
termination message a test asks for.

Monitors watch one KPI set above what the live traffic achieves (precision 0.92 < 0.99), so
the engine decides ``Retrain`` (ConceptDrift) within two evaluations.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes.client import BatchV1Api

from evergreen.actuators.workload_template import run_selector
from evergreen.api.resource import GROUP, PLURAL, VERSION
from evergreen.retraining.runs import run_name
from evergreen.simulation import PrometheusServer
from tests.e2e.conftest import Cluster, OperatorProcess, operator_settings, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]


@pytest.fixture(autouse=True)
def trainer_identity(cluster: Cluster) -> None:
    """The ServiceAccount the monitors name for their workloads (pods cannot run without it)."""
    cluster.create_service_account("fraud-trainer")


PRECISION = (
    'sum(increase(model_label_outcomes_total{model="{{model}}",outcome="tp"}[10s]))'
    ' / sum(increase(model_label_outcomes_total{model="{{model}}",outcome=~"tp|fp"}[10s]))'
)
JOB_TEMPLATE: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"labels": {"team": "fraud"}},
    "spec": {
        "backoffLimit": 0,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "train",
                        "image": "registry.example/fraud-trainer:3",
                        "env": [{"name": "EVERGREEN_MODEL", "value": "set-by-the-team"}],
                    }
                ],
            }
        },
    },
}


def spec(**retraining: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "template": JOB_TEMPLATE,
        "validation": {"metric": "auc", "minImprovement": 0.01},
        "cooldown": "0s",
        "budget": {"runs": 10, "per": "1h"},
        "giveUpAfter": 2,
    }
    settings.update(retraining)
    return {
        "model": "fraud-detector",
        "interval": "1s",
        "currentVersion": "v1",
        "serviceAccountName": "fraud-trainer",
        "kpis": [{"name": "precision", "query": PRECISION, "min": 0.99}],
        "retraining": settings,
    }


def jobs(cluster: Cluster, monitor: str) -> list[dict[str, Any]]:
    selector = ",".join(f"{k}={v}" for k, v in run_selector(monitor).items())
    items = BatchV1Api(cluster.api).list_namespaced_job(cluster.namespace, label_selector=selector).items
    return [cluster.api.sanitize_for_serialization(job) for job in items]  # type: ignore[no-untyped-call]


def retraining(cluster: Cluster, name: str) -> dict[str, Any]:
    status = cluster.monitor(name).get("status", {})
    result = status.get("retraining", {})
    assert isinstance(result, dict)
    return result


def finish_job(cluster: Cluster, job: str, result: dict[str, Any] | str, exit_code: int = 0) -> None:
    """The training container ends and writes its termination message; the real Job controller
    turns the pod's end into the Job's Complete (or Failed) condition."""
    message = result if isinstance(result, str) else json.dumps(result)
    cluster.node.finish_job(cluster.namespace, job, exit_code=exit_code, message=message)


def job_exists(cluster: Cluster, monitor: str, name: str) -> bool:
    return any(job["metadata"]["name"] == name for job in jobs(cluster, monitor))


def run_outcome(cluster: Cluster, name: str, run: int) -> str | None:
    for entry in retraining(cluster, name).get("runs", []):
        if entry["run"] == run and entry["outcome"] not in ("Pending", "Running"):
            return str(entry["outcome"])
    return None


def result(version: str, auc: float, baseline: float = 0.90) -> dict[str, Any]:
    return {
        "version": version,
        "metrics": {"auc": auc},
        "baseline": {"version": "v1", "metrics": {"auc": baseline}},
    }


def test_retrain_validate_reject_and_give_up(cluster: Cluster, live_prometheus: PrometheusServer) -> None:
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        monitor = cluster.create_monitor("fraud", spec())
        uid = monitor["metadata"]["uid"]

        created = wait_for("a retraining Job", lambda: jobs(cluster, "fraud"))
        assert len(created) == 1
        job = created[0]
        assert job["metadata"]["name"] == run_name("fraud", uid, 1)
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("ModelMonitor", uid, True)
        pod_spec = job["spec"]["template"]["spec"]
        assert pod_spec["serviceAccountName"] == "fraud-trainer"
        env = {e["name"]: e.get("value") for e in pod_spec["containers"][0]["env"]}
        assert env["EVERGREEN_MODEL"] == "set-by-the-team"  # what the team set is never overwritten
        assert env["EVERGREEN_TRIGGER"] == "ConceptDrift"
        assert env["EVERGREEN_CURRENT_VERSION"] == "v1"
        assert env["EVERGREEN_MONITOR"] == f"{cluster.namespace}/fraud"
        assert job["metadata"]["labels"]["team"] == "fraud"
        # The Job is created before the status that records it: the condition may trail it.
        wait_for(
            "Retraining=True",
            lambda: (c := cluster.condition("fraud", "Retraining")) is not None and c["status"] == "True",
        )

        # A better candidate passes the gate and becomes eligible for rollout.
        finish_job(cluster, job["metadata"]["name"], result("v2", 0.93))
        wait_for("run 1 accepted", lambda: run_outcome(cluster, "fraud", 1) == "Accepted")
        status = retraining(cluster, "fraud")
        assert status["candidate"]["version"] == "v2"
        assert "auc 0.93 vs 0.9 (v1)" in status["runs"][0]["reason"]
        cluster.wait_event("fraud", "Normal", "CandidateAccepted")
        # While it awaits rollout, no new run starts (the KPI is still breached).
        wait_for(
            "CandidatePending",
            lambda: (retraining(cluster, "fraud").get("blocked") or {}).get("reason") == "CandidatePending",
        )
        assert len(jobs(cluster, "fraud")) == 1

        # GitOps rolls v2 out; retraining resumes, and two worse candidates in a row give up.
        cluster.patch_spec("fraud", {"currentVersion": "v2"})
        for run in (2, 3):
            job_name = run_name("fraud", uid, run)
            wait_for(f"run {run}", lambda: job_exists(cluster, "fraud", job_name))  # noqa: B023
            finish_job(cluster, job_name, result(f"v{run + 1}", 0.91, baseline=0.93))
            wait_for(f"run {run} rejected", lambda: run_outcome(cluster, "fraud", run) == "Rejected")  # noqa: B023

        condition = wait_for(
            "Retraining=False RetrainingNotHelping",
            lambda: (
                (c := cluster.condition("fraud", "Retraining"))
                and c["reason"] == "RetrainingNotHelping"
                and c
            ),
        )
        assert "2 consecutive runs" in condition["message"]
        decision = wait_for(
            "an escalation",
            lambda: (d := cluster.monitor("fraud")["status"]["decision"])["action"] == "Escalate" and d,
        )
        assert decision["reason"] == "RetrainingNotHelping"
        reasons = [e[1] for e in cluster.events("fraud")]
        assert "CandidateRejected" in reasons and "RetrainingNotHelping" in reasons
        assert len(jobs(cluster, "fraud")) == 3  # stopped: no fourth run

        # A person acts: a manual request runs once, whatever the escalation.
        retraining_spec = spec()["retraining"]
        cluster.patch_spec(
            "fraud", {"retraining": {**retraining_spec, "request": {"id": "after-feature-fix"}}}
        )
        fourth = wait_for(
            "a manual run",
            lambda: [j for j in jobs(cluster, "fraud") if j["metadata"]["name"] == run_name("fraud", uid, 4)],
        )
        env = {
            e["name"]: e.get("value") for e in fourth[0]["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["EVERGREEN_TRIGGER"] == "Manual:after-feature-fix"
        assert env["EVERGREEN_REQUEST_ID"] == "after-feature-fix"
        assert retraining(cluster, "fraud")["handledRequest"] == "after-feature-fix"


def test_guardrails_block_with_a_recorded_reason(cluster: Cluster, live_prometheus: PrometheusServer) -> None:
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        monitor = cluster.create_monitor("fraud", spec(budget={"runs": 1, "per": "1h"}, giveUpAfter=5))
        uid = monitor["metadata"]["uid"]
        wait_for("a retraining Job", lambda: jobs(cluster, "fraud"))
        finish_job(cluster, run_name("fraud", uid, 1), "this is not JSON")
        wait_for("run 1 failed", lambda: run_outcome(cluster, "fraud", 1) == "Failed")
        run = retraining(cluster, "fraud")["runs"][0]
        assert "no usable result" in run["reason"] and "termination message" in run["reason"]

        blocked = wait_for("a blocked Retrain", lambda: retraining(cluster, "fraud").get("blocked"))
        assert blocked["reason"] == "Budget"
        assert "1 of 1 runs used in the last 1h" in blocked["message"]
        assert blocked["until"] is not None
        assert retraining(cluster, "fraud")["nextAllowedTime"] == blocked["until"]
        cluster.wait_event("fraud", "Normal", "RetrainBlocked")
        condition = cluster.condition("fraud", "Retraining")
        assert condition is not None and condition["reason"] == "Blocked"
        assert len(jobs(cluster, "fraud")) == 1

    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.patch_spec(
            "fraud", {"retraining": spec(budget={"runs": 5, "per": "1h"}, cooldown="1h")["retraining"]}
        )
        blocked = wait_for(
            "a cooldown",
            lambda: (b := retraining(cluster, "fraud").get("blocked")) and b["reason"] == "Cooldown" and b,
        )
        assert "cooldown is 1h" in blocked["message"]
        assert len(jobs(cluster, "fraud")) == 1


def test_exactly_once_across_restarts_and_racing_replicas(
    cluster: Cluster, live_prometheus: PrometheusServer
) -> None:
    # A crash after creating the workload but before recording it: the Job already exists.
    monitor = cluster.create_monitor("fraud", spec())
    uid = monitor["metadata"]["uid"]
    leftover = json.loads(json.dumps(JOB_TEMPLATE))
    leftover["metadata"] = {
        "name": run_name("fraud", uid, 1),
        "labels": run_selector("fraud", 1),
        "ownerReferences": [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ModelMonitor",
                "name": "fraud",
                "uid": uid,
                "controller": True,
            }
        ],
    }
    BatchV1Api(cluster.api).create_namespaced_job(cluster.namespace, leftover)

    # Two operators at once (a rollout overlapping the old pod): they race for the same run.
    settings = operator_settings(live_prometheus.url)
    with OperatorProcess(cluster, settings), OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        wait_for("run 1 recorded", lambda: retraining(cluster, "fraud").get("runs"))
        wait_for("run 1 running", lambda: retraining(cluster, "fraud")["runs"][0]["outcome"] == "Running")
    assert [j["metadata"]["name"] for j in jobs(cluster, "fraud")] == [run_name("fraud", uid, 1)]
    assert retraining(cluster, "fraud")["nextRun"] == 2

    # The operator restarts mid-run and tracks the same run to its verdict.
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        finish_job(cluster, run_name("fraud", uid, 1), result("v2", 0.95))
        wait_for("run 1 accepted", lambda: run_outcome(cluster, "fraud", 1) == "Accepted")
        assert len(jobs(cluster, "fraud")) == 1
        assert [r["run"] for r in retraining(cluster, "fraud")["runs"]] == [1]

        # Deleting the monitor deletes its workloads (owner references), once the operator has
        # released its finalizer (kopf holds one while the monitor's timer runs).
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, "fraud")
        wait_for("the Job garbage-collected", lambda: not jobs(cluster, "fraud"))


def test_a_custom_workload_kind_completes_through_its_declared_condition(
    cluster: Cluster, live_prometheus: PrometheusServer
) -> None:
    template = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "spec": {
            "pytorchReplicaSpecs": {
                role: {
                    "replicas": replicas,
                    "template": {
                        "spec": {"containers": [{"name": "pytorch", "image": "registry.example/fraud-ddp:3"}]}
                    },
                }
                for role, replicas in (("Master", 1), ("Worker", 4))
            }
        },
    }
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        monitor = cluster.create_monitor(
            "fraud",
            spec(
                template=template,
                success={"conditionType": "Succeeded"},
                failure={"conditionType": "Failed"},
                result={"terminationMessage": True},
            ),
        )
        name = run_name("fraud", monitor["metadata"]["uid"], 1)

        def created() -> dict[str, Any] | None:
            try:
                body = cluster.custom.get_namespaced_custom_object(
                    "kubeflow.org", "v1", cluster.namespace, "pytorchjobs", name
                )
            except Exception:
                return None
            assert isinstance(body, dict)
            return body

        job = wait_for("a PyTorchJob", created)
        for role in ("Master", "Worker"):
            pod_spec = job["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]
            assert pod_spec["serviceAccountName"] == "fraud-trainer"
            assert any(
                e["name"] == "EVERGREEN_RUN" and e["value"] == "1" for e in pod_spec["containers"][0]["env"]
            )
        # Play the training operator (none runs here): it starts the master's pod from the
        # replica template, labels included, and reports the job's conditions.
        master = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
        cluster.core.create_namespaced_pod(
            cluster.namespace,
            {"metadata": {"name": f"{name}-master-0", **master["metadata"]}, "spec": master["spec"]},  # type: ignore[arg-type]
        )
        cluster.node.finish_pods(
            cluster.namespace, master["metadata"]["labels"], message=json.dumps(result("v2", 0.95))
        )
        wait_for(
            "the master pod to succeed",
            lambda: (
                cluster.core.read_namespaced_pod(f"{name}-master-0", cluster.namespace).status.phase  # type: ignore[union-attr]
                == "Succeeded"
            ),
        )
        cluster.set_status(
            "kubeflow.org/v1",
            "pytorchjobs",
            name,
            {
                "conditions": [
                    {"type": "Succeeded", "status": "True", "lastUpdateTime": "2026-01-01T00:00:00Z"}
                ]
            },
        )
        wait_for("run 1 accepted", lambda: run_outcome(cluster, "fraud", 1) == "Accepted")


def test_bad_retraining_input_is_named_and_isolated(
    cluster: Cluster, live_prometheus: PrometheusServer
) -> None:
    no_containers = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {}}}}
    unknown = {
        "apiVersion": "example.com/v1",
        "kind": "Trainer",
        "spec": {"template": {"spec": {"containers": [{"name": "t", "image": "t"}]}}},
    }
    settings = operator_settings(live_prometheus.url, require_service_account=True)
    with OperatorProcess(cluster, settings):
        cluster.create_monitor("good", spec())
        cluster.create_monitor("no-containers", spec(template=no_containers))
        cluster.create_monitor("unknown-kind", spec(template=unknown))
        anonymous = spec()
        del anonymous["serviceAccountName"]
        cluster.create_monitor("anonymous", anonymous)

        def ready_false(name: str) -> dict[str, Any] | None:
            c = cluster.condition(name, "Ready")
            return c if c and c["status"] == "False" else None

        invalid = wait_for("no-containers rejected", lambda: ready_false("no-containers"))
        assert invalid["reason"] == "InvalidSpec"
        assert invalid["message"].startswith("spec.retraining.template")
        assert "container" in invalid["message"]
        missing = wait_for("anonymous rejected", lambda: ready_false("anonymous"))
        assert missing["message"].startswith("spec.serviceAccountName:")
        kind = wait_for(
            "unknown kind reported",
            lambda: (
                (c := cluster.condition("unknown-kind", "Retraining")) and c["reason"] == "UnknownKind" and c
            ),
        )
        assert kind["message"].startswith("spec.retraining.template.kind:")
        assert "example.com/v1" in kind["message"]
        # The healthy monitor is not disturbed: it evaluates, decides and starts its run.
        wait_for("good's retraining Job", lambda: jobs(cluster, "good"))
        assert not jobs(cluster, "no-containers") and not jobs(cluster, "anonymous")


def test_a_refused_workload_is_a_configuration_error_that_spends_no_budget(
    cluster: Cluster, live_prometheus: PrometheusServer
) -> None:
    invalid = json.loads(json.dumps(JOB_TEMPLATE))
    invalid["spec"]["template"]["spec"]["containers"][0]["name"] = "Not_A_DNS_Label"
    with OperatorProcess(cluster, operator_settings(live_prometheus.url, retry_seconds=2)):
        cluster.create_monitor(
            "fraud", spec(template=invalid, budget={"runs": 1, "per": "1h"}, giveUpAfter=1)
        )
        refused = wait_for(
            "Retraining=False WorkloadRefused",
            lambda: (
                (c := cluster.condition("fraud", "Retraining")) and c["reason"] == "WorkloadRefused" and c
            ),
        )
        assert "HTTP 422" in refused["message"] and "Not_A_DNS_Label" in refused["message"]
        ready_condition = cluster.condition("fraud", "Ready")
        assert ready_condition is not None
        assert (ready_condition["status"], ready_condition["reason"]) == ("False", "WorkloadRefused")
        cluster.wait_event("fraud", "Normal", "RetrainBlocked")
        time.sleep(5)  # past the retry pause: refused again, and still nothing spent
        status = retraining(cluster, "fraud")
        assert status.get("runs", []) == [] and status.get("nextRun", 1) == 1
        assert not status.get("gaveUp") and status.get("runsInWindow", 0) == 0
        assert cluster.monitor("fraud")["status"]["decision"]["reason"] != "RetrainingNotHelping"

        # Fixed in the spec: the run starts at once, and it is the first of the budget.
        cluster.patch_spec(
            "fraud", {"retraining": spec(budget={"runs": 1, "per": "1h"}, giveUpAfter=1)["retraining"]}
        )
        wait_for("a retraining Job", lambda: jobs(cluster, "fraud"))
        runs = wait_for("run 1 recorded", lambda: retraining(cluster, "fraud").get("runs"))
        assert runs[0]["run"] == 1


def test_a_missing_service_account_is_named_before_any_workload_exists(
    cluster: Cluster, live_prometheus: PrometheusServer
) -> None:
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("fraud", {**spec(), "serviceAccountName": "nobody"})
        missing = wait_for(
            "Retraining=False ServiceAccountNotFound",
            lambda: (
                (c := cluster.condition("fraud", "Retraining"))
                and c["reason"] == "ServiceAccountNotFound"
                and c
            ),
        )
        assert missing["message"].startswith("spec.serviceAccountName:")
        assert f"ServiceAccount {cluster.namespace}/nobody does not exist" in missing["message"]
        assert not jobs(cluster, "fraud")
        cluster.create_service_account("nobody")
        wait_for("a retraining Job once it exists", lambda: jobs(cluster, "fraud"), timeout=30)


def test_observe_mode_makes_no_retraining_request(
    cluster: Cluster, live_prometheus: PrometheusServer
) -> None:
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("fraud", {**spec(), "mode": "Observe"})
        blocked = wait_for("a Retrain decided and held", lambda: retraining(cluster, "fraud").get("blocked"))
        assert blocked["reason"] == "Observe"
        time.sleep(3)
    # Not a discovery, not a Job read, not a ServiceAccount read: only the monitor's own writes.
    touched = {resource for _, resource, _ in cluster.operator_requests()}
    assert touched <= {"modelmonitors/status", "events"}, touched
    assert not any(reason == "RetrainingFailed" for _, reason, _ in cluster.events("fraud"))
