"""Assemble the operator (client, reconciler, telemetry, handlers) and run kopf."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

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
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # kopf logs each handled watch event at INFO: a line per status write of every monitor.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if settings.metrics_port is not None:
        telemetry.serve(settings.metrics_port, settings.bind_address)
    threads = settings.max_concurrent_queries + 8
    # Every Prometheus query and API call runs in a worker thread (the clients are blocking):
    # the default pool (CPU count + 4) would cap the queries in flight below the setting, and
    # the API client's connection pool (CPU count x 5) would drop connections under load.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(threads, thread_name_prefix="evergreen-io")
    )
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize, threads)
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
