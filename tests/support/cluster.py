"""A test's view of the real control plane: the chart installed, a namespace, typed shortcuts.

:func:`install_chart` installs ``charts/evergreen`` with the real ``helm`` binary, as an SRE
would; :func:`service_account_token` asks the API server for a token of the chart's
ServiceAccount (TokenRequest), so the operator under test holds exactly the permissions the
chart grants: a request the chart does not allow fails with 403 and fails the test.
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import kubernetes.client
import pytest
import yaml
from kubernetes.client import AppsV1Api, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from evergreen.api.resource import GROUP, PLURAL, VERSION
from tests.support.binaries import Tools
from tests.support.control_plane import ControlPlane
from tests.support.kubelet import NodeStandIn

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "evergreen"
SHARED_CRDS = ROOT.parent / "shared" / "crds"
#: The third-party kinds Evergreen writes: Gateway API routes and custom training workloads.
THIRD_PARTY_CRDS = {
    "gateway-api-v1.4.1-httproutes.yaml": "httproutes.gateway.networking.k8s.io",
    "argo-workflows-v4.1.2-workflows.yaml": "workflows.argoproj.io",
    "training-operator-v1.9.4-pytorchjobs.yaml": "pytorchjobs.kubeflow.org",
    "kuberay-v1.7.0-rayjobs.yaml": "rayjobs.ray.io",
}
#: What the chart's rbac.workloads grants in tests: the custom workload kind the operator runs
#: in them (every grant must be used; the other kinds are checked against their schemas).
WORKLOAD_RBAC = [{"apiGroup": "kubeflow.org", "resources": ["pytorchjobs"]}]
T = TypeVar("T")


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


@dataclass(frozen=True)
class Release:
    """An installed Helm release of the chart."""

    name: str
    namespace: str
    service_account: str


def _run(binary: Path, kubeconfig: Path, args: tuple[str, ...], timeout: float) -> str:
    result = subprocess.run(  # noqa: PLW1510 (the exit code is checked below, with stderr)
        [str(binary), "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(f"{binary.name} {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def helm(tools: Tools, kubeconfig: Path, *args: str, timeout: float = 120) -> str:
    return _run(tools.helm, kubeconfig, args, timeout)


def kubectl(tools: Tools, kubeconfig: Path, *args: str, timeout: float = 120) -> str:
    return _run(tools.kubectl, kubeconfig, args, timeout)


def install_chart(
    tools: Tools, kubeconfig: Path, release: str, namespace: str, values: dict[str, Any], workdir: Path
) -> Release:
    """``helm install`` the chart (``--create-namespace``) with ``values``; the operator's pods
    are not run (``replicaCount: 0``): the test runs the operator with the chart's identity."""
    values_file = workdir / f"{release}-values.yaml"
    values_file.write_text(yaml.safe_dump({"replicaCount": 0, **values}))
    helm(
        tools, kubeconfig, "install", release, str(CHART), "-n", namespace, "--create-namespace",
        "-f", str(values_file),
    )  # fmt: skip
    manifest = helm(tools, kubeconfig, "get", "manifest", release, "-n", namespace)
    accounts = [
        doc["metadata"]["name"]
        for doc in yaml.safe_load_all(manifest)
        if doc and doc.get("kind") == "ServiceAccount"
    ]
    assert len(accounts) == 1, f"the chart should create one ServiceAccount, made {accounts}"
    return Release(release, namespace, accounts[0])


def service_account_token(api: kubernetes.client.ApiClient, namespace: str, name: str) -> str:
    """A bound token of a ServiceAccount (TokenRequest), as a pod's projected token would be."""
    request: dict[str, Any] = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 24 * 3600},
    }
    answer = CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)  # type: ignore[arg-type]
    assert answer.status is not None and answer.status.token
    return str(answer.status.token)


def install_crds(api: kubernetes.client.ApiClient, files: Iterable[Path]) -> None:
    """Create CRDs from files (too big for client-side apply) and wait until they are Established."""
    extensions = kubernetes.client.ApiextensionsV1Api(api)
    names = []
    for path in files:
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "CustomResourceDefinition":
                continue
            names.append(document["metadata"]["name"])
            try:
                extensions.create_custom_resource_definition(document)
            except ApiException as error:
                if error.status != 409:
                    raise
    for name in names:
        wait_for(f"CRD {name} Established", functools.partial(_established, extensions, name), timeout=60)


def _established(extensions: kubernetes.client.ApiextensionsV1Api, name: str) -> bool:
    crd = extensions.read_custom_resource_definition(name)
    conditions = crd.status.conditions if crd.status is not None else None
    return any(c.type == "Established" and c.status == "True" for c in conditions or [])


@dataclass
class Cluster:
    """One test's namespace on the shared control plane, with the chart installed cluster-wide."""

    plane: ControlPlane
    node: NodeStandIn
    api: kubernetes.client.ApiClient
    namespace: str
    #: kubeconfig of the test's admin identity (kubectl, helm, the CLI's person-at-a-desk commands).
    kubeconfig: Path
    #: A client configuration holding the chart ServiceAccount's token: the operator's identity.
    operator_configuration: kubernetes.client.Configuration
    release: Release
    tools: Tools
    workdir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def custom(self) -> CustomObjectsApi:
        return CustomObjectsApi(self.api)

    @property
    def core(self) -> CoreV1Api:
        return CoreV1Api(self.api)

    @property
    def apps(self) -> AppsV1Api:
        return AppsV1Api(self.api)

    @property
    def batch(self) -> BatchV1Api:
        return BatchV1Api(self.api)

    @property
    def operator_user(self) -> str:
        """The user name the API server knows the operator by (the chart's ServiceAccount)."""
        return f"system:serviceaccount:{self.release.namespace}:{self.release.service_account}"

    def operator_requests(self) -> list[tuple[str, str, str]]:
        """(verb, resource[/subresource], name) of every request the operator made about this
        test's namespace, in order (from the API server's audit log)."""
        found = []
        for entry in self.plane.requests_of(self.operator_user):
            ref = entry.get("objectRef") or {}
            if ref.get("namespace") != self.namespace:
                continue
            resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            found.append((entry["verb"], resource, ref.get("name", "")))
        return found

    def kubectl(self, *args: str) -> str:
        return kubectl(self.tools, self.kubeconfig, *args)

    def create_monitor(self, name: str, spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelMonitor",
            "metadata": {"name": name, "namespace": namespace or self.namespace},
            "spec": spec,
        }
        result = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURAL, body
        )
        assert isinstance(result, dict)
        return result

    def monitor(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        result = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURAL, name
        )
        assert isinstance(result, dict)
        return result

    def patch_spec(self, name: str, spec: dict[str, Any], namespace: str | None = None) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURAL, name, {"spec": spec}
        )

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        for condition in self.monitor(name).get("status", {}).get("conditions", []):
            if condition["type"] == kind:
                assert isinstance(condition, dict)
                return condition
        return None

    def events(
        self, name: str, namespace: str | None = None
    ) -> list[tuple[str | None, str | None, str | None]]:
        """(type, reason, message) of the Events about a monitor, oldest first."""
        items = self.core.list_namespaced_event(namespace or self.namespace).items
        about = [
            e for e in items if e.involved_object.name == name and e.involved_object.kind == "ModelMonitor"
        ]
        about.sort(key=lambda e: int(e.metadata.resource_version or 0))
        return [(e.type, e.reason, e.message) for e in about]

    def wait_event(self, name: str, event_type: str, reason: str, timeout: float = 30.0) -> str:
        """Wait for an Event of that type and reason about monitor ``name``; its message.

        Events are posted after the status write they accompany, so they may trail it a little.
        """
        found = wait_for(
            f"a {event_type} {reason} Event about {name}",
            lambda: next((e for e in self.events(name) if e[:2] == (event_type, reason)), None),
            timeout,
        )
        return found[2] or ""

    def create_service_account(self, name: str, namespace: str | None = None) -> None:
        body = {"metadata": {"name": name}}
        try:
            self.core.create_namespaced_service_account(namespace or self.namespace, body)  # type: ignore[arg-type]
        except ApiException as error:
            if error.status != 409:
                raise

    def set_status(self, api_version: str, plural: str, name: str, status: dict[str, Any]) -> None:
        """Write an object's status subresource, as its controller would (for kinds with no
        controller here: PyTorchJob, Workflow, RayJob)."""
        group, _, version = api_version.rpartition("/")
        self.custom.patch_namespaced_custom_object_status(
            group, version, self.namespace, plural, name, {"status": status}
        )

    def as_json(self, obj: Any) -> Any:
        return json.loads(json.dumps(self.api.sanitize_for_serialization(obj)))  # type: ignore[no-untyped-call]
