"""Render one retraining run's workload from ``spec.retraining.template``.

The template is any workload: a batch/v1 Job or a custom resource (Argo Workflow, Kubeflow
PyTorchJob, RayJob, ...). Nothing here knows a kind's schema; containers are found by shape:

- A **pod spec** is a mapping whose ``containers`` is a non-empty list of mappings. Its
  containers are the entries of ``containers`` and ``initContainers``. (Job:
  ``spec.template.spec``; PyTorchJob: ``spec.pytorchReplicaSpecs.<role>.template.spec``;
  RayJob: ``spec.rayClusterSpec.headGroupSpec.template.spec`` and each worker group.)
- An **Argo-style template** is a mapping with a ``container`` or ``script`` mapping that has
  an ``image``, or with a ``containerSet``. Its containers are that mapping plus the entries of
  ``initContainers`` and ``sidecars`` (and the ``containerSet``'s, a pod spec by the rule above).

Every container gets the run's context as ``EVERGREEN_*`` environment variables (placed first,
so the template's own variables can refer to them as ``$(EVERGREEN_RUN)``); a variable the
template already sets is kept. The pod template holding a pod spec under ``spec`` and each
Argo-style template get the ``evergreen.dev/monitor`` and ``evergreen.dev/run`` labels, so a
run's pods can be listed with :func:`run_selector` whatever the kind.

Identity: with a service account, every pod spec found under a ``spec`` key gets
``serviceAccountName`` (and an Argo ``Workflow`` gets ``spec.serviceAccountName``, which covers
its Argo-style templates). A ``serviceAccountName`` or ``serviceAccount`` anywhere in the template
that names another account is an error, and so is a container Evergreen cannot give the
identity to: the operator never lends an identity other than the one the monitor declares.
Nothing else about identity (e.g. ``automountServiceAccountToken``) is touched.

The workload's own spec is left as written (``backoffLimit``, ``activeDeadlineSeconds``, ...):
``spec.retraining.timeout`` is enforced by Evergreen, not by the workload.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from evergreen.api.resource import API_VERSION, KIND
from evergreen.errors import SpecError

TEMPLATE_FIELD = "spec.retraining.template"

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MONITOR_LABEL = "evergreen.dev/monitor"
RUN_LABEL = "evergreen.dev/run"
ANNOTATION_PREFIX = "evergreen.dev/"

#: API groups whose workloads never finish: a retraining run must.
_LONG_RUNNING_GROUPS = ("apps/",)
_MAX_LABEL_VALUE = 63


@dataclass(frozen=True)
class RunContext:
    """Everything a retraining run is told: whose run it is, why, and on which data.

    Empty ``features``/``segments`` mean "everything". Times must be timezone-aware.
    """

    namespace: str
    monitor: str
    monitor_uid: str
    model: str
    run: int
    workload_name: str
    trigger: str
    now: datetime
    current_version: str | None = None
    features: Sequence[str] = ()
    segments: Sequence[str] = ()
    window_start: datetime | None = None
    window_end: datetime | None = None
    baseline_start: datetime | None = None
    baseline_end: datetime | None = None
    request_id: str | None = None
    service_account: str | None = None

    def __post_init__(self) -> None:
        # Tuples keep the frozen context hashable and safe from a caller's later edits.
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "segments", tuple(self.segments))
        for name in ("now", "window_start", "window_end", "baseline_start", "baseline_end"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"RunContext.{name} must be timezone-aware")


def rfc3339(moment: datetime) -> str:
    """``2026-01-12T10:00:00Z``: UTC, fractional seconds only when there are any."""
    utc = moment.astimezone(UTC)
    return utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds").replace("+00:00", "Z")


def monitor_label_value(monitor: str) -> str:
    """The monitor's name as a label value (at most 63 characters; longer names are hashed)."""
    if len(monitor) <= _MAX_LABEL_VALUE:
        return monitor
    digest = hashlib.sha256(monitor.encode()).hexdigest()[:10]
    return f"{monitor[: _MAX_LABEL_VALUE - 11]}-{digest}"


def run_selector(monitor: str, run: int | None = None) -> dict[str, str]:
    """Labels that select a monitor's workloads and their pods (one run's, when ``run`` is given)."""
    labels = {MONITOR_LABEL: monitor_label_value(monitor)}
    if run is not None:
        labels[RUN_LABEL] = str(run)
    return labels


def _join(items: Sequence[str], separator: str) -> str:
    # Percent-escape so an item holding the separator cannot split: unquote each item to read it.
    escaped = (item.replace("%", "%25").replace(separator, f"%{ord(separator):02X}") for item in items)
    return separator.join(escaped)


def run_environment(context: RunContext) -> dict[str, str]:
    """The ``EVERGREEN_*`` variables every container gets; unknown values are left out.

    Features are joined with ``,`` and segments (themselves ``name=value,...``) with ``;``;
    ``%`` and the separator are percent-escaped inside an item. Empty means "everything".
    """
    env = {
        "EVERGREEN_MODEL": context.model,
        "EVERGREEN_MONITOR": f"{context.namespace}/{context.monitor}",
        "EVERGREEN_RUN": str(context.run),
        "EVERGREEN_CURRENT_VERSION": context.current_version,
        "EVERGREEN_TRIGGER": context.trigger,
        "EVERGREEN_DRIFTED_FEATURES": _join(context.features, ","),
        "EVERGREEN_DRIFTED_SEGMENTS": _join(context.segments, ";"),
        "EVERGREEN_WINDOW_START": _time(context.window_start),
        "EVERGREEN_WINDOW_END": _time(context.window_end),
        "EVERGREEN_BASELINE_START": _time(context.baseline_start),
        "EVERGREEN_BASELINE_END": _time(context.baseline_end),
        "EVERGREEN_REQUEST_ID": context.request_id,
    }
    return {name: value for name, value in env.items() if value is not None}


def run_annotations(context: RunContext) -> dict[str, str]:
    """The ``evergreen.dev/*`` annotations on the workload: the same context, for people and tools."""
    annotations = {
        "model": context.model,
        "trigger": context.trigger,
        "features": _join(context.features, ","),
        "segments": _join(context.segments, ";"),
        "current-version": context.current_version,
        "window-start": _time(context.window_start),
        "window-end": _time(context.window_end),
        "baseline-start": _time(context.baseline_start),
        "baseline-end": _time(context.baseline_end),
        "request-id": context.request_id,
        "created-at": rfc3339(context.now),
    }
    return {ANNOTATION_PREFIX + key: value for key, value in annotations.items() if value is not None}


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def render_workload(
    template: Mapping[str, Any], context: RunContext, *, field: str = TEMPLATE_FIELD
) -> dict[str, Any]:
    """The object to create for one run: a copy of ``template`` with Evergreen's parts added.

    Raises :class:`SpecError` naming the offending path under ``field`` when the template
    cannot become a workload (see the module docstring for the rules). ``template`` is not
    modified.
    """
    if not isinstance(template, Mapping):
        raise SpecError(field, "must be an object: a batch/v1 Job or a workload custom resource")
    workload: dict[str, Any] = _plain(template)
    _check_kind(workload, field)
    metadata = _workload_metadata(workload, context, field)
    found = _find_containers(workload, field)
    if not found.containers:
        raise SpecError(
            f"{field}.spec",
            "no container found: a Job needs spec.template.spec.containers; a custom resource needs pod "
            "templates (<...>.template.spec.containers) or Argo container templates, each with an image",
        )
    if context.service_account is not None:
        _check_identity(workload, found, context.service_account, field)
        if _is_argo_workflow(workload):
            # Argo runs every template of a Workflow as spec.serviceAccountName.
            found.identity_targets.append(workload["spec"])

    metadata["name"] = context.workload_name
    metadata["namespace"] = context.namespace
    metadata["ownerReferences"] = [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": context.monitor,
            "uid": context.monitor_uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    selector = run_selector(context.monitor, context.run)
    _add_missing(metadata, "labels", {MANAGED_BY_LABEL: "evergreen", **selector})
    _add_missing(metadata, "annotations", run_annotations(context))
    for pod_template in found.pod_templates:
        _add_missing(pod_template.setdefault("metadata", {}), "labels", selector)
    env = run_environment(context)
    for container in found.containers:
        theirs = container.get("env") or []
        own = {entry["name"] for entry in theirs}
        ours = [{"name": name, "value": value} for name, value in env.items() if name not in own]
        container["env"] = ours + theirs
    if context.service_account is not None:
        for pod_spec in found.identity_targets:
            pod_spec["serviceAccountName"] = context.service_account
    return workload


def _plain(value: Any) -> Any:
    """A deep copy made of plain dicts and lists, whatever mapping or sequence types came in."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _check_kind(workload: dict[str, Any], field: str) -> None:
    api_version, kind = workload.get("apiVersion"), workload.get("kind")
    if not isinstance(api_version, str) or not api_version:
        raise SpecError(f"{field}.apiVersion", "set the workload's apiVersion (e.g. batch/v1)")
    if not isinstance(kind, str) or not kind:
        raise SpecError(f"{field}.kind", "set the workload's kind (e.g. Job)")
    if kind == "Pod":
        raise SpecError(f"{field}.kind", "a bare Pod is neither retried nor cleaned up: wrap it in a Job")
    if "/" not in api_version:
        raise SpecError(
            f"{field}.apiVersion",
            f"{api_version} is the core API group, which has no run-to-completion workload: wrap the pod in "
            "a Job (batch/v1)",
        )
    if api_version.startswith(_LONG_RUNNING_GROUPS):
        raise SpecError(f"{field}.kind", f"a {kind} never finishes but a retraining run must: use a Job")
    if not isinstance(workload.get("spec"), dict):
        raise SpecError(f"{field}.spec", "the workload needs a spec object")


def _workload_metadata(workload: dict[str, Any], context: RunContext, field: str) -> dict[str, Any]:
    metadata = workload.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise SpecError(f"{field}.metadata", "must be an object (labels, annotations); or leave it out")
    for key, ours in (("name", context.workload_name), ("namespace", context.namespace)):
        theirs = metadata.get(key)
        if theirs is not None and theirs != ours:
            raise SpecError(
                f"{field}.metadata.{key}",
                f"is {theirs!r} but Evergreen names each run's workload itself ({ours!r} for this run) in "
                "the monitor's namespace: remove it from the template",
            )
    for key in ("ownerReferences", "uid", "resourceVersion"):
        if key in metadata:
            what = "sets the owner reference" if key == "ownerReferences" else "creates it"
            raise SpecError(f"{field}.metadata.{key}", f"remove it: a template is not a live object ({what})")
    for key in ("labels", "annotations"):
        _check_string_map(metadata.get(key), f"{field}.metadata.{key}")
    return metadata


def _check_string_map(value: Any, path: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise SpecError(path, "must be an object of string keys and string values")
    for key, item in value.items():
        if not isinstance(item, str):
            raise SpecError(f'{path}["{key}"]', f"must be a string; quote it ({item!r})")


def _add_missing(metadata: dict[str, Any], key: str, values: Mapping[str, str]) -> None:
    """Add ``values`` to ``metadata[key]``; a key the template already set keeps its value."""
    existing = metadata.get(key)
    metadata[key] = {**values, **existing} if existing else dict(values)


@dataclass(frozen=True)
class _Node:
    """A mapping in the template, where it sits, and what holds it."""

    value: dict[str, Any]
    path: str
    key: str | None
    parent: dict[str, Any] | None
    parent_path: str | None


@dataclass
class _Containers:
    containers: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    seen: set[int] = dataclasses.field(default_factory=set)
    #: Pod specs that take ``serviceAccountName``.
    identity_targets: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: Paths of containers no identity target covers.
    uncovered: list[str] = dataclasses.field(default_factory=list)
    #: Mappings whose ``metadata.labels`` become the pods' labels.
    pod_templates: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def add_pod_template(self, template: dict[str, Any], path: str) -> None:
        metadata = template.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise SpecError(f"{path}.metadata", "must be an object (labels, annotations); or leave it out")
        _check_string_map((metadata or {}).get("labels"), f"{path}.metadata.labels")
        self.pod_templates.append(template)


def _nodes(value: Any, path: str, key: str | None, parent: _Node | None) -> Iterator[_Node]:
    if isinstance(value, dict):
        node = _Node(value, path, key, parent.value if parent else None, parent.path if parent else None)
        yield node
        for child_key, child in value.items():
            yield from _nodes(child, f"{path}.{child_key}", str(child_key), node)
    elif isinstance(value, list):
        # List items are known by the list's key: the entries of ``containers`` are containers.
        for index, item in enumerate(value):
            yield from _nodes(item, f"{path}[{index}]", key, parent)


def _is_pod_spec(value: Any) -> bool:
    containers = value.get("containers") if isinstance(value, dict) else None
    return (
        isinstance(containers, list)
        and bool(containers)
        and all(isinstance(container, dict) for container in containers)
    )


def _argo_containers(value: dict[str, Any]) -> list[str]:
    keys = ("container", "script")
    return [key for key in keys if isinstance(value.get(key), dict) and "image" in value[key]]


def _find_containers(workload: dict[str, Any], field: str) -> _Containers:
    found = _Containers()
    for node in _nodes(workload, field, None, None):
        if _is_pod_spec(node.value):
            covered = node.key == "spec"
            if covered:
                found.identity_targets.append(node.value)
                if node.parent is not None and node.parent_path is not None:
                    found.add_pod_template(node.parent, node.parent_path)
            for list_key in ("initContainers", "containers"):
                _collect_list(node, list_key, covered, found)
        singles = _argo_containers(node.value)
        if singles or _is_pod_spec(node.value.get("containerSet")):
            found.add_pod_template(node.value, node.path)
            for key in singles:
                _collect(node.value[key], f"{node.path}.{key}", False, found)
            for list_key in ("initContainers", "sidecars"):
                _collect_list(node, list_key, False, found)
    return found


def _collect_list(node: _Node, key: str, covered: bool, found: _Containers) -> None:
    entries = node.value.get(key)
    if entries is None:
        return
    if not isinstance(entries, list):
        raise SpecError(f"{node.path}.{key}", "must be a list of containers")
    for index, entry in enumerate(entries):
        _collect(entry, f"{node.path}.{key}[{index}]", covered, found)


def _collect(container: Any, path: str, covered: bool, found: _Containers) -> None:
    if not isinstance(container, dict):
        raise SpecError(path, "must be a container object (name, image, ...)")
    if id(container) in found.seen:
        return
    found.seen.add(id(container))
    image = container.get("image")
    if not isinstance(image, str) or not image.strip():
        raise SpecError(f"{path}.image", "every container needs an image (e.g. registry.example/trainer:1.4)")
    env = container.get("env")
    if env is not None and not isinstance(env, list):
        raise SpecError(f"{path}.env", "must be a list of {name, value} entries")
    for index, entry in enumerate(env or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise SpecError(f"{path}.env[{index}]", "must be an object with a name and a value or valueFrom")
    found.containers.append(container)
    if not covered:
        found.uncovered.append(path)


def _is_argo_workflow(workload: Mapping[str, Any]) -> bool:
    return workload["kind"] == "Workflow" and str(workload["apiVersion"]).startswith("argoproj.io/")


def _check_identity(workload: dict[str, Any], found: _Containers, account: str, field: str) -> None:
    for node in _nodes(workload, field, None, None):
        for key in ("serviceAccountName", "serviceAccount"):
            theirs = node.value.get(key)
            if isinstance(theirs, str) and theirs != account:
                raise SpecError(
                    f"{node.path}.{key}",
                    f"names service account {theirs!r}, but the monitor's spec.serviceAccountName is "
                    f"{account!r}: remove it from the template (Evergreen sets {account!r}) or change "
                    "spec.serviceAccountName",
                )
    if found.uncovered and not _is_argo_workflow(workload):
        raise SpecError(
            found.uncovered[0],
            f"Evergreen cannot give this container the service account {account!r} (it is not in a pod "
            "template's spec): use a Job or a workload whose pods are declared as pod templates",
        )
