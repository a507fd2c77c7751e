"""Resolve where a monitor's metrics live: its own endpoint with secrets read, or the default."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections import OrderedDict
from datetime import datetime
from pathlib import Path

from evergreen.api.durations import parse_duration
from evergreen.api.spec import PrometheusEndpoint
from evergreen.errors import SpecError
from evergreen.kube.client import KubeApi
from evergreen.signals.prometheus import Endpoint, PrometheusSource
from evergreen.signals.samples import QueryResult
from evergreen.telemetry import Telemetry


class CaBundles:
    """CA bundles from Secrets/ConfigMaps written to files, since requests verifies by path."""

    def __init__(self) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="evergreen-ca-"))

    def path_for(self, pem: str) -> str:
        digest = hashlib.sha256(pem.encode()).hexdigest()[:24]
        path = self._directory / f"{digest}.pem"
        if not path.exists():
            path.write_text(pem)
        return str(path)


async def resolve_endpoint(
    config: PrometheusEndpoint | None,
    default: Endpoint | None,
    namespace: str,
    kube: KubeApi,
    bundles: CaBundles,
) -> Endpoint:
    """The endpoint to query, with credentials read from the monitor's namespace."""
    if config is None:
        if default is None:
            raise SpecError(
                "spec.prometheus",
                "no Prometheus endpoint: set spec.prometheus.url, or start the operator with "
                "--prometheus-url (Helm value prometheus.url) as the default",
            )
        return default
    headers = dict(config.headers)
    basic_auth = None
    if config.bearer_token_secret is not None:
        ref = config.bearer_token_secret
        token = await kube.read_secret_key(
            namespace, ref.name, ref.key, field="spec.prometheus.bearerTokenSecret"
        )
        headers["Authorization"] = f"Bearer {token.strip()}"
    if config.basic_auth is not None:
        user_ref, password_ref = config.basic_auth.username, config.basic_auth.password
        user, password = await asyncio.gather(
            kube.read_secret_key(
                namespace, user_ref.name, user_ref.key, field="spec.prometheus.basicAuth.username"
            ),
            kube.read_secret_key(
                namespace, password_ref.name, password_ref.key, field="spec.prometheus.basicAuth.password"
            ),
        )
        basic_auth = (user.strip(), password.strip())
    verify: bool | str = True
    if config.tls is not None:
        if config.tls.insecure_skip_verify:
            verify = False
        elif config.tls.ca_secret is not None:
            ref = config.tls.ca_secret
            verify = bundles.path_for(
                await kube.read_secret_key(namespace, ref.name, ref.key, field="spec.prometheus.tls.caSecret")
            )
        elif config.tls.ca_config_map is not None:
            cm = config.tls.ca_config_map
            verify = bundles.path_for(
                await kube.read_config_map_key(
                    namespace, cm.name, cm.key, field="spec.prometheus.tls.caConfigMap"
                )
            )
    return Endpoint(
        url=config.url,
        headers=headers,
        basic_auth=basic_auth,
        verify=verify,
        timeout_seconds=parse_duration(config.timeout).total_seconds(),
    )


class InstrumentedSource:
    """A Prometheus source that counts its queries and shares a global concurrency limit."""

    def __init__(self, source: PrometheusSource, limit: asyncio.Semaphore, telemetry: Telemetry) -> None:
        self.source = source
        self.limit = limit
        self.telemetry = telemetry

    async def instant(self, query: str, at: datetime, *, field: str) -> QueryResult:
        async with self.limit:
            with self.telemetry.query_duration.time():
                try:
                    result = await self.source.instant(query, at, field=field)
                except Exception as error:
                    outcome = "rejected" if getattr(error, "permanent", False) else "unavailable"
                    self.telemetry.queries.labels(outcome).inc()
                    raise
        self.telemetry.queries.labels("ok").inc()
        return result


class SourcePool:
    """One client per distinct endpoint, so monitors sharing a Prometheus share connections."""

    def __init__(self, telemetry: Telemetry, max_concurrent_queries: int, capacity: int = 64) -> None:
        self.telemetry = telemetry
        self.capacity = capacity
        self._limit = asyncio.Semaphore(max_concurrent_queries)
        self._connections = max_concurrent_queries
        self._sources: OrderedDict[tuple[object, ...], InstrumentedSource] = OrderedDict()

    def source(self, endpoint: Endpoint) -> InstrumentedSource:
        key = endpoint.cache_key()
        if key in self._sources:
            self._sources.move_to_end(key)
            return self._sources[key]
        source = InstrumentedSource(
            PrometheusSource(endpoint, connections=self._connections), self._limit, self.telemetry
        )
        self._sources[key] = source
        if len(self._sources) > self.capacity:
            _, evicted = self._sources.popitem(last=False)
            evicted.source.close()
        return source

    def close(self) -> None:
        for source in self._sources.values():
            source.source.close()
        self._sources.clear()
