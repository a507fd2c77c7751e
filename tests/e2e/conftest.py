"""The real operator (kopf) on a real Kubernetes control plane, evaluating against a real Prometheus.

Once per session: etcd, kube-apiserver and kube-controller-manager (``control_plane``), the node
stand-in that plays the kubelet, the third-party CRDs Evergreen writes (HTTPRoute, Workflow,
PyTorchJob, RayJob), and the chart installed with the real ``helm`` binary. Every test gets a
namespace of its own (``cluster``); ``OperatorProcess`` runs ``evergreen.controller.runner``
with a token of the chart's ServiceAccount, so the chart's RBAC is in force.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

from evergreen.api.resource import GROUP, PLURAL, VERSION
from evergreen.controller.runner import run_operator
from evergreen.controller.settings import OperatorSettings
from evergreen.simulation import LiveModelTraffic, PrometheusServer
from evergreen.simulation.prometheus import free_port
from evergreen.telemetry import Telemetry
from tests.support.binaries import Tools, k8s_tools
from tests.support.cluster import (
    SHARED_CRDS,
    THIRD_PARTY_CRDS,
    WORKLOAD_RBAC,
    Cluster,
    Release,
    install_chart,
    install_crds,
    service_account_token,
    wait_for,
)
from tests.support.control_plane import ControlPlane
from tests.support.kubelet import NodeStandIn

__all__ = ["Cluster", "OperatorProcess", "OperatorSubprocess", "operator_settings", "wait_for"]

#: The release namespace of the cluster-wide chart install every test's operator runs under.
RELEASE_NAMESPACE = "evergreen-system"
_namespaces = itertools.count(1)


@dataclass
class Plane:
    control_plane: ControlPlane
    node: NodeStandIn
    api: kubernetes.client.ApiClient
    kubeconfig: Path
    tools: Tools
    release: Release
    operator_token: str
    workdir: Path


#: Rules the API server checks without the operator sending such a request: admission
#: (OwnerReferencesPermissionEnforcement) asks whether the operator may update the owner's
#: finalizers when it sets blockOwnerDeletion on what it creates.
CHECKED_BY_ADMISSION = {("evergreen.dev", "modelmonitors/finalizers", "update")}


def granted_rules(api: kubernetes.client.ApiClient, release: Release) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every rule of the chart's ClusterRole and of its Role in
    the release namespace (the replicas' Leases)."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    rules = list(rbac.read_cluster_role(release.name).rules or [])
    for role in rbac.list_namespaced_role(release.namespace).items:
        rules += role.rules or []
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.api_groups or []
        for resource in rule.resources or []
        for verb in rule.verbs
    }


def used_rules(control_plane: ControlPlane, user: str) -> tuple[set[tuple[str, str, str]], list[str]]:
    """What ``user`` asked of the API server (from the audit log), and what it was refused."""
    used, refused = set(), []
    for entry in control_plane.requests_of(user):
        ref = entry.get("objectRef") or {}
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used.add((ref.get("apiGroup", ""), resource, entry["verb"]))
        answer = entry.get("responseStatus") or {}
        # A namespace being deleted refuses new objects with 403 too (a test's namespace going
        # while a monitor in it is still reconciled): that is no RBAC refusal.
        if answer.get("code") == 403 and "being terminated" not in str(answer.get("message", "")):
            refused.append(f"{entry['verb']} {entry.get('requestURI')}")
    return used, refused


def _whole_suite(session: pytest.Session) -> bool:
    """Whether every end-to-end test ran and passed (only then is "never used" meaningful)."""
    folder = Path(__file__).parent
    files = {path.name for path in folder.glob("test_*.py")}
    ran = {Path(str(item.fspath)).name for item in session.items}
    options = session.config.option
    return files <= ran and not options.keyword and not options.markexpr and session.testsfailed == 0


@pytest.fixture(scope="session")
def plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    """The control plane, the node stand-in, third-party CRDs and the chart (cluster-wide).

    After a whole passing run, the chart's ClusterRole is compared with what the operator
    really asked (the API server's audit log): a rule no code path used, or a request the chart
    refused, fails the run, so the chart cannot drift from the code.
    """
    workdir = tmp_path_factory.mktemp("control-plane")
    tools = k8s_tools()
    with ControlPlane(workdir) as control_plane:
        api = control_plane.admin_client()
        with NodeStandIn(api) as node:
            kubeconfig = control_plane.kubeconfig(workdir / "admin.kubeconfig")
            install_crds(api, [SHARED_CRDS / name for name in THIRD_PARTY_CRDS])
            release = install_chart(
                tools,
                kubeconfig,
                "evergreen",
                RELEASE_NAMESPACE,
                {"rbac": {"gatewayAPI": True, "workloads": WORKLOAD_RBAC}},
                workdir,
            )
            token = service_account_token(api, release.namespace, release.service_account)
            yield Plane(control_plane, node, api, kubeconfig, tools, release, token, workdir)
            control_plane.check_alive()
            user = f"system:serviceaccount:{release.namespace}:{release.service_account}"
            used, refused = used_rules(control_plane, user)
            assert not refused, f"the operator was refused requests under the chart's RBAC: {refused}"
            if _whole_suite(request.session):
                unused = granted_rules(api, release) - used - CHECKED_BY_ADMISSION
                assert not unused, f"the chart grants what no code path used: {sorted(unused)}"


@pytest.fixture
def cluster(plane: Plane, tmp_path: Path) -> Iterator[Cluster]:
    """A fresh namespace; afterwards its monitors are released and the namespace deleted."""
    namespace = f"e2e-{next(_namespaces)}"
    core = kubernetes.client.CoreV1Api(plane.api)
    core.create_namespace({"metadata": {"name": namespace}})  # type: ignore[arg-type]
    yield Cluster(
        plane=plane.control_plane,
        node=plane.node,
        api=plane.api,
        namespace=namespace,
        kubeconfig=plane.control_plane.kubeconfig(tmp_path / "kubeconfig", namespace=namespace),
        operator_configuration=plane.control_plane.configuration(plane.operator_token),
        release=plane.release,
        tools=plane.tools,
        workdir=tmp_path,
    )
    _release_namespace(plane.api, namespace)


def _release_namespace(api: kubernetes.client.ApiClient, namespace: str) -> None:
    """Delete the namespace without waiting; finalizers left by a stopped operator are dropped
    first (the operator that would remove them is gone with the test)."""
    custom = kubernetes.client.CustomObjectsApi(api)
    listing: Any = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    for monitor in listing["items"]:
        if monitor["metadata"].get("finalizers"):
            try:
                custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, monitor["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                )  # fmt: skip
            except ApiException as error:
                if error.status != 404:
                    raise
    kubernetes.client.CoreV1Api(api).delete_namespace(namespace)


class OperatorProcess:
    """The operator's ``run_operator`` in a thread of its own (kopf fights a shared loop),
    holding the chart ServiceAccount's token."""

    def __init__(
        self,
        cluster: Cluster,
        settings: OperatorSettings,
        configuration: kubernetes.client.Configuration | None = None,
    ) -> None:
        self.settings = settings
        self.telemetry = Telemetry()
        self._configuration = configuration or cluster.operator_configuration
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="evergreen-operator", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(
                run_operator(
                    self.settings,
                    self._configuration,
                    telemetry=self.telemetry,
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                )
            )
        except BaseException as error:  # re-raised in the test on exit
            self._failure = error

    def __enter__(self) -> OperatorProcess:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the operator did not become ready") from self._failure
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the operator did not stop"
        if self._failure is not None:
            raise self._failure


def operator_settings(prometheus_url: str, **changes: Any) -> OperatorSettings:
    """Fast-ticking settings, serving metrics and health on loopback."""
    from evergreen.signals.prometheus import Endpoint

    values: dict[str, Any] = {
        "default_endpoint": Endpoint(url=prometheus_url, timeout_seconds=3),
        "tick_seconds": 0.25,
        "retry_seconds": 0.5,
        "workload_poll_seconds": 0.5,
        "metrics_port": free_port(),
        "health_port": free_port(),
        "bind_address": "127.0.0.1",
    }
    values.update(changes)
    return OperatorSettings(**values)


@pytest.fixture(scope="session")
def live_traffic() -> Iterator[LiveModelTraffic]:
    with LiveModelTraffic() as traffic:
        yield traffic


@pytest.fixture(scope="session")
def live_prometheus(
    tmp_path_factory: pytest.TempPathFactory, live_traffic: LiveModelTraffic
) -> Iterator[PrometheusServer]:
    """A Prometheus scraping the live traffic every second (first scrape costs ~5 s, once)."""
    with PrometheusServer.empty(
        tmp_path_factory.mktemp("e2e-prometheus"), scrape_targets=[live_traffic.target]
    ) as server:
        deadline = time.monotonic() + 30
        while not server.query("model_predictions_total"):
            if time.monotonic() > deadline:
                pytest.fail("Prometheus never scraped the live traffic")
            time.sleep(0.2)
        yield server


@pytest.fixture
def traffic(live_traffic: LiveModelTraffic) -> Iterator[LiveModelTraffic]:
    """The shared live traffic, healthy at the start and end of every test."""
    live_traffic.reset()
    live_traffic.resume()
    yield live_traffic
    live_traffic.reset()
    live_traffic.resume()


class OperatorSubprocess:
    """``evergreen run`` as its own process with the chart's token, as in a pod: it can be
    killed with SIGKILL (no cleanup, no last write) and started again."""

    def __init__(self, cluster: Cluster, prometheus_url: str, *extra: str, name: str = "operator") -> None:
        token = str(cluster.operator_configuration.api_key["authorization"]).split()[1]
        self.kubeconfig = cluster.plane.kubeconfig(cluster.workdir / f"{name}.kubeconfig", token=token)
        self.log = cluster.workdir / f"{name}.log"
        self.argv = [
            sys.executable, "-m", "evergreen.cli", "run",
            "--kubeconfig", str(self.kubeconfig),
            "--prometheus-url", prometheus_url,
            "--tick", "0.25", "--retry", "0.5", "--workload-poll", "0.5",
            "--metrics-port", "0", "--health-port", "0", "--bind-address", "127.0.0.1",
            *extra,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorSubprocess:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        """SIGKILL: the process ends wherever it is."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def __enter__(self) -> OperatorSubprocess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
