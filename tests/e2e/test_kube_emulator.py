"""The Kubernetes API emulator behaves like an API server wherever a kopf operator can tell.

Everything goes through real HTTP: the official ``kubernetes`` client for the API semantics,
and a throwaway kopf operator for the lifecycle the Evergreen operator relies on.
"""

from __future__ import annotations

import http.client
import json
import logging
import pathlib
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import kopf
import kubernetes.client
import kubernetes.config
import kubernetes.watch
import pytest
from kubernetes.client import (
    ApiException,
    CoreV1Api,
    CoreV1Event,
    CustomObjectsApi,
    V1ConfigMap,
    V1Namespace,
    V1ObjectMeta,
    V1ObjectReference,
    V1OwnerReference,
    V1Secret,
)

from tests.support.kube_server import KubeServer, OperatorThread, object_path, set_status

pytestmark = pytest.mark.e2e

GROUP, VERSION, PLURAL, KIND = "evergreen.dev", "v1alpha1", "modelmonitors", "ModelMonitor"
API_VERSION = f"{GROUP}/{VERSION}"
NAMESPACE = "ml"


@pytest.fixture
def server() -> Iterator[KubeServer]:
    with KubeServer() as server:
        server.declare_custom_resource(GROUP, VERSION, PLURAL, KIND, short_names=["mm"])
        yield server


@pytest.fixture
def api(server: KubeServer) -> Iterator[kubernetes.client.ApiClient]:
    with server.api_client() as api:
        yield api


@pytest.fixture
def core(api: kubernetes.client.ApiClient) -> CoreV1Api:
    return CoreV1Api(api)


@pytest.fixture
def custom(api: kubernetes.client.ApiClient) -> CustomObjectsApi:
    return CustomObjectsApi(api)


# --- helpers -----------------------------------------------------------------------------------


def as_dict(value: object) -> dict[str, Any]:
    """Custom-object calls return untyped JSON."""
    assert isinstance(value, dict)
    return value


def meta(obj: Any) -> V1ObjectMeta:
    metadata = obj.metadata
    assert isinstance(metadata, V1ObjectMeta)
    return metadata


def names(objs: Iterable[Any]) -> list[str]:
    return [str(meta(obj).name) for obj in objs]


def owned_by(api_version: str, kind: str, *owners: dict[str, Any]) -> list[V1OwnerReference]:
    return [
        V1OwnerReference(
            api_version=api_version, kind=kind, name=o["metadata"]["name"], uid=o["metadata"]["uid"]
        )
        for o in owners
    ]


def config_map(
    name: str,
    *,
    data: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    finalizers: list[str] | None = None,
    owners: Sequence[V1OwnerReference] = (),
) -> V1ConfigMap:
    metadata = V1ObjectMeta(name=name, labels=labels, finalizers=finalizers, owner_references=owners or None)
    return V1ConfigMap(metadata=metadata, data=data)


def monitor(name: str, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, **metadata},
        "spec": {"model": name, "interval": "5m"},
    }


def create_monitor(custom: CustomObjectsApi, name: str, **metadata: Any) -> dict[str, Any]:
    body = monitor(name, **metadata)
    return as_dict(custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body))


def get_monitor(custom: CustomObjectsApi, name: str) -> dict[str, Any]:
    return as_dict(custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name))


def patch_monitor(custom: CustomObjectsApi, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    return as_dict(custom.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name, patch))


def delete_monitor(custom: CustomObjectsApi, name: str, **options: Any) -> None:
    custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name, **options)


def is_missing(read: Callable[[], object]) -> bool:
    try:
        read()
    except ApiException as e:
        return bool(e.status == 404)
    return False


def error_body(error: ApiException) -> dict[str, Any]:
    return as_dict(json.loads(error.body or "{}"))


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not become true in time")
        time.sleep(0.01)


def watch_events(server: KubeServer, path: str, *, count: int = 0, **params: str) -> list[tuple[str, str]]:
    """Watch over plain HTTP: (type, name) of the first ``count`` events, or of all of them
    until the server-side timeout."""
    query = "&".join(f"{key}={value}" for key, value in {"timeoutSeconds": "1", **params}.items())
    events: list[tuple[str, str]] = []
    with urllib.request.urlopen(f"{server.url}{path}?{query}", timeout=5) as response:
        for line in response:
            if line.strip():
                event = json.loads(line)
                events.append((event["type"], event["object"]["metadata"].get("name", "")))
            if len(events) == count:
                break
    return events


# --- 1. server-side metadata on create ---------------------------------------------------------


def test_create_fills_server_side_metadata(custom: CustomObjectsApi) -> None:
    first = create_monitor(custom, "fraud")
    second = create_monitor(custom, "churn")
    metadata = first["metadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", metadata["uid"])
    assert metadata["generation"] == 1
    assert metadata["namespace"] == NAMESPACE  # from the URL: the body has none
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", metadata["creationTimestamp"])
    assert rv(second) > rv(first)
    assert second["metadata"]["uid"] != metadata["uid"]


def test_generate_name_lets_two_events_share_a_prefix(core: CoreV1Api) -> None:
    event = CoreV1Event(
        metadata=V1ObjectMeta(generate_name="kopf-event-"),
        involved_object=V1ObjectReference(name="fraud"),
        reason="Test",
        message="hello",
    )
    created = names([core.create_namespaced_event(NAMESPACE, event) for _ in range(2)])
    assert len(set(created)) == 2
    assert all(re.fullmatch(r"kopf-event-[a-z0-9]{5}", name) for name in created)


# --- 2. resourceVersion, optimistic concurrency, generation ------------------------------------


def test_every_write_bumps_resource_version_but_no_op_writes_do_not(custom: CustomObjectsApi) -> None:
    created = create_monitor(custom, "fraud")
    labelled = patch_monitor(custom, "fraud", {"metadata": {"labels": {"team": "risk"}}})
    unchanged = patch_monitor(custom, "fraud", {"metadata": {"labels": {"team": "risk"}}})
    assert rv(labelled) > rv(created)
    assert rv(unchanged) == rv(labelled)


def test_stale_writes_conflict_and_failed_json_patch_tests_are_unprocessable(core: CoreV1Api) -> None:
    stale = core.create_namespaced_config_map(NAMESPACE, config_map("cfg", data={"a": "1"}))
    fresh = core.patch_namespaced_config_map("cfg", NAMESPACE, {"data": {"a": "2"}})
    stale_version = meta(stale).resource_version

    def test_then_replace(version: str | None) -> list[dict[str, Any]]:
        # What kopf sends to remove its finalizer.
        return [
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "replace", "path": "/data/a", "value": "4"},
        ]

    with pytest.raises(ApiException) as put:
        core.replace_namespaced_config_map("cfg", NAMESPACE, stale)
    with pytest.raises(ApiException) as merge:
        stale_patch = {"metadata": {"resourceVersion": stale_version}, "data": {"a": "3"}}
        core.patch_namespaced_config_map("cfg", NAMESPACE, stale_patch)
    with pytest.raises(ApiException) as json_patch:
        core.patch_namespaced_config_map("cfg", NAMESPACE, test_then_replace(stale_version))

    assert (put.value.status, error_body(put.value)["reason"]) == (409, "Conflict")
    assert (merge.value.status, error_body(merge.value)["reason"]) == (409, "Conflict")
    # A real API server answers a failed JSON-patch `test` with 422, and kopf relies on it.
    assert json_patch.value.status == 422
    assert core.read_namespaced_config_map("cfg", NAMESPACE).data == {"a": "2"}

    patched = core.patch_namespaced_config_map(
        "cfg", NAMESPACE, test_then_replace(meta(fresh).resource_version)
    )
    assert patched.data == {"a": "4"}


def test_generation_changes_only_with_what_is_outside_metadata_and_status(
    custom: CustomObjectsApi, core: CoreV1Api
) -> None:
    create_monitor(custom, "fraud")
    annotated = patch_monitor(custom, "fraud", {"metadata": {"annotations": {"a": "b"}}})
    respecced = patch_monitor(custom, "fraud", {"spec": {"interval": "1m"}})
    core.create_namespaced_config_map(NAMESPACE, config_map("cfg", data={"a": "1"}))
    changed = core.patch_namespaced_config_map("cfg", NAMESPACE, {"data": {"a": "2"}})

    assert annotated["metadata"]["generation"] == 1
    assert respecced["metadata"]["generation"] == 2
    assert meta(changed).generation == 2  # a kind without a spec: its data counts


# --- 3. watches --------------------------------------------------------------------------------


def test_watch_from_a_resource_version_streams_only_later_changes(custom: CustomObjectsApi) -> None:
    create_monitor(custom, "fraud")
    listing = as_dict(custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL))
    create_monitor(custom, "churn")
    patch_monitor(custom, "fraud", {"spec": {"interval": "1m"}})

    watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]  # kubernetes.watch is untyped
    stream = watch.stream(  # type: ignore[no-untyped-call]
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        NAMESPACE,
        PLURAL,
        resource_version=listing["metadata"]["resourceVersion"],
        timeout_seconds=1,
    )
    seen = [(event["type"], event["object"]["metadata"]["name"]) for event in stream]

    assert seen == [("ADDED", "churn"), ("MODIFIED", "fraud")]


def test_watch_query_parameter_in_any_spelling_is_a_watch(
    server: KubeServer, custom: CustomObjectsApi
) -> None:
    create_monitor(custom, "fraud")
    path = object_path(API_VERSION, PLURAL, namespace=NAMESPACE)
    assert watch_events(server, path, watch="True") == [("ADDED", "fraud")]
    assert watch_events(server, path, watch="1", resourceVersion=str(server.emulator.revision)) == []


def test_watch_can_send_initial_events_that_end_with_a_bookmark(server: KubeServer, core: CoreV1Api) -> None:
    core.create_namespaced_config_map(NAMESPACE, config_map("cfg"))
    path = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
    initial = {
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
    }
    assert watch_events(server, path, count=2, watch="true", **initial) == [
        ("ADDED", "cfg"),
        ("BOOKMARK", ""),
    ]


def test_lists_come_in_pages(core: CoreV1Api) -> None:
    for name in ("c", "a", "b"):
        core.create_namespaced_config_map(NAMESPACE, config_map(name))
    first = core.list_namespaced_config_map(NAMESPACE, limit=2)
    assert first.metadata is not None
    rest = core.list_namespaced_config_map(NAMESPACE, limit=2, _continue=first.metadata._continue)
    assert rest.metadata is not None
    assert (names(first.items), first.metadata.remaining_item_count) == (["a", "b"], 1)
    assert (names(rest.items), rest.metadata._continue) == (["c"], None)


def test_watches_are_scoped_to_a_namespace_or_cluster_wide_and_see_deletions(
    server: KubeServer, core: CoreV1Api
) -> None:
    for namespace in ("ml", "other"):
        core.create_namespaced_config_map(namespace, config_map(f"cfg-{namespace}"))
    since = str(server.emulator.revision)
    for namespace in ("ml", "other"):
        core.delete_namespaced_config_map(f"cfg-{namespace}", namespace)

    namespaced = watch_events(server, "/api/v1/namespaces/ml/configmaps", watch="true", resourceVersion=since)
    clusterwide = watch_events(server, "/api/v1/configmaps", watch="true", resourceVersion=since)

    assert namespaced == [("DELETED", "cfg-ml")]
    assert clusterwide == [("DELETED", "cfg-ml"), ("DELETED", "cfg-other")]


def test_watch_from_a_forgotten_resource_version_answers_410_expired() -> None:
    with KubeServer(change_log_size=4) as server, server.api_client() as api:
        for index in range(6):
            CoreV1Api(api).create_namespaced_config_map(NAMESPACE, config_map(f"cfg-{index}"))
        url = f"{server.url}/api/v1/namespaces/{NAMESPACE}/configmaps?watch=true&resourceVersion=1"
        with urllib.request.urlopen(url, timeout=5) as response:
            event = json.loads(response.readline())
    assert (event["type"], event["object"]["code"], event["object"]["reason"]) == ("ERROR", 410, "Expired")


# --- 4. selectors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=gold", ["a", "b"]),
        ("tier==gold,region=eu", ["a"]),
        ("tier!=gold", ["c", "d"]),
        ("region in (eu, us)", ["a", "b", "c"]),
        ("region notin (eu)", ["b", "c", "d"]),
        ("region", ["a", "b", "c"]),
        ("!region", ["d"]),
    ],
)
def test_label_selectors_filter_lists(core: CoreV1Api, selector: str, expected: list[str]) -> None:
    labels: dict[str, dict[str, str]] = {
        "a": {"tier": "gold", "region": "eu"},
        "b": {"tier": "gold", "region": "us"},
        "c": {"tier": "silver", "region": "us"},
        "d": {},
    }
    for name, value in labels.items():
        core.create_namespaced_config_map(NAMESPACE, config_map(name, labels=value))
    assert names(core.list_namespaced_config_map(NAMESPACE, label_selector=selector).items) == expected


def test_field_selectors_filter_lists_and_a_watch_sees_objects_leave_its_selection(
    server: KubeServer, core: CoreV1Api
) -> None:
    for namespace, name in (("ml", "a"), ("ml", "b"), ("other", "a")):
        core.create_namespaced_config_map(namespace, config_map(name, labels={"watched": "yes"}))

    by_name = core.list_config_map_for_all_namespaces(field_selector="metadata.name=a").items
    by_namespace = core.list_config_map_for_all_namespaces(field_selector="metadata.namespace!=ml").items
    assert [(meta(o).namespace, meta(o).name) for o in by_name] == [("ml", "a"), ("other", "a")]
    assert [(meta(o).namespace, meta(o).name) for o in by_namespace] == [("other", "a")]

    since = str(server.emulator.revision)
    core.patch_namespaced_config_map("a", "ml", {"metadata": {"labels": {"watched": "no"}}})
    core.patch_namespaced_config_map("b", "ml", {"data": {"x": "1"}})
    seen = watch_events(
        server,
        "/api/v1/namespaces/ml/configmaps",
        watch="true",
        resourceVersion=since,
        labelSelector="watched=yes",
    )
    assert seen == [("DELETED", "a"), ("MODIFIED", "b")]


# --- 5. PUT, 201, 404, 409 AlreadyExists -------------------------------------------------------


def test_create_answers_201_with_the_created_object(core: CoreV1Api) -> None:
    created, status, _ = core.create_namespaced_config_map_with_http_info(
        NAMESPACE, config_map("cfg", data={"a": "1"})
    )
    assert status == 201
    assert (meta(created).name, created.data) == ("cfg", {"a": "1"})


def test_put_replaces_the_whole_object_but_keeps_server_metadata(core: CoreV1Api) -> None:
    created = core.create_namespaced_config_map(NAMESPACE, config_map("cfg", data={"a": "1"}))
    replacement = config_map("cfg", data={"b": "2"})
    meta(replacement).uid = "forged"
    meta(replacement).resource_version = meta(created).resource_version
    replaced = core.replace_namespaced_config_map("cfg", NAMESPACE, replacement)
    assert replaced.data == {"b": "2"}
    assert meta(replaced).uid == meta(created).uid
    assert meta(replaced).creation_timestamp == meta(created).creation_timestamp


def test_missing_objects_answer_404_and_taken_names_409_already_exists(custom: CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as missing:
        get_monitor(custom, "nope")
    create_monitor(custom, "fraud")
    with pytest.raises(ApiException) as taken:
        create_monitor(custom, "fraud")

    assert missing.value.status == 404
    assert error_body(missing.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "code": 404,
        "reason": "NotFound",
        "message": 'modelmonitors.evergreen.dev "nope" not found',
        "details": {"name": "nope", "group": GROUP, "kind": PLURAL},
    }
    assert (taken.value.status, error_body(taken.value)["reason"]) == (409, "AlreadyExists")


# --- 6. status subresource ---------------------------------------------------------------------


def test_status_subresource_is_separate_from_the_main_object(
    api: kubernetes.client.ApiClient, custom: CustomObjectsApi
) -> None:
    forged = {**monitor("fraud"), "status": {"phase": "Forged"}}
    created = as_dict(custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, forged))
    main = patch_monitor(custom, "fraud", {"spec": {"interval": "1m"}, "status": {"phase": "Ignored"}})
    status_patch = {"spec": {"interval": "9m"}, "status": {"phase": "Ok"}}
    status = as_dict(
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, NAMESPACE, PLURAL, "fraud", status_patch)
    )
    helper = set_status(
        api, api_version=API_VERSION, plural=PLURAL, namespace=NAMESPACE, name="fraud", status={"seen": 2}
    )

    assert "status" not in created
    assert "status" not in main and main["spec"]["interval"] == "1m"
    assert status["status"] == {"phase": "Ok"} and status["spec"]["interval"] == "1m"
    assert helper["status"] == {"phase": "Ok", "seen": 2}
    assert rv(created) < rv(main) < rv(status) < rv(helper)
    assert [o["metadata"]["generation"] for o in (created, main, status, helper)] == [1, 2, 2, 2]


# --- 7. finalizers -----------------------------------------------------------------------------


def test_deletion_waits_for_finalizers_and_is_immediate_without_them(
    server: KubeServer, custom: CustomObjectsApi
) -> None:
    create_monitor(custom, "held", finalizers=["evergreen.dev/finalizer"])
    create_monitor(custom, "free")
    since = str(server.emulator.revision)

    delete_monitor(custom, "held")
    delete_monitor(custom, "free")
    assert get_monitor(custom, "held")["metadata"]["deletionTimestamp"]
    assert is_missing(lambda: get_monitor(custom, "free"))

    patch_monitor(custom, "held", {"metadata": {"finalizers": None}})
    assert is_missing(lambda: get_monitor(custom, "held"))

    path = object_path(API_VERSION, PLURAL, namespace=NAMESPACE)
    assert watch_events(server, path, watch="true", resourceVersion=since) == [
        ("MODIFIED", "held"),  # deletionTimestamp set
        ("DELETED", "free"),
        ("MODIFIED", "held"),  # finalizer removed
        ("DELETED", "held"),
    ]


# --- 8. garbage collection ---------------------------------------------------------------------


def test_deleting_an_owner_collects_its_dependents_in_cascade(
    core: CoreV1Api, custom: CustomObjectsApi
) -> None:
    owner = create_monitor(custom, "fraud")
    other = create_monitor(custom, "churn")
    job_config = core.create_namespaced_config_map(
        NAMESPACE, config_map("job-config", owners=owned_by(API_VERSION, KIND, owner))
    )
    job_config_json = {"metadata": {"name": "job-config", "uid": meta(job_config).uid}}
    secret_owners = owned_by("v1", "ConfigMap", job_config_json)
    core.create_namespaced_secret(
        NAMESPACE, V1Secret(metadata=V1ObjectMeta(name="s", owner_references=secret_owners))
    )
    core.create_namespaced_config_map(
        NAMESPACE, config_map("shared", owners=owned_by(API_VERSION, KIND, owner, other))
    )

    delete_monitor(custom, "fraud")

    assert names(core.list_namespaced_config_map(NAMESPACE).items) == ["shared"]
    assert core.list_namespaced_secret(NAMESPACE).items == []
    shared = core.read_namespaced_config_map("shared", NAMESPACE)
    assert [ref.name for ref in meta(shared).owner_references or []] == ["churn"]


def test_orphan_propagation_keeps_dependents(core: CoreV1Api, custom: CustomObjectsApi) -> None:
    owner = create_monitor(custom, "fraud")
    core.create_namespaced_config_map(NAMESPACE, config_map("cfg", owners=owned_by(API_VERSION, KIND, owner)))
    delete_monitor(custom, "fraud", propagation_policy="Orphan")
    assert meta(core.read_namespaced_config_map("cfg", NAMESPACE)).owner_references is None


# --- 9. bounded request log --------------------------------------------------------------------


def test_request_log_stays_bounded_and_throughput_does_not_degrade(
    server: KubeServer, record_property: Callable[[str, object], None]
) -> None:
    # Plain keep-alive HTTP: the official client's own overhead would hide the server's speed.
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    collection = f"/api/v1/namespaces/{NAMESPACE}/configmaps"

    def send(method: str, path: str, body: object = None, content_type: str = "application/json") -> int:
        connection.request(method, path, json.dumps(body), {"Content-Type": content_type})
        response = connection.getresponse()
        response.read()
        return response.status

    def gets_per_second() -> float:
        # The best of a few bursts: other load on the machine only ever makes a burst slower.
        rates = []
        for _ in range(3):
            started = time.perf_counter()
            assert {send("GET", f"{collection}/probe") for _ in range(100)} == {200}
            rates.append(100 / (time.perf_counter() - started))
        return max(rates)

    send("POST", collection, {"metadata": {"name": "probe"}})
    early = gets_per_second()
    for index in range(1_500):
        send("POST", collection, {"metadata": {"name": f"load-{index}"}})
        send("PATCH", f"{collection}/load-{index}", {"data": {"n": "1"}}, "application/merge-patch+json")
    late = gets_per_second()
    connection.close()

    record_property("gets_per_second_early", round(early))
    record_property("gets_per_second_after_3000_requests", round(late))
    print(f"GET throughput: {early:.0f}/s early, {late:.0f}/s after 3,000 more requests")
    assert server.emulator.requests_served > 3_000
    assert len(server.emulator._requests) <= server.emulator.request_log_size
    assert late > early / 3, f"{early:.0f}/s early, {late:.0f}/s after 3,000 requests"


# --- 10. patch types ---------------------------------------------------------------------------


def test_patch_types(core: CoreV1Api) -> None:
    core.create_namespaced_config_map(
        NAMESPACE, config_map("cfg", labels={"a": "1", "b": "2"}, finalizers=["x", "y"])
    )
    merge = "application/merge-patch+json"
    apply = "application/apply-patch+yaml"

    merged = core.patch_namespaced_config_map(
        "cfg", NAMESPACE, {"metadata": {"labels": {"a": None, "c": "3"}}}, _content_type=merge
    )
    json_patched = core.patch_namespaced_config_map(
        "cfg",
        NAMESPACE,
        [
            {"op": "add", "path": "/data", "value": {"k": "v"}},
            {"op": "remove", "path": "/metadata/finalizers/0"},
            {"op": "copy", "from": "/data/k", "path": "/data/k2"},
        ],
    )
    # The client sends dicts as strategic merge patches: lists are replaced, not merged.
    strategic = core.patch_namespaced_config_map("cfg", NAMESPACE, {"metadata": {"finalizers": ["z"]}})
    applied = core.patch_namespaced_config_map(
        "cfg", NAMESPACE, {"data": {"k": "applied"}}, field_manager="tests", _content_type=apply
    )
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}, "data": {"k": "v"}}
    created, status, _ = core.patch_namespaced_config_map_with_http_info(
        "new", NAMESPACE, manifest, field_manager="tests", _content_type=apply
    )

    assert meta(merged).labels == {"b": "2", "c": "3"}
    assert (meta(json_patched).finalizers, json_patched.data) == (["y"], {"k": "v", "k2": "v"})
    assert meta(strategic).finalizers == ["z"]
    assert applied.data == {"k": "applied", "k2": "v"}
    assert (status, created.data) == (201, {"k": "v"})


def test_unknown_patch_types_answer_415(server: KubeServer, core: CoreV1Api) -> None:
    core.create_namespaced_config_map(NAMESPACE, config_map("cfg"))
    request = urllib.request.Request(
        f"{server.url}/api/v1/namespaces/{NAMESPACE}/configmaps/cfg",
        method="PATCH",
        data=b"{}",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as rejected:
        urllib.request.urlopen(request, timeout=5)
    assert rejected.value.code == 415


# --- discovery, CRDs, namespaces, tooling ------------------------------------------------------


def test_discovery_serves_declared_and_api_created_custom_resources(
    server: KubeServer, api: kubernetes.client.ApiClient, custom: CustomObjectsApi
) -> None:
    def discover(path: str) -> dict[str, Any]:
        with urllib.request.urlopen(server.url + path, timeout=5) as response:
            return as_dict(json.load(response))

    def groups() -> set[str]:
        return {group["name"] for group in discover("/apis")["groups"]}

    extensions = kubernetes.client.ApiextensionsV1Api(api)
    resources = discover(f"/apis/{GROUP}/{VERSION}")["resources"]
    crd_status = extensions.read_custom_resource_definition(f"{PLURAL}.{GROUP}").status
    assert crd_status is not None
    assert {(r["name"], r["kind"], r["namespaced"], tuple(r["shortNames"])) for r in resources} == {
        (PLURAL, KIND, True, ("mm",)),
        (f"{PLURAL}/status", KIND, True, ()),
    }
    assert ("Established", "True") in {(c.type, c.status) for c in crd_status.conditions or []}
    assert discover("/api/v1")["groupVersion"] == "v1"  # what kubectl needs to find core kinds

    widgets = server.declare_custom_resource("example.com", "v1", "widgets", "Widget", namespaced=False)
    custom.create_cluster_custom_object("example.com", "v1", "widgets", {"metadata": {"name": "w"}})
    assert "example.com" in groups()

    extensions.delete_custom_resource_definition(widgets["metadata"]["name"])
    assert "example.com" not in groups()
    assert server.call(lambda emulator: emulator.objects["example.com/v1/widgets", None, "w"].deleted)


def test_namespaces_start_as_in_a_fresh_cluster_and_take_their_objects_along(core: CoreV1Api) -> None:
    initial = names(core.list_namespace().items)
    core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=NAMESPACE)))
    core.create_namespaced_config_map(NAMESPACE, config_map("cfg"))
    core.create_namespaced_config_map("default", config_map("cfg"))
    core.delete_namespace(NAMESPACE)

    assert initial == ["default", "kube-node-lease", "kube-public", "kube-system"]
    assert names(core.list_namespace().items) == initial
    assert [meta(o).namespace for o in core.list_config_map_for_all_namespaces().items] == ["default"]


def test_user_reactions_take_precedence_and_change_nothing(server: KubeServer, core: CoreV1Api) -> None:
    core.create_namespaced_config_map(NAMESPACE, config_map("cfg", data={"a": "1"}))
    server.call(lambda emulator: emulator[f"patch /api/v1/namespaces/{NAMESPACE}/configmaps/cfg"] << 503)
    with pytest.raises(ApiException) as failed:
        core.patch_namespaced_config_map("cfg", NAMESPACE, {"data": {"a": "2"}})
    assert failed.value.status == 503
    assert core.read_namespaced_config_map("cfg", NAMESPACE).data == {"a": "1"}


def test_kubeconfig_points_clients_at_the_server(server: KubeServer, tmp_path: pathlib.Path) -> None:
    path = server.kubeconfig(tmp_path / "kubeconfig")
    loaded = kubernetes.config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]
    with loaded as api:
        CoreV1Api(api).create_namespaced_config_map("default", config_map("x"))
    assert server.call(lambda emulator: emulator.objects["v1/configmaps", "default", "x"]["metadata"]["uid"])


# --- a throwaway kopf operator end to end ------------------------------------------------------


def build_operator(calls: list[str]) -> kopf.OperatorRegistry:
    """A tiny operator with Evergreen's kopf settings; it records which handlers ran."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="evergreen.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="evergreen.dev", key="last-handled-configuration"
        )
        settings.persistence.finalizer = "evergreen.dev/finalizer"
        settings.peering.standalone = True
        settings.queueing.idle_timeout = 1.0
        settings.queueing.exit_timeout = 1.0
        settings.watching.connect_timeout = 1.0
        settings.networking.request_timeout = 5.0

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    async def created(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        calls.append("create")
        patch.status["phase"] = "Observing"
        kopf.info(body, reason="Observing", message="monitoring started")
        kopf.info(body, reason="BaselineLoaded", message="baseline histograms loaded")

    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def updated(**_: Any) -> None:
        calls.append("update")

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    async def deleted(**_: Any) -> None:
        calls.append("delete")

    return registry


@pytest.mark.parametrize("scope", ["clusterwide", "namespaced"])
def test_kopf_operator_lifecycle(
    server: KubeServer,
    core: CoreV1Api,
    custom: CustomObjectsApi,
    caplog: pytest.LogCaptureFixture,
    record_property: Callable[[str, object], None],
    scope: str,
) -> None:
    caplog.set_level(logging.WARNING)
    calls: list[str] = []
    namespaces = [] if scope == "clusterwide" else [NAMESPACE]
    core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=NAMESPACE)))  # kopf needs it to exist

    def events() -> list[CoreV1Event]:
        return core.list_namespaced_event(NAMESPACE, field_selector="involvedObject.name=fraud").items

    with OperatorThread(
        server, registry=build_operator(calls), clusterwide=not namespaces, namespaces=namespaces
    ):
        started = time.perf_counter()
        create_monitor(custom, "fraud")
        eventually(lambda: get_monitor(custom, "fraud").get("status", {}).get("phase") == "Observing")
        eventually(lambda: len(events()) == 2)
        handled = get_monitor(custom, "fraud")
        patch_monitor(custom, "fraud", {"spec": {"interval": "1m"}})
        eventually(lambda: "update" in calls)
        delete_monitor(custom, "fraud")
        eventually(lambda: is_missing(lambda: get_monitor(custom, "fraud")))
        cycle = time.perf_counter() - started
        time.sleep(0.3)  # a replaying watch would have run a handler again by now

    record_property(f"kopf_create_update_delete_seconds_{scope}", round(cycle, 3))
    print(f"kopf create→update→delete ({scope}): {cycle:.3f} s")
    assert calls == ["create", "update", "delete"]
    assert handled["metadata"]["finalizers"] == ["evergreen.dev/finalizer"]
    assert sorted(str(event.reason) for event in events()) == ["BaselineLoaded", "Observing"]
    assert {event.involved_object.uid for event in events()} == {handled["metadata"]["uid"]}
    complaints = [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("kopf") and "OS signals are ignored" not in record.getMessage()
    ]
    assert complaints == []
    assert server.call(lambda emulator: list(emulator.errors)) == []  # no request failed server-side
    assert cycle < 5.0
