"""Traffic routers for progressive delivery and version holds.

Every model version runs as a Deployment of its own with a Service in front, rendered from the
team's Deployment and Service (``spec.rollout.target``); a router splits the main traffic
between the stable version and the candidate and sends held customers to their version. One
module per backend behind one interface (:class:`Router`)::

    router = router_for(spec.rollout.router, kube, MonitorRef(namespace, name, uid), spec.rollout)
    state = await router.reconcile(ServingPlan(stable="v1", candidate="v2", weight=25, holds=...))
    if state.ready["v2"]: ...                    # pods available: the step's checks may count

- :mod:`.base`: the interface, plans, states and errors;
- :mod:`.replicas`: split by replica counts behind the team's Service (no mesh);
- :mod:`.gateway`: split by Gateway API HTTPRoute backend weights;
- :mod:`.serving`, :mod:`.injection`, :mod:`.naming`: pure rendering of the version objects;
- :mod:`.fleet`: the cluster side both routers share (take-over, convergence, pruning, give-back);
- :mod:`.fake`: an in-memory router for tests.
"""

from __future__ import annotations

from evergreen.actuators.routing.base import (
    HeldVersion,
    InvalidAnnotation,
    MonitorRef,
    ObjectNotOwned,
    Router,
    ServingNotReady,
    ServingPlan,
    ServingState,
    VersionNotServed,
    held_versions,
)
from evergreen.actuators.routing.gateway import GatewayRouter
from evergreen.actuators.routing.replicas import ReplicaRouter
from evergreen.api.delivery import RolloutSpec, RouterKind
from evergreen.kube.client import KubeApi, ObjectApi

__all__ = [
    "GatewayRouter",
    "HeldVersion",
    "InvalidAnnotation",
    "MonitorRef",
    "ObjectNotOwned",
    "ReplicaRouter",
    "Router",
    "ServingNotReady",
    "ServingPlan",
    "ServingState",
    "VersionNotServed",
    "held_versions",
    "router_for",
]


def router_for(kind: RouterKind, kube: KubeApi | ObjectApi, monitor: MonitorRef, spec: RolloutSpec) -> Router:
    """The router of ``kind`` for one monitor's ``spec.rollout`` (cheap: build one per reconcile)."""
    objects = kube if isinstance(kube, ObjectApi) else ObjectApi(kube)
    if kind is RouterKind.GATEWAY_API:
        return GatewayRouter(objects, monitor, spec)
    return ReplicaRouter(objects, monitor, spec)
