"""A Kubernetes API emulator faithful enough to run a kopf operator end to end.

:class:`KubeEmulator` extends kmock 0.8's ``KubernetesEmulator`` (and reaches into its private
internals, hence the pinned version) with the server-side behaviour a kopf operator relies on:

- server-owned metadata: ``uid``, ``resourceVersion`` (one global counter), ``generation``,
  ``creationTimestamp``, the namespace from the URL, ``generateName``;
- optimistic concurrency: a write carrying a stale ``resourceVersion`` answers 409; a JSON
  patch whose ``test`` op fails answers 422 (as a real API server does, and as kopf expects
  when it removes finalizers); no-op writes change nothing, not even ``resourceVersion``;
- ``generation`` bumps when anything outside ``metadata``/``status`` changes (and when
  deletion starts, as for custom resources);
- watches from a ``resourceVersion`` (no replays), ``sendInitialEvents`` with the closing
  bookmark, 410 Expired for versions older than the retained change log, ``timeoutSeconds``;
- label selectors (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``) and field
  selectors (``=``, ``==``, ``!=`` on any dotted path) for list, watch and deletecollection,
  with objects entering or leaving a selection streamed as ADDED/DELETED;
- create (201), get, list (with ``limit``/``continue``), replace (PUT), patch, delete,
  deletecollection, with ``Status`` bodies for errors (404 NotFound, 409 AlreadyExists,
  409 Conflict, 422 Invalid, 415 for unknown patch types);
- the ``status`` subresource: writes to it change only ``.status``; writes to the main object
  ignore ``.status``;
- finalizers: deletion sets ``deletionTimestamp`` and waits until the finalizers are gone;
- garbage collection by ``ownerReferences`` (synchronous, cascading; ``Orphan`` honoured);
  deleting a namespace deletes what is in it;
- CustomResourceDefinitions: creating one declares its resources (discovery included),
  deleting one removes them with all their objects;
- bounded request, history and change logs, so long tests do not slow down.

Known gaps (a real cluster still differs): no schema validation, defaulting, RBAC, admission
or controllers (Jobs never run, Deployments get no pods); strategic merge patch is a plain
merge patch (lists are replaced, ``$patch`` directives are not understood); server-side apply
is a merge patch that creates missing objects (no field ownership, no conflicts); foreground
deletion behaves as background; a namespace is deleted at once, after its objects were asked
to go; only the ``status`` subresource is served (not ``scale``, ``log``, ``exec``,
``eviction``, ``finalize``); objects may live in namespaces that do not exist; paginated lists
are not a consistent snapshot; no periodic watch bookmarks; bodies must be JSON (or YAML for
apply): kubectl's protobuf writes of built-in kinds get 415, and there is no OpenAPI document
(``kubectl apply`` needs ``--validate=false``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import copy
import dataclasses
import datetime
import functools
import json
import math
import random
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import apps, parsing, rendering

from evergreen.errors import ClusterError

Object = dict[str, Any]
StoreKey = tuple[kmock.resource, str | None, str]

CRDS: Final = kmock.resource(group="apiextensions.k8s.io", version="v1", plural="customresourcedefinitions")
NAMESPACES: Final = kmock.resource(group="", version="v1", plural="namespaces")

MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"

# Metadata the server owns: clients cannot change it with PUT or PATCH.
_SERVER_METADATA: Final = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_CRUD_VERBS: Final = frozenset(
    {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
)
_NAME_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"  # as the API server's generateName
_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})  # Go's strconv.ParseBool


class ApiRejection(ClusterError):
    """The emulated API server refuses a request; it is answered as a ``Status`` body."""

    def __init__(
        self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    def status(self) -> Object:
        """The ``Status`` object a real API server sends for this refusal."""
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def _bad_request(message: str) -> ApiRejection:
    return ApiRejection(400, "BadRequest", message)


def _invalid(message: str) -> ApiRejection:
    return ApiRejection(422, "Invalid", message)


# --- selectors -------------------------------------------------------------------------------

_KEY: Final = r"[^\s!=(),]+"
_SET_REQUIREMENT: Final = re.compile(rf"^(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQUALITY_REQUIREMENT: Final = re.compile(rf"^(?P<key>{_KEY})\s*(?P<op>==|!=|=)\s*(?P<value>[^\s!=(),]*)$")
_ABSENCE_REQUIREMENT: Final = re.compile(rf"^!\s*(?P<key>{_KEY})$")
_PRESENCE_REQUIREMENT: Final = re.compile(rf"^(?P<key>{_KEY})$")


@dataclasses.dataclass(frozen=True)
class LabelRequirement:
    """One comma-separated term of a label selector."""

    key: str
    operator: str  # 'in', 'notin', 'exists', '!exists'
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether labels satisfy this term (``!=`` and ``notin`` accept a missing key)."""
        value = labels.get(self.key)
        if self.operator == "exists":
            return value is not None
        if self.operator == "!exists":
            return value is None
        if self.operator == "in":
            return value in self.values
        return value not in self.values


@dataclasses.dataclass(frozen=True)
class FieldRequirement:
    """One term of a field selector: a dotted path compared with a value."""

    path: tuple[str, ...]
    equal: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether the object's field (empty when missing) equals, or differs from, the value."""
        node: Any = obj
        for step in self.path:
            node = node.get(step) if isinstance(node, Mapping) else None
        text = "" if node is None else ("true" if node else "false") if isinstance(node, bool) else str(node)
        return (text == self.value) == self.equal


@dataclasses.dataclass(frozen=True)
class Selection:
    """The label and field selectors of a list, watch or deletecollection request."""

    labels: tuple[LabelRequirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Selection:
        """Parse ``labelSelector`` and ``fieldSelector``; 400 BadRequest when malformed."""
        return cls(
            labels=tuple(_label_requirement(term) for term in _terms(params.get("labelSelector", ""))),
            fields=tuple(_field_requirement(term) for term in _terms(params.get("fieldSelector", ""))),
        )

    def __bool__(self) -> bool:
        return bool(self.labels or self.fields)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether the object satisfies every term."""
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(term.matches(labels) for term in self.labels) and all(
            term.matches(obj) for term in self.fields
        )


def _terms(selector: str) -> Iterator[str]:
    """Split at the commas that are not inside ``in (a,b)`` value sets."""
    depth, start = 0, 0
    for index, char in enumerate(selector):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            yield selector[start:index].strip()
            start = index + 1
    if selector[start:].strip():
        yield selector[start:].strip()


def _label_requirement(term: str) -> LabelRequirement:
    if match := _SET_REQUIREMENT.match(term):
        values = frozenset(value.strip() for value in match["values"].split(","))
        return LabelRequirement(match["key"], match["op"], values)
    if match := _EQUALITY_REQUIREMENT.match(term):
        operator = "notin" if match["op"] == "!=" else "in"
        return LabelRequirement(match["key"], operator, frozenset({match["value"]}))
    if match := _ABSENCE_REQUIREMENT.match(term):
        return LabelRequirement(match["key"], "!exists")
    if match := _PRESENCE_REQUIREMENT.match(term):
        return LabelRequirement(match["key"], "exists")
    raise _bad_request(f"unable to parse requirement: {term!r}")


def _field_requirement(term: str) -> FieldRequirement:
    if match := _EQUALITY_REQUIREMENT.match(term):
        return FieldRequirement(tuple(match["key"].split(".")), match["op"] != "!=", match["value"])
    raise _bad_request(f"invalid field selector: {term!r}")


# --- patches ---------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch (``null`` deletes a key; lists are replaced)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_json_patch(document: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch to a copy of the document; 422 when an op fails."""
    if not isinstance(operations, list):
        raise _bad_request("a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, Mapping):
            raise _invalid(f"invalid JSON patch operation: {operation!r}")
        op = operation.get("op")
        path = _pointer(operation.get("path"))
        if op == "add":
            result = _add(result, path, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            result, _ = _remove(result, path)
        elif op == "replace":
            if path:  # replacing the root replaces the whole document
                result, _ = _remove(result, path)
            result = _add(result, path, copy.deepcopy(operation.get("value")))
        elif op == "move":
            result, value = _remove(result, _pointer(operation.get("from")))
            result = _add(result, path, value)
        elif op == "copy":
            value = copy.deepcopy(_resolve(result, _pointer(operation.get("from"))))
            result = _add(result, path, value)
        elif op == "test":
            if _resolve(result, path) != operation.get("value"):
                raise _invalid(f"testing value {operation.get('path')} failed: test failed")
        else:
            raise _invalid(f"unexpected JSON patch operation: {op!r}")
    return result


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise _invalid(f"invalid JSON pointer: {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path.split("/")[1:]]


def _index(token: str, size: int) -> int:
    if not token.isdigit() or int(token) >= size:
        raise _invalid(f"index out of range or invalid: {token!r}")
    return int(token)


def _resolve(document: Any, path: Sequence[str]) -> Any:
    node = document
    for token in path:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(token, len(node))]
        else:
            raise _invalid(f"doc is missing path: /{'/'.join(path)}")
    return node


def _add(document: Any, path: Sequence[str], value: Any) -> Any:
    if not path:
        return value
    parent, last = _resolve(document, path[:-1]), path[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else _index(last, len(parent) + 1), value)
    else:
        raise _invalid(f"doc is missing path: /{'/'.join(path)}")
    return document


def _remove(document: Any, path: Sequence[str]) -> tuple[Any, Any]:
    if not path:
        raise _invalid("cannot remove the whole document")
    parent, last = _resolve(document, path[:-1]), path[-1]
    if isinstance(parent, dict) and last in parent:
        return document, parent.pop(last)
    if isinstance(parent, list):
        return document, parent.pop(_index(last, len(parent)))
    raise _invalid(f"doc is missing path: /{'/'.join(path)}")


# --- requests --------------------------------------------------------------------------------


def _parse_path(path: str) -> parsing.ParsedPath:
    """Parse a URL path like kmock does, but also address namespaces (which kmock cannot)."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and (
        len(parts) <= 4 or (len(parts) == 5 and parts[4] in {"status", "finalize"})
    ):
        return parsing.ParsedPath(
            group="",
            version="v1",
            plural="namespaces",
            name=parts[3] if len(parts) > 3 else None,
            subresource=parts[4] if len(parts) > 4 else None,
        )
    try:
        return parsing.parse_path(path)
    except ValueError:  # e.g. '/apis/group/version/namespaces'; served as an unknown endpoint
        return parsing.ParsedPath()


async def _parse_request(raw_request: aiohttp.web.BaseRequest, request_id: int) -> rendering.Request:
    body = await raw_request.read()
    text = body.decode("utf-8", errors="replace")
    data: Any = None
    if body:
        try:
            data = json.loads(body)
        except ValueError:
            if raw_request.content_type == APPLY_PATCH:
                try:
                    data = yaml.safe_load(text)
                except yaml.YAMLError:
                    data = None
    path = _parse_path(raw_request.path)
    resource = None if path.group is None else _resource(path.group, path.version, path.plural)
    params = dict(raw_request.query)
    return rendering.Request(
        id=request_id,
        raw_request=raw_request,
        url=raw_request.url,
        method=raw_request.method,
        params=params,
        headers=dict(raw_request.headers),
        cookies=dict(raw_request.cookies),
        body=body,
        text=text,
        data=data,
        resource=resource,
        action=parsing.guess_k8s(path, kmock.method(raw_request.method), _watch_aware(params)),
        namespace=path.namespace,
        name=path.name,
        subresource=path.subresource,
    )


@functools.cache
def _resource(group: str, version: str | None, plural: str | None) -> kmock.resource:
    # Building a resource is slow (runtime protocol checks); they are immutable, so reuse them.
    return kmock.resource(group=group, version=version, plural=plural)


def _watch_aware(params: Mapping[str, str]) -> dict[str, str]:
    # kmock recognises only 'watch=true'; clients also send 'True' or '1'.
    result = dict(params)
    if result.get("watch") in _TRUE:
        result["watch"] = "true"
    return result


def _content_type(request: rendering.Request) -> str:
    for header, value in request.headers.items():
        if header.lower() == "content-type":
            return value.split(";")[0].strip().lower()
    return ""


def _timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _payload(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What ``generation`` tracks: everything but the metadata and the status."""
    return {key: value for key, value in obj.items() if key not in {"metadata", "status"}}


def _as_object(body: Any) -> Object:
    if not isinstance(body, Mapping) or not isinstance(body.get("metadata", {}), Mapping):
        raise _bad_request("the body of the request must be a JSON object with object metadata")
    obj = copy.deepcopy(dict(body))
    obj["metadata"] = dict(obj.get("metadata") or {})
    return obj


def _check_owner_references(metadata: Mapping[str, Any]) -> None:
    for reference in metadata.get("ownerReferences") or []:
        if not isinstance(reference, Mapping):
            raise _invalid("metadata.ownerReferences: Invalid value: must be objects")
        for field in ("apiVersion", "kind", "name", "uid"):
            if not reference.get(field):
                raise _invalid(
                    f'metadata.ownerReferences.{field}: Invalid value: "": {field} must not be empty'
                )


@dataclasses.dataclass(frozen=True)
class _Target:
    """What a request addresses: a resource, maybe a namespace, an object, a subresource."""

    resource: kmock.resource
    info: kmock.ResourceInfo
    namespace: str | None
    name: str | None = None
    subresource: str | None = None

    @property
    def key(self) -> StoreKey:
        assert self.name is not None  # only for requests that name an object
        return self.resource, self.namespace, self.name

    @property
    def api_version(self) -> str:
        group, version = self.resource.group, self.resource.version
        return f"{group}/{version}" if group else str(version)

    @property
    def kind(self) -> str:
        return self.info.kind or str(self.resource.plural).capitalize()

    @property
    def has_status(self) -> bool:
        return "status" in self.info.subresources

    def describe(self, name: str | None = None) -> str:
        """The resource as the API server names it in messages: 'jobs.batch "name"'."""
        group, plural = self.resource.group, self.resource.plural
        return f'{plural}.{group} "{name or self.name}"' if group else f'{plural} "{name or self.name}"'

    def details(self, name: str | None = None) -> dict[str, Any]:
        return {"name": name or self.name, "group": self.resource.group, "kind": self.resource.plural}


@dataclasses.dataclass(frozen=True)
class _Change:
    """One write, as a watch stream shows it."""

    revision: int
    kind: str  # ADDED, MODIFIED, DELETED
    key: StoreKey
    obj: Object
    old: Object | None = None


@dataclasses.dataclass(frozen=True)
class _WatchScope:
    target: _Target
    selection: Selection

    def event(self, change: _Change) -> Object | None:
        """The event a watcher of this scope sees for a change, if any."""
        resource, namespace, name = change.key
        if resource != self.target.resource:
            return None
        if self.target.namespace is not None and namespace != self.target.namespace:
            return None
        if self.target.name is not None and name != self.target.name:
            return None
        if not self.selection:
            return {"type": change.kind, "object": change.obj}
        now_in = self.selection.matches(change.obj)
        if change.kind != "MODIFIED":
            return {"type": change.kind, "object": change.obj} if now_in else None
        was_in = change.old is not None and self.selection.matches(change.old)
        kind = "MODIFIED" if now_in and was_in else "ADDED" if now_in else "DELETED" if was_in else None
        return None if kind is None else {"type": kind, "object": change.obj}


# --- the emulator ----------------------------------------------------------------------------


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with the server-side semantics a kopf operator needs.

    Objects are stored in kmock's ``objects`` array (the last ``history_size`` versions of
    each), so tests can assert on them; user reactions (``emulator['get /x'] << 500``) still
    take precedence over the emulated behaviour. All state changes must happen on the event
    loop that serves the emulator.
    """

    request_log_size: int = 200
    history_size: int = 5
    change_log_size: int = 10_000

    _revision: int = attrs.field(default=0, init=False)
    _changes: list[_Change] = attrs.field(factory=list, init=False)
    _changes_offset: int = attrs.field(default=0, init=False)
    _expired_revision: int = attrs.field(default=0, init=False)
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _uids: dict[str, StoreKey] = attrs.field(factory=dict, init=False)
    _orphaning: set[str] = attrs.field(factory=set, init=False)
    _served: int = attrs.field(default=0, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _reactions_seen: tuple[int, ...] = attrs.field(default=(), init=False)
    _user_reactions: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        # Keep the scaffold's discovery endpoints, but not the stock emulator's object handlers.
        kmock.KubernetesScaffold.__attrs_post_init__(self)
        self.fallback[self._addresses_objects] << self._serve_objects

    # -- public API ---------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The latest ``resourceVersion`` handed out."""
        return self._revision

    @property
    def requests_served(self) -> int:
        """How many requests arrived since the start (the request log keeps only the latest)."""
        return self._served

    def close(self) -> None:
        """End all watch streams, e.g. before the HTTP server shuts down."""
        self._closed = True
        self._notify()

    def declare_custom_resource(
        self,
        group: str,
        version: str,
        plural: str,
        kind: str,
        *,
        namespaced: bool = True,
        status_subresource: bool = True,
        short_names: Iterable[str] = (),
        categories: Iterable[str] = (),
    ) -> Object:
        """Create a CustomResourceDefinition (which declares the resource) and return it."""
        manifest = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced" if namespaced else "Cluster",
                "names": {
                    "plural": plural,
                    "singular": kind.lower(),
                    "kind": kind,
                    "listKind": f"{kind}List",
                    "shortNames": list(short_names),
                    "categories": list(categories),
                },
                "versions": [
                    {
                        "name": version,
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                        "subresources": {"status": {}} if status_subresource else {},
                    }
                ],
            },
        }
        if CRDS not in self._resources:  # an API server always serves CRDs
            self._resources[CRDS] = kmock.ResourceInfo(
                kind="CustomResourceDefinition",
                singular="customresourcedefinition",
                namespaced=False,
                verbs=_CRUD_VERBS,
                shortnames={"crd", "crds"},
                subresources={"status"},
            )
        return self.create_object("apiextensions.k8s.io/v1", "customresourcedefinitions", manifest)

    def create_object(
        self, api_version: str, plural: str, body: Mapping[str, Any], *, namespace: str | None = None
    ) -> Object:
        """Create an object as a POST to the API would (same checks and metadata); return it."""
        group, _, version = api_version.rpartition("/")
        resource = _resource(group, version, plural)
        info = self._resources._resources.get(resource)
        if info is None:
            raise ApiRejection(404, "NotFound", f"the resource {api_version}/{plural} is not served")
        return self._create_object(_Target(resource, info, namespace if info.namespaced else None), body)

    # -- HTTP plumbing ------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # As RawHandler.__call__, but with a bounded request log (kmock matches every request
        # against the whole log) and a parser that also understands namespace URLs.
        self._served += 1
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            if self.limit is not None and self._served > self.limit:
                raise apps.KMockError("Too many requests have been served so far.")
            request = await _parse_request(raw_request, self._served)
            self._requests.append(request)
            self._trim_logs()
            try:
                return await self._handle(request)
            except rendering.StreamingError as e:
                raw_response = e.args[0]
                raise e.__cause__ or e from None
        except Exception as e:
            if not self._errors:
                raise
            self._errors[-1].append(e)
            del self._errors[-1][: -self.request_log_size]
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(e)
            await self._stream_error(e, raw_response)
            await raw_response.write_eof()
            return raw_response

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # Without user reactions, skip kmock's matching of the request log (a hot path).
        if self._addresses_objects(request) and not self._has_user_reactions():
            response = await self._serve_objects(request)
            return await response(request)
        return await apps.RawHandler._handle(self, request)

    def _has_user_reactions(self) -> bool:
        reactions = tuple(map(id, self._payloads))  # '<<' replaces reactions, never mutates them
        if reactions != self._reactions_seen:
            self._reactions_seen = reactions
            self._user_reactions = any(
                not reaction.priorities or reaction.priorities[0] != -math.inf for reaction in self._payloads
            )
        return self._user_reactions

    def _trim_logs(self) -> None:
        size = self.request_log_size
        del self._requests[:-size]
        for reaction in self._payloads:
            del reaction._requests[:-size]

    @staticmethod
    def _addresses_objects(request: rendering.Request) -> bool:
        return request.resource is not None and request.resource.plural is not None

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        # kmock names the core group version "/v1" (kubectl then finds no core resources) and
        # lists subresources as copies of their resource, short names included (ambiguous).
        listing = await super()._serve_version(request)
        assert isinstance(listing, dict)  # an APIResourceList
        listing["groupVersion"] = listing["groupVersion"].removeprefix("/")
        for entry in listing["resources"]:
            if "/" in entry["name"]:
                entry.update(shortNames=[], categories=[], verbs=["get", "patch", "update"])
        return listing

    def _get_resources(self) -> list[kmock.resource]:
        # Only declared resources are discoverable (the stock emulator adds those of objects).
        return list(kmock.KubernetesScaffold._get_resources(self))

    async def _serve_objects(self, request: rendering.Request) -> rendering.Response:
        try:
            return self._dispatch(request)
        except ApiRejection as rejection:
            return rendering.Response(status=rejection.code, payload=rejection.status())

    def _dispatch(self, request: rendering.Request) -> rendering.Response:
        target = self._target(request)
        method = str(request.method.value).upper()
        if method == "GET" and request.params.get("watch") in _TRUE:
            return self._watch_objects(target, request.params)
        if method == "GET":
            if target.name is None:
                return rendering.Response(status=200, payload=self._list_objects(target, request.params))
            return rendering.Response(status=200, payload=self._read_object(target))
        if method == "POST" and target.name is None:
            return rendering.Response(status=201, payload=self._create_object(target, self._body(request)))
        if method == "PUT" and target.name is not None:
            return rendering.Response(status=200, payload=self._replace_object(target, self._body(request)))
        if method == "PATCH" and target.name is not None:
            return self._patch_object(target, request)
        if method == "DELETE":
            options = self._body(request) if request.body else {}
            if not isinstance(options, Mapping):
                raise _bad_request("DeleteOptions must be an object")
            options = _delete_options(options, request.params)
            if target.name is None:
                return rendering.Response(
                    status=200, payload=self._delete_collection(target, request.params, options)
                )
            return rendering.Response(status=200, payload=self._delete_object(target, options))
        raise ApiRejection(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    def _target(self, request: rendering.Request) -> _Target:
        resource = request.resource
        assert resource is not None  # guaranteed by _addresses_objects()
        info = self._resources._resources.get(resource)  # the public lookup is slow
        if info is None:
            raise ApiRejection(404, "NotFound", "the server could not find the requested resource")
        namespaced = bool(info.namespaced)
        unaddressable = (
            request.namespace is not None
            if not namespaced
            else request.namespace is None and request.name is not None
        )
        if unaddressable or (request.subresource is not None and request.name is None):
            raise ApiRejection(404, "NotFound", "the server could not find the requested resource")
        if request.subresource not in {None, "status"} or (
            request.subresource == "status" and "status" not in info.subresources
        ):
            known = request.subresource in info.subresources
            raise ApiRejection(
                405 if known else 404,
                "MethodNotAllowed" if known else "NotFound",
                f"the subresource {request.subresource!r} is not {'emulated' if known else 'known'}",
            )
        return _Target(
            resource, info, request.namespace if namespaced else None, request.name, request.subresource
        )

    @staticmethod
    def _body(request: rendering.Request) -> Any:
        if request.body and request.data is None:
            if "protobuf" in _content_type(request) or "cbor" in _content_type(request):
                raise ApiRejection(415, "UnsupportedMediaType", "only JSON and YAML bodies are emulated")
            raise _bad_request("the body of the request is neither JSON nor YAML")
        return request.data

    # -- reading ------------------------------------------------------------------------------

    def _stored(self, key: StoreKey) -> Object | None:
        if key not in self._objects:
            return None
        entry = self._objects[key]
        return None if entry.deleted else entry.last.raw

    def _require(self, target: _Target) -> Object:
        current = self._stored(target.key)
        if current is None:
            raise ApiRejection(404, "NotFound", f"{target.describe()} not found", target.details())
        return current

    def _select(self, target: _Target, selection: Selection) -> list[Object]:
        found: list[tuple[tuple[str, str], Object]] = []
        for (resource, namespace, name), entry in self._objects.items():
            if resource != target.resource or entry.deleted:
                continue
            if target.namespace is not None and namespace != target.namespace:
                continue
            if target.name is not None and name != target.name:
                continue
            obj = entry.last.raw
            if not selection or selection.matches(obj):
                found.append(((namespace or "", name), obj))
        # The storage order of a real server: by namespace, then by name.
        return [obj for _, obj in sorted(found, key=lambda pair: pair[0])]

    def _read_object(self, target: _Target) -> Object:
        return self._require(target)

    def _list_objects(self, target: _Target, params: Mapping[str, str]) -> Object:
        items = self._select(target, Selection.from_params(params))
        metadata: dict[str, Any] = {"resourceVersion": str(self._revision)}
        if token := params.get("continue"):
            try:
                after = tuple(json.loads(base64.urlsafe_b64decode(token)))
            except (ValueError, TypeError, binascii.Error) as e:
                raise _bad_request(f"invalid continue token: {token!r}") from e
            items = [obj for obj in items if _sort_key(obj) > after]
        limit = _integer(params, "limit")
        if limit and len(items) > limit:
            last = json.dumps(list(_sort_key(items[limit - 1]))).encode()
            metadata["continue"] = base64.urlsafe_b64encode(last).decode()
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {
            "apiVersion": target.api_version,
            "kind": f"{target.kind}List",
            "metadata": metadata,
            "items": items,
        }

    def _watch_objects(self, target: _Target, params: Mapping[str, str]) -> rendering.Response:
        # Decide where the stream starts now, before any other write can slip in.
        scope = _WatchScope(target, Selection.from_params(params))
        since = params.get("resourceVersion") or ""
        initial = params.get("sendInitialEvents") in _TRUE
        events: list[Object] = []
        position: int | None = self._changes_offset + len(self._changes)
        if since in {"", "0"} or initial:
            events = [{"type": "ADDED", "object": obj} for obj in self._select(target, scope.selection)]
            if initial:
                events.append(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "apiVersion": target.api_version,
                            "kind": target.kind,
                            "metadata": {
                                "resourceVersion": str(self._revision),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        },
                    }
                )
        elif not since.isdigit():
            raise _bad_request(f"invalid resource version: {since!r}")
        elif int(since) < self._expired_revision:
            events, position = [self._expired(int(since))], None
        else:
            index = bisect.bisect_right(self._changes, int(since), key=lambda c: c.revision)
            position = self._changes_offset + index
        timeout = _number(params, "timeoutSeconds")
        stream = self._stream(scope, events, position, timeout or None)
        return rendering.Response(status=200, headers={"Content-Type": "application/json"}, payload=stream)

    async def _stream(
        self, scope: _WatchScope, events: list[Object], position: int | None, timeout: float | None
    ) -> AsyncIterator[bytes | Object]:
        yield b""  # send the headers now: clients wait for them before anything happens
        for event in events:
            yield event
        if position is None:
            return
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._closed:
            changed = self._changed  # taken before reading, so no write is missed
            index = position - self._changes_offset
            if index < 0:
                yield self._expired(self._changes[0].revision - 1 if self._changes else 0)
                return
            if index < len(self._changes):
                position += 1
                if (visible := scope.event(self._changes[index])) is not None:
                    yield visible
                continue
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return

    def _expired(self, since: int) -> Object:
        rejection = ApiRejection(
            410, "Expired", f"too old resource version: {since} ({self._expired_revision + 1})"
        )
        return {"type": "ERROR", "object": rejection.status()}

    # -- writing ------------------------------------------------------------------------------

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _record(self, kind: str, key: StoreKey, obj: Object, old: Object | None) -> None:
        revision = int(obj["metadata"]["resourceVersion"])
        self._changes.append(_Change(revision, kind, key, obj, old))
        if len(self._changes) > self.change_log_size:
            dropped = len(self._changes) // 2
            self._expired_revision = self._changes[dropped - 1].revision
            del self._changes[:dropped]
            self._changes_offset += dropped
        self._notify()

    def _write(self, key: StoreKey, obj: Object, old: Object | None) -> Object:
        obj["metadata"]["resourceVersion"] = self._next_revision()
        if key in self._objects:
            history = self._objects[key].history
            history.append(obj)
            del history[: -self.history_size]
        else:
            self._objects[key] = obj
        self._uids[obj["metadata"]["uid"]] = key
        self._record("ADDED" if old is None else "MODIFIED", key, obj, old)
        return obj

    def _check_type(self, target: _Target, obj: Object) -> None:
        for field, expected in (("apiVersion", target.api_version), ("kind", target.kind)):
            given = obj.setdefault(field, expected)
            if given != expected:
                raise _bad_request(
                    f"the {field} in the data ({given}) does not match the expected {field} ({expected})"
                )

    def _create_object(self, target: _Target, body: Any) -> Object:
        obj = _as_object(body)
        self._check_type(target, obj)
        metadata = obj["metadata"]
        if bool(target.info.namespaced):
            if target.namespace is None:
                raise ApiRejection(404, "NotFound", "the server could not find the requested resource")
            if metadata.get("namespace") not in (None, "", target.namespace):
                raise _bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            metadata["namespace"] = target.namespace
        else:
            metadata.pop("namespace", None)
        if metadata.get("resourceVersion"):
            raise _bad_request("resourceVersion should not be set on objects to be created")
        if not metadata.get("name"):
            metadata["name"] = self._generate_name(target, metadata.get("generateName"))
        target = dataclasses.replace(target, name=metadata["name"], subresource=None)
        if self._stored(target.key) is not None:
            raise ApiRejection(409, "AlreadyExists", f"{target.describe()} already exists", target.details())
        _check_owner_references(metadata)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            metadata.pop(field, None)
        metadata.update(uid=str(uuid.uuid4()), creationTimestamp=_timestamp(), generation=1)
        if target.has_status:  # status is written through its subresource only
            obj.pop("status", None)
        if target.resource == CRDS:
            self._declare(obj)
        return self._write(target.key, obj, None)

    def _generate_name(self, target: _Target, prefix: Any) -> str:
        if not prefix:
            raise _invalid("metadata.name: Required value: name or generateName is required")
        for _ in range(10):  # the API server also retries on collisions
            name = f"{prefix}{''.join(random.choices(_NAME_ALPHABET, k=5))}"
            if self._stored((target.resource, target.namespace, name)) is None:
                return name
        raise ApiRejection(409, "AlreadyExists", f"no free name for the prefix {prefix!r}")

    def _check_precondition(self, target: _Target, current: Object, version: Any) -> None:
        if version not in (None, "") and version != current["metadata"]["resourceVersion"]:
            raise ApiRejection(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {target.describe()}: the object has been "
                f"modified; please apply your changes to the latest version and try again",
                target.details(),
            )

    def _replace_object(self, target: _Target, body: Any) -> Object:
        current = self._require(target)
        proposed = _as_object(body)
        self._check_type(target, proposed)
        metadata = proposed["metadata"]
        if metadata.get("name") not in (None, target.name):
            raise _bad_request(
                f"the name of the object ({metadata.get('name')}) does not "
                f"match the name on the URL ({target.name})"
            )
        if target.namespace is not None and metadata.get("namespace") not in (None, "", target.namespace):
            raise _bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        self._check_precondition(target, current, metadata.get("resourceVersion"))
        return self._update(target, current, proposed)

    def _patch_object(self, target: _Target, request: rendering.Request) -> rendering.Response:
        content_type = _content_type(request)
        patch = self._body(request)
        missing = self._stored(target.key) is None
        if content_type == APPLY_PATCH and missing and target.subresource is None:
            document = _as_object(patch)
            document["metadata"].setdefault("name", target.name)
            if document["metadata"]["name"] != target.name:
                raise _bad_request("the name of the object does not match the name on the URL")
            return rendering.Response(status=201, payload=self._create_object(target, document))
        current = self._require(target)
        if content_type == JSON_PATCH:
            patched = apply_json_patch(current, patch)
        elif content_type in {MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH}:
            if not isinstance(patch, Mapping):
                raise _bad_request("a merge patch must be a JSON object")
            patched = merge_patch(current, patch)
        else:
            raise ApiRejection(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted "
                f"media types include: {JSON_PATCH}, {MERGE_PATCH}, "
                f"{APPLY_PATCH}, {STRATEGIC_MERGE_PATCH}",
            )
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise _invalid("the patched object is not a Kubernetes object")
        self._check_precondition(target, current, patched["metadata"].get("resourceVersion"))
        return rendering.Response(status=200, payload=self._update(target, current, patched))

    def _update(self, target: _Target, current: Object, proposed: Object) -> Object:
        """Write a proposed new state as the API server does, after the precondition check."""
        if target.subresource == "status":
            new = copy.deepcopy(current)
            new.pop("status", None)
            if proposed.get("status") is not None:
                new["status"] = copy.deepcopy(proposed["status"])
        else:
            new = copy.deepcopy(proposed)
            metadata, old_metadata = new["metadata"], current["metadata"]
            for field in _SERVER_METADATA:
                metadata.pop(field, None)
                if field in old_metadata:
                    metadata[field] = old_metadata[field]
            new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
            if target.has_status:
                new.pop("status", None)
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
            added = set(metadata.get("finalizers") or []) - set(old_metadata.get("finalizers") or [])
            if old_metadata.get("deletionTimestamp") and added:
                raise _invalid(
                    f"metadata.finalizers: Forbidden: no new finalizers can be added "
                    f"if the object is being deleted, found new finalizers {sorted(added)}"
                )
            _check_owner_references(metadata)
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if new == current:
            return current  # a no-op write is not stored and does not bump resourceVersion
        if _payload(new) != _payload(current):
            new["metadata"]["generation"] = int(current["metadata"].get("generation", 0)) + 1
        if target.resource == CRDS and target.subresource is None:
            self._declare(new, previous=current)
        written = self._write(target.key, new, current)
        if written["metadata"].get("deletionTimestamp") and not written["metadata"].get("finalizers"):
            return self._remove(target.key, written)
        return written

    def _delete_object(self, target: _Target, options: Mapping[str, Any]) -> Object:
        current = self._require(target)
        preconditions = options.get("preconditions") or {}
        for field in ("uid", "resourceVersion"):
            expected, actual = preconditions.get(field), current["metadata"].get(field)
            if expected not in (None, "") and expected != actual:
                raise ApiRejection(
                    409,
                    "Conflict",
                    f"Precondition failed: {field} in "
                    f"precondition: {expected}, {field} in object meta: {actual}",
                    target.details(),
                )
        orphan = options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents") is True
        return self._delete(target.key, current, orphan=orphan)

    def _delete(self, key: StoreKey, current: Object, *, orphan: bool = False) -> Object:
        metadata = current["metadata"]
        if not metadata.get("finalizers"):
            return self._remove(key, current, orphan=orphan)
        if orphan:
            self._orphaning.add(metadata["uid"])
        if metadata.get("deletionTimestamp"):
            return current
        new = copy.deepcopy(current)
        new["metadata"].update(
            deletionTimestamp=_timestamp(),
            deletionGracePeriodSeconds=0,
            generation=int(metadata.get("generation", 0)) + 1,
        )
        return self._write(key, new, current)

    def _remove(self, key: StoreKey, current: Object, *, orphan: bool = False) -> Object:
        """Make an object gone for good, then collect what depended on it."""
        uid = current["metadata"]["uid"]
        orphan = orphan or uid in self._orphaning
        self._orphaning.discard(uid)
        gone = dict(current, metadata=dict(current["metadata"]))
        gone["metadata"]["resourceVersion"] = self._next_revision()
        entry = self._objects[key]
        entry.delete()
        del entry.history[: -self.history_size]
        self._uids.pop(uid, None)
        self._record("DELETED", key, gone, None)
        if key[0] == CRDS:
            self._retract(gone)
        if key[0] == NAMESPACES:
            for inner_key, obj in self._live(lambda k, _: k[1] == key[2]):
                self._delete(inner_key, obj)
        self._collect_dependents(uid, orphan=orphan)
        return gone

    def _live(
        self, predicate: Callable[[StoreKey, Mapping[str, Any]], bool]
    ) -> list[tuple[StoreKey, Object]]:
        return [
            (key, entry.last.raw)
            for key, entry in list(self._objects.items())
            if not entry.deleted and predicate(key, entry.last)
        ]

    def _collect_dependents(self, owner_uid: str, *, orphan: bool) -> None:
        def owned(_: StoreKey, obj: Mapping[str, Any]) -> bool:
            references = obj["metadata"].get("ownerReferences") or []
            return any(reference.get("uid") == owner_uid for reference in references)

        for key, _ in self._live(owned):
            current = self._stored(key)
            if current is None:  # already collected through another owner in this cascade
                continue
            references = current["metadata"].get("ownerReferences") or []
            remaining = [reference for reference in references if reference.get("uid") != owner_uid]
            if orphan or any(reference.get("uid") in self._uids for reference in remaining):
                # Other owners keep it alive (or it is orphaned): drop the dangling reference.
                new = copy.deepcopy(current)
                new["metadata"]["ownerReferences"] = remaining
                if not remaining:
                    del new["metadata"]["ownerReferences"]
                self._write(key, new, current)
            else:
                self._delete(key, current)

    def _delete_collection(
        self, target: _Target, params: Mapping[str, str], options: Mapping[str, Any]
    ) -> Object:
        listing = self._list_objects(target, params)
        orphan = options.get("propagationPolicy") == "Orphan"
        deleted = []
        for obj in listing["items"]:
            key = (target.resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])
            if (current := self._stored(key)) is not None:
                deleted.append(self._delete(key, current, orphan=orphan))
        return dict(listing, items=deleted)

    # -- custom resource definitions ----------------------------------------------------------

    def _declare(self, crd: Object, previous: Object | None = None) -> None:
        """Serve the resources of a CRD (and mark it established, as its controller would)."""
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
        versions = [version for version in spec.get("versions") or [] if version.get("name")]
        if not (group and plural and kind and versions):
            raise _invalid("spec: Required value: group, names.plural, names.kind and versions")
        if crd["metadata"].get("name") != f"{plural}.{group}":
            raise _invalid(
                f'metadata.name: Invalid value: must be spec.names.plural+"."+spec.group: {plural}.{group}'
            )
        if previous is not None:
            self._retract(previous, keep_objects=True)
        for version in versions:
            if version.get("served", True):
                subresources = set(version.get("subresources") or {}) & {"status", "scale"}
                self._resources[_resource(group, version["name"], plural)] = kmock.ResourceInfo(
                    kind=kind,
                    singular=names.get("singular") or kind.lower(),
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                    verbs=_CRUD_VERBS,
                    shortnames=names.get("shortNames") or (),
                    categories=names.get("categories") or (),
                    subresources=subresources,
                )
        conditions = (previous or {}).get("status", {}).get("conditions") or [
            {
                "type": condition,
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": _timestamp(),
            }
            for condition, reason, message in (
                ("NamesAccepted", "NoConflicts", "no conflicts found"),
                ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            )
        ]
        crd["status"] = {
            "acceptedNames": names,
            "conditions": conditions,
            "storedVersions": [version["name"] for version in versions if version.get("storage")],
        }

    def _retract(self, crd: Object, *, keep_objects: bool = False) -> None:
        spec = crd.get("spec") or {}
        plural = (spec.get("names") or {}).get("plural")
        for version in spec.get("versions") or []:
            resource = _resource(spec.get("group", ""), version.get("name"), plural)
            if resource not in self._resources:
                continue
            del self._resources[resource]
            if not keep_objects:
                for key, obj in self._live(functools.partial(_is_of, resource)):
                    self._remove(key, obj)


def _is_of(resource: kmock.resource, key: StoreKey, _: Mapping[str, Any]) -> bool:
    return key[0] == resource


def _delete_options(body: Mapping[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
    """DeleteOptions come in the body or, as the official client sends them, in the query."""
    options = dict(body)
    if "propagationPolicy" in params:
        options["propagationPolicy"] = params["propagationPolicy"]
    if "orphanDependents" in params:
        options["orphanDependents"] = params["orphanDependents"] in _TRUE
    return options


def _sort_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj["metadata"]
    return metadata.get("namespace") or "", metadata["name"]


def _integer(params: Mapping[str, str], name: str) -> int:
    value = params.get(name) or "0"
    if not value.isdigit():
        raise _bad_request(f"invalid {name}: {value!r}")
    return int(value)


def _number(params: Mapping[str, str], name: str) -> float:
    value = params.get(name) or "0"
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not math.isfinite(number) or number < 0:
        raise _bad_request(f"invalid {name}: {value!r}")
    return number
