"""Assemble the operator (client, reconciler, telemetry, handlers) and run kopf."""

from __future__ import annotations

import asyncio
import threading

import kopf
from kubernetes import client as k8s

from evergreen.controller.handlers import kopf_settings, register
from evergreen.controller.reconciler import MonitorReconciler
from evergreen.controller.settings import OperatorSettings
from evergreen.kube.client import KubeApi
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
    kube = KubeApi(configuration, component=settings.component)
    reconciler = MonitorReconciler(kube, settings, telemetry)
    registry = kopf.OperatorRegistry()
    register(registry, reconciler, settings, configuration)
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
