"""The chart as an SRE installs it: a namespaced install (watchNamespaces), upgraded and
uninstalled with the real helm binary, the operator running with that release's token."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import kubernetes.client
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from evergreen.simulation import PrometheusServer
from tests.e2e.conftest import Cluster, OperatorProcess, operator_settings, wait_for
from tests.support.cluster import CHART, WORKLOAD_RBAC, helm, install_chart, service_account_token

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]

PRECISION = (
    'sum(increase(model_label_outcomes_total{model="{{model}}",outcome="tp"}[10s]))'
    ' / sum(increase(model_label_outcomes_total{model="{{model}}",outcome=~"tp|fp"}[10s]))'
)
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec": {
        "backoffLimit": 0,
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "trainer"}]}},
    },
}


def retraining_monitor() -> dict[str, Any]:
    """Precision can never reach 0.999 in the live traffic: Retrain (ConceptDrift) at once."""
    return {
        "model": "fraud-detector",
        "interval": "1s",
        "currentVersion": "v1",
        "serviceAccountName": "trainer",
        "kpis": [{"name": "precision", "query": PRECISION, "min": 0.999}],
        "retraining": {
            "template": JOB,
            "validation": {"metric": "auc"},
            "cooldown": "0s",
            "budget": {"runs": 10, "per": "1h"},
        },
    }


def roles(api: kubernetes.client.ApiClient, namespace: str, release: str) -> list[str]:
    selector = f"app.kubernetes.io/instance={release}"
    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    items = rbac.list_namespaced_role(namespace, label_selector=selector).items
    return [str(role.metadata.name) for role in items if role.metadata is not None]


def test_a_namespaced_install_retrains_in_its_namespaces_only_and_upgrades_and_uninstalls(
    cluster: Cluster, live_prometheus: PrometheusServer
) -> None:
    other = f"{cluster.namespace}-other"
    cluster.core.create_namespace({"metadata": {"name": other}})  # type: ignore[arg-type]
    try:
        values = {"watchNamespaces": [cluster.namespace], "rbac": {"workloads": WORKLOAD_RBAC}}
        release = install_chart(
            cluster.tools,
            cluster.kubeconfig,
            "team-evergreen",
            f"{cluster.namespace}-system",
            values,
            cluster.workdir,
        )
        assert roles(cluster.api, cluster.namespace, release.name)
        assert not roles(cluster.api, other, release.name)
        token = service_account_token(cluster.api, release.namespace, release.service_account)
        configuration = cluster.plane.configuration(token)
        for namespace in (cluster.namespace, other):
            cluster.create_service_account("trainer", namespace)
            cluster.create_monitor("fraud", retraining_monitor(), namespace=namespace)

        settings = replace(operator_settings(live_prometheus.url), namespaces=(cluster.namespace,))
        with OperatorProcess(cluster, settings, configuration):
            # In its namespace it evaluates, decides and runs the retraining Job under its Role.
            wait_for("a retraining Job", lambda: cluster.batch.list_namespaced_job(cluster.namespace).items)
            # Outside, it never looks: no status, no Job.
            assert "status" not in cluster.monitor("fraud", namespace=other)
            assert not cluster.batch.list_namespaced_job(other).items

        # An upgrade that adds the other namespace grants it there too; an uninstall takes it back.
        values["watchNamespaces"] = [cluster.namespace, other]
        values_file = cluster.workdir / "upgrade-values.yaml"
        values_file.write_text(yaml.safe_dump({"replicaCount": 0, **values}))
        helm(
            cluster.tools, cluster.kubeconfig, "upgrade", release.name, str(CHART),
            "-n", release.namespace, "-f", str(values_file),
        )  # fmt: skip
        assert roles(cluster.api, other, release.name)
        helm(cluster.tools, cluster.kubeconfig, "uninstall", release.name, "-n", release.namespace)
        assert not roles(cluster.api, cluster.namespace, release.name)
        with pytest.raises(ApiException) as gone:
            kubernetes.client.CoreV1Api(cluster.plane.admin_client()).read_namespaced_service_account(
                release.service_account, release.namespace
            )
        assert gone.value.status == 404
    finally:
        cluster.core.delete_namespace(other)
