"""An async facade over the official ``kubernetes`` client.

The client is synchronous; every call goes through ``asyncio.to_thread`` here and nowhere
else, so handlers stay async and a slow API call never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
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

#: The field manager of every write the operator makes (``metadata.managedFields``): GitOps
#: tools can ignore exactly the fields it manages (see docs/delivery.md).
FIELD_MANAGER = "evergreen"


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


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None.

    JSON has neither, and the client would write them as bare ``NaN``/``Infinity``, which the
    API server rejects: one odd number must never block a whole status write.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


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

    def __init__(
        self, configuration: k8s.Configuration, *, component: str = "evergreen", user_agent: str | None = None
    ) -> None:
        self._api = k8s.ApiClient(configuration)
        if user_agent is not None:  # e.g. which replica wrote, in the API server's audit log
            self._api.user_agent = user_agent
        self.custom = k8s.CustomObjectsApi(self._api)
        self.core = k8s.CoreV1Api(self._api)
        self.coordination = k8s.CoordinationV1Api(self._api)
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
            {"op": "add", "path": "/status", "value": json_safe(dict(status))},
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
                field_manager=FIELD_MANAGER,
            )
        except ApiException as error:
            if error.status == 409 or _failed_test(error):
                raise Conflict(f"ModelMonitor {namespace}/{name} changed while it was evaluated") from error
            # Any other 422: the status itself is invalid; retrying the same write cannot help.
            raise ClusterError(
                f"writing status of ModelMonitor {namespace}/{name}: HTTP {error.status} {error.reason}"
            ) from error
        assert isinstance(body, dict)
        return body

    async def set_monitor_finalizers(self, body: Mapping[str, Any], finalizers: list[str]) -> dict[str, Any]:
        """Replace the monitor's finalizers, only if they are still what ``body`` says (a JSON
        patch testing the list read): other controllers' finalizers are never lost."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        current = meta.get("finalizers")
        operations: list[dict[str, Any]] = []
        if current is not None:
            operations.append({"op": "test", "path": "/metadata/finalizers", "value": current})
        operations.append({"op": "add", "path": "/metadata/finalizers", "value": finalizers})
        try:
            answer = await self._call(
                self.custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                operations,
                _content_type="application/json-patch+json",
                field_manager=FIELD_MANAGER,
            )
        except ApiException as error:
            if error.status == 409 or _failed_test(error):
                raise Conflict(
                    f"ModelMonitor {namespace}/{name} changed while its finalizers were set"
                ) from error
            raise ClusterError(
                f"setting finalizers of ModelMonitor {namespace}/{name}: {_describe(error)}"
            ) from error
        assert isinstance(answer, dict)
        return answer

    async def patch_monitor_spec(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the spec (what a person or a GitOps commit would change)."""
        try:
            body = await self._call(
                self.custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"spec": dict(spec)},
                _content_type="application/merge-patch+json",
            )
        except ApiException as error:
            raise ClusterError(
                f"patching ModelMonitor {namespace}/{name}: HTTP {error.status} {error.reason}"
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
            await self._call(
                self.core.create_namespaced_event, about.namespace, body, field_manager=FIELD_MANAGER
            )
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

    async def service_account_exists(self, namespace: str, name: str) -> bool:
        """Whether the ServiceAccount a monitor's workloads are to run as exists."""
        try:
            await self._call(self.core.read_namespaced_service_account, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise ClusterError(f"reading ServiceAccount {namespace}/{name}: {_describe(error)}") from error
        return True

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


@dataclass(frozen=True)
class Resource:
    """A served resource type, as discovery reports it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


class ResourceNotServed(ClusterError):
    """The cluster does not serve this apiVersion/kind (CRD not installed, or a typo)."""


class WorkloadApi:
    """Generic create/get of workload objects of any served kind, plus their pods."""

    def __init__(self, kube: KubeApi) -> None:
        self.kube = kube
        self._resources: dict[tuple[str, str], Resource] = {}

    async def resource(self, api_version: str, kind: str) -> Resource:
        """Discover the plural name and scope of ``kind`` (cached)."""
        key = (api_version, kind)
        if key in self._resources:
            return self._resources[key]
        group, _, version = api_version.rpartition("/")
        try:
            listing = await self.kube._call(self.kube.custom.get_api_resources, group, version)
        except ApiException as error:
            if error.status == 404:
                raise ResourceNotServed(f"the cluster does not serve {api_version}") from error
            raise ClusterError(f"discovering {api_version}: HTTP {error.status}") from error
        for item in listing.resources or []:
            if item.kind == kind and "/" not in item.name:
                resource = Resource(group, version, item.name, kind, bool(item.namespaced))
                self._resources[key] = resource
                return resource
        raise ResourceNotServed(f"the cluster serves {api_version} but no kind {kind} in it")

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            body = await self.kube._call(
                self.kube.custom.get_namespaced_custom_object,
                resource.group,
                resource.version,
                namespace,
                resource.plural,
                name,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise ClusterError(f"reading {resource.kind} {namespace}/{name}: HTTP {error.status}") from error
        assert isinstance(body, dict)
        return body

    async def create(self, resource: Resource, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create the object; False when one of that name already exists (409)."""
        try:
            await self.kube._call(
                self.kube.custom.create_namespaced_custom_object,
                resource.group,
                resource.version,
                namespace,
                resource.plural,
                dict(body),
                field_manager=FIELD_MANAGER,
            )
        except ApiException as error:
            if error.status == 409:
                return False
            detail = _status_message(error)
            if error.status not in (400, 403, 404, 422):
                # Throttling, timeouts, a busy API server: the same claim is retried next tick.
                raise ClusterError(f"creating {resource.kind}: HTTP {error.status} {detail}") from error
            name = body["metadata"]["name"]
            raise WorkloadRejected(
                f"creating {resource.kind} {namespace}/{name}: HTTP {error.status} {detail}",
                status=error.status,
            ) from error
        return True

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Pods matching a label selector, in their JSON form."""
        try:
            listing = await self.kube._call(
                self.kube.core.list_namespaced_pod, namespace, label_selector=selector
            )
        except ApiException as error:
            raise ClusterError(f"listing pods {selector} in {namespace}: HTTP {error.status}") from error
        sanitized = self.kube._api.sanitize_for_serialization(listing.items)
        assert isinstance(sanitized, list)
        return sanitized


class WorkloadRejected(ClusterError):
    """The API server refused to create a workload (invalid, forbidden): permanent for that run."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def _status_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message", ""))[:500]
    except (TypeError, ValueError):
        return str(error.reason or "")


class AlreadyExists(ClusterError):
    """An object of that name already exists (create answered 409)."""


class ObjectRejected(ClusterError):
    """The API server refused a write as invalid or forbidden; ``status`` is the HTTP status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ObjectApi:
    """Get, list, create, merge-patch and delete namespaced objects of any kind, as plain JSON.

    Bodies travel as the API server sends them (no client models in between), so fields the
    installed client does not know survive a read-modify-write. Deployments, Services and
    Gateway API HTTPRoutes have their :class:`Resource` here; other kinds come from
    :meth:`WorkloadApi.resource`.
    """

    DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment", namespaced=True)
    SERVICES = Resource("", "v1", "services", "Service", namespaced=True)
    HTTP_ROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", namespaced=True)

    _MERGE_PATCH = "application/merge-patch+json"

    def __init__(self, kube: KubeApi) -> None:
        self.kube = kube

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when there is none of that name."""
        try:
            return await self._request("GET", _object_path(resource, namespace, name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise ClusterError(f"reading {resource.kind} {namespace}/{name}: {_describe(error)}") from error

    async def list_objects(
        self, resource: Resource, namespace: str, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """The objects in ``namespace`` carrying all of ``labels`` (every object without)."""
        query = []
        if labels:
            query.append(("labelSelector", ",".join(f"{key}={value}" for key, value in labels.items())))
        try:
            listing = await self._request("GET", _object_path(resource, namespace), query=query)
        except ApiException as error:
            if error.status == 404:
                raise _not_served(resource, error) from error
            raise ClusterError(f"listing {resource.plural} in {namespace}: {_describe(error)}") from error
        items = listing.get("items") or []
        for item in items:  # list items come without their type
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
        return list(items)

    async def create(self, resource: Resource, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create the object and return it as stored; :class:`AlreadyExists` when the name is taken."""
        name = body.get("metadata", {}).get("name")
        try:
            return await self._request("POST", _object_path(resource, namespace), body=dict(body))
        except ApiException as error:
            if error.status == 409:
                raise AlreadyExists(f"{resource.kind} {namespace}/{name} already exists") from error
            if error.status == 404:  # the collection itself is missing: no such resource type
                raise _not_served(resource, error) from error
            raise _write_error(error, f"creating {resource.kind} {namespace}/{name}") from error

    async def patch(
        self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Apply a JSON merge patch (RFC 7386) and return the object as stored.

        A ``metadata.resourceVersion`` in the patch makes it conditional: :class:`Conflict` when
        the object changed since that version was read.
        """
        try:
            path = _object_path(resource, namespace, name)
            return await self._request("PATCH", path, body=dict(patch), content_type=self._MERGE_PATCH)
        except ApiException as error:
            if error.status == 409:
                raise Conflict(f"{resource.kind} {namespace}/{name} changed since it was read") from error
            raise _write_error(error, f"patching {resource.kind} {namespace}/{name}") from error

    async def json_patch(
        self, resource: Resource, namespace: str, name: str, operations: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Apply a JSON patch (RFC 6902); :class:`Conflict` when one of its ``test`` operations
        fails (the field changed since it was read). No operations: the object as it is."""
        path = _object_path(resource, namespace, name)
        if not operations:
            return await self._request("GET", path)
        try:
            return await self._call_json_patch(path, operations)
        except ApiException as error:
            if error.status == 409 or _failed_test(error):
                raise Conflict(f"{resource.kind} {namespace}/{name} changed since it was read") from error
            raise _write_error(error, f"patching {resource.kind} {namespace}/{name}") from error

    async def _call_json_patch(self, path: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.kube._call(
            self._request_sync, "PATCH", path, None, operations, "application/json-patch+json"
        )

    async def delete(self, resource: Resource, namespace: str, name: str) -> bool:
        """Delete the object (its dependents in the background); False when it was already gone."""
        try:
            await self._request(
                "DELETE", _object_path(resource, namespace, name), query=[("propagationPolicy", "Background")]
            )
        except ApiException as error:
            if error.status == 404:
                return False
            raise ClusterError(f"deleting {resource.kind} {namespace}/{name}: {_describe(error)}") from error
        return True

    # Deployments, Services and HTTPRoutes --------------------------------------------------------

    async def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """An apps/v1 Deployment, or None."""
        return await self.get(self.DEPLOYMENTS, namespace, name)

    async def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A v1 Service, or None."""
        return await self.get(self.SERVICES, namespace, name)

    async def http_route(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A gateway.networking.k8s.io/v1 HTTPRoute, or None (also when the CRD is not installed)."""
        return await self.get(self.HTTP_ROUTES, namespace, name)

    # Transport -----------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        return await self.kube._call(self._request_sync, method, path, query, body, content_type)

    def _request_sync(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: dict[str, Any] | list[dict[str, Any]] | None,
        content_type: str | None,
    ) -> dict[str, Any]:
        api = self.kube._api
        if method in ("POST", "PATCH", "PUT"):
            # One field manager for every write, so managedFields say which fields are Evergreen's.
            query = [*(query or []), ("fieldManager", FIELD_MANAGER)]
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        serialized = api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = api.call_api(*serialized)
        response.read()
        # "object" keeps the JSON as plain dicts; non-2xx answers raise ApiException.
        data = api.response_deserialize(response, {"2XX": "object"}).data
        return data if isinstance(data, dict) else {}


def _object_path(resource: Resource, namespace: str, name: str | None = None) -> str:
    root = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
    path = f"{root}/namespaces/{namespace}/{resource.plural}"
    return f"{path}/{name}" if name is not None else path


def _failed_test(error: ApiException) -> bool:
    """A JSON patch that could not be applied, which for Evergreen's patches means that one of
    its ``test`` operations failed: the object changed since it was read. The API server says
    only "the server rejected our request due to an error in our request" (422) with no field
    causes; an object that fails validation gets a 422 that names its fields."""
    if error.status != 422:
        return False
    try:
        details = json.loads(error.body or "{}").get("details") or {}
    except (TypeError, ValueError):
        return False
    return not details.get("causes")


def _describe(error: ApiException) -> str:
    detail = _status_message(error)
    return f"HTTP {error.status} {detail}".rstrip()


def _not_served(resource: Resource, error: ApiException) -> ResourceNotServed:
    return ResourceNotServed(
        f"the cluster does not serve {resource.plural}.{resource.api_version} ({_describe(error)})"
    )


def _write_error(error: ApiException, doing: str) -> ClusterError:
    if error.status in (400, 403, 422):
        return ObjectRejected(f"{doing}: {_describe(error)}", status=error.status)
    return ClusterError(f"{doing}: {_describe(error)}")
