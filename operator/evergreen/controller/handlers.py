"""kopf wiring only: every handler routes to :meth:`MonitorReconciler.reconcile`.

Create, resume and spec-update handlers only nudge the reconciler (so a spec change is
evaluated at once); a timer drives the schedule. None of them carries logic of its own.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf
from kubernetes import client as k8s

from evergreen.api.resource import GROUP, PLURAL, VERSION
from evergreen.controller.reconciler import MonitorReconciler
from evergreen.controller.settings import OperatorSettings
from evergreen.errors import ClusterError, EvergreenError

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
) -> None:
    """Register every handler of the operator on ``registry``."""

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return _connection_info(configuration)

    async def nudge(namespace: str, name: str) -> None:
        try:
            await reconciler.reconcile(namespace, name)
        except ClusterError as error:
            raise kopf.TemporaryError(str(error), delay=settings.retry_seconds) from error

    @kopf.on.resume(*RESOURCE, registry=registry)
    @kopf.on.create(*RESOURCE, registry=registry)
    @kopf.on.update(*RESOURCE, field="spec", registry=registry)
    async def changed(*, namespace: str | None, name: str, **_: Any) -> None:
        assert namespace is not None  # ModelMonitors are namespaced
        await nudge(namespace, name)

    @kopf.timer(*RESOURCE, interval=settings.tick_seconds, registry=registry)
    async def tick(
        *, namespace: str | None, name: str, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
    ) -> None:
        assert namespace is not None
        try:
            await reconciler.reconcile(namespace, name)
        except ClusterError as error:
            # The next tick retries; a timer must not pile up retries of its own.
            logger.warning("reconcile failed: %s", error)

    @kopf.on.delete(*RESOURCE, registry=registry)
    async def deleted(*, namespace: str | None, name: str, body: kopf.Body, **_: Any) -> None:
        assert namespace is not None
        try:
            await reconciler.finalize(body)
        except EvergreenError as error:  # the team's Deployment is not ready yet, the API failed
            raise kopf.TemporaryError(str(error), delay=settings.retry_seconds) from error
        reconciler.forget(namespace, name)

    @kopf.on.probe(id="reconciling", registry=registry)
    def reconciling(**_: Any) -> dict[str, float]:
        return {"secondsSinceLastStep": round(time.monotonic() - reconciler.last_step, 1)}
