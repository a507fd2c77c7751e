"""The live metric source: a Prometheus-compatible HTTP API.

``prometheus-api-client`` is the connection layer (session, auth, headers, retry policy); it
is synchronous (requests), so every call runs in a worker thread and the operator's event
loop never blocks. Its own retries are switched off: the reconcile loop is the retry, and a
stuck retry inside one evaluation would delay every other monitor. Bodies are decoded by
:mod:`evergreen.signals.decoding`, straight into arrays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from evergreen.errors import MetricsUnavailable, QueryRejected
from evergreen.network import Failure, connection_failure
from evergreen.signals.decoding import Asked, decode_instant, decode_range, error_detail
from evergreen.signals.samples import QueryResult, RangeResult, grid


@dataclass(frozen=True)
class Endpoint:
    """A resolved connection to one Prometheus API: secrets already read, defaults applied."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    basic_auth: tuple[str, str] | None = None
    #: ``True``/``False`` to verify with system CAs or not, or a path to a CA bundle file.
    verify: bool | str = True
    timeout_seconds: float = 30.0

    def cache_key(self) -> tuple[Any, ...]:
        return (
            self.url.rstrip("/"),
            tuple(sorted(self.headers.items())),
            self.basic_auth,
            self.verify,
            self.timeout_seconds,
        )


class PrometheusSource:
    """Instant and range queries against one endpoint."""

    def __init__(self, endpoint: Endpoint, *, connections: int = 10) -> None:
        session = requests.Session()
        session.verify = endpoint.verify
        self.endpoint = endpoint
        self._client = PrometheusConnect(
            url=endpoint.url.rstrip("/"),
            headers=dict(endpoint.headers),
            auth=endpoint.basic_auth,
            retry=Retry(total=0),
            session=session,
            timeout=endpoint.timeout_seconds,
        )
        # Queries in flight beyond the pool would each open and drop a connection: size the
        # pool to the concurrency (the client mounted a default-sized one for the same URL).
        session.mount(
            endpoint.url.rstrip("/"), HTTPAdapter(max_retries=Retry(total=0), pool_maxsize=connections)
        )

    def close(self) -> None:
        self._client.close()

    async def instant(self, query: str, at: datetime, *, field: str) -> QueryResult:
        """Evaluate ``query`` at ``at``; ``field`` names the spec field it came from."""
        asked = Asked(query, field, self.endpoint.url)
        params = {"query": query, "time": f"{at.timestamp():.3f}"}
        body = await asyncio.to_thread(self._get, "query", params, asked)
        return decode_instant(body, asked)

    async def range(
        self, query: str, start: datetime, end: datetime, step: timedelta, *, field: str
    ) -> RangeResult:
        """Evaluate ``query`` at every ``step`` from ``start`` to ``end`` (both included)."""
        seconds = step.total_seconds()
        times = grid(start, end, seconds)
        asked = Asked(query, field, self.endpoint.url)
        params = {
            "query": query,
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
            "step": f"{seconds:g}",
        }
        body = await asyncio.to_thread(self._get, "query_range", params, asked)
        return decode_range(body, asked, times)

    def _get(self, api: str, params: Mapping[str, str], asked: Asked) -> bytes:
        """The raw body of one API call, sent exactly as the client's own queries are.

        The client's query methods decode the body themselves with the standard library; the
        request goes through the client's session (its retry policy mounted), headers and
        auth, and the body is left to :mod:`evergreen.signals.decoding`.
        """
        client = self._client
        try:
            response = client._session.request(
                method="GET",
                url=f"{client.url}/api/v1/{api}",
                params=params,
                verify=client._session.verify,
                headers=client.headers,
                auth=client.auth,
                cert=client._session.cert,
                timeout=self.endpoint.timeout_seconds,
            )
        except requests.exceptions.Timeout as error:
            raise self._timed_out(asked) from error
        except requests.exceptions.RequestException as error:
            if connection_failure(error) is Failure.TIMEOUT:  # requests wraps some timeouts
                raise self._timed_out(asked) from error
            raise MetricsUnavailable(
                f"cannot reach Prometheus at {self.endpoint.url}: {connection_failure(error)}"
            ) from error
        if response.status_code != 200:
            raise self._classify(response.status_code, response.content, asked.field)
        body: bytes = response.content
        return body

    def _timed_out(self, asked: Asked) -> MetricsUnavailable:
        return MetricsUnavailable(
            f"Prometheus at {self.endpoint.url} did not answer within "
            f"{self.endpoint.timeout_seconds:g}s ({asked.field})"
        )

    def _classify(self, status: int, body: bytes, field: str) -> Exception:
        detail = error_detail(body)
        if status in (400, 422):
            return QueryRejected(field, f"Prometheus rejected the query: {detail}")
        if status in (401, 403):
            return MetricsUnavailable(
                f"Prometheus at {self.endpoint.url} refused the credentials (HTTP {status}); "
                "check spec.prometheus.bearerTokenSecret or basicAuth"
            )
        return MetricsUnavailable(f"Prometheus at {self.endpoint.url} answered HTTP {status}: {detail}")
