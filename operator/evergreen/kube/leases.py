"""The coordination.k8s.io/v1 Leases that say which operator replicas are alive.

One Lease per replica, named after it, labelled with its shard group; the operator lists,
creates, renews (a replace guarded by resourceVersion) and deletes them, nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from evergreen.api.resource import GROUP
from evergreen.errors import ClusterError
from evergreen.kube.client import FIELD_MANAGER, KubeApi, _describe

#: The label every member Lease of one shard group carries (its value: the group).
GROUP_LABEL = f"{GROUP}/shard-group"


@dataclass(frozen=True)
class LeaseRecord:
    """A member's Lease as listed: who holds it, its version, and how long it lasts unrenewed."""

    name: str
    holder: str
    resource_version: str
    duration_seconds: float


class LeaseLost(ClusterError):
    """The Lease changed or vanished since this replica last wrote it: read it again."""


def _micro_time(when: datetime) -> str:
    # MicroTime: RFC 3339 with exactly six fractional digits.
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(lease: Any) -> LeaseRecord:
    spec = lease.spec
    return LeaseRecord(
        name=lease.metadata.name,
        holder=(spec.holder_identity if spec else None) or "",
        resource_version=lease.metadata.resource_version,
        duration_seconds=float((spec.lease_duration_seconds if spec else None) or 0),
    )


class LeaseApi:
    """The member Leases of one shard group in one namespace."""

    def __init__(self, kube: KubeApi, namespace: str, group: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.group = group
        self._api = kube.coordination

    def _body(self, holder: str, duration: float, resource_version: str | None = None) -> dict[str, Any]:
        now = _micro_time(datetime.now(UTC))
        metadata: dict[str, Any] = {
            "name": holder,
            "namespace": self.namespace,
            "labels": {GROUP_LABEL: self.group, "app.kubernetes.io/managed-by": "evergreen"},
        }
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": holder,
                # Whole seconds in the API; rounded up so no peer expires this replica early.
                "leaseDurationSeconds": math.ceil(duration),
                "renewTime": now,
            },
        }

    async def list(self) -> list[LeaseRecord]:
        """Every member Lease of the group."""
        try:
            listing = await self.kube._call(
                self._api.list_namespaced_lease, self.namespace, label_selector=f"{GROUP_LABEL}={self.group}"
            )
        except ApiException as error:
            raise ClusterError(f"listing Leases in {self.namespace}: {_describe(error)}") from error
        return [_record(item) for item in listing.items or []]

    async def create(self, holder: str, duration: float) -> LeaseRecord:
        """This replica's Lease; :class:`LeaseLost` when one of that name exists already."""
        try:
            lease = await self.kube._call(
                self._api.create_namespaced_lease,
                self.namespace,
                self._body(holder, duration),
                field_manager=FIELD_MANAGER,
            )
        except ApiException as error:
            if error.status == 409:
                raise LeaseLost(f"Lease {self.namespace}/{holder} exists already") from error
            raise ClusterError(f"creating Lease {self.namespace}/{holder}: {_describe(error)}") from error
        return _record(lease)

    async def renew(self, lease: LeaseRecord, duration: float) -> LeaseRecord:
        """Write a new renewTime, only over the version last read or written."""
        try:
            renewed = await self.kube._call(
                self._api.replace_namespaced_lease,
                lease.name,
                self.namespace,
                self._body(lease.holder, duration, lease.resource_version),
                field_manager=FIELD_MANAGER,
            )
        except ApiException as error:
            if error.status in (404, 409):
                raise LeaseLost(f"Lease {self.namespace}/{lease.name} changed or vanished") from error
            raise ClusterError(f"renewing Lease {self.namespace}/{lease.name}: {_describe(error)}") from error
        return _record(renewed)

    async def delete(self, lease: LeaseRecord) -> bool:
        """Delete the Lease as last seen (not one renewed since): whether it is gone now (False:
        it changed since, and is kept)."""
        try:
            await self.kube._call(
                self._api.delete_namespaced_lease,
                lease.name,
                self.namespace,
                body=k8s.V1DeleteOptions(
                    preconditions=k8s.V1Preconditions(resource_version=lease.resource_version)
                ),
            )
        except ApiException as error:
            if error.status == 404:
                return True
            if error.status == 409:
                return False
            raise ClusterError(f"deleting Lease {self.namespace}/{lease.name}: {_describe(error)}") from error
        return True
