"""An async facade over the official ``kubernetes`` client.

The client is synchronous; every call goes through ``asyncio.to_thread`` here and nowhere
else, so handlers stay async and a slow API call never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from evergreen.api.resource import API_VERSION, GROUP, KIND, PLURAL, VERSION
from evergreen.errors import ClusterError, MissingReference

R = TypeVar("R")


def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> k8s.Configuration:
    """In-cluster credentials when running in a pod, else a kubeconfig file."""
    configuration = k8s.Configuration()
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
            return configuration
        except k8s_config.ConfigException:
            pass
    k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    return configuration


@dataclass(frozen=True)
class ObjectRef:
    """Identifies the object an Event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str

    @classmethod
    def monitor(cls, body: Mapping[str, Any]) -> ObjectRef:
        meta = body["metadata"]
        return cls(API_VERSION, KIND, meta["namespace"], meta["name"], meta.get("uid", ""))


class Conflict(ClusterError):
    """The object changed since it was read (a stale resourceVersion)."""


class KubeApi:
    """The Kubernetes operations Evergreen performs."""

    def __init__(self, configuration: k8s.Configuration, *, component: str = "evergreen") -> None:
        self._api = k8s.ApiClient(configuration)
        self.custom = k8s.CustomObjectsApi(self._api)
        self.core = k8s.CoreV1Api(self._api)
        self.component = component

    def close(self) -> None:
        self._api.close()

    async def _call(self, function: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        return await asyncio.to_thread(function, *args, **kwargs)

    # ModelMonitors ---------------------------------------------------------------------------

    async def get_monitor(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The current object, or None when it is gone."""
        try:
            body = await self._call(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise ClusterError(
                f"reading ModelMonitor {namespace}/{name}: HTTP {error.status} {error.reason}"
            ) from error
        assert isinstance(body, dict)
        return body

    async def replace_monitor_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Write the whole status, only if nobody wrote the object since ``resource_version``."""
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "add", "path": "/status", "value": dict(status)},
        ]
        try:
            body = await self._call(
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                # The client would send a list as a merge patch; this is a JSON patch.
                _content_type="application/json-patch+json",
            )
        except ApiException as error:
            if error.status in (409, 422):
                raise Conflict(f"ModelMonitor {namespace}/{name} changed while it was evaluated") from error
            raise ClusterError(
                f"writing status of ModelMonitor {namespace}/{name}: HTTP {error.status} {error.reason}"
            ) from error
        assert isinstance(body, dict)
        return body

    # Events ----------------------------------------------------------------------------------

    async def post_event(self, about: ObjectRef, event_type: str, reason: str, message: str) -> None:
        """Post a core/v1 Event (what ``kubectl describe`` shows)."""
        now = datetime.now(UTC)
        body = k8s.CoreV1Event(
            metadata=k8s.V1ObjectMeta(generate_name=f"{about.name}.", namespace=about.namespace),
            involved_object=k8s.V1ObjectReference(
                api_version=about.api_version,
                kind=about.kind,
                name=about.name,
                namespace=about.namespace,
                uid=about.uid,
            ),
            reason=reason,
            message=message[:1024],
            type=event_type,
            count=1,
            first_timestamp=now,
            last_timestamp=now,
            source=k8s.V1EventSource(component=self.component),
            reporting_component=f"{GROUP}/operator",
            reporting_instance=self.component,
        )
        try:
            await self._call(self.core.create_namespaced_event, about.namespace, body)
        except ApiException as error:
            raise ClusterError(
                f"posting Event {reason} for {about.namespace}/{about.name}: HTTP {error.status}"
            ) from error

    # References ------------------------------------------------------------------------------

    async def read_secret_key(self, namespace: str, name: str, key: str, *, field: str) -> str:
        try:
            secret = await self._call(self.core.read_namespaced_secret, name, namespace)
        except ApiException as error:
            if error.status == 404:
                raise MissingReference(field, f"Secret {namespace}/{name} does not exist") from error
            raise ClusterError(f"reading Secret {namespace}/{name}: HTTP {error.status}") from error
        data = (secret.data or {}).get(key)
        if data is None:
            raise MissingReference(field, f"Secret {namespace}/{name} has no key {key!r}")
        try:
            return base64.b64decode(data).decode()
        except (binascii.Error, UnicodeDecodeError) as error:
            raise MissingReference(
                field, f"Secret {namespace}/{name} key {key!r} is not UTF-8 text"
            ) from error

    async def read_config_map_key(self, namespace: str, name: str, key: str, *, field: str) -> str:
        try:
            config_map = await self._call(self.core.read_namespaced_config_map, name, namespace)
        except ApiException as error:
            if error.status == 404:
                raise MissingReference(field, f"ConfigMap {namespace}/{name} does not exist") from error
            raise ClusterError(f"reading ConfigMap {namespace}/{name}: HTTP {error.status}") from error
        data = (config_map.data or {}).get(key)
        if data is None:
            raise MissingReference(field, f"ConfigMap {namespace}/{name} has no key {key!r}")
        assert isinstance(data, str)
        return data
