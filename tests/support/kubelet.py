"""The node stand-in: the only part of a cluster the tests play (there is no container runtime).

It does what a kubelet does for the API, the way KWOK does: a Ready Node, every new pod bound
to it, then Running and Ready with an IP. A workload's pod keeps running until the test says how
it ends (:meth:`NodeStandIn.finish_job`, :meth:`NodeStandIn.finish_pods`): Succeeded or Failed
with the container's termination message, which is what a training container writes to
``/dev/termination-log``. The real Job,
ReplicaSet and Deployment controllers turn those pod states into Job conditions and ready
replicas. Pods being deleted are confirmed with grace period 0, as a kubelet does, so
namespaces finish terminating.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes.client
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

NODE_NAME = "evergreen-test-node"
_JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


@dataclass(frozen=True)
class PodEnding:
    """How a Job's pod ends: exit code and termination message."""

    exit_code: int
    message: str


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NodeStandIn:
    """One Node and an agent that moves its pods through their lives (see the module doc)."""

    def __init__(self, api: kubernetes.client.ApiClient, node: str = NODE_NAME) -> None:
        self.core = kubernetes.client.CoreV1Api(api)
        self.node = node
        self._endings: list[tuple[str, dict[str, str], PodEnding]] = []
        #: Namespaces whose pods wait for their ReplicaSet to be released (see :meth:`hold`).
        self._held: set[str] = set()
        self._released: set[tuple[str, str]] = set()
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ips = itertools.count(2)
        self._thread = threading.Thread(target=self._run, name="node-stand-in", daemon=True)
        self._watch: watch.Watch | None = None

    def __enter__(self) -> NodeStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._register_node()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]
        self._thread.join(10)

    def finish_job(self, namespace: str, job: str, *, exit_code: int = 0, message: str = "") -> None:
        """End the pod(s) of Job ``job``: now if they run, else as soon as they do."""
        self.finish_pods(namespace, {_JOB_NAME_LABEL: job}, exit_code=exit_code, message=message)

    def finish_pods(
        self, namespace: str, labels: dict[str, str], *, exit_code: int = 0, message: str = ""
    ) -> None:
        """End the pods in ``namespace`` that carry all of ``labels`` (a workload's pods)."""
        with self._lock:
            self._endings.append((namespace, dict(labels), PodEnding(exit_code, message)))
            pods = [pod for pod in self._pods.values() if pod["metadata"]["namespace"] == namespace]
        for pod in pods:
            self._handle(pod)

    def hold(self, namespace: str) -> None:
        """From now on, pods of ReplicaSets in ``namespace`` stay Pending until released: a test
        decides when a Deployment's new pods become ready (the way a slow image pull would)."""
        with self._lock:
            self._held.add(namespace)

    def release(self, namespace: str, replica_set: str) -> None:
        """Let the pods of one ReplicaSet run (now and later)."""
        with self._lock:
            self._released.add((namespace, replica_set))
            pods = [pod for pod in self._pods.values() if pod["metadata"]["namespace"] == namespace]
        for pod in pods:
            self._handle(pod)

    def _waits(self, pod: dict[str, Any]) -> bool:
        meta = pod["metadata"]
        owners = [o["name"] for o in meta.get("ownerReferences") or [] if o.get("kind") == "ReplicaSet"]
        with self._lock:
            if meta["namespace"] not in self._held or not owners:
                return False
            return (meta["namespace"], owners[0]) not in self._released

    # The agent ------------------------------------------------------------------------------

    def _register_node(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node}},
        }
        with contextlib.suppress(ApiException):
            self.core.create_node(body)  # type: ignore[arg-type]
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "1000"}
        self.core.patch_node_status(
            self.node,
            {
                "status": {
                    "capacity": capacity,
                    "allocatable": capacity,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "node stand-in",
                            "lastHeartbeatTime": _now(),
                            "lastTransitionTime": _now(),
                        }
                    ],
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                }
            },
        )

    def _run(self) -> None:
        api = self.core.api_client
        while not self._stop.is_set():
            self._watch = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                listing = self.core.list_pod_for_all_namespaces()
                for item in listing.items:
                    self._handle(api.sanitize_for_serialization(item))
                stream = self._watch.stream(  # type: ignore[no-untyped-call]
                    self.core.list_pod_for_all_namespaces,
                    resource_version=listing.metadata.resource_version,  # type: ignore[union-attr]
                    timeout_seconds=60,
                )
                for event in stream:
                    if self._stop.is_set():
                        break
                    pod = api.sanitize_for_serialization(event["object"])
                    if event["type"] == "DELETED":
                        with self._lock:
                            self._pods.pop(_key(pod), None)
                    else:
                        self._handle(pod)
            except Exception as error:  # the API restarting, a watch expiring: start over
                if not self._stop.is_set():
                    log.debug("node stand-in watch restarts: %s", error)
                    self._stop.wait(0.5)

    def _handle(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        namespace, name = meta["namespace"], meta["name"]
        with self._lock:
            self._pods[(namespace, name)] = pod
        try:
            if meta.get("deletionTimestamp"):
                if spec.get("nodeName") == self.node:
                    with contextlib.suppress(ApiException):
                        self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
                return
            if not spec.get("nodeName"):
                self._bind(namespace, name)
                return
            if spec["nodeName"] != self.node:
                return
            phase = pod.get("status", {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                return
            ending = self._ending_of(pod)
            if ending is not None:
                self._terminate(pod, ending)
            elif phase != "Running" and not self._waits(pod):
                self._run_pod(pod)
        except ApiException as error:
            if error.status not in (404, 409):
                log.warning("node stand-in: pod %s/%s: HTTP %s", namespace, name, error.status)

    def _ending_of(self, pod: dict[str, Any]) -> PodEnding | None:
        labels = pod["metadata"].get("labels") or {}
        namespace = pod["metadata"]["namespace"]
        with self._lock:
            for where, wanted, ending in reversed(self._endings):
                if where == namespace and all(labels.get(k) == v for k, v in wanted.items()):
                    return ending
        return None

    def _bind(self, namespace: str, name: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        }
        # The generated client cannot deserialize a Binding's answer; the raw response is enough.
        self.core.create_namespaced_pod_binding(name, namespace, body, _preload_content=False)  # type: ignore[arg-type]

    def _run_pod(self, pod: dict[str, Any]) -> None:
        now = _now()
        containers = pod["spec"].get("containers", [])
        status = {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": f"10.244.{next(self._ips) // 250}.{next(self._ips) % 250 + 2}",
            "startTime": now,
            "conditions": [
                {"type": kind, "status": "True", "lastTransitionTime": now}
                for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": "",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                }
                for container in containers
            ],
        }
        self._patch_status(pod, status)

    def _terminate(self, pod: dict[str, Any], ending: PodEnding) -> None:
        now = _now()
        succeeded = ending.exit_code == 0
        terminated = {
            "exitCode": ending.exit_code,
            "reason": "Completed" if succeeded else "Error",
            "startedAt": now,
            "finishedAt": now,
        }
        if ending.message:
            terminated["message"] = ending.message
        containers = pod["spec"].get("containers", [])
        status = {
            "phase": "Succeeded" if succeeded else "Failed",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
                {
                    "type": "ContainersReady",
                    "status": "False",
                    "reason": "PodCompleted",
                    "lastTransitionTime": now,
                },
            ],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
                for container in containers
            ],
        }
        self._patch_status(pod, status)

    def _patch_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})


def _key(pod: dict[str, Any]) -> tuple[str, str]:
    return pod["metadata"]["namespace"], pod["metadata"]["name"]
