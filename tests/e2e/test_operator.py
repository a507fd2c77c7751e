"""The operator end to end: kopf on a real control plane, evaluating against a real Prometheus.

Monitors use short windows over live traffic and a ConfigMap baseline computed from the
traffic's healthy distribution, so drift appears within seconds of a shift and never
depends on a race with a trailing baseline window.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubernetes.client import V1ConfigMap, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from evergreen.cli import main
from evergreen.simulation import LiveModelTraffic, PrometheusServer
from evergreen.simulation.catalog import FEATURES, SEGMENTS
from evergreen.simulation.openmetrics import le_label
from tests.e2e.conftest import Cluster, OperatorProcess, operator_settings, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]


def reference_histograms(traffic: LiveModelTraffic) -> str:
    """Healthy bucket counts per feature and segment, as the baseline ConfigMap holds them."""
    histograms = []
    for feature in FEATURES:
        for segment in SEGMENTS:
            probabilities = traffic.feature_probabilities(feature.name, segment.name)
            cumulative = np.cumsum(probabilities) * 100_000
            bounds = [le_label(b) for b in feature.bounds] + ["+Inf"]
            histograms.append(
                {
                    "feature": feature.name,
                    "labels": {"segment": segment.name},
                    "buckets": dict(zip(bounds, cumulative.tolist(), strict=True)),
                }
            )
    return json.dumps({"histograms": histograms})


def monitor_spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": "fraud-detector",
        "interval": "2s",
        "drift": {
            "histogram": "model_feature_value",
            "segmentBy": ["segment"],
            "baseline": {"configMap": {"name": "training-histograms", "key": "baseline.json"}},
            "window": "10s",
            "minSamples": 50,
        },
        "kpis": [
            {
                "name": "precision",
                "query": 'sum(increase(model_label_outcomes_total{model="{{model}}",outcome="tp"}[10s]))'
                ' / sum(increase(model_label_outcomes_total{model="{{model}}",outcome=~"tp|fp"}[10s]))',
                "min": 0.85,
            }
        ],
    }
    spec.update(changes)
    return spec


def create_baseline(cluster: Cluster, traffic: LiveModelTraffic) -> None:
    """The ConfigMap of reference histograms the monitors' drift baseline names."""
    cluster.core.create_namespaced_config_map(
        cluster.namespace,
        V1ConfigMap(
            metadata=V1ObjectMeta(name="training-histograms"),
            data={"baseline.json": reference_histograms(traffic)},
        ),
    )


@pytest.fixture
def baseline(cluster: Cluster, traffic: LiveModelTraffic) -> None:
    create_baseline(cluster, traffic)


def ready(cluster: Cluster, name: str) -> dict[str, Any] | None:
    condition = cluster.condition(name, "Ready")
    return condition if condition and condition["status"] == "True" else None


def evaluated_at(cluster: Cluster, name: str) -> datetime | None:
    evaluation = cluster.monitor(name).get("status", {}).get("lastEvaluation")
    return datetime.fromisoformat(evaluation["time"]) if evaluation else None


@pytest.mark.usefixtures("baseline")
def test_monitor_reports_drift_per_segment_with_events(
    cluster: Cluster, live_prometheus: PrometheusServer, traffic: LiveModelTraffic
) -> None:
    settings = operator_settings(live_prometheus.url)
    with OperatorProcess(cluster, settings) as operator:
        cluster.create_monitor("fraud", monitor_spec())
        wait_for("Ready=True", lambda: ready(cluster, "fraud"))
        status = cluster.monitor("fraud")["status"]
        assert status["observedGeneration"] == 1
        drift = status["lastEvaluation"]["drift"]
        assert drift["series"] == len(FEATURES) * (len(SEGMENTS) + 1)
        assert drift["critical"] == 0
        assert cluster.condition("fraud", "Drifting")["status"] == "False"  # type: ignore[index]
        cluster.wait_event("fraud", "Normal", "MonitorReady")

        # A cookie breaks for the ios segment only: session_length collapses to 0 there.
        traffic.shift_feature("session_length", segment="ios", scale=0.0, offset=0.0)
        drifting = wait_for(
            "Drifting=True",
            lambda: (c := cluster.condition("fraud", "Drifting")) and c["status"] == "True" and c,
        )
        assert drifting["reason"] == "DriftCritical"
        assert drifting["message"].startswith("session_length [segment=ios]")
        top = cluster.monitor("fraud")["status"]["lastEvaluation"]["drift"]["top"][0]
        assert (top["feature"], top["segment"], top["severity"]) == (
            "session_length",
            "segment=ios",
            "Critical",
        )
        events = cluster.events("fraud")
        assert next(e for e in events if e[1] == "DriftDetected")[0] == "Warning"

        # Not drift to retrain on: a pipeline break confined to one segment. Hold and say why.
        decision = wait_for(
            "a data-quality hold",
            lambda: (
                (d := cluster.monitor("fraud")["status"].get("decision"))
                and d["action"] == "HoldForDataQuality"
                and d
            ),
        )
        assert decision["reason"] == "SegmentBreak"
        assert "only segment=ios of session_length changed" in decision["message"]
        assert decision["enforced"] is True
        assert {e["feature"] for e in decision["evidence"]} == {"session_length"}
        cluster.wait_event("fraud", "Warning", "SegmentBreak")
        explained = io.StringIO()
        with contextlib.redirect_stdout(explained):
            assert (
                main(["explain", "fraud", "-n", cluster.namespace, "--kubeconfig", str(cluster.kubeconfig)])
                == 0
            )
        assert "Decision: HoldForDataQuality (SegmentBreak)" in explained.getvalue()
        assert "session_length" in explained.getvalue()

        traffic.reset()
        wait_for("DriftResolved", lambda: any(e[1] == "DriftResolved" for e in cluster.events("fraud")))
        assert [e[1] for e in cluster.events("fraud")].count("DriftDetected") == 1
        wait_for(
            "the hold to be released",
            lambda: cluster.monitor("fraud")["status"]["decision"]["action"] == "NoAction",
        )
        history = [(h["action"], h["reason"]) for h in cluster.monitor("fraud")["status"]["history"]]
        assert ("HoldForDataQuality", "SegmentBreak") in history and history[-1] == ("NoAction", "Healthy")

        # The operator's own metrics show the evaluations and the monitor's conditions.
        metrics = fetch(f"http://127.0.0.1:{settings.metrics_port}/metrics")
        assert (
            f'evergreen_evaluations_total{{monitor="fraud",namespace="{cluster.namespace}",outcome="ok"}}'
            in metrics
        )
        assert (
            f'evergreen_condition{{monitor="fraud",namespace="{cluster.namespace}",status="True",'
            'type="Ready"} 1.0' in metrics
        )
        # current + previous window (the baseline is a ConfigMap) + one KPI
        assert (
            f'evergreen_queries_per_evaluation{{monitor="fraud",namespace="{cluster.namespace}"}} 3.0'
            in metrics
        )
        assert "evergreen_drift_score{" in metrics
        assert (
            f'evergreen_decisions_total{{action="HoldForDataQuality",monitor="fraud",namespace="{cluster.namespace}",'
            'reason="SegmentBreak"} 1.0' in metrics
        )
        health = fetch(f"http://127.0.0.1:{settings.health_port}/healthz")
        assert "reconciling" in health

        cluster.custom.delete_namespaced_custom_object(
            "evergreen.dev", "v1alpha1", cluster.namespace, "modelmonitors", "fraud"
        )
        wait_for(
            "the monitor's series to be dropped",
            lambda: 'monitor="fraud"' not in fetch(f"http://127.0.0.1:{settings.metrics_port}/metrics"),
        )
        assert operator.telemetry is not None


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


@pytest.mark.usefixtures("baseline")
def test_spec_change_is_evaluated_at_once(cluster: Cluster, live_prometheus: PrometheusServer) -> None:
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("slow", monitor_spec(interval="1h"))
        wait_for("Ready=True", lambda: ready(cluster, "slow"))
        first = evaluated_at(cluster, "slow")
        cluster.patch_spec("slow", {"drift": {**monitor_spec()["drift"], "method": "jensenshannon"}})
        status = wait_for(
            "generation 2 observed",
            lambda: (s := cluster.monitor("slow").get("status", {})).get("observedGeneration") == 2 and s,
        )
        assert status["lastEvaluation"]["drift"]["method"] == "jensenshannon"
        assert evaluated_at(cluster, "slow") != first  # re-evaluated although the interval is 1h
        ready_condition = cluster.condition("slow", "Ready")
        assert ready_condition is not None and ready_condition["observedGeneration"] == 2


@pytest.mark.usefixtures("baseline")
def test_a_broken_monitor_does_not_disturb_another(
    cluster: Cluster, live_prometheus: PrometheusServer
) -> None:
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("good", monitor_spec())
        bad_kpi = {"name": "precision", "query": "sum(rate(model_label_outcomes_total[1m]) by", "min": 0.9}
        cluster.create_monitor("bad-query", monitor_spec(kpis=[bad_kpi]))
        # The API server refuses a spec its schema rejects, naming the field.
        with pytest.raises(ApiException) as refused:
            cluster.create_monitor("bad-spec", monitor_spec(interval="every minute"))
        assert refused.value.status == 422 and "spec.interval" in str(refused.value.body)
        # One the schema admits but the operator cannot use is reported on the monitor itself.
        bare_pod = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "t", "image": "t"}]}}
        retraining = {"template": bare_pod, "validation": {"metric": "auc"}}
        cluster.create_monitor("bad-spec", monitor_spec(retraining=retraining))

        rejected = wait_for(
            "Ready=False on bad-query",
            lambda: (c := cluster.condition("bad-query", "Ready")) and c["status"] == "False" and c,
        )
        assert rejected["reason"] == "InvalidQuery"
        assert "spec.kpis[0].query" in rejected["message"]
        # Its drift still evaluated: only the broken signal failed.
        assert cluster.condition("bad-query", "Drifting")["status"] == "False"  # type: ignore[index]
        cluster.wait_event("bad-query", "Warning", "InvalidQuery")

        invalid = wait_for(
            "Ready=False on bad-spec",
            lambda: (c := cluster.condition("bad-spec", "Ready")) and c["status"] == "False" and c,
        )
        assert invalid["reason"] == "InvalidSpec"
        assert invalid["message"].startswith("spec.retraining.template")

        wait_for("good to be Ready", lambda: ready(cluster, "good"))
        first = evaluated_at(cluster, "good")
        wait_for("good to keep evaluating", lambda: evaluated_at(cluster, "good") != first)

        cluster.patch_spec("bad-spec", {"retraining": None})
        wait_for("bad-spec to recover once fixed", lambda: ready(cluster, "bad-spec"))


@pytest.mark.usefixtures("baseline")
def test_prometheus_outage_and_recovery(
    cluster: Cluster, traffic: LiveModelTraffic, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with PrometheusServer.empty(
        tmp_path_factory.mktemp("outage"), scrape_targets=[traffic.target]
    ) as prometheus:
        wait_for("a first scrape", lambda: prometheus.query("model_predictions_total"), timeout=30)
        with OperatorProcess(cluster, operator_settings(prometheus.url)):
            cluster.create_monitor("fraud", monitor_spec())
            wait_for("Ready=True", lambda: ready(cluster, "fraud"))
            before = cluster.monitor("fraud")["status"]["lastEvaluation"]

            prometheus.stop()
            down = wait_for(
                "MetricsAvailable=False",
                lambda: (
                    (c := cluster.condition("fraud", "MetricsAvailable")) and c["status"] == "False" and c
                ),
            )
            assert down["reason"] == "PrometheusUnavailable"
            assert "cannot reach Prometheus" in down["message"]
            assert cluster.condition("fraud", "Ready")["reason"] == "PrometheusUnavailable"  # type: ignore[index]
            # The last good evaluation is kept, never replaced by zeros.
            assert cluster.monitor("fraud")["status"]["lastEvaluation"]["time"] >= before["time"]
            assert (
                cluster.monitor("fraud")["status"]["lastEvaluation"]["drift"]["series"]
                == before["drift"]["series"]
            )
            # Nothing could be judged: the decision says so and why, and does not stand as if current.
            decision = wait_for(
                "decision Unknown",
                lambda: (
                    (d := cluster.monitor("fraud")["status"].get("decision"))
                    and d["action"] == "Unknown"
                    and d
                ),
            )
            assert decision["reason"] == "PrometheusUnavailable"
            assert "nothing is decided on missing data" in decision["message"]
            cluster.wait_event("fraud", "Warning", "PrometheusUnavailable")

            prometheus.start()
            wait_for("recovery", lambda: ready(cluster, "fraud"), timeout=30)
            assert cluster.condition("fraud", "MetricsAvailable")["status"] == "True"  # type: ignore[index]
            cluster.wait_event("fraud", "Normal", "MetricsRestored")
            # Judged again: the Unknown decision does not outlive the outage.
            wait_for(
                "a judged decision",
                lambda: cluster.monitor("fraud")["status"]["decision"]["action"] != "Unknown",
                timeout=30,
            )


def test_missing_reference_is_reported_and_retried(
    cluster: Cluster, live_prometheus: PrometheusServer, traffic: LiveModelTraffic
) -> None:
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("fraud", monitor_spec())
        missing = wait_for(
            "Ready=False MissingReference",
            lambda: (c := cluster.condition("fraud", "Ready")) and c["reason"] == "MissingReference" and c,
        )
        assert f"ConfigMap {cluster.namespace}/training-histograms does not exist" in missing["message"]
        assert missing["message"].startswith("spec.drift.baseline.configMap")
        create_baseline(cluster, traffic)
        wait_for("Ready once the ConfigMap exists", lambda: ready(cluster, "fraud"))


@pytest.mark.usefixtures("baseline")
def test_an_idle_monitor_costs_the_api_one_status_write_per_evaluation(
    cluster: Cluster, live_prometheus: PrometheusServer
) -> None:
    """Every request the operator makes is counted by the API server's audit log: between
    evaluations an idle monitor (retraining configured, nothing to retrain) costs nothing."""
    cluster.create_service_account("fraud-trainer")
    template = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "t"}]}}
        },
    }
    spec = monitor_spec(
        interval="2s",
        serviceAccountName="fraud-trainer",
        retraining={"template": template, "validation": {"metric": "auc"}},
    )
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):  # a tick every 0.25 s
        cluster.create_monitor("fraud", spec)
        wait_for("Ready=True", lambda: ready(cluster, "fraud"))
        before = len(cluster.operator_requests())
        first = evaluated_at(cluster, "fraud")
        time.sleep(12)
        last = evaluated_at(cluster, "fraud")
    assert first is not None and last is not None
    requests = cluster.operator_requests()[before:]
    evaluations = round((last - first).total_seconds() / 2)
    assert evaluations >= 4, f"only {evaluations} evaluations in 12 s"
    kinds = Counter((verb, resource) for verb, resource, _ in requests)
    print(f"{len(requests)} API requests for {evaluations} evaluations (48 ticks): {dict(kinds)}")
    # Per evaluation at most one status write (an unchanged status is not written) and one read
    # of the baseline ConfigMap the spec names; nothing between evaluations, no retraining reads.
    assert set(kinds) <= {("patch", "modelmonitors/status"), ("get", "configmaps"), ("create", "events")}, (
        kinds
    )
    assert kinds[("patch", "modelmonitors/status")] <= evaluations + 1
    assert kinds[("get", "configmaps")] <= evaluations + 1


@pytest.mark.usefixtures("baseline")
def test_prometheus_credentials_come_from_a_secret_read_by_name(
    cluster: Cluster, live_prometheus: PrometheusServer
) -> None:
    prometheus = {"url": live_prometheus.url, "bearerTokenSecret": {"name": "prometheus", "key": "token"}}
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("fraud", monitor_spec(prometheus=prometheus))
        missing = wait_for(
            "Ready=False MissingReference",
            lambda: (c := cluster.condition("fraud", "Ready")) and c["reason"] == "MissingReference" and c,
        )
        assert missing["message"].startswith("spec.prometheus.bearerTokenSecret")
        assert f"Secret {cluster.namespace}/prometheus does not exist" in missing["message"]
        cluster.core.create_namespaced_secret(
            cluster.namespace,
            {"metadata": {"name": "prometheus"}, "stringData": {"token": "s3cr3t"}},  # type: ignore[arg-type]
        )
        wait_for("Ready once the Secret exists", lambda: ready(cluster, "fraud"))
    # Read by name, never listed: the chart grants get only.
    verbs = {verb for verb, resource, _ in cluster.operator_requests() if resource == "secrets"}
    assert verbs == {"get"}


@pytest.mark.usefixtures("baseline")
def test_evaluations_go_on_while_someone_else_keeps_writing_the_monitor(
    cluster: Cluster, live_prometheus: PrometheusServer
) -> None:
    """Another writer (a GitOps tool, a person's kubectl annotate) changes the object all the
    time: the operator's guarded status writes conflict, it reads the object again and redoes the
    step, and evaluations keep landing."""
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("fraud", monitor_spec(interval="1s"))
        wait_for("Ready=True", lambda: ready(cluster, "fraud"))
        first = evaluated_at(cluster, "fraud")
        deadline = time.monotonic() + 6
        writes = 0
        while time.monotonic() < deadline:
            cluster.custom.patch_namespaced_custom_object(
                "evergreen.dev", "v1alpha1", cluster.namespace, "modelmonitors", "fraud",
                {"metadata": {"annotations": {"example.com/touched": str(writes)}}},
            )  # fmt: skip
            writes += 1
            time.sleep(0.02)
        last = evaluated_at(cluster, "fraud")
    assert first is not None and last is not None and (last - first).total_seconds() >= 3
    rereads = [r for r in cluster.operator_requests() if r[:2] == ("get", "modelmonitors")]
    assert rereads, "no conflict was met (the other writer was too slow to race the operator)"


@pytest.mark.usefixtures("baseline")
def test_kubectl_evergreen_explains_a_monitor_of_the_cluster(
    cluster: Cluster, live_prometheus: PrometheusServer
) -> None:
    """The plugin as people run it: the real kubectl finds kubectl-evergreen on PATH and hands
    it kubectl's flags; the namespace comes from the kubeconfig's context."""
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("fraud", monitor_spec())
        wait_for("Ready=True", lambda: ready(cluster, "fraud"))
    plugin = Path(sys.executable).parent / "kubectl-evergreen"
    assert plugin.exists(), "the package installs the kubectl-evergreen console script"
    env = {
        "PATH": f"{plugin.parent}:{cluster.tools.kubectl.parent}:/usr/bin:/bin",
        "HOME": str(cluster.workdir),
        "KUBECONFIG": str(cluster.kubeconfig),  # kubectl takes no flags before a plugin's name
    }
    result = subprocess.run(  # noqa: PLW1510 (checked below, with stderr)
        [str(cluster.tools.kubectl), "evergreen", "explain", "fraud"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Decision:" in result.stdout and "fraud" in result.stdout
