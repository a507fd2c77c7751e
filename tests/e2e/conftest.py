"""The real operator (kopf) against the Kubernetes API emulator and a real Prometheus.

``cluster`` is an emulated API server with the ModelMonitor CRD created from ``crds/`` (as
``kubectl apply -f crds/`` would); ``operator`` runs ``evergreen.controller.runner`` in its
own thread with a fast tick; ``live`` is a real Prometheus scraping live model traffic.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kubernetes.client
import pytest
import yaml
from kubernetes.client import CoreV1Api, CustomObjectsApi, V1Namespace, V1ObjectMeta

from evergreen.api.resource import GROUP, PLURAL, VERSION
from evergreen.controller.runner import run_operator
from evergreen.controller.settings import OperatorSettings
from evergreen.kube.client import load_configuration
from evergreen.simulation import LiveModelTraffic, PrometheusServer
from evergreen.simulation.prometheus import free_port
from evergreen.telemetry import Telemetry
from tests.support.kube_server import KubeServer

ROOT = Path(__file__).parents[2]
NAMESPACE = "ml"
T = TypeVar("T")


@dataclass
class Cluster:
    server: KubeServer
    api: kubernetes.client.ApiClient
    kubeconfig: Path

    @property
    def custom(self) -> CustomObjectsApi:
        return CustomObjectsApi(self.api)

    @property
    def core(self) -> CoreV1Api:
        return CoreV1Api(self.api)

    def create_monitor(self, name: str, spec: dict[str, Any], namespace: str = NAMESPACE) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelMonitor",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        result = self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        assert isinstance(result, dict)
        return result

    def monitor(self, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        result = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        assert isinstance(result, dict)
        return result

    def patch_spec(self, name: str, spec: dict[str, Any], namespace: str = NAMESPACE) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        for condition in self.monitor(name).get("status", {}).get("conditions", []):
            if condition["type"] == kind:
                assert isinstance(condition, dict)
                return condition
        return None

    def events(
        self, name: str, namespace: str = NAMESPACE
    ) -> list[tuple[str | None, str | None, str | None]]:
        """(type, reason, message) of the Events about a monitor, oldest first."""
        items = self.core.list_namespaced_event(namespace).items
        about = [
            e for e in items if e.involved_object.name == name and e.involved_object.kind == "ModelMonitor"
        ]
        about.sort(key=lambda e: int(e.metadata.resource_version or 0))
        return [(e.type, e.reason, e.message) for e in about]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with KubeServer() as server, server.api_client() as api:
        crd = yaml.safe_load((ROOT / "crds" / "modelmonitors.yaml").read_text())
        kubernetes.client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
        CoreV1Api(api).create_namespace(V1Namespace(metadata=V1ObjectMeta(name=NAMESPACE)))
        yield Cluster(server, api, server.kubeconfig(tmp_path / "kubeconfig"))


class OperatorProcess:
    """The operator's ``run_operator`` in a thread of its own (kopf fights a shared loop)."""

    def __init__(self, cluster: Cluster, settings: OperatorSettings) -> None:
        self.settings = settings
        self.telemetry = Telemetry()
        self._configuration = load_configuration(str(cluster.kubeconfig))
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
        if not self._ready.wait(20):
            raise RuntimeError("the operator did not become ready") from self._failure
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(20)
        assert not self._thread.is_alive(), "the operator did not stop"
        if self._failure is not None:
            raise self._failure


def operator_settings(prometheus_url: str, **changes: Any) -> OperatorSettings:
    from evergreen.signals.prometheus import Endpoint

    values: dict[str, Any] = {
        "default_endpoint": Endpoint(url=prometheus_url, timeout_seconds=3),
        "tick_seconds": 0.25,
        "retry_seconds": 0.5,
        "metrics_port": free_port(),
        "health_port": free_port(),
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
