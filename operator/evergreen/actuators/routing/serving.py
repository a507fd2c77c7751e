"""Render the Deployment and the Service that serve one model version (pure).

Both are copies of the team's objects (``spec.rollout.target``), read from the cluster:

- **Deployment** ``<deployment>-<version>``: the team Deployment's spec with ``replicas`` set,
  ``paused`` dropped, the version injected (:mod:`.injection`), and a selector of Evergreen's
  own: ``evergreen.dev/monitor`` and ``evergreen.dev/version``. The selector never mentions the
  team's labels because a Deployment's selector cannot change, while whether a version's pods
  keep the team Service's selector labels depends on its role (``exclude_labels``: a held
  version's pods, and a GatewayAPI candidate's, must not receive the team Service's traffic).
  The pods keep every other label of the team's pod template (NetworkPolicies, dashboards).
- **Service** ``<service>-<version>``: the team Service's ports (no ``nodePort``), type
  ``ClusterIP`` (no ``clusterIP``/``clusterIPs``, no load balancer settings), and a selector of
  exactly that version's pods (monitor and version labels): holds' customers and HTTPRoutes
  address it.

Nothing the API server sets is copied (status, uid, resourceVersion, creationTimestamp,
generation, managedFields, ownerReferences, finalizers, annotations such as kubectl's
last-applied-configuration), nor the labels by which GitOps tools recognise their own objects:
a tool that took Evergreen's Deployment for one of its own would prune it.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from typing import Any

from evergreen.actuators.routing.base import HELD_REPLICAS_ANNOTATION, VERSION_LABEL, MonitorRef
from evergreen.actuators.routing.injection import inject_version
from evergreen.actuators.routing.naming import (
    monitor_labels,
    owner_reference,
    version_deployment_name,
    version_selector,
    version_service_name,
)
from evergreen.api.delivery import VersionInjection
from evergreen.errors import SpecError

TARGET_FIELD = "spec.rollout.target"

#: Paths whose maps Evergreen owns entirely (see :mod:`.patching`).
DEPLOYMENT_EXACT_PATHS = (("spec", "template", "metadata", "labels"),)
SERVICE_EXACT_PATHS = (("spec", "selector"),)

#: Labels by which GitOps tools (Argo CD, Flux) and Helm claim objects, and the managed-by label.
_CLAIM_LABELS = ("app.kubernetes.io/instance", "app.kubernetes.io/managed-by")
_CLAIM_PREFIXES = ("argocd.argoproj.io/", "kustomize.toolkit.fluxcd.io/", "helm.toolkit.fluxcd.io/")
#: The Service spec fields a ClusterIP copy keeps.
_SERVICE_FIELDS = (
    "sessionAffinity",
    "sessionAffinityConfig",
    "publishNotReadyAddresses",
    "ipFamilyPolicy",
    "ipFamilies",
    "internalTrafficPolicy",
    "trafficDistribution",
)


def render_version_deployment(
    team: Mapping[str, Any],
    *,
    monitor: MonitorRef,
    version: str,
    injection: VersionInjection,
    replicas: int,
    held_replicas: int = 0,
    exclude_labels: Collection[str] = (),
    field: str = TARGET_FIELD,
) -> dict[str, Any]:
    """The Deployment serving ``version``, from the team's Deployment ``team`` (not modified)."""
    team_name = str(team["metadata"]["name"])
    spec = copy.deepcopy(dict(team.get("spec") or {}))
    spec.pop("paused", None)
    spec.pop("status", None)
    spec["replicas"] = replicas
    selector = version_selector(monitor, version)
    spec["selector"] = {"matchLabels": dict(selector)}
    template = spec.setdefault("template", {})
    pod_metadata = template.setdefault("metadata", {})
    pod_metadata.pop("creationTimestamp", None)  # the API server returns it as null in templates
    pod_labels = {
        key: value for key, value in (pod_metadata.get("labels") or {}).items() if key not in exclude_labels
    }
    pod_metadata["labels"] = {**pod_labels, **selector}
    inject_version(
        template.setdefault("spec", {}),
        injection,
        version,
        source=f"Deployment {monitor.namespace}/{team_name}",
        field=f"{field}.version",
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": version_deployment_name(team_name, version),
            "namespace": monitor.namespace,
            "labels": _object_labels(team, monitor, version),
            "annotations": {HELD_REPLICAS_ANNOTATION: str(held_replicas)},
            "ownerReferences": [owner_reference(monitor)],
        },
        "spec": spec,
    }


def render_version_service(team: Mapping[str, Any], *, monitor: MonitorRef, version: str) -> dict[str, Any]:
    """The ClusterIP Service in front of ``version``'s pods only, from the team's Service ``team``."""
    team_spec = team.get("spec") or {}
    ports = []
    for port in team_spec.get("ports") or []:
        ports.append({key: value for key, value in port.items() if key != "nodePort"})
    spec: dict[str, Any] = {key: copy.deepcopy(team_spec[key]) for key in _SERVICE_FIELDS if key in team_spec}
    spec.update(type="ClusterIP", ports=ports, selector=version_selector(monitor, version))
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": version_service_name(str(team["metadata"]["name"]), version),
            "namespace": monitor.namespace,
            "labels": _object_labels(team, monitor, version),
            "ownerReferences": [owner_reference(monitor)],
        },
        "spec": spec,
    }


def _object_labels(team: Mapping[str, Any], monitor: MonitorRef, version: str) -> dict[str, str]:
    theirs = team.get("metadata", {}).get("labels") or {}
    kept = {
        key: value
        for key, value in theirs.items()
        if key not in _CLAIM_LABELS and not key.startswith(_CLAIM_PREFIXES)
    }
    return {**kept, **monitor_labels(monitor), VERSION_LABEL: version}


# --- the team's objects -------------------------------------------------------------------------------


def service_selector(service: Mapping[str, Any]) -> dict[str, str]:
    """The team Service's pod selector (empty for a Service without one)."""
    selector = (service.get("spec") or {}).get("selector") or {}
    return {str(key): str(value) for key, value in selector.items()}


def pod_labels(deployment: Mapping[str, Any]) -> dict[str, str]:
    """The labels a Deployment gives its pods."""
    template = (deployment.get("spec") or {}).get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    return {str(key): str(value) for key, value in labels.items()}


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a Service selector picks pods with ``labels`` (an empty selector picks none)."""
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def check_team_service_selects_team_pods(
    deployment: Mapping[str, Any], service: Mapping[str, Any], *, field: str = TARGET_FIELD
) -> dict[str, str]:
    """The team Service's selector, which must pick the team Deployment's pods; SpecError if not."""
    selector = service_selector(service)
    name = service["metadata"]["name"]
    if not selector:
        raise SpecError(
            f"{field}.service",
            f"Service {name} has no pod selector: the Replicas router splits traffic by the pods it selects",
        )
    if not selects(selector, pod_labels(deployment)):
        wanted = ",".join(f"{key}={value}" for key, value in selector.items())
        raise SpecError(
            f"{field}.service",
            f"Service {name} selects {wanted}, which the pods of Deployment "
            f"{deployment['metadata']['name']} do not carry: name the Service in front of that Deployment",
        )
    return selector


# --- readiness -----------------------------------------------------------------------------------------


def desired_replicas(deployment: Mapping[str, Any]) -> int:
    """``spec.replicas`` (1 when unset, as the API server defaults it)."""
    replicas = (deployment.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def deployment_ready(deployment: Mapping[str, Any]) -> bool:
    """Whether the Deployment runs its current template with all replicas available.

    The rule of ``kubectl rollout status``: the controller has seen the latest spec
    (``observedGeneration``), and as many pods as desired are updated and available. A
    Deployment of 0 replicas is ready: there is nothing to wait for.
    """
    wanted = desired_replicas(deployment)
    if wanted == 0:
        return True
    status = deployment.get("status") or {}
    generation = deployment.get("metadata", {}).get("generation")
    observed = status.get("observedGeneration")
    if observed is None or (generation is not None and int(observed) < int(generation)):
        return False
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    return updated >= wanted and available >= wanted


def deployment_stalled(deployment: Mapping[str, Any]) -> bool:
    """Whether its controller gave up on progress (``Progressing`` False, ``ProgressDeadlineExceeded``)."""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return str(condition.get("status")) == "False"
    return False
