"""Names and labels of the objects that serve one model version.

A version ``v2`` of the team's Deployment ``fraud`` and Service ``fraud-svc`` runs as the
Deployment ``fraud-v2`` behind the Service ``fraud-svc-v2``. Versions may hold characters a name
cannot (``V2.1_rc``): those are lower-cased and replaced by ``-``, and whenever the name part
differs from the version itself a short hash of the version is appended, so two versions never
share a name (``v2-1`` and ``v2.1`` become ``v2-1`` and ``v2-1-<hash>``). Names are cut to fit
(Services: 63 characters, a DNS label; Deployments: 253) keeping the hash.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from evergreen.actuators.routing.base import VERSION_LABEL, MonitorRef
from evergreen.actuators.workload_template import MANAGED_BY_LABEL, MONITOR_LABEL, monitor_label_value
from evergreen.api.resource import API_VERSION, KIND

MAX_SERVICE_NAME = 63
MAX_DEPLOYMENT_NAME = 253
_HASH_LENGTH = 8
_NOT_IN_NAMES = re.compile(r"[^a-z0-9-]+")


def version_suffix(version: str, room: int = MAX_SERVICE_NAME) -> str:
    """The part of an object name that stands for ``version``, at most ``room`` characters."""
    sanitized = _NOT_IN_NAMES.sub("-", version.lower()).strip("-")
    if sanitized == version and len(sanitized) <= room:
        return sanitized
    digest = hashlib.sha256(version.encode()).hexdigest()[:_HASH_LENGTH]
    head = sanitized[: max(room - _HASH_LENGTH - 1, 0)].rstrip("-")
    return f"{head}-{digest}" if head else digest


def version_deployment_name(deployment: str, version: str) -> str:
    """``<deployment>-<version>``: the Deployment serving ``version``."""
    return f"{deployment}-{version_suffix(version, MAX_DEPLOYMENT_NAME - len(deployment) - 1)}"


def version_service_name(service: str, version: str) -> str:
    """``<service>-<version>``: the Service in front of ``version`` only."""
    return f"{service}-{version_suffix(version, MAX_SERVICE_NAME - len(service) - 1)}"


def monitor_labels(monitor: MonitorRef) -> dict[str, str]:
    """The labels on every object Evergreen creates for ``monitor`` (and the selector to list them)."""
    return {MANAGED_BY_LABEL: "evergreen", MONITOR_LABEL: monitor_label_value(monitor.name)}


def version_selector(monitor: MonitorRef, version: str) -> dict[str, str]:
    """The labels of the pods serving ``version`` for ``monitor``, and only them.

    Versions are valid label values by the API's own pattern (at most 63 characters).
    """
    return {MONITOR_LABEL: monitor_label_value(monitor.name), VERSION_LABEL: version}


def owner_reference(monitor: MonitorRef) -> dict[str, Any]:
    """The controller reference to the monitor: its objects are garbage collected with it."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": monitor.name,
        "uid": monitor.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_by(body: Mapping[str, Any], monitor: MonitorRef) -> bool:
    """Whether ``monitor`` owns the object (by uid: a same-named successor does not)."""
    metadata = body.get("metadata")
    references = metadata.get("ownerReferences") if isinstance(metadata, dict) else None
    return any(
        isinstance(reference, dict) and reference.get("uid") == monitor.uid for reference in references or []
    )
