"""Assemble the operator (client, reconciler, telemetry, handlers) and run kopf."""

from __future__ import annotations

import asyncio
import threading

import kopf
from kubernetes import client as k8s

from evergreen import __version__
from evergreen.controller.handlers import kopf_settings, register
from evergreen.controller.membership import Membership
from evergreen.controller.reconciler import MonitorReconciler
from evergreen.controller.settings import OperatorSettings
from evergreen.kube.client import KubeApi
from evergreen.kube.leases import LeaseApi
from evergreen.telemetry import Telemetry

Flag = asyncio.Event | threading.Event


async def run_operator(
    settings: OperatorSettings,
    configuration: k8s.Configuration,
    *,
    telemetry: Telemetry | None = None,
    stop_flag: Flag | None = None,
    ready_flag: Flag | None = None,
) -> None:
    """Run until ``stop_flag`` is set (or forever): watch ModelMonitors and reconcile them."""
    telemetry = telemetry or Telemetry()
    if settings.metrics_port is not None:
        telemetry.serve(settings.metrics_port, settings.bind_address)
    shard = settings.sharding
    # The replica in every request's user agent: the API server's audit log says who wrote.
    agent = f"evergreen/{__version__}" + (f" ({shard.replica})" if shard else "")
    kube = KubeApi(configuration, component=settings.component, user_agent=agent)
    reconciler = MonitorReconciler(kube, settings, telemetry)
    membership = None
    if shard is not None:
        membership = Membership(LeaseApi(kube, shard.namespace, shard.group), shard, telemetry)
    registry = kopf.OperatorRegistry()
    register(registry, reconciler, settings, configuration, membership)
    liveness = (
        f"http://{settings.bind_address}:{settings.health_port}/healthz" if settings.health_port else None
    )
    try:
        await kopf.operator(
            registry=registry,
            settings=kopf_settings(settings),
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            liveness_endpoint=liveness,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            memo=kopf.Memo(),
        )
    finally:
        reconciler.sources.close()
        kube.close()
