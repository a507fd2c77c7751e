"""The live metric source: a Prometheus-compatible HTTP API.

``prometheus-api-client`` is synchronous (requests); every call runs in a worker thread so the
operator's event loop never blocks. Its own retries are switched off: the reconcile loop is
the retry, and a stuck retry inside one evaluation would delay every other monitor.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from evergreen.errors import MetricsUnavailable, QueryRejected
from evergreen.network import Failure, connection_failure
from evergreen.signals.samples import QueryResult, Sample

_STATUS = re.compile(r"HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)


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


def _rejection_message(body: str) -> str:
    """The ``error`` of a Prometheus error answer, or the raw body when it is not JSON."""
    text = body
    if text.startswith(("b'", 'b"')):
        text = text[2:-1]
    try:
        decoded = json.loads(text.encode().decode("unicode_escape"))
    except (ValueError, UnicodeDecodeError):
        return text[:500]
    return str(decoded.get("error", text))[:500]


class PrometheusSource:
    """Instant queries against one endpoint."""

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
        return await asyncio.to_thread(self._instant, query, at, field)

    def _instant(self, query: str, at: datetime, field: str) -> QueryResult:
        try:
            raw = self._client.custom_query(query, params={"time": f"{at.timestamp():.3f}"})
        except requests.exceptions.Timeout as error:
            raise MetricsUnavailable(
                f"Prometheus at {self.endpoint.url} did not answer within "
                f"{self.endpoint.timeout_seconds:g}s ({field})"
            ) from error
        except requests.exceptions.RequestException as error:
            if connection_failure(error) is Failure.TIMEOUT:  # requests wraps some timeouts
                raise MetricsUnavailable(
                    f"Prometheus at {self.endpoint.url} did not answer within "
                    f"{self.endpoint.timeout_seconds:g}s ({field})"
                ) from error
            raise MetricsUnavailable(
                f"cannot reach Prometheus at {self.endpoint.url}: {connection_failure(error)}"
            ) from error
        except PrometheusApiClientException as error:
            raise self._classify(error, field) from error
        return _parse_result(query, raw)

    def _classify(self, error: PrometheusApiClientException, field: str) -> Exception:
        match = _STATUS.search(str(error))
        status = int(match.group(1)) if match else 0
        detail = _rejection_message(match.group(2)) if match else str(error)
        if status in (400, 422):
            return QueryRejected(field, f"Prometheus rejected the query: {detail}")
        if status in (401, 403):
            return MetricsUnavailable(
                f"Prometheus at {self.endpoint.url} refused the credentials (HTTP {status}); "
                "check spec.prometheus.bearerTokenSecret or basicAuth"
            )
        return MetricsUnavailable(f"Prometheus at {self.endpoint.url} answered HTTP {status}: {detail}")


def _parse_result(query: str, raw: Any) -> QueryResult:
    # The client returns only data.result: a list of series for a vector, [ts, "v"] for a scalar.
    if isinstance(raw, list) and len(raw) == 2 and not isinstance(raw[0], dict):
        return QueryResult(query, (Sample({}, float(raw[1])),))
    if not isinstance(raw, list):
        raise MetricsUnavailable(f"unexpected answer to an instant query: {type(raw).__name__}")
    samples = []
    for item in raw:
        if "value" not in item:
            raise MetricsUnavailable("an instant query returned a range result")
        samples.append(Sample(dict(item.get("metric", {})), float(item["value"][1])))
    return QueryResult(query, tuple(samples))
