"""The version Deployments and Services of one monitor, and the hand-over of the team's Deployment.

Both routers serve versions the same way; they differ in how many replicas each version runs,
whose pods the team's Service may select, and where the traffic split lives. This module does
the cluster side they share:

- **Take-over** (first reconcile): the team Deployment's replica count R is recorded in its
  ``evergreen.dev/original-replicas`` annotation (with the version it serves, in
  ``evergreen.dev/adopted-version``) before anything else changes.
- **Hand-over**: the team's Deployment is scaled to 0 only once the Deployments of the versions
  with a share of the main traffic (the stable one, and a candidate with a weight) are ready,
  so serving never drops. If someone scales the team's Deployment up again later
  (a resize, or a GitOps tool re-applying its manifest), that count becomes the new R and the
  hand-over repeats the same way. The team's Service is never modified.
- **Convergence**: each version's Deployment and Service are created, or merge-patched where
  they differ from their rendering (:mod:`.patching`); nothing is written when nothing differs.
- **Pruning**: Evergreen's Deployments and Services of versions no longer served are deleted,
  only once those same versions are ready (a promotion's or rollback's traffic has somewhere
  to go).
- **Give-back** (finalize): the team's Deployment gets its R replicas back; Evergreen's objects
  are deleted once it is ready (or its controller reports ``ProgressDeadlineExceeded``: a team
  Deployment that cannot start must not keep the monitor from being deleted), then the
  annotations are removed.

Evergreen's objects are those owned by the monitor (owner reference with its uid, which also
lets the garbage collector delete them with it) and labelled ``app.kubernetes.io/managed-by:
evergreen`` and ``evergreen.dev/monitor``. An object with one of their names that is not owned
is never touched: :class:`ObjectNotOwned` says which.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evergreen.actuators.routing.base import (
    ADOPTED_VERSION_ANNOTATION,
    ORIGINAL_REPLICAS_ANNOTATION,
    VERSION_LABEL,
    InvalidAnnotation,
    MonitorRef,
    ObjectNotOwned,
    ServingNotReady,
)
from evergreen.actuators.routing.injection import inject_version
from evergreen.actuators.routing.naming import monitor_labels, owned_by, version_deployment_name
from evergreen.actuators.routing.patching import Path, merge_patch
from evergreen.actuators.routing.serving import (
    DEPLOYMENT_EXACT_PATHS,
    SERVICE_EXACT_PATHS,
    TARGET_FIELD,
    deployment_ready,
    deployment_stalled,
    desired_replicas,
    render_version_deployment,
    render_version_service,
    service_selector,
)
from evergreen.api.delivery import ServingTarget
from evergreen.errors import ClusterError, MissingReference
from evergreen.kube.client import AlreadyExists, ObjectApi, Resource


@dataclass(frozen=True)
class VersionRole:
    """How one version is served."""

    version: str
    replicas: int
    #: Its pods keep the team Service's selector labels (they take the team Service's traffic).
    takes_team_traffic: bool
    #: The replicas its holds need (recorded on its Deployment for ``set_weights``).
    held_replicas: int = 0


@dataclass
class FleetSnapshot:
    """Evergreen's Deployments and Services of one monitor after convergence, by version."""

    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Owned objects no role wants: (resource, name).
    leftovers: list[tuple[Resource, str]] = field(default_factory=list)

    def ready(self) -> dict[str, bool]:
        return {version: deployment_ready(body) for version, body in self.deployments.items()}

    def replicas(self) -> dict[str, int]:
        return {version: desired_replicas(body) for version, body in self.deployments.items()}

    def service_names(self) -> dict[str, str]:
        return {version: str(body["metadata"]["name"]) for version, body in self.services.items()}


def version_of(body: Mapping[str, Any]) -> str | None:
    """The version an Evergreen object serves (its ``evergreen.dev/version`` label)."""
    labels = body.get("metadata", {}).get("labels") or {}
    version = labels.get(VERSION_LABEL)
    return str(version) if version is not None else None


def original_replicas(team: Mapping[str, Any], *, field: str = TARGET_FIELD) -> int:
    """R: the team Deployment's own count while it has one, else the one recorded at take-over."""
    replicas = desired_replicas(team)
    if replicas > 0:
        return replicas
    recorded = (team.get("metadata", {}).get("annotations") or {}).get(ORIGINAL_REPLICAS_ANNOTATION)
    if recorded is None:
        return 0
    if not str(recorded).isdigit():
        # Guessing would scale every version to a wrong count, possibly to zero.
        raise InvalidAnnotation(
            f"{field}.deployment",
            f"Deployment {team['metadata']['name']} has annotation {ORIGINAL_REPLICAS_ANNOTATION}="
            f"{recorded!r}, which is not a replica count: set it to the replicas the model should run",
        )
    return int(recorded)


def guarded_operations(live: Mapping[str, Any], patch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSON patch operations for ``patch`` (replicas and annotations), each guarded by a test of
    the value in ``live``; an annotation set to None is removed."""
    operations: list[dict[str, Any]] = []
    replicas = (patch.get("spec") or {}).get("replicas")
    if replicas is not None:
        current = (live.get("spec") or {}).get("replicas")
        if current is not None:
            operations.append({"op": "test", "path": "/spec/replicas", "value": current})
        operations.append({"op": "add", "path": "/spec/replicas", "value": replicas})
    wanted = (patch.get("metadata") or {}).get("annotations") or {}
    existing = (live.get("metadata") or {}).get("annotations")
    if wanted and existing is None:
        added = {key: value for key, value in wanted.items() if value is not None}
        if added:
            operations.append({"op": "add", "path": "/metadata/annotations", "value": added})
        return operations
    for key, value in wanted.items():
        path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        if key in (existing or {}):
            operations.append({"op": "test", "path": path, "value": existing[key]})  # type: ignore[index]
            operations.append(
                {"op": "remove", "path": path}
                if value is None
                else {"op": "replace", "path": path, "value": value}
            )
        elif value is not None:
            operations.append({"op": "add", "path": path, "value": value})
    return operations


def handed_over(team: Mapping[str, Any]) -> bool:
    """Whether the team's Deployment is scaled down and the version Deployments serve alone."""
    annotations = team.get("metadata", {}).get("annotations") or {}
    return ORIGINAL_REPLICAS_ANNOTATION in annotations and desired_replicas(team) == 0


class VersionFleet:
    """Cluster operations on one monitor's version Deployments and Services (see the module doc)."""

    def __init__(
        self, objects: ObjectApi, monitor: MonitorRef, target: ServingTarget, *, field: str = TARGET_FIELD
    ) -> None:
        self.objects = objects
        self.monitor = monitor
        self.target = target
        self.field = field

    @property
    def namespace(self) -> str:
        return self.monitor.namespace

    # The team's objects --------------------------------------------------------------------------

    async def team_deployment(self) -> dict[str, Any]:
        """The team's Deployment; :class:`MissingReference` when it does not exist (yet)."""
        body = await self.objects.deployment(self.namespace, self.target.deployment)
        if body is None:
            raise MissingReference(
                f"{self.field}.deployment",
                f"Deployment {self.namespace}/{self.target.deployment} does not exist",
            )
        return body

    async def team_service(self) -> dict[str, Any]:
        """The team's Service; :class:`MissingReference` when it does not exist (yet)."""
        body = await self.objects.service(self.namespace, self.target.service)
        if body is None:
            raise MissingReference(
                f"{self.field}.service", f"Service {self.namespace}/{self.target.service} does not exist"
            )
        return body

    async def take_over(self, team: dict[str, Any], stable: str) -> dict[str, Any]:
        """Record R (and the version the team's Deployment serves) on it; return it as stored."""
        annotations = team["metadata"].get("annotations") or {}
        wanted: dict[str, str] = {}
        if desired_replicas(team) > 0 or ORIGINAL_REPLICAS_ANNOTATION not in annotations:
            wanted[ORIGINAL_REPLICAS_ANNOTATION] = str(desired_replicas(team))
        if ADOPTED_VERSION_ANNOTATION not in annotations:
            wanted[ADOPTED_VERSION_ANNOTATION] = stable
        if all(annotations.get(key) == value for key, value in wanted.items()):
            return team
        return await self._patch_team(team, {"metadata": {"annotations": wanted}})

    async def hand_over(self, team: dict[str, Any], serving: bool) -> dict[str, Any]:
        """Scale the team's Deployment to 0 once the version Deployments serve; return it as stored."""
        if not serving or desired_replicas(team) == 0:
            return team
        return await self._patch_team(team, {"spec": {"replicas": 0}})

    async def give_back(self, serving: str | None = None) -> dict[str, Any] | None:
        """Restore the team Deployment's recorded replicas, serving ``serving`` (the version that
        serves now: a promoted version is never rolled back by giving serving back);
        :class:`ServingNotReady` until it serves."""
        team = await self.objects.deployment(self.namespace, self.target.deployment)
        if team is None:
            return None
        annotations = team["metadata"].get("annotations") or {}
        if ORIGINAL_REPLICAS_ANNOTATION not in annotations:
            return team
        replicas = original_replicas(team, field=self.field)
        adopted = annotations.get(ADOPTED_VERSION_ANNOTATION)
        if serving is not None and adopted is not None and serving != adopted:
            team = await self._serve_version(team, serving)
        if desired_replicas(team) != replicas:
            team = await self._patch_team(team, {"spec": {"replicas": replicas}})
        if not deployment_ready(team) and not deployment_stalled(team):
            raise ServingNotReady(
                f"Deployment {self.namespace}/{self.target.deployment} is scaling back to {replicas} "
                "replicas; Evergreen's version Deployments keep serving until it is ready"
            )
        return team

    async def _serve_version(self, team: dict[str, Any], version: str) -> dict[str, Any]:
        """Inject ``version`` into the team's pod template (guarded by the template read), and
        record it as the version the team's Deployment serves."""
        template = copy.deepcopy(team["spec"]["template"])
        inject_version(
            template.setdefault("spec", {}),
            self.target.version,
            version,
            source=f"Deployment {self.namespace}/{self.target.deployment}",
            field=f"{self.field}.version",
        )
        operations = [
            {"op": "test", "path": "/spec/template", "value": team["spec"]["template"]},
            {"op": "replace", "path": "/spec/template", "value": template},
            *guarded_operations(team, {"metadata": {"annotations": {ADOPTED_VERSION_ANNOTATION: version}}}),
        ]
        return await self.objects.json_patch(
            self.objects.DEPLOYMENTS, self.namespace, self.target.deployment, operations
        )

    async def forget(self, team: dict[str, Any] | None) -> None:
        """Remove Evergreen's annotations from the team's Deployment (the last step of give-back)."""
        if team is None:
            return
        annotations = team["metadata"].get("annotations") or {}
        ours = [
            key for key in (ORIGINAL_REPLICAS_ANNOTATION, ADOPTED_VERSION_ANNOTATION) if key in annotations
        ]
        if ours:
            await self._patch_team(team, {"metadata": {"annotations": dict.fromkeys(ours)}})

    async def _patch_team(self, team: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        """Change exactly the fields Evergreen manages on the team's Deployment.

        A JSON patch that first tests each changed field against what was read: a concurrent
        change of that field by the team (or its GitOps tool) wins and is seen next time, while
        the Deployment controller's status writes and changes to other fields never conflict.
        """
        return await self.objects.json_patch(
            self.objects.DEPLOYMENTS, self.namespace, self.target.deployment, guarded_operations(team, patch)
        )

    # Evergreen's objects -------------------------------------------------------------------------

    async def owned(self, resource: Resource) -> list[dict[str, Any]]:
        """Evergreen's objects of this monitor (labelled and owned)."""
        listed = await self.objects.list_objects(resource, self.namespace, monitor_labels(self.monitor))
        return [body for body in listed if owned_by(body, self.monitor)]

    async def converge(
        self, team: Mapping[str, Any], service: Mapping[str, Any], roles: Sequence[VersionRole]
    ) -> FleetSnapshot:
        """Create or patch each role's Deployment and Service; list what no role wants."""
        team_selector = service_selector(service)
        snapshot = FleetSnapshot()
        deployments = {body["metadata"]["name"]: body for body in await self.owned(self.objects.DEPLOYMENTS)}
        services = {body["metadata"]["name"]: body for body in await self.owned(self.objects.SERVICES)}
        for role in roles:
            desired = render_version_deployment(
                team,
                monitor=self.monitor,
                version=role.version,
                injection=self.target.version,
                replicas=role.replicas,
                held_replicas=role.held_replicas,
                exclude_labels=() if role.takes_team_traffic else team_selector.keys(),
                field=self.field,
            )
            live = deployments.pop(desired["metadata"]["name"], None)
            snapshot.deployments[role.version] = await self._converge_one(
                self.objects.DEPLOYMENTS, desired, live, DEPLOYMENT_EXACT_PATHS, "deployment"
            )
            desired = render_version_service(service, monitor=self.monitor, version=role.version)
            live = services.pop(desired["metadata"]["name"], None)
            snapshot.services[role.version] = await self._converge_one(
                self.objects.SERVICES, desired, live, SERVICE_EXACT_PATHS, "service"
            )
        snapshot.leftovers = [(self.objects.DEPLOYMENTS, name) for name in deployments]
        snapshot.leftovers += [(self.objects.SERVICES, name) for name in services]
        return snapshot

    async def _converge_one(
        self,
        resource: Resource,
        desired: dict[str, Any],
        live: dict[str, Any] | None,
        exact: Sequence[Path],
        target_field: str,
    ) -> dict[str, Any]:
        name = desired["metadata"]["name"]
        if live is None:
            try:
                return await self.objects.create(resource, self.namespace, desired)
            except AlreadyExists:
                live = await self.objects.get(resource, self.namespace, name)
                if live is None:  # deleted in between: the next reconcile creates it
                    raise ClusterError(
                        f"{resource.kind} {self.namespace}/{name} vanished while created"
                    ) from None
                if not owned_by(live, self.monitor):
                    raise ObjectNotOwned(
                        f"{self.field}.{target_field}",
                        f"{resource.kind} {self.namespace}/{name} exists but was not created by "
                        f"Evergreen for ModelMonitor {self.monitor.name}: Evergreen serves a version under "
                        "that name; rename or delete the existing object",
                    ) from None
        patch = merge_patch(live, desired, exact=exact)
        if not patch:
            return live
        return await self.objects.patch(resource, self.namespace, name, patch)

    async def prune(self, snapshot: FleetSnapshot) -> list[str]:
        """Delete the owned objects no role wants; return their names."""
        deleted = []
        for resource, name in snapshot.leftovers:
            if await self.objects.delete(resource, self.namespace, name):
                deleted.append(name)
        snapshot.leftovers = []
        return deleted

    async def delete_owned(self) -> None:
        """Delete all of Evergreen's Deployments and Services of this monitor."""
        for resource in (self.objects.SERVICES, self.objects.DEPLOYMENTS):
            for body in await self.owned(resource):
                await self.objects.delete(resource, self.namespace, body["metadata"]["name"])

    async def deployments_by_version(self) -> dict[str, dict[str, Any]]:
        """Evergreen's Deployments of this monitor, by the version each serves."""
        result = {}
        for body in await self.owned(self.objects.DEPLOYMENTS):
            version = version_of(body)
            if version is not None and body["metadata"]["name"] == version_deployment_name(
                self.target.deployment, version
            ):
                result[version] = body
        return result
