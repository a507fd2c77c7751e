"""kopf wiring only: the watch feeds the :class:`~evergreen.controller.scheduler.Scheduler`.

kopf lists and watches ModelMonitors, logs in, and serves the liveness probe. No handler that
makes kopf write to the object is used (no create/update/resume handlers, timers or deletion
handlers): kopf then keeps no annotations and no finalizer of its own on a ModelMonitor, and
Evergreen holds a finalizer only while it serves a monitor's versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import kopf
from kubernetes import client as k8s

from evergreen.api.resource import GROUP, PLURAL, VERSION
from evergreen.controller.membership import Membership
from evergreen.controller.reconciler import MonitorReconciler
from evergreen.controller.scheduler import Scheduler
from evergreen.controller.settings import OperatorSettings

RESOURCE = (GROUP, VERSION, PLURAL)


def _connection_info(configuration: k8s.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from the same configuration the operator's own client uses."""
    token = None
    scheme = None
    header = (configuration.api_key or {}).get("authorization") or (configuration.api_key or {}).get(
        "BearerToken"
    )
    if header:
        scheme, _, token = header.partition(" ")
        if not token:
            scheme, token = "Bearer", scheme
    if configuration.refresh_api_key_hook is not None:
        configuration.refresh_api_key_hook(configuration)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        username=configuration.username or None,
        password=configuration.password or None,
    )


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf's own settings, explicit in one place."""
    config = kopf.OperatorSettings()
    # With event handlers only, kopf stores nothing on the objects; the names stay those of
    # earlier releases so leftovers are recognised as kopf's own (the operator removes them).
    config.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    config.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    config.persistence.finalizer = f"{GROUP}/finalizer"
    # Evergreen posts its own Events with specific reasons; kopf's generic ones are noise.
    config.posting.enabled = False
    config.peering.standalone = True
    config.networking.request_timeout = 60
    config.watching.server_timeout = 300
    config.watching.client_timeout = 330
    return config


def register(
    registry: kopf.OperatorRegistry,
    reconciler: MonitorReconciler,
    settings: OperatorSettings,
    configuration: k8s.Configuration,
    membership: Membership | None = None,
) -> None:
    """Register every handler of the operator on ``registry``; with ``membership``, only the
    monitors this replica owns are reconciled."""
    owns = membership.owns if membership is not None else None
    scheduler = Scheduler(reconciler, tick_seconds=settings.tick_seconds, owns=owns)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return _connection_info(configuration)

    @kopf.on.event(*RESOURCE, registry=registry)
    async def event(*, type: str | None, body: kopf.Body, **_: Any) -> None:
        # Async: kopf runs a sync handler in a worker thread, and the scheduler's queue and
        # wake-up belong to the event loop.
        # Every change of every monitor (the first listing included) goes to the scheduler;
        # the watch is also the cache, so an idle monitor is never read again.
        if type == "DELETED":
            scheduler.gone(body["metadata"]["namespace"], body["metadata"]["name"])
        else:
            scheduler.seen(body)

    @kopf.on.startup(registry=registry)
    async def start(memo: kopf.Memo, **_: Any) -> None:
        if membership is not None:
            # The first round (Lease created, members listed) before the first tick.
            await membership.step()
            memo["membership_task"] = asyncio.create_task(
                membership.run(scheduler.monitors, reconciler.forget_metrics, scheduler.adopt),
                name="evergreen-membership",
            )
        memo["scheduler_task"] = asyncio.create_task(scheduler.run(), name="evergreen-scheduler")

    @kopf.on.cleanup(registry=registry)
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        # The scheduler first: the Lease goes only once this replica's reconciles have ended.
        for name in ("scheduler_task", "membership_task"):
            task = memo.get(name)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if membership is not None:
            await membership.leave()

    @kopf.on.probe(id="reconciling", registry=registry)
    def reconciling(**_: Any) -> dict[str, float]:
        return {"secondsSinceLastStep": round(time.monotonic() - reconciler.last_step, 1)}
